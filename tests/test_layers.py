"""The layer contract (tests/layers.py): the repository keeps it, and an upward import is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from layers import check_layers, check_source, layer_of, module_name

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_has_no_layer_violations():
    violations = check_layers(ROOT)
    assert not violations, "\n".join(violations)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_an_upward_import_in_the_core_is_reported(tmp_path):
    root = _tree(tmp_path, {"facebench/evil.py": "from facebench.methods import pac\n"})
    assert check_layers(root) == [
        "facebench/evil.py:1: core module facebench.evil imports methods (facebench.methods)"
    ]


@pytest.mark.parametrize(
    ("rel", "source", "layer"),
    [
        # in a function, relative, `from package import submodule`, importlib with a literal
        ("facebench/a.py", "def f():\n    import facebench.metrics.base\n", "metrics"),
        ("facebench/render/b.py", "from .. import datasets\n", "datasets"),
        ("facebench/c.py", "from facebench import datasets\n", "datasets"),
        (
            "facebench/d.py",
            "import importlib\nimportlib.import_module('facebench.methods')\n",
            "methods",
        ),
        ("datasets/e.py", "from facebench.metrics.base import make_metric\n", "metrics"),
        ("methods/f/__init__.py", "from ...datasets.facs import AU_NAMES\n", "datasets"),
        ("methods/g.py", "from facebench.datasets import facs\n", "datasets"),
    ],
)
def test_every_import_form_is_seen(tmp_path, rel, source, layer):
    found = check_layers(_tree(tmp_path, {rel: source}))
    assert len(found) == 1 and f"imports {layer} (" in found[0], found


def test_allowed_imports_pass():
    assert check_source("from facebench.datasets import facs\n", "facebench.metrics.x") == []
    assert check_source("from . import base\n", "facebench.methods.pac", is_init=True) == []
    assert check_source("import torch\nfrom facebench.errors import E\n", "facebench.runner") == []
    # a module-name string handed to a registry is not an import
    assert check_source("R = Registry('m', 'g', ('facebench.methods',))\n", "facebench.r") == []


def test_module_names_follow_the_package_dir_remap(tmp_path):
    f = tmp_path / "methods" / "pac" / "anchors.py"
    assert module_name(f, tmp_path) == ("facebench.methods.pac.anchors", False)
    assert module_name(tmp_path / "datasets" / "__init__.py", tmp_path) == (
        "facebench.datasets",
        True,
    )
    assert layer_of("facebench.render.cameras") == "core" and layer_of("torch") is None
