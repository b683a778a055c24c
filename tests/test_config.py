import pytest

from lessismore_vllm.config import LayerRole, LessIsMoreConfigError, default_schedule, match_preset, resolve_config


def resolve(user=None, arch="Qwen3ForCausalLM", layers=36, hidden=4096):
    return resolve_config(user, architectures=[arch], num_layers=layers, hidden_size=hidden)


@pytest.mark.parametrize(
    "arch,layers,hidden,preset,selection",
    [
        ("Qwen3ForCausalLM", 36, 4096, "qwen3-8b", (2, 12)),
        ("Qwen3ForCausalLM", 36, 2560, "qwen3-4b", (2, 20)),
        ("LlamaForCausalLM", 32, 4096, "llama-3.1-8b", (2, 13)),
    ],
)
def test_presets_picked_from_model(arch, layers, hidden, preset, selection):
    cfg = resolve(arch=arch, layers=layers, hidden=hidden)
    assert cfg.preset == preset and cfg.selection_layers == selection and cfg.dense_layers == (0, 1)
    assert (cfg.budget, cfg.recency_ratio, cfg.sinks) == (2048, 0.25, 4)
    assert len(cfg.layers_with_role(LayerRole.SPARSE)) == layers - 4


def test_unknown_model_uses_default_rule():
    assert match_preset(["MistralForCausalLM"], 40, 5120) is None
    cfg = resolve(arch="MistralForCausalLM", layers=40, hidden=5120)
    assert cfg.preset is None and cfg.selection_layers == (2, 13)
    assert default_schedule(4) == ((0, 1), (2,))
    assert default_schedule(2) == ((0, 1), ())


def test_explicit_keys_override_preset():
    cfg = resolve({"budget": 512, "selection_layers": [3, 20], "preset": "qwen3-8b"})
    assert cfg.budget == 512 and cfg.selection_layers == (3, 20) and cfg.preset == "qwen3-8b"
    assert cfg.role(2) is LayerRole.DENSE, "layers before the first selection layer have no set yet"
    assert cfg.role(3) is LayerRole.SELECT and cfg.role(4) is LayerRole.SPARSE


@pytest.mark.parametrize(
    "user,key",
    [
        ({"budget": 0}, "budget"),
        ({"budget": "big"}, "budget"),
        ({"budget": True}, "budget"),
        ({"recency_ratio": 1.5}, "recency_ratio"),
        ({"recency_ratio": -0.1}, "recency_ratio"),
        ({"sinks": -1}, "sinks"),
        ({"dense_layers": [0, 36]}, "dense_layers"),
        ({"dense_layers": [0, 0]}, "dense_layers"),
        ({"selection_layers": [2, 1]}, "selection_layers"),  # overlaps dense 0,1
        ({"selection_layers": 5}, "selection_layers"),
        ({"preset": "gpt-9"}, "preset"),
        ({"top_k": 2048}, "top_k"),
    ],
)
def test_invalid_values_name_the_key(user, key):
    with pytest.raises(LessIsMoreConfigError, match=f"'{key}'"):
        resolve(user)


def test_summary_line_lists_schedule():
    s = resolve().summary()
    assert "dense=2 [0, 1]" in s and "selection=2 [2, 12]" in s and "sparse=32 [3-11,13-35]" in s
    assert "budget=2048" in s
