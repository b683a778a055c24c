import sys; sys.path.insert(0, "scripts")
import torch
import bench_kernels as B
from lessismore_vllm.kernels import SparseDecodeTuning, max_workspace_numel
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits
shapes = [(1, 16384), (1, 32768), (8, 32768), (16, 16384), (16, 32768), (32, 16384), (32, 32768)]
grid = [(64, 4, 3, tp) for tp in (264, 396, 528, 792, 1056, 1584)] + [(128, 4, 2, tp) for tp in (264, 528, 1056)] + [(64, 4, 2, 1056)]
table = {g: [] for g in grid}
for b, L in shapes:
    cases = [B.Case(b, L, s) for s in range(2)]
    W = cases[0].bt.shape[1] * 16
    logits = [torch.empty(b, 32, W, device="cuda") for _ in cases]
    t_fa3 = B.bench(lambda: [x.fa3() for x in cases]) / 2
    for g in grid:
        bn, w, st, tp = g
        t = SparseDecodeTuning(block_n=bn, num_warps=w, num_stages=st, target_programs=tp)
        ws = torch.empty(max_workspace_numel(b, 32, 8, 128, 2048, t), device="cuda")
        ms = B.bench(lambda: [dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, lg, 2048, ws, t) for x, lg in zip(cases, logits)]) / 2
        table[g].append(ms / t_fa3)
    print(f"B{b} L{L}: FA3 {t_fa3*1000:.1f} us", flush=True)
    del cases, logits; torch.cuda.empty_cache()
print("tuning (block_n/warps/stages/target_programs): dense pass time / FA3 at " + ", ".join(f"{b}x{L//1024}K" for b, L in shapes) + " | max | mean")
for g, r in sorted(table.items(), key=lambda kv: max(kv[1])):
    print(f"{g}: " + " ".join(f"{x:.2f}" for x in r) + f" | {max(r):.2f} | {sum(r)/len(r):.3f}", flush=True)
