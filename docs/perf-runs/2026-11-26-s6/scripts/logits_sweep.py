import sys, itertools; sys.path.insert(0, "scripts")
import torch, triton
import bench_kernels as B
from lessismore_vllm.kernels import selection as S
shapes = [(1, 16384), (16, 16384), (8, 32768), (32, 32768)]
cases = [B.Case(b, L) for b, L in shapes]
W = [c.bt.shape[1] * 16 for c in cases]
kbytes = [b * L * 8 * 128 * 2 for b, L in shapes]
ref = [S.decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, w) for c, w in zip(cases, W)]
res = []
for bn, tiles, warps, stages in itertools.product((64, 128), (1, 4, 8, 16), (4, 8), (2, 3, 4)):
    S.LOGITS_SHAPE = S.LogitsShape(bn, tiles, warps, stages)
    try:
        ts = []
        for c, w, r in zip(cases, W, ref):
            out = S.decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, w)
            torch.testing.assert_close(out[..., : r.shape[-1]], r, atol=1e-3, rtol=1e-3)
            ts.append(B.bench(lambda: S.decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, w, fill_tail=False), rep=30) * 1000)
        res.append((sum(t / t0 for t, t0 in zip(ts, ts)), S.LOGITS_SHAPE, ts))
        print(f"{tuple(S.LOGITS_SHAPE)} " + " | ".join(f"{t:7.1f} us {kb / t / 1e3:5.0f} GB/s" for t, kb in zip(ts, kbytes)), flush=True)
    except Exception as e:
        print(tuple(S.LOGITS_SHAPE), type(e).__name__, str(e)[:200], flush=True)
