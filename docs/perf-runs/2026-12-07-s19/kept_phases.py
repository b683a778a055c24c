"""Where a head's ranking spends its time with and without rank_kept (csrc/rank_keys.cu built with
-DLESSISMORE_PHASE_CLOCKS): per-block medians, in us at the SM's max clock, of the sample + keep pass (slot 9; kept
path only), the radix passes, compaction, winners to registers, bucket placement and in-bucket ranks + scatter, and
the share of blocks ranked from the kept keys (slot 8 == 2). Modes: keep (default), full (keep=False, buckets),
sort (bucket_limit 0, which also turns rank_kept off). Same keys in every mode is checked. Logits as rank_phases.py:
independent heads and heads sharing a component (corr 0.5, 0.9).
    python docs/perf-runs/2026-12-07-s19/kept_phases.py [BxL,...]
"""
import subprocess
import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-07-s17"))
from rank_phases import BUDGET, HQ, MID, RECENT, REPO, SINKS, logits_for  # noqa: E402

from lessismore_vllm.kernels import cuda_ext  # noqa: E402

MODES = {"keep": dict(bucket_limit=48, keep=True), "full": dict(bucket_limit=48, keep=False),
         "sort": dict(bucket_limit=0, keep=False)}


def main():
    shapes = [tuple(map(int, s.split("x"))) for s in (sys.argv[1] if len(sys.argv) > 1 else
                                                      "1x16384,32x16384").split(",")]
    timed = load(name="lessismore_rank_keys_kept_phases", sources=[str(REPO / "csrc/rank_keys.cu")],
                 extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo", "-DLESSISMORE_PHASE_CLOCKS"])
    plain = cuda_ext.rank_from_logits_launcher()
    mhz = float(subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True).stdout.split()[0])
    print(f"device {torch.cuda.get_device_name()}, max SM clock {mhz} MHz", flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for B, L in shapes:
        for corr in (0.0, 0.5, 0.9):
            logits = logits_for(B, L, corr, gen)
            seq = torch.full((B,), L, device="cuda", dtype=torch.int32)
            keys = torch.empty(B, L, device="cuda", dtype=torch.int32)
            line, result = f"B={B:3d} L={L:6d} corr={corr:.1f} | kernel us:", {}
            for mode, kw in MODES.items():
                for fn, tag in ((plain, ""), (timed.rank_keys_from_logits, "timed ")):
                    ts = []
                    for it in range(23):
                        keys.fill_(2**31 - 1)
                        start.record()
                        fn(logits, seq, keys, MID, BUDGET, SINKS, RECENT, HQ, 0, **kw)
                        end.record()
                        torch.cuda.synchronize()
                        if it >= 3:
                            ts.append(start.elapsed_time(end) * 1000)
                    result[tag + mode] = keys.clone()
                    line += f" {tag}{mode} {sorted(ts)[len(ts) // 2]:6.1f}"
                c = timed.phase_clocks()[: B * HQ].to(torch.float64)
                kept = c[:, 8] == 2
                first = torch.where(kept, c[:, 9], c[:, 0])
                parts = {"keep": torch.where(kept, c[:, 9] - c[:, 0], 0.0), "pass1": c[:, 1] - first,
                         "pass2": c[:, 2] - c[:, 1], "pass3": c[:, 3] - c[:, 2], "compact": c[:, 4] - c[:, 3],
                         "to_regs": c[:, 5] - c[:, 4], "place": c[:, 6] - c[:, 5], "scatter": c[:, 7] - c[:, 6]}
                print(f"    {mode:4s} per-block median us: " + " ".join(
                    f"{k} {(v / mhz).median().item():5.1f}" for k, v in parts.items())
                    + f" | total {((c[:, 7] - c[:, 0]) / mhz).median().item():5.1f} | kept {kept.double().mean().item():.2f}",
                    flush=True)
            same = all(torch.equal(result["sort"], r) for r in result.values())
            print(line + f" | same keys {same}", flush=True)


if __name__ == "__main__":
    main()
