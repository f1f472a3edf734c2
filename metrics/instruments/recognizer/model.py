"""A SynthFace expression recognizer: a small CNN predicting action units and the emotion class.

FaceCLIPNeRF's R-precision needs a facial-expression recognizer; none can be
downloaded here, so facebench trains one on SynthFace renders (varied
identities, camera views and expressions). It predicts the FACS action-unit
vector of :mod:`facebench.scene` (intensities in [0, 1]) and one of the
emotion classes (``neutral`` + the emotions of the SynthFace prototype
table). Like SynthCLIP it is valid for SynthFace renders only.

Any recognizer -- e.g. a real one a user has for real captures -- plugs into
the metrics through :class:`ExpressionRecognizer`: ``emotions`` (class
names), ``au_names`` (or None when it predicts no action units) and
``recognize(images) -> Recognition``.

Cache layout: ``cache_dir()/recognizer/<config hash>/`` with ``checkpoint.pt``
(``{"state_dict", "meta"}``, loaded with ``weights_only=True``),
``quality.json`` (held-out accuracy and AU error), ``train_state.pt`` while
training. Training renders are the ``synthface-faces`` dataset's cached
shards (shared with SynthCLIP).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from facebench.method import Progress, config_hash, no_progress
from facebench.paths import cache_dir
from facebench.synthclip import (
    TINY_DATA,
    DataRecipe,
    _atomic_write_text,
    augment,
    load_faces,
    prepare_once,
    train_threads,
)
from facebench.train_state import TrainState, atomic_save
from facebench.weights import (
    MissingWeightsError,
    WeightInfo,
    backend_label,
    checkpoint_label,
    state_digest,
    weight_probe,
)

__all__ = [
    "DEFAULT_RECOGNIZER",
    "TINY_RECOGNIZER",
    "ExpressionData",
    "ExpressionRecognizer",
    "Recognition",
    "RecognizerConfig",
    "RecognizerNet",
    "SynthFaceRecognizer",
    "load_recognizer",
    "prepare_recognizer",
    "recognizer_checkpoint_path",
    "recognizer_dir",
    "recognizer_label",
    "recognizer_name",
    "train_recognizer",
]

FORMAT_VERSION = 1


# --------------------------------------------------------------------------- interface


@dataclass
class Recognition:
    """What a recognizer says about ``N`` images.

    ``emotion_probs`` ``(N, C)`` over the recognizer's ``emotions``; ``aus``
    ``(N, K)`` intensities in [0, 1] in the order of its ``au_names``, or None.
    """

    emotion_probs: Tensor
    aus: Tensor | None
    emotions: tuple[str, ...]

    @property
    def emotion(self) -> list[str]:
        """The recognised emotion name of each image."""
        return [self.emotions[i] for i in self.emotion_probs.argmax(dim=-1).tolist()]


@runtime_checkable
class ExpressionRecognizer(Protocol):
    """Anything that recognises facial expressions in ``(N, H, W, 3)`` images in [0, 1]."""

    emotions: tuple[str, ...]
    au_names: tuple[str, ...] | None

    def recognize(self, images: Tensor) -> Recognition: ...


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class RecognizerConfig:
    """Network, data recipe and schedule of the recognizer; hashed into its cache path."""

    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    data: DataRecipe = field(default_factory=DataRecipe)
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 3
    flip: bool = True
    au_weight: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100

    def hash_dict(self) -> dict[str, Any]:
        from facebench.synthclip import _data_version

        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d["format_version"] = FORMAT_VERSION
        d["data_version"] = _data_version("synthface")
        return d

    def hash(self) -> str:
        return config_hash(self.hash_dict())


DEFAULT_RECOGNIZER = RecognizerConfig()
TINY_RECOGNIZER = RecognizerConfig(
    image_size=16,
    channels=(8, 16),
    data=TINY_DATA,
    steps=30,
    batch_size=32,
    lr=5e-3,
    max_shift=1,
    checkpoint_every=10,
)


class RecognizerNet(nn.Module):
    """Conv-BN-ReLU blocks with max-pooling, global average pool, AU and emotion heads."""

    def __init__(self, n_aus: int, n_emotions: int, channels: Sequence[int] = (32, 64, 96, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.au_head = nn.Linear(c_in, n_aus)
        self.emotion_head = nn.Linear(c_in, n_emotions)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``(B, 3, S, S)`` -> (AU logits ``(B, K)``, emotion logits ``(B, C)``)."""
        h = self.features(x).mean(dim=(2, 3))
        return self.au_head(h), self.emotion_head(h)


