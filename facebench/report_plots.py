"""The report's plots (matplotlib, off-screen): PNG bytes from the per-prompt rows."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

__all__ = ["plots"]

# headline metrics plotted per method (cost columns have their own plot)
SCORES = (
    "expression_r_precision",
    "clip_r_precision",
    "lpips",
    "identity",
    "gt_psnr",
    "gt_lpips",
    "locality",
    "clip_score",
)
# the quality axis against time: the ground truth where known, else the prompt-side scores
QUALITY = ("gt_psnr", "expression_r_precision", "clip_r_precision", "clip_score")


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _present(rows: Any, column: str) -> bool:
    return column in rows.columns and rows[column].notna().any()


def _metrics_plot(rows: Any, labels: list[str]) -> bytes:
    import matplotlib.pyplot as plt

    metrics = [m for m in SCORES if _present(rows, m)]
    cols = min(4, len(metrics))
    nrows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 0.5 + 2.8 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        stats = rows.groupby("_label", sort=False)[metric].agg(["mean", "std"]).reindex(labels)
        ax.bar(range(len(labels)), stats["mean"], yerr=stats["std"].fillna(0), capsize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _tradeoff_plot(rows: Any, labels: list[str], y: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    stats = rows.groupby("_label", sort=False)[["lpips", y]].agg(["mean", "std"]).reindex(labels)
    stats = stats.fillna({("lpips", "std"): 0.0, (y, "std"): 0.0})  # one row: no spread
    for label, s in stats.iterrows():
        ax.errorbar(
            s[("lpips", "mean")],
            s[(y, "mean")],
            xerr=s[("lpips", "std")],
            yerr=s[(y, "std")],
            fmt="o",
            capsize=3,
            label=label,
        )
    ax.set_xlabel("LPIPS to the neutral face (lower: less changed)")
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _time_plot(rows: Any, labels: list[str], y: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label in labels:
        same = rows[rows["_label"] == label]
        ax.scatter(same["time_s"], same[y], label=label, s=18)
    ax.set_xlabel("time per prompt (s)")
    ax.set_ylabel(y)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plots(rows: Any, label: Callable[[dict], str]) -> list[tuple[str, str, str, bytes]]:
    """``(id, title, caption, PNG bytes)`` of each plot the rows have the columns for."""
    import matplotlib

    matplotlib.use("Agg")  # off-screen, whatever the user's default backend
    import pandas as pd

    rows = rows.copy()
    rows["_label"] = [label(r) for r in rows.to_dict("records")]
    for column in {*SCORES, *QUALITY, "lpips", "time_s"} & set(rows.columns):
        # a column read as text (an empty or non-numeric cell somewhere) plots as NaN there
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    labels = list(dict.fromkeys(rows["_label"]))
    quality = next(
        (m for m in ("expression_r_precision", "clip_r_precision") if _present(rows, m)), None
    )
    out = []
    if any(_present(rows, m) for m in SCORES):
        out.append(
            (
                "plot-metrics",
                "Headline metrics per method",
                "Mean per method; error bars: one standard deviation over seeds and prompts.",
                _metrics_plot(rows, labels),
            )
        )
    if quality and _present(rows, "lpips"):
        out.append(
            (
                "plot-tradeoff",
                f"LPIPS to neutral against {quality}",
                "The edit's strength against how much of the face it changes (FaceCLIPNeRF's "
                "trade-off); mean ± one std over seeds and prompts.",
                _tradeoff_plot(rows, labels, quality),
            )
        )
    score = next((m for m in QUALITY if _present(rows, m)), None)
    if score and _present(rows, "time_s"):
        out.append(
            (
                "plot-time",
                f"{score} against time per prompt",
                "One point per row (prompt and seed): quality against the edit's wall time.",
                _time_plot(rows, labels, score),
            )
        )
    return out
