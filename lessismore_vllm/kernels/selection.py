"""Selection-layer step on GPU, in three kernels (reference: lessismore_vllm.selection.select_tokens applied to
reference.decode_logits):

1. `_decode_logits_kernel`: logits of each decode query against its keys, read through the block table.
2. `_head_topk_kernel`, one program per (row, query head): the head's top-`mid` candidates by radix select
   (exact, ties to the lower position), sorted into rank order, scattered as rank keys rank * Hq + head into a
   per-row [L] int32 buffer with atomic min: the design note's rank-key form of the rank-major union.
3. `_union_kernel`, one program per row: the `mid` smallest rank keys (radix select again; keys are unique),
   collected in position order between the sinks and the recent window, written with their physical cache slots
   into the builder's buffers. Rows whose context fits the budget get every position.
Loops run to each row's real length read on the device, so the cost follows the context, not max_model_len,
and nothing syncs with the host (CUDA-graph safe). Budgets whose `mid` exceeds MAX_SORTED_MID fall back to the
static-shape torch form (lessismore_vllm.selection.select_tokens_batched).
"""

from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl

from lessismore_vllm.kernels.sparse_decode import slots_from_positions
from lessismore_vllm.selection import INT32_MAX, budget_split, select_tokens_batched

LOGITS_CHUNK_BYTES = 256 << 20  # bounds the transient [rows, Hq, N] fp32 logits of one chunk of decode rows
MAX_SORTED_MID = 4096  # a head's top-mid list is sorted in registers: up to 4096 entries


@triton.jit
def _decode_logits_kernel(
    q_ptr, kv_ptr, block_table_ptr, seq_lens_ptr, out_ptr,
    stride_qt, stride_qh,
    stride_kv_block, stride_kv_head, stride_kv_slot, stride_kv_chan,
    stride_bt, stride_ot, stride_oh,
    scale, block_size,
    HEAD_DIM: tl.constexpr, GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr, FILL_TAIL: tl.constexpr,
):
    """out[row, h, t] = scale * q[row, h] . k[row, t] for t < seq_len, -inf beyond if FILL_TAIL (one tile of t
    per program)."""
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
        if FILL_TAIL:
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


@triton.jit
def _radix_key(ptr, offs, mask, IS_LOGIT: tl.constexpr, KEY_CAP: tl.constexpr):
    """Keys as non-negative int64 whose order is the selection order (larger = preferred).
    Logits: fp32 bits mapped to an order-preserving integer in [0, 2^32). Rank keys: KEY_CAP - min(key, KEY_CAP),
    so smaller rank keys are larger and unset entries (INT32_MAX) become 0."""
    if IS_LOGIT:
        bits = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.int32, bitcast=True)
        ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # negative floats: reverse their magnitude order
        return ordered.to(tl.int64) + 2147483648
    else:
        key = tl.load(ptr + offs, mask=mask, other=2147483647)
        return KEY_CAP - tl.minimum(key, KEY_CAP).to(tl.int64)


@triton.jit
def _kth_largest(ptr, lo, hi, k, IS_LOGIT: tl.constexpr, KEY_CAP: tl.constexpr, ROUNDS: tl.constexpr,
                 BLOCK: tl.constexpr):
    """Radix select, 8 bits a round from the top: the k-th largest key in ptr[lo:hi] (k <= hi - lo), and how many
    keys equal to it belong to the top k."""
    bins = tl.arange(0, 512)
    prefix = lo.to(tl.int64) * 0
    for r in tl.static_range(ROUNDS):
        shift = (ROUNDS - 1 - r) * 8
        counts = tl.zeros([512], dtype=tl.int32)
        for n0 in range(lo, hi, BLOCK):
            offs = n0 + tl.arange(0, BLOCK)
            m = offs < hi
            u = _radix_key(ptr, offs, m, IS_LOGIT, KEY_CAP)
            match = m & ((u >> (shift + 8)) == (prefix >> (shift + 8)))
            digit = tl.where(match, ((u >> shift) & 255).to(tl.int32), 256)  # 256..511: not counted
            counts += tl.histogram(digit, 512)
        counts = tl.where(bins < 256, counts, 0)
        at_least = tl.sum(counts, axis=0) - tl.cumsum(counts, axis=0) + counts  # keys with this digit or above
        chosen = tl.max(tl.where((at_least >= k) & (bins < 256), bins, -1), axis=0)
        k = k - tl.sum(tl.where(bins > chosen, counts, 0), axis=0)
        prefix = prefix + (chosen.to(tl.int64) << shift)
    return prefix, k


