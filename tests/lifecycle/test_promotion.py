"""Champion/challenger rules: escape rate at the operating point, per-class tolerance, ties; policy validation."""

from __future__ import annotations

import pytest

from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.errors import ConfigError
from inspect_app.lifecycle.promotion import judge_challenger

POLICY = PromotionPolicy(false_reject_rate=0.01, class_tolerance=0.05)


def figures(model: str, escape: float, auroc: float = 0.9, **detection: float) -> dict:
    return {"model": model, "escape_rate": escape, "auroc": auroc, "detection": detection}


def test_lower_escape_rate_wins() -> None:
    promoted, reason, deltas = judge_challenger(figures("new", 0.1, scratch=0.9, dent=0.9),
                                                figures("old", 0.2, scratch=0.8, dent=0.8), POLICY)
    assert promoted and "10.0% < champion 20.0%" in reason
    assert deltas == pytest.approx({"scratch": 0.1, "dent": 0.1})


def test_a_class_regression_beyond_tolerance_blocks_promotion_even_with_a_better_escape_rate() -> None:
    promoted, reason, _ = judge_challenger(figures("new", 0.05, scratch=1.0, dent=0.7),
                                           figures("old", 0.2, scratch=0.7, dent=0.8), POLICY)
    assert not promoted and "'dent'" in reason and "10.0%" in reason
    # Within the tolerance it passes.
    assert judge_challenger(figures("new", 0.05, scratch=1.0, dent=0.76),
                            figures("old", 0.2, scratch=0.7, dent=0.8), POLICY)[0]


def test_ties_go_to_ranking_quality_and_an_equal_model_stays_a_candidate() -> None:
    assert judge_challenger(figures("new", 0.0, 0.99, scratch=1.0), figures("old", 0.0, 0.95, scratch=1.0),
                            POLICY)[0]
    promoted, reason, _ = judge_challenger(figures("new", 0.0, 0.95, scratch=1.0),
                                           figures("old", 0.0, 0.95, scratch=1.0), POLICY)
    assert not promoted and "not better" in reason
    assert judge_challenger(figures("new", 0.3), None, POLICY)[0]  # the first model has nothing to beat


def test_policy_and_spec_reject_bad_values_by_name() -> None:
    with pytest.raises(ConfigError, match=r"false_reject_rate 1\.5"):
        PromotionPolicy(false_reject_rate=1.5)
    with pytest.raises(ConfigError, match="promotion option"):
        FinetuneSpec.from_dict({"promotion": {"frr": 0.1}})
    with pytest.raises(ConfigError, match="test_fraction"):
        FinetuneSpec(test_fraction=0.0)



@pytest.mark.slow
def test_a_good_only_champion_is_judged_on_anomaly_for_every_defect_class(tiny_sets, tmp_path) -> None:
    from inspect_app.data.folders import ClassFolderLayout
    from inspect_app.data.image_io import read_image
    from inspect_app.engine.anomaly import GoodOnlyData, fit_anomaly
    from inspect_app.engine.anomaly_config import AnomalyConfig, expected_label
    from inspect_app.engine.infer import Inspector
    from inspect_app.lifecycle.promotion import evaluate_model

    goods = tuple(sorted((tiny_sets["train"] / "good").iterdir()))
    # A threshold that rejects half the good parts: on 64 px toy parts that is what makes some scratches anomalies.
    config = AnomalyConfig(input_size=64, device="cpu", layers=(2, 3), holdout_fraction=0.25, false_reject_rate=0.5)
    model_dir = fit_anomaly(GoodOnlyData(goods), tmp_path / "pc", config, name="pc").model_dir
    items = list(ClassFolderLayout.scan(tiny_sets["test"]).items)
    figures = evaluate_model(model_dir, items, POLICY, device="cpu")
    answers = [p.label for p in Inspector(model_dir, device="cpu", heatmaps=False).predict(
        [read_image(path) for path, _ in items])]
    pairs = list(zip(answers, [label for _, label in items], strict=True))
    assert ("anomaly", "scratch") in pairs  # before, such a detection was never counted right ("anomaly" != "scratch")
    right = sum(answer == expected_label("patchcore", label) for answer, label in pairs)
    assert figures["accuracy"] == right / len(items) > sum(answer == label for answer, label in pairs) / len(items)
    assert expected_label("classifier", "scratch") == "scratch" and expected_label("patchcore", "good") == "good"
