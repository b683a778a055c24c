"""One-off A/B on one GPU (2026-12-07, fourth session): where a selection layer's ranking and union run while the
model's MLP runs. Per shape: a selection layer (fused attention pass + selection, budget 2048), a Qwen3-8B-shaped
MLP (gate_up 4096 x 24576, down 12288 x 4096, bf16) and a sparse layer, with the selection
  main  in line (LESSISMORE_SELECTION_STREAM=main),
  side  on a side stream of default priority, joined before the sparse layer
        (LESSISMORE_SELECTION_STREAM=side, the engine's way),
  high  the same on a side stream of the highest priority (captured kernels keep their stream's priority: PyTorch
        instantiates graphs with cudaGraphInstantiateFlagUseNodePriority);
and the same chain with FA3's layer in place of the selection layer, and with no attention layer before the MLP,
so that the selection layer's cost inside the chain, (chain - base) / (FA3 chain - base), can be read off.
Outputs and selections of the three ways are compared bit for bit. 4 chains per CUDA graph; us per chain.
    python docs/perf-runs/2026-12-07-s16/side_priority_ab.py [1x16384,8x16384,32x16384]"""
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import max_workspace_numel, select, sparse_decode  # noqa: E402

LAYERS, BUDGET = 4, 2048
shapes = [(1, 16384), (8, 16384), (32, 16384)]
if len(sys.argv) > 1:
    shapes = [tuple(int(v) for v in s.split("x")) for s in sys.argv[1].split(",")]
least, greatest = torch.cuda.Stream.priority_range()
print(f"{torch.cuda.get_device_name()} torch {torch.__version__} stream priorities {least}..{greatest}", flush=True)
streams = {"main": None, "side": torch.cuda.Stream(), "high": torch.cuda.Stream(priority=greatest)}
w1 = torch.randn(24576, 4096, device="cuda", dtype=torch.bfloat16) * 0.01
w2 = torch.randn(4096, 12288, device="cuda", dtype=torch.bfloat16) * 0.01
for batch, L in shapes:
    cases = [Case(batch, L, seed) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    xs = [torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16) for _ in cases]
    done = torch.cuda.Event()

    def mlp(h):
        a = torch.nn.functional.linear(h, w1)
        torch.nn.functional.linear(a[:, :12288] * a[:, 12288:], w2)

    def chain(attention, stream=None, bufs=None):
        def fn():
            for i, (x, h) in enumerate(zip(cases, xs)):
                if attention == "select":
                    p, n, s = bufs[i]
                    select(x.q, x.kv, x.bt, x.seq_lens, x.scale, BUDGET, 0.25, 4, p, n, s, attention_out=x.out,
                           workspace=ws, selection_stream=stream)
                    if stream is not None:
                        done.record(stream)
                elif attention == "fa3":
                    x.fa3()
                mlp(h)
                if stream is not None:
                    torch.cuda.current_stream().wait_event(done)
                p, n, s = bufs[i] if bufs else fixed[i]
                sparse_decode(x.q, x.kv, s, n, x.scale, x.out, ws)
        return fn

    fixed = [x.selection_buffers(BUDGET) for x in cases]  # the FA3 and base chains' sparse layers read these sets
    base = bench(chain("none")) / LAYERS * 1e3
    fa3 = bench(chain("fa3")) / LAYERS * 1e3
    fa3_alone = bench(lambda: [x.fa3() for x in cases]) / LAYERS * 1e3
    row = f"B={batch:3d} L={L:5d} | FA3 layer {fa3_alone:6.1f} | MLP + sparse {base:6.1f} | FA3 chain {fa3:6.1f}"
    results, same = {}, True
    for way, stream in streams.items():
        bufs = [tuple(t.clone() for t in b) for b in fixed]
        t = bench(chain("select", stream, bufs)) / LAYERS * 1e3
        torch.cuda.synchronize()
        got = [x.out.clone() for x in cases] + [buf for b in bufs for buf in b]
        if results:
            same &= all(torch.equal(a, b) for a, b in zip(results["main"], got))
        results.setdefault("main", got)
        row += f" | {way} {t:6.1f} ({(t - base) / (fa3 - base):4.2f}x FA3 in chain)"
    print(row + f" | same outputs and selections: {same}", flush=True)
    del cases, ws, xs
    torch.cuda.empty_cache()
