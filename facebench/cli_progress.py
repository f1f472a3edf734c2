"""Progress for CLI commands: rich bars on a terminal, plain lines in a log, nothing when quiet.

Methods, the runner and the instruments report long loops through one callback,
``progress(task, done, total)`` (:data:`facebench.method.Progress`). A command wraps its work
in :func:`command_progress`, which hands it the callback that suits where stderr goes:

* a terminal: rich's live bars (:class:`RichProgress`);
* a file or a pipe (``facebench run ... > run.log 2>&1``, a cluster job, CI): plain lines
  (:class:`PlainProgress`) -- each stage as it starts and ends, and every ~10 % of a long
  loop with the elapsed time and an estimate of the time left; a live display would write
  nothing readable there;
* ``facebench --quiet ...``: nothing (:func:`set_quiet`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[str, int, int], None]

_settings = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """``facebench --quiet``: commands report no progress at all (results are still printed)."""
    _settings["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _settings["quiet"]


def progress_bars(console: Console | None = None) -> Progress:
    """The bars every long-running facebench command shows on a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class RichProgress:
    """Adapts ``progress(task, done, total)`` (:data:`facebench.method.Progress`) to rich bars."""

    def __init__(self, bars: Progress):
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.bars.add_task(task, total=total)
        self.bars.update(self.tasks[task], completed=done, total=total)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h07m``: short durations for log lines."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _Stage:
    start: float  # clock time the stage started
    first: int  # ``done`` at its first report (a resumed loop starts past 0)
    done: int
    tenth: int  # last tenth of the loop reported
    finished: bool = False


class PlainProgress:
    """``progress(task, done, total)`` as plain lines for logs.

    A task's first call prints ``TASK: started``; each new tenth of its loop prints
    ``TASK: 40% (400/1000), 1m02s elapsed, about 1m33s left`` (the estimate from the rate
    since the stage started); ``done >= total`` prints ``TASK: done in 2m35s``. A task that
    reports again after it finished, or counts backwards, is a new run of that stage (the
    edit loop of the next prompt, say). Lines start with the wall-clock time. Only loops of
    at least ``min_steps`` get the ~10 % lines; shorter stages print their start and end.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = lambda: time.strftime("%H:%M:%S"),
        min_steps: int = 10,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.wall = wall
        self.min_steps = min_steps
        self.stages: dict[str, _Stage] = {}

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"[{self.wall()}] {text}", file=stream, flush=True)

    def __call__(self, task: str, done: int, total: int) -> None:
        now = self.clock()
        stage = self.stages.get(task)
        if stage is None or stage.finished or done < stage.done:
            tenth = _tenth(done, total)
            stage = self.stages[task] = _Stage(start=now, first=done, done=done, tenth=tenth)
            self._print(f"{task}: started" + (f" ({total} steps)" if total > 1 else ""))
        stage.done = done
        if total <= 0 or done >= total:
            stage.finished = True
            self._print(f"{task}: done in {format_seconds(now - stage.start)}")
            return
        tenth = _tenth(done, total)
        if tenth <= stage.tenth or total < self.min_steps:
            return
        stage.tenth = tenth
        elapsed = now - stage.start
        rate = (done - stage.first) / elapsed if elapsed > 0 else 0.0
        left = f", about {format_seconds((total - done) / rate)} left" if rate > 0 else ""
        self._print(
            f"{task}: {100 * done // total}% ({done}/{total}), "
            f"{format_seconds(elapsed)} elapsed{left}"
        )


def _tenth(done: int, total: int) -> int:
    return math.floor(10 * done / total) if total > 0 else 10


def _no_progress(task: str, done: int, total: int) -> None:
    return None


def stderr_is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def command_progress() -> Iterator[ProgressFn]:
    """The progress callback a command hands its work (see the module docstring)."""
    if is_quiet():
        yield _no_progress
    elif stderr_is_terminal():
        with progress_bars(Console(stderr=True)) as bars:
            yield RichProgress(bars)
    else:
        yield PlainProgress()
