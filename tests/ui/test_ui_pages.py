"""Every dashboard page driven headless by ``streamlit.testing`` against a seeded SQLite file: renders, shows the
seeded numbers, a control changes the database, and a control without the role is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from inspect_app.app import maintenance, reviews, users, versions
from inspect_app.app import runs as run_actions
from inspect_app.app import schedules as schedule_actions
from inspect_app.config.policy import FinetuneSpec
from inspect_app.errors import AccessDeniedError
from inspect_app.lifecycle.scheduler import Scheduler
from inspect_app.records import Decision, Inspection, ModelComparison, ModelStatus, ModelVersion, RunStatus, TrainingRun
from inspect_app.storage import Database, Repository, dashboard_queries, review_queries
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore, schedule_config
from inspect_app.storage.tables import InspectionRow
from inspect_app.ui import app, common

APP_FILE = Path(app.__file__).resolve()
TIMEOUT_S = 60
PASSWORD = "correct-horse-battery"
GOOD_SCORES = [0.02, 0.05, 0.08, 0.1, 0.12, 0.2, 0.3, 0.45]
DEFECT_SCORES = [0.35, 0.6, 0.7, 0.8, 0.9, 0.95]



def _inspections(now: datetime) -> list[Inspection]:
    """Two stations over the last hours: OK, REVIEW and NG parts with scores and latencies."""
    plan = [
        ("cell-a", Decision.OK, None, 0.05), ("cell-a", Decision.OK, None, 0.1),
        ("cell-a", Decision.NG, "scratch", 0.9), ("cell-a", Decision.REVIEW, None, 0.5),
        ("cell-a", Decision.REVIEW, None, 0.55), ("cell-b", Decision.OK, None, 0.2),
        ("cell-b", Decision.NG, "dent", 0.8), ("cell-b", Decision.NG, "scratch", 0.95),
        ("cell-b", Decision.OK, None, 0.15),
    ]
    return [
        Inspection(
            station=station, line="line-1", source="/in", image_path=f"/in/{i}.png", decision=decision,
            created_at=now - timedelta(seconds=20 + 600 * i), content_hash=f"h{i}", model_version="m1",
            defect_class=defect, score=score, latency_ms=10.0 + i,
        )
        for i, (station, decision, defect, score) in enumerate(plan)
    ]


def _metrics() -> dict:
    return {
        "accuracy": 0.9, "macro_recall": 0.85, "auroc_good_vs_defect": 0.95, "images": 14,
        "classes": ["good", "scratch", "dent"], "confusion_matrix": [[7, 1, 0], [0, 3, 1], [0, 0, 2]],
        "score_samples": {"good": GOOD_SCORES, "defect": DEFECT_SCORES},
    }


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A seeded plant database selected through ``INSPECT_DATABASE_URL``, with one user per role."""
    url = f"sqlite:///{(tmp_path / 'plant.db').as_posix()}"
    now = datetime.now(UTC)
    rows = _inspections(now)
    with Database.open(url) as db:
        repo = Repository(db)
        repo.add_inspections(rows)
        for name, status in (("m0", ModelStatus.RETIRED), ("m1", ModelStatus.ACTIVE)):
            repo.add_model_version(ModelVersion(name=name, kind="classifier", backbone="efficientnet_lite0",
                                                path=f"/models/{name}", classes=("good", "scratch", "dent"),
                                                metrics=_metrics(), status=status, threshold=0.5,
                                                created_at=now - timedelta(days=2 if name == "m0" else 1)))
        for role in ("viewer", "operator", "engineer", "admin"):
            users.create_user(db, role, role, PASSWORD)
        (tmp_path / "run.log").write_text("".join(f"epoch {i} loss 0.{i}\n" for i in range(1, 61)))
        RunQueue(db).add(TrainingRun(config={"epochs": 4}, data_dir="/data", status=RunStatus.RUNNING,
                                     metrics={"epoch": 2, "epochs": 4}, log_path=str(tmp_path / "run.log")))
        (tmp_path / "train" / "good").mkdir(parents=True)
        ScheduleStore(db).add("nightly", "0 2 * * *", schedule_config(tmp_path / "train", FinetuneSpec()))
    monkeypatch.setenv("INSPECT_DATABASE_URL", url)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    # These tests are about page content, read anonymously where no control is used; closed viewing (the default)
    # is tested below and in tests/security.
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "true")
    return {"url": url, "rows": rows, "tmp": tmp_path}


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(page: str | None = None, user: str | None = None) -> AppTest:
    """The app on one page, optionally signed in through the sidebar form."""
    at = _run(AppTest.from_file(str(APP_FILE), default_timeout=TIMEOUT_S))
    if user is not None:
        at.sidebar.text_input(key="sign_in_user").input(user)
        at.sidebar.text_input(key="sign_in_password").input(PASSWORD)
        next(b for b in at.sidebar.button if b.label == "Sign in").click()
        at = _run(at)
        assert any(f"({user})" in m.value for m in at.sidebar.markdown), "sign-in did not take"
    if page is not None:
        at.switch_page(f"views/{page}.py")
        at = _run(at)
    return at


