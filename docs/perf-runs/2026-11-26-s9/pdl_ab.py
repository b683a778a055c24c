"""One-off A/B: our kernels launched with and without programmatic dependent launch (LESSISMORE_PDL), same
process, same inputs. 4 layers per CUDA graph, us per layer. 'after GEMM' = each layer is an o_proj-sized GEMM
(cuBLAS, launched normally) followed by our layer, minus the GEMMs alone: our layer's cost where it follows a
kernel that is not ours, as in vLLM's decode step."""
import os
import sys
import torch
sys.path.insert(0, "scripts")
from bench_kernels import Case, bench, HQ, HKV, D  # noqa: E402
from lessismore_vllm.kernels import max_workspace_numel, pdl, select, selection, sparse_decode  # noqa: E402

LAYERS, BUDGET = 4, 2048
print("rank sort:", selection.rank_sort_choice(), "top-k:", selection.top_k_choice(), flush=True)


def set_pdl(on: bool):
    os.environ["LESSISMORE_PDL"] = "auto" if on else "off"
    pdl.enabled.cache_clear()
    assert pdl.enabled() == on, "PDL not available here"


for batch, L in [(1, 16384), (8, 16384), (16, 16384), (32, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    a = torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(batch, 4096, device="cuda", dtype=torch.bfloat16)

    def sel():
        for x, (p, c, s) in zip(cases, bufs):
            select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out, workspace=ws)

    def sparse():
        for x, (_, c, s) in zip(cases, bufs):
            sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws)

    def gemm_sparse():
        for x, (_, c, s) in zip(cases, bufs):
            torch.mm(a, w, out=o)
            sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws)

    def gemm_sel():
        for x, (p, c, s) in zip(cases, bufs):
            torch.mm(a, w, out=o)
            select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out, workspace=ws)

    gemm = bench(lambda: [torch.mm(a, w, out=o) for _ in range(LAYERS)]) / LAYERS
    res = {}
    for on in (False, True, False, True):  # twice each, interleaved
        set_pdl(on)
        outs = []
        r = dict(sparse=bench(sparse) / LAYERS, sparse_after_gemm=bench(gemm_sparse) / LAYERS - gemm,
                 selection=bench(sel) / LAYERS, selection_after_gemm=bench(gemm_sel) / LAYERS - gemm)
        sparse()
        outs = [x.out.clone() for x in cases]
        for k, v in r.items():
            res.setdefault((on, k), []).append(v)
        res.setdefault((on, "out"), outs)
    same = all(torch.equal(u, v) for u, v in zip(res[(False, "out")], res[(True, "out")]))
    print(f"B={batch:3d} L={L:5d} gemm {gemm*1e3:6.1f} us | bit-identical sparse output on/off: {same}", flush=True)
    for k in ("sparse", "sparse_after_gemm", "selection", "selection_after_gemm"):
        off, on = min(res[(False, k)]), min(res[(True, k)])
        print(f"   {k:22s} off {off*1e3:7.1f} us  pdl {on*1e3:7.1f} us  ({(off - on)*1e3:+6.1f} us, "
              f"{off/on:5.3f}x)  runs off {[round(t*1e3,1) for t in res[(False,k)]]} on {[round(t*1e3,1) for t in res[(True,k)]]}",
              flush=True)
    del cases, bufs
    torch.cuda.empty_cache()
