"""Sparse paged decode attention (flash-decoding over a selected token list).

One program per (decode row, KV head, split): loads each selected token's K and V once and uses them for every
query head of the GQA group (a [GROUP, D] x [D, N] dot). Tokens are given as physical cache slots
(block * block_size + offset), which the selection layer computed once per step from the block table, so the 30-odd
sparse layers that follow do one dependent load per token instead of two. A second kernel combines the splits
(where there is one split per (row, KV head), the split kernel writes the output itself).
Reference: lessismore_vllm.reference.sparse_decode_reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from lessismore_vllm.kernels import cuda_ext

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class SparseDecodeTuning:
    """Launch shape of the split kernel. Defaults measured on an H100 (docs/performance.md)."""

    block_n: int = 64  # tokens per loop iteration
    num_warps: int = 4
    num_stages: int = 3
    max_splits: int = 32
    target_programs: int = 264  # (row, KV head, split) programs: 2 per SM on an H100 (more measured no faster)


DEFAULT_TUNING = SparseDecodeTuning()
# The selection layer's dense pass (dense_decode_with_logits): rows of the whole context, so more, shorter splits.
# H100 sweep over 1-32 rows x 16K-32K: 0.97-1.11x FA3's time with the logits included; 264 programs: up to 1.30x.
DENSE_TUNING = SparseDecodeTuning(target_programs=1584)


# Arguments that change with the decode batch size are runtime values, never specialised on: a batch size that
# the process has not seen would otherwise compile a new kernel in the middle of serving (vLLM's JIT monitor
# warns; 0.78 s in one profiled step on the GPU, docs/tensor-parallel.md).
BATCH_DEPENDENT_ARGS = ["num_splits"]


@triton.jit(do_not_specialize=BATCH_DEPENDENT_ARGS)
def _sparse_decode_split_kernel(
    q_ptr, kv_ptr, slots_ptr, counts_ptr,
    acc_ptr, ml_ptr,  # workspace: acc [rows, Hq, S, D] fp32, ml [rows, Hq, S, 2] fp32 (running max, sum)
    stride_qt, stride_qh,
    stride_kv_block, stride_kv_head, stride_kv_slot, stride_kv_chan,
    stride_slots,
    scale_log2, num_splits,
    logits_ptr, stride_lr, stride_lh, scale,
    out_ptr, stride_ot, stride_oh,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, GROUP: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    DENSE: tl.constexpr = False,
):
    """One (row, KV head, split). DENSE (a selection layer's own pass): every position t < counts[row] (the row's
    length), slots_ptr is the block table, and the pre-softmax logits scale * q.k go to logits[row, head, t]."""
    row = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    count = tl.load(counts_ptr + row)
    # Split this row's own count, not the buffer width: a row that attends fewer tokens than the budget (short
    # context) spreads them over all its splits instead of leaving the last ones idle.
    tokens_per_split = tl.cdiv(tl.cdiv(count, num_splits), BLOCK_N) * BLOCK_N
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, count)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    heads = kv_head * GROUP + offs_g
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    q = tl.load(
        q_ptr + row * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
        mask=g_mask[:, None] & d_mask[None, :], other=0.0,
    )
    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    head_base = kv_ptr + kv_head.to(tl.int64) * stride_kv_head
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        if DENSE:
            block = tl.load(slots_ptr + row * stride_slots + offs_n // BLOCK_SIZE, mask=n_mask, other=0)
            base = block.to(tl.int64) * stride_kv_block + (offs_n % BLOCK_SIZE) * stride_kv_slot
        else:
            slot = tl.load(slots_ptr + row * stride_slots + offs_n, mask=n_mask, other=0)
            base = (slot // BLOCK_SIZE).to(tl.int64) * stride_kv_block + (slot % BLOCK_SIZE) * stride_kv_slot
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(head_base + base[:, None] + offs_d[None, :] * stride_kv_chan, mask=kv_mask, other=0.0)
        v = tl.load(head_base + base[:, None] + (HEAD_DIM + offs_d[None, :]) * stride_kv_chan, mask=kv_mask,
                    other=0.0)
        qk = tl.dot(q, tl.trans(k))
        if DENSE:  # the selection's logits, as selection.decode_logits computes them
            tl.store(logits_ptr + row.to(tl.int64) * stride_lr + heads[:, None] * stride_lh + offs_n[None, :],
                     qk * scale, mask=g_mask[:, None] & n_mask[None, :])
        s = qk * scale_log2  # base-2 logits: exp2 is one instruction
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    gd_mask = g_mask[:, None] & d_mask[None, :]
    if num_splits == 1:  # the only split: it writes the output, and no combine kernel runs (large batches)
        o = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(out_ptr + row * stride_ot + heads[:, None] * stride_oh + offs_d[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=gd_mask)
    else:
        slot_out = (row * NUM_HEADS + heads) * num_splits + split  # [BLOCK_G]
        tl.store(acc_ptr + slot_out[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=gd_mask)
        tl.store(ml_ptr + slot_out * 2, m_i, mask=g_mask)
        tl.store(ml_ptr + slot_out * 2 + 1, l_i, mask=g_mask)


@triton.jit(do_not_specialize=BATCH_DEPENDENT_ARGS)
def _combine_splits_kernel(
    acc_ptr, ml_ptr, out_ptr, stride_ot, stride_oh, num_splits,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)
    head = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < num_splits
    slot = (row * NUM_HEADS + head) * num_splits + offs_s
    m = tl.load(ml_ptr + slot * 2, mask=s_mask, other=float("-inf"))
    l = tl.load(ml_ptr + slot * 2 + 1, mask=s_mask, other=0.0)
    m_max = tl.max(m, axis=0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)  # all splits empty: count 0 (padded row)
    w = tl.where(l > 0, tl.exp2(m - m_max), 0.0)
    total = tl.sum(w * l, axis=0)
    part = tl.load(
        acc_ptr + slot[:, None] * HEAD_DIM + offs_d[None, :],
        mask=s_mask[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0,
    )
    o = tl.sum(part * w[:, None], axis=0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + row * stride_ot + head * stride_oh + offs_d, o.to(out_ptr.dtype.element_ty),
             mask=offs_d < HEAD_DIM)


def plan_splits(rows: int, num_kv_heads: int, width: int, tuning: SparseDecodeTuning = DEFAULT_TUNING) -> int:
    """Splits per (row, KV head), from static sizes only, so a captured graph replays for any counts: enough
    programs to fill the GPU, none emptier than block_n tokens at full width. The kernel divides each row's own
    count over them. Where the (row, KV head) programs alone nearly fill the GPU (>= 90% of the target), one split:
    no combine kernel (H100, 32 x 16K/32K: 101.5-101.8 us instead of 104.0-104.1 with two splits,
    docs/performance.md)."""
    block_n = tuning.block_n
    if rows * num_kv_heads * 10 >= tuning.target_programs * 9:
        return 1
    splits = max(1, min(tuning.max_splits, triton.cdiv(tuning.target_programs, max(1, rows * num_kv_heads)),
                        triton.cdiv(width, block_n)))
    per_split = triton.cdiv(triton.cdiv(width, splits), block_n) * block_n
    return triton.cdiv(width, per_split)


def workspace_numel(rows: int, num_heads: int, head_dim: int, num_splits: int) -> int:
    return rows * num_heads * num_splits * (head_dim + 2)


def max_workspace_numel(max_rows: int, num_heads: int, num_kv_heads: int, head_dim: int, width: int,
                        tuning: SparseDecodeTuning = DEFAULT_TUNING) -> int:
    """Workspace for any decode batch of up to max_rows rows, for the sparse layers (tuning) and the selection
    layers' dense pass (DENSE_TUNING); the builder allocates it once."""
    return max(workspace_numel(r, num_heads, head_dim, plan_splits(r, num_kv_heads, width, t))
               for r in range(1, max_rows + 1) for t in (tuning, DENSE_TUNING))


