"""Which rows a run computes: a row's identity (no --seeds in it, the scene's data in it),
one computation per row when runs share an --out, and prompts kept verbatim.

The runs use the sweep tests' cheap setup: the tiny scene at 32x32 with 20 frames and 2
held-out views, a 5-step fit, 1-step edits, the tiny random CLIP and the quick suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from facebench.results import KEY_COLUMNS, read_rows

pytestmark = pytest.mark.usefixtures("one_thread")

SCENE = "synthface:tiny,n_eval=2,resolution=32,n_frames=20"
FAST = ("manipulator.steps=5", "edit.steps=1")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("rows")


@pytest.fixture(autouse=True)
def private_cache(workdir, monkeypatch):
    monkeypatch.setenv("FACEBENCH_CACHE", str(workdir / "cache"))


def _options(workdir: Path, prompts: list[str], out: str, **kw):
    from facebench.runner import RunOptions

    path = workdir / f"{out}.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    base = RunOptions(
        method="pac",
        prompts=str(path),
        scene=SCENE,
        clip="tiny-random",
        out=workdir / out,
        suite="quick",
        budget="smoke",
        device="cpu",
        prepare_missing=False,
        overrides=FAST,
    )
    return replace(base, **kw)


def _keys(path: Path) -> list[tuple[str, ...]]:
    return [tuple(r[c] for c in KEY_COLUMNS) for r in read_rows(path)]


def test_more_seeds_reuse_the_rows_of_fewer(workdir):
    from facebench.runner import run

    one = run(_options(workdir, ["a smiling face"], "seeds", seeds=1))
    two = run(_options(workdir, ["a smiling face"], "seeds", seeds=2))
    assert len(one.rows) == 1
    assert len(two.rows) == 1 and two.rows[0]["seed"] == 1 and two.skipped_rows == 1
    assert two.config_hash == one.config_hash
    keys = _keys(workdir / "seeds" / "leaderboard.csv")
    assert [k[KEY_COLUMNS.index("seed")] for k in keys] == ["0", "1"]


def test_a_scene_whose_data_changed_finds_no_old_rows(workdir, monkeypatch):
    from facebench.runner import run
    from facebench.scene import Scene

    options = _options(workdir, ["a smiling face"], "scene_data")
    first = run(options)
    assert len(first.rows) == 1 and not run(options).rows  # same data: the row is found
    key = Scene.key
    # same spec, other data (what a new SynthFace data version gives): a new key
    monkeypatch.setattr(Scene, "key", lambda self: key(self) + "x")
    changed = run(options)
    assert len(changed.rows) == 1 and changed.skipped_rows == 0
    assert changed.config_hash != first.config_hash
    assert len(read_rows(workdir / "scene_data" / "leaderboard.csv")) == 2


def _key(prompt: str) -> dict:
    return {"method": "pac", "variant": "full", "scene": "s", "prompt_set": "p",
            "prompt": prompt, "seed": 0, "config_hash": "abc"}  # fmt: skip


def test_a_claimed_row_is_put_back_then_waited_for_and_skipped_once_written(tmp_path):
    from facebench.results import ResultStore

    first, second = ResultStore(tmp_path / "lb.csv"), ResultStore(tmp_path / "lb.csv")
    holder = first.claimed([_key("happy")])
    assert next(holder)["prompt"] == "happy"  # the first run holds happy's claim
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.extend(k["prompt"] for k in second.claimed(
        [_key("happy"), _key("sad")])))  # fmt: skip
    waiter.start()
    waiter.join(timeout=2)
    assert waiter.is_alive() and got == ["sad"]  # sad first, then it waits for happy
    first.append({**_key("happy"), "gt_psnr": 1.0})
    holder.close()  # lets the claim go
    waiter.join(timeout=10)
    assert not waiter.is_alive() and got == ["sad"]  # happy was written meanwhile: skipped
    assert not second.claims.exists()  # every claim file removed
    assert list(ResultStore(tmp_path / "lb.csv").claimed([_key("happy")], force=True))


# a child run that logs each row it scores (one line per computation) to argv[2]
CHILD = """
import json, sys
from pathlib import Path
from facebench import runner, suite

