"""OpenAI-compatible server with --attention-backend lessismore, used through the `openai` client."""

import pytest

from lessismore_vllm.harness import check_completions, start_server

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    proc, base = start_server(
        ["--model", tiny_models["qwen3"], "--served-model-name", "tiny", "--attention-backend", "lessismore",
         "--additional-config", '{"lessismore": {"budget": 64}}', "--dtype", "float32", "--enforce-eager",
         "--kv-cache-memory-bytes", str(256 << 20), "--max-model-len", "2048"],
        str(log_path), timeout=300,
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
