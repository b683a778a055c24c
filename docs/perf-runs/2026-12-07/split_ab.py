"""One-off A/B on one GPU (2026-12-07): csrc/rank_keys.cu before ("base" = .gpu/old/rank_keys_base.cu, commit
b32a02d, carried) and now. Selection layer as it runs (fused attention pass + selection): base (old ranking, Triton
union), "rank" (new ranking, Triton union), "both" (new ranking, CUDA union). Rank step alone: base, the new
kernel as chosen ("auto") and with each head split over a cluster of 1, 2, 4 or 8 blocks ("s1".."s8"). Union step
alone: Triton (4 launches) vs the CUDA kernel as chosen and forced to 1, 2, 4, 8 blocks per row. Selected tokens,
rank keys and union positions compared across versions.
4 layers per CUDA graph; us per layer. Run from the repository root:
python docs/perf-runs/2026-12-07/split_ab.py [1x16384,8x16384]"""
import functools
import sys
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.cpp_extension import load

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, select  # noqa: E402
from lessismore_vllm.kernels import selection as S  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits  # noqa: E402
from lessismore_vllm.selection import budget_split  # noqa: E402

LAYERS, BUDGET = 4, 2048

with ThreadPoolExecutor(2) as pool:  # nvcc runs in subprocesses: the builds overlap
    base = pool.submit(lambda: load(name="lessismore_rank_keys_base", sources=[".gpu/old/rank_keys_base.cu"],
                                    extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo"]).rank_keys_from_logits)
    tree = pool.submit(cuda_ext.rank_from_logits_launcher)
    VERSIONS = {"base": base.result(), "auto": tree.result()}
for s in (1, 2, 4, 8):
    VERSIONS[f"s{s}"] = functools.partial(VERSIONS["auto"], split=s)
print("built:", list(VERSIONS), flush=True)
split = budget_split(BUDGET + 1, BUDGET)
shapes = [(1, 16384), (1, 32768), (2, 16384), (4, 16384), (1, 8192), (8, 16384), (16, 16384), (32, 32768)]
if len(sys.argv) > 1:
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[1].split(",")]
for batch, L in shapes:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    row = f"B={batch:3d} L={L:5d} FA3 {fa3 * 1e3:7.1f} | layer"
    chosen = {}
    union_cuda = cuda_ext.union_launcher
    for name, rank, union in (("base", VERSIONS["base"], False), ("rank", VERSIONS["auto"], False),
                              ("both", VERSIONS["auto"], True)):
        S._fused_rank_keys = lambda: rank
        cuda_ext.union_launcher = union_cuda if union else (lambda: None)
        bufs = [x.selection_buffers(BUDGET) for x in cases]
        layer = bench(lambda: [select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s,
                                      attention_out=x.out, workspace=ws) for x, (p, c, s) in zip(cases, bufs)])
        chosen[name] = [(p.clone(), c.clone(), s.clone()) for p, c, s in bufs]
        row += f" {name} {layer / LAYERS * 1e3:6.1f} ({layer / LAYERS / fa3:4.2f}x)"
    cuda_ext.union_launcher = union_cuda
    first = next(iter(chosen.values()))
    row += f" same tokens: {all(all(torch.equal(a, b) for a, b in zip(u, v)) for c in chosen.values() for u, v in zip(first, c))}"
    x = cases[0]
    logits = torch.empty(batch, HQ, L, device="cuda")
    dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, logits, BUDGET, ws)
    keys = {}
    row += " | rank step"
    for name, rank in VERSIONS.items():
        k = torch.full((batch, L), 2**31 - 1, device="cuda", dtype=torch.int32)
        t = bench(lambda: rank(logits, x.seq_lens, k, split.mid, BUDGET, split.sinks, split.recent, HQ, 0))
        k.fill_(2**31 - 1)
        rank(logits, x.seq_lens, k, split.mid, BUDGET, split.sinks, split.recent, HQ, 0)
        keys[name] = k
        row += f" {name} {t * 1e3:5.1f}"
    first = next(iter(keys.values()))
    row += f" same keys: {all(torch.equal(first, k) for k in keys.values())}"
    # the selection after the attention pass (prepare, rank, union) with the Triton union, and with the CUDA union
    # as chosen or forced to 1..8 blocks per row; the ranking fixed to the new kernel unsplit (in the run of
    # 2026-12-07 it was still the rank-step loop's last, s8)
    S._fused_rank_keys = lambda: VERSIONS["s1"]
    row += " | selection step, union:"
    block_size = x.kv.shape[2]
    p, c, sl = x.selection_buffers(BUDGET)
    picked = {}
    for name, forced in {"triton": None, "auto": 0, "s1": 1, "s2": 2, "s4": 4, "s8": 8}.items():
        fn = union_cuda()
        cuda_ext.union_launcher = (lambda: None) if forced is None else (lambda: functools.partial(fn, split=forced))
        t = bench(lambda: S._select_triton(logits, x.bt, x.seq_lens, block_size, HQ, BUDGET, split, p, sl, c, HQ, 0,
                                           None))
        picked[name] = (p.clone(), sl.clone(), c.clone())
        row += f" {name} {t * 1e3:5.1f}"
    cuda_ext.union_launcher = union_cuda
    ref = picked["triton"]
    row += f" same union: {all(all(torch.equal(a, b) for a, b in zip(ref, q)) for q in picked.values())}"
    print(row, flush=True)
    cases = bufs = logits = keys = chosen = None
    torch.cuda.empty_cache()
