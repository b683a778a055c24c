"""One-off A/B (ran against pdl.diff, since reverted): our kernels launched with and without programmatic dependent
launch (PDL), same process, same inputs; 4 layers per CUDA graph, us per layer. 'after GEMM' = each layer follows an
o_proj-sized GEMM (cuBLAS, launched normally), minus the GEMMs alone: our layer's cost where it follows a kernel that
is not ours, as in vLLM's decode step.

    python3 pdl_ab.py            # PDL off vs on, alone and after a GEMM; are the sparse outputs bit-identical?
    python3 pdl_ab.py variants   # after a GEMM: PDL on none / all / the sparse combine / the selection / the sparse
"""
import sys

import torch
sys.path.insert(0, "scripts")
from bench_kernels import Case, bench, HQ, HKV, D  # noqa: E402
from lessismore_vllm.kernels import max_workspace_numel, pdl, select, sparse_decode  # noqa: E402

LAYERS, BUDGET = 4, 2048
VARIANTS = ["none", "all", "combine", "selection", "sparse"] if sys.argv[1:] == ["variants"] else ["none", "all"]
assert pdl.enabled(), "PDL not available here"
state = {"variant": "all", "in_select": False}


def launch_args():  # replaces pdl.launch_args: which launches use PDL, by variant and caller
    caller, v, in_select = sys._getframe(1).f_code.co_name, state["variant"], state["in_select"]
    on = {"none": False, "all": True, "combine": caller == "_combine" and not in_select,
          "selection": in_select, "sparse": not in_select}[v]
    return {"USE_PDL": on, "launch_pdl": on}


pdl.launch_args = launch_args
for batch, L in [(1, 16384), (8, 16384), (16, 16384), (32, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    a = torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(batch, 4096, device="cuda", dtype=torch.bfloat16)

    def sparse(gemm=False):
        for x, (_, c, s) in zip(cases, bufs):
            if gemm:
                torch.mm(a, w, out=o)
            sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws)

    def sel(gemm=False):
        state["in_select"] = True
        for x, (p, c, s) in zip(cases, bufs):
            if gemm:
                torch.mm(a, w, out=o)
            select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out, workspace=ws)
        state["in_select"] = False

    gemm = bench(lambda: [torch.mm(a, w, out=o) for _ in range(LAYERS)]) / LAYERS
    res, outs = {}, {}
    for _ in range(2):  # twice each, interleaved
        for v in VARIANTS:
            state["variant"] = v
            r = {"sparse_after_gemm": bench(lambda: sparse(True)) / LAYERS - gemm,
                 "selection_after_gemm": bench(lambda: sel(True)) / LAYERS - gemm}
            if len(VARIANTS) == 2:
                r.update(sparse=bench(sparse) / LAYERS, selection=bench(sel) / LAYERS)
                sparse()
                outs[v] = [x.out.clone() for x in cases]
            for k, t in r.items():
                res.setdefault((v, k), []).append(t)
    same = "" if not outs else f" | bit-identical sparse output: {all(map(torch.equal, outs['none'], outs['all']))}"
    print(f"B={batch:3d} L={L:5d} gemm {gemm*1e3:6.1f} us{same}", flush=True)
    for k in sorted({k for _, k in res}):
        print(f"   {k:22s} " + "  ".join(f"{v} {min(res[(v, k)])*1e3:7.1f} us (runs {[round(t*1e3, 1) for t in res[(v, k)]]})"
                                       for v in VARIANTS), flush=True)
    del cases, bufs
    torch.cuda.empty_cache()
