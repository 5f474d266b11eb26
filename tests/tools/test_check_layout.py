"""tools/check_layout.py holds the layers: main passes, and an import planted against them fails, lazy and
TYPE_CHECKING imports included."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layout_under_test", ROOT / "tools" / "check_layout.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def planted_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    """A copy of the product's Python files, with the checker pointed at it."""
    for package in ("monitor", "audits"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                                           "*.html", "*.json"))
    checker = load_checker()
    monkeypatch.setattr(checker, "ROOT", tmp_path)
    monkeypatch.setattr(checker, "SIZED", ("monitor", "audits"))
    return checker, tmp_path


def test_main_passes_the_layout_rules() -> None:
    assert load_checker().problems() == []


def test_the_copy_passes_before_anything_is_planted(planted_tree: tuple[ModuleType, Path]) -> None:
    checker, _ = planted_tree
    assert checker.problems() == []


@pytest.mark.parametrize(("path", "source", "expected"), [
    # domain -> interface, as a lazy import inside a function
    ("monitor/registry/planted.py", "def f():\n    from monitor.dashboards import panels\n    return panels\n",
     "monitor.registry.planted (domain) imports monitor.dashboards.panels (interface)"),
    # infrastructure -> domain, only for type checking
    ("monitor/models/planted.py",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from monitor.alerts.lifecycle import Signal\n",
     "monitor.models.planted (infrastructure) imports monitor.alerts.lifecycle (domain)"),
    # the audit engine (domain) -> its own Celery tasks (interface)
    ("audits/planted.py", "import audits.tasks\n", "audits.planted (domain) imports audits.tasks (interface)"),
    # sideways between the web interfaces
    ("monitor/api/planted.py", "from monitor.dashboards.charts import figure\n",
     "the web interfaces (api, dashboards) do not import each other"),
    ("monitor/dashboards/planted.py", "from monitor.admin import site\n",
     "the web interfaces (dashboards, admin) do not import each other"),
    # a module no layer holds
    ("monitor/planted.py", "", "monitor.planted belongs to no layer"),
    # the wiring stands apart
    ("monitor/ingestion/planted.py", "from monitor import settings\n", "imports the wiring module monitor.settings"),
])
def test_an_import_against_the_layers_fails(planted_tree: tuple[ModuleType, Path], path: str, source: str,
                                            expected: str) -> None:
    checker, root = planted_tree
    (root / path).write_text(source)
    found = checker.problems()
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:") and expected in found[0], found[0]


@pytest.mark.parametrize(("path", "source"), [
    ("monitor/api/planted.py", "from monitor.registry.summary import model_summary\n"),  # interface -> domain
    ("monitor/detection/planted.py", "from monitor.alerts.lifecycle import Signal\n"),  # domain sideways
    ("audits/planted.py", "from monitor.platform.severity import Severity\n"),  # domain -> infrastructure
])
def test_imports_down_or_within_a_layer_pass(planted_tree: tuple[ModuleType, Path], path: str, source: str) -> None:
    checker, root = planted_tree
    (root / path).write_text(source)
    assert checker.problems() == []
