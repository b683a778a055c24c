"""Is the ranking kernel's first radix pass slowed by shared-memory atomics on few bins? (prepared 2026-12-07, sixth
session, for the next GPU session; not run yet.) The first pass histograms the top 12 bits of each logit's order key
(sign, exponent, 3 mantissa bits): Gaussian logits fill a few dozen of the 4096 bins, so a warp's 32 atomic adds
often hit the same addresses. This times csrc/rank_keys.cu built with -DLESSISMORE_PHASE_CLOCKS (per-phase clock64
stamps, median over blocks) on the same shapes with
  randn    Gaussian logits (as the GPU tests and the A/B scripts use),
  spread   logits whose order keys' top 12 bits are spread over ~2000 bins (random finite bit patterns, both signs),
so the difference in pass 1 is the cost of the address conflicts (pass 2 and the rest also change: the threshold
bin then holds few keys). If spread's pass 1 is much shorter, a first pass binned over the keys' actual span is
worth building; if not, the pass is bound by something else (loads, barriers).
    python docs/perf-runs/2026-12-07-s18/pass1_conflicts.py [BxL,...]
"""
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "docs/perf-runs/2026-12-07-s17"))
from rank_phases import order_keys  # noqa: E402  (the kernel's order key, as int64)
HQ, BUDGET, SINKS, RECENT, MID = 32, 2048, 4, 508, 1536
PHASES = ["pass1", "pass2", "pass3", "compact", "to_regs", "rank", "scatter"]


def logits(kind: str, B: int, L: int, gen) -> torch.Tensor:
    if kind == "randn":
        return torch.randn(B, HQ, L, device="cuda", generator=gen)
    bits = torch.randint(0x00800000, 0x7F000000, (B, HQ, L), device="cuda", generator=gen, dtype=torch.int32)
    sign = torch.randint(0, 2, (B, HQ, L), device="cuda", generator=gen, dtype=torch.int32) << 31
    return (bits | sign).view(torch.float32)


def main():
    shapes = [tuple(map(int, s.split("x"))) for s in (sys.argv[1] if len(sys.argv) > 1 else "1x16384,32x16384").split(",")]
    timed = load(name="lessismore_rank_keys_phases", sources=[str(REPO / "csrc/rank_keys.cu")],
                 extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo", "-DLESSISMORE_PHASE_CLOCKS"])
    mhz = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True).stdout.split()[0])
    print(f"device {torch.cuda.get_device_name()}, max SM clock {mhz} MHz (us = cycles / that)", flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for B, L in shapes:
        for kind in ("randn", "spread"):
            x = logits(kind, B, L, gen)
            bins = order_keys(x) >> 20  # the first pass's 12-bit digit
            used = sum(torch.unique(bins[0, h]).numel() for h in range(4)) / 4  # row 0's first four heads
            seq = torch.full((B,), L, device="cuda", dtype=torch.int32)
            keys = torch.empty(B, L, device="cuda", dtype=torch.int32)
            for _ in range(5):
                keys.fill_(2**31 - 1)
                try:  # the full path's first pass: with rank_kept (2026-12-07-s19) in the tree, turn it off
                    timed.rank_keys_from_logits(x, seq, keys, MID, BUDGET, SINKS, RECENT, HQ, 0, keep=False)
                except TypeError:
                    timed.rank_keys_from_logits(x, seq, keys, MID, BUDGET, SINKS, RECENT, HQ, 0)
            torch.cuda.synchronize()
            clocks = timed.phase_clocks()[: B * HQ].to(torch.float64)
            d = (clocks[:, 1:8] - clocks[:, :7]) / mhz
            med = d.median(dim=0).values.tolist()
            total = ((clocks[:, 7] - clocks[:, 0]) / mhz).median().item()
            print(f"B={B:3d} L={L:6d} {kind:6s} bins used per head {used:6.0f} | per-block median us: "
                  + " ".join(f"{p} {m:5.1f}" for p, m in zip(PHASES, med)) + f" | total {total:5.1f}", flush=True)


if __name__ == "__main__":
    main()
