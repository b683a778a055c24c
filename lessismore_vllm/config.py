"""User configuration: `additional_config={"lessismore": {...}}`, model presets, layer roles.

Resolution order: built-in defaults < preset (picked from the model, or named by `preset`) < explicit keys.
Every error names the offending key and its valid range, because users meet these at engine startup.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

CONFIG_KEY = "lessismore"
VALID_KEYS = ("budget", "recency_ratio", "sinks", "dense_layers", "selection_layers", "preset")
DEFAULTS = {"budget": 2048, "recency_ratio": 0.25, "sinks": 4}
# Presets are one JSON file per model family in the repository's top-level configs/ folder
# (installed wheels carry them as lessismore_vllm/configs, see pyproject.toml).
_PRESET_DIRS = (Path(__file__).resolve().parent / "configs", Path(__file__).resolve().parent.parent / "configs")


class LessIsMoreConfigError(ValueError):
    """Invalid `lessismore` configuration; the message names the key and the valid range."""


class LayerRole(str, Enum):
    DENSE = "dense"  # dense attention in decode, no selection
    SELECT = "selection"  # dense attention + writes the token set for the following layers
    SPARSE = "sparse"  # attends only to the token set of the last selection layer


@dataclass(frozen=True)
class LessIsMoreConfig:
    budget: int
    recency_ratio: float
    sinks: int
    dense_layers: tuple[int, ...]
    selection_layers: tuple[int, ...]
    num_layers: int
    preset: str | None = None

    def role(self, layer_idx: int) -> LayerRole:
        if layer_idx in self.selection_layers:
            return LayerRole.SELECT
        # A layer before the first selection layer has no token set yet: it runs dense
        # (this also defines pipeline-parallel stages that start before any selection).
        if layer_idx in self.dense_layers or not self.selection_layers or layer_idx < min(self.selection_layers):
            return LayerRole.DENSE
        return LayerRole.SPARSE

    def layers_with_role(self, role: LayerRole) -> list[int]:
        return [i for i in range(self.num_layers) if self.role(i) == role]

    def summary(self) -> str:
        dense, select, sparse = (self.layers_with_role(r) for r in LayerRole)
        return (
            f"preset={self.preset or 'default-rule'} layers={self.num_layers} "
            f"dense={len(dense)} {dense} selection={len(select)} {select} sparse={len(sparse)} {_ranges(sparse)} "
            f"budget={self.budget} recency_ratio={self.recency_ratio} sinks={self.sinks}"
        )


def _ranges(ids: list[int]) -> str:
    """[3,4,5,7] -> '[3-5,7]' so the startup line stays one readable line for 36-layer models."""
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return "[" + ",".join(out) + "]"


def load_presets() -> dict[str, dict[str, Any]]:
    presets: dict[str, dict[str, Any]] = {}
    for d in _PRESET_DIRS:
        if d.is_dir():
            for f in sorted(d.glob("*.json")):
                data = json.loads(f.read_text())
                presets.setdefault(data["name"], data)
    return presets


def match_preset(architectures: list[str], num_layers: int, hidden_size: int | None) -> str | None:
    for name, p in load_presets().items():
        m = p.get("match", {})
        if (
            set(m.get("architectures", [])) & set(architectures or [])
            and m.get("num_hidden_layers") == num_layers
            and m.get("hidden_size") in (None, hidden_size)
        ):
            return name
    return None


def default_schedule(num_layers: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The design note's rule for unknown models: dense 0,1; selection 2 and round(N/3)."""
    dense = tuple(i for i in (0, 1) if i < num_layers)
    select = tuple(sorted({i for i in (2, round(num_layers / 3)) if i < num_layers} - set(dense)))
    return dense, select


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """The value of environment variable `name` (case and surrounding spaces ignored), which must be one of
    `choices`; unset: `default`. A bad value fails naming the variable and the valid values."""
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid: valid values are {', '.join(choices)}")
    return value


def _int(key: str, value: Any, lo: int, hi: int | None) -> int:
    rng = f"[{lo}, {'inf' if hi is None else hi}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise LessIsMoreConfigError(f"lessismore: '{key}' must be an integer in {rng}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise LessIsMoreConfigError(f"lessismore: '{key}' must be in {rng}, got {value}")
    return value


def _layer_list(key: str, value: Any, num_layers: int) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise LessIsMoreConfigError(
            f"lessismore: '{key}' must be a list of layer ids in [0, {num_layers - 1}], got {value!r}"
        )
    ids = tuple(_int(key, v, 0, num_layers - 1) for v in value)
    if len(set(ids)) != len(ids):
        raise LessIsMoreConfigError(f"lessismore: '{key}' has repeated layer ids: {list(ids)}")
    return tuple(sorted(ids))


def resolve_config(
    user: dict[str, Any] | None,
    *,
    architectures: list[str] | None,
    num_layers: int,
    hidden_size: int | None = None,
) -> LessIsMoreConfig:
    if user is not None and not isinstance(user, dict):
        raise LessIsMoreConfigError(f"lessismore: configuration must be a JSON object, got {user!r}")
    user = dict(user or {})
    unknown = sorted(set(user) - set(VALID_KEYS))
    if unknown:
        raise LessIsMoreConfigError(f"lessismore: unknown key '{unknown[0]}'; valid keys: {', '.join(VALID_KEYS)}")

    presets = load_presets()
    preset = user.get("preset")
    if preset is not None and preset not in presets:
        raise LessIsMoreConfigError(f"lessismore: 'preset' must be one of {sorted(presets)}, got {preset!r}")
    if preset is None:
        preset = match_preset(architectures or [], num_layers, hidden_size)

    merged: dict[str, Any] = dict(DEFAULTS)
    if preset is not None:
        merged.update({k: v for k, v in presets[preset].items() if k in VALID_KEYS})
    else:
        merged["dense_layers"], merged["selection_layers"] = default_schedule(num_layers)
    merged.update({k: v for k, v in user.items() if k != "preset"})

    budget = _int("budget", merged["budget"], 1, None)
    ratio = merged["recency_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise LessIsMoreConfigError(f"lessismore: 'recency_ratio' must be a number in [0, 1], got {ratio!r}")
    sinks = _int("sinks", merged["sinks"], 0, budget)
    dense = _layer_list("dense_layers", merged["dense_layers"], num_layers)
    select = _layer_list("selection_layers", merged["selection_layers"], num_layers)
    overlap = sorted(set(dense) & set(select))
    if overlap:
        raise LessIsMoreConfigError(
            f"lessismore: 'selection_layers' and 'dense_layers' overlap at {overlap}; a layer has one role"
        )
    return LessIsMoreConfig(budget, float(ratio), sinks, dense, select, num_layers, preset)


def from_vllm_config(vllm_config: Any) -> LessIsMoreConfig:
    """Resolve the configuration of the model vLLM is serving (runs in every process that needs it)."""
    extra = getattr(vllm_config, "additional_config", None) or {}
    user = extra.get(CONFIG_KEY) if isinstance(extra, dict) else None
    if user is not None and not isinstance(user, dict):
        raise LessIsMoreConfigError(f"lessismore: additional_config['lessismore'] must be an object, got {user!r}")
    hf = vllm_config.model_config.hf_text_config
    return resolve_config(
        user,
        architectures=list(getattr(vllm_config.model_config.hf_config, "architectures", None) or []),
        num_layers=int(hf.num_hidden_layers),
        hidden_size=getattr(hf, "hidden_size", None),
    )
