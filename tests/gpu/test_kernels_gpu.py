"""The kernel checks of tests/test_kernels_interpret.py at GPU sizes and dtypes (skipped without CUDA)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kernel_checks import check_select, check_sparse_decode  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def lens(batch, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    out = torch.randint(lo, hi, (batch,), generator=g).tolist()
    out[batch // 2] = 0  # a padded row
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(8, 8), (32, 8), (32, 4)])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("batch,budget", [(1, 256), (8, 512), (64, 256)])
def test_sparse_decode(dtype, num_heads, num_kv_heads, head_dim, batch, budget):
    check_sparse_decode(lens(batch, 1, 3 * budget, batch) if batch > 1 else [2 * budget], num_heads, num_kv_heads,
                        head_dim, budget, dtype, "cuda")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(8, 8), (32, 8), (32, 4)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("batch,budget", [(4, 128), (64, 64)])
def test_select(dtype, num_heads, num_kv_heads, head_dim, batch, budget):
    check_select(lens(batch, 1, 4 * budget, batch), num_heads, num_kv_heads, head_dim, budget, dtype, "cuda")
