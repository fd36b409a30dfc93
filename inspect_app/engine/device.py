"""The compute device: CUDA when present and asked for, CPU otherwise; and uint8 batches as float input on it."""

from __future__ import annotations

import logging

import torch

from inspect_app.config.settings import DEVICES
from inspect_app.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA if available else CPU; ``cuda`` without CUDA is an error that says so."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


def to_input(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 batch → float [0, 1] on the device (conversion after the copy moves 4x fewer bytes)."""
    inputs = batch.to(device, non_blocking=True).float().div_(255.0)
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs
