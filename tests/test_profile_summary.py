"""scripts/summarize_profile.py on a hand-made Chrome trace: kernel time by name, busy share, launch calls."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "summarize_profile.py"


def test_summary_of_a_gzipped_trace(tmp_path):
    events = [
        {"ph": "X", "cat": "kernel", "name": "_sparse_decode_split_kernel", "ts": 0, "dur": 30},
        {"ph": "X", "cat": "kernel", "name": "_sparse_decode_split_kernel", "ts": 50, "dur": 30},
        {"ph": "X", "cat": "kernel", "name": "flash_fwd", "ts": 100, "dur": 20},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 0, "dur": 2},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 500},  # not GPU time
    ]
    path = tmp_path / "t.pt.trace.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    out = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "3 GPU ops, busy 0.08 ms of a 0.12 ms span (67%)" in out
    assert "{'cudaGraphLaunch': 1}" in out
    lines = out.splitlines()[1:]
    assert "0.060 ms  _sparse_decode_split_kernel" in lines[0] and "0.020 ms  flash_fwd" in lines[1]
