import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from lessismore_vllm.tiny_model import write_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {
        "qwen3": str(write_tiny_model(root / "qwen3", arch="qwen3", num_layers=6, num_heads=8, num_kv_heads=2)),
        "llama": str(write_tiny_model(root / "llama", arch="llama", num_layers=5, num_heads=8, num_kv_heads=4)),
    }


def run_engine(spec: dict, trace_path: Path | None = None, timeout: int = 600) -> tuple[dict, str]:
    """One engine in a subprocess; returns (result, combined log)."""
    env = dict(os.environ)
    env.pop("LESSISMORE_TRACE", None)
    if trace_path is not None:
        env["LESSISMORE_TRACE"] = str(trace_path)
    proc = subprocess.run(
        [sys.executable, str(HERE / "engine_runner.py"), json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    log = proc.stdout + proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, f"engine runner produced no result (exit {proc.returncode}):\n{log[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):]), log