def _prep(images: Tensor, size: int) -> Tensor:
    """``(N, H, W, 3)`` / ``(N, 3, H, W)`` in [0, 1] -> ``(N, 3, size, size)`` centred at 0."""
    x = images
    if x.ndim == 3:
        x = x[None]
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float()
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return (x - 0.5) / 0.25


class SynthFaceRecognizer(nn.Module):
    """The trained SynthFace recognizer behind the :class:`ExpressionRecognizer` interface."""

    def __init__(
        self, net: RecognizerNet, emotions: Sequence[str], au_names: Sequence[str], size: int
    ):
        super().__init__()
        self.net = net
        self.emotions = tuple(emotions)
        self.au_names: tuple[str, ...] | None = tuple(au_names)
        self.image_size = size
        self.config_hash = ""
        self.backend = "recognizer:synthface"  # + config hash @ weights digest once loaded

    @torch.no_grad()
    def recognize(self, images: Tensor, batch: int = 256) -> Recognition:
        self.eval()
        device = next(self.parameters()).device
        probs, aus = [], []
        for i in range(0, images.shape[0], batch):
            x = _prep(images[i : i + batch].to(device), self.image_size)
            au_logits, emo_logits = self.net(x)
            probs.append(emo_logits.softmax(-1).cpu())
            aus.append(au_logits.sigmoid().cpu())
        return Recognition(torch.cat(probs), torch.cat(aus), self.emotions)


# --------------------------------------------------------------------------- data + training


@dataclass
class ExpressionData:
    """Renders with labels: ``images`` uint8 ``(N, H, W, 3)``, ``aus`` ``(N, K)`` in [0, 1],
    ``emotion`` ``(N,)`` class indices (``-1``: no emotion label, e.g. a random AU mix)."""

    images: Tensor
    aus: Tensor
    emotion: Tensor
    emotions: tuple[str, ...] = field(default=())
    au_names: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RecognizerTrainResult:
    model: SynthFaceRecognizer
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int
    cpu_seconds: float = 0.0


