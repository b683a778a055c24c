#!/bin/bash
# Tensor parallelism on a 2-GPU host (issue 8), as run on the device (docs/tensor-parallel.md):
#   1. gpu_check.py --phase tp: budget >= context == FLASH_ATTN at TP=2 (CUDA graphs); both ranks select
#      identical sets (eager, traced; with CUDA graphs, the in-step LESSISMORE_TP_CHECK); TP=1 vs TP=2 first-step
#      sets. PARALLEL=n runs n engines at once (default 2), ONLY=name,name a subset of its engines,
#      TP_MODEL=qwen3-8b-shape uses the Qwen3-8B shape (dummy weights) instead of the small seeded model, CHECK=0
#      skips this step;
#   2. bench_e2e.py --tp 2: decode tokens/s, lessismore vs FLASH_ATTN, both at TP=2 (CUDA graphs), then torch-
#      profiler traces of 8 more decode steps per engine (PROFILE=0 skips them). BENCH=0 skips step 2.
# TP_ENGINE (JSON, LLM kwargs for the TP=2 engines) defaults to turning off vLLM's FlashInfer all-reduce + RMSNorm
# fusion: on the 2 x H200 host the tool lends, vLLM 0.26 picks its "mnnvl" backend and every compiled TP=2 engine,
# stock FLASH_ATTN included, dies with an illegal memory access in profile_run (eager engines, which do not
# compile the fusion, run). Each step runs under gpu_timeout.sh (stacks of anything that hangs, then kill).
# Writes $OUT/tp.json, $OUT/bench_e2e.json and $OUT/tp-check.tgz (all logs). One device call has 600 s: run
#   ONLY=lessismore_tp2_sparse_eager,lessismore_tp2_sparse_graphs BENCH=0 bash scripts/gpu_tp_check.sh
#   CHECK=0 BENCH_CONFIGS=16x32768 BENCH_S=420 bash scripts/gpu_tp_check.sh
# as two calls (with the command prefix of ../shared/gpu/README.md and the faulthandler hook of gpu_timeout.sh).
set -u
T=scripts/gpu_timeout.sh
TP_ENGINE=${TP_ENGINE:-'{"compilation_config": {"pass_config": {"fuse_allreduce_rms": false}}}'}
mkdir -p /tmp/tp/check /tmp/tp/bench
echo "TP_ENGINE=$TP_ENGINE" > /tmp/tp/setup.txt
[ "${CHECK:-1}" = 1 ] && $T "${CHECK_S:-330}" python3 scripts/gpu_check.py --phase tp --parallel "${PARALLEL:-2}" \
  --tp-engine "$TP_ENGINE" ${ONLY:+--only "$ONLY"} ${TP_MODEL:+--tp-model "$TP_MODEL"} --work /tmp/tp/check --out /tmp/tp/check \
  --engine-timeout $((${CHECK_S:-330} - 15)) > /tmp/tp/check.txt 2>&1
cp /tmp/tp/check/tp.json "$OUT/tp.json" 2>/dev/null
PROF=()
[ "${PROFILE:-1}" = 1 ] && PROF=(--profile /tmp/tp/profile)
[ "${BENCH:-1}" = 1 ] && $T "${BENCH_S:-300}" python3 scripts/bench_e2e.py --tp 2 --backends lessismore,FLASH_ATTN \
  --configs "${BENCH_CONFIGS:-8x32768,16x32768}" --engine "$TP_ENGINE" --out /tmp/tp/bench "${PROF[@]}" \
  > /tmp/tp/bench.txt 2>&1
cp /tmp/tp/bench/bench_e2e.json "$OUT/bench_e2e.json" 2>/dev/null
if [ -d /tmp/tp/profile ]; then  # summaries here; the traces themselves may be too large to come back
  find /tmp/tp/profile -name '*.json.gz' | sort | xargs -r python3 scripts/summarize_profile.py \
    > "$OUT/profile-summary.txt" 2>&1
fi
tar czf "$OUT/tp-check.tgz" --exclude='*.safetensors' --exclude='*.json.gz' -C /tmp tp
grep -h "RATIO\|ok in\|ERROR" /tmp/tp/*.txt
