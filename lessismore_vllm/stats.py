"""Observability: how much the sparse layers attended, logged periodically by each worker.

Counters live on the device and are bumped with in-place tensor ops once per step (by the first sparse layer:
every sparse layer of a step attends the same number of tokens per row), so they work inside CUDA graphs. The
metadata builder, which runs on the host every step, reads them at most every LESSISMORE_STATS_INTERVAL
seconds (default 30; 0 disables) and logs the change since the last line.

The same changes go to Prometheus counters (lessismore_*_total, see EXPORTED). They reach vLLM's /metrics when the
server runs with PROMETHEUS_MULTIPROC_DIR set (vLLM sets it itself for --api-server-count > 1): the workers
that count are separate processes, and prometheus_client's multiprocess mode is how vLLM gathers metrics across
processes. Only tensor-parallel rank 0 exports, so ranks are not counted twice.

LESSISMORE_TP_CHECK=1 (tensor parallelism, a debugging aid): every selection layer also checks, inside the step
and so inside CUDA graphs, that all ranks selected the same set (selection_checksums, summed over the ranks by
vLLM's own all-reduce), and the stats line reports the rows that disagreed.
"""

from __future__ import annotations

import logging
import os
import time

import torch

logger = logging.getLogger("vllm.lessismore")


EXPORTED = {  # field -> (Prometheus counter name, help)
    "row_steps": ("lessismore_decode_row_steps", "Decode row-steps (one request, one step) seen by the backend"),
    "sparse_row_steps": ("lessismore_sparse_row_steps", "Decode row-steps whose sparse layers attended a subset"),
    "attended": ("lessismore_attended_tokens", "Tokens attended per sparse layer, summed over decode row-steps"),
    "context": ("lessismore_context_tokens", "Context length, summed over decode row-steps"),
}
_counters = None  # Prometheus counters, created once per process


def _prometheus_counters():
    global _counters
    if _counters is None:
        try:
            from prometheus_client import Counter
        except ImportError:
            _counters = {}
        else:
            _counters = {field: Counter(name, doc) for field, (name, doc) in EXPORTED.items()}
    return _counters


class SparseStats:
    FIELDS = tuple(EXPORTED)  # row_steps, sparse_row_steps, attended, context

    def __init__(self, device: torch.device | str, export: bool = True):
        self.counters = torch.zeros(len(self.FIELDS), dtype=torch.int64, device=device)
        self.agreement = torch.zeros(2, dtype=torch.int64, device=device)  # TP check: rows checked, rows differing
        self.interval = float(os.environ.get("LESSISMORE_STATS_INTERVAL", "30"))
        self.export = export
        self._last_time = time.monotonic()
        self._last = [0] * (len(self.FIELDS) + 2)  # counters, then agreement

    def update(self, counts: torch.Tensor, seq_lens: torch.Tensor) -> None:
        """counts/seq_lens of this step's decode rows (padded rows have seq_len 0 and count nothing). On CUDA one
        kernel (kernels.step_stats.count_step) instead of the reference's ~10 small ones inside the step's graph."""
        if self.counters.is_cuda:
            from lessismore_vllm.kernels.step_stats import count_step

            count_step(self.counters, counts, seq_lens)
        else:
            count_step_reference(self.counters, counts, seq_lens)

    def check_agreement(self, positions: torch.Tensor, counts: torch.Tensor, seq_lens: torch.Tensor, budget: int,
                        sum_over_ranks, tp_size: int) -> None:
        """Count this step's ranked rows (context > budget: the rows the rank-key all-reduce decides) and those
        whose set differs on some rank. sum_over_ranks: a SUM all-reduce that works in CUDA graphs (vLLM's
        tensor_model_parallel_all_reduce). Rows within the budget are not counted: they agree by construction,
        and vLLM's warm-up passes before graph capture (1-3 token dummy contexts) get a placeholder from its
        custom all-reduce instead of a sum."""
        mine = selection_checksums(positions, counts)
        total = sum_over_ranks(mine.clone())
        ranked = seq_lens > budget
        differs = (total != mine * tp_size).any(dim=1) & ranked
        self.agreement += torch.stack([ranked.sum(), differs.sum()]).to(torch.int64)

    def totals(self) -> dict[str, int]:
        return dict(zip(self.FIELDS, self.counters.tolist()))

    def maybe_log(self) -> None:
        if self.interval <= 0 or time.monotonic() - self._last_time < self.interval:
            return
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            return
        now = torch.cat([self.counters, self.agreement]).tolist()  # one device sync per interval
        delta = [a - b for a, b in zip(now, self._last)]
        d = dict(zip(self.FIELDS, delta))
        checked, differing = delta[len(self.FIELDS):]
        self._last, self._last_time = now, time.monotonic()
        if d["row_steps"] == 0:
            return
        if self.export:
            for field, counter in _prometheus_counters().items():
                counter.inc(d[field])
        logger.info(
            "LessIsMore stats: decode row-steps=%d, ran sparse=%.1f%%, mean tokens attended per sparse-layer "
            "step=%.1f, mean context=%.1f%s",
            d["row_steps"], 100.0 * d["sparse_row_steps"] / d["row_steps"], d["attended"] / d["row_steps"],
            d["context"] / d["row_steps"],
            f", TP selection check: {differing} of {checked} ranked rows differ across ranks" if checked else "",
        )


def count_step_reference(counters: torch.Tensor, counts: torch.Tensor, seq_lens: torch.Tensor) -> None:
    """counters (SparseStats.FIELDS) += this step's real rows, rows attending fewer tokens than their context,
    tokens attended and context tokens."""
    real = seq_lens > 0
    counters += torch.stack([
        real.sum(), (real & (counts < seq_lens)).sum(), counts.sum(), seq_lens.sum(),
    ]).to(torch.int64)


def selection_checksums(positions: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[rows, 3] float32 fingerprints of each row's selected positions (positions[r, :counts[r]]): the count and
    two position sums modulo small primes, so every value stays an exact float32 integer (< 2^24 for up to 4096
    positions), which a float SUM all-reduce adds exactly."""
    width = positions.shape[1]
    valid = torch.arange(width, device=positions.device)[None, :] < counts[:, None]
    p = positions.long()
    a = torch.where(valid, p % 4093, 0).sum(1)
    b = torch.where(valid, (p * 7 + 3) % 4091, 0).sum(1)
    return torch.stack([counts.long(), a, b], dim=1).to(torch.float32)
