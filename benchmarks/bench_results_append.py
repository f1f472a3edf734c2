"""Cost of recording rows in ``leaderboard.csv``: appending vs rewriting the file per row.

Run::

    pytest benchmarks/bench_results_append.py --benchmark-only -s

``FACEBENCH_BENCH_ROWS`` (default 2000) rows of 7 key columns and 20 metrics each are
recorded one at a time, as a sweep records them: by :class:`facebench.results.ResultStore`
(one fsynced ``write`` at the end of the file per row), and by rewriting the whole file
through :func:`facebench.results.write_rows_atomic` per row (what the store did before:
quadratic in the number of rows). ``extra_info`` has both totals and the time of the
last 100 rows.
"""

from __future__ import annotations

import os
import time

from facebench.results import ResultStore, write_rows_atomic

ROWS = int(os.environ.get("FACEBENCH_BENCH_ROWS", "2000"))


def _row(i: int) -> dict:
    row = {"method": "pac", "variant": "full", "scene": "synthface:default"}
    row.update({"prompt_set": "emotions", "prompt": f"prompt {i}", "seed": 0})
    row["config_hash"] = "abc"
    row.update({f"metric_{k}": i / 7 + k for k in range(20)})
    return row


def _append(folder) -> list[float]:
    store = ResultStore(folder / "leaderboard.csv")
    stamps = []
    for i in range(ROWS):
        store.append(_row(i))
        stamps.append(time.perf_counter())
    return stamps


def _rewrite(folder) -> list[float]:
    rows, stamps = [], []
    for i in range(ROWS):
        rows.append(_row(i))
        write_rows_atomic(folder / "leaderboard.csv", rows)
        stamps.append(time.perf_counter())
    return stamps


def test_append_vs_rewrite(benchmark, tmp_path):
    out = {}
    for name, record in (("rewrite", _rewrite), ("append", _append)):
        folder = tmp_path / name
        folder.mkdir()
        start = time.perf_counter()
        stamps = (
            benchmark.pedantic(record, args=(folder,), rounds=1, iterations=1)
            if name == "append"
            else record(folder)
        )
        out[f"{name}_total_s"] = round(stamps[-1] - start, 2)
        out[f"{name}_last_100_rows_s"] = round(stamps[-1] - stamps[-101], 3)
    benchmark.extra_info.update({"rows": ROWS, **out})
    print(benchmark.extra_info)
    assert out["append_total_s"] < out["rewrite_total_s"]
