#!/bin/bash
# Call 1 of 2026-12-07, sixth session: the compaction variants A/B (rank_ab.py), the ranking's GPU tests, bucket_ab.py.
# Run from the repository root after staging the bundle; writes under $OUT.
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > $OUT/env.txt
python3 -c "import torch,triton,vllm;print(torch.__version__,triton.__version__,vllm.__version__)" >> $OUT/env.txt 2>/dev/null
git log -1 --format=%H >> $OUT/env.txt; git status --short >> $OUT/env.txt
python3 docs/perf-runs/2026-11-27/rank_ab.py main,warp 1x16384,8x16384,32x16384 > $OUT/compact_ab.txt 2>&1
(cd tests && timeout 150 python3 -m pytest -q gpu/test_kernels_gpu.py -k rank_keys_from_logits > $OUT/pytest_rank.txt 2>&1)
python3 docs/perf-runs/2026-12-07-s17/bucket_ab.py > $OUT/bucket_ab.txt 2>&1
tail -3 $OUT/pytest_rank.txt; cat $OUT/env.txt $OUT/compact_ab.txt $OUT/bucket_ab.txt
