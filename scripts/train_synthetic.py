"""Train the pointer-chasing Qwen3 (lessismore_vllm.synthetic), save it, and measure it through vLLM.

    python scripts/train_synthetic.py --out models/pointer-chase --device cuda          # defaults: see --help
    python scripts/train_synthetic.py --eval-only --out models/pointer-chase --budgets 128,256,512

Writes model.safetensors, config.json, tokenizer files and training.json (loss / teacher-forced accuracy
history) into --out, then eval.json: greedy chain accuracy through vLLM, dense vs lessismore at each budget.
Deterministic from --seed (data and initialisation; GPU kernels may still differ in the last bits).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lessismore_vllm.synthetic import POLICIES, TaskConfig, eval_vllm, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default 3 x hidden)")
    ap.add_argument("--save-dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--num-keys", type=int, default=1024)
    ap.add_argument("--min-pairs", type=int, default=256)
    ap.add_argument("--max-pairs", type=int, default=1024)
    ap.add_argument("--chain", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-from", help="continue from this saved model (curriculum stage)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=None, help="stop training early (and save) after this")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU training)")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--eval-pairs", type=int, default=None, help="pairs per eval prompt (default: --max-pairs)")
    ap.add_argument("--eval-prompts", type=int, default=16)
    ap.add_argument("--budgets", default="128,256,512")
    ap.add_argument("--policies", default="lessismore", help="of " + ",".join(POLICIES))
    ap.add_argument("--parallel", type=int, default=1, help="engines evaluated at once")
    ap.add_argument("--engine", default="{}", help="extra LLM(...) arguments as JSON")
    args = ap.parse_args()
    out = Path(args.out)
    task = TaskConfig(args.num_keys, args.min_pairs, args.max_pairs, args.chain)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.eval_only:
        task = TaskConfig(**json.loads((out / "training.json").read_text())["task"])
    else:
        train(out, task, args.steps, args.batch, args.layers, args.hidden, args.heads, args.kv_heads, args.lr,
              args.seed, args.device, args.log_every, args.init_from, args.intermediate, args.save_dtype,
              args.max_seconds)
    if args.no_eval:
        return
    budgets = [int(b) for b in args.budgets.split(",") if b]
    result = eval_vllm(str(out), task, args.eval_pairs or task.max_pairs, args.eval_prompts, budgets,
                       engine=json.loads(args.engine), policies=args.policies.split(","), parallel=args.parallel)
    (out / "eval.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
