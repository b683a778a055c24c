"""The synthetic pointer-chasing task and its train -> save -> vLLM pipeline (a few steps on CPU: this checks the
recipe, not how well the model learns; the trained model's numbers come from the GPU run)."""

from pathlib import Path

import pytest
import torch

from lessismore_vllm.synthetic import BOS, SEP, TaskConfig, chain_accuracy, eval_vllm, make_batch, make_example, train


def test_example_follows_its_permutation():
    task = TaskConfig(num_keys=50, min_pairs=20, max_pairs=20, chain=30)
    prompt, answer = make_example(task, 20, torch.Generator().manual_seed(3))
    assert prompt[0] == BOS and prompt[-2] == SEP and len(prompt) == 2 * 20 + 3
    f = dict(zip(prompt[1:-2:2], prompt[2:-2:2]))
    assert sorted(f) == sorted(f.values()), "the pairs form a permutation of the example's keys"
    k = prompt[-1]
    for a in answer:
        assert a == f[k]
        k = a
    again = make_example(task, 20, torch.Generator().manual_seed(3))
    assert again == (prompt, answer), "deterministic from the seed"


def test_batch_labels_cover_exactly_the_chain():
    task = TaskConfig(num_keys=40, min_pairs=10, max_pairs=12, chain=7)
    ids, labels = make_batch(task, 3, torch.Generator().manual_seed(0))
    assert ((labels != -100).sum(dim=1) == 7).all()
    assert torch.equal(labels[:, -8:-1], ids[:, -7:])


def test_chain_accuracy():
    assert chain_accuracy([5, 6, 7, 8], [5, 6, 9, 8]) == (0.5, 0.75)


@pytest.mark.engine
def test_train_save_and_serve_through_vllm(tmp_path):
    task = TaskConfig(num_keys=40, min_pairs=12, max_pairs=12, chain=10)
    meta = train(tmp_path / "m", task, steps=6, batch=4, num_layers=4, hidden=128, heads=4, kv_heads=2, log_every=5,
                 intermediate=256, save_dtype="bfloat16")
    assert meta["history"] and all(h["loss"] > 0 for h in meta["history"])
    res = eval_vllm(str(tmp_path / "m"), task, 12, 3, budgets=[4096, 8], policies=["lessismore", "recency"],
                    parallel=2)
    s = res["settings"]
    assert set(s) == {"dense", "lessismore-4096", "lessismore-8", "recency-4096", "recency-8"}, s
    assert not any("error" in v for v in s.values()), s
    for name in ("lessismore-4096", "recency-4096"):
        assert s[name]["tokens"] == s["dense"]["tokens"], f"{name}: budget >= context is dense"
    assert s["recency-8"]["policy"] == "recency" and s["recency-8"]["budget"] == 8
    assert all(v["mean_gen_length"] == 10 for v in s.values())


@pytest.mark.engine
def test_committed_gpu_trained_model_solves_chains_in_vllm_on_cpu():
    """models/pointer-chase-gpu loads from its folder in vLLM; dense (vLLM's CPU backend) solves 16-step chains over
    256 pairs (515-token prompts); LessIsMore equals dense at budget >= context and, as measured, also solves them at
    budget 64 (12% of the context)."""
    task = TaskConfig(1024, 512, 1024, 16)
    model = Path(__file__).resolve().parent.parent / "models" / "pointer-chase-gpu"
    res = eval_vllm(str(model), task, 256, 4, [64, 4096], parallel=2, engine={"max_model_len": 1024})
    s = res["settings"]
    assert not any("error" in v for v in s.values()), s
    assert s["dense"]["solved_prefix"] >= 0.9, s["dense"]
    assert s["lessismore-4096"]["tokens"] == s["dense"]["tokens"]
    assert s["lessismore-64"]["solved_prefix"] >= 0.9, s["lessismore-64"]


def test_eval_hf_runs_every_policy_and_is_dense_above_the_context():
    """The transformers path of the chain eval (it also covers per-head top-k, which vLLM does not run)."""
    from lessismore_vllm.fidelity import POLICIES
    from lessismore_vllm.synthetic import eval_hf

    model = Path(__file__).resolve().parent.parent / "models" / "pointer-chase-gpu"
    res = eval_hf(str(model), TaskConfig(1024, 512, 1024, 8), 64, 2, [4096, 32], list(POLICIES))
    s = res["settings"]
    assert set(s) == {"dense"} | {f"{p}-{b}" for p in POLICIES for b in (4096, 32)}
    for p in POLICIES:
        assert s[f"{p}-4096"]["tokens"] == s["dense"]["tokens"], p
        assert s[f"{p}-32"]["mean_gen_length"] == 8
    assert s["dense"]["solved_prefix"] == 1.0, s["dense"]
