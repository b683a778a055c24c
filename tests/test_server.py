"""OpenAI-compatible server with --attention-backend lessismore, used through the `openai` client."""

import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", tiny_models["qwen3"],
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--attention-backend", "lessismore", "--additional-config", '{"lessismore": {"budget": 64}}',
        "--dtype", "float32", "--enforce-eager", "--kv-cache-memory-bytes", str(256 << 20),
        "--max-model-len", "2048",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while time.time() < deadline:
            assert proc.poll() is None, log_path.read_text()[-5000:]
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        else:
            proc.kill()
            pytest.fail("server did not become healthy:\n" + log_path.read_text()[-5000:])
        yield base, log_path
        proc.terminate()
        proc.wait(timeout=60)


def long_prompt(n: int) -> str:
    return " ".join(f"w{3 + (17 * j * j + j) % 1000}" for j in range(n))


def test_completion_plain_and_streamed(server):
    import openai

    base, log_path = server
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    prompt = long_prompt(300)  # > budget: sparse layers run sparse
    plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0)
    assert plain.usage.completion_tokens == 12 and plain.choices[0].text.strip()
    stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0, stream=True)
    pieces = [c.choices[0].text for c in stream if c.choices]
    assert "".join(pieces) == plain.choices[0].text, "greedy: streamed text equals the plain completion"
    assert "LessIsMore active:" in log_path.read_text()
