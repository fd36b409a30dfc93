"""Metrics: checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from inspect_app.metrics import (
    classification_report,
    confusion_matrix,
    costliest_samples,
    escape_rate,
    misordered_pairs,
    roc_auc,
    roc_auc_interval,
    threshold_for_false_reject,
)


def test_confusion_matrix_counts() -> None:
    m = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + labels * 0.3, 1)  # rounding creates ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert roc_auc(labels, scores) == pytest.approx(pairwise)
    assert roc_auc([True, True], [0.1, 0.2]) is None


def test_threshold_meets_false_reject_target() -> None:
    good = np.linspace(0, 1, 100, endpoint=False)  # 0.00 .. 0.99
    t = threshold_for_false_reject(good, 0.05)
    assert (good >= t).mean() <= 0.05
    assert (good >= np.nextafter(good[-6], -np.inf)).mean() > 0.05  # lower would break the target
    assert escape_rate([0.5, 0.93, 0.97, 0.99], t) == pytest.approx(2 / 4)


def test_report_has_factory_figures() -> None:
    report = classification_report(
        y_true=[0, 0, 0, 1, 2], y_pred=[0, 0, 1, 1, 2], defect_scores=[0.1, 0.2, 0.7, 0.9, 0.8],
        classes=["good", "scratch", "crack"], good_class="good",
    )
    assert report["accuracy"] == pytest.approx(0.8)
    assert report["per_class"]["good"]["recall"] == pytest.approx(2 / 3)
    assert report["macro_recall"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert report["auroc_good_vs_defect"] == pytest.approx(1.0)
    assert report["operating_point"]["escape_rate"] == 0.0


def test_report_keeps_sorted_validation_scores_per_group() -> None:
    report = classification_report(
        y_true=[0, 1, 0, 2], y_pred=[0, 1, 1, 2], defect_scores=[0.3, 0.912345, 0.1, 0.8],
        classes=["good", "scratch", "crack"], good_class="good",
    )
    assert report["score_samples"] == {"good": [0.1, 0.3], "defect": [0.8, 0.9123]}
def test_roc_curve_runs_from_origin_to_one_and_matches_auc() -> None:
    from inspect_app.metrics import roc_curve

    labels = [False, False, True, True, True, False]
    scores = [0.1, 0.4, 0.35, 0.8, 0.8, 0.2]
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.isinf(thresholds[0])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))


def test_threshold_for_escape_rate_meets_the_target_with_fewest_false_rejects() -> None:
    from inspect_app.metrics import false_reject_rate, threshold_for_escape_rate

    defects = np.linspace(0.05, 0.95, 100)
    for target in (0.0, 0.05, 0.2):
        threshold = threshold_for_escape_rate(defects, target)
        assert escape_rate(defects, threshold) <= target
        # One step higher would let more defects escape than allowed.
        assert escape_rate(defects, np.nextafter(threshold, 1.0)) > target
    assert false_reject_rate([0.1, 0.5, 0.9], 0.5) == pytest.approx(2 / 3)
    assert false_reject_rate([], 0.5) is None
    with pytest.raises(ValueError, match=r"1\.5"):
        threshold_for_escape_rate(defects, 1.5)


def test_misordered_pairs_by_hand_and_sum_to_the_auroc_loss() -> None:
    labels = [True, True, False, False, False]
    scores = [0.9, 0.3, 0.5, 0.1, 0.3]
    # Defect 0.3: good 0.5 above it, good 0.3 tied (half). Good 0.5: defect 0.3 below it. Good 0.3: the tie.
    assert misordered_pairs(labels, scores).tolist() == [0.0, 1.5, 1.0, 0.0, 0.5]
    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + labels * 0.4, 2)
    pairs = misordered_pairs(labels, scores)
    loss = (1.0 - roc_auc(labels, scores)) * labels.sum() * (~labels).sum()
    assert pairs[labels].sum() == pytest.approx(loss) and pairs[~labels].sum() == pytest.approx(loss)


def test_costliest_samples_name_the_parts_that_cost_the_most() -> None:
    labels = [False] * 4 + [True] * 4
    scores = [0.1, 0.2, 0.95, 0.3, 0.9, 0.8, 0.25, 0.99]
    names = [f"g{i}" for i in range(4)] + [f"d{i}" for i in range(4)]
    worst = costliest_samples(labels, scores, names, count=2)
    # g2 (0.95) outranks three defects; d2 (0.25) sits below g3 (0.3) and g2.
    assert [(e["name"], e["misordered"]) for e in worst["good"]] == [("g2", 3.0), ("g3", 1.0)]
    assert [(e["name"], e["misordered"]) for e in worst["defect"]] == [("d2", 2.0), ("d0", 1.0)]
    assert worst["good"][0]["auroc_cost"] == pytest.approx(3 / 16)
    assert costliest_samples([False, True], [0.1, 0.9], ["g", "d"]) == {"good": [], "defect": []}
    with pytest.raises(ValueError, match="3 names for 2 scores"):
        costliest_samples([False, True], [0.1, 0.9], ["a", "b", "c"])


def test_roc_auc_interval_brackets_the_figure_and_narrows_with_more_parts() -> None:
    rng = np.random.default_rng(2)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.random(n) < 0.5
        return labels, rng.normal(size=n) + 1.5 * labels

    small, large = sample(100), sample(2000)
    low_s, high_s = roc_auc_interval(*small)
    low_l, high_l = roc_auc_interval(*large)
    assert low_s <= roc_auc(*small) <= high_s and low_l <= roc_auc(*large) <= high_l
    assert high_l - low_l < 0.5 * (high_s - low_s)
    assert roc_auc_interval(*small, seed=3) == roc_auc_interval(*small, seed=3)
    assert roc_auc_interval([False, True, True], [0.1, 0.8, 0.9]) == (1.0, 1.0)
    assert roc_auc_interval([True, True], [0.1, 0.2]) is None
    with pytest.raises(ValueError, match=r"interval level 1\.5"):
        roc_auc_interval(*small, level=1.5)


GOOD = [0.1, 0.2, 0.3, 0.6]
DEFECT = [0.4, 0.7, 0.9]


def test_rates_at_threshold() -> None:
    from inspect_app.metrics import rates_at

    expected = {"threshold": 0.5, "false_reject_rate": 0.25, "escape_rate": pytest.approx(1 / 3)}
    assert rates_at(GOOD, DEFECT, 0.5) == expected
    assert rates_at(GOOD, DEFECT, 0.0)["false_reject_rate"] == 1.0 and rates_at(GOOD, DEFECT, 1.0)["escape_rate"] == 1.0
    # A score equal to the threshold is NG: the defect at 0.4 is caught, the good part at 0.6 rejected.
    assert rates_at(GOOD, DEFECT, 0.4)["escape_rate"] == 0.0
    assert rates_at(GOOD, DEFECT, 0.6)["false_reject_rate"] == 0.25
    with pytest.raises(ValueError, match="at least one good and one defect"):
        rates_at([], DEFECT, 0.5)


def test_tradeoff_is_monotone_and_agrees_with_rates_at() -> None:
    import itertools

    from inspect_app.metrics import rates_at, threshold_tradeoff

    curve = threshold_tradeoff(GOOD, DEFECT, steps=11)
    assert len(curve) == 11 and curve[0]["threshold"] == 0.0 and curve[-1]["threshold"] == 1.0
    assert all(a["false_reject_rate"] >= b["false_reject_rate"] for a, b in itertools.pairwise(curve))
    assert all(a["escape_rate"] <= b["escape_rate"] for a, b in itertools.pairwise(curve))
    for point in curve:
        assert point == pytest.approx(rates_at(GOOD, DEFECT, point["threshold"]))
    with pytest.raises(ValueError, match="steps 1"):
        threshold_tradeoff(GOOD, DEFECT, steps=1)


def test_good_defect_roc_corners_and_area() -> None:
    from inspect_app.metrics import good_defect_roc

    fpr, tpr, _ = good_defect_roc(GOOD, DEFECT)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # 11 of the 12 (good, defect) pairs are ordered correctly (0.6 > 0.4 is the only miss).
    assert np.trapezoid(tpr, fpr) == pytest.approx(11 / 12)


def test_engine_metrics_is_the_same_module_as_the_torch_free_one() -> None:
    import inspect_app.engine.metrics as engine_metrics
    import inspect_app.metrics as shared

    assert engine_metrics.roc_curve is shared.roc_curve and engine_metrics.roc_auc is shared.roc_auc


def test_roc_and_auroc_match_scikit_learn_on_tied_scores() -> None:
    """Dev cross-check against an independent implementation (skipped where scikit-learn is not installed)."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from inspect_app.metrics import roc_curve

    rng = np.random.default_rng(7)
    labels = rng.random(400) < 0.3
    # Rounded scores: many ties, as model cards store them (4 decimals) and harder on both implementations.
    scores = np.round(np.where(labels, rng.normal(0.6, 0.2, 400), rng.normal(0.4, 0.2, 400)), 2)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    ref_fpr, ref_tpr, ref_thresholds = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])
    assert roc_auc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))
