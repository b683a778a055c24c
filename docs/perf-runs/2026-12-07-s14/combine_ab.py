"""One-off A/B on one GPU (2026-12-07, third session): the split kernels' partials combined by a second kernel
("kernel", LESSISMORE_SPLIT_COMBINE=kernel) or by each (row, KV head)'s last split in the same launch ("fused",
split_counters). Per shape: FA3's decode layer, the sparse layer (budget 2048), the selection layer's dense pass
alone, and the whole selection layer (pass + selection), each way; outputs and selections compared bit for bit.
4 layers per CUDA graph; us per layer. The fused combine measured slower and was removed after this run, so the
script needs the commit it ran at (README.md here):
git checkout c6e3ec8 && python docs/perf-runs/2026-12-07-s14/combine_ab.py [1x16384,8x16384]"""
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import max_workspace_numel, plan_splits, select, sparse_decode  # noqa: E402
from lessismore_vllm.kernels.sparse_decode import DENSE_TUNING, dense_decode_with_logits  # noqa: E402

LAYERS, BUDGET = 4, 2048
shapes = [(1, 16384), (1, 32768), (2, 16384), (4, 16384), (8, 16384), (16, 16384), (8, 32768), (32, 16384)]
if len(sys.argv) > 1:
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[1].split(",")]
print(f"{torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
for batch, L in shapes:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    counters = torch.zeros(batch * HKV, device="cuda", dtype=torch.int32)
    bufs = [x.selection_buffers(BUDGET) for x in cases]
    fa3 = bench(lambda: [x.fa3() for x in cases]) / LAYERS * 1e3
    row = (f"B={batch:3d} L={L:5d} splits sparse {plan_splits(batch, HKV, BUDGET)} dense "
           f"{plan_splits(batch, HKV, BUDGET, DENSE_TUNING)} | FA3 {fa3:6.1f}")
    outs, same = {}, True
    for part in ("sparse", "pass", "layer"):
        row += f" | {part}"
        for way, c in (("kernel", None), ("fused", counters)):
            if part == "sparse":
                def fn(c=c):
                    for x, (p, n, s) in zip(cases, bufs):
                        sparse_decode(x.q, x.kv, s, n, x.scale, x.out, ws, split_counters=c)
            elif part == "pass":
                logits = torch.empty(batch, HQ, L, device="cuda")

                def fn(c=c, logits=logits):
                    for x in cases:
                        dense_decode_with_logits(x.q, x.kv, x.bt, x.seq_lens, x.scale, x.out, logits, BUDGET, ws,
                                                 split_counters=c)
            else:
                sel = [(p.clone(), n.clone(), s.clone()) for p, n, s in bufs]

                def fn(c=c, sel=sel):
                    for x, (p, n, s) in zip(cases, sel):
                        select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, n, s, attention_out=x.out,
                               workspace=ws, split_counters=c)
            t = bench(fn) / LAYERS * 1e3
            fn()
            torch.cuda.synchronize()
            got = [x.out.clone() for x in cases] + ([t for s in sel for t in s] if part == "layer" else [])
            if way == "fused":
                same &= all(torch.equal(a, b) for a, b in zip(outs[part], got)) and not counters.any()
            outs[part] = got
            row += f" {way} {t:6.1f}"
            if way == "fused":
                row += f" ({t / fa3:4.2f}x FA3)" if part == "layer" else ""
    # The side stream: a selection layer, then a Qwen3-8B-shaped MLP (gate_up 4096 x 24576, down 12288 x 4096,
    # bf16) and a sparse layer, in line or with the ranking and union on a side stream joined before the sparse layer.
    w1 = torch.randn(24576, 4096, device="cuda", dtype=torch.bfloat16)
    w2 = torch.randn(4096, 12288, device="cuda", dtype=torch.bfloat16)
    side, done = torch.cuda.Stream(), torch.cuda.Event()
    xs = [torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16) for _ in cases]
    row += " | layer + MLP + sparse:"
    for way in ("main", "side"):
        def fn(way=way):
            for x, h, (p, n, s) in zip(cases, xs, bufs):
                select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, n, s, attention_out=x.out,
                       workspace=ws, split_counters=counters, selection_stream=side if way == "side" else None)
                if way == "side":
                    done.record(side)
                a = torch.nn.functional.linear(h, w1)
                torch.nn.functional.linear(a[:, :12288] * a[:, 12288:], w2)
                if way == "side":
                    torch.cuda.current_stream().wait_event(done)
                sparse_decode(x.q, x.kv, s, n, x.scale, x.out, ws, split_counters=counters)
        row += f" {way} {bench(fn) / LAYERS * 1e3:6.1f}"
    mlp = bench(lambda: [torch.nn.functional.linear(torch.nn.functional.linear(h, w1)[:, :12288], w2) for h in xs])
    row += f" (MLP alone {mlp / LAYERS * 1e3:6.1f})"
    print(row + f" | same outputs and selections: {same}", flush=True)
    del w1, w2
    del cases
    torch.cuda.empty_cache()
