"""Is it the calibration or the model? The operating point of a trained good-only model, studied from saved scores.

No retraining and no torch: it reads a model's ``calibration_scores.json`` (the held-out good scores the threshold
came from) and the ``predictions.csv`` that ``inspect-app evaluate`` wrote on a labelled test set, then prints

* whether the test's good parts score like the held-out ones (share above held-out quantiles, binomial P(X <= k)):
  a calibration can only promise rates on new parts if its held-out scores look like them;
* the rates of candidate rules (threshold and REVIEW edge from the held-out scores alone), one line each;
* the best any threshold and edge could do when tuned on the test itself (an oracle, not a rule): if even that
  misses a goal, no calibration rule can meet it with this model's scores.

Run it on the folders of ``benchmarks/decisions_cli.py`` (``OUT/<set>`` holds ``model/`` and ``eval/``)::

    python benchmarks/operating_point.py /tmp/decisions/mt /tmp/decisions/bottle-jpeg /tmp/decisions/sample
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binom

from inspect_app.engine.metrics import threshold_for_false_reject
from inspect_app.engine.tail import review_edge, tail_threshold

# The goals of issue 16: at the own threshold, and with the REVIEW band.
MAX_FALSE_REJECT = 0.02
MAX_ESCAPE = 0.10
MAX_ESCAPE_INTO_OK = 0.01
MAX_REVIEW_SHARE = 0.10


@dataclass(frozen=True)
class Scores:
    """Held-out good scores of a model and the raw scores of its labelled test parts."""

    held_out: np.ndarray
    test: np.ndarray
    defect: np.ndarray


def read_scores(folder: Path) -> Scores:
    """``folder/model/calibration_scores.json`` and ``folder/eval/predictions.csv``."""
    held_out = json.loads((folder / "model" / "calibration_scores.json").read_text(encoding="utf-8"))["raw_scores"]
    with (folder / "eval" / "predictions.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Scores(np.asarray(held_out, dtype=np.float64),
                  np.asarray([float(r["raw_score"]) for r in rows], dtype=np.float64),
                  np.asarray([r["label"] != "good" for r in rows]))


def rates(scores: Scores, threshold: float, edge: float) -> dict[str, float]:
    """False rejects, escapes, escapes into OK and REVIEW share for a raw threshold and REVIEW edge."""
    edge = min(edge, threshold)
    good, bad = scores.test[~scores.defect], scores.test[scores.defect]
    return {"false_reject": float((good >= threshold).mean()), "escape": float((bad < threshold).mean()),
            "escape_into_ok": float((bad < edge).mean()),
            "review_share": float(((scores.test >= edge) & (scores.test < threshold)).mean())}


def shift(scores: Scores, quantiles: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)) -> list[tuple[float, int, int, float]]:
    """Per held-out quantile: (quantile, test good parts at or above it, test good parts, binomial P(X <= k))."""
    good = scores.test[~scores.defect]
    out = []
    for q in quantiles:
        k = int((good >= np.quantile(scores.held_out, q)).sum())
        out.append((q, k, int(good.size), float(binom.cdf(k, good.size, 1.0 - q))))
    return out


# Candidate rules: (threshold, edge) from the held-out scores alone.
RULES: dict[str, Callable[[np.ndarray], tuple[float, float]]] = {
    "shipped: tail 1 %, edge tail 8 %": lambda h: (tail_threshold(h, 0.01)[0], review_edge(h, 0.08)),
    "tail 1 %, edge tail 15 %": lambda h: (tail_threshold(h, 0.01)[0], review_edge(h, 0.15)),
    "tail 1 %, edge centre + 1/4 (t - centre)": lambda h: (
        tail_threshold(h, 0.01)[0], float(np.median(h)) + 0.25 * (tail_threshold(h, 0.01)[0] - float(np.median(h)))),
    "empirical 1 %, edge tail 8 %": lambda h: (threshold_for_false_reject(h, 0.01), review_edge(h, 0.08)),
    "tail 2 %, edge tail 8 %": lambda h: (tail_threshold(h, 0.02)[0], review_edge(h, 0.08)),
}


def oracle(scores: Scores) -> dict[str, float | None]:
    """The best the test's own scores allow (tuned on the test, so not a rule).

    ``own_threshold_escape``: fewest escapes of any threshold with at most ``MAX_FALSE_REJECT`` false rejects;
    ``review_share``: the smallest REVIEW share of any threshold (same false-reject cap) and edge with at most
    ``MAX_ESCAPE_INTO_OK`` escapes into OK (``None`` when no edge allows it).
    """
    good, bad = np.sort(scores.test[~scores.defect]), np.sort(scores.test[scores.defect])
    allowed = int(np.floor(MAX_ESCAPE_INTO_OK * bad.size))
    # The highest edge that leaves at most ``allowed`` defects below it: the next defect's score.
    edge = float(bad[allowed]) if allowed < bad.size else float("inf")
    best_escape, best_review = 1.0, None
    for t in np.unique(scores.test):
        if (good >= t).mean() > MAX_FALSE_REJECT:
            continue
        r = rates(scores, float(t), edge)
        best_escape = min(best_escape, r["escape"])
        if t >= edge and (best_review is None or r["review_share"] < best_review):
            best_review = r["review_share"]
    return {"own_threshold_escape": best_escape, "review_share": best_review}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def report(folder: Path) -> None:
    """Print the three studies for one data set's folder."""
    scores = read_scores(folder)
    print(f"## {folder.name}: {scores.held_out.size} held-out good, {int((~scores.defect).sum())} test good, "
          f"{int(scores.defect.sum())} defects")
    for q, k, n, p in shift(scores):
        print(f"  test good at or above held-out q{q}: {k}/{n} = {_pct(k / n)} (expected {_pct(1 - q)}), "
              f"P(X <= k) = {p:.3f}")
    for name, rule in RULES.items():
        threshold, edge = rule(scores.held_out)
        r = rates(scores, threshold, edge)
        print(f"  {name:42s} t {threshold:8.3f} edge {min(edge, threshold):8.3f}: false reject "
              f"{_pct(r['false_reject'])}, escape {_pct(r['escape'])}, into OK {_pct(r['escape_into_ok'])}, "
              f"REVIEW {_pct(r['review_share'])}")
    best = oracle(scores)
    print(f"  oracle (tuned on the test): escapes at <= {_pct(MAX_FALSE_REJECT)} false rejects "
          f"{_pct(best['own_threshold_escape'])}; REVIEW share at <= {_pct(MAX_ESCAPE_INTO_OK)} into OK "
          f"{_pct(best['review_share'])}")


def main() -> int:
    """Report each folder given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="OUT/<set> folders of decisions_cli.py")
    for folder in parser.parse_args().folders:
        if not (folder / "model" / "calibration_scores.json").is_file():
            print(f"{folder}: no model/calibration_scores.json (a decisions_cli.py set folder is needed)")
            return 2
        report(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