def _lr(step: int, cfg: RecognizerConfig) -> float:
    warm = max(1, cfg.steps // 20)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def train_recognizer(
    config: RecognizerConfig,
    data: ExpressionData,
    out_dir: Path,
    progress: Progress = no_progress,
    stop_after: int | None = None,
) -> RecognizerTrainResult:
    """Train the CNN on ``data`` (AU: BCE on intensities, emotion: cross-entropy).

    Resumes from ``out_dir/train_state.pt`` when it matches the config hash;
    batches and augmentation are pure functions of ``(seed, step)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    net = RecognizerNet(data.aus.shape[1], len(data.emotions), config.channels)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = TrainState.resume(out_dir / "train_state.pt", config.hash(), net, opt)
    start = state.step
    n = len(data)
    per_epoch = max(1, n // config.batch_size)
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    net.train()
    progress("train recognizer", start, config.steps)
    for step in range(start, end):
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        )
        idx = perm[k * config.batch_size : (k + 1) * config.batch_size]
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        x = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
        x = _prep(augment(x, config.max_shift, g, config.flip), config.image_size)
        au_logits, emo_logits = net(x)
        au_loss = nn.functional.binary_cross_entropy_with_logits(au_logits, data.aus[idx].float())
        labels = data.emotion[idx]
        has = labels >= 0
        emo_loss = (
            nn.functional.cross_entropy(emo_logits[has], labels[has])
            if bool(has.any())
            else emo_logits.sum() * 0.0
        )
        loss = config.au_weight * au_loss + emo_loss
        for group in opt.param_groups:
            group["lr"] = _lr(step, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.losses.append(float(loss.detach()))
        done = step + 1
        progress("train recognizer", done, config.steps)
        if done % config.checkpoint_every == 0 or done == end:
            state.save(net, opt, done)
    net.eval()
    model = SynthFaceRecognizer(net, data.emotions, data.au_names, config.image_size)
    wall, cpu = state.total_seconds()
    return RecognizerTrainResult(model, state.losses, end, wall, state.resumed_from, cpu)


def evaluate_on_prompt_renders(
    model: ExpressionRecognizer,
    config: RecognizerConfig,
    progress: Progress = no_progress,
    n_identities: int = 8,
) -> dict[str, Any]:
    """The metrics' view of ground truth: R-precision and AU error on true target renders.

    Renders each shipped prompt's target expression on held-out identities
    (shared with SynthCLIP's evaluation) and scores them as the
    ``expression_r_precision`` / ``au_error`` metrics score manipulated renders:
    a perfect manipulation would get these figures.
    """
    from facebench.synthclip import prompt_renders

    r = prompt_renders(config.data, n_identities, progress)
    images = r["images"]  # (I, P, H, W, 3)
    out: dict[str, Any] = {"n_identities": int(images.shape[0]), "per_prompt": {}}
    hits, errs = [], []
    for j, prompt in enumerate(r["prompts"]):
        rec = model.recognize(images[:, j].float() / 255.0)
        row: dict[str, Any] = {}
        emotion = r["emotions"][j]
        if emotion:
            hit = sum(e == emotion for e in rec.emotion) / len(rec.emotion)
            row["r_precision"] = round(hit, 4)
            hits.append(hit)
        if rec.aus is not None:
            err = float((rec.aus - r["targets"][j][None]).abs().mean())
            row["au_error"] = round(err, 4)
            errs.append(err)
        out["per_prompt"][prompt] = row
    out["emotion_r_precision"] = round(sum(hits) / len(hits), 4) if hits else None
    out["au_error"] = round(sum(errs) / len(errs), 4) if errs else None
    return out


@torch.no_grad()
def evaluate_recognizer(model: ExpressionRecognizer, data: ExpressionData) -> dict[str, Any]:
    """Emotion accuracy (labelled images) and AU mean absolute error on ``data``."""
    rec = model.recognize(data.images.float() / 255.0)
    out: dict[str, Any] = {"n_images": len(data)}
    has = data.emotion >= 0
    if bool(has.any()):
        pred = rec.emotion_probs.argmax(-1)
        out["emotion_accuracy"] = float((pred[has] == data.emotion[has]).float().mean())
        out["emotion_accuracy_per_class"] = {
            name: float((pred[data.emotion == i] == i).float().mean())
            for i, name in enumerate(data.emotions)
            if bool((data.emotion == i).any())
        }
        out["n_emotion_images"] = int(has.sum())
    if rec.aus is not None:
        err = (rec.aus - data.aus.float()).abs()
        out["au_mae"] = float(err.mean())
        out["au_mae_per_unit"] = {
            n: float(e) for n, e in zip(data.au_names, err.mean(0), strict=True)
        }
    return out


# --------------------------------------------------------------------------- cache


def recognizer_dir(config: RecognizerConfig = DEFAULT_RECOGNIZER) -> Path:
    return cache_dir() / "recognizer" / config.hash()


def recognizer_checkpoint_path(config: RecognizerConfig = DEFAULT_RECOGNIZER) -> Path | None:
    """The finished checkpoint of ``config``, or None when it has not been prepared."""
    path = recognizer_dir(config) / "checkpoint.pt"
    return path if path.is_file() else None


def recognizer_name(config_hash: str) -> str:
    """The recognizer's backend name for a config hash (its label is this ``@DIGEST``)."""
    return f"recognizer:synthface:{config_hash}"


def recognizer_label(config: RecognizerConfig = DEFAULT_RECOGNIZER) -> str:
    """``NAME@DIGEST`` of the prepared recognizer of ``config``, read from its checkpoint
    without building the model (as :func:`load_recognizer` labels it); "" when not prepared."""
    return checkpoint_label(recognizer_name(config.hash()), recognizer_checkpoint_path(config))


def save_recognizer(
    model: SynthFaceRecognizer, config: RecognizerConfig, path: Path, **meta
) -> None:
    meta = {
        "config_hash": config.hash(),
        "config": dataclasses.asdict(config),
        "emotions": list(model.emotions),
        "au_names": list(model.au_names or ()),
        **meta,
    }
    atomic_save({"state_dict": model.net.state_dict(), "meta": json.dumps(meta)}, path)


def load_recognizer_from(path: Path, device: torch.device | str = "cpu") -> SynthFaceRecognizer:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(ckpt["meta"])
    cfg = meta["config"]
    net = RecognizerNet(len(meta["au_names"]), len(meta["emotions"]), cfg["channels"])
    net.load_state_dict(ckpt["state_dict"])
    model = SynthFaceRecognizer(net, meta["emotions"], meta["au_names"], cfg["image_size"])
    model.config_hash = str(meta.get("config_hash", ""))
    model.backend = backend_label(recognizer_name(model.config_hash), state_digest(net))
    return model.to(device).eval()


def load_recognizer(
    device: torch.device | str = "cpu", config: RecognizerConfig = DEFAULT_RECOGNIZER
) -> SynthFaceRecognizer:
    """The trained SynthFace recognizer; MissingWeightsError tells how to prepare it."""
    path = recognizer_checkpoint_path(config)
    if path is None:
        raise MissingWeightsError(
            f"SynthFace expression recognizer is not prepared (no checkpoint in "
            f"{recognizer_dir(config)}); run `facebench prepare recognizer`"
        )
    return load_recognizer_from(path, device)


def prepare_recognizer(
    progress: Progress = no_progress,
    force: bool = False,
    config: RecognizerConfig = DEFAULT_RECOGNIZER,
    data: ExpressionData | None = None,
    heldout: ExpressionData | None = None,
) -> Path:
    """Train the SynthFace expression recognizer (action units + emotion) and cache it.

    Renders SynthFace training identities with varied views and expressions
    (cached as .npz shards), trains a small CNN, measures emotion accuracy and
    AU error on held-out identities and writes checkpoint.pt + quality.json
    under $FACEBENCH_CACHE/recognizer/<config hash>/. An interrupted run
    resumes where it stopped; --force retrains from scratch.

    Example: facebench prepare recognizer
    """
    out = recognizer_dir(config)
    return prepare_once(
        out,
        "the expression recognizer",
        force,
        progress,
        lambda: _prepare_recognizer(out, progress, force, config, data, heldout),
    )


def _prepare_recognizer(
    out: Path,
    progress: Progress,
    force: bool,
    config: RecognizerConfig,
    data: ExpressionData | None,
    heldout: ExpressionData | None,
) -> Path:
    ckpt = out / "checkpoint.pt"
    if force:
        for name in ("checkpoint.pt", "train_state.pt", "quality.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t_data = time.perf_counter()
    synthface_data = data is None  # prompt targets only apply to SynthFace's own AU vector
    if data is None:
        data = render_expression_data(config, "train", progress)
    if heldout is None:
        heldout = render_expression_data(config, "test", progress)
    t_data = time.perf_counter() - t_data
    with train_threads():
        result = train_recognizer(config, data, out, progress)
        quality = evaluate_recognizer(result.model, heldout)
        if synthface_data:
            quality["gt_prompt_renders"] = evaluate_on_prompt_renders(
                result.model, config, progress
            )
    quality.update(
        train_seconds=round(result.seconds, 1),
        train_cpu_seconds=round(result.cpu_seconds, 1),
        data_seconds=round(t_data, 1),
    )
    quality["targets"] = {"emotion_accuracy": 0.95, "au_mae": 0.1}
    save_recognizer(result.model, config, ckpt, steps=result.steps, quality=quality)
    _atomic_write_text(out / "quality.json", json.dumps(quality, indent=2))
    (out / "train_state.pt").unlink(missing_ok=True)
    return ckpt


def emotion_classes() -> tuple[str, ...]:
    """``neutral`` followed by the SynthFace emotion prototypes (``facs.EMOTIONS`` order)."""
    from facebench.datasets.facs import EMOTIONS

    return ("neutral", *EMOTIONS)


def emotion_label(expression: Tensor, classes: Sequence[str]) -> int:
    """Class index of an expression: ``neutral`` for no unit above 0.05, else the emotion
    prototype it matches (synthface-faces' ``emotion_of``), else -1 (no emotion)."""
    from facebench.datasets.faces import emotion_of

    if float(expression.abs().max()) <= 0.05:
        return classes.index("neutral")
    emotion = emotion_of(expression)
    return classes.index(emotion) if emotion in classes else -1


def render_expression_data(
    config: RecognizerConfig, split: str, progress: Progress = no_progress
) -> ExpressionData:
    """Labelled renders: the first ``n_images`` (train) or ``n_eval`` (test) synthface-faces items.

    Shares the dataset's cached shards with SynthCLIP.
    """
    from facebench.datasets.facs import AU_NAMES

    n = config.data.n_images if split == "train" else config.data.n_eval
    d = load_faces(config.data, split, n, progress)
    classes = emotion_classes()
    labels = torch.tensor([emotion_label(e, classes) for e in d["expressions"]], dtype=torch.long)
    return ExpressionData(d["images"], d["expressions"], labels, classes, AU_NAMES)


@weight_probe
def _probe() -> list[WeightInfo]:
    path = recognizer_checkpoint_path(DEFAULT_RECOGNIZER)
    return [
        WeightInfo(
            name="expression recognizer (facebench-trained, SynthFace only)",
            present=path is not None,
            location=str(path or recognizer_dir(DEFAULT_RECOGNIZER)),
            how_to="run `facebench prepare recognizer`",
            label=recognizer_label(DEFAULT_RECOGNIZER),
        )
    ]
