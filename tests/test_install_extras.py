"""The install extras match the machines: a station runs without Streamlit, the dashboard server without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import inspect_app

REPO_ROOT = Path(inspect_app.__file__).resolve().parent.parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
DASHBOARD_ONLY = ("streamlit", "pandas", "altair")
STATION_ONLY = ("torch", "torchvision", "timm", "faiss", "onnx", "onnxruntime", "cv2", "matplotlib", "safetensors")
# Distribution names of the import names above, as pyproject spells them.
DASHBOARD_DISTS = {"streamlit", "pandas", "altair"}
STATION_DISTS = {"torch", "torchvision", "timm", "faiss-cpu", "onnx", "onnxruntime", "opencv-python-headless",
                 "matplotlib", "safetensors"}


def _requirements(extra: str | None) -> set[str]:
    """Distribution names one install pulls in directly: the core, plus ``extra`` with its self-references."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    names: set[str] = set()
    pending = list(project["dependencies"]) + (list(extras[extra]) if extra else [])
    while pending:
        requirement = pending.pop()
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)  # type: ignore[union-attr]
        if name.replace("-", "_") == project["name"].replace("-", "_"):
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):  # type: ignore[union-attr]
                pending.extend(extras[inner.strip()])
        else:
            names.add(name.lower())
    return names


def test_station_extra_has_no_dashboard_and_dashboard_extra_no_torch() -> None:
    assert not _requirements(None) & (DASHBOARD_DISTS | STATION_DISTS)
    assert _requirements("station") >= STATION_DISTS
    assert not _requirements("station") & DASHBOARD_DISTS
    assert _requirements("dashboard") >= DASHBOARD_DISTS
    assert not _requirements("dashboard") & STATION_DISTS
    assert _requirements("all") >= (STATION_DISTS | DASHBOARD_DISTS)
    assert _requirements("all") <= _requirements("dev")


def _run_blocking(blocked: tuple[str, ...], body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter in which importing any of ``blocked`` fails, as if not installed."""
    script = textwrap.dedent(
        f"""
        import sys
        # None in sys.modules makes ``import name`` fail and importlib.util.find_spec(name) answer None: not installed.
        for name in {blocked!r}:
            sys.modules[name] = None
        """
    ) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    result = _run_blocking(("streamlit",), "import streamlit\n", tmp_path)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


@pytest.mark.slow
def test_station_runs_without_streamlit(tmp_path: Path) -> None:
    body = f"""
        import inspect_app.cli as cli
        import inspect_app.engine.pipeline, inspect_app.engine.infer, inspect_app.engine.onnx_backend
        import inspect_app.engine.train, inspect_app.engine.anomaly, inspect_app.engine.evaluate
        import inspect_app.data.sources, inspect_app.lifecycle.worker, inspect_app.lifecycle.scheduler
        cli.build_parser()
        code = cli.main(["--db", {f"sqlite:///{(tmp_path / 's.db').as_posix()}"!r}, "sample-data",
                         {str(tmp_path / "samples")!r}, "--seed", "0"])
        assert code in (0, None), code
        print("station clean")
    """
    result = _run_blocking(DASHBOARD_ONLY, body, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "station clean" in result.stdout
    assert any((tmp_path / "samples").rglob("*.png"))


def test_dashboard_server_runs_without_torch(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'd.db').as_posix()}"
    body = f"""
        import pkgutil, importlib
        import inspect_app.cli as cli
        import inspect_app.ui
        for info in pkgutil.walk_packages(inspect_app.ui.__path__, "inspect_app.ui."):
            importlib.import_module(info.name)
        cli.build_parser()
        assert cli.main(["--db", {url!r}, "db", "upgrade"]) in (0, None)
        from inspect_app.storage import Database, queries
        db = Database.open({url!r})
        queries.summary(db)
        # A station command on the dashboard server: one line naming the extra, exit code 2.
        assert cli.main(["--db", {url!r}, "train", "data"]) == 2
        print("dashboard clean")
    """
    result = _run_blocking(STATION_ONLY, body, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dashboard clean" in result.stdout
    assert "error: this command needs 'torch'" in result.stderr
    assert "pip install 'inspect_app[station]'" in result.stderr
    assert "Traceback" not in result.stderr
