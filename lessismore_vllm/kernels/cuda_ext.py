"""The CUDA fast paths in csrc/, built on first use with torch's extension tooling (nvcc + ninja, cached under
TORCH_EXTENSIONS_DIR), each used where it measured faster than its Triton counterpart, or when asked for:

- csrc/rank_keys.cu: the selection's ranking of each head. By default one kernel takes each head's logits to its
  top-mid, puts them in rank order (a counting sort into buckets; a CUB sort where equal logits crowd a bucket) and
  writes the rank keys (rank_keys_from_logits); with
  LESSISMORE_SELECTION_TOPK=flashinfer, FlashInfer's top-k runs first and rank_keys sorts its lists (a CUB block
  radix sort, 2.2-3.3x faster than the Triton bitonic sort on the H100, docs/performance.md).
  LESSISMORE_RANK_KERNEL = "auto" (default: CUDA where it builds, else Triton, the reason logged once) or
  "triton".
- csrc/sparse_decode.cu: the sparse-decode split phase, launched instead of the Triton split kernel when
  LESSISMORE_SPARSE_KERNEL = "cuda" (default "triton": it measured faster). The Triton combine kernel finishes
  both, so the two differ only in how they gather and reduce. Where the CUDA kernel cannot run (no nvcc, no csrc/
  next to the package, head_dim != 128, a GQA group other than 4 or 8, unaligned tensors), the Triton kernel runs
  and the reason is logged once."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

from lessismore_vllm.config import env_choice

logger = logging.getLogger("vllm.lessismore")

CSRC = Path(__file__).resolve().parents[2] / "csrc"
KERNEL_ENV = "LESSISMORE_SPARSE_KERNEL"
KERNELS = ("triton", "cuda")
SOURCE = CSRC / "sparse_decode.cu"
GROUPS = (4, 8)  # GQA groups instantiated in csrc/sparse_decode.cu
HEAD_DIM = 128
RANK_ENV = "LESSISMORE_RANK_KERNEL"
RANK_SOURCE = CSRC / "rank_keys.cu"
RANK_MAX_MID = 2048  # csrc/rank_keys.cu sorts up to 2048 entries per head (both kernels)

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


def _build(source: Path):
    """(module, None) built from one csrc/ file, named after it, or (None, why it cannot be built here)."""
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    if not source.exists():
        return None, f"{source} not found (csrc/ ships with the source tree, not the wheel)"
    try:
        from torch.utils.cpp_extension import load as build

        return build(name=f"lessismore_{source.stem}", sources=[str(source)],
                     extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo"], verbose=False), None
    except Exception as exc:  # no nvcc/ninja, or a compile error: keep serving with Triton
        return None, f"building {source.name} failed: {exc}"


def load():
    """The built sparse-decode extension module, or None (reason logged once). Builds at most once per process."""
    global _module, _tried
    if not _tried:
        _tried = True
        _module, reason = _build(SOURCE)
        if reason is not None:
            _report(reason)
    return _module


def rank_kernel_asked() -> str:
    """LESSISMORE_RANK_KERNEL: "auto" (default) or "triton"; a bad value names the variable and the valid values."""
    return env_choice(RANK_ENV, ("auto", "triton"), "auto")


@functools.cache
def _rank_module():
    """csrc/rank_keys.cu built, or None: not asked for (LESSISMORE_RANK_KERNEL=triton), Triton's interpreter, or it
    cannot be built here (the reason logged once). Decided once per process, at engine start
    (selection.top_k_choice, selection.rank_sort_choice)."""
    if rank_kernel_asked() == "triton" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    module, reason = _build(RANK_SOURCE)
    if module is None:
        logger.warning("LessIsMore: csrc/rank_keys.cu cannot run here (%s); the selection ranks each head with "
                       "FlashInfer's top-k and the Triton sort instead (slower selection layers)", reason)
    return module


def rank_keys_launcher():
    """csrc/rank_keys.cu's rank_keys(top, logits, seq_lens, keys, mid, budget, total_heads, head_offset): the rank
    keys of FlashInfer's per-head top lists; None where the module is not used (_rank_module)."""
    module = _rank_module()
    return None if module is None else module.rank_keys


def rank_from_logits_launcher():
    """csrc/rank_keys.cu's rank_keys_from_logits(logits, seq_lens, keys, mid, budget, sinks, recent, total_heads,
    head_offset, bucket_limit=48, keep=True): each head's top-mid and the rank keys in one kernel (bucket_limit and
    keep choose the kernel's ways for A/B runs; the defaults are the product's); None where the module is not used."""
    module = _rank_module()
    return None if module is None else module.rank_keys_from_logits


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
