"""Selection-layer step on GPU (reference: lessismore_vllm.selection.select_tokens applied to
reference.decode_logits):

1. `_decode_logits_kernel`: logits of each decode query against its keys, read through the block table (or, for
   a selection layer's decode-only step, sparse_decode.dense_decode_with_logits: the same logits from the pass
   that computes the layer's attention).
2. Each (row, query head)'s top-`mid` logits and the rank keys. On CUDA, by default, one kernel does all of this step
   (csrc/rank_keys.cu's rank_keys_from_logits: a radix select, then the rank order by buckets or a stable sort, per
   (row, head); mid <= 2048).
   With LESSISMORE_SELECTION_TOPK=flashinfer (or where csrc/ does not build): FlashInfer's ragged radix top-k, ties
   to the lower position (_flashinfer_top_k; mid <= FLASHINFER_MAX_TOP_K). Elsewhere (Triton's interpreter on CPU,
   larger budgets) or with LESSISMORE_SELECTION_TOPK=triton: a radix select split across many programs: 4 rounds
   of 8-bit digit histograms summed into a per-head global histogram (`_radix_hist_kernel`), per-tile counts above
   and at the threshold (`_radix_count_kernel`), and `_radix_collect_kernel`, which writes the winners in position
   order (ties to the lower position, as in the oracle). `_rank_keys_kernel` sorts each head's list into rank
   order and scatters rank keys rank * Hq + head into a per-row [L] int32 buffer with atomic min: the design note's
   rank-key form of the rank-major union. After FlashInfer's top-k, csrc/rank_keys.cu's rank_keys (a CUB block
   radix sort, cuda_ext.rank_keys_launcher) does this sort where it builds: 2.2-3.3x faster on the H100.
3. The union: the same radix select over each row's rank keys (unique, so no ties) picks the `mid` smallest and
   writes their positions and physical cache slots, in position order, between the sinks and the recent window.
Before these, `_prepare_kernel` does in one launch what needs no logits: the sinks and the recent window (every
position of rows that fit the budget), the counts, the rank keys' and histograms' initial values, and FlashInfer's
per-head candidate ranges.
Every kernel reads each row's real length on the device and skips tiles past it, so the cost follows the context,
not max_model_len, and nothing syncs with the host (CUDA-graph safe). The work of one row is spread over up to
SELECT_TARGET_PROGRAMS programs, so a batch of one uses the whole GPU. Budgets whose `mid` exceeds MAX_SORTED_MID
fall back to the static-shape torch form (lessismore_vllm.selection.select_tokens_batched).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Callable

import torch
import triton
import triton.language as tl

from lessismore_vllm.config import env_choice
from lessismore_vllm.kernels import cuda_ext
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits, slots_from_positions
from lessismore_vllm.selection import budget_split, select_tokens_batched

LOGITS_CHUNK_BYTES = 256 << 20  # bounds the transient [rows, Hq, N] fp32 logits of one chunk of decode rows
MAX_SORTED_MID = 4096  # a head's top-mid list is sorted in registers: up to 4096 entries
SELECT_TILE = 1024  # keys per tile of the radix-select kernels
SELECT_TARGET_PROGRAMS = 4096  # programs per radix-select launch, when there are enough tiles
RADIX_WARPS = 4  # warps per program of the radix-select kernels
RANK_KEYS_WARPS = 32  # warps per (row, head) program of the rank-key sort (H100: 5-17% less selection time than 8)
logger = logging.getLogger("vllm.lessismore")
FLASHINFER_MAX_TOP_K = 2048  # FlashInfer 0.6.14's ragged top-k: k = 1536 ran, 3072 failed ("operation not supported")
TOPK_ENV = "LESSISMORE_SELECTION_TOPK"
# "auto": csrc/rank_keys.cu's per-head top-k + rank keys where it builds, else FlashInfer's top-k, else the radix
# kernels; "flashinfer": FlashInfer's top-k (then csrc/rank_keys.cu's or the Triton sort); "triton": the radix kernels
TOPK_CHOICES = ("auto", "flashinfer", "triton")
BATCH_DEPENDENT_ARGS = ["programs", "rows"]  # runtime values, never specialised on (sparse_decode.BATCH_DEPENDENT_ARGS)


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
    """Keys as uint32 whose order is the selection order (larger = preferred; 32-bit, as 64-bit integer math is
    emulated on GPUs). Logits: fp32 bits made order-preserving (negatives flipped whole, positives get the sign bit).
    Rank keys: KEY_CAP - min(key, KEY_CAP), so smaller rank keys are larger and unset entries (INT32_MAX) 0.
    -0.0 (bits 0x80000000) keeps its bits, which are +0.0's key: the two are equal, as in the oracle's sort."""
    if IS_LOGIT:
        bits = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.uint32, bitcast=True)
        return tl.where(bits == 0x80000000, bits, bits ^ tl.where((bits >> 31) != 0, 0xFFFFFFFF, 0x80000000))
    else:
        key = tl.load(ptr + offs, mask=mask, other=2147483647)
        return (KEY_CAP - tl.minimum(key, KEY_CAP)).to(tl.uint32)


@triton.jit
def _radix_prefix(hist_ptr, k, DONE: tl.constexpr, ROUNDS: tl.constexpr):
    """Replays the first DONE rounds of a radix select from their 256-bin histograms: the key prefix fixed so far
    (the k-th largest key once DONE == ROUNDS), and how many keys equal to that prefix still belong to the top k."""
    bins = tl.arange(0, 256)
    prefix = (k * 0).to(tl.uint32)
    for r in tl.static_range(DONE):
        counts = tl.load(hist_ptr + r * 256 + bins)
        at_least = tl.sum(counts, axis=0) - tl.cumsum(counts, axis=0) + counts  # keys with this digit or above
        chosen = tl.max(tl.where(at_least >= k, bins, -1), axis=0)
        k = k - tl.sum(tl.where(bins > chosen, counts, 0), axis=0)
        prefix = prefix + (chosen.to(tl.uint32) << ((ROUNDS - 1 - r) * 8))
    return prefix, k


@triton.jit
def _segment(row, seg, seq_lens_ptr, data_ptr, hist_ptr, stride_dr, stride_ds, stride_hr, stride_hs,
             BUDGET: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr):
    """A segment = one (row, query head) logit row, or one row of rank keys: its candidate range [lo, hi) (empty
    when the row fits the budget) and its data and histogram pointers."""
    L = tl.load(seq_lens_ptr + row)
    lo = SINKS + L * 0
    hi = tl.where(L > BUDGET, L - RECENT, lo)
    data = data_ptr + row.to(tl.int64) * stride_dr + seg * stride_ds
    hist = hist_ptr + row.to(tl.int64) * stride_hr + seg * stride_hs
    return lo, hi, data, hist


@triton.jit(do_not_specialize=BATCH_DEPENDENT_ARGS)
def _radix_hist_kernel(
    data_ptr, seq_lens_ptr, hist_ptr, stride_dr, stride_ds, stride_hr, stride_hs, programs,
    ROUND: tl.constexpr, ROUNDS: tl.constexpr, IS_LOGIT: tl.constexpr, KEY_CAP: tl.constexpr,
    BUDGET: tl.constexpr, MID: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr, TILE: tl.constexpr,
):
    """One radix round over a segment, split across programs by tiles: each adds its tiles' histogram of the
    round's 8-bit digit (keys matching the prefix fixed by earlier rounds) into the segment's global histogram."""
    row = tl.program_id(0)
    seg = tl.program_id(1)
    lo, hi, data, hist = _segment(row, seg, seq_lens_ptr, data_ptr, hist_ptr, stride_dr, stride_ds, stride_hr,
                                  stride_hs, BUDGET, SINKS, RECENT)
    if hi > lo:
        prefix, _ = _radix_prefix(hist, MID + lo * 0, ROUND, ROUNDS)
        shift = (ROUNDS - 1 - ROUND) * 8
        counts = tl.zeros([256], dtype=tl.int32)
        unmatched = lo * 0
        for t in range(tl.program_id(2), tl.cdiv(hi, TILE), programs):
            offs = t * TILE + tl.arange(0, TILE)
            m = (offs >= lo) & (offs < hi)
            u = _radix_key(data, offs, m, IS_LOGIT, KEY_CAP)
            if ROUND == 0:  # no prefix yet (and a 32-bit shift by 32 is undefined)
                match = m
            else:
                match = m & ((u >> (shift + 8)) == (prefix >> (shift + 8)))
            # Unmatched keys land in bin 0 and are taken out again below: 256 bins instead of a masked 512.
            counts += tl.histogram(tl.where(match, (u >> shift) & 255, 0).to(tl.int32), 256)
            unmatched += TILE - tl.sum(match.to(tl.int32), axis=0)
        bins = tl.arange(0, 256)
        counts -= tl.where(bins == 0, unmatched, 0)
        tl.atomic_add(hist + ROUND * 256 + bins, counts, mask=counts > 0)


@triton.jit(do_not_specialize=BATCH_DEPENDENT_ARGS)
def _radix_count_kernel(
    data_ptr, seq_lens_ptr, hist_ptr, tile_counts_ptr, stride_dr, stride_ds, stride_hr, stride_hs,
    stride_cr, stride_cs, programs,
    ROUNDS: tl.constexpr, IS_LOGIT: tl.constexpr, KEY_CAP: tl.constexpr,
    BUDGET: tl.constexpr, MID: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr, TILE: tl.constexpr,
):
    """Per tile of a segment: how many keys are above the k-th largest (tau) and how many equal it."""
    row = tl.program_id(0)
    seg = tl.program_id(1)
    lo, hi, data, hist = _segment(row, seg, seq_lens_ptr, data_ptr, hist_ptr, stride_dr, stride_ds, stride_hr,
                                  stride_hs, BUDGET, SINKS, RECENT)
    if hi > lo:
        tau, _ = _radix_prefix(hist, MID + lo * 0, ROUNDS, ROUNDS)
        tile_counts = tile_counts_ptr + row.to(tl.int64) * stride_cr + seg * stride_cs
        for t in range(tl.program_id(2), tl.cdiv(hi, TILE), programs):
            offs = t * TILE + tl.arange(0, TILE)
            m = (offs >= lo) & (offs < hi)
            u = _radix_key(data, offs, m, IS_LOGIT, KEY_CAP)
            tl.store(tile_counts + 2 * t, tl.sum((m & (u > tau)).to(tl.int32), axis=0))
            tl.store(tile_counts + 2 * t + 1, tl.sum((m & (u == tau)).to(tl.int32), axis=0))


@triton.jit(do_not_specialize=BATCH_DEPENDENT_ARGS)
def _radix_collect_kernel(
    data_ptr, seq_lens_ptr, hist_ptr, tile_counts_ptr, out_ptr, slots_ptr, block_table_ptr,
    stride_dr, stride_ds, stride_hr, stride_hs, stride_cr, stride_cs, stride_or, stride_os, stride_sr, stride_bt,
    programs,
    ROUNDS: tl.constexpr, IS_LOGIT: tl.constexpr, KEY_CAP: tl.constexpr,
    BUDGET: tl.constexpr, MID: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr, TILE: tl.constexpr,
    MAX_TILES: tl.constexpr, CACHE_BLOCK: tl.constexpr,
):
    """The segment's top MID keys in position order: every key above tau and the first keys equal to it (lower
    positions first), each tile placed after the tiles before it (their counts). Logit segments write
    (key, position) packed for the per-head sort; rank-key rows write the union's positions and cache slots."""
    row = tl.program_id(0)
    seg = tl.program_id(1)
    lo, hi, data, hist = _segment(row, seg, seq_lens_ptr, data_ptr, hist_ptr, stride_dr, stride_ds, stride_hr,
                                  stride_hs, BUDGET, SINKS, RECENT)
    if hi > lo:
        tau, take_equal = _radix_prefix(hist, MID + lo * 0, ROUNDS, ROUNDS)
        tile_counts = tile_counts_ptr + row.to(tl.int64) * stride_cr + seg * stride_cs
        tiles = tl.arange(0, MAX_TILES)
        for t in range(tl.program_id(2), tl.cdiv(hi, TILE), programs):
            before = tiles < t
            greater_before = tl.sum(tl.load(tile_counts + 2 * tiles, mask=before, other=0), axis=0)
            equal_before = tl.sum(tl.load(tile_counts + 2 * tiles + 1, mask=before, other=0), axis=0)
            offs = t * TILE + tl.arange(0, TILE)
            m = (offs >= lo) & (offs < hi)
            u = _radix_key(data, offs, m, IS_LOGIT, KEY_CAP)
            equal = m & (u == tau)
            equal_rank = equal_before + tl.cumsum(equal.to(tl.int32), axis=0) - 1
            take = (m & (u > tau)) | (equal & (equal_rank < take_equal))
            idx = greater_before + tl.minimum(equal_before, take_equal) + tl.cumsum(take.to(tl.int32), axis=0) - 1
            if IS_LOGIT:
                packed = _pack_key_position(u, offs)
                tl.store(out_ptr + row.to(tl.int64) * stride_or + seg * stride_os + idx, packed, mask=take)
            else:
                block = tl.load(block_table_ptr + row.to(tl.int64) * stride_bt + offs // CACHE_BLOCK, mask=take,
                                other=0)
                tl.store(out_ptr + row.to(tl.int64) * stride_or + SINKS + idx, offs, mask=take)
                tl.store(slots_ptr + row.to(tl.int64) * stride_sr + SINKS + idx,
                         block * CACHE_BLOCK + offs % CACHE_BLOCK, mask=take)


