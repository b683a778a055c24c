"""One-off: the sparse kernel's split plan (whole waves) and in-kernel combine vs the previous defaults, and the
same for the selection layer's dense pass. Same inputs, one run, 4 layers per CUDA graph, ms per layer."""
import sys
import torch
sys.path.insert(0, "scripts")
from bench_kernels import Case, bench, HQ, HKV, D, KV_BYTES_PER_TOKEN  # noqa: E402
from lessismore_vllm.kernels import SparseDecodeTuning as T, SplitWorkspace, sparse_decode  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import dense_decode_with_logits, plan_splits  # noqa: E402

LAYERS, BUDGET, PEAK = 4, 2048, 3350.0
sparse_variants = {
    "old(ceil,2 kernels)": T(whole_waves=False, combine_in_kernel=False),
    "waves,2 kernels": T(combine_in_kernel=False),
    "ceil,combine": T(whole_waves=False),
    "NEW waves,combine tp264": T(),
    "waves,combine tp132": T(target_programs=132),
    "waves,combine tp396": T(target_programs=396),
    "waves,combine tp528": T(target_programs=528),
    "bn32 s4 tp264": T(block_n=32, num_stages=4),
    "bn64 s2 tp396": T(num_stages=2, target_programs=396),
    "bn64 w8 tp264": T(num_warps=8),
}
dense_variants = {
    "old dense(1584,2 kernels)": T(target_programs=1584, whole_waves=False, combine_in_kernel=False),
    "dense 1584 combine": T(target_programs=1584, whole_waves=False),
    "dense waves264 combine": T(),
    "dense waves528 combine": T(target_programs=528),
    "dense 3168 combine": T(target_programs=3168, whole_waves=False),
}
for batch, L in [(1, 16384), (8, 16384), (16, 16384), (32, 16384), (8, 32768)]:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    t_fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS
    print(f"B={batch} L={L} FA3 {t_fa3*1000:.1f} us", flush=True)
    sparse_bytes = batch * BUDGET * (KV_BYTES_PER_TOKEN + 4)
    for name, t in sparse_variants.items():
        ws = SplitWorkspace.allocate(batch, HQ, HKV, D, BUDGET, "cuda", t)
        ms = bench(lambda: [sparse_decode(x.q, x.kv, s, c, x.scale, x.out, ws, t) for x, (_, c, s) in zip(cases, bufs)]) / LAYERS
        print(f"  sparse {name:28s} splits {plan_splits(batch, HKV, BUDGET, t):2d} {ms*1000:7.1f} us "
              f"{100 * sparse_bytes / ms / 1e6 / PEAK:5.1f}% peak", flush=True)
    width = cases[0].bt.shape[1] * 16
    logits = [torch.empty(batch, HQ, width, device="cuda") for _ in cases]
    for name, t in dense_variants.items():
        ws = SplitWorkspace.allocate(batch, HQ, HKV, D, BUDGET, "cuda", t)
        ms = bench(lambda: [dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, lg, BUDGET, ws, t)
                            for x, lg in zip(cases, logits)]) / LAYERS
        print(f"  dense pass {name:28s} splits {plan_splits(batch, HKV, BUDGET, t):2d} {ms*1000:7.1f} us "
              f"{ms / t_fa3:5.2f}x FA3", flush=True)
    del cases, bufs, logits
    torch.cuda.empty_cache()
