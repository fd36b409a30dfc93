"""Classification and factory metrics computed with numpy: confusion matrix, recall, ROC curve and AUC (with a
bootstrap interval and the samples that cost the most of it), escape and false-reject rates.

Torch-free, so that both ``engine`` (training, model cards) and the dashboard (which never loads torch) use the same
figures; ``engine.metrics`` re-exports it.

Factory vocabulary: a *false reject* is a good part called NG (scrap, rework); an *escape* is a defective part called
good (it reaches the customer). Plants fix the false-reject rate they can afford and watch the escape rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

# Decimals kept of each validation score in a model card; 4 keep the ROC exact to 1e-4 and the card small.
SCORE_SAMPLE_DECIMALS = 4

# What the functions here take: a plain sequence or a 1-D numpy array (each is read with np.asarray).
Scores: TypeAlias = Sequence[float] | np.ndarray
Flags: TypeAlias = Sequence[bool] | np.ndarray
Indices: TypeAlias = Sequence[int] | np.ndarray


def confusion_matrix(y_true: Indices, y_pred: Indices, num_classes: int) -> np.ndarray:
    """Counts with true classes on rows and predicted classes on columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1}


def roc_auc(is_positive: Flags, scores: Scores) -> float | None:
    """Area under the ROC curve by the rank statistic (ties count half); ``None`` when one class is absent."""
    labels = np.asarray(is_positive, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    # Average ranks over ties so that equal scores contribute one half.
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_per_class(labels: Sequence[str], scores: Scores, good_class: str) -> dict[str, float | None]:
    """Good-vs-defect AUROC of each defect class on its own: that class's parts against every good part.

    Args:
        labels: true class name per sample.
        scores: per-sample defect score (higher = more likely defective).
        good_class: name of the defect-free class.
    """
    names = np.asarray(labels)
    values = np.asarray(scores, dtype=np.float64)
    good = values[names == good_class]
    out: dict[str, float | None] = {}
    for label in sorted(set(names.tolist()) - {good_class}):
        picked = values[names == label]
        out[label] = roc_auc(np.concatenate([np.zeros(good.size, bool), np.ones(picked.size, bool)]),
                             np.concatenate([good, picked]))
    return out


def roc_auc_interval(
    is_positive: Flags, scores: Scores, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float] | None:
    """Bootstrap percentile interval of ``roc_auc``: how far the figure could move on another sample of parts.

    Positives and negatives are resampled separately, so every resample keeps the test set's class counts. A test
    set of a few hundred parts moves AUROC by several thousandths, which is the size of most recipe differences.

    Args:
        is_positive: true class per sample (True = defective).
        scores: per-sample score (higher = more likely defective).
        level: coverage of the interval, in (0, 1).
        resamples: bootstrap resamples.
        seed: random seed (the same inputs give the same interval).

    Returns:
        (low, high), or ``None`` when one class is absent.

    Raises:
        ValueError: ``level`` or ``resamples`` out of range (named).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level {level!r} must be in (0, 1)")
    if resamples < 10:
        raise ValueError(f"resamples {resamples!r} must be at least 10")
    labels = np.asarray(is_positive, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    pos, neg = values[labels], values[~labels]
    if pos.size == 0 or neg.size == 0:
        return None
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.ones(pos.size, bool), np.zeros(neg.size, bool)])
    draws = [
        roc_auc(truth, np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)]))
        for _ in range(resamples)
    ]
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(np.asarray(draws, dtype=np.float64), [tail, 100.0 - tail])
    return float(low), float(high)


def misordered_pairs(is_positive: Flags, scores: Scores) -> np.ndarray:
    """Per sample, how many samples of the other class it is ranked wrongly against (ties count half).

    A defect counts the good parts scored above it; a good part counts the defects scored below it. Each side sums
    to ``(1 - AUROC) * positives * negatives``, so the largest counts name the parts that cost the most AUROC: a
    mislabelled image, or a good part unlike every good part the model has seen.
    """
    labels = np.asarray(is_positive, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(values[labels]), np.sort(values[~labels])
    out = np.zeros(values.size, dtype=np.float64)
    # Goods strictly above a defect, plus half of the tied ones; defects strictly below a good, plus half the ties.
    below, not_above = (np.searchsorted(neg, values[labels], side=side) for side in ("left", "right"))
    out[labels] = (neg.size - not_above) + 0.5 * (not_above - below)
    below, not_above = (np.searchsorted(pos, values[~labels], side=side) for side in ("left", "right"))
    out[~labels] = below + 0.5 * (not_above - below)
    return out


def costliest_samples(
    is_positive: Flags, scores: Scores, names: Sequence[str], count: int = 5
) -> dict[str, list[dict[str, Any]]]:
    """The good parts and the defects that cost the most AUROC (see ``misordered_pairs``), worst first.

    Returns:
        ``{"good": [...], "defect": [...]}``; each entry has ``name``, ``score``, ``misordered`` (pairs) and
        ``auroc_cost`` (the AUROC that would be gained if this sample alone were ranked right). Samples that cost
        nothing are left out.
    """
    labels = np.asarray(is_positive, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    if len(names) != values.size:
        raise ValueError(f"{len(names)} names for {values.size} scores; they must match")
    pairs = misordered_pairs(labels, values)
    total = max(int(labels.sum()) * int((~labels).sum()), 1)
    out: dict[str, list[dict[str, Any]]] = {}
    for side, mask in (("good", ~labels), ("defect", labels)):
        picked = [int(i) for i in np.flatnonzero(mask)[np.argsort(-pairs[mask], kind="stable")][:count]]
        out[side] = [
            {"name": str(names[i]), "score": float(values[i]), "misordered": float(pairs[i]),
             "auroc_cost": float(pairs[i] / total)}
            for i in picked if pairs[i] > 0
        ]
    return out


def threshold_for_false_reject(good_scores: Scores, false_reject_rate: float) -> float:
    """Lowest threshold (NG when score >= threshold) whose false-reject rate on good parts is ≤ the target."""
    good = np.sort(np.asarray(good_scores, dtype=np.float64))
    if good.size == 0:
        raise ValueError("threshold_for_false_reject needs at least one good score")
    if not 0.0 <= false_reject_rate < 1.0:
        raise ValueError(f"false_reject_rate {false_reject_rate!r} must lie in [0, 1)")
    allowed = int(np.floor(false_reject_rate * good.size))
    # Rejecting at most `allowed` good parts: the threshold sits just above the (allowed+1)-th highest good score.
    return float(np.nextafter(good[good.size - 1 - allowed], np.inf))


def threshold_for_escape_rate(defect_scores: Scores, target_escape_rate: float) -> float:
    """Highest threshold (NG when score >= threshold) whose escape rate on defective parts is ≤ the target.

    The highest such threshold rejects the fewest good parts while letting at most the target share of defects pass.
    """
    defects = np.sort(np.asarray(defect_scores, dtype=np.float64))
    if defects.size == 0:
        raise ValueError("threshold_for_escape_rate needs at least one defect score")
    if not 0.0 <= target_escape_rate < 1.0:
        raise ValueError(f"target_escape_rate {target_escape_rate!r} must lie in [0, 1)")
    allowed = int(np.floor(target_escape_rate * defects.size))
    # Letting `allowed` defects escape: the threshold is the (allowed+1)-th lowest defect score, which is still NG.
    return float(defects[allowed])


def escape_rate(defect_scores: Scores, threshold: float) -> float | None:
    """Share of defective parts scored below the threshold (called good); ``None`` without defects."""
    defects = np.asarray(defect_scores, dtype=np.float64)
    if defects.size == 0:
        return None
    return float((defects < threshold).mean())


def classification_report(
    y_true: Indices,
    y_pred: Indices,
    defect_scores: Scores,
    classes: Sequence[str],
    good_class: str,
    false_reject_rate: float = 0.01,
) -> dict[str, Any]:
    """All metrics a model card and the dashboard show, as plain JSON-able values.

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        defect_scores: per-image defect score (higher = more likely defective).
        classes: class names in index order.
        good_class: name of the defect-free class (may be absent from ``classes``).
        false_reject_rate: operating point for the escape rate.
    """
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    scores = per_class_scores(matrix)
    total = int(matrix.sum())
    present = matrix.sum(axis=1) > 0
    report: dict[str, Any] = {
        "images": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "macro_recall": float(scores["recall"][present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(matrix[i].sum()),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
    }
    if good_class in classes:
        good_index = classes.index(good_class)
        truth = np.asarray(y_true)
        values = np.asarray(defect_scores, dtype=np.float64)
        is_defect = truth != good_index
        report["auroc_good_vs_defect"] = roc_auc(is_defect, values)
        # The validation scores themselves (rounded, sorted): the dashboard draws the ROC curve and the threshold
        # tuner from them and compares production score distributions against them for drift.
        report["score_samples"] = {
            "good": sorted(round(float(v), SCORE_SAMPLE_DECIMALS) for v in values[~is_defect]),
            "defect": sorted(round(float(v), SCORE_SAMPLE_DECIMALS) for v in values[is_defect]),
        }
        if (~is_defect).any():
            threshold = threshold_for_false_reject(values[~is_defect], false_reject_rate)
            report["operating_point"] = {
                "false_reject_rate": false_reject_rate,
                "threshold": threshold,
                "escape_rate": escape_rate(values[is_defect], threshold),
            }
    return report


def roc_curve(is_positive: Flags, scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (NG when score >= threshold), from (0,0) to (1,1).

    Returns:
        (fpr, tpr, thresholds), the thresholds descending (the first is +inf: nothing called positive).
    """
    labels = np.asarray(is_positive, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_curve needs both positive and negative examples")
    order = np.argsort(-values, kind="mergesort")
    sorted_values, sorted_labels = values[order], labels[order]
    # Only the last index of each run of equal scores is a reachable operating point.
    last_of_run = np.r_[np.diff(sorted_values) != 0, True]
    tps = np.cumsum(sorted_labels)[last_of_run]
    fps = np.cumsum(~sorted_labels)[last_of_run]
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, sorted_values[last_of_run]]


def false_reject_rate(good_scores: Scores, threshold: float) -> float | None:
    """Share of good parts scored at or above the threshold (called NG); ``None`` without good parts."""
    good = np.asarray(good_scores, dtype=np.float64)
    if good.size == 0:
        return None
    return float((good >= threshold).mean())


def rates_at(good_scores: Scores, defect_scores: Scores, threshold: float) -> dict[str, float]:
    """False-reject and escape rate at one threshold (NG when score >= threshold).

    Raises:
        ValueError: one of the score lists is empty.
    """
    good, defects = np.asarray(good_scores, dtype=np.float64), np.asarray(defect_scores, dtype=np.float64)
    if good.size == 0 or defects.size == 0:
        raise ValueError("rates need at least one good and one defect score")
    return {"threshold": float(threshold), "false_reject_rate": float((good >= threshold).mean()),
            "escape_rate": float((defects < threshold).mean())}


def threshold_tradeoff(good_scores: Scores, defect_scores: Scores, steps: int = 101) -> list[dict[str, float]]:
    """``rates_at`` for ``steps`` thresholds evenly spaced over [0, 1] (what the dashboard's tuner draws).

    Raises:
        ValueError: ``steps`` is below 2, or one of the score lists is empty.
    """
    if steps < 2:
        raise ValueError(f"steps {steps!r} must be at least 2")
    good = np.sort(np.asarray(good_scores, dtype=np.float64))
    defects = np.sort(np.asarray(defect_scores, dtype=np.float64))
    if good.size == 0 or defects.size == 0:
        raise ValueError("rates need at least one good and one defect score")
    thresholds = np.linspace(0.0, 1.0, steps)
    # Sorted scores: the share at or above each threshold is one searchsorted, not a pass per threshold.
    false_reject = (good.size - np.searchsorted(good, thresholds, side="left")) / good.size
    escape = np.searchsorted(defects, thresholds, side="left") / defects.size
    return [{"threshold": float(t), "false_reject_rate": float(f), "escape_rate": float(e)}
            for t, f, e in zip(thresholds, false_reject, escape, strict=True)]


def good_defect_roc(good_scores: Scores, defect_scores: Scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``roc_curve`` of good (negative) against defect (positive) scores, as a model card stores them."""
    good, defects = np.asarray(good_scores, dtype=np.float64), np.asarray(defect_scores, dtype=np.float64)
    labels = np.r_[np.zeros(good.size, dtype=bool), np.ones(defects.size, dtype=bool)]
    return roc_curve(labels, np.r_[good, defects])
