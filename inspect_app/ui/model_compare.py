"""Two model versions side by side: overlaid ROC with operating points, headline figures, per-class recall and
confusion matrices drawn as heat tables that fit any number of classes.

Every figure comes from the model cards (validation metrics stored on the version row); the ROC and rates are
``inspect_app.metrics``, the same functions that wrote the cards, so the dashboard never re-derives them.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from inspect_app.metrics import good_defect_roc, per_class_scores, rates_at
from inspect_app.records import ModelVersion
from inspect_app.ui.analysis import score_samples
from inspect_app.ui.common import format_count, format_number, format_percent

CHANCE = "chance (diagonal)"
TUNER = "tuner"
# Confusion cells shrink with the class count so that the matrix keeps inside half the page; text goes below this.
CELL_MAX_PX, CELL_MIN_PX, MATRIX_MAX_PX, CELL_TEXT_MIN_PX = 44, 14, 440, 22


def confusion_matrix_of(version: ModelVersion) -> tuple[list[str], np.ndarray] | None:
    """(classes, true × predicted counts) from a model card, or ``None`` when the card has none or it is malformed."""
    matrix, classes = version.metrics.get("confusion_matrix"), version.metrics.get("classes")
    if not matrix or not classes or len(matrix) != len(classes) or any(len(row) != len(classes) for row in matrix):
        return None
    return [str(c) for c in classes], np.asarray(matrix, dtype=np.int64)


def confusion_long(version: ModelVersion) -> pd.DataFrame | None:
    """One row per (true, predicted) cell: count and the share of its true class (what the colour shows)."""
    found = confusion_matrix_of(version)
    if found is None:
        return None
    classes, matrix = found
    totals = matrix.sum(axis=1)
    rows = [
        {"True": true, "Predicted": pred, "Count": int(matrix[i, j]),
         "Share": float(matrix[i, j] / totals[i]) if totals[i] else 0.0, "Label": format_count(matrix[i, j])}
        for i, true in enumerate(classes) for j, pred in enumerate(classes)
    ]
    return pd.DataFrame(rows, columns=["True", "Predicted", "Count", "Share", "Label"])


def cell_size(classes: int) -> int:
    """Pixels per confusion cell for ``classes`` classes: large for few, small enough for many to fit."""
    return int(max(CELL_MIN_PX, min(CELL_MAX_PX, MATRIX_MAX_PX // max(classes, 1))))


def confusion_chart(frame: pd.DataFrame, title: str) -> alt.LayerChart | alt.FacetChart:
    """Heat table: true class rows, predicted columns, coloured by share of the true class, counts written in."""
    classes = list(dict.fromkeys(frame["True"]))
    size = cell_size(len(classes))
    base = alt.Chart(frame, title=title).encode(
        x=alt.X("Predicted:N", sort=classes, title="Predicted", axis=alt.Axis(labelAngle=-45, labelLimit=90,
                                                                               labelOverlap=False)),
        # Every class named: Vega would otherwise drop every other label once they touch.
        y=alt.Y("True:N", sort=classes, title="True", axis=alt.Axis(labelLimit=90, labelOverlap=False)),
        tooltip=["True", "Predicted", alt.Tooltip("Count:Q", format=","),
                 alt.Tooltip("Share:Q", format=".1%", title="Share of true class")],
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("Share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="Share of true class")
    )
    layers = [cells]
    if size >= CELL_TEXT_MIN_PX:  # below that the numbers overlap; the tooltip still has them
        layers.append(base.mark_text(fontSize=11 if size < 30 else 12).encode(
            text="Label:N", color=alt.condition(alt.datum.Share > 0.5, alt.value("white"), alt.value("black"))))
    return alt.layer(*layers).properties(width=size * len(classes), height=size * len(classes))


def recall_table(first: ModelVersion, second: ModelVersion) -> pd.DataFrame:
    """Recall per class of both versions (from their confusion matrices) and the change, classes of either card."""
    def recalls(version: ModelVersion) -> dict[str, tuple[float, int]]:
        found = confusion_matrix_of(version)
        if found is None:
            return {}
        classes, matrix = found
        recall = per_class_scores(matrix)["recall"]
        return {c: (float(recall[i]), int(matrix[i].sum())) for i, c in enumerate(classes)}

    a, b = recalls(first), recalls(second)
    rows = []
    for name in list(dict.fromkeys([*a, *b])):
        ra, rb = a.get(name), b.get(name)
        change = None if ra is None or rb is None else rb[0] - ra[0]
        rows.append({
            "Class": name,
            f"Recall {first.name}": format_percent(ra[0]) if ra else "",
            f"Recall {second.name}": format_percent(rb[0]) if rb else "",
            "Change": "" if change is None else f"{change * 100:+.1f} pt",
            f"Parts {first.name}": format_count(ra[1]) if ra else "",
            f"Parts {second.name}": format_count(rb[1]) if rb else "",
        })
    return pd.DataFrame(rows, columns=["Class", f"Recall {first.name}", f"Recall {second.name}", "Change",
                                       f"Parts {first.name}", f"Parts {second.name}"])


def headline_table(versions: Sequence[ModelVersion]) -> pd.DataFrame:
    """Headline figures per version, formatted: status, threshold and the rates at it, AUROC, accuracy, recall."""
    rows = []
    for v in versions:
        samples = score_samples(v.metrics)
        rates = rates_at(*samples, v.threshold) if samples else None
        auroc, accuracy, recall = (v.metrics.get(k) for k in ("auroc_good_vs_defect", "accuracy", "macro_recall"))
        rows.append({
            "Version": v.name, "Status": v.status.value, "Backbone": v.backbone,
            "Threshold": format_number(v.threshold, 2),
            "False-reject rate": format_percent(rates["false_reject_rate"]) if rates else "",
            "Escape rate": format_percent(rates["escape_rate"]) if rates else "",
            "AUROC": format_number(auroc, 3) if isinstance(auroc, int | float) else "",
            "Accuracy": format_percent(accuracy) if isinstance(accuracy, int | float) else "",
            "Macro recall": format_percent(recall) if isinstance(recall, int | float) else "",
            "Validation images": format_count(v.metrics.get("images")) if isinstance(v.metrics.get("images"), int)
            else "",
        })
    return pd.DataFrame(rows)


def roc_frames(versions: Sequence[ModelVersion], tuner: tuple[str, float] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curve points, operating points) of the versions whose cards hold validation scores.

    Each version's operating point is at its own stored threshold; ``tuner`` = (version name, threshold) adds the
    point the threshold tuner is at for that version.
    """
    curves: list[dict[str, object]] = []
    points: list[dict[str, object]] = []
    for v in versions:
        samples = score_samples(v.metrics)
        if samples is None:
            continue
        fpr, tpr, _ = good_defect_roc(*samples)
        curves.extend({"Version": v.name, "False-reject rate": float(f), "Defects caught": float(t), "Order": k}
                      for k, (f, t) in enumerate(zip(fpr, tpr, strict=True)))
        marks = [(f"{v.name} at {v.threshold:.2f}", v.threshold)]
        if tuner is not None and tuner[0] == v.name:
            marks.append((f"{TUNER}: {v.name} at {tuner[1]:.2f}", tuner[1]))
        for label, threshold in marks:
            rates = rates_at(*samples, threshold)
            points.append({"Version": v.name, "Point": label, "Threshold": threshold,
                           "False-reject rate": rates["false_reject_rate"],
                           "Defects caught": 1.0 - rates["escape_rate"], "Tuner": label.startswith(TUNER)})
    return (pd.DataFrame(curves, columns=["Version", "False-reject rate", "Defects caught", "Order"]),
            pd.DataFrame(points, columns=["Version", "Point", "Threshold", "False-reject rate", "Defects caught",
                                          "Tuner"]))


