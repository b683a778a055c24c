"""Attention over vLLM's paged KV cache in plain PyTorch: the CPU path and the oracle for the Triton kernels.

Cache layout (logical view, any physical strides): kv_cache[num_blocks, num_kv_heads, block_size, 2 * head_size],
K in [..., :head_size], V in [..., head_size:]. Token t of a request lives in block block_table[t // block_size]
at offset t % block_size.
"""

from __future__ import annotations

import torch


def write_kv(kv_cache: torch.Tensor, key: torch.Tensor, value: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Store key/value [T, Hkv, D] at their slots (slot = block * block_size + offset; -1 = padding)."""
    D = key.shape[-1]
    n = slot_mapping.shape[0]
    slots = slot_mapping.long()
    keep = slots >= 0
    block_size = kv_cache.shape[2]
    blocks, offsets = slots[keep] // block_size, slots[keep] % block_size
    kv_cache[blocks, :, offsets, :D] = key[:n][keep].to(kv_cache.dtype)
    kv_cache[blocks, :, offsets, D:] = value[:n][keep].to(kv_cache.dtype)


def gather_kv(
    kv_cache: torch.Tensor, block_table_row: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V [n, Hkv, D] of one request's tokens at `positions`, read through its block table."""
    D = kv_cache.shape[-1] // 2
    block_size = kv_cache.shape[2]
    positions = positions.long()
    kv = kv_cache[block_table_row[positions // block_size].long(), :, positions % block_size]  # [n, Hkv, 2D]
    return kv[..., :D], kv[..., D:]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    q_pos: torch.Tensor | None = None,
    k_pos: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention in fp32. q [T, Hq, D], k/v [n, Hkv, D] (GQA: query head h uses KV head h // (Hq/Hkv)).

    With q_pos/k_pos, key j is visible to query i only if k_pos[j] <= q_pos[i] (causal).
    """
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q.float(), k) * scale
    if q_pos is not None:
        scores = scores.masked_fill(k_pos.view(1, 1, -1) > q_pos.view(1, -1, 1), float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v)


def decode_logits(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Pre-softmax scores [Hq, n] of one decode query q [Hq, D] against keys k [n, Hkv, D]."""
    group = q.shape[0] // k.shape[1]
    return torch.einsum("hd,khd->hk", q.float(), k.float().repeat_interleave(group, dim=1)) * scale


def sparse_decode_reference(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    block_table: torch.Tensor,
    positions: torch.Tensor,
    counts: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Decode attention of query [B, Hq, D] over each row's positions[b, :counts[b]]; rows with count 0 give 0."""
    out = torch.zeros(query.shape, dtype=torch.float32, device=query.device)
    for b in range(query.shape[0]):
        n = int(counts[b])
        if n > 0:
            k, v = gather_kv(kv_cache, block_table[b], positions[b, :n])
            out[b] = attend(query[b : b + 1], k, v, scale)[0]
    return out
