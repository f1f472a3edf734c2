"""nox sessions: tests, lint, bench, smoke, package, report.

Each session installs ``torch==$FACEBENCH_TORCH`` (default 2.13.0) in the same
pip command as facebench, so on CPU-only machines with a local CPU wheel pip
takes that wheel instead of downloading a CUDA build (see README).
Run ``nox -s tests``; add ``-R`` to reuse an existing session environment.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

TORCH = os.environ.get("FACEBENCH_TORCH", "2.13.0")


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install(f"torch=={TORCH}", "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The unit and integration test suite (well under 15 minutes on 2 CPU cores)."""
    _install(session)
    session.run("facebench", "weights", "install", "lpips")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the layer contract (tests/layers.py)."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", "tests/layers.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks (pytest-benchmark); JSON saved under .benchmarks/."""
    _install(session)
    session.run("facebench", "weights", "install", "lpips")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-json=.benchmarks/latest.json",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session
def smoke(session: nox.Session) -> None:
    """The CLI end to end on a tiny budget (small scene, few steps)."""
    _install(session)
    session.run("facebench", "weights", "install", "lpips")
    out = session.create_tmp()
    session.run("facebench", "doctor")
    session.run("facebench", "methods")
    session.run(
        "facebench",
        "run",
        "--method",
        "pac",
        "--prompts",
        "emotions.txt",
        "--budget",
        "smoke",
        "--out",
        out,
        "--clip",
        "tiny-random",
        "--no-prepare",
        "--scene",
        "synthface:tiny",
    )
    session.run("facebench", "leaderboard", out)


@nox.session
def package(session: nox.Session) -> None:
    """Build the wheel and check its layout in a fresh environment (tests/test_packaging.py)."""
    _install(session)
    session.run("pytest", "tests/test_packaging.py", "-m", "slow or not slow")


@nox.session
def report(session: nox.Session) -> None:
    """The report tests with headless Chromium: installs Debian's chromium when missing
    (as root with apt), so the browser test runs instead of skipping."""
    _install(session)
    session.env["FACEBENCH_INSTALL_CHROMIUM"] = "1"
    session.run("pytest", "tests/test_report.py", "-p", "no:cacheprovider", *session.posargs)
