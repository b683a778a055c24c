"""End-to-end correctness of the GPU path through vLLM (issue: GPU path, must-show 2). Run on the GPU host:

    python scripts/gpu_check.py --phase equiv --out $OUT     # budget >= context == TRITON_ATTN / FLASH_ATTN
    python scripts/gpu_check.py --phase sparse --out $OUT    # budget 2048, 8K contexts: eager == CUDA graphs
    python scripts/gpu_check.py --phase tp --parallel 4 --out $OUT  # 2 GPUs: tensor parallelism (issue 8)

Every engine runs in its own process (lessismore_vllm.harness); up to --parallel engines share the GPU at once
with a fixed KV-cache size, to overlap their start-up. Writes <phase>.json with all tokens and verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lessismore_vllm import trace
from lessismore_vllm.harness import make_prompts, run_in_subprocess
from lessismore_vllm.tiny_model import write_qwen3_8b_shape, write_tiny_model


ENGINE_TIMEOUT = 590  # seconds per engine process (--engine-timeout)


def run_all(named_specs: dict[str, dict], parallel: int, work: Path) -> dict[str, dict]:
    def one(item):
        name, spec = item
        t0 = time.time()
        env = spec.pop("env", {})
        if spec.pop("trace", False):
            env["LESSISMORE_TRACE"] = str(work / f"{name}.trace.jsonl")
        try:
            result, _ = run_in_subprocess(spec, env, timeout=ENGINE_TIMEOUT, log_path=str(work / f"{name}.log"))
        except RuntimeError as e:  # timed out or crashed: the log stays in the work folder
            result = {"error": str(e).splitlines()[0]}
        result["wall_s"] = round(time.time() - t0, 1)
        print(f"[{name}] {'ERROR ' + result['error'] if 'error' in result else 'ok'} in {result['wall_s']} s",
              flush=True)
        return name, result

    with ThreadPoolExecutor(parallel) as ex:
        return dict(ex.map(one, named_specs.items()))


def compare(results: dict, ref: str, others: list[str]) -> dict:
    out = {}
    for name in others:
        a, b = results[ref].get("tokens"), results[name].get("tokens")
        same = a is not None and a == b
        first_diff = None if same or a is None or b is None else [
            (i, next(j for j, (x, y) in enumerate(zip(s, t)) if x != y))
            for i, (s, t) in enumerate(zip(a, b)) if s != t
        ]
        # Numerical closeness up to each pair's first split: |logprob_a - logprob_b| of the same chosen tokens.
        deltas = [
            abs(u - v)
            for s, t, ls, lt in zip(a or [], b or [], results[ref].get("logprobs", []), results[name].get("logprobs", []))
            for x, y, u, v in zip(s, t, ls, lt) if x == y
        ]
        out[f"{name} == {ref}"] = {
            "identical": same, "differing_prompts(index, first_step)": first_diff,
            "max_abs_logprob_diff_before_split": max(deltas, default=None),
        }
    return out


def tensor_parallel(work: Path, parallel: int, tp_engine: dict, only: list[str] | None,
                    tp_model: str = "small") -> tuple[dict, dict]:
    """TP=2 on a small seeded Qwen3 (16 q / 4 KV heads; tp_model "qwen3-8b-shape": the Qwen3-8B shape, dummy
    weights): budget >= context equals FLASH_ATTN at TP=2 (CUDA graphs);
    at budget 256 (eager, traced) both ranks select the same set at every layer, row and step (the NCCL MIN
    all-reduce of the rank keys); with CUDA graphs, the in-step check (LESSISMORE_TP_CHECK) counts selection rows
    whose sets differ across ranks (must be 0 of > 0). The TP=1 run's first-step selections are compared and reported, not asserted:
    at TP=2 the layers before a selection layer sum their row-parallel outputs in another order (bf16), so the
    logits, hence near-tied ranks, may differ slightly; equality on identical inputs is the kernel test
    tests/test_kernels_interpret.py::test_select_tensor_parallel_ranks_agree_with_one_device, run on CUDA."""
    base = {"max_model_len": 4096, "dtype": "bfloat16", "kv_cache_memory_bytes": 2 << 30,
            "gpu_memory_utilization": 0.2, "max_num_seqs": 64}
    if tp_model == "qwen3-8b-shape":
        model = str(write_qwen3_8b_shape(work / "qwen3-8b-shape"))
        base = {**base, "load_format": "dummy"}
        vocab = 150000
    else:  # seeded random weights: peaked attention, so kernel errors would show
        model = str(write_tiny_model(work / "small", num_layers=6, hidden_size=512, num_heads=16, num_kv_heads=4,
                                     head_dim=128, max_position_embeddings=8192))
        vocab = 1024
    tp2 = {**base, "tensor_parallel_size": 2, **tp_engine}
    prompts = make_prompts(16, 600, 3000, vocab=vocab)
    spec = {"model": model, "prompts": prompts, "max_tokens": 16}
    sparse = {"backend": "lessismore", "lessismore": {"budget": 256}}
    specs = {
        "FLASH_ATTN_tp2": {**spec, "backend": "FLASH_ATTN", "engine": tp2},
        "lessismore_tp2_dense": {**spec, "backend": "lessismore", "lessismore": {"budget": 65536}, "engine": tp2},
        "lessismore_tp2_sparse_eager": {**spec, **sparse, "engine": {**tp2, "enforce_eager": True}, "trace": True},
        "lessismore_tp1_sparse_eager": {**spec, **sparse, "engine": {**base, "enforce_eager": True}, "trace": True},
        # CUDA graphs: the trace cannot look inside a replayed graph, so the in-step agreement check counts rows
        "lessismore_tp2_sparse_graphs": {**spec, **sparse, "engine": tp2,
                                         "env": {"LESSISMORE_TP_CHECK": "1", "LESSISMORE_STATS_INTERVAL": "0.001"}},
    }
    if only:
        specs = {k: v for k, v in specs.items() if k in only}
    results = run_all(specs, parallel, work)
    verdict = compare(results, "FLASH_ATTN_tp2", ["lessismore_tp2_dense"]) if "FLASH_ATTN_tp2" in specs else {}
    log = work / "lessismore_tp2_sparse_graphs.log"
    if log.exists():
        checks = re.findall(r"TP selection check: (\d+) of (\d+) ranked rows differ", log.read_text())
        verdict["tp2_graphs_selection_rows_checked"] = sum(int(n) for _, n in checks)
        verdict["tp2_graphs_selection_rows_differing"] = sum(int(d) for d, _ in checks)
        if "lessismore_tp2_sparse_eager" in results:
            verdict.update(compare(results, "lessismore_tp2_sparse_eager", ["lessismore_tp2_sparse_graphs"]))

    def selections(name):
        path = work / f"{name}.trace.jsonl"
        return trace.selections_by_rank(path) if path.exists() else {}

    two = selections("lessismore_tp2_sparse_eager")
    verdict["tp2_ranks_traced"] = sorted(two)
    verdict["tp2_selection_records_per_rank"] = {r: len(v) for r, v in two.items()}
    verdict["tp2_ranks_select_identical_sets"] = len(two) == 2 and two[0] == two[1]
    verdict["tp2_sparse_rows_at_budget"] = sum(1 for _, _, L, sel in two.get(0, []) if L > 256 and len(sel) == 256)

    one = trace.first_steps(selections("lessismore_tp1_sparse_eager").get(0, []))
    mine = trace.first_steps(two.get(0, []))
    common = [k for k in one if k in mine and one[k][0] == mine[k][0]]
    overlaps = [len(set(one[k][1]) & set(mine[k][1])) / max(1, len(one[k][1])) for k in common]
    verdict["tp1_vs_tp2_first_step_sets"] = {
        "compared": len(common), "identical": sum(one[k] == mine[k] for k in common),
        "mean_overlap": sum(overlaps) / len(overlaps) if overlaps else None,
    }
    return results, verdict


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["equiv", "small", "sparse", "tp"], required=True)
    ap.add_argument("--eager-only", action="store_true", help="equiv/small: TRITON_ATTN and lessismore, eager")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--work", help="folder for models, engine logs and traces (default: a temporary one); logs "
                    "stream there, so a cut-off run keeps them")
    ap.add_argument("--tp-engine", default="{}", help='tp: JSON of LLM kwargs for the TP=2 engines, e.g. '
                    '\'{"disable_custom_all_reduce": true}\'')
    ap.add_argument("--only", help="tp: comma-separated engine names to run (default: all four)")
    ap.add_argument("--tp-model", choices=["small", "qwen3-8b-shape"], default="small",
                    help="tp: the model (small seeded Qwen3, or the Qwen3-8B shape with dummy weights)")
    ap.add_argument("--engine-timeout", type=int, default=590, help="seconds per engine process")
    args = ap.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    global ENGINE_TIMEOUT
    ENGINE_TIMEOUT = args.engine_timeout
    out_dir = Path(args.out)
    kv = {"kv_cache_memory_bytes": 8 << 30, "gpu_memory_utilization": 0.45, "max_num_seqs": 64}
    graphs, eager = {}, {"enforce_eager": True}

    if args.phase == "tp":
        results, verdict = tensor_parallel(work, args.parallel, json.loads(args.tp_engine),
                                           args.only.split(",") if args.only else None, args.tp_model)
    elif args.phase in ("equiv", "small"):
        if args.phase == "equiv":  # Qwen3-8B shape, dummy weights
            model = str(write_qwen3_8b_shape(work / "qwen3-8b-shape"))
            base = {"load_format": "dummy", "max_model_len": 4096, **kv}
            prompts = make_prompts(32, 64, 3000, vocab=150000)
        else:  # small Qwen3 with seeded random weights: peaked attention, so kernel errors would show
            model = str(write_tiny_model(work / "small", num_layers=6, hidden_size=512, num_heads=16,
                                         num_kv_heads=4, head_dim=128, max_position_embeddings=8192))
            base = {"max_model_len": 4096, "dtype": "bfloat16", **kv, "kv_cache_memory_bytes": 2 << 30}
            prompts = make_prompts(32, 64, 3000)
        spec = {"model": model, "prompts": prompts, "max_tokens": 32}
        lim = {"backend": "lessismore", "lessismore": {"budget": 65536}}
        specs = {
            "TRITON_ATTN": {**spec, "backend": "TRITON_ATTN", "engine": {**base, **graphs}},
            "FLASH_ATTN": {**spec, "backend": "FLASH_ATTN", "engine": {**base, **graphs}},
            "lessismore_eager": {**spec, **lim, "engine": {**base, **eager}, "trace": True},
            "lessismore_graphs": {**spec, **lim, "engine": {**base, **graphs}},
        }
        if args.eager_only:  # eager vs eager: torch.compile changes the numerics of the rest of the model
            specs = {"TRITON_ATTN_eager": {**specs["TRITON_ATTN"], "engine": {**base, **eager}},
                     "lessismore_eager": specs["lessismore_eager"]}
            results = run_all(specs, args.parallel, work)
            verdict = compare(results, "TRITON_ATTN_eager", ["lessismore_eager"])
        else:
            results = run_all(specs, args.parallel, work)
            verdict = compare(results, "TRITON_ATTN", ["FLASH_ATTN", "lessismore_eager", "lessismore_graphs"])
            verdict.update(compare(results, "FLASH_ATTN", ["lessismore_eager", "lessismore_graphs"]))
    else:  # budget 2048 at ~8K contexts
        model = str(write_qwen3_8b_shape(work / "qwen3-8b-shape"))
        base = {"load_format": "dummy", "max_model_len": 12288, **kv, "kv_cache_memory_bytes": 15 << 30}
        spec = {"model": model, "prompts": make_prompts(10, 8000, 8200, vocab=150000), "max_tokens": 32}
        lim = {"backend": "lessismore", "lessismore": {"budget": 2048}}
        specs = {
            "lessismore_eager": {**spec, **lim, "engine": {**base, **eager}, "trace": True},
            "lessismore_graphs": {**spec, **lim, "engine": {**base, **graphs}},
        }
        results = run_all(specs, args.parallel, work)
        verdict = compare(results, "lessismore_eager", ["lessismore_graphs"])

    tfile = work / "lessismore_eager.trace.jsonl"
    if tfile.exists() and args.phase != "tp":  # eager run: what the sparse layers attended, per decode row
        recs = [r for r in trace.read(tfile) if r["role"] == "sparse"]
        pairs = [(L, n) for r in recs for L, n in zip(r["seq_lens"], r["attended"])]
        budget = specs["lessismore_eager"]["lessismore"]["budget"]
        verdict["sparse_layer_steps_traced"] = len(recs)
        verdict["attended_equals_min(L,budget)"] = all(n == min(L, budget) for L, n in pairs)
        verdict["attended_max"] = max((n for _, n in pairs), default=None)
        verdict["context_max"] = max((L for L, _ in pairs), default=None)
    for name, r in results.items():
        if "error" in r:
            verdict[f"{name} error"] = r["error"]
    tag = args.phase + ("-eager" if args.eager_only else "")
    summary = {"phase": tag, "verdict": verdict,
               "timings": {k: {"wall_s": v.get("wall_s"), "gen_s": v.get("seconds")} for k, v in results.items()}}
    print(json.dumps(summary, indent=1))
    (out_dir / f"{tag}.json").write_text(json.dumps({**summary, "results": results}))
    for f in work.glob("*.log"):  # keep the tail of each engine log for the record
        (out_dir / f"{tag}-{f.stem}.log").write_text(f.read_text()[-20000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
