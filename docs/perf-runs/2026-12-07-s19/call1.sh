#!/bin/bash
# Call 1 of 2026-12-07, seventh session: the ranking kernel's versions A/B (tree = rank_kept + whole compaction vs
# .gpu/old's whole (s18 diff), warp (s17 diff) and main), the ranking's GPU tests, the phase clocks with keep on/off.
# Run from the repository root after staging the bundle; writes under $OUT.
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $OUT/env.txt
python3 -c "import torch,triton,vllm;print(torch.__version__,triton.__version__,vllm.__version__)" >> $OUT/env.txt 2>/dev/null
git log -1 --format=%H >> $OUT/env.txt; git status --short >> $OUT/env.txt
timeout 330 python3 docs/perf-runs/2026-11-27/rank_ab.py main,warp,whole 1x16384,8x16384,32x16384,1x32768 > $OUT/rank_ab.txt 2>&1
(cd tests && timeout 120 python3 -m pytest -q gpu/test_kernels_gpu.py -k rank_keys_from_logits > $OUT/pytest_rank.txt 2>&1)
timeout 100 python3 docs/perf-runs/2026-12-07-s19/kept_phases.py 1x16384,32x16384 > $OUT/kept_phases.txt 2>&1
tail -3 $OUT/pytest_rank.txt; cat $OUT/env.txt $OUT/rank_ab.txt $OUT/kept_phases.txt