@triton.jit
def _pack_key_position(u, pos):
    """(key, position) as one int64 whose descending order is key descending, then position ascending."""
    return (u.to(tl.int64) - 2147483648) * 4294967296 + (4294967295 - pos.to(tl.int64))


@triton.jit
def _rank_keys_kernel(
    scratch_ptr, seq_lens_ptr, keys_ptr, logits_ptr, stride_st, stride_sh, stride_kt, stride_lr, stride_lh,
    head_offset,
    TOTAL_HEADS: tl.constexpr, BUDGET: tl.constexpr, MID: tl.constexpr, MID_PAD: tl.constexpr,
    FROM_POSITIONS: tl.constexpr,
):
    """One (row, head): its top MID sorted into rank order, scattered as rank keys rank * Hq + head into the row's
    [L] key buffer with atomic min (the design note's rank-key form of the rank-major union). The scratch holds
    the top MID as packed (key, position), or, if FROM_POSITIONS, as int32 positions whose keys are read from the
    logits."""
    row = tl.program_id(0)
    head = tl.program_id(1)
    if tl.load(seq_lens_ptr + row) > BUDGET:
        ranks = tl.arange(0, MID_PAD)
        scratch = scratch_ptr + row.to(tl.int64) * stride_st + head * stride_sh
        if FROM_POSITIONS:
            top = tl.load(scratch + ranks, mask=ranks < MID, other=0)
            logits = logits_ptr + row.to(tl.int64) * stride_lr + head * stride_lh
            packed = _pack_key_position(_radix_key(logits, top, ranks < MID, True, 0), top)
            packed = tl.where(ranks < MID, packed, -9223372036854775807)
        else:
            packed = tl.load(scratch + ranks, mask=ranks < MID, other=-9223372036854775807)
        ordered = tl.sort(packed, descending=True)
        pos = 4294967295 - (ordered & 4294967295)
        key = ranks * TOTAL_HEADS + head_offset + head  # global head index under tensor parallelism
        tl.atomic_min(keys_ptr + row.to(tl.int64) * stride_kt + pos, key.to(tl.int32), mask=ranks < MID)


