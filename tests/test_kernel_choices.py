"""The GPU choices read from the environment: how a selection layer attends (LESSISMORE_SELECTION_PASS), where the
selection ranks (LESSISMORE_SELECTION_STREAM), whose top-k ranks each head (LESSISMORE_SELECTION_TOPK), which sort
puts it into rank order (LESSISMORE_RANK_KERNEL), which split kernel the sparse layers launch
(LESSISMORE_SPARSE_KERNEL), which vLLM backend does the dense work (LESSISMORE_DENSE_BACKEND). A bad value names the
variable and the valid values; on a machine without CUDA the top-k is the Triton radix select and the rank sort
Triton's (the kernels themselves: tests/gpu and the interpreter tests)."""

import types

import pytest
import torch

from lessismore_vllm import backend, compat
from lessismore_vllm.kernels import cuda_ext, selection


@pytest.mark.parametrize("choose,default,spelled,value,bad,message", [
    (backend.selection_pass, "fused", " Dense-Backend", "dense-backend", "both",
     "LESSISMORE_SELECTION_PASS='both' is invalid: valid values are fused, dense-backend"),
    (backend.selection_stream, "side", " Main", "main", "async",
     "LESSISMORE_SELECTION_STREAM='async' is invalid: valid values are side, main"),
    (cuda_ext.chosen_kernel, "triton", "CUDA ", "cuda", "fast",
     "LESSISMORE_SPARSE_KERNEL='fast' is invalid: valid values are triton, cuda"),
    (cuda_ext.rank_kernel_asked, "auto", " Triton", "triton", "cub",
     "LESSISMORE_RANK_KERNEL='cub' is invalid: valid values are auto, triton"),
])
def test_choice_default_spelling_and_bad_value(monkeypatch, choose, default, spelled, value, bad, message):
    env = message.split("=")[0]
    monkeypatch.delenv(env, raising=False)
    assert choose() == default
    monkeypatch.setenv(env, spelled)
    assert choose() == value
    monkeypatch.setenv(env, bad)
    with pytest.raises(ValueError, match=message):
        choose()


@pytest.mark.parametrize("asked,tp_size,tracing,micro_batched,want", [
    ("side", 1, False, False, "side"),  # the default where nothing forbids it
    ("main", 1, False, False, "main"),
    ("side", 2, False, False, "main"),  # tensor parallelism: the rank keys' all-reduce runs in line
    ("side", 1, True, False, "main"),  # LESSISMORE_TRACE reads the selection in line
    ("side", 1, False, True, "main"),  # dual batch overlap: two micro-batches share the layers
])
def test_selection_stream_falls_back_in_line_where_the_side_stream_is_unsafe(asked, tp_size, tracing,
                                                                              micro_batched, want):
    assert backend.effective_selection_stream(asked, tp_size, tracing, micro_batched) == want


def test_micro_batched_reads_vllms_dual_batch_overlap_flag():
    from vllm.config import ParallelConfig

    for dbo in (False, True):
        cfg = types.SimpleNamespace(parallel_config=ParallelConfig(enable_dbo=dbo))
        assert compat.micro_batched(cfg) is dbo
    assert compat.micro_batched(types.SimpleNamespace(parallel_config=object())) is False  # a vLLM without DBO


@pytest.mark.skipif(torch.cuda.is_available(), reason="on CUDA the valid values return vLLM backend classes")
def test_dense_backend_bad_value_fails_on_every_platform(monkeypatch):
    """A misspelt LESSISMORE_DENSE_BACKEND used to mean TRITON_ATTN silently; now it fails naming the valid values,
    here on CPU too (where no dense backend is wrapped, so valid values give None)."""
    for valid in (None, "auto", "Flash_Attn", "TRITON_ATTN "):
        if valid is None:
            monkeypatch.delenv("LESSISMORE_DENSE_BACKEND", raising=False)
        else:
            monkeypatch.setenv("LESSISMORE_DENSE_BACKEND", valid)
        assert compat.dense_backend_cls() is None
    monkeypatch.setenv("LESSISMORE_DENSE_BACKEND", "FLASHINFER")
    with pytest.raises(ValueError, match="LESSISMORE_DENSE_BACKEND='flashinfer' is invalid: valid values are auto, "
                                         "flash_attn, triton_attn"):
        compat.dense_backend_cls()


@pytest.fixture
def fresh_top_k_choice():
    selection._flashinfer_top_k.cache_clear()  # the choice is made once per process
    yield
    selection._flashinfer_top_k.cache_clear()


