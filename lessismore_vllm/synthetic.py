"""A synthetic long-horizon task with real (non-random) attention patterns, and a small Qwen3 trained on it.

Pointer chasing: the prompt lists N pairs `a b` of a random permutation f over N keys drawn from the vocabulary,
then SEP and a start key k0. The model must then generate the chain k1 = f(k0), k2 = f(k1), ... for M steps. Every
generated token depends on one pair that can sit anywhere in the prompt (up to 2N tokens back), so a decode
attention that misses that pair gets the step wrong. Deterministic from a seed.

    python scripts/train_synthetic.py --out models/pointer-chase          # train (GPU: minutes), save, evaluate

Token ids: 0 PAD, 1 BOS, 2 SEP, keys from FIRST_KEY on. The model is a Qwen3ForCausalLM (GQA) written with a
word-level tokenizer (lessismore_vllm.tiny_model), so vLLM loads it from the folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

PAD, BOS, SEP, FIRST_KEY = 0, 1, 2, 3


@dataclass(frozen=True)
class TaskConfig:
    num_keys: int = 1024  # key vocabulary; each example uses a random permutation of n_pairs of them
    min_pairs: int = 256
    max_pairs: int = 1024
    chain: int = 256  # generated steps

    @property
    def vocab_size(self) -> int:
        return FIRST_KEY + self.num_keys


def make_example(task: TaskConfig, n_pairs: int, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """(prompt, answer): prompt = BOS (a f(a))*n SEP k0; answer = k1..k_chain."""
    keys = torch.randperm(task.num_keys, generator=gen)[:n_pairs] + FIRST_KEY
    succ = keys[torch.randperm(n_pairs, generator=gen)]  # f(keys[i]) = succ[i]: a random permutation of the keys
    f = dict(zip(keys.tolist(), succ.tolist()))
    order = torch.randperm(n_pairs, generator=gen).tolist()
    prompt = [BOS] + [t for i in order for t in (int(keys[i]), int(succ[i]))] + [SEP]
    k = int(keys[torch.randint(n_pairs, (1,), generator=gen)])
    prompt.append(k)
    answer = []
    for _ in range(task.chain):
        k = f[k]
        answer.append(k)
    return prompt, answer


def make_batch(task: TaskConfig, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """input ids [batch, T] and labels (-100 except on the chain) of one training batch (one length per batch)."""
    n = int(torch.randint(task.min_pairs, task.max_pairs + 1, (1,), generator=gen))
    rows = [make_example(task, n, gen) for _ in range(batch)]
    seqs = torch.tensor([p + a for p, a in rows])
    labels = torch.full_like(seqs, -100)
    start = len(rows[0][0])
    labels[:, start - 1: -1] = seqs[:, start:]  # predict chain token t+1 at position t
    return seqs, labels


def model_config(task: TaskConfig, num_layers: int, hidden: int, heads: int, kv_heads: int,
                 intermediate: int | None = None) -> dict[str, Any]:
    head_dim = hidden // heads
    return {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": hidden,
        "intermediate_size": intermediate or 3 * hidden, "num_hidden_layers": num_layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "vocab_size": task.vocab_size,
        "max_position_embeddings": 2 * (2 * task.max_pairs + task.chain + 8), "rms_norm_eps": 1e-6,
        "rope_theta": 100000.0, "tie_word_embeddings": True, "torch_dtype": "float32", "bos_token_id": BOS,
        "eos_token_id": PAD, "pad_token_id": PAD, "hidden_act": "silu", "attention_bias": False,
    }


def train(out: Path, task: TaskConfig, steps: int, batch: int, num_layers: int = 6, hidden: int = 256,
          heads: int = 8, kv_heads: int = 2, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
          log_every: int = 50, init_from: str | None = None, intermediate: int | None = None,
          save_dtype: str = "float32", max_seconds: float | None = None) -> dict[str, Any]:
    """Train with AdamW (warmup + cosine), save safetensors + config + tokenizer + training log into `out`.
    init_from: a saved model of the same shape to continue from (a curriculum: short chains first).
    save_dtype: "bfloat16" halves the files (the weights are trained in fp32 with bf16 autocast on GPU).
    max_seconds: stop early (and still save) once training has run this long."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from lessismore_vllm.tiny_model import write_tokenizer

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    cfg = model_config(task, num_layers, hidden, heads, kv_heads, intermediate)
    model = Qwen3ForCausalLM(Qwen3Config(**{k: v for k, v in cfg.items() if k != "architectures"}))
    if init_from is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(init_from) / "model.safetensors")), strict=False)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    use_bf16 = device.startswith("cuda")
    history, t0 = [], time.time()
    model.train()
    stopped_at = None
    for step in range(steps):
        if max_seconds is not None and time.time() - t0 > max_seconds:
            stopped_at = step
            print(f"time limit: stopping at step {step} of {steps}", flush=True)
            break
        ids, labels = make_batch(task, batch, gen)
        ids, labels = ids.to(device), labels.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            with torch.no_grad():
                mask = labels != -100
                acc = float((logits.argmax(-1)[mask] == labels[mask]).float().mean())
            history.append({"step": step, "loss": round(loss.item(), 4), "teacher_forced_acc": round(acc, 4),
                            "seconds": round(time.time() - t0, 1)})
            print(f"step {step:6d} loss {loss.item():.4f} acc {acc:.3f} ({time.time() - t0:.0f} s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().to("cpu").to(getattr(torch, save_dtype)).save_pretrained(out, safe_serialization=True)
    (out / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()),
                                                 "architectures": cfg["architectures"], "torch_dtype": save_dtype},
                                                indent=1))
    write_tokenizer(out, task.vocab_size)
    meta = {"task": asdict(task), "steps": steps, "batch": batch, "lr": lr, "seed": seed, "device": device,
            "init_from": init_from, "stopped_early_at_step": stopped_at, "intermediate": cfg["intermediate_size"], "save_dtype": save_dtype,
            "layers": num_layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "history": history}
    (out / "training.json").write_text(json.dumps(meta, indent=1))
    return meta


