"""One-off A/B on one GPU (2026-11-27): the selection layer (fused attention pass + selection, as it runs in the
engine) with three versions of its ranking, and the selected tokens of all three compared:
  old:    csrc/rank_keys.cu at commit b511393 (rank_keys_from_logits, full 32-bit sort) + the Triton union kernels
  sort:   this commit's rank_keys_from_logits (the sort covers only the bits where the winners differ) + Triton union
  select: this commit's select_from_logits (the same, then each row's last head block selects the union): default
Also the ranking step alone (old vs new rank_keys_from_logits, keys compared). 4 layers per CUDA graph; us per layer.
The old source is not in the tree: `git show b511393:csrc/rank_keys.cu > .gpu/old/rank_keys_b511393.cu` and carry
.gpu/old. Run from the repository root: python docs/perf-runs/2026-11-27/select_ab.py"""
import sys

import torch
from torch.utils.cpp_extension import load

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, select  # noqa: E402
from lessismore_vllm.kernels import selection as S  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits  # noqa: E402
from lessismore_vllm.selection import budget_split  # noqa: E402

LAYERS, BUDGET = 4, 2048
new_rank = cuda_ext.rank_from_logits_launcher()
new_select = cuda_ext.select_from_logits_launcher()
old_rank = load(name="lessismore_rank_keys_b511393", sources=[".gpu/old/rank_keys_b511393.cu"],
                extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo"]).rank_keys_from_logits
print("built: new", new_rank is not None, new_select is not None, "old", old_rank is not None, flush=True)
split = budget_split(BUDGET + 1, BUDGET)
VERSIONS = {"old": (old_rank, None), "sort": (new_rank, None), "select": (new_rank, new_select)}


def use(version):
    rank, sel = VERSIONS[version]
    S._fused_rank_keys = lambda: rank
    S._fused_select = lambda: sel


shapes = [(1, 16384), (1, 32768), (8, 16384), (16, 16384), (8, 32768), (32, 16384), (32, 32768)]
if len(sys.argv) > 1:
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[1].split(",")]
for batch, L in shapes:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    row = f"B={batch:3d} L={L:5d} FA3 {fa3 * 1e3:7.1f}"
    chosen = {}
    for version in VERSIONS:
        use(version)
        bufs = [x.selection_buffers(BUDGET) for x in cases]
        layer = bench(lambda: [select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s,
                                      attention_out=x.out, workspace=ws) for x, (p, c, s) in zip(cases, bufs)])
        chosen[version] = [(p.clone(), c.clone(), s.clone()) for p, c, s in bufs]
        row += f" | {version} {layer / LAYERS * 1e3:7.1f} ({layer / LAYERS / fa3:4.2f}x)"
    same = all(all(torch.equal(a, b) for a, b in zip(u, v))
               for version in ("sort", "select") for u, v in zip(chosen["old"], chosen[version]))
    row += f" | same tokens+slots: {same}"
    # the ranking step alone, on one layer's logits
    x = cases[0]
    logits = torch.empty(batch, HQ, L, device="cuda")
    dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, logits, BUDGET, ws)
    keys = {}
    for name, rank in (("old", old_rank), ("new", new_rank)):
        k = torch.full((batch, L), 2**31 - 1, device="cuda", dtype=torch.int32)
        t = bench(lambda: rank(logits, x.seq_lens, k, split.mid, BUDGET, split.sinks, split.recent, HQ, 0))
        k.fill_(2**31 - 1)
        rank(logits, x.seq_lens, k, split.mid, BUDGET, split.sinks, split.recent, HQ, 0)
        keys[name] = k
        row += f" | rank {name} {t * 1e3:6.1f}"
    row += f" same keys: {torch.equal(keys['old'], keys['new'])}"
    print(row, flush=True)
    cases = bufs = logits = keys = chosen = None
    torch.cuda.empty_cache()
