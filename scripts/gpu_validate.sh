#!/usr/bin/env bash
# GPU validation of issue "GPU path" (docs/gpu-validation.md). Run on the GPU host from the repo root, with the
# offline vLLM bundle (.gpu/parts, built by ../shared/gpu/build-bundle.sh) carried along. With the device tool's
# 10-minute limit per call, run one STEP per call: kernels | equiv | equiv-eager | sparse | serve | all.
set -euo pipefail
STEP=${1:-all}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
bash .gpu/parts/stage.sh >/dev/null
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 \
  VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e .
run() { [ "$STEP" = all ] || [ "$STEP" = "$1" ]; }
if run kernels; then python3 -m pytest -q tests/gpu 2>&1 | tee "$OUT/kernels-pytest.log"; fi
if run equiv; then python3 scripts/gpu_check.py --phase equiv --parallel 2 --out "$OUT"; fi
if run equiv-eager; then python3 scripts/gpu_check.py --phase equiv --eager-only --parallel 2 --out "$OUT"; fi
if run sparse; then python3 scripts/gpu_check.py --phase sparse --parallel 2 --out "$OUT"; fi
if run serve; then python3 scripts/gpu_serve_check.py --out "$OUT"; fi
