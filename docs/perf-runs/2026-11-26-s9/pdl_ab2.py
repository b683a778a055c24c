"""One-off: which of our launches gain from programmatic dependent launch. Variants: none, all, combine only,
selection only (prepare/radix/rank kernels and the dense pass's split+combine), sparse only (split+combine of
the sparse layers). 4 layers per CUDA graph; each layer after an o_proj-sized GEMM (cuBLAS), minus the GEMMs."""
import sys
import torch
sys.path.insert(0, "scripts")
from bench_kernels import Case, bench, HQ, HKV, D  # noqa: E402
from lessismore_vllm.kernels import max_workspace_numel, pdl, select, sparse_decode  # noqa: E402

LAYERS, BUDGET = 4, 2048
assert pdl.enabled()
MODE = {"v": "all"}
in_select = {"on": False}


def launch_args():
    caller = sys._getframe(1).f_code.co_name
    v = MODE["v"]
    if v == "none":
        on = False
    elif v == "all":
        on = True
    elif v == "combine":
        on = caller == "_combine" and not in_select["on"]
    elif v == "selection":
        on = in_select["on"]
    elif v == "sparse":
        on = not in_select["on"]
    return {"USE_PDL": on, "launch_pdl": on}


pdl.launch_args = launch_args
VARIANTS = ["none", "all", "combine", "selection", "sparse"]
for batch, L in [(1, 16384), (8, 16384), (16, 16384), (32, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    a = torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    o = torch.empty(batch, 4096, device="cuda", dtype=torch.bfloat16)

    def gemm_sparse():
        for x, (_, c, s) in zip(cases, bufs):
            torch.mm(a, w, out=o)
            sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws)

    def gemm_sel():
        in_select["on"] = True
        for x, (p, c, s) in zip(cases, bufs):
            torch.mm(a, w, out=o)
            select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out, workspace=ws)
        in_select["on"] = False

    gemm = bench(lambda: [torch.mm(a, w, out=o) for _ in range(LAYERS)]) / LAYERS
    res = {}
    for rep in range(2):
        for v in VARIANTS:
            MODE["v"] = v
            res.setdefault((v, "sparse"), []).append(bench(gemm_sparse) / LAYERS - gemm)
            res.setdefault((v, "selection"), []).append(bench(gemm_sel) / LAYERS - gemm)
    line = f"B={batch:3d} L={L:5d}"
    for k in ("sparse", "selection"):
        line += f" | {k} after GEMM, us: " + " ".join(f"{v} {min(res[(v, k)])*1e3:.1f}" for v in VARIANTS)
    print(line, flush=True)
    del cases, bufs
    torch.cuda.empty_cache()
