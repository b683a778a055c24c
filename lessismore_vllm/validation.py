"""Front-end checks: run inside vLLM's config construction, so bad settings fail before engines start."""

from __future__ import annotations

import logging

from lessismore_vllm.config import LessIsMoreConfigError, from_vllm_config

logger = logging.getLogger("vllm.lessismore")


def unsupported_reasons(vllm_config) -> list[str]:
    """Setups LessIsMore cannot serve yet, each with what to do instead."""
    reasons = []
    mc, cc, pc = vllm_config.model_config, vllm_config.cache_config, vllm_config.parallel_config
    if str(getattr(cc, "cache_dtype", "auto")).startswith("fp8"):
        reasons.append(f"kv_cache_dtype={cc.cache_dtype} (use --kv-cache-dtype auto)")
    if getattr(vllm_config, "speculative_config", None) is not None:
        reasons.append("speculative decoding (drop --speculative-config)")
    if getattr(pc, "pipeline_parallel_size", 1) > 1:
        reasons.append(f"pipeline_parallel_size={pc.pipeline_parallel_size} (use 1)")
    if getattr(mc, "use_mla", False):
        reasons.append("MLA models")
    get_sw = getattr(mc, "get_sliding_window", None)
    if get_sw is not None and get_sw() is not None:
        reasons.append("sliding-window attention models")
    return reasons


def validate_engine_config(vllm_config) -> None:
    config = from_vllm_config(vllm_config)  # raises LessIsMoreConfigError naming the key
    reasons = unsupported_reasons(vllm_config)
    if reasons:
        raise LessIsMoreConfigError(
            "attention backend 'lessismore' does not support: " + "; ".join(reasons)
            + ". Use the default attention backend for this setup."
        )
    logger.debug("lessismore configuration resolved: %s", config.summary())
