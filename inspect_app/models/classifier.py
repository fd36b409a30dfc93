"""Supervised defect classifier: a timm backbone with a fresh head and normalisation built in.

The model takes float images in [0, 1] (B, 3, H, W) and normalises them itself, so that the mean and std travel
with the weights and a CUDA pipeline can upload uint8 and convert on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from inspect_app.models.factory import create_backbone

if TYPE_CHECKING:

    class TimmClassifier(nn.Module):
        """What ``Classifier`` uses of a timm classification model: every timm model defines these two."""

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError

        def get_classifier(self) -> nn.Module:
            raise NotImplementedError


class Classifier(nn.Module):
    """Backbone + linear head over global-average-pooled features.

    Args:
        backbone: name for ``create_backbone``.
        num_classes: number of output classes.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        pretrained: load pretrained backbone weights.
        drop_rate: dropout before the head.
    """

    # Buffers, registered in __init__ (nn.Module's attribute lookup alone types them Tensor | Module).
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        pretrained: bool = True,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.net = cast(
            "TimmClassifier",
            create_backbone(backbone, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate),
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] images to the backbone's expected distribution."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for [0, 1] images."""
        return self.net(self.normalize(x))

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and class activation maps, in one pass.

        With global average pooling followed by a linear head, applying the head at every spatial position gives
        maps whose spatial mean equals the logits exactly (CAM), so the heatmap costs no extra backward pass.

        Returns:
            logits (B, K) and maps (B, K, h, w) at the backbone's output stride.
        """
        features = self.net.forward_features(self.normalize(x))
        head = self.net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise TypeError(f"class activation maps need a linear head, got {type(head).__name__}")
        maps = torch.einsum("bchw,kc->bkhw", features, head.weight) + head.bias.view(1, -1, 1, 1)
        logits = maps.mean(dim=(2, 3))
        return logits, maps


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (B, K, h, w) maps to (B, K, H, W)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
