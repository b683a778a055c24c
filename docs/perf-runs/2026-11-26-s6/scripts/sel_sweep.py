import sys, os, itertools, time
sys.path.insert(0, "scripts"); sys.path.insert(0, "tests")
import torch, triton
import bench_kernels as B
from lessismore_vllm.kernels import selection as S

budget = 2048
shapes = [(1, 16384), (1, 32768), (8, 32768), (16, 16384), (32, 32768)]
cases = {}
for b, L in shapes:
    cases[(b, L)] = B.Case(b, L)

def step(c, method, same_heads=False):
    pos = torch.empty(c.batch, budget, device="cuda", dtype=torch.int32)
    cnt = torch.empty(c.batch, device="cuda", dtype=torch.int32)
    slots = torch.empty_like(pos)
    q = c.q[:, :1].expand_as(c.q).contiguous() if same_heads else c.q
    def fn():
        S.select(q, c.kv, c.bt, c.seq_lens, c.scale, budget, 0.25, 4, pos, cnt, slots, method=method)
    return fn, (pos, cnt, slots)

# correctness: segments == triton on these shapes
for (b, L), c in cases.items():
    for same in (False, True):
        f1, o1 = step(c, "triton", same); f1()
        f2, o2 = step(c, "segments", same); f2()
        torch.cuda.synchronize()
        ok = all(torch.equal(x, y) for x, y in zip(o1, o2))
        print(f"equal B{b} L{L} same_heads={same}: {ok}", flush=True)

def t(method, same=False, sel=shapes):
    return [B.bench(step(cases[s], method, same)[0], rep=50) * 1000 for s in sel]

hdr = " | ".join(f"{b}x{L//1024}K" for b, L in shapes)
print("us per selection step (CUDA graph):", hdr, flush=True)
print("triton          ", " ".join(f"{x:8.1f}" for x in t("triton")), flush=True)
print("segments        ", " ".join(f"{x:8.1f}" for x in t("segments")), flush=True)
print("triton same     ", " ".join(f"{x:8.1f}" for x in t("triton", True)), flush=True)
print("segments same   ", " ".join(f"{x:8.1f}" for x in t("segments", True)), flush=True)
base = dict(SEGMENT_TILE=S.SEGMENT_TILE, FAST_TOP=S.FAST_TOP, HEAD_WARPS=S.HEAD_WARPS, UNION_WARPS=S.UNION_WARPS)
for name, vals in [("SEGMENT_TILE", [1024, 4096]), ("HEAD_WARPS", [4, 16]), ("UNION_WARPS", [8, 32]),
                   ("FAST_TOP", [128, 512])]:
    for v in vals:
        for k, x in base.items(): setattr(S, k, x)
        setattr(S, name, v)
        try:
            print(f"{name}={v:5d}   ", " ".join(f"{x:8.1f}" for x in t("segments")), flush=True)
        except Exception as e:
            print(f"{name}={v}: {type(e).__name__} {e}"[:300], flush=True)
for k, x in base.items(): setattr(S, k, x)

from torch.profiler import ProfilerActivity, profile
for s in [(1, 16384), (16, 16384)]:
    fn = step(cases[s], "segments")[0]; fn(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(20): fn()
        torch.cuda.synchronize()
    print("profile segments", s)
    for e in prof.key_averages():
        tt = getattr(e, "device_time_total", 0) or 0
        if tt > 0: print(f"  {tt/20:8.2f} us {e.key[:70]}")
