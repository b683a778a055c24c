"""scripts/eval_reasoning.py end to end on CPU: lm-eval -> vLLM -> our backend, on the tiny model and the
built-in 4-question task, so the recipe cannot rot. (Accuracy of a random-weight model is meaningless; the
counts, lengths and the backend actually running are what is checked.)"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "eval_reasoning.py"


def test_eval_reasoning_recipe_runs(tiny_models, tmp_path):
    engine = {"dtype": "float32", "enforce_eager": True, "kv_cache_memory_bytes": 256 << 20, "max_model_len": 512}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", tiny_models["qwen3"], "--tiny-task", "--limit", "4",
         "--max-gen-toks", "16", "--budgets", "8", "--out", str(tmp_path), "--model-args", json.dumps(engine)],
        capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "eval_reasoning.json").read_text())
    assert set(data["settings"]) == {"dense", "lessismore-8"}
    for setting in data["settings"].values():
        r = setting["tiny_reasoning"]
        assert r["answers"] == 4 and 0.0 <= r["accuracy"] <= 1.0
        assert 0 < r["mean_gen_length"] <= 16
    assert "LessIsMore active:" in (tmp_path / "lessismore-8-sample0.log").read_text()
    assert "LessIsMore active:" not in (tmp_path / "dense-sample0.log").read_text()
    assert (tmp_path / "eval_reasoning.md").read_text().count("|") > 6
