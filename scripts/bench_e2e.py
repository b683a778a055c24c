"""End-to-end decode throughput through vLLM: lessismore vs FLASH_ATTN vs TRITON_ATTN, same GPU, one run.

    python scripts/bench_e2e.py --out $OUT                      # all backends, default configs
    python scripts/bench_e2e.py --plot $OUT/bench_e2e.json      # (re)draw the PNG from a result file

Model: Qwen3-8B shape (36 layers, 32 q / 8 KV heads, head_dim 128), dummy bf16 weights, CUDA graphs on
(vLLM defaults, capture sizes limited to the batch sizes measured). Each backend runs in its own engine process,
one after another. Per config (batch x context): prompts of context - gen tokens, greedy, ignore_eos, so every
sequence reaches the context while decoding. Prefix caching keeps the prompts after a first warm-up pass, so
    decode step time = (t(gen + 1 tokens) - t(1 token)) / gen
measures only decode steps at that context (both timed passes hit the cache and prefill only the last token).
Writes bench_e2e.json after every backend (so a cut-off run keeps what finished) and bench_e2e.png.

Engines of the same code differ by 3-10% in decode step time at 16 x 16K from one process to the next (one H100,
ninth session, docs/performance.md), so single-engine ratios carry that spread. --rounds N runs the backend list N
times, alternating (A B C A B C ...), and the ratios compare medians over the rounds (each row also gives the
spread). Every engine compiles its model graph afresh, in its own VLLM_CACHE_ROOT (an entry may set VLLM_CACHE_ROOT
to share one), so that no engine differs from another by loading an earlier one's compiled graph.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CONFIGS = "1x16384,16x16384,8x32768,16x1024"
DEFAULT_BACKENDS = "lessismore,FLASH_ATTN,TRITON_ATTN"


def file_name(label: str) -> str:
    """A --backends entry as a file name: only [A-Za-z0-9._-] (the device tool drops files named with + or =)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", label)


def worker(spec: dict) -> dict:
    import random

    from vllm import LLM, SamplingParams

    import lessismore_vllm  # noqa: F401  (registers the backend in this process too)

    configs = spec["configs"]
    name = spec.get("label", spec["backend"])  # the entry of --backends, e.g. lessismore+NAME=value
    batches = sorted({b for b, _ in configs})
    kw = {"attention_backend": spec["backend"]}
    if spec["backend"] == "lessismore":
        kw["additional_config"] = {"lessismore": {"budget": spec["budget"]}}
    t0 = time.time()
    extra = dict(spec.get("engine", {}))
    if spec.get("profile_dir"):  # vLLM's torch profiler on every worker, started around a few extra steps below
        extra["profiler_config"] = {"profiler": "torch", "torch_profiler_with_stack": False,
                                    "torch_profiler_dir": str(Path(spec["profile_dir"], file_name(name)))}
    compilation = {"cudagraph_capture_sizes": batches, **extra.pop("compilation_config", {})}
    llm = LLM(model=spec["model"], load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
              max_model_len=spec["max_model_len"], max_num_seqs=max(batches), enable_prefix_caching=True,
              gpu_memory_utilization=spec["gpu_memory_utilization"], seed=0,
              max_num_batched_tokens=16384, compilation_config=compilation,
              tensor_parallel_size=spec.get("tp", 1), **kw, **extra)
    out = {"backend": name, "engine_start_s": round(time.time() - t0, 1), "configs": []}
    gen = spec["gen"]
    for batch, ctx in configs:
        rng = random.Random(batch * 100_003 + ctx)
        prompts = [{"prompt_token_ids": [rng.randrange(1000, 150000) for _ in range(ctx - gen)]}
                   for _ in range(batch)]
        one = SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True)
        full = SamplingParams(max_tokens=gen + 1, temperature=0.0, ignore_eos=True)
        t = time.perf_counter()
        llm.generate(prompts, one, use_tqdm=False)  # prefill into the prefix cache
        prefill_s = time.perf_counter() - t
        best = None
        for _ in range(spec["repeats"]):
            t = time.perf_counter()
            llm.generate(prompts, one, use_tqdm=False)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            outs = llm.generate(prompts, full, use_tqdm=False)
            t2 = time.perf_counter() - t
            assert all(len(o.outputs[0].token_ids) == gen + 1 for o in outs)
            step_ms = 1000 * (t2 - t1) / gen
            best = step_ms if best is None else min(best, step_ms)
        row = {"batch": batch, "context": ctx, "gen": gen, "decode_step_ms": round(best, 3),
               "decode_tok_s": round(batch * 1000 / best, 1), "prefill_s": round(prefill_s, 2)}
        print(f"[{name}] {row}", flush=True)
        if spec.get("profile_dir"):  # after the timed passes, so the profiler does not touch the numbers
            llm.start_profile(profile_prefix=f"{file_name(name)}_{batch}x{ctx}")
            llm.generate(prompts, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True), use_tqdm=False)
            llm.stop_profile()
        out["configs"].append(row)
    return out


