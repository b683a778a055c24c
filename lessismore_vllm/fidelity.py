"""How close sparse decode attention stays to dense, per decode step (issue "Fidelity and evaluation").

    python -m lessismore_vllm.fidelity --model DIR --out OUT [--budgets 1024,2048,4096] [--gen 512]

For a local Hugging Face model (any size; CPU or GPU) and prompts: generate greedily with dense attention, then
score that same token sequence (teacher forcing) with each sparse policy at each budget and report, per decode
step: top-1 agreement with the dense token, KL(dense || sparse) of the next-token distributions, and attention
recall (the share of a layer's dense attention mass that falls on the tokens it may attend) at every selection
layer and, averaged, over the sparse layers. Prefill is dense for every policy, as in the backend.

Policies (same layer schedule as the backend, from lessismore_vllm.config; same budget):
  lessismore            select_tokens: sinks + recent window + rank-major union of every head's top-k, shared
  lessismore_norecency  the same rule with recency_ratio 0: the union alone
  per_head_topk         each query head keeps its own top-budget tokens, no union (TidalDecode-like)
  recency               sinks + the most recent tokens only (StreamingLLM-like)
The attention here is a readable PyTorch implementation plugged into transformers' attention interface; it runs
one request at a time. Writes fidelity.json and fidelity.png (recall over decode steps; agreement vs budget).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from lessismore_vllm.config import LayerRole, LessIsMoreConfig, resolve_config
from lessismore_vllm.selection import select_tokens

ATTN_NAME = "lessismore_fidelity"
POLICIES = ("lessismore", "lessismore_norecency", "per_head_topk", "recency")


def policy_mask(policy: str, logits: torch.Tensor, budget: int, recency_ratio: float, sinks: int) -> torch.Tensor:
    """Which tokens each query head may attend: bool [Hq, L]. Every policy is dense when budget >= L."""
    num_heads, L = logits.shape
    mask = torch.zeros(num_heads, L, dtype=torch.bool, device=logits.device)
    if budget >= L or policy == "dense":
        mask[:] = True
    elif policy == "lessismore":
        mask[:, select_tokens(logits, budget, recency_ratio, sinks)] = True
    elif policy == "lessismore_norecency":
        mask[:, select_tokens(logits, budget, 0.0, sinks)] = True
    elif policy == "per_head_topk":
        mask.scatter_(1, torch.topk(logits.float(), budget, dim=-1).indices, True)
    elif policy == "recency":
        keep_sinks = min(sinks, budget)
        mask[:, :keep_sinks] = True
        mask[:, L - (budget - keep_sinks):] = True
    else:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICIES)}")
    return mask


@dataclass
class DecodeState:
    """What the attention function needs to know about the current forward, and what it records."""

    config: LessIsMoreConfig
    policy: str = "dense"
    budget: int = 1 << 30
    mask: torch.Tensor | None = None  # the current token set, written by the last selection layer
    recall: dict[int, float] = field(default_factory=dict)  # layer -> dense attention mass on the allowed set


_STATE: DecodeState | None = None


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query [1, Hq, q, D], key/value [1, Hkv, L, D] -> ([1, q, Hq, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    state = _STATE
    if state is None or query.shape[2] != 1 or query.shape[0] != 1:  # prefill: dense, as in the backend
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    layer = module.layer_idx
    group = query.shape[1] // key.shape[1]
    k = key[0].float().repeat_interleave(group, dim=0)  # [Hq, L, D]
    v = value[0].float().repeat_interleave(group, dim=0)
    logits = torch.einsum("hd,hld->hl", query[0, :, 0].float(), k) * scaling
    probs = logits.softmax(dim=-1)
    role = state.config.role(layer)
    if role is LayerRole.SELECT:
        state.mask = policy_mask(state.policy, logits, state.budget, state.config.recency_ratio, state.config.sinks)
    if role is not LayerRole.DENSE:  # dense attention mass on the set this step's selection allows
        state.recall[layer] = float((probs * state.mask).sum(dim=-1).mean())
    if role is LayerRole.SPARSE:
        probs = logits.masked_fill(~state.mask, float("-inf")).softmax(dim=-1)
    out = torch.einsum("hl,hld->hd", probs, v)
    return out.to(query.dtype)[None, None], None


def load_model(path: str, device: str, dtype: torch.dtype):
    from transformers import AttentionInterface, AutoModelForCausalLM

    AttentionInterface.register(ATTN_NAME, _attention)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=ATTN_NAME)
    return model.to(device).eval()


def schedule_for(model, user: dict[str, Any] | None) -> LessIsMoreConfig:
    cfg = model.config
    return resolve_config(user, architectures=list(cfg.architectures or []), num_layers=cfg.num_hidden_layers,
                          hidden_size=cfg.hidden_size)


@torch.no_grad()
def run_sequence(model, prompt: list[int], gen: int, state: DecodeState,
                 forced: list[int] | None = None) -> dict[str, Any]:
    """Greedy decode (forced=None) or teacher-forced scoring of `forced`. Returns tokens, per-step log-probs
    (float64 [steps, vocab], step 0 = the prefill's prediction) and per-step recall by layer."""
    global _STATE
    device = next(model.parameters()).device
    _STATE = None  # prefill: dense
    out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
    past, logits = out.past_key_values, out.logits[0, -1]
    tokens, logprobs, recall = [], [], []
    _STATE = state
    try:
        for step in range(gen):
            logprobs.append(logits.double().log_softmax(-1).cpu())
            tok = forced[step] if forced is not None else int(logits.argmax())
            tokens.append(tok)
            if step + 1 == gen:
                break
            state.recall, state.mask = {}, None
            out = model(input_ids=torch.tensor([[tok]], device=device), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
            recall.append(dict(state.recall))
    finally:
        _STATE = None
    return {"tokens": tokens, "logprobs": torch.stack(logprobs), "recall": recall}


def compare(dense: dict, sparse: dict, config: LessIsMoreConfig) -> dict[str, Any]:
    """Decode steps only (step 0 is the dense prefill's prediction for every policy)."""
    p, q = dense["logprobs"][1:], sparse["logprobs"][1:]
    kl = (p.exp() * (p - q)).sum(-1).clamp(min=0.0)
    agree = (q.argmax(-1) == torch.tensor(dense["tokens"][1:])).double()
    select_ids = config.layers_with_role(LayerRole.SELECT)
    sparse_ids = set(config.layers_with_role(LayerRole.SPARSE))
    per_selection = {str(i): [r[i] for r in sparse["recall"]] for i in select_ids}
    sparse_layers = [sum(v for k, v in r.items() if k in sparse_ids) / max(1, len(sparse_ids)) for r in sparse["recall"]]
    return {
        "steps": len(kl),
        "top1_agreement": float(agree.mean()) if len(agree) else math.nan,
        "kl_mean": float(kl.mean()) if len(kl) else math.nan,
        "kl_max": float(kl.max()) if len(kl) else math.nan,
        "recall_selection_layers": {k: sum(v) / len(v) for k, v in per_selection.items() if v},
        "recall_sparse_layers": sum(sparse_layers) / len(sparse_layers) if sparse_layers else math.nan,
        "recall_by_step": per_selection,
    }


def evaluate(model, prompts: list[list[int]], gen: int, budgets: list[int], policies: list[str],
             user_config: dict[str, Any] | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    config = schedule_for(model, user_config)
    results: dict[str, Any] = {"schedule": config.summary(), "gen": gen, "prompt_lengths": [len(p) for p in prompts],
                               "policies": {}}
    dense_runs = [run_sequence(model, p, gen, DecodeState(config)) for p in prompts]
    results["dense_tokens"] = [d["tokens"] for d in dense_runs]
    for policy in policies:
        for budget in budgets:
            per_prompt = []
            for prompt, dense in zip(prompts, dense_runs):
                sparse = run_sequence(model, prompt, gen, DecodeState(config, policy, budget), forced=dense["tokens"])
                per_prompt.append(compare(dense, sparse, config))
            steps = sum(r["steps"] for r in per_prompt)
            summary = {
                "top1_agreement": sum(r["top1_agreement"] * r["steps"] for r in per_prompt) / steps,
                "kl_mean": sum(r["kl_mean"] * r["steps"] for r in per_prompt) / steps,
                "kl_max": max(r["kl_max"] for r in per_prompt),
                "recall_selection_layers": {
                    k: sum(r["recall_selection_layers"][k] for r in per_prompt) / len(per_prompt)
                    for k in per_prompt[0]["recall_selection_layers"]
                },
                "recall_sparse_layers": sum(r["recall_sparse_layers"] for r in per_prompt) / len(per_prompt),
                "recall_by_step_prompt0": per_prompt[0]["recall_by_step"],
            }
            results["policies"].setdefault(policy, {})[str(budget)] = summary
            progress(f"{policy:22s} budget {budget:6d}: agreement {summary['top1_agreement']:.3f} "
                     f"KL {summary['kl_mean']:.4g} recall(selection) "
                     f"{ {k: round(v, 3) for k, v in summary['recall_selection_layers'].items()} } "
                     f"recall(sparse) {summary['recall_sparse_layers']:.3f}")
    return results


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    policies = results["policies"]
    budgets = sorted({int(b) for p in policies.values() for b in p})
    mid = str(budgets[len(budgets) // 2])
    for name, by_budget in policies.items():
        series = by_budget[mid]["recall_by_step_prompt0"]
        first = sorted(series, key=int)[0]
        ax1.plot(series[first], label=name)
        ax2.plot(budgets, [by_budget[str(b)]["top1_agreement"] for b in budgets], marker="o", label=name)
    ax1.set(title=f"recall at the first selection layer, budget {mid}, prompt 0", xlabel="decode step",
            ylabel="dense attention mass covered")
    ax2.set(title="top-1 agreement with dense", xlabel="budget", ylabel="agreement", xscale="log")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="local model directory (default: a tiny seeded random Qwen3 in a temp dir)")
    ap.add_argument("--prompts", help="JSON file: a list of token-id lists")
    ap.add_argument("--num-prompts", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=400)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--budgets", default="32,64,128")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--lessismore", default=None, help='JSON of the backend\'s settings, e.g. \'{"recency_ratio": 0.25}\'')
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)

    model_dir = args.model
    if model_dir is None:
        import tempfile

        from lessismore_vllm.tiny_model import write_tiny_model

        model_dir = str(write_tiny_model(Path(tempfile.mkdtemp(prefix="fidelity-")) / "tiny"))
    model = load_model(model_dir, args.device, getattr(torch, args.dtype))
    if args.prompts:
        prompts = json.loads(Path(args.prompts).read_text())
    else:
        from lessismore_vllm.harness import make_prompts

        prompts = make_prompts(args.num_prompts, args.prompt_len, args.prompt_len, vocab=model.config.vocab_size)
    results = evaluate(model, prompts, args.gen, [int(b) for b in args.budgets.split(",")],
                       args.policies.split(","), json.loads(args.lessismore) if args.lessismore else None)
    results["model"] = model_dir
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(results, indent=1))
    try:
        plot(results, out / "fidelity.png")
    except ImportError as e:  # matplotlib is optional
        print(f"no plot: {e}")
    print(f"wrote {out / 'fidelity.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
