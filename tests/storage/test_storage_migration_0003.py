"""Revision 0003 (lifecycle) on a database with data: old rows get defaults, downgrade keeps runs and model links."""

from __future__ import annotations

from sqlalchemy import text

from inspect_app.records import ModelVersion
from inspect_app.storage import Database, Repository, downgrade, upgrade
from inspect_app.storage.runs import RunQueue


def test_upgrade_fills_defaults_and_downgrade_keeps_the_data(db_url: str) -> None:
    upgrade(db_url, "0002")
    # Written through the 0002 schema: raw SQL, since the models already describe 0003.
    with Database.open(db_url, migrate=False) as db, db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO training_runs (status, config, data_dir, metrics, created_at) "
            "VALUES ('queued', '{}', '/d', '{}', '2025-01-01 00:00:00')"
        ))
    upgrade(db_url)
    with Database.open(db_url, migrate=False) as db:
        run = RunQueue(db).get(1)
        assert (run.attempts, run.cancel_requested, run.progress) == (0, False, {})
        assert RunQueue(db).claim("w1").id == 1
        Repository(db).add_model_version(ModelVersion(name="m", kind="classifier", backbone="b", path="/m",
                                                      classes=("good", "x"), training_run_id=1))
    downgrade(db_url, "0002")
    with Database.open(db_url, migrate=False) as db, db.engine.connect() as connection:
        assert connection.execute(text("SELECT training_run_id FROM model_versions")).scalar() == 1
        assert connection.execute(text("SELECT status FROM training_runs")).scalar() == "running"
    downgrade(db_url, "base")
