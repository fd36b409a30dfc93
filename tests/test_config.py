"""Settings layering and typed configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.config.pipeline import PipelineSpec
from inspect_app.config.recipes import TrainConfig
from inspect_app.config.settings import load_settings
from inspect_app.errors import ConfigError


def test_default_database_is_sqlite_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    monkeypatch.setenv("INSPECT_HOME", str(tmp_path))
    assert load_settings().resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/inspect.db"


def test_environment_url_wins_over_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECT_DATABASE_URL", "postgresql+psycopg://a:b@h/db")
    assert load_settings(database_url="sqlite:///x.db").resolved_database_url == "postgresql+psycopg://a:b@h/db"


def test_flag_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INSPECT_DATABASE_URL", raising=False)
    assert load_settings(database_url="sqlite:///x.db").resolved_database_url == "sqlite:///x.db"


def test_train_config_rejects_bad_values_by_name() -> None:
    with pytest.raises(ConfigError, match="'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="epochs 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"\['colour'\]"):
        TrainConfig.from_dict({"colour": 1})


def test_train_config_overrides_skip_none() -> None:
    config = TrainConfig(epochs=5).with_overrides(epochs=None, lr=0.01)
    assert (config.epochs, config.lr) == (5, 0.01)


def test_shipped_pipeline_parses(repo_root: Path) -> None:
    spec = PipelineSpec.from_yaml(repo_root / "pipelines" / "batch_folder.yaml")
    assert spec.source == "sample_data/incoming"
    assert spec.model == "var/models/demo"
    assert spec.station == "station-1"


def test_pipeline_errors_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("source: {kind: kinect, path: 0}\nmodel: {path: m}\n")
    with pytest.raises(ConfigError, match=r"'kinect' is not one of folder, glob, watch, video, stream, camera"):
        PipelineSpec.from_yaml(path)
    path.write_text("sources: {}\n")
    with pytest.raises(ConfigError, match="sources"):
        PipelineSpec.from_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        PipelineSpec.from_yaml(tmp_path / "missing.yaml")


def test_default_recipe_file_is_the_default_config(repo_root: Path) -> None:
    from inspect_app.config.recipes import load_recipe

    assert load_recipe(repo_root / "recipes" / "default.yaml") == TrainConfig()
