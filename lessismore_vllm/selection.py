"""The LessIsMore token-selection rule (../shared/design/lessismore.md, section 2), in plain PyTorch.

`select_tokens` is the oracle: one request, one decode query, readable. `select_tokens_batched` is the same rule
with static shapes and no host sync, so the GPU path can run it inside CUDA graphs; tests hold it to the oracle.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

INT32_MAX = torch.iinfo(torch.int32).max


class BudgetSplit(NamedTuple):
    total: int  # K_b = min(L, budget): tokens selected
    mid: int  # tokens chosen by the union of per-head top-k
    sinks: int  # leading tokens always kept
    recent: int  # trailing tokens always kept (the current token included)


def budget_split(context_len: int, budget: int, recency_ratio: float = 0.25, sinks: int = 4) -> BudgetSplit:
    total = min(context_len, budget)
    mid = int(total * (1 - recency_ratio))
    rec = total - mid
    sink = sinks if rec >= sinks else 0
    return BudgetSplit(total, mid, sink, rec - sink)


def select_tokens(logits: torch.Tensor, budget: int, recency_ratio: float = 0.25, sinks: int = 4) -> torch.Tensor:
    """Selected positions (ascending LongTensor) for one request.

    logits: [num_query_heads, L] pre-softmax scores of the decode query against every key of the request.
    """
    num_heads, L = logits.shape
    if budget >= L:
        return torch.arange(L, dtype=torch.long)
    split = budget_split(L, budget, recency_ratio, sinks)
    return union_from_keys(rank_keys(logits, split), split)


def rank_keys(logits: torch.Tensor, split: BudgetSplit, total_heads: int | None = None,
              head_offset: int = 0) -> torch.Tensor:
    """The rank-major union as one key per token: token t gets min over heads h of rank_h(t) * Hq + h; smaller =
    earlier in the walk (rank 0 of head 0, rank 0 of head 1, ..., rank 1 of head 0, ...). Keys are unique per
    token; INT32_MAX = in no head's top-mid. Sinks and the recent window are not candidates.

    Under tensor parallelism each rank holds heads [head_offset, head_offset + Hq_local) of total_heads: the
    element-wise min of every rank's keys is the key of all heads, so each rank then selects the same set."""
    num_heads, L = logits.shape
    total_heads = total_heads or num_heads
    cand_lo, cand_hi = split.sinks, L - split.recent
    key = torch.full((L,), INT32_MAX, dtype=torch.int64)
    for h in range(num_heads):
        # Stable descending sort: ties inside a head go to the lower position first.
        order = torch.sort(logits[h, cand_lo:cand_hi].float(), descending=True, stable=True).indices[: split.mid]
        ranks = torch.arange(order.numel(), dtype=torch.int64)
        key[cand_lo + order] = torch.minimum(key[cand_lo + order], ranks * total_heads + head_offset + h)
    return key


def union_from_keys(key: torch.Tensor, split: BudgetSplit) -> torch.Tensor:
    """Sinks + the `mid` smallest rank keys + the recent window, ascending."""
    L = key.numel()
    union = torch.sort(key, stable=True).indices[: split.mid]
    chosen = torch.cat([torch.arange(split.sinks), union, torch.arange(L - split.recent, L)])
    return torch.sort(chosen).values


def select_tokens_batched(
    logits: torch.Tensor,
    seq_lens: torch.Tensor,
    budget: int,
    recency_ratio: float = 0.25,
    sinks: int = 4,
    out_positions: torch.Tensor | None = None,
    out_counts: torch.Tensor | None = None,
    total_heads: int | None = None,
    head_offset: int = 0,
    combine_keys: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same rule for a batch, with shapes fixed by (B, Hq, N, budget) only: CUDA-graph safe.

    logits: [B, Hq, N] (N >= every seq_len; entries at t >= seq_len are ignored). seq_lens: [B] (0 = padded row).
    Writes positions [B, budget] (first count[b] entries valid, ascending) and counts [B] = min(L, budget).
    Rows with L <= budget get 0..L-1 (dense). Ties inside a head may break differently from the oracle
    (torch.topk is not stable); with real-valued scores this does not happen.
    """
    B, num_heads, N = logits.shape
    device = logits.device
    L = seq_lens.to(torch.int64).view(B, 1)
    pos = torch.arange(budget, device=device, dtype=torch.int64).view(1, budget)
    counts = L.view(B).clamp(max=budget)  # no host tensor: this runs inside CUDA-graph capture
    positions = pos.expand(B, budget)
    split = budget_split(budget + 1, budget, recency_ratio, sinks)  # the split of every row with L > budget
    if N > budget:
        parts = [pos[:, : split.sinks].expand(B, -1)]
        if split.mid > 0:
            t = torch.arange(N, device=device).view(1, 1, N)
            is_candidate = (t >= split.sinks) & (t < L.view(B, 1, 1) - split.recent)
            scores = logits.float().masked_fill(~is_candidate, float("-inf"))
            top = torch.topk(scores, split.mid, dim=-1, sorted=True).indices  # [B, Hq, mid], rank order
            ranks = torch.arange(split.mid, device=device).view(1, 1, -1) * (total_heads or num_heads)
            heads = torch.arange(head_offset, head_offset + num_heads, device=device).view(1, -1, 1)
            keys = (ranks + heads).expand(B, -1, -1)
            key = torch.full((B, N), INT32_MAX, device=device, dtype=torch.int64)
            key.scatter_reduce_(1, top.reshape(B, -1), keys.reshape(B, -1), reduce="amin")
            if combine_keys is not None:  # tensor parallelism: MIN over the ranks' keys (see rank_keys)
                combine_keys(key)
            parts.append(torch.topk(key, split.mid, dim=-1, largest=False, sorted=False).indices)
        parts.append(L - split.recent + pos[:, : split.recent])
        sparse = torch.sort(torch.cat(parts, dim=1), dim=1).values
        positions = torch.where(L > budget, sparse, positions)
    positions = torch.where(pos < counts.view(B, 1), positions, 0)
    if out_positions is None:
        return positions, counts
    out_positions[:B].copy_(positions)
    out_counts[:B].copy_(counts)
    return out_positions[:B], out_counts[:B]
