"""One-off A/B (LESSISMORE_RANK_KERNEL=triton vs default, one process each). The selection layer as it runs by default
(fused pass + selection), the sparse layer, FA3; 4 layers per CUDA graph; us per layer."""
import sys
import torch
sys.path.insert(0, "scripts")
import lessismore_vllm  # noqa: E402
from bench_kernels import Case, bench, HQ, HKV, D  # noqa: E402
from lessismore_vllm.kernels import max_workspace_numel, select, sparse_decode  # noqa: E402

tag = sys.argv[1]
LAYERS, BUDGET = 4, 2048
from lessismore_vllm.kernels import selection as _sel  # noqa: E402
print(tag, lessismore_vllm.__file__, "rank sort:", _sel.rank_sort_choice(), flush=True)
for batch, L in [(1, 16384), (8, 16384), (16, 16384), (32, 32768), (64, 4096)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    layer = bench(lambda: [select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, c, s, attention_out=x.out,
                                  workspace=ws) for x, (p, c, s) in zip(cases, bufs)]) / LAYERS
    sparse = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws) for x, (_, c, s) in zip(cases, bufs)]) / LAYERS
    print(f"{tag} B={batch:3d} L={L:5d} FA3 {fa3*1e3:7.1f} us | selection layer {layer*1e3:7.1f} us "
          f"({layer/fa3:4.2f}x FA3) | sparse {sparse*1e3:6.1f} us", flush=True)
    del cases, bufs
    torch.cuda.empty_cache()
