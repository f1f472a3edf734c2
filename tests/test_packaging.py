"""Install layout: methods/, metrics/ and datasets/ install inside facebench, never top-level.

Checks the editable install this suite runs in and a wheel built from the
repository and installed (without dependencies) into a fresh virtual environment.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("methods", "metrics", "datasets")
# packages inside them, each listed in pyproject.toml's `packages`
NESTED = ("metrics/instruments", "metrics/instruments/synthclip", "metrics/instruments/recognizer")

PROBE = """
import importlib.util as u, sys
for name in {subs!r}:
    spec = u.find_spec("facebench." + name)
    assert spec is not None, "facebench." + name + " not installed"
    print(name, spec.origin)
    assert u.find_spec(name) is None, "top-level module " + name + " is installed"
"""


def _probe(python: str, cwd: Path) -> dict[str, str]:
    out = subprocess.run(
        [python, "-c", PROBE.format(subs=SUBPACKAGES)], cwd=cwd, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())


def test_editable_install_maps_subpackages_into_facebench(tmp_path):
    origins = _probe(sys.executable, tmp_path)  # cwd outside the repo: no accidental sys.path hit
    for name in SUBPACKAGES:
        assert Path(origins[name]).resolve() == REPO / name / "__init__.py"


def test_nested_packages_are_listed_in_pyproject():
    listed = (REPO / "pyproject.toml").read_text()
    for name in NESTED:
        assert (REPO / name / "__init__.py").is_file(), name
        assert f'"facebench.{name.replace("/", ".")}"' in listed, f"{name} not in packages"


@pytest.mark.slow
def test_built_wheel_installs_subpackages_inside_facebench(tmp_path):
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("facebench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in SUBPACKAGES:
        assert f"facebench/{name}/__init__.py" in names
        assert not any(n.startswith(f"{name}/") for n in names), f"top-level {name}/ in wheel"
    for name in NESTED:
        assert f"facebench/{name}/__init__.py" in names, f"{name} missing from the wheel"
    assert (
        any(n.startswith("facebench/datasets/prompts/") for n in names)
        or not (REPO / "datasets" / "prompts").exists()
    ), "shipped prompt files missing from the wheel"
    for shipped in (REPO / "metrics" / "instruments" / "weights").iterdir():
        assert f"facebench/metrics/instruments/weights/{shipped.name}" in names, shipped.name
    assert any(n.endswith("entry_points.txt") for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    origins = _probe(python, tmp_path)
    for name in SUBPACKAGES:
        assert str(env_dir) in origins[name]
    script = env_dir / "bin" / "facebench"
    assert script.exists(), "console script facebench not installed"
