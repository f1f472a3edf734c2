"""CLI basics: version, listing commands, help with examples, one-line usage errors."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from facebench import __version__


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facebench.cli", *args], capture_output=True, text=True
    )


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"facebench {__version__}"


@pytest.mark.parametrize("command", ["methods", "metrics", "datasets"])
def test_listing_commands_print_a_table(command):
    out = run_cli(command)
    assert out.returncode == 0, out.stderr
    assert "name" in out.stdout and "capabilities" in out.stdout


def test_doctor_reports_torch_and_device():
    import torch

    out = run_cli("doctor")
    assert out.returncode == 0, out.stderr
    assert torch.__version__ in out.stdout
    assert "cuda available" in out.stdout


@pytest.mark.parametrize(
    "args", [["no-such-command"], ["methods", "--no-such-option"], ["--bogus"]]
)
def test_usage_errors_are_one_line_exit_2(args):
    out = run_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facebench: error:")


def _help_examples(text: str | None) -> list[list[str]]:
    """The argv after ``facebench`` of every example line in a help text.

    An example line is one that starts with ``facebench `` once stripped of its indent and of
    an ``Example:`` / ``Examples:`` label (the forms the helps use).
    """
    found = []
    for line in (text or "").splitlines():
        s = line.strip()
        for label in ("Examples:", "Example:"):
            s = s.removeprefix(label).strip()
        if s.startswith("facebench "):
            found.append(shlex.split(s)[1:])
    return found


def _parse_example(argv: list[str]) -> list[str]:
    """Parse ``facebench ARGV`` as the CLI would, without running it; return the command path.

    Missing required arguments, unknown options and values of the wrong type raise click's
    usage errors.
    """
    import typer

    from facebench.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("facebench", list(argv))
    path, rest = [], [*ctx._protected_args, *ctx.args]
    while hasattr(command, "commands") and rest:
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = [*ctx._protected_args, *ctx.args]
    assert not rest, f"unparsed arguments {rest}"
    return path


def _all_commands() -> list[tuple[list[str], object]]:
    import typer

    from facebench.cli import app

    found = []
    for name, command in typer.main.get_command(app).commands.items():
        found.append(([name], command))
        for sub_name, sub in getattr(command, "commands", {}).items():
            found.append(([name, sub_name], sub))
    return found


def test_every_command_help_shows_a_runnable_example():
    for path, command in _all_commands():
        label = "facebench " + " ".join(path)
        examples = _help_examples(command.help)
        assert examples, f"{label} --help has no example line"
        for argv in examples:
            try:
                parsed = _parse_example(argv)
            except Exception as exc:  # click's usage errors: the example would not run
                pytest.fail(f"{label} --help example `facebench {shlex.join(argv)}`: {exc}")
            assert parsed[: len(path)] == path, f"{label} --help shows an example of {parsed}"


def test_example_parser_rejects_broken_command_lines():
    assert _help_examples("Run it.\n\nExamples:\n\n  facebench run --method pac\n") == [
        ["run", "--method", "pac"]
    ]
    assert _help_examples("Example: facebench weights install lpips") == [
        ["weights", "install", "lpips"]
    ]
    assert _help_examples("loads like one (facebench prepare check x)") == []
    assert _parse_example(["prepare", "check", "synthface:tiny"]) == ["prepare", "check"]
    for broken in (
        ["run", "--methd", "pac"],  # unknown option
        ["config"],  # missing METHOD
        ["reanimate", "--method", "flame-nerf", "--n-drive", "four"],  # wrong type
        ["prepare", "synthface", "--out", "x", "--format", "obj"],  # not a choice
        ["prepare", "train"],  # no such command
    ):
        with pytest.raises(Exception):  # noqa: B017 - click's and typer's classes differ
            _parse_example(broken)


def test_reanimate_refuses_a_method_that_cannot_reanimate(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "facebench.cli", "reanimate", "--method", "pac", "--out", tmp_path],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("facebench: error: method 'pac' cannot re-animate")
    assert len(out.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_a_signal_mid_run_ends_with_one_line_and_its_exit_code(tmp_path, sig, code, word):
    """Ctrl-C (130) and SIGTERM (143) during a run: one stderr line, no traceback."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "out"
    # --quiet: no progress lines in the piped stderr, so the signal's line is the only one
    argv = ["facebench", "--quiet", "run", "--method", "pac", "--prompts", "emotions.txt"]
    argv += ["--budget", "smoke", "--scene", "synthface:tiny", "--clip", "tiny-random"]
    argv += ["--no-prepare", "--out", str(out)]
    env = {**os.environ, "FACEBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # a background child of a non-interactive shell ignores SIGINT: give it the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (out / "runs").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the run has started its work (its config is written)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == code
    assert len(lines) == 1 and lines[0].startswith(f"facebench: {word};"), lines
    assert "rerun the same command to resume" in lines[0]