def chain_accuracy(generated: list[int], answer: list[int]) -> tuple[float, float]:
    """(fraction of steps before the first error, fraction of steps right)."""
    first_error = next((i for i, (g, a) in enumerate(zip(generated, answer)) if g != a), len(answer))
    right = sum(g == a for g, a in zip(generated, answer))
    return first_error / len(answer), right / len(answer)


def _score(name: str, policy: str, budget: int | None, tokens: list[list[int]], examples: list) -> dict[str, Any]:
    """One setting's chains against the answers: mean solved prefix, per-step accuracy, mean generation length."""
    scores = [chain_accuracy(t, a) for t, (_, a) in zip(tokens, examples)]
    res = {
        "policy": policy, "budget": budget, "tokens": tokens,
        "solved_prefix": sum(s[0] for s in scores) / len(scores),
        "step_accuracy": sum(s[1] for s in scores) / len(scores),
        "mean_gen_length": sum(len(t) for t in tokens) / len(tokens),
    }
    print(f"[{name}] " + json.dumps({k: v for k, v in res.items() if k != "tokens"}), flush=True)
    return res


# Policies that the vLLM backend runs, as settings of the same selection rule (docs/fidelity.md): lessismore;
# without the recency window (every slot ranked, no sinks); recency only (sinks + window, StreamingLLM-like).
POLICIES = {"lessismore": {}, "lessismore_norecency": {"recency_ratio": 0.0}, "recency": {"recency_ratio": 1.0}}


def eval_vllm(model_dir: str, task: TaskConfig, n_pairs: int, num_prompts: int, budgets: list[int], seed: int = 1,
              engine: dict[str, Any] | None = None, policies: list[str] | None = None,
              parallel: int = 1) -> dict[str, Any]:
    """Greedy chains through vLLM: dense (vLLM's default backend) and each policy at each budget, one engine each
    (fresh processes, up to `parallel` at once). Reports the mean solved prefix, the per-step accuracy and mean
    generation length per setting."""
    from concurrent.futures import ThreadPoolExecutor

    from lessismore_vllm.harness import run_in_subprocess

    gen = torch.Generator().manual_seed(seed)
    examples = [make_example(task, n_pairs, gen) for _ in range(num_prompts)]
    max_len = json.loads((Path(model_dir) / "config.json").read_text())["max_position_embeddings"]
    engine = {"max_model_len": max_len, **(engine or {})}
    prompts = [p for p, _ in examples]
    results = {"n_pairs": n_pairs, "context": len(prompts[0]) + task.chain, "chain": task.chain, "settings": {}}
    settings = [("dense", None, {})] + [
        (f"{policy}-{b}" if policy != "lessismore" else f"lessismore-{b}", b, POLICIES[policy])
        for policy in (policies or ["lessismore"]) for b in budgets
    ]

    def one(setting):
        name, budget, extra = setting
        spec = {"model": model_dir, "prompts": prompts, "max_tokens": task.chain, "engine": dict(engine)}
        if budget is not None:
            spec.update(backend="lessismore", lessismore={"budget": budget, **extra})
        out, _ = run_in_subprocess(spec)
        if "error" in out:
            return name, {"error": out["error"]}
        policy = "dense" if budget is None else next(p for p, v in POLICIES.items() if v == extra)
        return name, _score(name, policy, budget, out["tokens"], examples)

    with ThreadPoolExecutor(max(1, parallel)) as ex:
        for name, res in ex.map(one, settings):
            results["settings"][name] = res
    return results


def eval_hf(model_dir: str, task: TaskConfig, n_pairs: int, num_prompts: int, budgets: list[int],
            policies: list[str], seed: int = 1, device: str = "cpu") -> dict[str, Any]:
    """The same greedy chains through transformers with the fidelity tool's attention (lessismore_vllm.fidelity):
    every policy there, per-head top-k included, which is not a backend setting. fp32, one request at a time."""
    from lessismore_vllm.fidelity import DecodeState, load_model, run_sequence, schedule_for

    gen = torch.Generator().manual_seed(seed)
    examples = [make_example(task, n_pairs, gen) for _ in range(num_prompts)]
    model = load_model(model_dir, device, torch.float32)
    config = schedule_for(model, None)
    results = {"n_pairs": n_pairs, "context": len(examples[0][0]) + task.chain, "chain": task.chain,
               "engine": "transformers (fidelity attention)", "settings": {}}
    for policy, budget in [("dense", None)] + [(p, b) for p in policies for b in budgets]:
        state = DecodeState(config) if budget is None else DecodeState(config, policy, budget)
        tokens = [run_sequence(model, p, task.chain, state)["tokens"] for p, _ in examples]
        name = "dense" if budget is None else f"{policy}-{budget}"
        results["settings"][name] = _score(name, policy, budget, tokens, examples)
    return results
