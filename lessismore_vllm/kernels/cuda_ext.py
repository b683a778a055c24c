"""The CUDA fast path in csrc/: the sparse-decode split phase (csrc/sparse_decode.cu), built on first use with torch's
extension tooling (nvcc + ninja, cached under TORCH_EXTENSIONS_DIR) and launched instead of the Triton split kernel
when chosen. The Triton combine kernel finishes both, so the two differ only in how they gather and reduce.

Which split kernel runs: LESSISMORE_SPARSE_KERNEL = "triton" (default: it measured faster, docs/performance.md) or
"cuda". Where the CUDA kernel cannot run (no nvcc, no csrc/ next to the package, head_dim != 128, a GQA group other
than 4 or 8, unaligned tensors), the Triton kernel runs and the reason is logged once."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lessismore_vllm.config import env_choice

logger = logging.getLogger("vllm.lessismore")

KERNEL_ENV = "LESSISMORE_SPARSE_KERNEL"
KERNELS = ("triton", "cuda")
SOURCE = Path(__file__).resolve().parents[2] / "csrc" / "sparse_decode.cu"
GROUPS = (4, 8)  # GQA groups instantiated in csrc/sparse_decode.cu
HEAD_DIM = 128

_module = None
_tried = False
_reported: set[str] = set()


def chosen_kernel() -> str:
    """The split kernel asked for in the environment; a bad value names the variable and the valid values."""
    return env_choice(KERNEL_ENV, KERNELS, "triton")


def _report(reason: str) -> None:
    if reason not in _reported:
        _reported.add(reason)
        logger.warning("LessIsMore: %s=cuda asked, the Triton kernel runs instead: %s", KERNEL_ENV, reason)


def load():
    """The built extension module, or None (reason logged once). Builds at most once per process."""
    global _module, _tried
    if not _tried:
        _tried = True
        if not torch.cuda.is_available():
            _report("no CUDA device")
        elif not SOURCE.exists():
            _report(f"{SOURCE} not found (csrc/ ships with the source tree, not the wheel)")
        else:
            try:
                from torch.utils.cpp_extension import load as build

                _module = build(name="lessismore_csrc", sources=[str(SOURCE)],
                                extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo"], verbose=False)
            except Exception as exc:  # no nvcc/ninja, or a compile error: keep serving with Triton
                _report(f"building {SOURCE.name} failed: {exc}")
    return _module


def startup_choice(head_dim: int, group: int) -> str:
    """The split kernel a model's sparse layers will launch, for the startup log ("cuda" or "triton", with the
    reason when cuda was asked for but cannot run). Builds the extension if cuda is asked for."""
    if chosen_kernel() != "cuda":
        return "triton"
    if load() is None:
        return "triton (cuda asked for; not built, see the warning)"
    if head_dim != HEAD_DIM or group not in GROUPS:
        return f"triton (cuda asked for; built for head_dim {HEAD_DIM}, GQA groups {GROUPS})"
    return "cuda"


def unsupported(query: torch.Tensor, kv_cache: torch.Tensor) -> str | None:
    """Why the CUDA kernel cannot take these tensors (None if it can)."""
    num_heads, head_dim = query.shape[1], query.shape[2]
    group = num_heads // kv_cache.shape[1]
    if head_dim != HEAD_DIM or kv_cache.shape[3] != 2 * HEAD_DIM:
        return f"head_dim {head_dim} (built for {HEAD_DIM})"
    if group not in GROUPS or num_heads % kv_cache.shape[1]:
        return f"GQA group {num_heads}/{kv_cache.shape[1]} (built for {GROUPS})"
    if query.dtype not in (torch.bfloat16, torch.float16) or kv_cache.dtype != query.dtype:
        return f"dtype {query.dtype}/{kv_cache.dtype} (bf16 or fp16)"
    # 16-byte vector loads: every row start must be 16-byte aligned
    if query.stride(2) != 1 or kv_cache.stride(3) != 1:
        return "last dimension not contiguous"
    strides = (query.stride(0), query.stride(1), *kv_cache.stride()[:3])
    if any(s % 8 for s in strides) or query.data_ptr() % 16 or kv_cache.data_ptr() % 16:
        return "tensors not 16-byte aligned"
    return None


def split_launcher(query: torch.Tensor, kv_cache: torch.Tensor, kernel: str | None = None):
    """The CUDA split launcher for these tensors, or None for the Triton split kernel.
    kernel None: the environment's choice; where the CUDA kernel cannot run, None and the reason logged once.
    kernel "cuda": an error where it cannot run. kernel "triton": None."""
    required = kernel is not None
    if kernel is None:
        kernel = chosen_kernel()
    elif kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r}: must be one of {', '.join(KERNELS)}")
    if kernel == "triton":
        return None
    module = load()  # logs why once, when it cannot build
    reason = "the extension did not build (see the log)" if module is None else unsupported(query, kv_cache)
    if reason is None:
        return module.sparse_decode_split
    if required:
        raise RuntimeError(f"the csrc sparse-decode kernel cannot run here: {reason}")
    if module is not None:
        _report(reason)
    return None
