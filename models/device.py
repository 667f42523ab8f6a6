"""Which torch device a model stage runs on, and the matching autocast."""
from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, ContextManager

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cuda", "cpu")
_warned: set[str] = set()


def resolve_device(choice: str, what: str = "model") -> torch.device:
    """`auto` → CUDA when available, else CPU with a warning; `cuda` without CUDA is an error."""
    import torch   # here, so that command-line parsing never imports torch

    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device cuda was asked for the {what}, but CUDA is not available")
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if what not in _warned:   # once per process, not once per worker thread or stage
            _warned.add(what)
            log.warning("CUDA is not available: the %s runs on CPU (slow)", what)
        return torch.device("cpu")
    return torch.device(choice)


def autocast(device: torch.device) -> ContextManager:
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); fp32 on CPU."""
    import torch

    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
