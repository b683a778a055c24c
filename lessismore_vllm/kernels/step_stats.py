"""The per-step attention counters of stats.SparseStats in one launch (reference: stats.count_step_reference).

A decode step bumps four int64 counters from its rows' counts and lengths. As PyTorch ops that is about ten tiny
kernels inside the step's CUDA graph, each a few microseconds of launch latency at batch 1; this kernel is one.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit(do_not_specialize=["rows"])
def _count_step_kernel(counters_ptr, counts_ptr, seq_lens_ptr, rows, BLOCK: tl.constexpr):
    """counters += [real rows, rows attending fewer tokens than their context, tokens attended, context tokens];
    one program (rows <= max_num_seqs); padded rows have length 0 and count nothing."""
    offs = tl.arange(0, BLOCK)
    real = tl.zeros([BLOCK], tl.int64)
    sparse = tl.zeros([BLOCK], tl.int64)
    attended = tl.zeros([BLOCK], tl.int64)
    context = tl.zeros([BLOCK], tl.int64)
    for r0 in range(0, rows, BLOCK):
        m = r0 + offs < rows
        L = tl.load(seq_lens_ptr + r0 + offs, mask=m, other=0).to(tl.int64)
        c = tl.load(counts_ptr + r0 + offs, mask=m, other=0).to(tl.int64)
        real += (L > 0).to(tl.int64)
        sparse += ((L > 0) & (c < L)).to(tl.int64)
        attended += c
        context += L
    tl.store(counters_ptr + 0, tl.load(counters_ptr + 0) + tl.sum(real, axis=0))
    tl.store(counters_ptr + 1, tl.load(counters_ptr + 1) + tl.sum(sparse, axis=0))
    tl.store(counters_ptr + 2, tl.load(counters_ptr + 2) + tl.sum(attended, axis=0))
    tl.store(counters_ptr + 3, tl.load(counters_ptr + 3) + tl.sum(context, axis=0))


def count_step(counters: torch.Tensor, counts: torch.Tensor, seq_lens: torch.Tensor) -> None:
    """counters: int64 [4] (SparseStats.FIELDS order), updated in place; counts/seq_lens: int32 [rows]."""
    rows = seq_lens.shape[0]
    if rows == 0:
        return
    assert counters.dtype == torch.int64 and counters.is_contiguous()
    _count_step_kernel[(1,)](counters, counts.contiguous(), seq_lens.contiguous(), rows, BLOCK=256, num_warps=4)
