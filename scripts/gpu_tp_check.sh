#!/bin/bash
# Tensor parallelism on a 2-GPU host (issue 8), as run on the device: which all-reduce setup lets vLLM's own
# FLASH_ATTN run TP=2 with CUDA graphs on this host (three probes at once), then the full
# `gpu_check.py --phase tp` with the first setup that worked. Writes $OUT/tp-check.tgz (all logs, stacks of
# anything that hung) and $OUT/tp-setup.txt (the setup used). Needs the faulthandler hook of gpu_timeout.sh.
set -u
T=scripts/gpu_timeout.sh
PROBE="--phase tp --only FLASH_ATTN_tp2 --engine-timeout ${PROBE_S:-190}"
NOCAR='{"disable_custom_all_reduce": true}'
mkdir -p /tmp/tp/default /tmp/tp/no-car /tmp/tp/no-car-no-p2p /tmp/tp/full
$T $((${PROBE_S:-190} + 10)) python3 scripts/gpu_check.py $PROBE --work /tmp/tp/default --out /tmp/tp/default \
  > /tmp/tp/default.txt 2>&1 &
$T $((${PROBE_S:-190} + 10)) python3 scripts/gpu_check.py $PROBE --work /tmp/tp/no-car --out /tmp/tp/no-car \
  --tp-engine "$NOCAR" > /tmp/tp/no-car.txt 2>&1 &
NCCL_P2P_DISABLE=1 $T $((${PROBE_S:-190} + 10)) python3 scripts/gpu_check.py $PROBE --work /tmp/tp/no-car-no-p2p \
  --out /tmp/tp/no-car-no-p2p --tp-engine "$NOCAR" > /tmp/tp/no-car-no-p2p.txt 2>&1 &
wait
ok() { [ -f "/tmp/tp/$1/tp.json" ] && ! grep -q 'error' "/tmp/tp/$1/tp.json"; }
for setup in default no-car no-car-no-p2p; do
  echo "probe $setup: $(ok $setup && echo ok || echo FAILED)" | tee -a "$OUT/tp-setup.txt"
done
chosen=""
for setup in default no-car no-car-no-p2p; do ok $setup && { chosen=$setup; break; }; done
echo "chosen: ${chosen:-none}" | tee -a "$OUT/tp-setup.txt"
if [ -n "$chosen" ]; then
  extra='{}'; envs=()
  [ "$chosen" != default ] && extra=$NOCAR
  [ "$chosen" = no-car-no-p2p ] && envs=(NCCL_P2P_DISABLE=1)
  env "${envs[@]}" $T "${FULL_S:-300}" python3 scripts/gpu_check.py --phase tp --parallel 2 --tp-engine "$extra" \
    --work /tmp/tp/full --out /tmp/tp/full --engine-timeout $((${FULL_S:-300} - 20)) > /tmp/tp/full.txt 2>&1
  cp /tmp/tp/full/tp.json "$OUT/tp.json" 2>/dev/null
fi
tar czf "$OUT/tp-check.tgz" --exclude='*.safetensors' -C /tmp tp
