"""Selection-layer step on GPU: decode-query logits read through the block table (Triton), then the rank-key
union of lessismore_vllm.selection.select_tokens_batched (static-shape torch ops), written into the
builder's buffers. Reference: lessismore_vllm.selection.select_tokens on reference.decode_logits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lessismore_vllm.selection import select_tokens_batched

LOGITS_CHUNK_BYTES = 256 << 20  # bounds the transient [rows, Hq, N] fp32 logits of one chunk of decode rows


@triton.jit
def _decode_logits_kernel(
    q_ptr, kv_ptr, block_table_ptr, seq_lens_ptr, out_ptr,
    stride_qt, stride_qh,
    stride_kv_block, stride_kv_head, stride_kv_slot, stride_kv_chan,
    stride_bt, stride_ot, stride_oh,
    scale, block_size,
    HEAD_DIM: tl.constexpr, GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """out[row, h, t] = scale * q[row, h] . k[row, t] for t < seq_len, -inf beyond (one tile of t per program)."""
    row = tl.program_id(0)
    kv_head = tl.program_id(1)
    tile = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + row)
    offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    heads = kv_head * GROUP + offs_g
    g_mask = offs_g < GROUP
    out_ptrs = out_ptr + row * stride_ot + heads[:, None] * stride_oh + offs_n[None, :]
    if tile * BLOCK_N >= seq_len:
        tl.store(out_ptrs, tl.full([BLOCK_G, BLOCK_N], float("-inf"), tl.float32), mask=g_mask[:, None])
        return
    n_mask = offs_n < seq_len
    d_mask = offs_d < HEAD_DIM
    q = tl.load(q_ptr + row * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                mask=g_mask[:, None] & d_mask[None, :], other=0.0)
    block = tl.load(block_table_ptr + row * stride_bt + offs_n // block_size, mask=n_mask, other=0)
    base = block.to(tl.int64) * stride_kv_block + kv_head * stride_kv_head + (offs_n % block_size) * stride_kv_slot
    k = tl.load(kv_ptr + base[:, None] + offs_d[None, :] * stride_kv_chan,
                mask=n_mask[:, None] & d_mask[None, :], other=0.0)
    s = tl.dot(q, tl.trans(k)) * scale
    s = tl.where(n_mask[None, :], s, float("-inf"))
    tl.store(out_ptrs, s, mask=g_mask[:, None])


def decode_logits(
    query: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor, scale: float,
    width: int, block_n: int = 64,
) -> torch.Tensor:
    """[rows, Hq, width] fp32 logits of each decode query against its keys (-inf at t >= seq_len)."""
    rows, num_heads, head_dim = query.shape
    num_kv_heads = kv_cache.shape[1]
    group = num_heads // num_kv_heads
    width = triton.cdiv(width, block_n) * block_n
    out = torch.empty(rows, num_heads, width, device=query.device, dtype=torch.float32)
    if rows == 0:
        return out
    _decode_logits_kernel[(rows, num_kv_heads, width // block_n)](
        query, kv_cache, block_table, seq_lens, out,
        query.stride(0), query.stride(1), *kv_cache.stride(), block_table.stride(0), out.stride(0), out.stride(1),
        scale, kv_cache.shape[2],
        HEAD_DIM=head_dim, GROUP=group, BLOCK_G=max(16, triton.next_power_of_2(group)),
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n,
    )
    return out


def select(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    budget: int,
    recency_ratio: float,
    sinks: int,
    out_positions: torch.Tensor,
    out_counts: torch.Tensor,
) -> None:
    """Write each decode row's selected positions/counts into the builder's buffers (no host sync)."""
    rows, num_heads, _ = query.shape
    budget = min(budget, out_positions.shape[1])  # width < budget only when max_model_len < budget: all dense
    max_len = block_table.shape[1] * kv_cache.shape[2]
    chunk = max(1, LOGITS_CHUNK_BYTES // (num_heads * max_len * 4))
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        if max_len > budget:
            logits = decode_logits(query[r0:r1], kv_cache, block_table[r0:r1], seq_lens[r0:r1], scale, max_len)
        else:  # every row fits the budget: all positions, logits unused
            logits = query.new_empty((r1 - r0, num_heads, 0))
        select_tokens_batched(
            logits, seq_lens[r0:r1], budget, recency_ratio, sinks, out_positions[r0:], out_counts[r0:]
        )