def roc_chart(curves: pd.DataFrame, points: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """ROC curves overlaid, the chance diagonal dashed, operating points filled and the tuner's point as a cross."""
    x = alt.X("False-reject rate:Q", title="False-reject rate (good parts called NG)", axis=alt.Axis(format="%"),
              scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("Defects caught:Q", title="Defects caught (1 − escape rate)", axis=alt.Axis(format="%"),
              scale=alt.Scale(domain=[0, 1]))
    colour = alt.Color("Version:N", title="Version", legend=alt.Legend(orient="bottom", direction="vertical",
                                                                          labelLimit=400))
    tooltip = ["Point:N", alt.Tooltip("Threshold:Q", format=".2f"), alt.Tooltip("False-reject rate:Q", format=".1%"),
               alt.Tooltip("Defects caught:Q", format=".1%")]
    lines = alt.Chart(curves).mark_line(interpolate="step-after").encode(x=x, y=y, color=colour, order="Order:Q")
    diagonal = alt.Chart(pd.DataFrame({"False-reject rate": [0.0, 1.0], "Defects caught": [0.0, 1.0],
                                       "Line": [CHANCE, CHANCE]})).mark_line(
        strokeDash=[5, 4], color="#999").encode(x=x, y=y, detail="Line:N")
    own = alt.Chart(points).transform_filter("!datum.Tuner").mark_point(size=110, filled=True).encode(
        x=x, y=y, color=colour, tooltip=tooltip)
    tuned = alt.Chart(points).transform_filter("datum.Tuner").mark_point(
        size=220, shape="cross", filled=True, color="black").encode(x=x, y=y, tooltip=tooltip)
    return alt.layer(diagonal, lines, own, tuned).properties(height=380)


def default_pair(names: list[str], selected: str, rollback: str | None) -> tuple[str, str]:
    """The versions compared by default: the selected one against what a rollback would bring back, else the next
    newest (or the newest when the selected one is the last)."""
    if rollback is not None and rollback in names and rollback != selected:
        return selected, rollback
    others = [n for n in names if n != selected]
    later = names[names.index(selected) + 1:] if selected in names else []
    return selected, (later[0] if later else others[0])


def render_comparison(models: list[ModelVersion], selected: str, rollback: str | None,
                      tuner: tuple[str, float] | None) -> None:
    """Pick two versions and draw them side by side (nothing to compare with a single version)."""
    st.subheader("Compare two versions")
    if len(models) < 2:
        st.caption("Only one model version so far; a second one (a training run) can be compared here.")
        return
    names = [m.name for m in models]
    first_default, second_default = default_pair(names, selected, rollback)
    left, right = st.columns(2)
    first_name = left.selectbox("Version A", names, index=names.index(first_default), key="compare_a")
    second_name = right.selectbox("Version B", names, index=names.index(second_default), key="compare_b")
    first, second = (next(m for m in models if m.name == n) for n in (first_name, second_name))
    if first.name == second.name:
        st.info(f"Both sides show {first.name}; pick another version for A or B.")
    st.dataframe(headline_table([first, second] if first.name != second.name else [first]), hide_index=True,
                 width="stretch")
    if first.data_fingerprint and first.data_fingerprint != second.data_fingerprint:
        st.caption("The two versions were validated on different data; compare the champion/challenger table on the "
                   "Training page for one frozen test set.")
    curves, points = roc_frames([first, second], tuner)
    if curves.empty:
        st.caption("Neither model card holds validation scores, so no ROC can be drawn.")
    else:
        st.altair_chart(roc_chart(curves, points), width="stretch")
        st.caption("Filled points: each version at its own threshold; black cross: the threshold tuner above; dashed: "
                   "chance. Up and left is better.")
    st.markdown("**Recall per class (validation)**")
    recalls = recall_table(first, second)
    if recalls.empty:
        st.caption("No confusion matrix in either model card.")
    else:
        st.dataframe(recalls, hide_index=True, width="stretch")
    columns = st.columns(2)
    for column, version in zip(columns, (first, second), strict=True):
        with column:
            frame = confusion_long(version)
            if frame is None:
                st.caption(f"No confusion matrix in the card of {version.name}.")
            else:
                # Its own size (cells per class), not the column's: stretching would squash the rows.
                st.altair_chart(confusion_chart(frame, f"Confusion matrix, {version.name} (validation)"),
                                width="content")
