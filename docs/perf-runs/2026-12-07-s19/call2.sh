#!/bin/bash
# Call 2 of 2026-12-07, seventh session: the replay tests (side stream, every top-k variant), bench_kernels.py's chain
# columns with engine-wide block tables, the first pass's atomics probe. Run from the repository root after staging.
(cd tests && timeout 240 python3 -m pytest -rA -v gpu/test_kernels_gpu.py -k "replay or rows_longer or (test_select and cuda and not fused and not splits and not tensor)" > $OUT/pytest_replay.txt 2>&1)
timeout 200 python3 scripts/bench_kernels.py --lengths 16384 --budgets 2048 --batches 1,8,32 --layers 4 --no-sweep \
  --no-flashinfer --table-tokens 40960 --out $OUT/bench_kernels > $OUT/bench_kernels.txt 2>&1
timeout 100 python3 docs/perf-runs/2026-12-07-s18/pass1_conflicts.py 1x16384,32x16384 > $OUT/pass1_conflicts.txt 2>&1
grep -E "passed|failed|PASSED|FAILED|ERROR" $OUT/pytest_replay.txt | tail -40; tail -8 $OUT/bench_kernels.txt; cat $OUT/pass1_conflicts.txt
