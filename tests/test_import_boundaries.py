"""Import boundaries: storage, the use cases (app) and the dashboard never load torch or the ML layers."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import inspect_app

PACKAGE_DIR = Path(inspect_app.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
THIRD_PARTY_ALLOWED = {"sqlalchemy", "alembic", "streamlit", "pandas", "altair", "argon2", "croniter", "PIL", "numpy"}
# redact: the URL masking helper (stdlib only), shared by messages of every layer.
BASE_ALLOWED = (
    "inspect_app.config", "inspect_app.records", "inspect_app.errors", "inspect_app.redact", "inspect_app.storage",
)
# What each torch-free layer may import from the package (imports run one way, down the layers).
INSPECT_APP_ALLOWED = {
    "storage": BASE_ALLOWED,
    "app": (*BASE_ALLOWED, "inspect_app.app"),
    # inspect_app.metrics: the numpy ROC and rates engine wrote the model cards with (torch-free, checked below).
    "ui": (*BASE_ALLOWED, "inspect_app.app", "inspect_app.ui", "inspect_app.metrics"),
}
FORBIDDEN_MODULES = ("torch", "torchvision", "timm", "inspect_app.data", "inspect_app.models", "inspect_app.engine")


def _imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module or "")
    return names


def _allowed(layer: str, module: str) -> bool:
    top = module.split(".")[0]
    if top == "inspect_app":
        return any(module == prefix or module.startswith(prefix + ".") for prefix in INSPECT_APP_ALLOWED[layer])
    return top in sys.stdlib_module_names or top in THIRD_PARTY_ALLOWED or top == "__future__"


@pytest.mark.parametrize("layer", ["storage", "app", "ui"])
def test_layer_imports_only_allowed_modules(layer: str) -> None:
    files = sorted((PACKAGE_DIR / layer).rglob("*.py"))
    assert files, f"no Python files under inspect_app/{layer}"
    # The use cases reach the engine only lazily, from inside the functions that run it (an inspection job).
    offending = {
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for path in files
        for module in _imported_modules(path, top_level_only=layer == "app")
        if not _allowed(layer, module)
    }
    assert not offending, f"forbidden imports: {sorted(offending)}"


def test_storage_and_dashboard_run_without_loading_torch(tmp_path: Path) -> None:
    # A fresh interpreter: this test process may already hold torch from other test modules.
    script = textwrap.dedent(
        f"""
        import sys
        import inspect_app.storage
        import inspect_app.storage.db, inspect_app.storage.queries, inspect_app.storage.repository
        import inspect_app.storage.tables
        import inspect_app.ui, inspect_app.ui.app, inspect_app.ui.drift, inspect_app.ui.shifts
        import pkgutil, importlib, inspect_app.app
        for info in pkgutil.iter_modules(inspect_app.app.__path__):
            importlib.import_module("inspect_app.app." + info.name)
        from inspect_app.storage import Database, queries
        db = Database.open({f"sqlite:///{(tmp_path / 'x.db').as_posix()}"!r})
        queries.summary(db); queries.defect_rate_over_time(db, "day")
        loaded = [m for m in {FORBIDDEN_MODULES!r} if m in sys.modules]
        assert "torch" not in sys.modules, loaded
        assert not loaded, loaded
        print("clean")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("clean")


def test_shared_metrics_module_needs_only_numpy() -> None:
    modules = _imported_modules(PACKAGE_DIR / "metrics.py")
    assert {m.split(".")[0] for m in modules} <= {"__future__", "collections", "typing", "numpy"}, modules