def test_selection_top_k_choice_and_bad_value(monkeypatch, fresh_top_k_choice):
    monkeypatch.setenv(selection.TOPK_ENV, "triton")
    assert selection.top_k_choice() == "triton"
    selection._flashinfer_top_k.cache_clear()
    monkeypatch.setenv(selection.TOPK_ENV, "auto")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the interpreter has no FlashInfer kernels
    assert selection.top_k_choice() == "triton"
    selection._flashinfer_top_k.cache_clear()
    monkeypatch.setenv(selection.TOPK_ENV, "fastest")
    with pytest.raises(ValueError, match="LESSISMORE_SELECTION_TOPK='fastest' is invalid: valid values are auto, "
                                         "flashinfer, triton"):
        selection.top_k_choice()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where CUDA tensors cannot be made")
def test_flashinfer_top_k_that_cannot_run_falls_back_to_the_radix_kernels(monkeypatch, fresh_top_k_choice, caplog):
    """FlashInfer builds its kernel on first use; where that first call fails (here: no CUDA device behind a
    CUDA-looking setup), the choice is the radix select and the reason is logged, instead of a failing engine."""
    import sys

    calls = []
    fake = types.SimpleNamespace(top_k_ragged_transform=lambda *a, **k: calls.append(a),
                                 TopKTieBreak=types.SimpleNamespace(SMALL=1))
    monkeypatch.setitem(sys.modules, "flashinfer", fake)
    monkeypatch.setenv(selection.TOPK_ENV, "auto")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level("WARNING", logger="vllm.lessismore"):
        assert selection.top_k_choice() == "triton"
    assert "FlashInfer's top-k cannot run here" in caplog.text
    assert not calls, "the probe failed before reaching FlashInfer (no CUDA tensors on this machine)"


def test_fused_top_k_is_the_default_where_csrc_builds(monkeypatch):
    """LESSISMORE_SELECTION_TOPK=auto takes csrc/rank_keys.cu's top-k + rank keys where it built (it then also
    does the rank sort); flashinfer and triton skip it; without it, FlashInfer's top-k or the radix kernels."""
    built = object()
    monkeypatch.setattr(cuda_ext, "rank_from_logits_launcher", lambda: built)  # as if csrc/rank_keys.cu had built
    monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: None)
    monkeypatch.setenv(selection.TOPK_ENV, "auto")
    assert selection._fused_rank_keys() is built
    assert selection.top_k_choice() == "cuda" and selection.rank_sort_choice() == "cuda"
    for asked in ("flashinfer", "triton"):
        monkeypatch.setenv(selection.TOPK_ENV, asked)
        assert selection._fused_rank_keys() is None and selection.top_k_choice() == "triton"
    monkeypatch.setenv(selection.TOPK_ENV, "auto")
    monkeypatch.setattr(cuda_ext, "rank_from_logits_launcher", lambda: None)
    assert selection.top_k_choice() == "triton"


def test_rank_sort_is_cuda_only_after_an_ascending_flashinfer_top_k(monkeypatch):
    """csrc/rank_keys.cu follows FlashInfer's top-k only where its lists come in ascending position order (probed
    at startup: the CUDA sort breaks ties by input order); otherwise, and without FlashInfer, the Triton sort."""
    built = object()
    monkeypatch.setattr(cuda_ext, "rank_keys_launcher", lambda: built)  # as if csrc/rank_keys.cu had built
    monkeypatch.setattr(selection, "_fused_rank_keys", lambda: None)  # as with LESSISMORE_SELECTION_TOPK=flashinfer

    def stand_in(logits, ranges, mid):
        raise AssertionError("not called here")

    monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: None)
    assert selection._cuda_rank_keys() is None and selection.rank_sort_choice() == "triton"
    monkeypatch.setattr(selection, "_flashinfer_top_k", lambda: stand_in)
    assert selection._cuda_rank_keys() is None  # no probe result: not known to be ascending
    stand_in.ascending = False
    assert selection._cuda_rank_keys() is None
    stand_in.ascending = True
    assert selection._cuda_rank_keys() is built and selection.rank_sort_choice() == "cuda"
    monkeypatch.setenv(cuda_ext.RANK_ENV, "cub")
    with pytest.raises(ValueError, match="LESSISMORE_RANK_KERNEL='cub' is invalid"):
        selection.rank_sort_choice()
