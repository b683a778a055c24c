"""Soak test of an OpenAI-compatible vLLM server with concurrent streaming clients (the `openai` package).

    python -m lessismore_vllm.soak --duration 600 --concurrency 64          # starts a tiny-model server itself
    python -m lessismore_vllm.soak --base-url http://127.0.0.1:8000 --model NAME --vocab 151936 ...

Each client loops until the deadline: a streamed completion with a prompt of 1 token to several budgets long
and a random max_tokens, ignore_eos, checking that exactly max_tokens tokens came back. Reports requests,
tokens, errors, p50/p99 latency, and whether the server is still healthy afterwards. Traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_soak(
    base: str, model: str, concurrency: int, duration_s: float, max_prompt: int, max_tokens: int,
    vocab: int = 1024, seed: int = 0,
) -> dict[str, Any]:
    import openai
    import requests

    lock = threading.Lock()
    latencies: list[float] = []
    totals = {"requests": 0, "tokens": 0, "errors": 0, "server_errors_5xx": 0, "wrong_length": 0}
    error_samples: list[str] = []
    deadline = time.time() + duration_s

    def client_loop(cid: int) -> None:
        rng = random.Random(seed * 100_003 + cid)
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)
        while time.time() < deadline:
            n_prompt = rng.choice([1, 2, rng.randint(1, max_prompt), max_prompt])
            n_out = rng.choice([1, rng.randint(1, max_tokens), max_tokens])
            prompt = [rng.randrange(3, vocab) for _ in range(n_prompt)]
            t0 = time.time()
            got, err = 0, None
            try:
                stream = client.completions.create(
                    model=model, prompt=prompt, max_tokens=n_out, temperature=0, stream=True,
                    stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
                )
                for chunk in stream:
                    if chunk.usage is not None:
                        got = chunk.usage.completion_tokens
            except openai.APIStatusError as e:
                err = f"HTTP {e.status_code}: {e.message[:200]}"
            except Exception as e:  # connection drops count as errors too
                err = f"{type(e).__name__}: {str(e)[:200]}"
            with lock:
                totals["requests"] += 1
                if err is not None:
                    totals["errors"] += 1
                    totals["server_errors_5xx"] += err.startswith("HTTP 5")
                    if len(error_samples) < 5:
                        error_samples.append(err)
                    continue
                totals["tokens"] += got
                totals["wrong_length"] += got != n_out
                latencies.append(time.time() - t0)

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(concurrency)]
    t_start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t_start
    healthy = requests.get(base + "/health", timeout=10).status_code == 200
    return {
        **totals, "concurrency": concurrency, "elapsed_s": round(elapsed, 1),
        "tokens_per_s": round(totals["tokens"] / elapsed, 1),
        "latency_p50_s": _percentile(latencies, 0.50), "latency_p99_s": _percentile(latencies, 0.99),
        "healthy_after": healthy, "error_samples": error_samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="an already running server; default: start a tiny-model server")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--budget", type=int, default=32, help="lessismore budget of the started server")
    ap.add_argument("--max-prompt", type=int, default=None, help="default: 4 x budget")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--qwen3-8b-shape", action="store_true",
                    help="serve a Qwen3-8B-shaped dummy-weight model (GPU) instead of the tiny model")
    ap.add_argument("--kv-cache-gib", type=float, default=None, help="fixed KV-cache size of the started server")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    max_prompt = args.max_prompt or 4 * args.budget

    proc = None
    if args.base_url is None:
        from lessismore_vllm.harness import start_server
        from lessismore_vllm.tiny_model import write_tiny_model

        from vllm.platforms import current_platform

        work = Path(tempfile.mkdtemp(prefix="lessismore-soak-"))
        if args.qwen3_8b_shape:
            from lessismore_vllm.tiny_model import write_qwen3_8b_shape

            model, args.vocab = write_qwen3_8b_shape(work / "model"), 151936
        else:
            model = write_tiny_model(work / "model")
        server_args = [
            "--model", str(model), "--served-model-name", args.model, "--attention-backend", "lessismore",
            "--additional-config", json.dumps({"lessismore": {"budget": args.budget}}),
            "--max-model-len", str(max_prompt + args.max_tokens + 16), "--max-num-seqs", str(args.concurrency),
        ]
        if args.qwen3_8b_shape:
            server_args += ["--load-format", "dummy", "--skip-tokenizer-init"]
        if current_platform.is_cpu():
            server_args += ["--dtype", "float32", "--enforce-eager"]
        kv_gib = args.kv_cache_gib or (0.5 if current_platform.is_cpu() else 16)
        server_args += ["--kv-cache-memory-bytes", str(int(kv_gib * 2**30))]
        log_path = Path(args.json).with_suffix(".server.log") if args.json else work / "server.log"
        proc, args.base_url = start_server(server_args, str(log_path))
    try:
        report = run_soak(args.base_url, args.model, args.concurrency, args.duration, max_prompt, args.max_tokens,
                          args.vocab)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    ok = report["errors"] == 0 and report["wrong_length"] == 0 and report["healthy_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
