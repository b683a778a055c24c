"""Triton kernels of the GPU path. Each has a pure-PyTorch reference it is tested against:
sparse_decode -> reference.sparse_decode_reference; select -> selection.select_tokens; step_stats.count_step ->
stats.count_step_reference."""

from lessismore_vllm.kernels.selection import decode_logits, select
from lessismore_vllm.kernels.sparse_decode import (
    DEFAULT_TUNING,
    SparseDecodeTuning,
    max_workspace_numel,
    plan_splits,
    slots_from_positions,
    sparse_decode,
    workspace_numel,
)

__all__ = [
    "decode_logits", "select", "sparse_decode", "slots_from_positions", "plan_splits", "workspace_numel",
    "max_workspace_numel", "SparseDecodeTuning", "DEFAULT_TUNING",
]
