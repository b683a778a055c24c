"""Where csrc/rank_keys.cu's rank_keys_from_logits spends a head's time: the kernel built with
-DLESSISMORE_PHASE_CLOCKS records clock64() after each phase (radix passes 1-3, compaction, winners to registers,
sort, rank-key scatter) for each block; printed as the median and max over blocks, in us at the SM clock.
Each shape runs with bucket_limit 0 (the winners always ranked by the CUB sort) and the default (bucket_ranks
where no bucket of winners holds more than 48). Also: the sort's bit span (end_bit) and the union's deepest rank r* (the largest rank among the mid smallest rank
keys), for independent heads (random logits) and for heads sharing a common component (corr = 0.5, 0.9).
    python docs/perf-runs/2026-12-07-s17/rank_phases.py [BxL,...]
"""

import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

from lessismore_vllm.kernels import cuda_ext

REPO = Path(__file__).resolve().parents[3]
HQ, BUDGET, SINKS, RECENT, MID = 32, 2048, 4, 508, 1536
PHASES = ["pass1", "pass2", "pass3", "compact", "to_regs", "sort", "scatter"]


def order_keys(x: torch.Tensor) -> torch.Tensor:  # the kernel's order_key, as int64
    bits = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    neg = bits >> 31 == 1
    k = torch.where(neg, bits ^ 0xFFFFFFFF, bits ^ 0x80000000)
    return torch.where(bits == 0x80000000, bits, k)


def logits_for(B: int, L: int, corr: float, gen) -> torch.Tensor:
    ind = torch.randn(B, HQ, L, device="cuda", generator=gen)
    if corr > 0:
        common = torch.randn(B, 1, L, device="cuda", generator=gen)
        ind = corr**0.5 * common + (1 - corr) ** 0.5 * ind
    return ind.contiguous()


def main():
    shapes = [tuple(map(int, s.split("x"))) for s in (sys.argv[1] if len(sys.argv) > 1 else
                                                      "1x16384,8x16384,32x16384,1x32768").split(",")]
    timed = load(name="lessismore_rank_keys_phases", sources=[str(REPO / "csrc/rank_keys.cu")],
                 extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo", "-DLESSISMORE_PHASE_CLOCKS"])
    plain = cuda_ext.rank_from_logits_launcher()
    khz = torch.cuda.get_device_properties(0).clock_rate if hasattr(torch.cuda.get_device_properties(0),
                                                                     "clock_rate") else None
    import subprocess

    try:
        mhz = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True).stdout.split()[0])
    except Exception:
        mhz = None
    print(f"device {torch.cuda.get_device_name()}, SM clock now {mhz} MHz, props clock_rate {khz} kHz", flush=True)
    per_us = (mhz or 1755.0)  # cycles per us
    gen = torch.Generator(device="cuda").manual_seed(0)
    for B, L in shapes:
        for corr in (0.0, 0.5, 0.9):
            logits = logits_for(B, L, corr, gen)
            seq = torch.full((B,), L, device="cuda", dtype=torch.int32)
            keys = torch.empty(B, L, device="cuda", dtype=torch.int32)

            modes = {"sort": 0, "bucket": 48}  # bucket_limit 0: always the CUB sort; 48: the default

            def run(fn, limit):
                keys.fill_(2**31 - 1)
                fn(logits, seq, keys, MID, BUDGET, SINKS, RECENT, HQ, 0, bucket_limit=limit)

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            times, result, phases = {}, {}, {}
            for mode, limit in modes.items():
                for fn, tag in ((plain, ""), (timed.rank_keys_from_logits, "timed ")):
                    for _ in range(3):
                        run(fn, limit)
                    ts = []
                    for _ in range(20):
                        keys.fill_(2**31 - 1)
                        start.record()
                        fn(logits, seq, keys, MID, BUDGET, SINKS, RECENT, HQ, 0, bucket_limit=limit)
                        end.record()
                        torch.cuda.synchronize()
                        ts.append(start.elapsed_time(end) * 1000)
                    times[tag + mode] = sorted(ts)[len(ts) // 2]
                    result[tag + mode] = keys.clone()
                clocks = timed.phase_clocks()[: B * HQ].to(torch.float64)
                d = (clocks[:, 1:8] - clocks[:, :7]) / per_us
                phases[mode] = (d.median(dim=0).values.tolist(), ((clocks[:, 7] - clocks[:, 0]) / per_us).median().item(),
                                clocks[:, 8].mean().item(), 1 + (d[:, 1] > 0.05).double().mean().item()
                                + (d[:, 2] > 0.05).double().mean().item())
            same = all(torch.equal(result["sort"], r) for r in result.values())
            # the sort's span and the union's deepest rank
            cand = order_keys(logits[:, :, SINKS:L - RECENT])
            top = cand.topk(MID, dim=-1).values
            span = (top[..., 0] ^ top[..., -1]).clamp(min=1).double().log2().floor() + 1
            deepest = result["sort"].to(torch.int64).topk(MID, dim=-1, largest=False).values.max(dim=-1).values // HQ
            print(f"B={B:3d} L={L:6d} corr={corr:.1f} | rank kernel us: sort {times['sort']:6.1f} bucket "
                  f"{times['bucket']:6.1f} ({times['sort'] / times['bucket']:.2f}x); timed build {times['timed sort']:6.1f}"
                  f" / {times['timed bucket']:6.1f} | same keys {same} | radix passes {phases['sort'][3]:.2f} | sort bits "
                  f"{span.median().item():.0f} | union r* median {deepest.double().median().item():.0f} max "
                  f"{deepest.max().item()}", flush=True)
            for mode, (med, total, bucketed, _) in phases.items():
                print(f"    {mode:6s} per-block median us: " + " ".join(f"{p} {m:5.1f}" for p, m in zip(PHASES, med))
                      + f" | total {total:5.1f} | blocks ranked by buckets {bucketed:.2f}", flush=True)


if __name__ == "__main__":
    main()
