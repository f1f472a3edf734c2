"""``facebench report DIR``: one self-contained ``report.html`` from a run or sweep folder.

The page (jinja2 template ``facebench/templates/report.html.j2``) holds:

- the leaderboard as ``facebench leaderboard`` groups it (:func:`facebench.leaderboard.
  aggregate`), with its model backends, sortable by any column (a few lines of inline
  script; no network);
- per prompt, one row per method: neutral | edit | ground-truth target | oracle, each a
  strip of held-out views, and the edit's turntable GIF (seed 0; the lowest seed present);
- matplotlib plots: the headline metrics per method (mean, error bars one std over seeds
  and prompts), LPIPS to the neutral face against expression R-precision (the trade-off
  FaceCLIPNeRF argues about), and quality against time per prompt.

Images are embedded as ``data:`` URIs (``embed=False``: linked by relative path, beside
the page). The report only reads ``DIR``: the renders the runner wrote
(``renders/<method>-<variant>/<prompt>-seed<N>.png`` -- a neutral row over an edit row --
and ``.gif``) and the ground-truth targets (:func:`target_image`), which the runner
saves once per (scene, prompt set, prompt) where it has them, so the report needs no
scene, no torch and no GPU.
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError
from facebench.paths import atomic_file

__all__ = ["write_report", "target_image", "render_stem", "ORACLE"]

ORACLE = "oracle"  # the variant (or ``guidance`` value) of rows edited toward the true target


def _slug(text: str) -> str:
    from facebench.runner import slug

    return slug(str(text))


def target_image(out: Path, scene: str, prompt_set: str, prompt: str) -> Path:
    """Where the runner saves a prompt's ground-truth target views (one grid row)."""
    return (
        Path(out)
        / "renders"
        / "targets"
        / _slug(scene)
        / f"{_slug(prompt_set)}-{_slug(prompt)}.png"
    )


def render_stem(out: Path, row: dict[str, Any]) -> Path:
    """The runner's renders of ``row`` without suffix (``.png`` grid, ``.gif`` turntable):
    ``renders/<method>-<variant>[-<config hash> with --set]/<prompt slug>-seed<N>``."""
    name = f"{row['method']}-{row['variant']}"
    if _present(row.get("overrides")):
        name += f"-{row['config_hash']}"
    return Path(out) / "renders" / name / f"{_slug(row['prompt'])}-seed{int(float(row['seed']))}"


def _present(value: Any) -> bool:
    return value is not None and str(value) not in ("", "nan")


def _is_oracle(row: dict[str, Any]) -> bool:
    return row.get("variant") == ORACLE or row.get("guidance") == ORACLE


class _Images:
    """Image sources for the page: ``data:`` URIs, or paths relative to the page."""

    def __init__(self, directory: Path, embed: bool):
        self.directory, self.embed = directory, embed
        self.count = 0

    def file(self, path: Path) -> str | None:
        if not path.is_file():
            return None
        self.count += 1
        if not self.embed:
            return os.path.relpath(path, self.directory)
        kind = "gif" if path.suffix == ".gif" else "png"
        return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"

    def png(self, data: bytes, name: str) -> str:
        """An image made here (a crop, a plot): embedded, or written under ``report_files/``."""
        self.count += 1
        if self.embed:
            return f"data:image/png;base64,{base64.b64encode(data).decode()}"
        path = self.directory / "report_files" / name
        with atomic_file(path) as fh:
            fh.write(data)
        return os.path.relpath(path, self.directory)

    def halves(self, grid: Path, name: str) -> tuple[str | None, str | None]:
        """The neutral (top) and edit (bottom) rows of a runner grid PNG."""
        if not grid.is_file():
            return None, None
        from PIL import Image

        with Image.open(grid) as im:
            im = im.convert("RGB")
            half = im.height // 2
            parts = [im.crop((0, 0, im.width, half)), im.crop((0, half, im.width, 2 * half))]
        out = []
        for part, which in zip(parts, ("neutral", "edit"), strict=True):
            buf = io.BytesIO()
            part.save(buf, format="PNG")
            out.append(self.png(buf.getvalue(), f"{name}-{which}.png"))
        return out[0], out[1]


