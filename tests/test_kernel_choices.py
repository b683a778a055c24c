"""The selection layer's GPU choices read from the environment: how it attends (LESSISMORE_SELECTION_PASS) and
whose top-k ranks each head (LESSISMORE_SELECTION_TOPK). A bad value names the variable and the valid values; on a
machine without CUDA the top-k is the Triton radix select (the kernels themselves: tests/gpu and the interpreter
tests)."""

import pytest

from lessismore_vllm import backend
from lessismore_vllm.kernels import selection


def test_selection_pass_default_and_bad_value(monkeypatch):
    monkeypatch.delenv(backend.SELECTION_PASS_ENV, raising=False)
    assert backend.selection_pass() == "fused"
    monkeypatch.setenv(backend.SELECTION_PASS_ENV, " Dense-Backend")
    assert backend.selection_pass() == "dense-backend"
    monkeypatch.setenv(backend.SELECTION_PASS_ENV, "both")
    with pytest.raises(ValueError, match="LESSISMORE_SELECTION_PASS='both' is invalid: valid values are fused, "
                                         "dense-backend"):
        backend.selection_pass()


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
                                         "triton"):
        selection.top_k_choice()