@triton.jit(do_not_specialize=["rows"])
def _prepare_kernel(
    seq_lens_ptr, block_table_ptr, positions_ptr, slots_ptr, counts_ptr, keys_ptr, hist_ptr, ranges_ptr,
    stride_bt, stride_pt, stride_st, stride_kt, max_len, rows,
    BUDGET: tl.constexpr, MID: tl.constexpr, SINKS: tl.constexpr, RECENT: tl.constexpr,
    CACHE_BLOCK: tl.constexpr, BLOCK: tl.constexpr, NUM_HEADS: tl.constexpr, BLOCK_H: tl.constexpr,
    RANKED: tl.constexpr, HEAD_RANGES: tl.constexpr,
):
    """Everything of a selection step that needs no logits, in one launch (at batch 1 each launch is a few us):
    every position of a row that fits the budget, else the sinks and the recent window (the union fills the MID
    entries between them), and each row's count. RANKED: also the row's rank keys set to 'in no head's top'
    (INT32_MAX) and its radix histograms zeroed; HEAD_RANGES: each (row, head)'s candidate range for FlashInfer's
    top-k, ranges[0] = first candidate (SINKS), ranges[1] = count (0 for rows that fit the budget)."""
    row = tl.program_id(0)
    L = tl.load(seq_lens_ptr + row)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    dense = L <= BUDGET
    pos = tl.where(dense | (offs < SINKS), offs, L - RECENT + offs - SINKS)
    idx = tl.where(dense | (offs < SINKS), offs, MID + offs)
    m = tl.where(dense, offs < L, offs < SINKS + RECENT)
    block = tl.load(block_table_ptr + row.to(tl.int64) * stride_bt + pos // CACHE_BLOCK, mask=m, other=0)
    tl.store(positions_ptr + row.to(tl.int64) * stride_pt + idx, pos, mask=m)
    tl.store(slots_ptr + row.to(tl.int64) * stride_st + idx, block * CACHE_BLOCK + pos % CACHE_BLOCK, mask=m)
    if tl.program_id(1) == 0:
        tl.store(counts_ptr + row, tl.minimum(L, BUDGET))
    if RANKED:
        tl.store(keys_ptr + row.to(tl.int64) * stride_kt + offs, tl.full([BLOCK], 2147483647, tl.int32),
                 mask=offs < max_len)
        hist_numel = (NUM_HEADS + 1) * 4 * 256  # [Hq + 1, 4 rounds, 256 bins] per row
        tl.store(hist_ptr + row.to(tl.int64) * hist_numel + offs, tl.zeros([BLOCK], tl.int32),
                 mask=offs < hist_numel)
    if HEAD_RANGES:
        if tl.program_id(1) == 0:
            heads = tl.arange(0, BLOCK_H)
            h_mask = heads < NUM_HEADS
            at = ranges_ptr + row * NUM_HEADS + heads
            tl.store(at, tl.full([BLOCK_H], SINKS, tl.int32), mask=h_mask)
            count = tl.where(dense, 0, L - SINKS - RECENT)
            tl.store(at + rows * NUM_HEADS, tl.full([BLOCK_H], 0, tl.int32) + count, mask=h_mask)


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
    attention_out: torch.Tensor | None = None,
    workspace: torch.Tensor | None = None,
    selection_stream: torch.cuda.Stream | None = None,
) -> None:
    """Write each decode row's selected positions (ascending) and counts, and their physical cache slots, into
    the builder's buffers. No host sync. method: "triton" (the radix-select kernels), "torch" (logits kernel +
    select_tokens_batched), "auto" = triton unless mid > MAX_SORTED_MID.
    attention_out: when given, the rows' dense decode attention is written there by the same pass that computes
    the logits (sparse_decode.dense_decode_with_logits: one read of the cache instead of two); workspace is the
    sparse layers' split workspace it may use.
    selection_stream: where given, everything after the attention pass runs on it (after the current stream's work
    so far); the caller makes the current stream wait for it before reading the outputs.
    Tensor parallelism: query holds heads [head_offset, head_offset + Hq_local) of total_heads, and
    combine_keys(keys) must replace the per-row rank keys by their MIN over the ranks (an all-reduce)."""
    rows, num_heads, _ = query.shape
    total_heads = total_heads or num_heads
    if rows == 0:
        return
    width = out_positions.shape[1]
    budget = min(budget, width)  # width < budget only when max_model_len < budget: all dense
    block_size = kv_cache.shape[2]
    max_len = block_table.shape[1] * block_size
    split = budget_split(budget + 1, budget, recency_ratio, sinks)  # the split of every row longer than budget
    if method == "auto":
        method = "triton" if split.mid <= MAX_SORTED_MID else "torch"
    if out_slots is None:
        out_slots = torch.empty_like(out_positions)
    ranked = max_len > budget and split.mid > 0  # else every row fits the budget, or nothing is ranked
    chunk = max(1, LOGITS_CHUNK_BYTES // (num_heads * max_len * 4))
    for r0 in range(0, rows, chunk):
        r1 = min(rows, r0 + chunk)
        q, table, lens = query[r0:r1], block_table[r0:r1], seq_lens[r0:r1]
        logits = None
        if attention_out is not None:
            logits = torch.empty(r1 - r0, num_heads, max_len, device=query.device, dtype=torch.float32)
            if method == "torch":  # the torch rule reads every entry of the row: -inf past each row's length
                logits.fill_(float("-inf"))
            dense_decode_with_logits(q, kv_cache, table, lens, scale, attention_out[r0:r1], logits, width,
                                     workspace)
        elif ranked:
            logits = decode_logits(q, kv_cache, table, lens, scale, max_len, fill_tail=method == "torch")
        if selection_stream is not None and logits is not None:
            logits.record_stream(selection_stream)  # allocated here, read there: not reused before it is done
        # From here on only the logits, lengths and block table are read (not the query, which the caller may free)
        with _on_stream(selection_stream):
            if method == "torch":
                if not ranked:  # every row fits the budget: all positions, logits unused
                    logits = query.new_empty((r1 - r0, num_heads, 0))
                select_tokens_batched(logits, lens, budget, recency_ratio, sinks, out_positions[r0:],
                                      out_counts[r0:], total_heads, head_offset, combine_keys)
                slots_from_positions(table, out_positions[r0:r1, :budget], block_size, out_slots[r0:, :budget])
            else:
                _select_triton(logits if ranked else None, table, lens, block_size, num_heads, budget, split,
                               out_positions[r0:], out_slots[r0:], out_counts[r0:], total_heads, head_offset,
                               combine_keys)


@contextlib.contextmanager
def _on_stream(stream: torch.cuda.Stream | None):
    """Work issued inside runs on `stream` after all work issued so far on the current stream (None: in line)."""
    if stream is None:
        yield
        return
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        yield


@functools.cache
def _flashinfer_top_k() -> Callable | None:
    """Each head's top `mid` candidate positions by FlashInfer's radix top-k (ties to the lower position, as in
    the oracle), as [rows, Hq, mid] int32; None where FlashInfer cannot run (no package, no CUDA, Triton's
    interpreter, a failed first call: logged) or LESSISMORE_SELECTION_TOPK=triton asks for the radix kernels."""
    if _top_k_asked() == "triton" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    try:
        import flashinfer

        ragged_top_k, smaller_first = flashinfer.top_k_ragged_transform, int(flashinfer.TopKTieBreak.SMALL)
    except (ImportError, AttributeError):
        return None
    if not torch.cuda.is_available():
        return None
    try:  # once per process, at engine start: FlashInfer builds its kernel on first use, which can fail
        one = torch.ones(1, device="cuda", dtype=torch.int32)
        ragged_top_k(torch.zeros(1, 64, device="cuda"), one, one * 32, 8, tie_break=smaller_first, row_starts=one)
        # Does it return positions in ascending order (its deterministic mode's last step) at a selection's size?
        # csrc/rank_keys.cu relies on that order to break ties as the oracle does; without it, the Triton sort.
        starts = torch.full((2,), 4, device="cuda", dtype=torch.int32)
        tied = torch.randn(2, 8192, device="cuda").round()  # few distinct values: ties decide most of the order
        probe = ragged_top_k(tied, starts, starts * 0 + 8000, FLASHINFER_MAX_TOP_K * 3 // 4, tie_break=smaller_first,
                             row_starts=starts)
        ascending = bool((probe[:, 1:] > probe[:, :-1]).all())
    except Exception as e:  # noqa: BLE001 - any failure means: use the radix kernels
        logger.warning("LessIsMore: FlashInfer's top-k cannot run here (%s: %s); the Triton radix select ranks "
                       "each head instead", type(e).__name__, e)
        return None

    def top_k(logits: torch.Tensor, ranges: torch.Tensor, mid: int) -> torch.Tensor:
        """ranges: [2, rows * Hq] int32, each (row, head)'s first candidate and count (_prepare_kernel)."""
        rows, num_heads, width = logits.shape
        top = ragged_top_k(logits.view(rows * num_heads, width), ranges[0], ranges[1], mid, tie_break=smaller_first,
                           row_starts=ranges[0])  # + offsets (= the first candidate): positions in the row
        return top.view(rows, num_heads, mid)

    top_k.ascending = ascending  # read by _cuda_rank_keys
    return top_k


def _top_k_asked() -> str:
    """LESSISMORE_SELECTION_TOPK; a bad value names the variable and the valid values."""
    return env_choice(TOPK_ENV, TOPK_CHOICES, "auto")


def _fused_rank_keys() -> Callable | None:
    """csrc/rank_keys.cu's rank_keys_from_logits (each head's top-mid, rank order and rank keys in one kernel) where
    LESSISMORE_SELECTION_TOPK=auto and it builds (cuda_ext.rank_from_logits_launcher); else None."""
    if _top_k_asked() != "auto":
        return None
    return cuda_ext.rank_from_logits_launcher()


def top_k_choice() -> str:
    """Which per-head top-k the selection runs on CUDA: "cuda" (csrc/rank_keys.cu, top-k and rank keys in one
    kernel), "flashinfer" or "triton" (startup log line). A bad LESSISMORE_SELECTION_TOPK fails here."""
    if _fused_rank_keys() is not None:
        return "cuda"
    return "triton" if _flashinfer_top_k() is None else "flashinfer"


def _cuda_rank_keys() -> Callable | None:
    """csrc/rank_keys.cu's launcher (cuda_ext.rank_keys_launcher) where it can follow the top-k: FlashInfer's, with
    each list's positions ascending (checked at startup), since its stable sort then breaks ties to the lower
    position as the oracle does. Else None: the Triton sort (it sorts (logit, position) pairs, any input order)."""
    top_k = _flashinfer_top_k()
    if top_k is None or not getattr(top_k, "ascending", False):
        return None
    return cuda_ext.rank_keys_launcher()


def rank_sort_choice() -> str:
    """Which sort puts each head's top-k into rank order: "cuda" or "triton" (startup log line). The CUDA kernel
    is built here, at engine start; a bad LESSISMORE_RANK_KERNEL fails here, whichever sort runs."""
    cuda_ext.rank_kernel_asked()
    return "cuda" if _fused_rank_keys() is not None or _cuda_rank_keys() is not None else "triton"


def _programs_per_segment(segments: int, tiles: int) -> int:
    """Programs that share one segment's tiles: enough for ~SELECT_TARGET_PROGRAMS in all, at most one per tile."""
    return max(1, min(tiles, SELECT_TARGET_PROGRAMS // max(1, segments)))


def _select_triton(logits, block_table, seq_lens, block_size, num_heads, budget, split, positions, slots, counts,
                   total_heads, head_offset, combine_keys) -> None:
    """logits: [rows, Hq, >= max_len] fp32 (read for t < seq_len only), or None when no row is ranked."""
    rows = seq_lens.shape[0]
    max_len = block_table.shape[1] * block_size
    device = seq_lens.device
    ranked = logits is not None
    fused_rank_keys = flashinfer_top_k = None
    if ranked and split.mid <= cuda_ext.RANK_MAX_MID:
        fused_rank_keys = _fused_rank_keys()  # None without CUDA
    if ranked and fused_rank_keys is None and split.mid <= FLASHINFER_MAX_TOP_K:
        flashinfer_top_k = _flashinfer_top_k()  # None without CUDA
    tiles = triton.cdiv(max_len, SELECT_TILE)
    # One buffer for both selects' histograms: [rows, Hq + 1, 4, 256] (segment Hq = the union's); the rank keys.
    hist = torch.empty(rows, num_heads + 1, 4, 256, device=device, dtype=torch.int32) if ranked else None
    keys = torch.empty(rows, max_len, device=device, dtype=torch.int32) if ranked else None
    ranges = torch.empty(2, rows * num_heads, device=device, dtype=torch.int32) if flashinfer_top_k else None
    block = 1024
    prepare_tiles = triton.cdiv(budget, block)  # positions; when ranked also the keys' and histograms' tiles
    if ranked:
        prepare_tiles = max(prepare_tiles, triton.cdiv(max_len, block), num_heads + 1)
    _prepare_kernel[(rows, prepare_tiles)](
        seq_lens, block_table, positions, slots, counts, keys, hist, ranges,
        block_table.stride(0), positions.stride(0), slots.stride(0), keys.stride(0) if ranked else 0, max_len, rows,
        BUDGET=budget, MID=split.mid, SINKS=split.sinks, RECENT=split.recent, CACHE_BLOCK=block_size, BLOCK=block,
        NUM_HEADS=num_heads, BLOCK_H=triton.next_power_of_2(num_heads), RANKED=ranked,
        HEAD_RANGES=flashinfer_top_k is not None, num_warps=4,
    )
    if not ranked:
        return
    key_cap = max(255, split.mid * total_heads)
    tile_counts = torch.empty(rows, num_heads + 1, tiles, 2, device=device, dtype=torch.int32)
    common = dict(BUDGET=budget, MID=split.mid, SINKS=split.sinks, RECENT=split.recent, TILE=SELECT_TILE,
                  num_warps=RADIX_WARPS)

    def radix_select(data, seg_stride, segments, hist_view, counts_view, out, out_stride, is_logit, cap):
        rounds = 4 if is_logit else (cap.bit_length() + 7) // 8  # fp32 logits, or the rank keys' bytes
        programs = _programs_per_segment(rows * segments, tiles)
        grid = (rows, segments, programs)
        strides = (data.stride(0), seg_stride, hist_view.stride(0), hist_view.stride(1))
        kind = dict(IS_LOGIT=is_logit, KEY_CAP=cap, **common)
        for r in range(rounds):
            _radix_hist_kernel[grid](data, seq_lens, hist_view, *strides, programs, ROUND=r, ROUNDS=rounds, **kind)
        count_strides = (counts_view.stride(0), counts_view.stride(1))
        _radix_count_kernel[grid](data, seq_lens, hist_view, counts_view, *strides, *count_strides, programs,
                                  ROUNDS=rounds, **kind)
        _radix_collect_kernel[grid](
            data, seq_lens, hist_view, counts_view, out, slots, block_table, *strides, *count_strides, *out_stride,
            slots.stride(0), block_table.stride(0), programs,
            ROUNDS=rounds, MAX_TILES=triton.next_power_of_2(tiles), CACHE_BLOCK=block_size, **kind,
        )

    # 1. rank keys per row from each head's top `mid` logits: top-k, rank order and keys in one CUDA kernel, or
    # FlashInfer's top-k where it runs, else the radix select (in position order, packed with their keys), each
    # followed by a rank sort
    if fused_rank_keys is not None:
        fused_rank_keys(logits, seq_lens, keys, split.mid, budget, split.sinks, split.recent, total_heads, head_offset)
    else:
        if flashinfer_top_k is not None:
            scratch = flashinfer_top_k(logits, ranges, split.mid)
        else:
            scratch = torch.empty(rows, num_heads, split.mid, device=device, dtype=torch.int64)
            radix_select(logits, logits.stride(1), num_heads, hist, tile_counts, scratch,
                         (scratch.stride(0), scratch.stride(1)), True, 0)
        rank_keys_cuda = _cuda_rank_keys() if flashinfer_top_k is not None else None
        if rank_keys_cuda is not None and split.mid <= cuda_ext.RANK_MAX_MID:  # csrc/rank_keys.cu: CUB radix sort
            rank_keys_cuda(scratch, logits, seq_lens, keys, split.mid, budget, total_heads, head_offset)
        else:
            _rank_keys_kernel[(rows, num_heads)](
                scratch, seq_lens, keys, logits, scratch.stride(0), scratch.stride(1), keys.stride(0),
                logits.stride(0), logits.stride(1), head_offset, TOTAL_HEADS=total_heads, BUDGET=budget,
                MID=split.mid, MID_PAD=triton.next_power_of_2(split.mid),
                FROM_POSITIONS=flashinfer_top_k is not None, num_warps=RANK_KEYS_WARPS,
            )
    if combine_keys is not None:
        combine_keys(keys)
    # 2. the union: the row's `mid` smallest rank keys, written in position order between sinks and recent window
    radix_select(keys, 0, 1, hist[:, num_heads:], tile_counts[:, num_heads:], positions,
                 (positions.stride(0), 0), False, key_cap)