def _audit(url: str, action: str) -> list:
    with Database.open(url) as db:
        return Repository(db).list_audit(action=action)


# --- Overview -------------------------------------------------------------------------------------------------------


def test_overview_numbers_match_the_queries(plant: dict) -> None:
    at = _open()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Inspected"] == "9" and metrics["NG"] == "3" and metrics["Review"] == "2" and metrics["OK"] == "4"
    assert metrics["Defect rate %"] == f"{100 * 3 / 9:.1f} %"
    comparison = at.dataframe[0].value
    assert list(comparison["Station"]) == ["cell-b", "cell-a"]  # worst defect rate first: 2/4 vs 1/5
    assert list(comparison["NG"]) == ["2", "1"] and list(comparison["Line"]) == ["line-1", "line-1"]
    assert any("Centre line" in c.value for c in at.caption)


def test_overview_bucket_by_shift_and_station_filter(plant: dict) -> None:
    at = _open()
    at.radio(key=common.bucket_key(common.DEFAULT_PERIOD)).set_value("shift")
    at.sidebar.selectbox(key="station").select("cell-a")
    at = _run(at)
    assert {m.label: m.value for m in at.metric}["Inspected"] == "5"
    assert any("per shift" in s.value for s in at.subheader)


def test_closed_viewing_asks_to_sign_in(plant: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DASHBOARD_OPEN_VIEWING", "false")
    at = _open()
    assert not at.metric and at.info[0].value == common.SIGN_IN_REQUIRED_MESSAGE
    at = _open(user="viewer")
    assert {m.label: m.value for m in at.metric}["Inspected"] == "9"


def test_wrong_password_is_refused_and_audited(plant: dict) -> None:
    at = _open()
    at.sidebar.text_input(key="sign_in_user").input("admin")
    at.sidebar.text_input(key="sign_in_password").input("not-the-password")
    next(b for b in at.sidebar.button if b.label == "Sign in").click()
    at = _run(at)
    assert "sign-in failed for user 'admin'" in at.sidebar.error[0].value
    assert [e.actor for e in _audit(plant["url"], "auth.sign_in_failed")] == ["admin"]


def _seed_old(plant: dict) -> tuple[datetime, list[Path]]:
    """Three inspections 40-60 days old with real image and heatmap files; returns the seeding time and the files."""
    now, tmp = datetime.now(UTC), plant["tmp"]
    files = []
    rows = []
    for i, days in enumerate((40, 50, 60)):
        image, heatmap = tmp / f"old{i}.png", tmp / f"old{i}_heat.png"
        image.write_bytes(b"img")
        heatmap.write_bytes(b"heat")
        files += [image, heatmap]
        rows.append(Inspection(station="cell-a", line="line-1", source="/in", image_path=str(image),
                               heatmap_path=str(heatmap), decision=Decision.NG, created_at=now - timedelta(days=days),
                               content_hash=f"old{i}", model_version="m1", defect_class="scratch", score=0.9))
    with Database.open(plant["url"]) as db:
        Repository(db).add_inspections(rows)
    return now, files


def _inspection_ages(url: str) -> list[datetime]:
    """Creation time of every stored inspection, read straight from the table (independent of the purge code)."""
    with Database.open(url) as db, db.session() as session:
        return [t if t.tzinfo else t.replace(tzinfo=UTC) for t in session.scalars(select(InspectionRow.created_at))]


def _purge_form(at: AppTest, age: str) -> AppTest:
    at.text_input(key="purge_age").input(age)
    at.button(key="purge_dry_run").click()
    return _run(at)


def test_engineer_sees_no_purge_control_and_is_refused(plant: dict) -> None:
    _, files = _seed_old(plant)
    before = _inspection_ages(plant["url"])
    at = _open(user="engineer")
    assert at.metric  # the page itself is there
    assert not any(b.key and b.key.startswith("purge_") for b in at.button)
    assert not any(t.key == "purge_age" for t in at.text_input) and not at.expander
    # The server-side check stays: the function behind the control refuses an engineer.
    with Database.open(plant["url"]) as db, pytest.raises(AccessDeniedError, match="may not 'purge'"):
        maintenance.purge_inspections(db, Repository(db).get_user("engineer"), "30d", dry_run=True)
    assert sorted(_inspection_ages(plant["url"])) == sorted(before) and all(f.exists() for f in files)
    assert _audit(plant["url"], "db.purge") == []


def test_admin_bad_age_is_named(plant: dict) -> None:
    at = _purge_form(_open(user="admin"), "3 months")
    assert any("age '3 months'" in e.value and "m, h, d, w" in e.value for e in at.error)
    assert not any(b.key == "purge_confirm" for b in at.button)


def test_admin_dry_run_counts_then_confirmed_purge_deletes_exactly_the_old_rows(plant: dict) -> None:
    seeded_at, files = _seed_old(plant)
    before = _inspection_ages(plant["url"])
    at = _purge_form(_open(user="admin"), "30d")
    expected_old = sum(t < seeded_at - timedelta(days=30) for t in before)
    assert expected_old == 3
    assert any(f"Would delete {expected_old} inspection(s) older than 30d" in w.value for w in at.warning)
    assert sorted(_inspection_ages(plant["url"])) == sorted(before)  # the dry run deleted nothing
    assert _audit(plant["url"], "db.purge") == [] and all(f.exists() for f in files)
    at.button(key="purge_confirm").click()
    at = _run(at)
    assert at.success and "older than 30d" in at.success[0].value
    after = _inspection_ages(plant["url"])
    assert sorted(after) == sorted(t for t in before if t >= seeded_at - timedelta(days=30))
    assert len(after) == len(before) - expected_old and not any(f.exists() for f in files)
    [event] = _audit(plant["url"], "db.purge")  # one entry: retention's, with the admin as actor
    assert event.actor == "admin" and event.details["rows"] == expected_old and event.details["files_deleted"] == 6
    at = _run(at)  # the next rerun offers no second purge
    assert not any(b.key == "purge_confirm" for b in at.button)


def test_changing_the_age_after_a_dry_run_drops_the_confirm_step(plant: dict) -> None:
    _seed_old(plant)
    at = _purge_form(_open(user="admin"), "30d")
    assert any(b.key == "purge_confirm" for b in at.button)
    at.text_input(key="purge_age").input("1d")
    at = _run(at)
    assert not any(b.key == "purge_confirm" for b in at.button) and not at.warning


# --- Live -----------------------------------------------------------------------------------------------------------


def test_live_shows_last_minute_figures_and_latest_frames(plant: dict) -> None:
    at = _open("live")
    metrics = {m.label: m.value for m in at.metric}
    # Only the newest row (20 s old) lies in the last minute.
    assert metrics["Frames (1 min)"] == "1" and metrics["Latency mean"] == "10 ms"
    assert len(at.dataframe[0].value) == len(plant["rows"])
    # NG gallery: the rows name /in/*.png, outside the served folders, so no file is sent.
    assert any("(no picture: image outside the evidence and data folders)" in c.value for c in at.caption)


# --- Review ---------------------------------------------------------------------------------------------------------


def test_review_confirm_stores_verdict_and_audit(plant: dict) -> None:
    at = _open("review", user="operator")
    assert {m.label: m.value for m in at.metric}["Waiting for review"] == "2"
    with Database.open(plant["url"]) as db:
        first = review_queries.review_queue(db)[0].inspection_id
    at.selectbox(key=f"item_{first}_class").select("dent")
    at.button(key=f"item_{first}_ng").click()
    at = _run(at)
    assert at.success and "NG dent" in at.success[0].value
    with Database.open(plant["url"]) as db:
        review = Repository(db).get_review(first)
        assert review is not None and review.verdict == Decision.NG and review.defect_class == "dent"
        assert review.reviewer == "operator"
        assert dashboard_queries.reviewed_labels(db) == [(f"/in/{first_index(plant, first)}.png", "dent")]
    at = _run(at)
    assert {m.label: m.value for m in at.metric}["Waiting for review"] == "1"


def first_index(plant: dict, inspection_id: int) -> int:
    """Seed index of an inspection id (ids follow insertion order from 1)."""
    return inspection_id - 1


def test_review_without_role_shows_no_controls_and_is_refused(plant: dict) -> None:
    at = _open("review", user="viewer")
    with Database.open(plant["url"]) as db:
        first = review_queries.review_queue(db)[0].inspection_id
    assert any(f"**#{first}**" in m.value for m in at.markdown)  # the part is listed, read-only
    # Zooming is for everyone; no verdict control is drawn.
    assert not any(b.key and b.key.endswith(("_ok", "_ng")) for b in at.button) and not at.checkbox
    assert any(c.value.startswith("Read-only: recording verdicts needs role operator") for c in at.caption)
    with Database.open(plant["url"]) as db:
        with pytest.raises(AccessDeniedError, match="role 'viewer' may not 'review'"):
            reviews.review_inspection(db, Repository(db).get_user("viewer"), first, "OK")
        assert Repository(db).get_review(first) is None


def test_review_audit_sample_lists_only_ok_parts(plant: dict) -> None:
    at = _open("review", user="operator")
    at.radio(key="review_source").set_value("Audit sample (OK parts)")
    at = _run(at)
    ok_ids = {i + 1 for i, r in enumerate(plant["rows"]) if r.decision == Decision.OK}
    shown = {int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("item_")
             and b.key.endswith("_ok")}
    assert shown and shown <= ok_ids


# --- Models ---------------------------------------------------------------------------------------------------------


def test_models_page_shows_versions_confusion_and_tuner(plant: dict) -> None:
    at = _open("models")
    versions = at.dataframe[0].value
    assert list(versions["Name"]) == ["m1", "m0"] and list(versions["Status"]) == ["active", "retired"]
    recalls = next(d.value for d in at.dataframe if "Class" in d.value.columns)
    # scratch: 3 of its 4 parts called scratch (one called dent).
    assert recalls.set_index("Class").loc["scratch", "Recall m1"] == "75.0 %"
    at.slider(key="threshold_m1").set_value(0.4)
    at = _run(at)
    metrics = {m.label: m.value for m in at.metric}
    # At 0.4: good scores ≥ 0.4 → 1 of 8; defect scores < 0.4 → 1 of 6.
    assert metrics["False-reject rate"] == f"{100 / 8:.1f} %" and metrics["Escape rate"] == f"{100 / 6:.1f} %"


def test_engineer_applies_threshold_and_rolls_back(plant: dict) -> None:
    at = _open("models", user="engineer")
    at.slider(key="threshold_m1").set_value(0.4)
    at = _run(at)
    at.button(key="apply_threshold").click()
    at = _run(at)
    with Database.open(plant["url"]) as db:
        assert Repository(db).get_model_version("m1").threshold == pytest.approx(0.4)
    assert _audit(plant["url"], "model.threshold")[0].details == {"old": 0.5, "new": pytest.approx(0.4)}
    at.button(key="rollback").click()
    at = _run(at)
    with Database.open(plant["url"]) as db:
        assert Repository(db).active_model().name == "m0"
    [event] = _audit(plant["url"], "model.promote")  # the one audited path: app.versions
    assert (event.actor, event.target, event.details["previous"]) == ("engineer", "m0", "m1")
    assert event.details["reason"] == "rollback from m1"


def test_operator_sees_no_model_controls_and_cannot_promote(plant: dict) -> None:
    at = _open("models", user="operator")
    at.selectbox(key="model_name").select("m0")
    at = _run(at)
    assert at.dataframe and at.slider  # versions and the what-if tuner stay readable
    assert not {"promote", "rollback", "apply_threshold"} & {b.key for b in at.button}
    with Database.open(plant["url"]) as db:
        with pytest.raises(AccessDeniedError, match="needs role engineer or admin"):
            versions.promote_model(db, Repository(db).get_user("operator"), "m0")
        assert Repository(db).active_model().name == "m1"


# --- Training -------------------------------------------------------------------------------------------------------


def test_training_page_shows_runs_progress_and_log_tail(plant: dict) -> None:
    at = _open("training")
    runs = at.dataframe[0].value
    assert list(runs["Status"]) == ["running"] and runs["Progress"].iloc[0] == pytest.approx(0.5)
    log = at.code[0].value
    assert log.splitlines()[-1] == "epoch 60 loss 0.60" and len(log.splitlines()) == 40


def test_engineer_queues_a_run_the_worker_can_read(plant: dict) -> None:
    at = _open("training", user="engineer")
    at.text_input(key="train_data_dir").input(str(plant["tmp"] / "train"))
    at.number_input(key="train_epochs").set_value(2)
    next(b for b in at.button if b.label == "Queue run").click()
    at = _run(at)
    assert at.success[0].value == "run queued"
    with Database.open(plant["url"]) as db:
        run = RunQueue(db).list(status="queued")[0]
    spec = FinetuneSpec.from_dict(run.config)  # what lifecycle.worker reads
    assert spec.train.epochs == 2 and spec.use_reviews and spec.train.extra["requested_by"] == "engineer"
    assert _audit(plant["url"], "training.enqueue")[0].target == f"training_run:{run.id}"


def test_operator_sees_no_training_controls_and_is_refused(plant: dict) -> None:
    at = _open("training", user="operator")
    assert at.dataframe and at.code  # runs, schedules and the log tail stay readable
    labels = {b.label for b in at.button}
    assert not {"Queue run", "Add fine-tuning schedule", "Cancel run", "Pause", "Resume"} & labels
    assert not {"cancel_run", "schedule_toggle"} & {b.key for b in at.button}
    with Database.open(plant["url"]) as db:
        operator = Repository(db).get_user("operator")
        with pytest.raises(AccessDeniedError, match="may not 'train'"):
            run_actions.enqueue_training(db, operator, str(plant["tmp"] / "train"), {})
        with pytest.raises(AccessDeniedError, match="may not 'cancel'"):
            run_actions.cancel_run(db, operator, RunQueue(db).list()[0].id)
        with pytest.raises(AccessDeniedError, match="may not 'schedule'"):
            schedule_actions.set_schedule_enabled(db, operator, "nightly", False)
    with Database.open(plant["url"]) as db:
        runs = RunQueue(db).list()
        assert [(r.status, r.cancel_requested) for r in runs] == [(RunStatus.RUNNING, False)]
        assert ScheduleStore(db).list()[0].enabled is True
    assert _audit(plant["url"], "training.cancel") == []


def test_engineer_cancels_queued_and_running_runs(plant: dict) -> None:
    with Database.open(plant["url"]) as db:
        queued = RunQueue(db).enqueue(FinetuneSpec().to_dict(), str(plant["tmp"] / "train"))
    at = _open("training", user="engineer")
    runs = at.dataframe[0].value
    assert {"Attempts", "Worker", "Last report", "Worker health"} <= set(runs.columns)
    at.selectbox(key="cancel_pick").set_value(queued)
    at.button(key="cancel_run").click()
    at = _run(at)
    with Database.open(plant["url"]) as db:
        assert RunQueue(db).get(queued).status is RunStatus.CANCELLED
        running = RunQueue(db).list(status="running")[0]
    at.selectbox(key="cancel_pick").set_value(running.id)
    at.button(key="cancel_run").click()
    at = _run(at)
    with Database.open(plant["url"]) as db:
        # A running run stops at its worker's next progress report.
        assert RunQueue(db).get(running.id).cancel_requested is True
    assert [e.target for e in _audit(plant["url"], "training.cancel")] == [
        f"training_run:{running.id}", f"training_run:{queued}"]


def test_schedule_added_on_the_page_is_fired_by_the_scheduler(plant: dict) -> None:
    at = _open("training", user="engineer")
    at.button(key="schedule_toggle").click()  # pause "nightly"
    at = _run(at)
    at.text_input(key="schedule_name").input("weekly")
    at.text_input(key="schedule_cron").input("0 3 * * 0")
    next(b for b in at.button if b.label == "Add fine-tuning schedule").click()
    at = _run(at)
    with Database.open(plant["url"]) as db:
        schedules = {s.name: s for s in ScheduleStore(db).list()}
        weekly = schedules["weekly"]
        assert schedules["nightly"].enabled is False and weekly.cron == "0 3 * * 0"
        assert weekly.config["data_dir"] == str((plant["tmp"] / "train").resolve())
        due = weekly.next_run_at
        assert due is not None and (due.weekday(), due.hour, due.minute) == (6, 3, 0)
        queued = Scheduler(db, clock=lambda: due + timedelta(seconds=1)).tick()
        [run] = [RunQueue(db).get(run_id) for run_id in queued]  # the paused one does not fire
    assert run.schedule == "weekly" and run.data_dir == weekly.config["data_dir"]
    assert FinetuneSpec.from_dict(run.config).model_prefix == "weekly"
    assert [e.action for e in _audit(plant["url"], "schedule.add")] == ["schedule.add"]


def test_bad_cron_is_named_not_raised(plant: dict) -> None:
    at = _open("training", user="engineer")
    at.text_input(key="schedule_name").input("bad")
    at.text_input(key="schedule_cron").input("every night")
    next(b for b in at.button if b.label == "Add fine-tuning schedule").click()
    at = _run(at)
    assert any("'every night' is not valid" in e.value for e in at.error)
    with Database.open(plant["url"]) as db:
        assert [s.name for s in ScheduleStore(db).list()] == ["nightly"]


def test_model_comparisons_table(plant: dict) -> None:
    with Database.open(plant["url"]) as db:
        Repository(db).add_comparison(ModelComparison(
            candidate="m2", champion="m1", promoted=False, reason="escape rate not lower",
            details={"candidate": {"escape_rate": 0.1}, "champion": {"escape_rate": 0.05}}, training_run_id=1,
            created_at=datetime.now(UTC)))
    at = _open("training")
    frame = next(d.value for d in at.dataframe if "Candidate" in d.value.columns)
    assert list(frame["Candidate"]) == ["m2"] and list(frame["Champion escape"]) == ["5.0 %"]
    assert not frame["Promoted"].iloc[0]
