"""``facebench leaderboard``: aggregate per-prompt rows into mean ± std tables (CSV, Markdown).

Rows are grouped by (method, variant, scene, prompt set) *and* by every
``backend_*`` column, the config hash and the ``--set`` overrides, so results made
with different models (a different CLIP, another identity network) or settings are
never averaged together. A metric value that is not finite (NaN, inf: a diverged
edit) is left out of the mean and counted in ``<metric>_nonfinite``, and the Markdown
cell says so. Methods are ordered as in FaceCLIPNeRF's Table 1 (NeRF+FT,
Nerfies+I, HyperNeRF+I, FaceCLIPNeRF), then the rest by name; the full
method before its ablations.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from facebench.errors import FacebenchError
from facebench.paths import atomic_file
from facebench.results import KEY_COLUMNS, read_rows

GROUP = ["method", "variant", "scene", "prompt_set"]
TABLE1_ORDER = ["nerf-ft", "nerfies-i", "hypernerf-i", "pac"]
NOT_METRICS = {"seed"}
NONFINITE = "_nonfinite"  # <metric>_nonfinite: rows whose value was NaN or inf
HEADLINE = [
    "expression_r_precision",
    "clip_r_precision",
    "lpips",
    "identity",
    "gt_psnr",
    "gt_lpips",
    "locality",
    "clip_score",
    "time_s",
    "peak_mem_mb",
]

#: headline metrics of the suites with their own table (see :func:`to_markdown`)
SUITE_HEADLINES = {
    "generation": [
        "clip_score",
        "clip_r_precision",
        "attribute_accuracy",
        "expression_agreement",
        "expression_r_precision",
        "fd_clip",
        "mvic",
        "gen_s_per_face",
        "train_s",
    ],
}


def _method_rank(name: str) -> tuple[int, str]:
    return (TABLE1_ORDER.index(name), "") if name in TABLE1_ORDER else (len(TABLE1_ORDER), name)


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of every numeric column per group, Table-1 ordered."""
    if rows.empty:
        raise FacebenchError("no result rows to aggregate")
    missing = [c for c in GROUP if c not in rows.columns]
    if missing:
        raise FacebenchError(f"results lack the column(s) {missing}; is this a facebench CSV?")
    keys = GROUP + sorted(c for c in rows.columns if c.startswith("backend_"))
    keys += [c for c in ("suite", "config_hash", "overrides") if c in rows.columns]
    rows = rows.copy()
    for column in keys:
        rows[column] = rows[column].fillna("").astype(str)
    numeric = [
        c
        for c in rows.columns
        if c not in keys
        and c not in NOT_METRICS
        and not c.endswith(NONFINITE)
        and pd.api.types.is_numeric_dtype(rows[c])
    ]
    for metric in numeric:  # inf is no number to average either: flagged like NaN
        inf = rows[metric].isin([math.inf, -math.inf])
        if inf.any():
            rows[metric + NONFINITE] = rows.get(metric + NONFINITE, 0) + inf.astype(int)
            rows[metric] = rows[metric].where(~inf)
    grouped = rows.groupby(keys, sort=False, dropna=False)
    stats = grouped[numeric].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    flagged = [c for c in rows.columns if c.endswith(NONFINITE)]
    if flagged:
        stats[flagged] = grouped[flagged].sum()
    stats["n"] = grouped.size()
    table = stats.reset_index()
    table["_m"] = table["method"].map(_method_rank)
    table["_v"] = table["variant"].map(lambda v: (v != "full", v))
    table = table.sort_values(["_m", "_v", "scene", "prompt_set"]).drop(columns=["_m", "_v"])
    return table.reset_index(drop=True)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""How a spreadsheet cell that it would run as a formula starts (OWASP, CSV injection)."""


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell a spreadsheet would run as a formula -- one starting
    with ``= + - @``, a tab or a carriage return that is not a number -- prefixed with
    ``'``. For the summary CSV, which is made to be opened in a spreadsheet; the
    per-prompt ``leaderboard.csv`` keeps every value verbatim (it is data, keyed by them)."""

    def safe(value: object) -> object:
        if not isinstance(value, str) or not value.startswith(FORMULA_START):
            return value
        try:
            float(value)
            return value  # a negative number written as text
        except ValueError:
            return "'" + value

    out = table.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(safe)
    return out