def medians(results: list[dict]) -> dict:
    """{label: {(batch, context): {"decode_tok_s": median over rounds, "min": .., "max": .., "rounds": n}}}."""
    tok_s: dict = {}
    for r in results:
        for c in r.get("configs", []):
            tok_s.setdefault(r["backend"], {}).setdefault((c["batch"], c["context"]), []).append(c["decode_tok_s"])
    return {label: {key: {"decode_tok_s": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v)}
                    for key, v in per.items()} for label, per in tok_s.items()}


def ratios(results: list[dict]) -> list[dict]:
    """Each lessismore entry (variants included: "lessismore+ENV=value") against each stock backend, from the
    medians over rounds (one round: the single values)."""
    by = medians(results)
    rows = []
    for label, ours in by.items():
        if not label.startswith("lessismore"):
            continue
        for key, c in ours.items():
            row = {"batch": key[0], "context": key[1], f"{label}_tok_s": c["decode_tok_s"]}
            if c["rounds"] > 1:
                row[f"{label}_tok_s_range"] = [c["min"], c["max"]]
            for name, res in by.items():
                if not name.startswith("lessismore") and key in res:
                    row[f"{name}_tok_s"] = res[key]["decode_tok_s"]
                    row[f"speedup_vs_{name}"] = round(c["decode_tok_s"] / res[key]["decode_tok_s"], 3)
                    if c["rounds"] > 1 or res[key]["rounds"] > 1:
                        row[f"{name}_tok_s_range"] = [res[key]["min"], res[key]["max"]]
            rows.append(row)
    return rows


