"""The Triton kernels on CPU through Triton's interpreter (small shapes); tests/gpu runs the same checks on CUDA."""

import pytest
import torch

from kernel_checks import check_select, check_sparse_decode

# On CPU, conftest.py turns on TRITON_INTERPRET before anything imports triton.

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (8, 2), (16, 2)])  # GQA 1 / 4 / 8
@pytest.mark.parametrize("head_dim", [64, 128])
def test_sparse_decode_gqa_head_dims(num_heads, num_kv_heads, head_dim):
    # budget below, equal to and above the context; a padded row (seq_len 0)
    check_sparse_decode([40, 24, 24, 0, 9, 70], num_heads, num_kv_heads, head_dim, budget=24,
                        dtype=torch.float32, device=DEVICE)


def test_sparse_decode_many_rows_and_splits():
    check_sparse_decode([(7 * i) % 90 for i in range(64)], 8, 2, 64, budget=32, dtype=torch.float32, device=DEVICE)


def test_sparse_decode_other_launch_shapes():
    """Tuning changes only the launch shape (block size in tokens, split count), never the result."""
    from lessismore_vllm.kernels import SparseDecodeTuning

    for tuning in (SparseDecodeTuning(block_n=16, max_splits=1), SparseDecodeTuning(block_n=32, target_programs=4096)):
        check_sparse_decode([70, 0, 33, 24], 8, 2, 64, budget=40, dtype=torch.float32, device=DEVICE, tuning=tuning)


def test_sparse_decode_rows_below_the_budget_use_every_split():
    """8 splits of a 128-token width: rows that attend fewer tokens (short contexts) divide their own count over the
    splits (37 tokens: 16 + 16 + 5 + five empty splits), which the combine must weigh correctly."""
    from lessismore_vllm.kernels import SparseDecodeTuning

    tuning = SparseDecodeTuning(block_n=16, max_splits=8, target_programs=4096)
    check_sparse_decode([100, 37, 0, 128, 200, 1], 8, 2, 64, budget=128, dtype=torch.float32, device=DEVICE,
                        tuning=tuning)


def test_sparse_decode_fp16():
    check_sparse_decode([50, 0, 33], 8, 2, 64, budget=32, dtype=torch.float16, device=DEVICE)


@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (8, 2), (16, 2)])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_select_matches_oracle(num_heads, num_kv_heads, head_dim):
    check_select([80, 0, 16, 15, 17, 130], num_heads, num_kv_heads, head_dim, budget=16, dtype=torch.float32,
                 device=DEVICE)


def test_select_ties_and_rows_longer_than_one_tile():
    """Radix select over several 1024-token tiles, and logits that tie (decided by position, as in the oracle)."""
    check_select([3000, 0, 2100, 700], 4, 2, 32, budget=1200, dtype=torch.float32, device=DEVICE, ties=True)
    check_select([2500, 1300], 8, 2, 32, budget=1024, dtype=torch.float32, device=DEVICE, recency_ratio=0.5,
                 sinks=0)


def test_select_programs_sharing_a_row_change_nothing(monkeypatch):
    """Fewer programs than tiles: each loops over several tiles (how large batches run); same selection."""
    from lessismore_vllm.kernels import selection

    monkeypatch.setattr(selection, "SELECT_TARGET_PROGRAMS", 2)
    monkeypatch.setattr(selection, "SELECT_TILE", 256)
    check_select([1500, 0, 900, 700], 4, 2, 32, budget=300, dtype=torch.float32, device=DEVICE, ties=True)


@pytest.mark.parametrize("recency_ratio", [0.0, 1.0])
def test_select_without_window_or_without_ranking(recency_ratio):
    """recency_ratio 0: every slot ranked (no sinks, no window); 1: sinks + recent window only."""
    check_select([80, 0, 16, 17, 130], 8, 2, 64, budget=16, dtype=torch.float32, device=DEVICE,
                 recency_ratio=recency_ratio)


def test_select_torch_fallback_matches_oracle():
    check_select([80, 0, 16, 15, 17, 130], 8, 2, 64, budget=16, dtype=torch.float32, device=DEVICE, method="torch")


@pytest.mark.parametrize("method", ["triton", "torch"])
def test_select_tensor_parallel_ranks_agree_with_one_device(method):
    from kernel_checks import check_select_tensor_parallel

    check_select_tensor_parallel([300, 0, 70, 12], 8, 4, 32, budget=40, device=DEVICE, method=method)
