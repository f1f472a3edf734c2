"""Registry: decorators, duplicates, entry-point discovery from a real distribution."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facebench.registry import Registry, RegistryError


def test_decorator_registers_with_docstring_description_and_capabilities():
    reg: Registry = Registry("thing", "facebench.test-things")

    @reg.register("alpha", capabilities=("fit_scene",))
    class Alpha:
        """First line describes it.

        More text.
        """

    entry = reg.get("alpha")
    assert entry.obj is Alpha
    assert entry.description == "First line describes it."
    assert entry.capabilities == ("fit_scene",)
    assert reg.names() == ["alpha"]


def test_duplicate_name_is_a_clear_error():
    reg: Registry = Registry("thing", "facebench.test-things")
    reg.register("x", object())
    with pytest.raises(RegistryError, match="duplicate thing name 'x'"):
        reg.register("x", object())


def test_unknown_name_lists_known():
    reg: Registry = Registry("thing", "facebench.test-things")
    reg.register("known", object())
    with pytest.raises(RegistryError, match="unknown thing 'nope'; known: known"):
        reg.get("nope")


def _write_distribution(root: Path, dist: str, module: str, body: str, entry_points: str) -> None:
    """A real installed distribution: a module plus ``<dist>-1.0.dist-info`` with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (info / "RECORD").write_text("")


PLUGIN = """
    class MyMethod:
        '''A third-party method used to test discovery.'''
        capabilities = ("edit_text",)
"""


def test_entry_point_discovery_from_distribution_on_sys_path(tmp_path, monkeypatch):
    _write_distribution(
        tmp_path,
        "fb_plugin",
        "fb_plugin_mod",
        PLUGIN,
        "[facebench.methods]\nthird-party = fb_plugin_mod:MyMethod\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("method", "facebench.methods")
    entry = reg.get("third-party")
    assert entry.obj.__name__ == "MyMethod"
    assert entry.description == "A third-party method used to test discovery."
    assert entry.capabilities == ("edit_text",)
    assert "fb_plugin" in entry.source


def test_broken_plugin_names_the_plugin(tmp_path, monkeypatch):
    _write_distribution(
        tmp_path,
        "fb_broken",
        "fb_broken_mod",
        "raise ImportError('needs a missing library')\n",
        "[facebench.metrics]\nbroken-metric = fb_broken_mod:Thing\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry = Registry("metric", "facebench.metrics")
    with pytest.raises(RegistryError, match="broken-metric.*fb_broken.*needs a missing library"):
        reg.load()


def _cli(args: list[str], extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "facebench.cli", *args], capture_output=True, text=True, env=env
    )


def test_cli_lists_third_party_plugin_and_reports_broken_one(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _write_distribution(
        good,
        "fb_plugin",
        "fb_plugin_mod",
        PLUGIN,
        "[facebench.methods]\nthird-party = fb_plugin_mod:MyMethod\n",
    )
    out = _cli(["methods"], good)
    assert out.returncode == 0, out.stderr
    assert "third-party" in out.stdout

    bad = tmp_path / "bad"
    bad.mkdir()
    _write_distribution(
        bad,
        "fb_broken",
        "fb_broken_mod",
        "raise ImportError('boom')\n",
        "[facebench.methods]\nbroken = fb_broken_mod:Thing\n",
    )
    out = _cli(["methods"], bad)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "broken" in out.stderr and "boom" in out.stderr
