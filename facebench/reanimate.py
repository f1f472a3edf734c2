"""Re-animation protocol: drive a fitted scene with another expression sequence and score it.

``facebench reanimate --method flame-nerf --scene synthface:default [--drive SPEC]``

1. the method fits the scene (or loads it from the cache) -- :meth:`prepare`;
2. a *driving* expression sequence is chosen (``drive``):

   * ``None`` / ``"heldout"`` (default): held-out *combinations* the scene's
     ground truth picks (``scene.gt.heldout_combinations``; SynthFace: pairs of
     expression groups that each appear in the scene but never together,
     excluding antagonistic pairs, ``n_drive`` of them spread evenly over the
     sorted list, :func:`facebench.datasets.facs.heldout_combinations`);
   * a scene spec (``synthface:...``): that scene's per-frame expressions;
   * a file: ``.npz`` with an ``expression`` array ``(K, n_expr)`` (e.g. a
     capture's ``flame_params.npz``) or ``.json`` with a list of vectors or
     ``{AU: intensity}`` dicts (read by the scene's ground truth,
     ``scene.gt.expression_vector``);

3. every driving expression is rendered at the scene's held-out cameras
   (``scene.eval_cameras``, at most ``n_views`` of them spread evenly) with
   :meth:`render_expression`, and -- on SynthFace, where the truth is known --
   compared with the ground-truth render of the same expression and cameras:
   ``psnr``, ``ssim`` (against ``gt``) and ``gt_lpips`` (against ``target``),
   all from the metric registry;
4. the paper's spatial-prior finding is measured as **background change**:
   the mean absolute RGB difference (0..1 scale) between the render with the
   driving expression and the render with the neutral expression, over pixels
   that are background (the backdrop, not the head, hair or neck) in the
   ground-truth label maps of both expressions, after dilating the head by
   ``mask_dilate`` pixels. The same number for the ground-truth renders
   (``background_change_gt``) is the floor (0 on SynthFace: the backdrop is static).

Results are returned as a :class:`ReanimationResult` and, with ``out``,
written to ``OUT/reanimate/<method>-<variant>.json`` plus a PNG grid
(rows: ground truth, render, for each driving expression).
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.method import Progress, RunContext, no_progress
from facebench.metric import make_metric

if TYPE_CHECKING:
    from facebench.scene import Scene

__all__ = [
    "ReanimationResult",
    "background_change",
    "load_drive",
    "reanimate",
    "reanimate_method",
]

DEFAULT_METRICS = ("psnr", "ssim", "gt_lpips")


@dataclass
class ReanimationResult:
    """Scores of one re-animation run (means over driving expressions x views)."""

    method: str
    variant: str
    scene: str
    drive: str
    n_expressions: int
    n_views: int
    metrics: dict[str, float] = field(default_factory=dict)
    background_change: float = math.nan
    background_change_gt: float = math.nan
    per_expression: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fit_seconds: float | None = None
    render_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ driving


def load_drive(
    drive: str | None, scene: Scene, au_names: Sequence[str], n: int = 4
) -> tuple[Tensor, list[str], str]:
    """The driving expressions ``(K, n_expr)``, their labels and a description of the source."""
    gt = getattr(scene, "gt", None)
    if drive in (None, "", "heldout"):
        if gt is None:
            raise FacebenchError(
                "--drive heldout needs a scene with ground truth (SynthFace); give a scene "
                "spec or an .npz/.json expression file"
            )
        vecs, labels = gt.heldout_combinations(getattr(scene, "expressions", None), au_names, n)
        return vecs, labels, "heldout"
    vecs, labels, source = _load_drive_source(str(drive), gt)
    if vecs.ndim != 2 or (au_names and vecs.shape[1] != len(au_names)):
        want = f"(K, {len(au_names)})" if au_names else "(K, n_expr)"
        raise FacebenchError(
            f"--drive {drive}: expression array has shape {tuple(vecs.shape)}, expected {want}"
        )
    if not bool(torch.isfinite(vecs).all()):
        raise FacebenchError(f"--drive {drive}: expression values are not all finite")
    return vecs, labels, source


def _load_drive_source(drive: str, gt: Any) -> tuple[Tensor, list[str], str]:
    path = Path(str(drive))
    if path.suffix == ".npz" and path.is_file():
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as z:
                if "expression" not in z.files:
                    raise FacebenchError(f"{path.name}: no 'expression' array")
                vecs = torch.from_numpy(z["expression"].astype("float32"))
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise FacebenchError(f"{path.name}: not a readable .npz file ({exc})") from exc
        return vecs, [f"{path.stem}[{i}]" for i in range(len(vecs))], str(path)
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
            if gt is None and any(isinstance(r, dict) for r in data):
                raise FacebenchError(
                    f"{path.name}: {{unit: value}} rows need a scene with ground truth "
                    "(SynthFace); give expression vectors instead"
                )
            rows = [
                gt.expression_vector(r)
                if isinstance(r, dict)
                else torch.tensor(r, dtype=torch.float32)
                for r in data
            ]
            vecs = torch.stack(rows)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise FacebenchError(
                f"{path.name}: not a JSON list of expression vectors or {{AU: value}} dicts "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from exc
        return vecs, [f"{path.stem}[{i}]" for i in range(len(rows))], str(path)
    if ":" in str(drive):
        from facebench.scene import load_scene

        other = load_scene(str(drive))
        expr = getattr(other, "expressions", None)
        if expr is None:
            raise FacebenchError(f"--drive {drive}: that scene has no expression parameters")
        expr = torch.as_tensor(expr).float()
        return expr, [f"{drive}[{i}]" for i in range(len(expr))], str(drive)
    raise FacebenchError(
        f"--drive {drive!r}: use 'heldout', a scene spec, or an .npz/.json expression file"
    )


# ------------------------------------------------------------------------------ scoring


def _ground_truth(scene: Scene, expression: Tensor, cameras: Any) -> tuple[Tensor, Tensor] | None:
    """GT images ``(N, H, W, 3)`` and background masks ``(N, H, W)`` (SynthFace), else None."""
    gt = getattr(scene, "gt", None)
    if gt is None:
        return None
    with torch.no_grad():
        if hasattr(gt, "render_views"):  # SynthHead: colour and labels in one pass
            out = gt.render_views(cameras, expression, labels=True)
            return out["rgb"].clamp(0, 1), out["labels"] == 0  # label 0: background
        images = gt.render(expression, cameras)
        return images.clamp(0, 1), gt.masks(expression, cameras)["background"]


def background_change(
    image: Tensor, neutral: Tensor, background: Tensor, dilate: int = 2
) -> Tensor:
    """Mean |image - neutral| over ``background`` pixels, the head dilated by ``dilate`` pixels.

    ``image``/``neutral`` are ``(N, H, W, 3)``, ``background`` ``(N, H, W)`` bool.
    Returns a 0-d tensor (NaN if no pixel is left).
    """
    bg = background
    if dilate > 0:
        head = (~bg)[:, None].float()
        k = 2 * dilate + 1
        head = torch.nn.functional.max_pool2d(head, k, stride=1, padding=dilate)[:, 0] > 0
        bg = ~head
    diff = (image - neutral).abs().mean(-1)
    n = bg.sum()
    if int(n) == 0:
        return torch.tensor(math.nan)
    return (diff * bg).sum() / n


def _pick_views(cameras: Any, n_views: int | None) -> Any:
    if n_views is None or n_views >= len(cameras):
        return cameras
    n = max(1, n_views)
    idx = [round(i * (len(cameras) - 1) / max(n - 1, 1)) for i in range(n)]
    return cameras[torch.as_tensor(idx, dtype=torch.long)]


def reanimate_method(
    method: Any,
    scene: Scene,
    *,
    drive: str | None = None,
    n_drive: int = 4,
    n_views: int | None = 4,
    metrics: Sequence[str] = DEFAULT_METRICS,
    mask_dilate: int = 2,
    device: torch.device | str = "cpu",
    names: tuple[str, str, str] = ("?", "full", "?"),
    out: Path | None = None,
) -> ReanimationResult:
    """Score a *prepared* method (anything with ``render_expression``) on ``scene``."""
    if not hasattr(method, "render_expression"):
        raise FacebenchError(f"method {names[0]!r} cannot re-animate (no render_expression)")
    au_names = tuple(getattr(method, "expression_names", ()) or getattr(scene, "au_names", ()))
    vecs, labels, source = load_drive(drive, scene, au_names, n_drive)
    cams = _pick_views(scene.eval_cameras, n_views)
    neutral_expr = method.neutral_expression() if hasattr(method, "neutral_expression") else None
    if neutral_expr is None:
        neutral_expr = torch.zeros(vecs.shape[-1])
    res = ReanimationResult(names[0], names[1], names[2], source, len(vecs), len(cams))
    dev = torch.device(device)
    scorers: dict[str, Any] = {}
    for name in metrics:
        try:
            scorers[name] = make_metric(name, device=dev) if "lpips" in name else make_metric(name)
        except FacebenchError as exc:
            res.notes.append(f"{name} skipped: {exc}")
    t0 = time.perf_counter()
    neutral = method.render_expression(cams, neutral_expr).cpu()
    gt_neutral = _ground_truth(scene, neutral_expr.cpu(), cams)
    grid_rows: list[Tensor] = []
    changes, changes_gt = [], []
    for vec, label in zip(vecs, labels, strict=True):
        img = method.render_expression(cams, vec).cpu()
        row: dict[str, Any] = {"drive": label, "expression": [round(float(v), 4) for v in vec]}
        gt = _ground_truth(scene, vec, cams)
        if gt is not None and gt_neutral is not None:
            gt_img, gt_bg = gt
            bg = gt_bg & gt_neutral[1]
            row["background_change"] = float(background_change(img, neutral, bg, mask_dilate))
            row["background_change_gt"] = float(
                background_change(gt_img, gt_neutral[0], bg, mask_dilate)
            )
            changes.append(row["background_change"])
            changes_gt.append(row["background_change_gt"])
            batch = {
                "images": img.permute(0, 3, 1, 2).contiguous(),
                "gt": gt_img.permute(0, 3, 1, 2).contiguous(),
                "target": gt_img.permute(0, 3, 1, 2).contiguous(),
            }
            for name, metric in scorers.items():
                m = type(metric)
                kwargs = {k: batch[k] for k in m.requires}
                before = metric.per_sample().numel()
                metric.update(**kwargs)
                row[name] = float(metric.per_sample()[before:].mean())
            grid_rows += [gt_img, img]
        else:
            grid_rows.append(img)
        res.per_expression.append(row)
    res.render_seconds = time.perf_counter() - t0
    for name, metric in scorers.items():
        if metric.per_sample().numel():
            res.metrics[name] = float(metric.compute()[name])
    if changes:
        res.background_change = sum(changes) / len(changes)
        res.background_change_gt = sum(changes_gt) / len(changes_gt)
    else:
        res.notes.append("no ground truth for this scene: only renders, no scores")
    res.fit_seconds = getattr(method, "train_seconds", None)
    if out is not None:
        from facebench.artifacts import save_grid

        folder = Path(out) / "reanimate"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{names[0]}-{names[1]}"
        (folder / f"{stem}.json").write_text(json.dumps(res.to_dict(), indent=2))
        save_grid(folder / f"{stem}.png", grid_rows)
    return res


def reanimate(
    method: str = "flame-nerf",
    scene: str = "synthface:default",
    *,
    drive: str | None = None,
    variant: str = "full",
    budget: str = "quick",
    device: str = "auto",
    seed: int = 0,
    n_drive: int = 4,
    n_views: int | None = 4,
    metrics: Sequence[str] = DEFAULT_METRICS,
    out: Path | str | None = None,
    force: bool = False,
    progress: Progress = no_progress,
) -> ReanimationResult:
    """Fit (or load) ``method`` on ``scene``, then run the re-animation protocol (see module)."""
    from facebench.paths import cache_dir
    from facebench.runner import create_method, resolve_device
    from facebench.scene import load_scene

    dev = resolve_device(device)
    m = create_method(method, variant, budget, dev, needs=("reanimate",), purpose="re-animate")
    sc = load_scene(scene)
    ctx = RunContext(device=dev, cache_dir=cache_dir(), seed=seed, progress=progress, force=force)
    m.prepare(sc, ctx)
    return reanimate_method(
        m,
        sc,
        drive=drive,
        n_drive=n_drive,
        n_views=n_views,
        metrics=metrics,
        device=dev,
        names=(method, variant, scene),
        out=Path(out) if out is not None else None,
    )
