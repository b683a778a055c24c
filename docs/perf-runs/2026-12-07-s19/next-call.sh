#!/bin/bash
# Prepared for the next GPU session (not run): main's block-scan ordered compaction back in the landed kernel
# (ordered-compact.diff), A/B'd where the ordered path runs (budget 2560: mid 1920) and at 2048; the ranking GPU
# tests; what timed out this session (replay tests, phase clocks, the first pass's atomics probe), with the builds
# started first. Setup (repository root): mkdir -p .gpu/old && cp csrc/rank_keys.cu .gpu/old/rank_keys_landed.cu &&
# git apply docs/perf-runs/2026-12-07-s19/ordered-compact.diff; carry [".gpu/parts", ".gpu/old"]; after staging:
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $OUT/env.txt
python3 -c "from lessismore_vllm.kernels import cuda_ext; cuda_ext.rank_from_logits_launcher()" > $OUT/build.txt 2>&1 &
python3 -c "
from pathlib import Path; from torch.utils.cpp_extension import load
load(name='lessismore_rank_keys_kept_phases', sources=['csrc/rank_keys.cu'],
     extra_cuda_cflags=['-O3', '--use_fast_math', '-lineinfo', '-DLESSISMORE_PHASE_CLOCKS'])" >> $OUT/build.txt 2>&1 &
wait
for b in 2560 2048; do
  RANK_AB_BUDGET=$b timeout 240 python3 docs/perf-runs/2026-11-27/rank_ab.py landed 1x16384,32x16384 > $OUT/rank_ab_$b.txt 2>&1
done
(cd tests && timeout 150 python3 -m pytest -q gpu/test_kernels_gpu.py -k "rank_keys_from_logits or replay" > $OUT/pytest.txt 2>&1)
timeout 150 python3 docs/perf-runs/2026-12-07-s19/kept_phases.py 1x16384,32x16384 > $OUT/kept_phases.txt 2>&1
tail -3 $OUT/pytest.txt; cat $OUT/rank_ab_*.txt $OUT/kept_phases.txt
