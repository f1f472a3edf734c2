"""Progress in logs: plain stage lines when stderr is a file, none with ``--quiet``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from facebench.cli_progress import (
    PlainProgress,
    RichProgress,
    command_progress,
    format_seconds,
    set_quiet,
)

LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _plain(min_steps: int = 3) -> tuple[PlainProgress, io.StringIO, FakeClock]:
    out, clock = io.StringIO(), FakeClock()
    return PlainProgress(out, clock=clock, wall=lambda: "12:00:00", min_steps=min_steps), out, clock


def _lines(out: io.StringIO) -> list[str]:
    return [LINE.sub("", line) for line in out.getvalue().splitlines()]


def test_plain_progress_prints_start_each_tenth_with_estimate_and_end():
    progress, out, clock = _plain()
    for done in range(0, 101):
        progress("fit", done, 100)
        clock.now += 2.0  # 2 s per step
    lines = _lines(out)
    assert lines[0] == "fit: started (100 steps)"
    assert lines[-1] == "fit: done in 3m20s"
    tenths = lines[1:-1]
    assert len(tenths) == 9  # 10 %, ..., 90 %
    # at step 30: 60 s elapsed at 0.5 steps/s, 70 steps left -> 140 s
    assert tenths[2] == "fit: 30% (30/100), 1m00s elapsed, about 2m20s left"
    assert all(LINE.match(raw) for raw in out.getvalue().splitlines())


def test_a_stage_reported_again_after_it_ended_starts_anew():
    progress, out, clock = _plain()
    for _ in range(2):  # the edit loop of two prompts
        for done in range(1, 5):
            progress("edit", done, 4)
            clock.now += 1.0
    lines = _lines(out)
    assert lines.count("edit: started (4 steps)") == 2
    assert lines.count("edit: done in 3s") == 2
    assert "edit: 50% (2/4), 1s elapsed, about 2s left" in lines


def test_short_stages_print_only_start_and_end():
    progress, out, _ = _plain(min_steps=10)
    progress("provisioning weights", 0, 1)
    progress("provisioning weights", 1, 1)
    for done in range(6):
        progress("prompts", done, 5)
    assert _lines(out) == [
        "provisioning weights: started",
        "provisioning weights: done in 0s",
        "prompts: started (5 steps)",
        "prompts: done in 0s",
    ]


def test_format_seconds():
    assert [format_seconds(s) for s in (0.4, 42, 185, 4020)] == ["0s", "42s", "3m05s", "1h07m"]


def test_command_progress_by_destination(monkeypatch, capsys):
    set_quiet(False)
    with command_progress() as progress:  # pytest's captured stderr is not a terminal
        assert isinstance(progress, PlainProgress)
        progress("stage", 0, 1)
        progress("stage", 1, 1)
    assert "stage: started" in capsys.readouterr().err
    monkeypatch.setattr("facebench.cli_progress.stderr_is_terminal", lambda: True)
    with command_progress() as progress:
        assert isinstance(progress, RichProgress)
    capsys.readouterr()
    set_quiet(True)
    try:
        with command_progress() as progress:
            progress("stage", 0, 1)
            progress("stage", 1, 1)
    finally:
        set_quiet(False)
    assert capsys.readouterr().err == ""


def _cli(tmp_path, *args: str) -> tuple[str, str]:
    """Run ``facebench ARGS`` in a child process with stdout and stderr sent to files."""
    env = {**os.environ, "FACEBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out, err = tmp_path / "run.out", tmp_path / "run.log"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.run(
            [sys.executable, "-m", "facebench.cli", *args], stdout=fo, stderr=fe, env=env
        )
    assert proc.returncode == 0, err.read_text()
    return out.read_text(), err.read_text()


@pytest.mark.slow
def test_cli_run_logs_stage_lines_to_a_file_and_none_when_quiet(tmp_path):
    (tmp_path / "one.txt").write_text("a happy face\n")
    run = [
        "run", "--method", "pac", "--prompts", str(tmp_path / "one.txt"),
        "--scene", "synthface:tiny,n_eval=2,n_frames=16,resolution=32", "--budget", "smoke",
        "--clip", "tiny-random", "--no-prepare",
    ]  # fmt: skip
    stdout, log = _cli(tmp_path, *run, "--out", str(tmp_path / "a"))
    lines = log.splitlines()
    assert lines and all(LINE.match(line) for line in lines), log
    for stage in ("scene manipulator", "prompts"):  # the fit (cold cache) and the prompt loop
        assert any(f"] {stage}: started" in line for line in lines), log
        assert any(re.search(rf"\] {stage}: done in \d", line) for line in lines), log
    assert any(re.search(r"scene manipulator: \d+% .* elapsed, about", ln) for ln in lines), log
    assert "\x1b[" not in log  # no terminal control codes (rich's live display) in the log
    assert "1 row(s) written" in stdout

    stdout, log = _cli(tmp_path, "--quiet", *run, "--out", str(tmp_path / "b"))
    assert log == ""
    assert "1 row(s) written" in stdout