@triton.jit
def _head_topk_kernel(
    logits_ptr, seq_lens_ptr, scratch_ptr, keys_ptr,
    stride_lt, stride_lh, stride_st, stride_sh, stride_kt, head_offset,
    TOTAL_HEADS: tl.constexpr, BUDGET: tl.constexpr, MID: tl.constexpr, MID_PAD: tl.constexpr,
    SINKS: tl.constexpr, RECENT: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    head = tl.program_id(1)
    L = tl.load(seq_lens_ptr + row)
    if L > BUDGET:
        lo = SINKS + L * 0
        hi = L - RECENT
        ptr = logits_ptr + row.to(tl.int64) * stride_lt + head * stride_lh
        tau, take_equal = _kth_largest(ptr, lo, hi, MID, True, 0, 4, BLOCK)
        # The top MID: every key above tau, and the first take_equal keys equal to it (lower positions first).
        scratch = scratch_ptr + row.to(tl.int64) * stride_st + head * stride_sh
        written = L * 0
        equal_seen = L * 0
        for n0 in range(lo, hi, BLOCK):
            offs = n0 + tl.arange(0, BLOCK)
            m = offs < hi
            u = _radix_key(ptr, offs, m, True, 0)
            equal = m & (u == tau)
            equal_rank = equal_seen + tl.cumsum(equal.to(tl.int32), axis=0) - 1
            take = (m & (u > tau)) | (equal & (equal_rank < take_equal))
            idx = written + tl.cumsum(take.to(tl.int32), axis=0) - 1
            # descending order of packed = key descending, then position ascending
            packed = (u - 2147483648) * 4294967296 + (4294967295 - offs.to(tl.int64))
            tl.store(scratch + idx, packed, mask=take)
            written += tl.sum(take.to(tl.int32), axis=0)
            equal_seen += tl.sum(equal.to(tl.int32), axis=0)
        ranks = tl.arange(0, MID_PAD)
        packed = tl.load(scratch + ranks, mask=ranks < MID, other=-9223372036854775807)
        ordered = tl.sort(packed, descending=True)
        pos = 4294967295 - (ordered & 4294967295)
        key = ranks * TOTAL_HEADS + head_offset + head  # global head index under tensor parallelism
        tl.atomic_min(keys_ptr + row.to(tl.int64) * stride_kt + pos, key.to(tl.int32), mask=ranks < MID)


@triton.jit
def _union_kernel(
    keys_ptr, seq_lens_ptr, block_table_ptr, positions_ptr, slots_ptr, counts_ptr,
    stride_kt, stride_bt, stride_pt, stride_st,
    BUDGET: tl.constexpr, MID: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr,
    KEY_CAP: tl.constexpr, KEY_ROUNDS: tl.constexpr, CACHE_BLOCK: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    L = tl.load(seq_lens_ptr + row)
    positions = positions_ptr + row.to(tl.int64) * stride_pt
    slots = slots_ptr + row.to(tl.int64) * stride_st
    table = block_table_ptr + row.to(tl.int64) * stride_bt
    if L <= BUDGET:  # the whole context (padded rows: L = 0, nothing)
        for n0 in range(0, L, BLOCK):
            offs = n0 + tl.arange(0, BLOCK)
            m = offs < L
            block = tl.load(table + offs // CACHE_BLOCK, mask=m, other=0)
            tl.store(positions + offs, offs, mask=m)
            tl.store(slots + offs, block * CACHE_BLOCK + offs % CACHE_BLOCK, mask=m)
        tl.store(counts_ptr + row, L)
    else:
        lo = SINKS + L * 0
        hi = L - RECENT
        keys = keys_ptr + row.to(tl.int64) * stride_kt
        tau, _ = _kth_largest(keys, lo, hi, MID, False, KEY_CAP, KEY_ROUNDS, BLOCK)
        written = L * 0
        for n0 in range(lo, hi, BLOCK):  # rank keys are unique: exactly MID keys reach tau
            offs = n0 + tl.arange(0, BLOCK)
            m = offs < hi
            take = m & (_radix_key(keys, offs, m, False, KEY_CAP) >= tau)
            idx = SINKS + written + tl.cumsum(take.to(tl.int32), axis=0) - 1
            block = tl.load(table + offs // CACHE_BLOCK, mask=take, other=0)
            tl.store(positions + idx, offs, mask=take)
            tl.store(slots + idx, block * CACHE_BLOCK + offs % CACHE_BLOCK, mask=take)
            written += tl.sum(take.to(tl.int32), axis=0)
        for n0 in range(0, SINKS + RECENT, BLOCK):  # sinks [0, SINKS) and the recent window [L - RECENT, L)
            offs = n0 + tl.arange(0, BLOCK)
            m = offs < SINKS + RECENT
            pos = tl.where(offs < SINKS, offs, L - RECENT + offs - SINKS)
            idx = tl.where(offs < SINKS, offs, MID + offs)
            block = tl.load(table + pos // CACHE_BLOCK, mask=m, other=0)
            tl.store(positions + idx, pos, mask=m)
            tl.store(slots + idx, block * CACHE_BLOCK + pos % CACHE_BLOCK, mask=m)
        tl.store(counts_ptr + row, BUDGET + L * 0)


def decode_logits(
    query: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor, scale: float,
    width: int, block_n: int = 64, fill_tail: bool = True,
) -> torch.Tensor:
    """[rows, Hq, width] fp32 logits of each decode query against its keys; -inf at t >= seq_len if fill_tail
    (else left unwritten: the Triton selection reads only t < seq_len)."""
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
        BLOCK_D=triton.next_power_of_2(head_dim), BLOCK_N=block_n, FILL_TAIL=fill_tail,
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
    out_slots: torch.Tensor | None = None,
    method: str = "auto",
    total_heads: int | None = None,
    head_offset: int = 0,
    combine_keys: Callable[[torch.Tensor], None] | None = None,
) -> None:
    """Write each decode row's selected positions (ascending) and counts, and their physical cache slots, into
    the builder's buffers. No host sync. method: "triton" (the three kernels), "torch" (logits kernel +
    select_tokens_batched), "auto" = triton unless mid > MAX_SORTED_MID.
    Tensor parallelism: query holds heads [head_offset, head_offset + Hq_local) of total_heads, and
    combine_keys(keys) must replace the per-row rank keys by their MIN over the ranks (an all-reduce)."""
    rows, num_heads, _ = query.shape
    total_heads = total_heads or num_heads
    if rows == 0:
        return
    budget = min(budget, out_positions.shape[1])  # width < budget only when max_model_len < budget: all dense
    block_size = kv_cache.shape[2]
    max_len = block_table.shape[1] * block_size
    split = budget_split(budget + 1, budget, recency_ratio, sinks)  # the split of every row longer than budget
    if method == "auto":
        method = "triton" if split.mid <= MAX_SORTED_MID else "torch"
    if out_slots is None:
        out_slots = torch.empty_like(out_positions)
    chunk = max(1, LOGITS_CHUNK_BYTES // (num_heads * max_len * 4))
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        q, table, lens = query[r0:r1], block_table[r0:r1], seq_lens[r0:r1]
        if method == "torch":
            if max_len > budget:
                logits = decode_logits(q, kv_cache, table, lens, scale, max_len)
            else:  # every row fits the budget: all positions, logits unused
                logits = query.new_empty((r1 - r0, num_heads, 0))
            select_tokens_batched(logits, lens, budget, recency_ratio, sinks, out_positions[r0:], out_counts[r0:],
                                  total_heads, head_offset, combine_keys)
            slots_from_positions(table, out_positions[r0:r1, :budget], block_size, out_slots[r0:, :budget])
            continue
        keys = torch.full((r1 - r0, max_len), INT32_MAX, device=query.device, dtype=torch.int32)
        if max_len > budget and split.mid > 0:
            logits = decode_logits(q, kv_cache, table, lens, scale, max_len, fill_tail=False)
            scratch = torch.empty(r1 - r0, num_heads, split.mid, device=query.device, dtype=torch.int64)
            _head_topk_kernel[(r1 - r0, num_heads)](
                logits, lens, scratch, keys,
                logits.stride(0), logits.stride(1), scratch.stride(0), scratch.stride(1), keys.stride(0), head_offset,
                TOTAL_HEADS=total_heads, BUDGET=budget, MID=split.mid, MID_PAD=triton.next_power_of_2(split.mid),
                SINKS=split.sinks, RECENT=split.recent, BLOCK=1024, num_warps=8,
            )
            if combine_keys is not None:
                combine_keys(keys)
        key_cap = max(255, split.mid * total_heads)
        _union_kernel[(r1 - r0,)](
            keys, lens, table, out_positions[r0:], out_slots[r0:], out_counts[r0:],
            keys.stride(0), table.stride(0), out_positions.stride(0), out_slots.stride(0),
            BUDGET=budget, MID=split.mid, SINKS=split.sinks, RECENT=split.recent,
            KEY_CAP=key_cap, KEY_ROUNDS=(key_cap.bit_length() + 7) // 8, CACHE_BLOCK=block_size, BLOCK=1024,
            num_warps=8,
        )