log = sys.argv[2]
score = suite.Evaluator.score

def counted(self, prompt, images):
    with open(log, "a") as fh:
        fh.write(prompt + "\\n")
    return score(self, prompt, images)

suite.Evaluator.score = counted
options = json.loads(sys.argv[1])
options["out"] = Path(options["out"])
options["overrides"] = tuple(options["overrides"])
runner.run(runner.RunOptions(**options))
"""


def test_two_runs_on_one_out_compute_each_row_once(workdir):
    from facebench.runner import run

    run(_options(workdir, ["a smiling face"], "warm"))  # the scene model is fitted once
    prompts = [f"a face number {i}" for i in range(4)]
    options = asdict(_options(workdir, prompts, "shared"))
    options.update(out=str(options["out"]), overrides=list(options["overrides"]))
    log = workdir / "computed.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", CHILD, json.dumps(options), str(log)]
    children = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
    computed = log.read_text().splitlines()
    rows = read_rows(workdir / "shared" / "leaderboard.csv")
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)  # every row, once
    assert sorted(computed) == sorted(prompts)  # and computed once, not by both runs
    assert not (workdir / "shared" / ".leaderboard.csv.claims").exists()  # claims removed


def test_a_prompt_that_looks_like_a_formula_is_kept_verbatim(workdir):
    from facebench.runner import run

    prompts = ['=cmd|"/c calc"!A1', "+1+1", "-2", "@SUM(A1)", '=HYPERLINK("http://x", "y")']
    summary = run(_options(workdir, prompts, "formula"))
    rows = read_rows(workdir / "formula" / "leaderboard.csv")
    assert [r["prompt"] for r in rows] == prompts == [r["prompt"] for r in summary.rows]
    raw = (workdir / "formula" / "leaderboard.csv").read_text(encoding="utf-8")
    assert "'=cmd" not in raw and "=cmd|" in raw  # stored as written, no escape added


def test_the_summary_csv_escapes_formulas_and_the_leaderboard_keeps_them(tmp_path):
    import pandas as pd

    from facebench.leaderboard import write_leaderboard
    from facebench.results import ResultStore

    store = ResultStore(tmp_path / "leaderboard.csv")
    evil = "=cmd|'/c calc'!A1"
    for i, name in enumerate([evil, "@SUM(A1)", "-x", "plain"]):
        row = {**_key(f"p{i}"), "prompt_set": name, "prompt": evil, "clip_score": -0.5}
        store.append(row)
    csv_path, _, table = write_leaderboard(tmp_path)
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert sorted(raw["prompt_set"]) == ["'-x", "'=cmd|'/c calc'!A1", "'@SUM(A1)", "plain"]
    assert set(raw["clip_score_mean"]) == {"-0.5"}  # numbers untouched
    assert evil in set(table["prompt_set"])  # the table the report shows is not escaped
    assert [r["prompt"] for r in read_rows(store.path)] == [evil] * 4  # stored verbatim


def test_a_claims_folder_removed_while_it_is_made_is_made_again(tmp_path, monkeypatch):
    # another run removes the empty claims folder between mkdir's os.mkdir (which found
    # it) and its check that it is a folder: pathlib then raises FileExistsError
    from pathlib import Path

    from facebench.results import _claim

    real_mkdir, raced = Path.mkdir, []

    def racing_mkdir(self, *a, **k):
        if not raced:
            raced.append(self)
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    lock = tmp_path / ".claims" / "row.lock"
    with _claim(lock, wait=False) as held:
        assert held and lock.exists()
    assert raced and not lock.parent.exists()
    # a file where the folder should be is an error, not a loop
    (tmp_path / "blocked").write_text("x")
    with pytest.raises(FileExistsError), _claim(tmp_path / "blocked" / "row.lock", wait=False):
        pass
