"""``facebench sweep``: cells resume by row key, one writer, retries, local vs Ray, a killed worker.

The grid is tiny (the tiny scene at 32x32 with 20 frames and 2 held-out views, the smoke
budget cut to a 5-step fit and 1-step edits, the tiny random CLIP, 2 prompts): the tests
check the sweep's bookkeeping, not the numbers' meaning. The scene model is fitted once
for the module.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from facebench.cli import main
from facebench.errors import FacebenchError
from facebench.results import KEY_COLUMNS, read_rows
from facebench.sweep import SweepSpec, load_spec, sweep
from facebench.sweep_backends import InProcess, LocalProcesses, Resources

PROMPTS = ["a happy face", "a sad face"]
SCENE = "synthface:tiny,n_eval=2,resolution=32,n_frames=20"
FAST = ("manipulator.steps=5", "edit.steps=1")
# metrics that are a function of the renders; time, memory and timestamps are not
COMPARED = ("clip_score", "clip_r_precision", "gt_psnr", "gt_psnr_neutral", "locality")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    (d / "two.txt").write_text("\n".join(PROMPTS) + "\n")
    targets = {p: {"emotion": p.split()[1]} for p in PROMPTS}
    (d / "two.targets.json").write_text(json.dumps(targets))
    return d


@pytest.fixture(autouse=True)
def private_cache(workdir, monkeypatch):
    monkeypatch.setenv("FACEBENCH_CACHE", str(workdir / "cache"))


def _spec(workdir: Path, out: str, **kw) -> SweepSpec:
    base = dict(
        methods=["pac"],
        prompts=[str(workdir / "two.txt")],
        scenes=[SCENE],
        overrides=[FAST],
        clip="tiny-random",
        budget="smoke",
        suite="quick",
        device="cpu",
        prepare_missing=False,
        out=workdir / out,
        threads=1,
    )
    return SweepSpec(**{**base, **kw})


def _keys(rows) -> list[tuple[str, ...]]:
    return sorted(tuple(str(r[c]) for c in KEY_COLUMNS) for r in rows)


def _scores(path: Path) -> dict[tuple, tuple]:
    return {
        tuple(r[c] for c in KEY_COLUMNS): tuple(round(float(r[m]), 4) for m in COMPARED if r.get(m))
        for r in read_rows(path)
    }


@pytest.fixture(scope="module")
def local_run(workdir):
    """The grid on the local backend in this process: (summary, CSV path)."""
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse fixture is not up yet
        mp.setenv("FACEBENCH_CACHE", str(workdir / "cache"))
        summary = sweep(_spec(workdir, "local"), log=lines.append)
    return summary, workdir / "local" / "leaderboard.csv", lines


def test_local_sweep_writes_each_cell_once_and_resumes(workdir, local_run):
    summary, csv, lines = local_run
    rows = read_rows(csv)
    assert summary.cells == summary.done == len(PROMPTS) and not summary.failed
    assert len(rows) == len(PROMPTS) and len(set(_keys(rows))) == len(rows)
    assert lines[0].startswith("cells: 0/2 done") and lines[-1].startswith("cells: 2/2 done")
    renders = workdir / "local" / "renders"
    assert len(list(renders.rglob("*-seed0.png"))) == len(PROMPTS)  # the driver copied them
    assert len(list(renders.rglob("*-seed0.gif"))) == len(PROMPTS)
    again = sweep(_spec(workdir, "local"))
    assert again.done == 0 and again.skipped == len(PROMPTS)
    assert read_rows(csv) == rows  # nothing appended twice


def test_sweep_and_run_key_rows_alike(workdir, local_run, capsys):
    """A cell's row is the row `facebench run` makes: same key, so each skips the other's."""
    main(
        [
            "run",
            "--method",
            "pac",
            "--prompts",
            str(workdir / "two.txt"),
            "--scene",
            SCENE,
            "--clip",
            "tiny-random",
            "--budget",
            "smoke",
            "--suite",
            "quick",
            "--device",
            "cpu",
            "--no-prepare",
            *[a for s in FAST for a in ("--set", s)],
            "--out",
            str(workdir / "local"),
        ]
    )
    out = capsys.readouterr().out
    assert "0 row(s) written, 2 already present" in out
    assert "report: " in out and (workdir / "local" / "report.html").is_file()


def test_sweep_command_resumes_and_writes_the_report(workdir, local_run, capsys):
    """The CLI on the finished grid: nothing to run, the summary line, and the report with
    each cell's edit and the ground-truth target the workers rendered."""
    from tests.test_report import _Page

    main(
        [
            "sweep",
            "--method",
            "pac",
            "--prompts",
            str(workdir / "two.txt"),
            "--scene",
            SCENE,
            "--clip",
            "tiny-random",
            "--budget",
            "smoke",
            "--suite",
            "quick",
            "--device",
            "cpu",
            "--no-prepare",
            *[a for s in FAST for a in ("--set", s)],
            "--out",
            str(workdir / "local"),
        ]
    )
    out = capsys.readouterr().out
    assert "2 cell(s): 0 run, 2 already present, 0 failed" in out
    assert f"report: {workdir / 'local' / 'report.html'}" in out
    page = _Page()
    page.feed((workdir / "local" / "report.html").read_text())
    kinds = [kind for kind, _ in page.images]
    for kind in ("neutral", "edit", "target", "turntable"):
        assert kinds.count(kind) == len(PROMPTS), kind


