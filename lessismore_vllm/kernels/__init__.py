"""Triton kernels of the GPU path. Each has a pure-PyTorch reference it is tested against:
sparse_decode -> reference.sparse_decode_reference; select -> selection.select_tokens."""

from lessismore_vllm.kernels.selection import decode_logits, select
from lessismore_vllm.kernels.sparse_decode import plan_splits, sparse_decode, workspace_numel

__all__ = ["decode_logits", "select", "sparse_decode", "plan_splits", "workspace_numel"]