def slots_from_positions(block_table: torch.Tensor, positions: torch.Tensor, block_size: int,
                         out: torch.Tensor | None = None) -> torch.Tensor:
    """Physical cache slots (block * block_size + offset) of logical positions [rows, n], through the block table.

    Static shapes, no host sync. Entries past a row's count hold position 0, i.e. that row's first block, which
    exists for every real row; padded rows are never read (count 0)."""
    rows = positions.shape[0]
    pos = positions.long()
    slots = block_table[:rows].gather(1, pos // block_size).long() * block_size + pos % block_size
    if out is None:
        return slots.to(torch.int32)
    out[:rows].copy_(slots)
    return out[:rows]


def sparse_decode(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    slots: torch.Tensor,
    counts: torch.Tensor,
    scale: float,
    output: torch.Tensor,
    workspace: torch.Tensor | None = None,
    tuning: SparseDecodeTuning = DEFAULT_TUNING,
    kernel: str | None = None,
) -> torch.Tensor:
    """output[b] = softmax attention of query[b] over the cache slots slots[b, :counts[b]] (0 where counts[b] == 0).

    query/output [rows, Hq, D]; kv_cache [blocks, Hkv, block_size, 2D] (any strides); slots [rows, width] int32
    (see slots_from_positions); counts [rows] int32. workspace: fp32, >= workspace_numel(...) elements.
    kernel: the split phase, "triton" or "cuda" (csrc/; an error if it cannot run); None: as the environment says
    (cuda_ext.split_launcher), falling back to Triton where the CUDA kernel cannot run.
    """
    if query.shape[0] == 0:
        return output
    num_splits = plan_splits(query.shape[0], kv_cache.shape[1], slots.shape[1], tuning)
    acc, ml = _partials(query, num_splits, workspace)
    assert query.stride(-1) == 1 and output.stride(-1) == 1
    cuda_split = cuda_ext.split_launcher(query, kv_cache, kernel)
    if cuda_split is not None:  # writes partials for any split count
        cuda_split(query, kv_cache, slots, counts, acc, ml, scale * LOG2E, num_splits)
        _combine(acc, ml, output, num_splits, tuning)
    else:
        _launch_split(query, kv_cache, slots, counts, acc, ml, output, scale, num_splits, tuning)
    return output


def _partials(query, num_splits, workspace):
    """The splits' partial results in the workspace (allocated here if none is given): acc and (max, sum)."""
    rows, num_heads, head_dim = query.shape
    need = workspace_numel(rows, num_heads, head_dim, num_splits)
    if workspace is None:
        workspace = torch.empty(need, device=query.device, dtype=torch.float32)
    assert workspace.numel() >= need, f"workspace of {workspace.numel()} elements, {need} needed"
    n_acc = rows * num_heads * num_splits * head_dim
    return workspace[:n_acc], workspace[n_acc: n_acc + rows * num_heads * num_splits * 2]


def _launch_split(query, kv_cache, tokens, counts, acc, ml, output, scale, num_splits, tuning, logits=None) -> None:
    """The split kernel, then the combine kernel where there are several splits."""
    rows, num_heads, head_dim = query.shape
    num_kv_heads, block_size = kv_cache.shape[1], kv_cache.shape[2]
    dense = logits is not None
    _sparse_decode_split_kernel[(rows, num_kv_heads, num_splits)](
        query, kv_cache, tokens, counts, acc, ml,
        query.stride(0), query.stride(1), *kv_cache.stride(), tokens.stride(0),
        scale * LOG2E, num_splits,
        logits if dense else acc, logits.stride(0) if dense else 0, logits.stride(1) if dense else 0, scale,
        output, output.stride(0), output.stride(1),
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, GROUP=num_heads // num_kv_heads, BLOCK_SIZE=block_size,
        BLOCK_G=max(16, triton.next_power_of_2(num_heads // num_kv_heads)),
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=tuning.block_n, DENSE=dense,
        num_warps=tuning.num_warps, num_stages=tuning.num_stages,
    )
    if num_splits > 1:
        _combine(acc, ml, output, num_splits, tuning)


def _combine(acc, ml, output, num_splits, tuning) -> None:
    rows, num_heads, head_dim = output.shape
    _combine_splits_kernel[(rows, num_heads)](
        acc, ml, output, output.stride(0), output.stride(1), num_splits,
        NUM_HEADS=num_heads, HEAD_DIM=head_dim,
        BLOCK_S=max(2, triton.next_power_of_2(tuning.max_splits)),  # one variant for any batch
        BLOCK_D=triton.next_power_of_2(head_dim),
    )


def dense_decode_with_logits(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    output: torch.Tensor,
    logits: torch.Tensor,
    plan_width: int,
    workspace: torch.Tensor | None = None,
    tuning: SparseDecodeTuning = DENSE_TUNING,
) -> torch.Tensor:
    """A selection layer's decode pass: output[b] = attention of query[b] over all its seq_lens[b] keys, and
    logits[b, h, t] = scale * q[b, h] . k[b, t] for t < seq_lens[b] (entries beyond are left unwritten). One read
    of the cache serves both. The splits are planned for plan_width (the builder's buffer width), as
    max_workspace_numel sizes the builder's workspace for this pass too."""
    if query.shape[0] == 0:
        return output
    num_splits = plan_splits(query.shape[0], kv_cache.shape[1], plan_width, tuning)
    acc, ml = _partials(query, num_splits, workspace)
    assert query.stride(-1) == 1 and output.stride(-1) == 1 and logits.stride(-1) == 1
    _launch_split(query, kv_cache, block_table, seq_lens, acc, ml, output, scale, num_splits, tuning, logits=logits)
    return output