def test_a_cell_does_not_render_a_target_the_output_has(workdir, local_run, monkeypatch):
    """The driver tells a cell which ground-truth targets ``OUT`` has: the runner skips
    rendering them and the cell returns only its own renders."""
    import facebench.artifacts
    from facebench.report import target_image
    from facebench.sweep import _task, plan
    from facebench.sweep_tasks import cell_task

    saved = []
    save_grid = facebench.artifacts.save_grid
    monkeypatch.setattr(
        facebench.artifacts,
        "save_grid",
        lambda path, rows: saved.append(path) or save_grid(path, rows),
    )
    options = plan(_spec(workdir, "x"))[0][0].options
    target = str(target_image(Path(), SCENE, "two", PROMPTS[0]))
    task = {**_task(_spec(workdir, "x"), options, [(PROMPTS[0], 0)]), "present": [target]}
    result = cell_task(task)
    assert [r["prompt"] for r in result["rows"]] == [PROMPTS[0]]
    assert any(str(p).endswith("-seed0.png") for p in saved)  # the spy sees the runner's saves
    assert target not in result["files"] and not any("targets" in str(p) for p in saved)
    assert sum(name.endswith((".png", ".gif")) for name in result["files"]) == 2
    # (without "present" the cell renders and returns it: the report test above sees it)


class _Flaky(InProcess):
    """In-process, but a cell of ``always`` fails every time and one of ``once`` fails once."""

    def __init__(self, always: str, once: str):
        super().__init__(Resources(threads=1))
        self.always, self.once, self.calls = always, once, []

    def submit(self, fn, task):
        only = task["options"]["only"]
        prompt = only[0][0] if only else None
        self.calls.append(prompt)
        if prompt == self.always or (prompt == self.once and self.calls.count(prompt) == 1):

            def boom(task):
                raise RuntimeError(f"planted failure for {prompt}\nsecond line")

            return super().submit(boom, task)
        return super().submit(fn, task)


def test_failed_cell_is_retried_then_reported_and_the_sweep_goes_on(workdir, local_run):
    backend = _Flaky(always=PROMPTS[0], once=PROMPTS[1])
    summary = sweep(_spec(workdir, "flaky", retries=2), backend=backend)
    assert backend.calls.count(PROMPTS[0]) == 3  # first try + 2 retries
    assert backend.calls.count(PROMPTS[1]) == 2  # failed once, then done
    assert summary.done == 1 and len(summary.failed) == 1
    cell, error = summary.failed[0]
    assert repr(PROMPTS[0]) in cell and error == f"RuntimeError: planted failure for {PROMPTS[0]}"
    rows = read_rows(workdir / "flaky" / "leaderboard.csv")
    assert [r["prompt"] for r in rows] == [PROMPTS[1]]


