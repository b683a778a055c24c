#!/usr/bin/env bash
# One GPU call for issues "Reliability" and "Fidelity" (docs/reliability.md, docs/fidelity.md): the >= 5 min soak
# of the OpenAI server on a Qwen3-8B-shaped dummy model (64 streaming clients, budget 2048, prompts up to 8K) runs
# in the background while the pointer-chasing model trains (3-stage curriculum, time-boxed) and is then evaluated
# through vLLM: dense vs every policy x budget. Run from the repo root on the GPU host, after the bundle's
# stage.sh + editable install; results under $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
M=/tmp/pointer-chase
SOAK=${SOAK:-1}  # SOAK=0: only the synthetic model
[ "$SOAK" = 1 ] && python3 scripts/soak.py --qwen3-8b-shape --duration 300 --concurrency 64 --budget 2048 --max-prompt 8192 \
  --max-tokens 256 --kv-cache-gib 60 --json "$OUT/soak.json" > "$OUT/soak.log" 2>&1 &
SOAK_PID=$!
[ "$SOAK" = 1 ] && sleep 45  # the soak server checks free GPU memory at start-up: start it before training
COMMON="--device cuda --layers 6 --hidden 256 --heads 4 --kv-heads 2 --intermediate 512 --num-keys 1024 --no-eval"
{
  python3 scripts/train_synthetic.py --out $M-1 $COMMON --min-pairs 16 --max-pairs 16 --chain 16 --steps 4000 \
    --batch 64 --max-seconds 110 --log-every 250 &&
  python3 scripts/train_synthetic.py --out $M-2 $COMMON --min-pairs 64 --max-pairs 256 --chain 64 --steps 3000 \
    --batch 32 --init-from $M-1 --max-seconds 85 --log-every 250 &&
  python3 scripts/train_synthetic.py --out $M $COMMON --min-pairs 512 --max-pairs 1024 --chain 256 --steps 2000 \
    --batch 16 --init-from $M-2 --max-seconds 110 --log-every 100 --save-dtype bfloat16 &&
  timeout 150 python3 scripts/train_synthetic.py --out $M --eval-only --eval-prompts 16 --budgets 128,256,512,1024 \
    --policies lessismore,lessismore_norecency,recency --parallel 7 \
    --engine '{"enforce_eager": true, "gpu_memory_utilization": 0.03, "kv_cache_memory_bytes": 1073741824}'
} > "$OUT/synthetic.log" 2>&1
for stage in $M-1 $M-2; do cp $stage/training.json "$OUT/$(basename $stage)-training.json" 2>/dev/null; done
tar -C /tmp -cf "$OUT/pointer-chase.tar" pointer-chase 2>/dev/null
if [ "$SOAK" = 1 ]; then wait $SOAK_PID; echo "soak exit $?" >> "$OUT/soak.log"; fi
[ -f "$OUT/soak.server.log" ] && { tail -c 300000 "$OUT/soak.server.log" > "$OUT/soak.server.tail.log"; rm -f "$OUT/soak.server.log"; }
[ -f "$OUT/soak.log" ] && { tail -c 20000 "$OUT/soak.log" > "$OUT/soak.tail.log"; rm -f "$OUT/soak.log"; }
ls -la "$OUT"
