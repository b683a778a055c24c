import sys, itertools; sys.path.insert(0, "scripts")
import torch, triton
import bench_kernels as B
from lessismore_vllm.kernels import SparseDecodeTuning, max_workspace_numel
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits
shapes = [(1, 16384), (8, 32768), (16, 16384), (32, 32768)]
for b, L in shapes:
    cases = [B.Case(b, L, s) for s in range(2)]
    W = cases[0].bt.shape[1] * 16
    logits = [torch.empty(b, 32, W, device="cuda") for _ in cases]
    t_fa3 = B.bench(lambda: [x.fa3() for x in cases]) / 2
    line = f"B{b} L{L}: FA3 {t_fa3*1000:.1f} us |"
    for bn, w, st, tp in [(64, 4, 3, 264), (64, 4, 2, 264), (64, 8, 3, 264), (128, 8, 3, 264), (128, 4, 2, 264), (64, 4, 3, 528), (64, 4, 3, 1056), (128, 8, 3, 528), (32, 4, 3, 528)]:
        t = SparseDecodeTuning(block_n=bn, num_warps=w, num_stages=st, target_programs=tp)
        ws = torch.empty(max_workspace_numel(b, 32, 8, 128, 2048, t), device="cuda")
        try:
            ms = B.bench(lambda: [dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, lg, 2048, ws, t) for x, lg in zip(cases, logits)]) / 2
            line += f" {bn}/{w}/{st}/{tp}: {ms*1000:.1f} ({ms/t_fa3:.2f}x)"
        except Exception as e:
            line += f" {bn}/{w}/{st}/{tp}: {type(e).__name__}"
    print(line, flush=True)
    del cases, logits; torch.cuda.empty_cache()
