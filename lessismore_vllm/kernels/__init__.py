"""Triton kernels of the GPU path. Each has a pure-PyTorch reference it is tested against:
sparse_decode -> reference.sparse_decode_reference; select -> selection.select_tokens."""

from lessismore_vllm.kernels.selection import decode_logits, select
from lessismore_vllm.kernels.sparse_decode import (
    DEFAULT_TUNING,
    SparseDecodeTuning,
    SparseWorkspace,
    make_workspace,
    plan_splits,
    slots_from_positions,
    sparse_decode,
)

__all__ = [
    "decode_logits", "select", "sparse_decode", "slots_from_positions", "plan_splits", "make_workspace",
    "SparseWorkspace", "SparseDecodeTuning", "DEFAULT_TUNING",
]