def _read(directory: Path) -> tuple[Any, Any]:
    """(per-prompt rows, leaderboard table) of ``DIR/leaderboard.csv``; metric columns as
    numbers."""
    import pandas as pd

    from facebench.leaderboard import write_leaderboard
    from facebench.results import KEY_COLUMNS, read_rows

    source = directory / "leaderboard.csv"
    if not os.path.lexists(source):
        raise FacebenchError(
            f"{source}: no such results file (run `facebench run --out {directory}`)"
        )
    _, _, table = write_leaderboard(directory)  # also refreshes leaderboard_summary.*
    rows = pd.DataFrame(read_rows(source))
    for column in rows.columns:
        if column not in KEY_COLUMNS and not column.startswith("backend_"):
            converted = pd.to_numeric(rows[column], errors="coerce")
            if converted.notna().any():
                rows[column] = converted
    return rows, table


def _label(row: dict[str, Any]) -> str:
    text = f"{row['method']}/{row['variant']}"
    return text + (f" ({row['overrides']})" if _present(row.get("overrides")) else "")


def _leaderboard(table: Any) -> dict[str, Any]:
    from facebench.leaderboard import GROUP, HEADLINE

    metrics = [m for m in HEADLINE if f"{m}_mean" in table.columns]
    backends = [c for c in table.columns if c.startswith("backend_")]
    extra = [c for c in ("overrides", "config_hash") if c in table.columns]
    header = [*GROUP, *extra, *metrics, "n", *backends]
    body = []
    for _, row in table.iterrows():
        cells = [{"text": str(row[c]), "sort": str(row[c])} for c in [*GROUP, *extra]]
        for m in metrics:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            if mean is None or (isinstance(mean, float) and math.isnan(mean)):
                cells.append({"text": "–", "sort": ""})
                continue
            text = f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")
            cells.append({"text": text, "sort": f"{mean:.9g}"})
        cells.append({"text": str(int(row["n"])), "sort": str(int(row["n"]))})
        cells += [{"text": str(row[c]), "sort": str(row[c])} for c in backends]
        body.append(cells)
    numeric = [False] * (len(GROUP) + len(extra)) + [True] * (len(metrics) + 1)
    numeric += [False] * len(backends)
    return {"header": header, "rows": body, "numeric": numeric}


def _prompts(directory: Path, rows: Any, images: _Images) -> list[dict[str, Any]]:
    """Per (scene, prompt set, prompt): one entry per method with its image sources."""
    sections = []
    first_seed = rows.sort_values("seed", kind="stable")
    for (scene, prompt_set, prompt), same in first_seed.groupby(
        ["scene", "prompt_set", "prompt"], sort=False
    ):
        records = same.to_dict("records")
        oracles = {r["method"]: r for r in records[::-1] if _is_oracle(r)}
        target = images.file(target_image(directory, scene, prompt_set, prompt))
        methods, seen = [], set()
        for row in records:
            if _is_oracle(row) or _label(row) in seen:
                continue
            seen.add(_label(row))
            stem = render_stem(directory, row)
            tag = f"{_slug(stem.parent.name)}-{stem.name}"
            neutral, edit = images.halves(stem.with_suffix(".png"), tag)
            oracle = oracles.get(row["method"])
            oracle_src = None
            if oracle is not None:
                ostem = render_stem(directory, oracle)
                oracle_src = images.halves(ostem.with_suffix(".png"), f"{tag}-oracle")[1]
            methods.append(
                {
                    "label": _label(row),
                    "seed": int(row["seed"]),
                    "neutral": neutral,
                    "edit": edit,
                    "target": target,
                    "oracle": oracle_src,
                    "gif": images.file(stem.with_suffix(".gif")),
                }
            )
        if methods:
            sections.append(
                {"scene": scene, "prompt_set": prompt_set, "prompt": prompt, "methods": methods}
            )
    return sections


def write_report(directory: Path | str, embed: bool = True) -> Path:
    """Write ``DIR/report.html`` from ``DIR/leaderboard.csv`` and ``DIR/renders``; return
    its path."""
    import jinja2

    from facebench import __version__
    from facebench.report_plots import plots

    directory = Path(directory)
    rows, table = _read(directory)
    images = _Images(directory, embed)
    figures = [
        {"id": fid, "title": title, "caption": caption, "src": images.png(data, f"{fid}.png")}
        for fid, title, caption, data in plots(rows, _label)
    ]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("facebench", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    page = env.get_template("report.html.j2").render(
        title=f"facebench report: {directory.resolve().name}",
        version=__version__,
        leaderboard=_leaderboard(table),
        figures=figures,
        prompts=_prompts(directory, rows, images),
        n_rows=len(rows),
    )
    path = directory / "report.html"
    try:
        with atomic_file(path, "w", encoding="utf-8") as fh:
            fh.write(page)
    except OSError as exc:
        raise FacebenchError(f"cannot write {path}: {exc.strerror}") from exc
    return path
