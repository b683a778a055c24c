"""Kernel-vs-reference checks shared by the CPU interpreter tests (TRITON_INTERPRET=1, small shapes) and the GPU
tests under tests/gpu (larger shapes). Caches use a physical NHD layout viewed as vLLM's logical
[blocks, Hkv, block_size, 2D], and block tables point at shuffled, non-contiguous pages."""

import torch

from lessismore_vllm.reference import decode_logits as reference_logits
from lessismore_vllm.reference import gather_kv, sparse_decode_reference
from lessismore_vllm.selection import select_tokens

# fp32 inputs: exact on CPU (the interpreter); on GPUs Triton's tl.dot rounds them to TF32 (10-bit mantissa).
FP32_TOL = {"cpu": 1e-4, "cuda": 5e-3}


def paged_setup(seq_lens, num_kv_heads, head_dim, block_size, dtype, device, seed=0, extra_blocks=3):
    g = torch.Generator().manual_seed(seed)
    blocks_per_row = [(L + block_size - 1) // block_size for L in seq_lens]
    width = max(1, max(blocks_per_row)) + 1
    num_blocks = sum(blocks_per_row) + extra_blocks
    physical = torch.randn(num_blocks, block_size, num_kv_heads, 2 * head_dim, generator=g).to(dtype)
    kv_cache = physical.to(device).permute(0, 2, 1, 3)  # logical view, NHD strides
    perm = torch.randperm(num_blocks, generator=g).tolist()
    block_table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    for b, n in enumerate(blocks_per_row):
        block_table[b, :n] = torch.tensor([perm.pop() for _ in range(n)], dtype=torch.int32)
    return kv_cache, block_table.to(device)


def check_sparse_decode(seq_lens, num_heads, num_kv_heads, head_dim, budget, dtype, device, block_size=16, seed=0,
                        tuning=None, kernel=None):
    from lessismore_vllm.kernels import DEFAULT_TUNING, slots_from_positions, sparse_decode

    g = torch.Generator().manual_seed(seed + 1)
    kv_cache, block_table = paged_setup(seq_lens, num_kv_heads, head_dim, block_size, dtype, device, seed)
    B = len(seq_lens)
    query = torch.randn(B, num_heads, head_dim, generator=g).to(dtype).to(device)
    positions = torch.zeros(B, budget, dtype=torch.int32)
    counts = torch.zeros(B, dtype=torch.int32)
    for b, L in enumerate(seq_lens):  # a random subset (dense when L <= budget), in random order
        n = min(L, budget)
        positions[b, :n] = torch.randperm(L, generator=g)[:n].to(torch.int32)
        counts[b] = n
    positions, counts = positions.to(device), counts.to(device)
    out = torch.full((B, num_heads, head_dim), float("nan"), dtype=dtype, device=device)
    slots = slots_from_positions(block_table, positions, block_size)
    sparse_decode(query, kv_cache, slots, counts, head_dim**-0.5, out, tuning=tuning or DEFAULT_TUNING, kernel=kernel)
    want = sparse_decode_reference(query.cpu(), kv_cache.cpu(), block_table.cpu(), positions.cpu(), counts.cpu(),
                                   head_dim**-0.5)
    tol = FP32_TOL[str(device).split(":")[0]] if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float().cpu(), want, atol=tol, rtol=tol)
    for b, L in enumerate(seq_lens):
        if L == 0:
            assert torch.all(out[b] == 0), "padded row writes zeros"


