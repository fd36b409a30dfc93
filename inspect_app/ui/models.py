"""Models page: versions with metrics, promote and roll back, a threshold tuner, and two versions side by side.

The tuner moves a threshold over the model card's validation scores and shows escape rate against false-reject
rate; applying it stores the threshold on the model version (engineer role, audited). The comparison
(``ui.model_compare``) draws the tuner's point on the ROC next to each version's own operating point.
"""

from __future__ import annotations

import logging

import altair as alt
import pandas as pd
import streamlit as st

from inspect_app.app import versions
from inspect_app.errors import StorageError
from inspect_app.metrics import rates_at, threshold_tradeoff
from inspect_app.records import ModelStatus, ModelVersion
from inspect_app.storage import Repository, detail_queries
from inspect_app.ui.analysis import score_samples
from inspect_app.ui.common import (
    CACHE_TTL_S,
    current_user,
    database,
    database_url,
    format_count,
    format_number,
    format_time,
    may,
    require_viewing,
    role_hint,
    run_control,
    time_title,
)
from inspect_app.ui.model_compare import render_comparison

logger = logging.getLogger(__name__)

# What a table cell shows for a value the version does not have.
MISSING = "—"

PAGE_TITLE = "Models"
NO_MODELS_MESSAGE = "No model versions yet. Train one (`inspect-app train` or the Training page)."


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_models(url: str) -> list[ModelVersion]:
    """Every model version, newest first."""
    return list(reversed(Repository(database(url)).list_model_versions()))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_rollback_target(url: str) -> str | None:
    """Name of the model a rollback would re-activate."""
    target = versions.rollback_target(database(url))
    return None if target is None else target.name


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_unpromotable(url: str) -> set[str]:
    """Candidates of failed or cancelled runs: never offered for promotion."""
    return detail_queries.failed_run_candidates(database(url))


def versions_table(models: list[ModelVersion]) -> pd.DataFrame:
    """One row per version with its headline metrics, formatted like the other tables ("—" for missing, plant time)."""
    def metric(version: ModelVersion, key: str) -> str:
        value = version.metrics.get(key)
        return format_number(float(value), 3) if isinstance(value, int | float) else MISSING

    created = time_title("Created")
    return pd.DataFrame(
        [
            {
                "Name": v.name, "Status": v.status.value, "Backbone": v.backbone,
                "Threshold": format_number(v.threshold, 3) if v.threshold is not None else MISSING,
                "Accuracy": metric(v, "accuracy"), "Macro recall": metric(v, "macro_recall"),
                "AUROC": metric(v, "auroc_good_vs_defect"),
                "Validation images": format_count(v.metrics.get("images")) or MISSING,
                created: format_time(v.created_at) or MISSING,
            }
            for v in models
        ],
        columns=["Name", "Status", "Backbone", "Threshold", "Accuracy", "Macro recall", "AUROC", "Validation images",
                 created],
    )


def render_controls(url: str, models: list[ModelVersion], selected: ModelVersion) -> None:
    """Promote the selected version, or roll back to the previous active one."""
    active = next((m for m in models if m.status == ModelStatus.ACTIVE), None)
    target = load_rollback_target(url)
    may_promote, may_rollback = may("promote"), may("rollback")
    if not may_promote and not may_rollback:
        return
    failed = selected.name in load_unpromotable(url)
    if failed:
        st.caption(f"{selected.name} comes from a failed or cancelled training run and cannot be promoted.")
    left, right = st.columns(2)
    with left:
        label = f"Promote {selected.name}"
        if may_promote and st.button(label, key="promote", disabled=selected.status == ModelStatus.ACTIVE or failed,
                                     help=role_hint("promote")):
            run_control(versions.promote_model, database(url), current_user(), selected.name,
                        success=f"{selected.name} is now the active model")
    with right:
        label = f"Roll back to {target}" if target else "Roll back"
        if may_rollback and st.button(label, key="rollback", disabled=target is None, help=role_hint("rollback")):
            run_control(versions.rollback_model, database(url), current_user(),
                        success=f"rolled back from {active.name if active else '–'} to {target}")


def render_tuner(url: str, version: ModelVersion) -> float | None:
    """Escape vs false-reject trade-off over thresholds, the chosen point marked, and the apply button; returns the
    threshold the tuner is at (``None`` without validation scores)."""
    st.subheader("Threshold tuner")
    samples = score_samples(version.metrics)
    if samples is None:
        st.caption("This model card has no validation scores (models trained before they were recorded).")
        return None
    good, defect = samples
    threshold = st.slider("Threshold (NG when defect score ≥ threshold)", 0.01, 0.99, float(version.threshold),
                          step=0.01, key=f"threshold_{version.name}")
    now, then = rates_at(good, defect, version.threshold), rates_at(good, defect, threshold)
    moved = abs(threshold - version.threshold) >= 1e-9

    def change(key: str) -> str | None:
        # A delta only once the slider has left the stored threshold; "+0.0" would read as a change.
        return f"{(then[key] - now[key]) * 100:+.1f} pt" if moved else None

    cols = st.columns(4)
    cols[0].metric("Escape rate", f"{then['escape_rate'] * 100:.1f} %", delta=change("escape_rate"),
                   delta_color="inverse")
    cols[1].metric("False-reject rate", f"{then['false_reject_rate'] * 100:.1f} %",
                   delta=change("false_reject_rate"), delta_color="inverse")
    cols[2].metric("Current threshold", f"{version.threshold:.2f}")
    cols[3].metric("Validation good / defect", f"{len(good)} / {len(defect)}")
    curve = pd.DataFrame(threshold_tradeoff(good, defect))
    long = curve.melt(id_vars="threshold", value_vars=["escape_rate", "false_reject_rate"], var_name="Rate",
                      value_name="Share")
    long["Rate"] = long["Rate"].map({"escape_rate": "Escape", "false_reject_rate": "False reject"})
    lines = alt.Chart(long).mark_line().encode(x=alt.X("threshold:Q", title="Threshold"),
                                               y=alt.Y("Share:Q", axis=alt.Axis(format="%")), color="Rate:N")
    rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(color="black").encode(x="t:Q")
    st.altair_chart(lines + rule, width="stretch")
    # The tuner is a what-if anyone may explore; only storing the threshold is a control.
    if may("threshold") and st.button(f"Apply threshold {threshold:.2f} to {version.name}", key="apply_threshold",
                 disabled=not moved, help=role_hint("threshold")):
        run_control(versions.set_model_threshold, database(url), current_user(), version.name, threshold,
                    success=f"threshold of {version.name} set to {threshold:.2f}")
    return threshold


def render() -> None:
    """Draw the Models page."""
    st.title(PAGE_TITLE)
    require_viewing()
    url = database_url()
    try:
        models = load_models(url)
        if not models:
            st.info(NO_MODELS_MESSAGE)
            return
        st.dataframe(versions_table(models), hide_index=True)
        names = [m.name for m in models]
        active = next((m.name for m in models if m.status == ModelStatus.ACTIVE), names[0])
        name = st.selectbox("Model version", names, index=names.index(active), key="model_name")
        version = next(m for m in models if m.name == name)
        if not may("promote"):
            st.caption(f"Read-only: promoting, rolling back and changing thresholds {role_hint('promote')}.")
        render_controls(url, models, version)
        tuned = render_tuner(url, version)
        render_comparison(models, version.name, load_rollback_target(url),
                          None if tuned is None else (version.name, tuned))
    except StorageError as exc:
        logger.error("models page cannot read the database: %s", exc)
        st.error(f"Cannot read the plant database: {exc}")
