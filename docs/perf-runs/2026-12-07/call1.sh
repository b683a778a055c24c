#!/bin/bash
# The device call planned on 2026-12-07 (it never ran: no machine could be started): GPU tests of
# cluster-rank-union.diff, the kernel A/B, then end to end at 1 x 16K in what is left of the call's 600 s.
# Before: `git apply docs/perf-runs/2026-12-07/cluster-rank-union.diff` and
# `mkdir -p .gpu/old && git show b32a02d:csrc/rank_keys.cu > .gpu/old/rank_keys_base.cu` (carry .gpu/parts and .gpu/old).
# Run from the repository root after the README's staging and install; writes under $OUT.
(nvidia-smi; python3 -c "import torch,triton,vllm;print(torch.__version__,triton.__version__,vllm.__version__)";
 nvcc --version | tail -2) > $OUT/env.txt 2>&1
python3 -c "from torch.utils.cpp_extension import load; load(name='lessismore_rank_keys_base',
  sources=['.gpu/old/rank_keys_base.cu'], extra_cuda_cflags=['-O3','--use_fast_math','-lineinfo'])" \
  > $OUT/base-build.txt 2>&1 &
G=gpu/test_kernels_gpu.py
(cd tests && timeout 170 python3 -m pytest -q $G::test_union_from_rank_keys $G::test_rank_keys_from_logits_split_heads \
  $G::test_select_rows_longer_than_the_cached_keys $G::test_rank_keys_from_logits $G::test_rank_keys_from_logits_all_equal \
  > $OUT/pytest.txt 2>&1)
tail -5 $OUT/pytest.txt
wait
timeout 140 python3 docs/perf-runs/2026-12-07/split_ab.py 1x16384,1x32768,2x16384,4x16384,8x16384,16x16384,32x32768 \
  > $OUT/split_ab.txt 2>&1
cat $OUT/split_ab.txt
left=$((${CALL_SECONDS:-575} - SECONDS))
echo "e2e gets ${left}s"
[ $left -lt 240 ] && exit 0  # two engines need ~250-300 s
timeout $left python3 scripts/bench_e2e.py --out $OUT --configs 1x16384 --backends lessismore,FLASH_ATTN --rounds 1 \
  --repeats 2 > $OUT/e2e.txt 2>&1
grep -a "RESULT\|ratio\|ms/step\|Error" $OUT/e2e.txt | tail -12
