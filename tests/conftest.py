import os
from pathlib import Path

import pytest
import torch

# Triton's interpreter must be on before triton.language is first imported (vLLM imports it), or interpreted
# kernels fail; on CPU, run the Triton kernel tests through it (tests/test_kernels_interpret.py).
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from lessismore_vllm.tiny_model import write_tiny_model

    root = tmp_path_factory.mktemp("models")
    return {
        "qwen3": str(write_tiny_model(root / "qwen3", arch="qwen3", num_layers=6, num_heads=8, num_kv_heads=2)),
        "llama": str(write_tiny_model(root / "llama", arch="llama", num_layers=5, num_heads=8, num_kv_heads=4)),
    }


def run_engine(
    spec: dict, trace_path: Path | None = None, timeout: int = 600, env_extra: dict | None = None
) -> tuple[dict, str]:
    """One engine in a fresh process; returns (result, combined log)."""
    from lessismore_vllm.harness import run_in_subprocess

    env = dict(env_extra or {})
    if trace_path:
        env["LESSISMORE_TRACE"] = str(trace_path)
    return run_in_subprocess(spec, env, timeout)
