"""One-off A/B on one GPU (tenth session): the sparse layer by the Triton kernels (split + combine, the default)
vs csrc/sparse_decode.cu (one launch, splits combined in a thread-block cluster), on the same selected tokens;
4 layers per CUDA graph, us per layer and % of the H100's peak on the bytes read; the two outputs must agree.
Run from the repository root: python docs/perf-runs/2026-11-26-s10/sparse_ab.py"""
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, sparse_decode  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import DEFAULT_TUNING, plan_splits  # noqa: E402
from dataclasses import replace  # noqa: E402

LAYERS, BUDGET = 4, 2048
for batch, L in [(1, 16384), (4, 16384), (8, 16384), (16, 16384), (32, 16384), (8, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    outs = {k: [torch.empty_like(x.q) for x in cases] for k in ("triton", "cuda")}
    nbytes = batch * BUDGET * HKV * 2 * D * 2
    row = f"B={batch:3d} L={L:5d}"
    for kernel in ("triton", "cuda"):
        t = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, o, ws, kernel=kernel)
                           for x, (_, c, s), o in zip(cases, bufs, outs[kernel])]) / LAYERS
        row += f" | {kernel} {t * 1e3:6.1f} us ({nbytes / (t * 1e-3) / 3.35e12 * 100:4.1f}%)"
    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(outs["triton"], outs["cuda"]))
    cuda_splits = plan_splits(batch, HKV, BUDGET, replace(DEFAULT_TUNING, max_splits=cuda_ext.MAX_SPLITS))
    row += f" | splits triton {plan_splits(batch, HKV, BUDGET)} cuda {cuda_splits} | max diff {diff:.2e}"
    for target in (132, 528):  # other cluster counts for the CUDA kernel
        tuning = replace(DEFAULT_TUNING, target_programs=target)
        t = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, o, ws, tuning=tuning, kernel="cuda")
                           for x, (_, c, s), o in zip(cases, bufs, outs["cuda"])]) / LAYERS
        n = plan_splits(batch, HKV, BUDGET, replace(tuning, max_splits=cuda_ext.MAX_SPLITS))
        row += f" | cuda {n} splits {t * 1e3:6.1f}"
    print(row, flush=True)
    cases = bufs = outs = None
    torch.cuda.empty_cache()
