"""One-off A/B on one GPU (tenth session): the selection's per-head ranking by csrc/rank_keys.cu's
rank_keys_from_logits (one kernel: top-k, rank order, rank keys) vs FlashInfer's top-k + csrc rank_keys (the ninth
session's default), in the selection layer as it runs (fused attention pass + selection) and alone; the selected
tokens of both must be identical. Also the sparse layer with its planned splits vs one split. 4 layers per CUDA
graph; us per layer. Run from the repository root: python docs/perf-runs/2026-11-26-s10/topk_ab.py"""
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, select, sparse_decode  # noqa: E402
from lessismore_vllm.kernels import selection as S  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import SparseDecodeTuning, dense_decode_with_logits, plan_splits  # noqa: E402
from lessismore_vllm.selection import budget_split  # noqa: E402

LAYERS, BUDGET = 4, 2048
fused = S._fused_rank_keys()
flashinfer = S._flashinfer_top_k()
rank_keys = cuda_ext.rank_keys_launcher()
print("fused:", fused is not None, "flashinfer:", flashinfer is not None, "rank_keys:", rank_keys is not None, flush=True)
split = budget_split(BUDGET + 1, BUDGET)


def use(path):
    S._fused_rank_keys = (lambda: fused) if path == "cuda" else (lambda: None)


for batch, L in [(1, 16384), (1, 32768), (8, 16384), (16, 16384), (8, 32768), (32, 16384), (32, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    row = f"B={batch:3d} L={L:5d} FA3 {fa3 * 1e3:7.1f}"
    chosen = {}
    for path in ("cuda", "flashinfer"):
        use(path)
        bufs = [x.selection_buffers(BUDGET) for x in cases]
        layer = bench(lambda: [select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s,
                                      attention_out=x.out, workspace=ws) for x, (p, c, s) in zip(cases, bufs)])
        chosen[path] = [(p.clone(), c.clone()) for p, c, _ in bufs]
        row += f" | layer {path} {layer / LAYERS * 1e3:7.1f} ({layer / LAYERS / fa3:4.2f}x)"
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(chosen["cuda"], chosen["flashinfer"]))
    row += f" | same tokens: {same}"
    # the ranking step alone, on one layer's logits
    x = cases[0]
    logits = torch.empty(batch, HQ, L, device="cuda")
    dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, logits, BUDGET, ws)
    keys = torch.empty(batch, L, device="cuda", dtype=torch.int32)
    ranges = torch.empty(2, batch * HQ, device="cuda", dtype=torch.int32)
    ranges[0] = split.sinks
    ranges[1] = L - split.sinks - split.recent
    t_fused = bench(lambda: fused(logits, x.seq_lens, keys, split.mid, BUDGET, split.sinks, split.recent, HQ, 0))
    k_fused = keys.clone()
    keys.fill_(2**31 - 1)

    def two_step():
        top = flashinfer(logits, ranges, split.mid)
        rank_keys(top, logits, x.seq_lens, keys, split.mid, BUDGET, HQ, 0)

    t_fi = bench(two_step)
    keys.fill_(2**31 - 1)
    two_step()
    k_fused.fill_(2**31 - 1)
    fused(logits, x.seq_lens, k_fused, split.mid, BUDGET, split.sinks, split.recent, HQ, 0)
    row += (f" | rank step: fused {t_fused * 1e3:6.1f} flashinfer+sort {t_fi * 1e3:6.1f}"
            f" same keys: {torch.equal(keys, k_fused)}")
    # the sparse layer: planned splits vs one split
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    use("cuda")
    for x, (p, c, s) in zip(cases, bufs):
        select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out, workspace=ws)
    planned = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws) for x, (_, c, s) in zip(cases, bufs)])
    one = SparseDecodeTuning(target_programs=1)
    single = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws, tuning=one)
                            for x, (_, c, s) in zip(cases, bufs)])
    nbytes = batch * BUDGET * HKV * 2 * D * 2
    row += (f" | sparse planned({plan_splits(batch, HKV, BUDGET)}) {planned / LAYERS * 1e3:6.1f}"
            f" ({nbytes / (planned / LAYERS * 1e-3) / 3.35e12 * 100:4.1f}%) one split {single / LAYERS * 1e3:6.1f}"
            f" ({nbytes / (single / LAYERS * 1e-3) / 3.35e12 * 100:4.1f}%)")
    print(row, flush=True)
    cases = bufs = logits = keys = None
    torch.cuda.empty_cache()
