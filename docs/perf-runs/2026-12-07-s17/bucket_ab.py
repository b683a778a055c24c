"""One-off A/B on one GPU (2026-12-07, fifth session): a selection layer whose ranking orders each head's winners by
bucket_ranks (csrc/rank_keys.cu, the default from this session: a counting sort over 1024 buckets of the winners'
keys, then ranks inside each bucket) against the CUB block radix sort it replaces (bucket_limit=0). Per shape, us
per layer, 4 layers per CUDA graph:
  alone   the selection layer (fused attention pass + selection, budget 2048), against FA3's decode layer;
  chain   selection layer + Qwen3-8B-shaped MLP + sparse layer with the selection on the side stream (the engine's
          default), and the same chain with FA3's layer / with no attention layer (base), so the selection layer's
          cost inside the chain is (chain - base) / (FA3 chain - base).
Selections and outputs of the two ways are compared bit for bit.
    python docs/perf-runs/2026-12-07-s17/bucket_ab.py [BxL[xTABLE],...]   (TABLE: block tables that many tokens wide)
"""
import functools
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import HKV, HQ, D, Case, bench  # noqa: E402

from lessismore_vllm.kernels import cuda_ext, max_workspace_numel, select, sparse_decode  # noqa: E402

LAYERS, BUDGET = 4, 2048
spec = sys.argv[1] if len(sys.argv) > 1 else "1x16384,1x16384x40960,8x16384,32x16384"
shapes = [tuple(int(v) for v in s.split("x")) for s in spec.split(",")]
plain_launcher = cuda_ext.rank_from_logits_launcher()
assert plain_launcher is not None, "csrc/rank_keys.cu did not build"
ways = {"sort": functools.partial(plain_launcher, bucket_limit=0), "bucket": functools.partial(plain_launcher, bucket_limit=48)}
print(f"{torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
w1 = torch.randn(24576, 4096, device="cuda", dtype=torch.bfloat16) * 0.01
w2 = torch.randn(4096, 12288, device="cuda", dtype=torch.bfloat16) * 0.01
side = torch.cuda.Stream()
for shape in shapes:
    batch, L, table = shape if len(shape) == 3 else (*shape, 0)
    cases = [Case(batch, L, seed, table) for seed in range(LAYERS)]
    ws = torch.empty(max_workspace_numel(batch, HQ, HKV, D, BUDGET), device="cuda")
    xs = [torch.randn(batch, 4096, device="cuda", dtype=torch.bfloat16) for _ in cases]
    done = torch.cuda.Event()

    def mlp(h):
        a = torch.nn.functional.linear(h, w1)
        torch.nn.functional.linear(a[:, :12288] * a[:, 12288:], w2)

    def chain(attention, stream=None, bufs=None, with_mlp=True):
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
                if not with_mlp:
                    if stream is not None:
                        torch.cuda.current_stream().wait_event(done)
                    continue
                mlp(h)
                if stream is not None:
                    torch.cuda.current_stream().wait_event(done)
                p, n, s = bufs[i] if bufs else fixed[i]
                sparse_decode(x.q, x.kv, s, n, x.scale, x.out, ws)
        return fn

    fixed = [x.selection_buffers(BUDGET) for x in cases]
    base = bench(chain("none")) / LAYERS * 1e3
    fa3 = bench(chain("fa3")) / LAYERS * 1e3
    fa3_alone = bench(lambda: [x.fa3() for x in cases]) / LAYERS * 1e3
    row = f"B={batch:3d} L={L:5d} table={table or L:5d} | FA3 layer {fa3_alone:6.1f} | base {base:6.1f} | FA3 chain {fa3:6.1f}"
    results, same = {}, True
    original = cuda_ext.rank_from_logits_launcher
    for way, launcher in ways.items():
        cuda_ext.rank_from_logits_launcher = lambda launcher=launcher: launcher
        try:
            bufs = [tuple(t.clone() for t in b) for b in fixed]
            alone = bench(chain("select", None, bufs, with_mlp=False)) / LAYERS * 1e3
            t = bench(chain("select", side, bufs)) / LAYERS * 1e3
        finally:
            cuda_ext.rank_from_logits_launcher = original
        torch.cuda.synchronize()
        got = [x.out.clone() for x in cases] + [buf for b in bufs for buf in b]
        if results:
            same &= all(torch.equal(a, b) for a, b in zip(results["sort"], got))
        results.setdefault("sort", got)
        row += (f" | {way}: alone {alone:6.1f} ({alone / fa3_alone:4.2f}x) chain {t:6.1f} "
                f"({(t - base) / (fa3 - base):4.2f}x FA3 in chain)")
    print(row + f" | same outputs and selections: {same}", flush=True)
    del cases, ws, xs
    torch.cuda.empty_cache()
