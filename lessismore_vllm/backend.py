"""vLLM glue: the LessIsMore attention backend (Backend = static facts, Builder = per-step metadata in fixed
buffers, Impl = forward), following vllm/v1/attention/backends/triton_attn.py.

Dense work (prefill, dense layers, a selection layer's own output) goes to vLLM's own backend, wrapped on GPU
and the pure-PyTorch reference on CPU. Selection layers write each decode row's token set into the builder's
buffers; sparse layers read only those tokens through the block table.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from vllm.v1.attention.backend import (
    AttentionBackend,
    AttentionCGSupport,
    AttentionImpl,
    AttentionMetadataBuilder,
    AttentionType,
)

from lessismore_vllm import compat, trace
from lessismore_vllm.config import LayerRole, LessIsMoreConfig, env_choice, from_vllm_config
from lessismore_vllm.reference import attend, decode_logits, gather_kv, write_kv
from lessismore_vllm.selection import INT32_MAX, budget_split, rank_keys, union_from_keys
from lessismore_vllm.stats import SparseStats

logger = logging.getLogger("vllm.lessismore")
_announced = False  # one "LessIsMore active:" line per worker process
SELECTION_PASS_ENV = "LESSISMORE_SELECTION_PASS"
SELECTION_PASSES = ("fused", "dense-backend")
SELECTION_STREAM_ENV = "LESSISMORE_SELECTION_STREAM"
SELECTION_STREAMS = ("side", "main")


def selection_pass() -> str:
    """How a selection layer attends its decode rows (GPU): "fused" (default), our split kernel computing the
    attention and the selection's logits in one read of the cache; "dense-backend", the wrapped vLLM backend,
    then a separate logits pass. A bad value fails at startup, naming the variable and the valid values."""
    return env_choice(SELECTION_PASS_ENV, SELECTION_PASSES, "fused")


def selection_stream() -> str:
    """Where a selection layer ranks and unions (GPU): "side" (default), on a side stream that overlaps the layer's
    MLP and the next layer's projections; "main", in line. A bad value fails at startup, naming the variable and
    the valid values."""
    return env_choice(SELECTION_STREAM_ENV, SELECTION_STREAMS, "side")


def effective_selection_stream(asked: str, tp_size: int, tracing: bool, micro_batched: bool) -> str:
    """The side stream where it is safe, else in line: tensor parallelism all-reduces the rank keys and the trace
    reads the selection, both in line; under dual batch overlap two micro-batches share the layers (and so one
    pending-selection flag) from two threads."""
    return "main" if tp_size > 1 or tracing or micro_batched else asked


class SelectionOverlap:
    """The selection after a selection layer's attention pass (ranking, union: the builder's positions, slots and
    counts) runs on a side stream, since only the next attention layer reads it: the layer's o_proj and MLP and
    the next layer's projections run meanwhile (at batch 1 the ranking fills 32 of 132 SMs). Every layer of ours
    joins a pending selection before anything else, so nothing reads the buffers early, and under CUDA-graph
    capture the fork is joined inside the graph (the builder only forks where a later layer of ours follows)."""

    def __init__(self, device) -> None:
        self.stream = torch.cuda.Stream(device)
        self.done = torch.cuda.Event()
        self.pending = False

    def forked(self) -> None:
        self.done.record(self.stream)
        self.pending = True

    def join(self) -> None:
        if self.pending:
            torch.cuda.current_stream().wait_event(self.done)
            self.pending = False


class LessIsMoreBackend(AttentionBackend):
    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16, torch.float32]
    supported_kv_cache_dtypes: ClassVar[list[str]] = ["auto", "float16", "bfloat16"]
    forward_includes_kv_cache_update: bool = False

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"  # Attention.__init__ looks the name up in AttentionBackendEnum

    @staticmethod
    def get_impl_cls() -> type[LessIsMoreImpl]:
        return LessIsMoreImpl

    @staticmethod
    def get_builder_cls() -> type[LessIsMoreMetadataBuilder]:
        return LessIsMoreMetadataBuilder

    @staticmethod
    def get_supported_kernel_block_sizes(kv_cache_spec=None) -> list:
        return [compat.multiple_of(16)]

    @staticmethod
    def get_kv_cache_shape(num_blocks, block_size, num_kv_heads, head_size, cache_dtype_str="auto"):
        return compat.kv_cache_shape(num_blocks, block_size, num_kv_heads, head_size)

    @staticmethod
    def get_kv_cache_stride_order(include_num_layers_dimension: bool = False) -> tuple[int, ...]:
        dense = compat.dense_backend_cls()
        if dense is None:
            raise NotImplementedError  # identity order; the CPU reference is stride-agnostic
        return dense.get_kv_cache_stride_order(include_num_layers_dimension)

    @classmethod
    def supports_head_size(cls, head_size: int) -> bool:
        return head_size % 16 == 0 and head_size <= 256

    @classmethod
    def supports_compute_capability(cls, capability) -> bool:
        return capability >= (8, 0)

    @staticmethod
    def use_cascade_attention(*args, **kwargs) -> bool:
        return False


@dataclass
class LessIsMoreMetadata:
    num_actual_tokens: int
    num_reqs: int
    num_decodes: int  # decode rows come first (reorder_batch_threshold = 1)
    num_decode_tokens: int
    query_start_loc: torch.Tensor
    query_start_loc_cpu: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor
    slot_mapping: torch.Tensor
    positions: torch.Tensor  # builder buffer [max_num_seqs, width]: selected token positions per decode row
    counts: torch.Tensor  # builder buffer [max_num_seqs]: valid entries of each row of `positions`
    slots: torch.Tensor | None = None  # builder buffer (GPU): the physical cache slots of `positions`
    workspace: torch.Tensor | None = None  # builder buffer: sparse-decode partial results (GPU)
    dense: Any = None  # the wrapped dense backend's metadata (GPU)


class LessIsMoreMetadataBuilder(AttentionMetadataBuilder[LessIsMoreMetadata]):
    # FULL graphs for single-token decode batches; mixed batches run piecewise (attention eager).
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.UNIFORM_SINGLE_TOKEN_DECODE

    def __init__(self, kv_cache_spec, layer_names, vllm_config, device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        self._init_reorder_batch_threshold(1)
        self.config: LessIsMoreConfig = from_vllm_config(vllm_config)
        dense_cls = compat.dense_backend_cls()
        self.dense_builder = (
            dense_cls.get_builder_cls()(kv_cache_spec, layer_names, vllm_config, device) if dense_cls else None
        )
        max_seqs = vllm_config.scheduler_config.max_num_seqs
        width = min(self.config.budget, vllm_config.model_config.max_model_len)
        self.positions = torch.zeros(max_seqs, width, dtype=torch.int32, device=device)
        self.counts = torch.zeros(max_seqs, dtype=torch.int32, device=device)
        self.slots = torch.zeros(max_seqs, width, dtype=torch.int32, device=device) if dense_cls else None
        layers = compat.attention_layers(vllm_config, layer_names)
        tp_rank, tp_size = compat.tp_rank_and_size()
        self.stats = SparseStats(device, export=tp_rank == 0)
        index = {name: compat.layer_index(name) for name in layers}
        roles = {i: self.config.role(i) for i in index.values()}
        if roles and roles[min(roles)] is LayerRole.SPARSE:
            # Pipeline parallelism: this stage starts with a sparse layer but holds no selection of its own (the
            # buffers are per stage), so its first layer selects.
            roles[min(roles)] = LayerRole.SELECT
        first_sparse = min((i for i, r in roles.items() if r is LayerRole.SPARSE), default=None)
        tp_check = tp_size > 1 and os.environ.get("LESSISMORE_TP_CHECK", "0") == "1"
        self.selection_pass = selection_pass() if dense_cls else "torch-reference"
        self.selection_stream = effective_selection_stream(  # a bad LESSISMORE_SELECTION_STREAM fails here
            selection_stream() if dense_cls else "main", tp_size, bool(trace.PATH), compat.micro_batched(vllm_config))
        overlap = SelectionOverlap(device) if self.selection_stream == "side" else None
        for name, layer in layers.items():
            idx = index[name]
            # the first sparse layer counts the step (all sparse layers of a step attend the same amount)
            layer.impl.setup(roles[idx], self.config, self.stats if idx == first_sparse else None, tp_rank, tp_size,
                             tp_check=self.stats if tp_check and roles[idx] is LayerRole.SELECT else None,
                             fused_selection=self.selection_pass == "fused", overlap=overlap,
                             # fork only where a later layer of ours joins (a stage's last layer selects in line)
                             forks=overlap is not None and any(j > idx for j in roles))
        self.workspace = None  # sparse-decode split partials, sized for the largest decode batch
        self.sparse_kernel = "torch-reference"  # which split kernel the sparse layers launch (GPU: triton or cuda)
        self.selection_topk = "torch-reference"  # the selection's per-head top-k (GPU: flashinfer or triton)
        self.rank_kernel = "torch-reference"  # the sort of each head's top-k into rank order (GPU: cuda or triton)
        if dense_cls is not None and layers:
            from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, selection

            num_heads = next(iter(layers.values())).impl.num_heads
            # a bad LESSISMORE_SPARSE_KERNEL fails here, naming the variable; the CUDA kernel builds at startup
            group = num_heads // kv_cache_spec.num_kv_heads
            self.sparse_kernel = cuda_ext.startup_choice(kv_cache_spec.head_size, group)
            self.selection_topk = selection.top_k_choice()  # a bad LESSISMORE_SELECTION_TOPK fails here
            # after FlashInfer's top-k, csrc/rank_keys.cu where it builds (now, at startup), else the Triton sort
            self.rank_kernel = selection.rank_sort_choice()
            numel = max_workspace_numel(max_seqs, num_heads, kv_cache_spec.num_kv_heads, kv_cache_spec.head_size,
                                        width)
            self.workspace = torch.empty(numel, dtype=torch.float32, device=device)
        global _announced
        if not _announced:
            _announced = True
            dense_name = dense_cls.get_name() if dense_cls else "torch-reference"
            stage = "" if not roles or min(roles) == 0 else f" stage_layers={min(roles)}-{max(roles)}"
            logger.info("LessIsMore active: %s dense_backend=%s sparse_kernel=%s selection_pass=%s "
                        "selection_stream=%s selection_topk=%s rank_kernel=%s tp=%d%s", self.config.summary(),
                        dense_name, self.sparse_kernel, self.selection_pass, self.selection_stream,
                        self.selection_topk, self.rank_kernel, tp_size, stage)

    def build(self, common_prefix_len: int, common_attn_metadata, fast_build: bool = False) -> LessIsMoreMetadata:
        cm = common_attn_metadata
        dense = self.dense_builder.build(common_prefix_len, cm, fast_build) if self.dense_builder else None
        return self._wrap(cm, dense)

    def build_for_cudagraph_capture(self, common_attn_metadata) -> LessIsMoreMetadata:
        dense = self.dense_builder.build_for_cudagraph_capture(common_attn_metadata) if self.dense_builder else None
        return self._wrap(common_attn_metadata, dense)

    def _wrap(self, cm, dense) -> LessIsMoreMetadata:
        self.stats.maybe_log()
        num_decodes, num_decode_tokens = compat.split_decodes(cm)
        return LessIsMoreMetadata(
            num_actual_tokens=cm.num_actual_tokens,
            num_reqs=cm.num_reqs,
            num_decodes=num_decodes,
            num_decode_tokens=num_decode_tokens,
            query_start_loc=cm.query_start_loc,
            query_start_loc_cpu=cm.query_start_loc_cpu,
            seq_lens=cm.seq_lens,
            block_table=cm.block_table_tensor,
            slot_mapping=cm.slot_mapping,
            positions=self.positions,
            counts=self.counts,
            slots=self.slots,
            workspace=self.workspace,
            dense=dense,
        )


class LessIsMoreImpl(AttentionImpl[LessIsMoreMetadata]):
    def __init__(
        self,
        num_heads: int,
        head_size: int,
        scale: float,
        num_kv_heads: int | None = None,
        alibi_slopes: list[float] | None = None,
        sliding_window: int | None = None,
        kv_cache_dtype: str = "auto",
        logits_soft_cap: float | None = None,
        attn_type: str = AttentionType.DECODER,
        kv_sharing_target_layer_name: str | None = None,
        **kwargs,
    ) -> None:
        unsupported = {
            "ALiBi": alibi_slopes is not None,
            "sliding-window attention": sliding_window is not None,
            "logits soft-capping": bool(logits_soft_cap),
            f"attention type {attn_type}": attn_type != AttentionType.DECODER,
            f"kv_cache_dtype={kv_cache_dtype}": kv_cache_dtype not in ("auto", "float16", "bfloat16"),
        }
        bad = [k for k, v in unsupported.items() if v]
        if bad:
            raise NotImplementedError(
                f"LessIsMore does not support {', '.join(bad)}; use a built-in attention backend for this model"
            )
        self.num_heads = num_heads
        self.head_size = head_size
        self.scale = float(scale)
        self.num_kv_heads = num_kv_heads or num_heads
        self.kv_cache_dtype = kv_cache_dtype
        self.role = LayerRole.DENSE  # until the builder assigns roles
        self.config: LessIsMoreConfig | None = None
        self.stats: SparseStats | None = None
        self.tp_check: SparseStats | None = None
        self.tp_rank, self.tp_size, self.head_offset, self.total_heads = 0, 1, 0, num_heads
        self.overlap: SelectionOverlap | None = None
        self.forks = False
        dense_cls = compat.dense_backend_cls()
        self.dense_impl = (
            dense_cls.get_impl_cls()(
                num_heads, head_size, scale, num_kv_heads, alibi_slopes, sliding_window, kv_cache_dtype,
                logits_soft_cap, attn_type, kv_sharing_target_layer_name, **kwargs,
            )
            if dense_cls
            else None
        )

    def setup(self, role: LayerRole, config: LessIsMoreConfig, stats: SparseStats | None = None, tp_rank: int = 0,
              tp_size: int = 1, tp_check: SparseStats | None = None, fused_selection: bool = False,
              overlap: SelectionOverlap | None = None, forks: bool = False) -> None:
        """Role and settings from the builder. Under tensor parallelism this rank's query heads are
        [tp_rank * num_heads, (tp_rank + 1) * num_heads) of num_heads * tp_size (vLLM splits heads evenly).
        tp_check: where a selection layer counts whether all ranks selected the same sets (LESSISMORE_TP_CHECK).
        fused_selection: a selection layer computes its decode rows' attention and logits in one pass of our
        kernel (LESSISMORE_SELECTION_PASS).
        overlap: the side stream of the builder's selections, which this layer joins first thing; forks: this
        selection layer ranks on it (LESSISMORE_SELECTION_STREAM)."""
        self.role, self.config, self.stats, self.tp_check = role, config, stats, tp_check
        self.fused_selection = fused_selection
        self.overlap, self.forks = overlap, forks and role is LayerRole.SELECT
        self.tp_rank, self.tp_size = tp_rank, tp_size
        self.head_offset, self.total_heads = tp_rank * self.num_heads, self.num_heads * tp_size

    def _combine_keys(self):
        """The all-reduce that makes every TP rank select the same set (None without tensor parallelism)."""
        return compat.tp_all_reduce_min_ if self.tp_size > 1 else None

    def do_kv_cache_update(self, layer, key, value, kv_cache, slot_mapping) -> None:
        if self.dense_impl is not None:
            self.dense_impl.do_kv_cache_update(layer, key, value, kv_cache, slot_mapping)
        else:
            write_kv(kv_cache, key, value, slot_mapping)

    def forward(
        self,
        layer,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kv_cache: torch.Tensor,
        attn_metadata: LessIsMoreMetadata,
        output: torch.Tensor,
        output_scale: torch.Tensor | None = None,
        output_block_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError("LessIsMore does not support fused output quantization")
        m = attn_metadata
        if self.overlap is not None:
            self.overlap.join()  # a selection still running on the side stream: before anything reads its buffers
        if m is None:  # profiling / dummy run
            return output
        if self.stats is not None and m.num_decodes > 0:
            self.stats.update(m.counts[: m.num_decodes], m.seq_lens[: m.num_decodes])
        if self.dense_impl is None:
            self._forward_reference(layer, query, kv_cache, m, output)
        else:
            self._forward_gpu(layer, query, key, value, kv_cache, m, output)
        if self.tp_check is not None and m.num_decodes > 0:
            nd = m.num_decodes
            self.tp_check.check_agreement(m.positions[:nd], m.counts[:nd], m.seq_lens[:nd], self.config.budget,
                                          compat.tp_all_reduce_sum, self.tp_size)
        return output

    # -- GPU: wrapped dense backend + Triton kernels ------------------------------------------------------------
    def _forward_gpu(self, layer, query, key, value, kv_cache, m, output):
        from lessismore_vllm import kernels

        nd = m.num_decode_tokens
        decode_only = nd > 0 and m.num_actual_tokens == nd
        ours = self.role is LayerRole.SPARSE or (self.role is LayerRole.SELECT and self.fused_selection)
        if not (ours and decode_only):
            # Mixed batches: dense over every row; our kernels then overwrite the decode rows.
            self.dense_impl.forward(layer, query, key, value, kv_cache, m.dense, output)
        if nd == 0 or self.role is LayerRole.DENSE:
            return output
        cfg = self.config
        if self.role is LayerRole.SELECT:
            kernels.select(
                query[:nd], kv_cache, m.block_table[:nd], m.seq_lens[:nd], self.scale,
                cfg.budget, cfg.recency_ratio, cfg.sinks, m.positions, m.counts, m.slots,
                total_heads=self.total_heads, head_offset=self.head_offset, combine_keys=self._combine_keys(),
                # mixed batches too (the dense pass above then computed these rows once more): the logits come
                # from this pass in every step, so no other logits kernel is first compiled mid-serving
                attention_out=output[:nd] if self.fused_selection else None, workspace=m.workspace,
                selection_stream=self.overlap.stream if self.forks else None,
            )
            if self.forks:
                self.overlap.forked()
            if trace.PATH and not torch.cuda.is_current_stream_capturing():  # eager debugging only: syncs
                # the same per-row records as the CPU path, so one reader checks both (e.g. TP ranks agree)
                for i, (L, n) in enumerate(zip(m.seq_lens[:nd].tolist(), m.counts[:nd].tolist())):
                    trace.record(layer=layer.layer_name, role="selection", row=i, seq_len=L,
                                 selected=m.positions[i, :n].tolist(), tp_rank=self.tp_rank)
        else:
            if trace.PATH and not torch.cuda.is_current_stream_capturing():
                trace.record(layer=layer.layer_name, role="sparse", seq_lens=m.seq_lens[:nd].tolist(),
                             attended=m.counts[:nd].tolist())
            kernels.sparse_decode(
                query[:nd], kv_cache, m.slots[:nd], m.counts[:nd], self.scale, output[:nd], m.workspace,
            )
        return output

    # -- CPU: the readable reference, one request at a time --------------------------------------------------
    def _forward_reference(self, layer, query, kv_cache, m, output):
        qsl = m.query_start_loc_cpu.tolist()
        seq_lens = m.seq_lens.tolist()
        selecting = []  # (row, context length, decode logits) of this selection layer's decode rows
        for i in range(m.num_reqs):
            a, b = qsl[i], qsl[i + 1]
            L = seq_lens[i]
            if b <= a or L == 0:
                continue
            q = query[a:b]
            is_decode = i < m.num_decodes
            if is_decode and self.role is LayerRole.SPARSE:
                n = int(m.counts[i])
                k, v = gather_kv(kv_cache, m.block_table[i], m.positions[i, :n])
                output[a:b] = attend(q, k, v, self.scale).to(output.dtype)
                if trace.PATH:
                    trace.record(
                        layer=layer.layer_name, role="sparse", row=i, seq_len=L, attended=n,
                        positions=m.positions[i, :n].tolist(),
                    )
                continue
            k, v = gather_kv(kv_cache, m.block_table[i], torch.arange(L))
            q_pos = torch.arange(L - (b - a), L)
            output[a:b] = attend(q, k, v, self.scale, q_pos, torch.arange(L)).to(output.dtype)
            if is_decode and self.role is LayerRole.SELECT:
                selecting.append((i, L, decode_logits(q[0], k, self.scale)))
        if selecting:
            self._select_reference(layer, selecting, m)
        return output

    def _select_reference(self, layer, rows, m) -> None:
        """select_tokens for each row, as rank keys + union so that tensor-parallel ranks can take the MIN of
        their keys (one all-reduce for all rows) and select the same set."""
        cfg = self.config
        split = budget_split(cfg.budget + 1, cfg.budget, cfg.recency_ratio, cfg.sinks)  # every row > budget
        long_rows = [(i, L, logits) for i, L, logits in rows if L > cfg.budget]
        keys = None
        if long_rows:
            keys = torch.full((len(long_rows), max(L for _, L, _ in long_rows)), INT32_MAX, dtype=torch.int64)
            for j, (_, L, logits) in enumerate(long_rows):
                keys[j, :L] = rank_keys(logits, split, self.total_heads, self.head_offset)
            if self.tp_size > 1:
                compat.tp_all_reduce_min_(keys)
        j = 0
        for i, L, _ in rows:
            if L > cfg.budget:
                chosen = union_from_keys(keys[j, :L], split)
                j += 1
            else:
                chosen = torch.arange(L)
            m.positions[i, : chosen.numel()] = chosen.to(torch.int32)
            m.counts[i] = chosen.numel()
            if trace.PATH:
                trace.record(layer=layer.layer_name, role="selection", row=i, seq_len=L, selected=chosen.tolist(),
                             tp_rank=self.tp_rank)
