"""The compute device and the uint8 → float input conversion that training and scoring share."""

from __future__ import annotations

import pytest
import torch

from inspect_app.engine.device import resolve_device, to_input
from inspect_app.errors import ConfigError


def test_uint8_batches_become_unit_floats_on_the_device() -> None:
    batch = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    out = to_input(batch, torch.device("cpu"))
    assert out.dtype == torch.float32 and torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    assert to_input(batch, torch.device("cpu"), channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_an_unknown_device_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="device 'tpu' is not one of auto, cpu, cuda"):
        resolve_device("tpu")
