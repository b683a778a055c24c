"""One-off (2026-11-27): the per-step attention counters, PyTorch ops (stats.count_step_reference) vs one Triton
kernel (kernels.step_stats.count_step), each replayed from a CUDA graph as in a decode step; us per step.
Run from the repository root: python docs/perf-runs/2026-11-27/stats_ab.py"""
import sys

import torch

sys.path.insert(0, "scripts")
from bench_kernels import bench  # noqa: E402

from lessismore_vllm.kernels.step_stats import count_step  # noqa: E402
from lessismore_vllm.stats import count_step_reference  # noqa: E402

for rows in (1, 16, 256):
    seq_lens = torch.randint(1, 32768, (rows,), device="cuda", dtype=torch.int32)
    counts = seq_lens.clamp(max=2048)
    a = torch.zeros(4, dtype=torch.int64, device="cuda")
    b = torch.zeros(4, dtype=torch.int64, device="cuda")
    t_ref = bench(lambda: count_step_reference(a, counts, seq_lens))
    t_kernel = bench(lambda: count_step(b, counts, seq_lens))
    a.zero_(), b.zero_()
    count_step_reference(a, counts, seq_lens)
    count_step(b, counts, seq_lens)
    print(f"rows {rows:4d}: PyTorch ops {t_ref * 1e3:6.1f} us, one kernel {t_kernel * 1e3:6.1f} us, "
          f"same counters: {torch.equal(a, b)}", flush=True)
