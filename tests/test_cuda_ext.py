"""Choosing the csrc/ CUDA kernels (lessismore_vllm.kernels.cuda_ext) on a machine without them: an explicit
request fails clearly, the default never tries to build (the variable's parsing: tests/test_kernel_choices.py).
The kernels themselves are tested against the reference on GPUs
(tests/gpu/test_kernels_gpu.py::test_sparse_decode_csrc_kernel and ::test_rank_keys)."""

import pytest
import torch

from lessismore_vllm.kernels import cuda_ext, sparse_decode


def test_what_the_cuda_kernel_takes():
    kv = torch.zeros(4, 8, 16, 256, dtype=torch.bfloat16)
    assert cuda_ext.unsupported(torch.zeros(3, 32, 128, dtype=torch.bfloat16), kv) is None
    assert "head_dim 64" in cuda_ext.unsupported(torch.zeros(3, 32, 64, dtype=torch.bfloat16),
                                                 torch.zeros(4, 8, 16, 128, dtype=torch.bfloat16))
    assert "GQA group 16/8" in cuda_ext.unsupported(torch.zeros(3, 16, 128, dtype=torch.bfloat16), kv)
    assert "dtype" in cuda_ext.unsupported(torch.zeros(3, 32, 128), kv)
    assert "aligned" in cuda_ext.unsupported(torch.zeros(3, 32, 132, dtype=torch.bfloat16)[:, :, 2:130], kv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine-without-CUDA path")
def test_asking_for_cuda_without_it_fails_clearly_or_falls_back(monkeypatch):
    q = torch.zeros(1, 32, 128, dtype=torch.bfloat16)
    kv = torch.zeros(2, 8, 16, 256, dtype=torch.bfloat16)
    slots, counts = torch.zeros(1, 16, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    monkeypatch.setattr(cuda_ext, "_tried", False)
    monkeypatch.setattr(cuda_ext, "_module", None)
    with pytest.raises(RuntimeError, match="cannot run here: the extension did not build"):
        sparse_decode(q, kv, slots, counts, 0.1, torch.empty_like(q), kernel="cuda")
    with pytest.raises(ValueError, match="kernel='cutlass'"):
        sparse_decode(q, kv, slots, counts, 0.1, torch.empty_like(q), kernel="cutlass")
    # the environment's choice falls back to Triton (None = no CUDA launcher), with the reason logged once
    monkeypatch.setenv(cuda_ext.KERNEL_ENV, "cuda")
    assert cuda_ext.split_launcher(q, kv) is None
    assert any("no CUDA device" in r for r in cuda_ext._reported)


def test_startup_choice_names_the_kernel(monkeypatch):
    monkeypatch.delenv(cuda_ext.KERNEL_ENV, raising=False)
    assert cuda_ext.startup_choice(128, 4) == "triton"
    monkeypatch.setenv(cuda_ext.KERNEL_ENV, "cuda")
    monkeypatch.setattr(cuda_ext, "load", lambda: object())  # as if built
    assert cuda_ext.startup_choice(128, 4) == "cuda"
    assert cuda_ext.startup_choice(64, 4).startswith("triton (cuda asked for; built for head_dim 128")
    assert cuda_ext.startup_choice(128, 5).startswith("triton (cuda asked for")
    monkeypatch.setattr(cuda_ext, "load", lambda: None)
    assert cuda_ext.startup_choice(128, 4) == "triton (cuda asked for; not built, see the warning)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine-without-CUDA path")
def test_rank_keys_kernel_without_cuda_falls_back_with_the_reason(monkeypatch, caplog):
    """LESSISMORE_RANK_KERNEL=auto where csrc/rank_keys.cu cannot be built: neither of its kernels (the Triton
    sort after the top-k), the reason logged; =triton: the same without trying. (The kernels themselves:
    tests/gpu/test_kernels_gpu.py::test_rank_keys and ::test_rank_keys_from_logits.)"""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    try:
        cuda_ext._rank_module.cache_clear()
        monkeypatch.setenv(cuda_ext.RANK_ENV, "triton")
        with caplog.at_level("WARNING", logger="vllm.lessismore"):
            assert cuda_ext.rank_keys_launcher() is None and cuda_ext.rank_from_logits_launcher() is None
        assert "rank_keys.cu" not in caplog.text
        cuda_ext._rank_module.cache_clear()
        monkeypatch.setenv(cuda_ext.RANK_ENV, "auto")
        with caplog.at_level("WARNING", logger="vllm.lessismore"):
            assert cuda_ext.rank_keys_launcher() is None and cuda_ext.rank_from_logits_launcher() is None
        assert "csrc/rank_keys.cu cannot run here (no CUDA device)" in caplog.text
        assert caplog.text.count("cannot run here") == 1, "built (and reported) once per process"
    finally:
        cuda_ext._rank_module.cache_clear()
