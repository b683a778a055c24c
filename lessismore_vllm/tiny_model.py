"""Tiny dummy-weight model configs (Qwen3 or Llama architecture, GQA) for the demo and the CPU tests.

vLLM loads them with load_format="dummy": no weights and no downloads, but the real model code runs.
"""

from __future__ import annotations

import json
from pathlib import Path

ARCHITECTURES = {"qwen3": ("Qwen3ForCausalLM", "qwen3"), "llama": ("LlamaForCausalLM", "llama")}


def write_tiny_model(
    path: str | Path,
    arch: str = "qwen3",
    num_layers: int = 6,
    hidden_size: int = 128,
    num_heads: int = 8,
    num_kv_heads: int = 2,
    head_dim: int = 32,
    vocab_size: int = 1024,
    max_position_embeddings: int = 4096,
    intermediate_size: int | None = None,
    tokenizer: bool = True,
    weights_std: float | None = 0.5,
    seed: int = 0,
) -> Path:
    """Write config.json, and unless weights_std is None, seeded random weights (safetensors).

    vLLM's own dummy weights are uniform in +-1e-3, which makes attention almost uniform: a wrong attention
    implementation would barely change the tokens. Weights with a larger spread give peaked attention, so the
    tests that compare backends can fail. Load with load_format="auto" (weights) or "dummy" (config only).
    """
    arch_name, model_type = ARCHITECTURES[arch]
    config = {
        "architectures": [arch_name],
        "model_type": model_type,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if arch == "qwen3":
        config.update({"attention_bias": False, "use_sliding_window": False, "sliding_window": None})
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    if weights_std is not None:
        _write_random_weights(path, config, weights_std, seed)
    if tokenizer:
        write_tokenizer(path, vocab_size)
    return path


def write_qwen3_8b_shape(path: str | Path, tokenizer: bool = False) -> Path:
    """Qwen3-8B's shape (36 layers, 32 query / 8 KV heads, head_dim 128) as config only: load_format="dummy"."""
    return write_tiny_model(
        path, "qwen3", num_layers=36, hidden_size=4096, num_heads=32, num_kv_heads=8, head_dim=128,
        vocab_size=151936, max_position_embeddings=40960, intermediate_size=12288, tokenizer=tokenizer, weights_std=None,
    )


def write_tokenizer(path: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the words w3..w{vocab-1} so text prompts and detokenized output work offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(path))


def _write_random_weights(path: Path, config: dict, std: float, seed: int) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    hf_config = AutoConfig.from_pretrained(path)
    hf_config.initializer_range = std
    model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("norm.weight"):
            state[name] = torch.ones_like(t)
        else:  # 1/sqrt(fan_in) keeps activations O(1) whatever the hidden size; std sets how peaked attention is
            fan_in = t.shape[-1] if t.dim() > 1 and "embed" not in name else 1
            state[name] = torch.randn(t.shape, generator=gen) * std * (fan_in ** -0.5 if fan_in > 1 else 1.0)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))