def test_sweep_file_and_bad_input(workdir, tmp_path, capsys):
    good = tmp_path / "grid.toml"
    good.write_text(
        'methods = "pac"\nprompts = ["emotions.txt"]\nvariants = ["full", "no-tv"]\n'
        'seeds = 2\noverrides = [[], ["edit.steps=3"]]\nprepare = false\n'
    )
    spec = load_spec(good)
    assert spec["methods"] == ["pac"] and spec["variants"] == ["full", "no-tv"]
    assert spec["overrides"] == [(), ("edit.steps=3",)] and spec["prepare_missing"] is False
    bad = tmp_path / "bad.toml"
    for text, says in [
        ("methods = ['pac']\nmethod = 'x'\n", "unknown key"),
        ("methods = [1]\n", "list of strings"),
        ("overrides = ['a=1']\n", "list of lists"),
        ("methods = [\n", "not a TOML"),
    ]:
        bad.write_text(text)
        with pytest.raises(FacebenchError, match=says):
            load_spec(bad)
    for argv, says in [
        (["sweep", str(bad)], "not a TOML"),
        (["sweep", "--method", "pac"], "--prompts"),
        (
            ["sweep", "--method", "nope", "--prompts", "emotions.txt", "--clip", "tiny-random"],
            "nope",
        ),
        (["sweep", str(good), "--set", "edit.bogus=1", "--clip", "tiny-random"], "--set"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and says in err[0], (argv, err)
    assert not (tmp_path / "out" / "leaderboard.csv").exists()


def test_ray_backend_without_ray_says_how_to_install(workdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "sweep",
                "--method",
                "pac",
                "--prompts",
                str(workdir / "two.txt"),
                "--scene",
                SCENE,
                "--clip",
                "tiny-random",
                "--budget",
                "smoke",
                "--backend",
                "ray",
                "--out",
                str(workdir / "noray"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert "pip install 'facebench[ray]'" in err[0]


def test_local_processes_start_a_new_pool_when_a_worker_dies():
    """A process per slot: a worker that dies fails its task (the driver retries it) and the
    next task runs in a fresh pool. (Plain functions: no torch in the workers.)"""
    backend = LocalProcesses(2, Resources(threads=1))
    try:
        assert backend.submit(abs, -3).result(timeout=60) == 3
        pids = backend.pids()
        assert len(pids) >= 1 and os.getpid() not in pids
        with pytest.raises(cf.process.BrokenProcessPool):
            backend.submit(os._exit, 1).result(timeout=60)  # the worker exits at once
        assert backend.submit(abs, -4).result(timeout=60) == 4
        assert not set(backend.pids()) & set(pids)  # new processes
    finally:
        backend.close()


# -- Ray ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 worker CPUs for the module (skipped without Ray)."""
    ray = pytest.importorskip(
        "ray", reason="Ray is an optional extra: pip install 'facebench[ray]'"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _cell_workers() -> list[int]:
    """Processes that run a sweep cell right now (Ray titles a busy worker ray::<task>)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::cell_task"):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_ray_sweep_gives_the_local_rows_even_when_a_worker_is_killed(
    workdir, local_run, ray_cluster
):
    """Two Ray workers run the grid; one is killed (SIGKILL) in the middle of a cell. The
    cell is retried, and the rows are the local backend's, each exactly once."""
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            busy = _cell_workers()
            if busy:
                time.sleep(0.3)  # inside the cell, not at its first line
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    lines: list[str] = []
    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    summary = sweep(_spec(workdir, "ray", backend="ray", retries=2), log=lines.append)
    killer.join(timeout=1)
    assert killed, "no cell worker was seen running"
    assert any(line.startswith("retrying") for line in lines), lines
    assert summary.done == len(PROMPTS) and not summary.failed
    ray_csv, local_csv = workdir / "ray" / "leaderboard.csv", local_run[1]
    assert _keys(read_rows(ray_csv)) == _keys(read_rows(local_csv))  # every row exactly once
    assert _scores(ray_csv) == _scores(local_csv)
