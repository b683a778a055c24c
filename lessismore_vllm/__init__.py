"""LessIsMore: training-free token-sparse decode attention as a vLLM attention backend.

`import lessismore_vllm` registers the backend (so `attention_config={"backend": "lessismore"}` works);
vLLM also calls `register()` in every process through the `vllm.general_plugins` entry point.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"
__all__ = ["register", "__version__"]

logger = logging.getLogger("vllm.lessismore")
_registered = False


def _validate(vllm_config) -> None:
    from lessismore_vllm.validation import validate_engine_config

    validate_engine_config(vllm_config)


def register() -> None:
    """Idempotent; never raises (an unsupported vLLM is logged and left alone)."""
    global _registered
    if _registered:
        return
    try:
        from lessismore_vllm import compat

        if not compat.version_supported():
            logger.warning(
                "lessismore-vllm supports vLLM %s-%s, found %s: backend not registered",
                *(".".join(map(str, v)) for v in compat.SUPPORTED_VLLM), ".".join(map(str, compat.vllm_version())),
            )
            return
        compat.register_custom_backend()
        compat.patch_platform(_validate)
        _registered = True
    except Exception as e:  # a broken plugin must not take vLLM down with it
        logger.warning("lessismore-vllm: registration failed, backend unavailable: %r", e)


try:
    import vllm
except ImportError:  # the algorithm modules work without vLLM
    vllm = None
if vllm is not None:
    register()
