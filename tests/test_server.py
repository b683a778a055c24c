"""OpenAI-compatible server with --attention-backend lessismore, used through the `openai` client."""

import pytest

from lessismore_vllm.harness import check_completions, start_server

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    metrics_dir = tmp_path_factory.mktemp("prometheus")  # multiprocess metrics: how worker counters reach /metrics
    proc, base = start_server(
        ["--model", tiny_models["qwen3"], "--served-model-name", "tiny", "--attention-backend", "lessismore",
         "--additional-config", '{"lessismore": {"budget": 64}}', "--dtype", "float32", "--enforce-eager",
         "--kv-cache-memory-bytes", str(256 << 20), "--max-model-len", "2048"],
        str(log_path), timeout=300,
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LESSISMORE_STATS_INTERVAL": "1"},
    )
    yield base, log_path
    proc.terminate()
    proc.wait(timeout=60)


def long_prompt(n: int) -> str:
    return " ".join(f"w{3 + (17 * j * j + j) % 1000}" for j in range(n))


def test_completion_plain_and_streamed(server):
    base, log_path = server
    r = check_completions(base, "tiny", long_prompt(300))  # 300 > budget 64: sparse layers run sparse
    assert r["prompt_tokens"] == 300 and r["completion_tokens"] == 12 and r["plain"].strip()
    assert r["streamed"] == r["plain"], "greedy: streamed text equals the plain completion"
    assert "LessIsMore active:" in log_path.read_text()


def test_sparse_counters_exported_on_metrics(server):
    """The backend's counters (decode row-steps, sparse share, attended tokens) appear on vLLM's /metrics."""
    import time

    import requests

    base, _ = server
    for _ in range(2):  # counters are published by the workers at most once per LESSISMORE_STATS_INTERVAL (1 s)
        check_completions(base, "tiny", long_prompt(300), max_tokens=8)
        time.sleep(1.2)
    text = requests.get(base + "/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith("lessismore_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = values.get(name.split("{")[0], 0.0) + float(value)
    rows = values.get("lessismore_decode_row_steps_total", 0.0)
    assert rows > 0, values
    assert 0 < values["lessismore_sparse_row_steps_total"] <= rows
    assert values["lessismore_attended_tokens_total"] <= 64 * rows  # budget 64
    assert values["lessismore_context_tokens_total"] >= 300 * values["lessismore_sparse_row_steps_total"]
