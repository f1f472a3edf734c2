"""Results CSV (atomic, resumable) and leaderboard aggregation."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

from facebench.errors import FacebenchError
from facebench.leaderboard import aggregate, to_markdown, write_leaderboard
from facebench.results import ResultStore, read_rows


def _row(method, prompt, seed, value, variant="full", clip="synthclip"):
    return {
        "method": method,
        "variant": variant,
        "scene": "synthface:default",
        "prompt_set": "emotions",
        "prompt": prompt,
        "seed": seed,
        "config_hash": "abc",
        "backend_clip": clip,
        "gt_psnr": value,
        "time_s": 1.0,
    }


def test_append_skips_existing_key_and_replace_overwrites(tmp_path):
    store = ResultStore(tmp_path / "leaderboard.csv")
    store.append(_row("pac", "happy", 0, 20.0))
    store.append(_row("pac", "happy", 0, 99.0))  # same key: skipped
    assert [r["gt_psnr"] for r in read_rows(store.path)] == ["20.0"]
    store.append(_row("pac", "happy", 0, 30.0), replace=True)
    assert [r["gt_psnr"] for r in read_rows(store.path)] == ["30.0"]
    reopened = ResultStore(store.path)
    assert reopened.has(_row("pac", "happy", 0, 0.0))
    assert not reopened.has(_row("pac", "happy", 1, 0.0))


def test_interrupted_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "leaderboard.csv")
    store.append(_row("pac", "happy", 0, 20.0))
    before = store.path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):  # a new column: the file is rewritten
        store.append({**_row("pac", "sad", 0, 21.0), "identity": 0.5})
    assert store.path.read_bytes() == before
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".leaderboard.csv.lock", "leaderboard.csv"]  # no temp file left


def test_two_stores_on_one_file_keep_both_rows(tmp_path):
    # two `facebench run`s writing to one --out: each opened the CSV before the other wrote
    first = ResultStore(tmp_path / "leaderboard.csv")
    second = ResultStore(tmp_path / "leaderboard.csv")
    first.append(_row("pac", "happy", 0, 20.0))
    second.append(_row("hypernerf-i", "happy", 0, 21.0))
    second.append(_row("pac", "happy", 0, 99.0))  # first's row is seen: skipped
    rows = read_rows(first.path)
    assert sorted((r["method"], r["gt_psnr"]) for r in rows) == [
        ("hypernerf-i", "21.0"),
        ("pac", "20.0"),
    ]


def test_result_files_get_plain_open_permissions(tmp_path):
    # mkstemp makes 0600 files; a shared results directory needs what open() gives
    old = os.umask(0o022)
    try:
        store = ResultStore(tmp_path / "leaderboard.csv")
        store.append(_row("pac", "happy", 0, 20.0))
        csv_path, md_path, _ = write_leaderboard(tmp_path)
    finally:
        os.umask(old)
    for path in (store.path, csv_path, md_path):
        assert path.stat().st_mode & 0o777 == 0o644, path.name


def test_aggregate_mean_std_order_and_backend_split():
    rows = pd.DataFrame(
        [
            _row("pac", "happy", 0, 20.0),
            _row("pac", "sad", 0, 24.0),
            _row("pac", "happy", 0, 10.0, variant="no-tv"),
            _row("hypernerf-i", "happy", 0, 15.0),
            _row("nerf-ft", "happy", 0, 12.0),
            _row("pac", "happy", 0, 99.0, clip="tiny-random"),  # other backend: own group
        ]
    )
    table = aggregate(rows)
    assert list(zip(table["method"], table["variant"], table["backend_clip"], strict=True)) == [
        ("nerf-ft", "full", "synthclip"),
        ("hypernerf-i", "full", "synthclip"),
        ("pac", "full", "synthclip"),
        ("pac", "full", "tiny-random"),
        ("pac", "no-tv", "synthclip"),
    ]
    pac = table.iloc[2]
    assert pac["gt_psnr_mean"] == 22.0
    assert math.isclose(pac["gt_psnr_std"], math.sqrt(8.0))  # sample std of 20, 24
    assert pac["n"] == 2
    md = to_markdown(table)
    assert "22.000 ± 2.828" in md
    # the two pac/full groups say what sets them apart; the others need nothing
    assert "| pac | full [synthclip] |" in md and "| pac | full [tiny-random] |" in md
    assert "| pac | no-tv |" in md and "| nerf-ft | full |" in md


def test_write_leaderboard_files_and_errors(tmp_path):
    with pytest.raises(FacebenchError, match="no such results file"):
        write_leaderboard(tmp_path)
    store = ResultStore(tmp_path / "leaderboard.csv")
    store.append(_row("pac", "happy", 0, 20.0))
    csv_path, md_path, table = write_leaderboard(tmp_path)
    assert csv_path.exists() and md_path.exists() and len(table) == 1
    (tmp_path / "leaderboard.csv").write_text("nonsense\n1\n")
    with pytest.raises(FacebenchError, match="not a facebench results CSV"):
        write_leaderboard(tmp_path)