def check_select(seq_lens, num_heads, num_kv_heads, head_dim, budget, dtype, device, block_size=16, seed=0,
                 recency_ratio=0.25, sinks=4, method="auto", ties=False, fused=False):
    """The selection kernels against the oracle on the kernel's own logits. ties=True draws keys and queries from
    {-1, 0, 1}, so most logits tie and the oracle's tie rule (lower position first within a head) decides.
    fused=True: the selection layer's own attention comes from the same pass as the logits (attention_out), and
    is checked against the reference too."""
    from lessismore_vllm.kernels import decode_logits, select

    g = torch.Generator().manual_seed(seed + 2)
    kv_cache, block_table = paged_setup(seq_lens, num_kv_heads, head_dim, block_size, dtype, device, seed)
    B = len(seq_lens)
    query = torch.randn(B, num_heads, head_dim, generator=g).to(dtype).to(device)
    if ties:
        kv_cache.copy_(kv_cache.round().clamp(-1, 1))
        query = query.round().clamp(-1, 1)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    scale = head_dim**-0.5
    max_len = block_table.shape[1] * block_size
    logits = decode_logits(query, kv_cache, block_table, seq, scale, max_len)
    out_pos = torch.full((B + 2, budget), -1, dtype=torch.int32, device=device)
    out_cnt = torch.full((B + 2,), -1, dtype=torch.int32, device=device)
    out_slots = torch.full((B + 2, budget), -1, dtype=torch.int32, device=device)
    attention = torch.full(query.shape, float("nan"), dtype=dtype, device=device) if fused else None
    select(query, kv_cache, block_table, seq, scale, budget, recency_ratio, sinks, out_pos, out_cnt, out_slots,
           method=method, attention_out=attention)
    tol = FP32_TOL[str(device).split(":")[0]] if dtype == torch.float32 else 2e-2
    if fused:
        every = torch.arange(block_table.shape[1] * block_size, dtype=torch.int32).expand(B, -1)
        want = sparse_decode_reference(query.cpu(), kv_cache.cpu(), block_table.cpu(), every, seq.cpu(), scale)
        torch.testing.assert_close(attention.float().cpu(), want, atol=tol, rtol=tol)
    for b, L in enumerate(seq_lens):
        k, _ = gather_kv(kv_cache.cpu(), block_table[b].cpu(), torch.arange(L))
        ref_logits = reference_logits(query[b].cpu(), k, scale)
        torch.testing.assert_close(logits[b, :, :L].cpu(), ref_logits, atol=tol, rtol=tol)
        assert torch.all(logits[b, :, L:] == float("-inf"))
        # The selection from the kernel's logits is exactly the oracle's on those logits.
        want = select_tokens(logits[b, :, :L].cpu(), budget, recency_ratio, sinks) if L else torch.zeros(0).long()
        assert int(out_cnt[b]) == want.numel()
        assert out_pos[b, : want.numel()].cpu().tolist() == want.tolist()
        # each selected position's physical slot, through the row's block table
        bt = block_table[b].cpu().long()
        want_slots = (bt[want // block_size] * block_size + want % block_size).tolist()
        assert out_slots[b, : want.numel()].cpu().tolist() == want_slots
    assert torch.all(out_cnt[B:] == -1) and torch.all(out_slots[B:] == -1), "rows past the batch untouched"


def check_select_tensor_parallel(seq_lens, num_heads, num_kv_heads, head_dim, budget, device, tp=2, method="auto",
                                 block_size=16, seed=0):
    """Tensor parallelism simulated in one process: rank r holds query heads [r*Hq/tp, (r+1)*Hq/tp) and its KV
    heads; the ranks' rank keys are combined with an element-wise MIN (the all-reduce). Every rank must then
    select exactly what one device with all heads selects."""
    from lessismore_vllm.kernels import select

    g = torch.Generator().manual_seed(seed + 3)
    kv_cache, block_table = paged_setup(seq_lens, num_kv_heads, head_dim, block_size, torch.float32, device, seed)
    B = len(seq_lens)
    query = torch.randn(B, num_heads, head_dim, generator=g).to(device)
    seq = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    scale = head_dim**-0.5

    def run(q, kv, **tp_args):
        pos = torch.zeros(B, budget, dtype=torch.int32, device=device)
        cnt = torch.zeros(B, dtype=torch.int32, device=device)
        select(q, kv, block_table, seq, scale, budget, 0.25, 4, pos, cnt, method=method, **tp_args)
        return [pos[b, : int(cnt[b])].tolist() for b in range(B)]

    want = run(query, kv_cache)
    hq, hkv = num_heads // tp, num_kv_heads // tp
    shards = [(query[:, r * hq:(r + 1) * hq], kv_cache[:, r * hkv:(r + 1) * hkv]) for r in range(tp)]
    local = [[] for _ in range(tp)]  # each rank's keys, per all-reduce call
    for r, (q, kv) in enumerate(shards):
        run(q, kv, total_heads=num_heads, head_offset=r * hq, combine_keys=lambda k, r=r: local[r].append(k.clone()))
    assert local[0], "the selection asked for the all-reduce"
    for r, (q, kv) in enumerate(shards):
        calls = iter(range(len(local[0])))

        def all_reduce_min(k):
            i = next(calls)
            k.copy_(torch.stack([keys[i] for keys in local]).min(dim=0).values)

        assert run(q, kv, total_heads=num_heads, head_offset=r * hq, combine_keys=all_reduce_min) == want, r


def check_rank_keys(seq_lens, num_heads, mid, budget, device, launcher=None, seed=0, total_heads=None,
                    head_offset=0, from_logits=False, ties=True):
    """The rank-key step against the oracle (lessismore_vllm.selection.rank_keys): each (row, head) gets its
    oracle top-`mid` positions in ascending order (as FlashInfer's deterministic top-k returns them; -1 for rows
    that fit the budget) and, if ties, logits with ties everywhere, zeros of both signs included (the oracle's sort
    holds -0.0 == +0.0). launcher: csrc/rank_keys.cu's rank_keys (cuda_ext.rank_keys_launcher()), or with
    from_logits its rank_keys_from_logits, which finds each head's top-mid itself; None = the Triton sort.
    Tensor parallelism: these num_heads are heads [head_offset, head_offset + num_heads) of total_heads."""
    import triton

    from lessismore_vllm.kernels import selection as kernels
    from lessismore_vllm.selection import BudgetSplit, rank_keys

    g = torch.Generator().manual_seed(seed)
    rows, width = len(seq_lens), max(seq_lens)
    total_heads = total_heads or num_heads
    logits = torch.randn(rows, num_heads, width, generator=g)
    if ties:
        logits = torch.round(logits * 2) / 2
        logits[(logits == 0) & (torch.rand(logits.shape, generator=g) < 0.5)] = -0.0
    split = BudgetSplit(budget, mid, 4, budget - mid - 4)
    top = torch.full((rows, num_heads, mid), -1, dtype=torch.int32)
    want = torch.full((rows, width), torch.iinfo(torch.int32).max, dtype=torch.int64)
    for r, L in enumerate(seq_lens):
        if L > budget:
            lo, hi = split.sinks, L - split.recent
            for h in range(num_heads):
                order = torch.sort(logits[r, h, lo:hi], descending=True, stable=True).indices[:mid]
                top[r, h] = (order + lo).sort().values.to(torch.int32)
            want[r, :L] = rank_keys(logits[r, :, :L], split, total_heads, head_offset)
    keys = torch.full((rows, width), torch.iinfo(torch.int32).max, dtype=torch.int32, device=device)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    top, logits = top.to(device), logits.to(device)
    if from_logits:
        launcher(logits, lens, keys, mid, budget, split.sinks, split.recent, total_heads, head_offset)
    elif launcher is not None:
        launcher(top, logits, lens, keys, mid, budget, total_heads, head_offset)
    else:
        kernels._rank_keys_kernel[(rows, num_heads)](
            top, lens, keys, logits, top.stride(0), top.stride(1), keys.stride(0), logits.stride(0),
            logits.stride(1), head_offset, TOTAL_HEADS=total_heads, BUDGET=budget, MID=mid,
            MID_PAD=triton.next_power_of_2(mid), FROM_POSITIONS=True)
    assert torch.equal(keys.cpu().long(), want)