def plot(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(path).read_text())
    by = medians(data["results"])  # one bar per entry: the median over rounds, the whisker its range
    keys = sorted({k for per in by.values() for k in per})
    labels = [f"B={b}\nctx={c // 1024}K" for b, c in keys]
    width = 0.8 / max(1, len(by))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, per) in enumerate(by.items()):
        xs = [j + i * width for j, k in enumerate(keys) if k in per]
        vals = [per[k] for k in keys if k in per]
        med = [v["decode_tok_s"] for v in vals]
        err = [[m - v["min"] for m, v in zip(med, vals)], [v["max"] - m for m, v in zip(med, vals)]]
        engines = max(v["rounds"] for v in vals)  # fewer than --rounds where a run was cut short
        label = name if data.get("rounds", 1) == 1 else f"{name} (median of {engines} engine{'s' * (engines > 1)})"
        ax.bar(xs, med, width, label=label, yerr=err if engines > 1 else None, capsize=2)
    ax.set_xticks([j + width * (len(by) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_ylabel("decode tokens/s")
    ax.set_title(f"Qwen3-8B shape, dummy weights, {data.get('device', '')}, vLLM {data.get('vllm', '')}, "
                 f"budget {data.get('budget')}"
                 + (f", --rounds {data['rounds']}" if data.get("rounds", 1) > 1 else ""), fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(path).with_suffix(".png"), dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="BATCHxCONTEXT,...")
    ap.add_argument("--backends", default=DEFAULT_BACKENDS, help="comma-separated; an entry may set environment "
                    "variables for its engine: lessismore+LESSISMORE_SPARSE_KERNEL=cuda")
    ap.add_argument("--budget", type=int, default=2048)
    ap.add_argument("--gen", type=int, default=128, help="decode steps timed per config")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="run the backend list this many times, alternating; "
                    "ratios from the medians")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size of every engine")
    ap.add_argument("--engine", default="{}", help="JSON of extra LLM kwargs for every engine (compilation_config "
                    "is merged into the script's)")
    ap.add_argument("--profile", help="folder for torch-profiler traces (per worker) of 8 extra decode steps per "
                    "config, taken after the timed passes")
    ap.add_argument("--engine-timeout", type=int, default=None, help="seconds per backend's engine process")
    ap.add_argument("--plot", help="only draw the PNG of this bench_e2e.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        print("RESULT " + json.dumps(worker(spec)), flush=True)
        return
    if args.plot:
        plot(args.plot)
        return

    import torch
    import vllm

    from lessismore_vllm.harness import run_logged
    from lessismore_vllm.tiny_model import write_qwen3_8b_shape

    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    model = write_qwen3_8b_shape(Path(tempfile.mkdtemp(prefix="bench-e2e-")) / "qwen3-8b-shape")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out, "bench_e2e.json")
    data = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "vllm": vllm.__version__,
            "budget": args.budget, "gen": args.gen, "rounds": args.rounds, "tp": args.tp,
            "engine": json.loads(args.engine), "command": " ".join(sys.argv), "results": []}
    cache_roots = Path(tempfile.mkdtemp(prefix="bench-e2e-vllm-cache-"))
    labels = args.backends.split(",")
    runs = [(r, label) for r in range(args.rounds) for label in labels]  # alternating: A B C A B C ...
    for i, (rnd, label) in enumerate(runs):
        backend, *settings = label.split("+")  # lessismore+NAME=value: that engine with NAME=value
        name = file_name(label) + (f"_round{rnd + 1}" if args.rounds > 1 else "")
        env = {**os.environ, "VLLM_CACHE_ROOT": str(cache_roots / f"{i}-{name}"),
               **dict(kv.split("=", 1) for kv in settings)}
        spec = {"model": str(model), "backend": backend, "label": label, "budget": args.budget, "configs": configs,
                "gen": args.gen, "repeats": args.repeats, "max_model_len": max(c for _, c in configs) + 64,
                "gpu_memory_utilization": args.gpu_memory_utilization, "tp": args.tp,
                "engine": json.loads(args.engine),
                "profile_dir": str(Path(args.profile, f"round{rnd + 1}")) if args.profile and args.rounds > 1
                else args.profile}
        spec_path = Path(tempfile.mkstemp(suffix=".json")[1])
        spec_path.write_text(json.dumps(spec))
        t0 = time.time()
        # the log streams to --out, so a run cut off mid-engine keeps it
        code, log = run_logged([sys.executable, __file__, "--worker", str(spec_path)],
                               str(Path(args.out, f"bench_e2e_{name}.log")), args.engine_timeout,
                               env)
        lines = [ln for ln in log.splitlines() if ln.startswith("RESULT ")]
        res = json.loads(lines[-1][7:]) if lines else {"backend": label, "exit": code, "error": log[-3000:]}
        res["wall_s"] = round(time.time() - t0, 1)
        res["round"] = rnd + 1
        print(json.dumps(res), flush=True)
        data["results"].append(res)
        data["ratios"] = ratios(data["results"])
        out_path.write_text(json.dumps(data, indent=1))
    for row in data["ratios"]:
        print("RATIO", json.dumps(row), flush=True)
    try:
        plot(str(out_path))
    except Exception as e:  # matplotlib missing on the GPU host: draw it later with --plot
        print(f"no plot: {e!r}")


if __name__ == "__main__":
    main()
