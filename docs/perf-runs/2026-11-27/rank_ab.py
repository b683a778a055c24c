"""One-off A/B on one GPU (2026-11-27): csrc/rank_keys.cu's rank_keys_from_logits in several versions, in the
selection layer as it runs (fused attention pass + selection; Triton union) and alone; selected tokens and rank
keys of every version compared with the first. Versions: the tree's csrc/rank_keys.cu ("tree") and each
.gpu/old/rank_keys_<name>.cu given on the command line (e.g. `git show b511393:csrc/rank_keys.cu >
.gpu/old/rank_keys_b511393.cu`, carried). 4 layers per CUDA graph; us per layer.
Run from the repository root: python docs/perf-runs/2026-11-27/rank_ab.py b511393,sortbits [1x16384,8x16384]"""
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

LAYERS, BUDGET = 4, int(__import__("os").environ.get("RANK_AB_BUDGET", 2048))  # budget: env RANK_AB_BUDGET
names = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else []


def build(name):
    return load(name=f"lessismore_rank_keys_{name}", sources=[f".gpu/old/rank_keys_{name}.cu"],
                extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo"]).rank_keys_from_logits


with ThreadPoolExecutor(len(names) + 1) as pool:  # nvcc runs in subprocesses: the builds overlap
    futures = {name: pool.submit(build, name) for name in names}
    futures["tree"] = pool.submit(cuda_ext.rank_from_logits_launcher)
    VERSIONS = {name: f.result() for name, f in futures.items()}
print("built:", list(VERSIONS), flush=True)
split = budget_split(BUDGET + 1, BUDGET)
shapes = [(1, 16384), (1, 32768), (8, 16384), (16, 16384), (8, 32768), (32, 16384), (32, 32768)]
if len(sys.argv) > 2:
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[2].split(",")]
for batch, L in shapes:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    row = f"B={batch:3d} L={L:5d} FA3 {fa3 * 1e3:7.1f} | layer"
    chosen = {}
    for name, rank in VERSIONS.items():
        S._fused_rank_keys = lambda: rank
        bufs = [x.selection_buffers(BUDGET) for x in cases]
        layer = bench(lambda: [select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s,
                                      attention_out=x.out, workspace=ws) for x, (p, c, s) in zip(cases, bufs)])
        chosen[name] = [(p.clone(), c.clone(), s.clone()) for p, c, s in bufs]
        row += f" {name} {layer / LAYERS * 1e3:7.1f} ({layer / LAYERS / fa3:4.2f}x)"
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
        row += f" {name} {t * 1e3:6.1f}"
    first = next(iter(keys.values()))
    row += f" same keys: {all(torch.equal(first, k) for k in keys.values())}"
    print(row, flush=True)
    cases = bufs = logits = keys = chosen = None
    torch.cuda.empty_cache()
