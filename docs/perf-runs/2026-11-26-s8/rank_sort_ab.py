"""A/B of the selection's rank-key step on one GPU: the Triton bitonic sort (current), torch.sort (CUB block radix
sort) between two Triton kernels, and a fused CUDA kernel (CUB BlockRadixSort). Exactness: all three must give the
same keys, also with many tied logits. Times: CUDA graph of 20 calls, us per call."""
import json, os, sys, time
import torch, triton, triton.language as tl
from torch.utils.cpp_extension import load
from lessismore_vllm.kernels import selection as S

HERE = os.path.dirname(os.path.abspath(__file__))
t0 = time.time()
ext = load(name="rank_keys_ab", sources=[os.path.join(HERE, "rank_keys.cu")], extra_cuda_cflags=["-O3", "-lineinfo"],
           verbose=False)
print(f"built in {time.time() - t0:.1f}s", flush=True)


@triton.jit
def _gather_kernel(top_ptr, logits_ptr, lens_ptr, vals_ptr, s_tr, s_th, s_lr, s_lh, MID: tl.constexpr,
                   BUDGET: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0); head = tl.program_id(1)
    offs = tl.arange(0, BLOCK)
    m = (offs < MID) & (tl.load(lens_ptr + row) > BUDGET)
    pos = tl.load(top_ptr + row * s_tr + head * s_th + offs, mask=m, other=0)
    v = tl.load(logits_ptr + row.to(tl.int64) * s_lr + head * s_lh + pos, mask=m, other=float("-inf"))
    tl.store(vals_ptr + (row * tl.num_programs(1) + head) * MID + offs, v, mask=offs < MID)


@triton.jit
def _scatter_kernel(top_ptr, order_ptr, lens_ptr, keys_ptr, s_tr, s_th, s_kt, TOTAL: tl.constexpr,
                    MID: tl.constexpr, BUDGET: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0); head = tl.program_id(1)
    ranks = tl.arange(0, BLOCK)
    m = (ranks < MID) & (tl.load(lens_ptr + row) > BUDGET)
    i = tl.load(order_ptr + (row * tl.num_programs(1) + head) * MID + ranks, mask=m, other=0)
    pos = tl.load(top_ptr + row * s_tr + head * s_th + i, mask=m, other=0)
    tl.atomic_min(keys_ptr + row.to(tl.int64) * s_kt + pos, (ranks * TOTAL + head).to(tl.int32), mask=m)


def run_triton(top, logits, lens, keys, mid, budget):
    rows, H, _ = top.shape
    S._rank_keys_kernel[(rows, H)](top, lens, keys, logits, top.stride(0), top.stride(1), keys.stride(0),
                                   logits.stride(0), logits.stride(1), 0, TOTAL_HEADS=H, BUDGET=budget, MID=mid,
                                   MID_PAD=triton.next_power_of_2(mid), FROM_POSITIONS=True, num_warps=32)


def run_torch(top, logits, lens, keys, mid, budget):
    rows, H, _ = top.shape
    vals = torch.empty(rows * H, mid, device=top.device)
    _gather_kernel[(rows, H)](top, logits, lens, vals, top.stride(0), top.stride(1), logits.stride(0),
                              logits.stride(1), MID=mid, BUDGET=budget, BLOCK=triton.next_power_of_2(mid))
    order = torch.sort(vals, dim=-1, descending=True, stable=True).indices
    _scatter_kernel[(rows, H)](top, order, lens, keys, top.stride(0), top.stride(1), keys.stride(0), TOTAL=H,
                               MID=mid, BUDGET=budget, BLOCK=triton.next_power_of_2(mid), num_warps=8)


def run_cuda(top, logits, lens, keys, mid, budget):
    ext.rank_keys(top, logits, lens, keys, mid, budget, top.shape[1], 0)


VARIANTS = {"triton": run_triton, "torch_sort": run_torch, "cub": run_cuda}


def inputs(rows, L, mid, ties, H=32, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    logits = torch.randn(rows, H, L, device="cuda", generator=g)
    if ties:
        logits = torch.round(logits * 2) / 2  # few distinct values: ties everywhere
    score = torch.rand(rows * H, L - 4 - 512, device="cuda", generator=g)
    top = (score.topk(mid, dim=-1).indices + 4).sort(dim=-1).values.to(torch.int32).view(rows, H, mid)
    lens = torch.full((rows,), L, device="cuda", dtype=torch.int32)
    if rows > 1:
        lens[-1] = 1000  # one row that fits the budget: not ranked
    return top, logits, lens


def check(rows, L, mid, budget, ties):
    top, logits, lens = inputs(rows, L, mid, ties)
    out = {}
    for name, fn in VARIANTS.items():
        keys = torch.full((rows, L), 2**31 - 1, device="cuda", dtype=torch.int32)
        fn(top, logits, lens, keys, mid, budget)
        out[name] = keys
    ok = all(torch.equal(out["triton"], v) for v in out.values())
    print(f"exact rows={rows} L={L} ties={ties}: {ok}", flush=True)
    return ok


def time_variant(fn, top, logits, lens, mid, budget, calls=20, reps=7):
    keys = torch.full(lens.shape + (logits.shape[2],), 2**31 - 1, device="cuda", dtype=torch.int32)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(top, logits, lens, keys, mid, budget)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn(top, logits, lens, keys, mid, budget)
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record(); g.replay(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1000 / calls)
    return sorted(ts)[reps // 2]


if __name__ == "__main__":
    budget, mid = 2048, 1536
    ok = all([check(1, 16384, mid, budget, False), check(4, 8192, mid, budget, True), check(8, 16384, mid, budget,
              False), check(3, 4096, 1000, 1200, True)])
    print("ALL EXACT" if ok else "MISMATCH", flush=True)
    res = []
    for rows, L in [(1, 16384), (8, 16384), (16, 16384), (32, 32768)]:
        top, logits, lens = inputs(rows, L, mid, False)
        lens.fill_(L)
        row = {"rows": rows, "L": L}
        for name, fn in VARIANTS.items():
            row[name] = round(time_variant(fn, top, logits, lens, mid, budget), 2)
        print(json.dumps(row), flush=True)
        res.append(row)
    out = os.environ.get("OUT", ".")
    json.dump(res, open(os.path.join(out, "rank_sort_ab.json"), "w"), indent=1)
