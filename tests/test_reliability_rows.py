"""Which rows a run computes: a row's identity (no --seeds in it, the scene's data in it),
one computation per row when runs share an --out, and prompts kept verbatim.

The runs use the sweep tests' cheap setup: the tiny scene at 32x32 with 20 frames and 2
held-out views, a 5-step fit, 1-step edits, the tiny random CLIP and the quick suite.
"""

from __future__ import annotations

from dataclasses import replace
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


def test_a_prompt_that_looks_like_a_formula_is_kept_verbatim(workdir):
    from facebench.runner import run

    prompts = ['=cmd|"/c calc"!A1', "+1+1", "-2", "@SUM(A1)", '=HYPERLINK("http://x", "y")']
    summary = run(_options(workdir, prompts, "formula"))
    rows = read_rows(workdir / "formula" / "leaderboard.csv")
    assert [r["prompt"] for r in rows] == prompts == [r["prompt"] for r in summary.rows]
    raw = (workdir / "formula" / "leaderboard.csv").read_text(encoding="utf-8")
    assert "'=cmd" not in raw and "=cmd|" in raw  # stored as written, no escape added
