"""CPU model of rank_kept's keep threshold (csrc/rank_keys.cu keep_bin): for a row of candidates, the sample rank r,
the number of candidates kept, and whether the kept path runs (mid <= kept <= 8192 and n >= 4 mid). No GPU needed.
    python docs/perf-runs/2026-12-07-s19/keep_model.py
"""
import math, sys, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "2026-12-07-s17"))
from rank_phases import order_keys
S, MID = 2048, 1536
def kept_count(cand):  # cand: 1-D logits of the candidates
    n = cand.numel()
    k = order_keys(cand[None, None])[0, 0].to(torch.int64) & 0xFFFFFFFF
    samp = k[(torch.arange(S) * n) // S] >> 20
    hist = torch.bincount(samp, minlength=4096)
    m = MID * S / n
    r = min(S, math.ceil(m + 3 * math.sqrt(m)) + 4)
    above = hist.flip(0).cumsum(0)
    b = 4095 - int((above >= r).nonzero()[0])
    kept = int(((k >> 20) >= b).sum())
    return n, r, kept
g = torch.Generator().manual_seed(7)
for pat in ["randn", "rising", "sampled_high", "heavy_tail", "few_values"]:
    for L in (16384 + 512, 30000, 7000, 131072):
        x = torch.randn(L, generator=g)
        if pat == "rising": x += torch.linspace(0, 6, L)
        if pat == "sampled_high": x[4::8] += 8
        if pat == "heavy_tail": x = torch.distributions.StudentT(1.5).sample((L,))
        if pat == "few_values": x = torch.randint(0, 12, (L,), generator=g).float()
        n, r, kept = kept_count(x[4:L - 508])
        print(pat, L, "n", n, "r", r, "kept", kept, "ok" if MID <= kept <= 8192 and n >= 4 * MID else "fallback/off")
