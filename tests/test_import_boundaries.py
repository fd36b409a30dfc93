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
# The use cases reach the layers below them that load torch only lazily, from inside the functions that run them (an
# inspection job); never the layers above (lifecycle, cli, ui), not even lazily.
APP_LAZY_ALLOWED = (*INSPECT_APP_ALLOWED["app"], "inspect_app.data", "inspect_app.models", "inspect_app.engine")
FORBIDDEN_MODULES = ("torch", "torchvision", "timm", "inspect_app.data", "inspect_app.models", "inspect_app.engine")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, with whether the import runs at import time (``False``: inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    lazy = {id(inner) for node in ast.walk(tree) if isinstance(node, functions) for inner in ast.walk(node)}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, id(node) not in lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            found.append((node.module or "", id(node) not in lazy))
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _allowed(layer: str, module: str, top_level: bool = True) -> bool:
    top = module.split(".")[0]
    if top == "inspect_app":
        prefixes = INSPECT_APP_ALLOWED[layer] if top_level or layer != "app" else APP_LAZY_ALLOWED
        return _within(module, prefixes)
    return top in sys.stdlib_module_names or top in THIRD_PARTY_ALLOWED or top == "__future__"


def _forbidden_imports(layer: str, files: list[Path], root: Path = REPO_ROOT) -> set[str]:
    """``file: module`` (`` (lazy)``: inside a function) for each import in ``files`` that ``layer`` may not make."""
    return {
        f"{path.relative_to(root).as_posix()}: {module}{'' if top_level else ' (lazy)'}"
        for path in files
        for module, top_level in _imports(path)
        if not _allowed(layer, module, top_level)
    }


@pytest.mark.parametrize("layer", ["storage", "app", "ui"])
def test_layer_imports_only_allowed_modules(layer: str) -> None:
    files = sorted((PACKAGE_DIR / layer).rglob("*.py"))
    assert files, f"no Python files under inspect_app/{layer}"
    offending = _forbidden_imports(layer, files)
    assert not offending, f"forbidden imports: {sorted(offending)}"


@pytest.mark.parametrize(("source", "expected"), [
    # A function-level import of a layer above app (as app.jobs once reached lifecycle.active_model).
    ("def job():\n    from inspect_app.lifecycle.active_model import bind_to_database\n",
     "inspect_app.lifecycle.active_model (lazy)"),
    ("def page():\n    import inspect_app.ui.models\n", "inspect_app.ui.models (lazy)"),
    ("class Command:\n    def run(self):\n        from inspect_app.cli import main\n", "inspect_app.cli (lazy)"),
    ("def fit():\n    import torch\n", "torch (lazy)"),  # the engine's entry points load torch, not app itself
    ("from inspect_app.engine.pipeline import Pipeline\n", "inspect_app.engine.pipeline"),  # engine at import time
    ("try:\n    from inspect_app.lifecycle import worker\nexcept ImportError:\n    worker = None\n",
     "inspect_app.lifecycle"),
])
def test_an_upward_import_in_app_is_caught_even_inside_a_function(tmp_path: Path, source: str, expected: str) -> None:
    module = tmp_path / "inspect_app" / "app" / "added.py"
    module.parent.mkdir(parents=True)
    module.write_text(source, encoding="utf-8")
    assert _forbidden_imports("app", [module], root=tmp_path) == {f"inspect_app/app/added.py: {expected}"}


def test_app_may_reach_the_engine_lazily(tmp_path: Path) -> None:
    module = tmp_path / "inspect_app" / "app" / "added.py"
    module.parent.mkdir(parents=True)
    module.write_text("def job():\n    from inspect_app.engine.hot_swap import bind_to_database\n"
                      "    from inspect_app.data.sources import open_source\n", encoding="utf-8")
    assert _forbidden_imports("app", [module], root=tmp_path) == set()


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
    modules = {module for module, _ in _imports(PACKAGE_DIR / "metrics.py")}
    assert {m.split(".")[0] for m in modules} <= {"__future__", "collections", "typing", "numpy"}, modules