def to_markdown(table: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """A Markdown table with ``mean ± std`` cells for the headline metrics present; rows of
    another suite than the scene protocol's (``suite`` column, e.g. ``generation``) follow in
    their own table, with that suite's headline metrics (:data:`SUITE_HEADLINES`)."""
    suites = table["suite"].fillna("") if "suite" in table.columns else None
    if suites is None or not (suites != "").any():
        return _markdown(table, metrics)
    parts = []
    for suite in dict.fromkeys(sorted(suites, key=lambda s: (s != "", s))):
        part = table[suites == suite].reset_index(drop=True)
        title = f"\n### {suite} suite\n\n" if suite else ""
        parts.append(title + _markdown(part, metrics or SUITE_HEADLINES.get(suite)))
    return "".join(parts)


def _markdown(table: pd.DataFrame, metrics: list[str] | None = None) -> str:
    available = [m for m in (metrics or HEADLINE) if f"{m}_mean" in table.columns]
    header = GROUP + available + ["n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    apart = _what_sets_apart(table)
    for i, row in table.iterrows():
        cells = [str(row[c]) for c in GROUP]
        if row.get("overrides"):  # a --set run shows what it changed next to its variant
            cells[1] += f" ({row['overrides']})"
        if apart[i]:
            cells[1] += f" [{apart[i]}]"
        for metric in available:
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            if pd.isna(mean):
                cell = "–"
            else:
                cell = f"{mean:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f}")
            bad = row.get(f"{metric}_nonfinite", 0)
            if not pd.isna(bad) and bad:
                cell += f" (NaN/inf in {int(bad)} row{'s' if bad > 1 else ''}, not averaged)"
            cells.append(cell)
        cells.append(str(int(row["n"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _what_sets_apart(table: pd.DataFrame) -> list[str]:
    """Per row: for groups that would show the same method, variant, scene, prompt set and
    overrides, the backend and config-hash values that tell them apart (else "")."""
    hidden = [c for c in table.columns if c.startswith("backend_") or c == "config_hash"]
    shown = [c for c in [*GROUP, "overrides"] if c in table.columns]
    out = [""] * len(table)
    for _, same in table.groupby(shown, sort=False, dropna=False):
        if len(same) < 2:
            continue
        differ = [c for c in hidden if same[c].nunique(dropna=False) > 1]
        for i, row in same.iterrows():
            out[i] = ", ".join(dict.fromkeys(str(row[c]) for c in differ))
    return out


def write_leaderboard(directory: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Read ``DIR/leaderboard.csv``; write ``DIR/leaderboard_summary.{csv,md}`` (the CSV's
    text cells made safe to open in a spreadsheet: :func:`spreadsheet_safe`)."""
    directory = Path(directory)
    source = directory / "leaderboard.csv"
    if not os.path.lexists(source):
        raise FacebenchError(
            f"{source}: no such results file (run `facebench run --out {directory}`)"
        )
    rows = pd.DataFrame(read_rows(source))  # a damaged file: one line naming file and line
    for column in list(rows.columns):
        if column in KEY_COLUMNS or column.startswith("backend_") or column == "overrides":
            continue  # names, even when they look like numbers (a prompt "1", a hash)
        try:  # numbers ("nan" and "inf" included; "" is an absent value) -> float
            values = [float(v) if v != "" else None for v in rows[column]]
        except ValueError:
            continue
        bad = [v is not None and not math.isfinite(v) for v in values]
        rows[column] = [v if v is not None and math.isfinite(v) else math.nan for v in values]
        if any(bad) and column not in NOT_METRICS:
            rows[column + NONFINITE] = [int(b) for b in bad]
    table = aggregate(rows)
    csv_path = directory / "leaderboard_summary.csv"
    md_path = directory / "leaderboard_summary.md"
    try:
        with atomic_file(csv_path, "w", newline="") as fh:
            spreadsheet_safe(table).to_csv(fh, index=False)
        with atomic_file(md_path, "w") as fh:
            fh.write(to_markdown(table))
    except OSError as exc:
        raise FacebenchError(f"cannot write the summary into {directory}: {exc.strerror}") from exc
    return csv_path, md_path, table
