"""PatchCore model: chunked nearest-neighbour distances, smoothing, stitching, bank save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspect_app.errors import CheckpointError
from inspect_app.models.anomaly import PatchCore, gaussian_blur, nearest_distances, stitch
from inspect_app.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from inspect_app.models.factory import IMAGENET_MEAN, IMAGENET_STD


def test_chunked_nearest_distances_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(37, 16, generator=gen)
    bank = torch.randn(101, 16, generator=gen)
    expected = torch.cdist(queries, bank).min(dim=1).values
    got = nearest_distances(queries, bank, bank_chunk=7)
    assert torch.allclose(got, expected, atol=1e-4)
    assert nearest_distances(bank[:5], bank).abs().max() < 1e-2


def test_excluded_bank_rows_are_ignored() -> None:
    gen = torch.Generator().manual_seed(1)
    queries = torch.randn(23, 8, generator=gen)
    bank = torch.randn(60, 8, generator=gen)
    exclude = torch.zeros(60, dtype=torch.bool)
    exclude[::3] = True
    expected = torch.cdist(queries, bank[~exclude]).min(dim=1).values
    assert torch.allclose(nearest_distances(queries, bank, bank_chunk=7, exclude=exclude), expected, atol=1e-4)
    # A query that is itself a bank row finds itself unless that row is excluded.
    own = torch.zeros(60, dtype=torch.bool)
    own[4] = True
    assert nearest_distances(bank[4:5], bank)[0] < 1e-2 < nearest_distances(bank[4:5], bank, exclude=own)[0]
    with pytest.raises(ValueError, match="every memory bank row is excluded"):
        nearest_distances(queries, bank, exclude=torch.ones(60, dtype=torch.bool))


def test_blur_keeps_a_flat_map_and_spreads_a_peak() -> None:
    flat = torch.full((1, 1, 20, 30), 3.0)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-5)
    peak = torch.zeros(1, 1, 21, 21)
    peak[0, 0, 10, 10] = 1.0
    out = gaussian_blur(peak, 2.0)
    assert out[0, 0, 10, 10] < 1.0 and out[0, 0, 10, 12] > 0.0
    assert int(out.argmax()) == 10 * 21 + 10
    assert gaussian_blur(peak, 0.0) is peak


def test_stitch_averages_overlaps() -> None:
    tiles = torch.stack([torch.full((4, 4), 1.0), torch.full((4, 4), 3.0)])
    out = stitch(tiles, [(0, 0), (0, 2)], (4, 6))
    assert torch.allclose(out[:, :2], torch.tensor(1.0))
    assert torch.allclose(out[:, 2:4], torch.tensor(2.0))
    assert torch.allclose(out[:, 4:], torch.tensor(3.0))


def test_bank_round_trips_through_safetensors(tmp_path: Path) -> None:
    model = PatchCore("efficientnet_lite0", IMAGENET_MEAN, IMAGENET_STD, pretrained=False)
    bank = torch.randn(57, model.feature_dim, generator=torch.Generator().manual_seed(3))
    model.set_bank(bank)
    card = ModelCard(
        name="pc", kind="patchcore", backbone="efficientnet_lite0", classes=("good", "anomaly"), input_size=64,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, train_config={"layers": [2, 3, 4], "neighbourhood": 3},
        anomaly={"raw_threshold": 2.0, "raw_center": 1.0},
    )
    save_checkpoint(tmp_path / "pc", model, card)
    loaded, loaded_card = load_checkpoint(tmp_path / "pc")
    assert isinstance(loaded, PatchCore) and loaded_card == card
    assert torch.equal(loaded.memory_bank, bank)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=1e-5)
        assert model(x).shape == (2, 64, 64)


def test_bank_of_another_layer_set_is_rejected(tmp_path: Path) -> None:
    model = PatchCore("efficientnet_lite0", IMAGENET_MEAN, IMAGENET_STD, layers=(2, 3, 4), pretrained=False)
    model.set_bank(torch.zeros(5, model.feature_dim))
    card = ModelCard(
        name="pc", kind="patchcore", backbone="efficientnet_lite0", classes=("good", "anomaly"), input_size=64,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, train_config={"layers": [2, 3], "neighbourhood": 3},
    )
    save_checkpoint(tmp_path / "pc", model, card)
    with pytest.raises(CheckpointError, match="memory_bank"):
        load_checkpoint(tmp_path / "pc")


def test_patch_scale_divides_each_position_and_survives_save_and_old_checkpoints(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from inspect_app.models.checkpoint import WEIGHTS_FILE

    model = PatchCore("efficientnet_lite0", IMAGENET_MEAN, IMAGENET_STD, pretrained=False)
    model.set_bank(torch.randn(40, model.feature_dim, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        plain = model.patch_scores(x)
        scale = torch.linspace(0.5, 2.0, plain[0].numel()).view(plain.shape[1:])
        model.set_patch_scale(scale)
        assert torch.allclose(model.patch_scores(x), plain / scale)
        assert torch.allclose(model.patch_distances(x), plain)
    card = ModelCard(
        name="pc", kind="patchcore", backbone="efficientnet_lite0", classes=("good", "anomaly"), input_size=64,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, train_config={"layers": [2, 3, 4], "neighbourhood": 3},
    )
    save_checkpoint(tmp_path / "pc", model, card)
    loaded, _ = load_checkpoint(tmp_path / "pc")
    assert torch.equal(loaded.patch_scale, scale)
    # A checkpoint written before the scale existed has no such tensor: it loads and scores unscaled, as it was fitted.
    weights = tmp_path / "pc" / WEIGHTS_FILE
    state = load_file(str(weights))
    del state["patch_scale"]
    save_file(state, str(weights))
    old, _ = load_checkpoint(tmp_path / "pc")
    assert old.patch_scale.numel() == 0
    with torch.inference_mode():
        assert torch.allclose(old.patch_scores(x), plain, atol=1e-5)
        model.set_patch_scale(torch.ones(3, 3))
        with pytest.raises(ValueError, match=r"\(8, 8\).*\(3, 3\)"):
            model.patch_scores(x)
    with pytest.raises(ValueError, match="positive"):
        model.set_patch_scale(torch.zeros(8, 8))
