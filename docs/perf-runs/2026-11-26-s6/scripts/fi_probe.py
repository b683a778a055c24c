import sys; sys.path.insert(0, "scripts")
import torch, triton, inspect
import flashinfer
import bench_kernels as B
from lessismore_vllm.kernels import selection as S
print("TopKTieBreak:", {k: int(v) for k, v in vars(flashinfer.TopKTieBreak).items() if not k.startswith("_")} if hasattr(flashinfer, "TopKTieBreak") else None)
try:
    from flashinfer import topk as T
    print([n for n in dir(T) if not n.startswith("__")])
    print(inspect.getsource(T.top_k_ragged_transform)[:2500])
except Exception as e:
    print("src", e)
def bench(fn):
    return B.bench(fn, rep=50) * 1000
TB = getattr(flashinfer, "TopKTieBreak", None)
# ties: set equality vs "lowest index first" rule
x = torch.zeros(8, 8192, device="cuda"); x[:, ::3] = 1.0; x[:, 5::11] = 2.0
off = torch.zeros(8, device="cuda", dtype=torch.int32); ln = torch.full((8,), 8000, device="cuda", dtype=torch.int32)
k = 1500
for det in (False, True):
    for tb in ([None] + ([v for k2, v in vars(TB).items() if not k2.startswith("_")] if TB else [])):
        try:
            kw = dict(deterministic=det) if tb is None else dict(deterministic=det, tie_break=tb)
            idx = flashinfer.top_k_ragged_transform(x, off, ln, k, **kw)
            want = torch.sort(x[:, :8000], dim=1, descending=True, stable=True).indices[:, :k]
            same = all(set(idx[r].tolist()) == set(want[r].tolist()) for r in range(8))
            print(f"det={det} tie_break={tb}: set == lowest-index rule: {same}", flush=True)
        except Exception as e:
            print(f"det={det} tie_break={tb}: {type(e).__name__} {e}"[:200], flush=True)
for b, L in [(1, 16384), (16, 16384), (8, 32768), (32, 32768)]:
    c = B.Case(b, L)
    W = c.bt.shape[1] * 16
    logits = S.decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, W)
    rows = b * 32
    flat = logits.view(rows, -1)
    off = torch.zeros(rows, device="cuda", dtype=torch.int32)
    ln = (c.seq_lens - 512).repeat_interleave(32)
    r = {}
    r["fi ragged"] = bench(lambda: flashinfer.top_k_ragged_transform(flat, off, ln, 1532))
    if TB:
        r["fi ragged det"] = bench(lambda: flashinfer.top_k_ragged_transform(flat, off, ln, 1532, deterministic=True))
    packed = torch.randint(-2**62, 2**62, (rows, 1532), device="cuda")
    r["torch.sort int64"] = bench(lambda: torch.sort(packed, dim=1, descending=True))
    pos = torch.empty(b, 2048, device="cuda", dtype=torch.int32); cnt = torch.empty(b, device="cuda", dtype=torch.int32); sl = torch.empty_like(pos)
    r["triton step"] = bench(lambda: S.select(c.q, c.kv, c.bt, c.seq_lens, c.scale, 2048, 0.25, 4, pos, cnt, sl, method="triton"))
    r["logits"] = bench(lambda: S.decode_logits(c.q, c.kv, c.bt, c.seq_lens, c.scale, W, fill_tail=False))
    print(b, L, " | ".join(f"{n}: {t:.1f}" for n, t in r.items()), flush=True)
    del c, logits, flat
    torch.cuda.empty_cache()
