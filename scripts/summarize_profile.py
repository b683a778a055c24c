"""Summarize torch-profiler traces (Chrome JSON, .json or .json.gz, e.g. from bench_e2e.py --profile): GPU kernel
time by kernel name, the GPU's busy share of the traced span, and how the work was launched (CUDA-graph launches vs
single kernel launches), which tells whether decode steps replayed full graphs.

    python scripts/summarize_profile.py TRACE [TRACE ...] [--top 25]
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path


def load(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def summarize(events: list[dict]) -> dict:
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    by_name: dict[str, float] = defaultdict(float)
    for e in kernels:
        by_name[e["name"][:90]] += e.get("dur", 0.0)
    busy = sum(by_name.values())
    span = (max(e["ts"] + e.get("dur", 0.0) for e in kernels) - min(e["ts"] for e in kernels)) if kernels else 0.0
    runtime = Counter(e["name"] for e in events if e.get("ph") == "X" and e.get("cat") == "cuda_runtime")
    launches = {k: v for k, v in runtime.items() if "aunch" in k}
    return {"kernels": len(kernels), "gpu_busy_us": busy, "span_us": span,
            "busy_share": busy / span if span else None, "launch_calls": launches,
            "by_name_us": dict(sorted(by_name.items(), key=lambda kv: -kv[1]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for path in args.traces:
        s = summarize(load(path))
        print(f"== {Path(path).name}: {s['kernels']} GPU ops, busy {s['gpu_busy_us'] / 1000:.2f} ms of a "
              f"{s['span_us'] / 1000:.2f} ms span ({100 * (s['busy_share'] or 0):.0f}%), launch calls {s['launch_calls']}")
        for name, us in list(s["by_name_us"].items())[: args.top]:
            print(f"  {us / 1000:9.3f} ms  {name}")


if __name__ == "__main__":
    main()
