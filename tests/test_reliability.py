"""Serving reliability on CPU through the real engine: soak, preemption, prefix caching, unusual requests,
unsupported setups, observability."""

import json

import pytest

from conftest import run_engine
from lessismore_vllm.harness import make_prompts, start_server
from lessismore_vllm.soak import run_soak
from lessismore_vllm.tiny_model import write_tiny_model

pytestmark = pytest.mark.engine
BUDGET = 32


def test_soak_64_streaming_clients(tiny_models, tmp_path):
    log = tmp_path / "server.log"
    proc, base = start_server(
        ["--model", tiny_models["qwen3"], "--served-model-name", "tiny", "--attention-backend", "lessismore",
         "--additional-config", json.dumps({"lessismore": {"budget": BUDGET}}), "--dtype", "float32",
         "--enforce-eager", "--kv-cache-memory-bytes", str(512 << 20), "--max-model-len", "1024",
         "--max-num-seqs", "64"],
        str(log), timeout=300,
    )
    try:
        report = run_soak(base, "tiny", concurrency=64, duration_s=60, max_prompt=4 * BUDGET, max_tokens=24)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(json.dumps(report))
    assert report["requests"] >= 64 and report["tokens"] > 0
    assert report["errors"] == 0 and report["server_errors_5xx"] == 0, report["error_samples"]
    assert report["wrong_length"] == 0, "every request returns exactly max_tokens tokens"
    assert report["healthy_after"]
    assert "LessIsMore active:" in log.read_text()


def test_preemption_recompute(tiny_models):
    # 7 KV blocks of 128 tokens; 8 requests start with 2 blocks each and all grow into a third: the scheduler
    # admits three, and must preempt one when two of them need their third block.
    prompts = make_prompts(8, 200, 250, seed=3)
    tight = {"kv_cache_memory_bytes": 3 << 20, "max_model_len": 512, "disable_log_stats": False}
    spec = {"model": tiny_models["qwen3"], "prompts": prompts, "max_tokens": 96}
    dense, _ = run_engine(spec)
    ours, _ = run_engine({**spec, "backend": "lessismore", "lessismore": {"budget": 4096}, "engine": tight})
    assert "error" not in ours, ours
    assert ours["counters"].get("vllm:num_preemptions", 0) > 0, ours["counters"]
    assert ours["tokens"] == dense["tokens"], "recompute after preemption is exact when budget >= context"
    small, _ = run_engine({**spec, "backend": "lessismore", "lessismore": {"budget": BUDGET}, "engine": tight})
    assert "error" not in small, small
    assert small["counters"].get("vllm:num_preemptions", 0) > 0
    assert [len(t) for t in small["tokens"]] == [96] * 8


def test_prefix_caching_shared_prefixes_equal_dense(tiny_models):
    shared = make_prompts(1, 300, 300, seed=4)[0]
    prompts = [shared + p for p in make_prompts(6, 5, 60, seed=5)]
    spec = {"model": tiny_models["qwen3"], "prompts": prompts, "max_tokens": 16, "repeat": 2,
            "engine": {"enable_prefix_caching": True, "enable_chunked_prefill": True, "disable_log_stats": False}}
    dense, _ = run_engine(spec)
    ours, _ = run_engine({**spec, "backend": "lessismore", "lessismore": {"budget": 4096}})
    assert "error" not in ours, ours
    assert ours["counters"].get("vllm:prefix_cache_hits", 0) > 0, ours["counters"]
    assert ours["repeats_identical"] and ours["tokens"] == dense["tokens"]


def test_unusual_requests(tiny_models):
    """1-token prompt, context == budget and == budget + 1, max_tokens far beyond the budget. Generated token i
    comes from a step whose context is P + i, so the first budget - P + 1 tokens are dense and equal dense's."""
    lengths = [1, 5, BUDGET - 1, BUDGET, BUDGET + 1, 3 * BUDGET]
    prompts = [make_prompts(1, n, n, seed=6 + n)[0] for n in lengths]
    spec = {"model": tiny_models["qwen3"], "prompts": prompts, "max_tokens": 4 * BUDGET}
    dense, _ = run_engine(spec)
    ours, log = run_engine({**spec, "backend": "lessismore", "lessismore": {"budget": BUDGET}},
                           env_extra={"LESSISMORE_STATS_INTERVAL": "1"})
    assert "error" not in ours, ours
    assert [len(t) for t in ours["tokens"]] == [4 * BUDGET] * len(lengths)
    for P, a, b in zip(lengths, dense["tokens"], ours["tokens"]):
        n_dense = max(1, BUDGET - P + 1)
        assert a[:n_dense] == b[:n_dense], f"prompt {P}: dense regime must match"
    # observability: periodic stats lines with a sparse share in [0, 100] % and attended <= budget
    stats = [line for line in log.splitlines() if "LessIsMore stats:" in line]
    assert stats, "periodic stats line"
    for line in stats:
        share = float(line.split("ran sparse=")[1].split("%")[0])
        attended = float(line.split("per sparse-layer step=")[1].split(",")[0])
        assert 0.0 <= share <= 100.0 and 0.0 < attended <= BUDGET


@pytest.mark.parametrize(
    "engine,needle",
    [
        ({"speculative_config": {"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_max": 3}},
         "speculative decoding"),
        ({"pipeline_parallel_size": 2}, "pipeline_parallel_size=2"),
    ],
)
def test_unsupported_setups_fail_clearly(tiny_models, engine, needle):
    spec = {"model": tiny_models["qwen3"], "prompts": [[5, 6, 7]], "max_tokens": 2, "backend": "lessismore",
            "engine": engine}
    result, _ = run_engine(spec)
    assert "error" in result and needle in result["error"], result


def test_sliding_window_model_fails_clearly(tmp_path):
    import json as _json

    path = write_tiny_model(tmp_path / "mistral", arch="llama", num_layers=4, weights_std=None, tokenizer=False)
    cfg = _json.loads((path / "config.json").read_text())
    cfg.update({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 64})
    (path / "config.json").write_text(_json.dumps(cfg))
    spec = {"model": str(path), "prompts": [[5, 6, 7]], "max_tokens": 2, "backend": "lessismore",
            "engine": {"load_format": "dummy"}}
    result, _ = run_engine(spec)
    assert "error" in result and "sliding-window" in result["error"], result
