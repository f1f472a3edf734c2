"""The recognizer's training: labelled synthface-faces renders and the training loop.

Batches and augmentation are pure functions of ``(seed, step)``; an
interrupted run resumes from its ``train_state.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from facebench.datasets.faces import emotion_of
from facebench.datasets.facs import AU_NAMES, EMOTIONS
from facebench.method import Progress, no_progress
from facebench.metrics.instruments.prepared import TRAIN_STATE, TrainResult
from facebench.metrics.instruments.recognizer.config import RecognizerConfig
from facebench.metrics.instruments.recognizer.model import RecognizerNet, SynthFaceRecognizer, _prep
from facebench.metrics.instruments.synthclip.data import load_faces
from facebench.metrics.instruments.synthclip.train import augment, random_blur
from facebench.trainer import fit_loop, warmup_cosine


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


RecognizerTrainResult = TrainResult  # the name the recognizer package exports


def train_recognizer(
    config: RecognizerConfig,
    data: ExpressionData,
    out_dir: Path,
    progress: Progress = no_progress,
    stop_after: int | None = None,
) -> TrainResult:
    """Train the CNN on ``data`` (AU: BCE on intensities, emotion: cross-entropy).

    Resumes from ``out_dir/train_state.pt`` when it matches the config hash;
    batches and augmentation are pure functions of ``(seed, step)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    net = RecognizerNet(data.aus.shape[1], len(data.emotions), config.channels)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data)
    per_epoch = max(1, n // config.batch_size)

    def step_fn(step: int) -> float:
        epoch, k = divmod(step, per_epoch)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        )
        idx = perm[k * config.batch_size : (k + 1) * config.batch_size]
        g = torch.Generator().manual_seed(config.seed * 7_919 + step)
        x = data.images[idx].permute(0, 3, 1, 2).float() / 255.0
        x = random_blur(augment(x, config.max_shift, g, config.flip), config.max_blur, g)
        x = _prep(x, config.image_size)
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    warmup = max(1, config.steps // 20)  # then cosine decay to 2% of the peak
    net.train()
    state = fit_loop(
        step_fn,
        config.steps,
        model=net,
        optimizer=opt,
        lr=lambda step: warmup_cosine(config.lr, step, config.steps, warmup, 0.02),
        checkpoint=out_dir / TRAIN_STATE,
        checkpoint_every=config.checkpoint_every,
        config_hash=config.hash(),
        progress=progress,
        task="train recognizer",
        stop_after=stop_after,
        save_last=True,
        report_start=True,
    )
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    net.eval()
    model = SynthFaceRecognizer(net, data.emotions, data.au_names, config.image_size)
    wall, cpu = state.total_seconds()
    return TrainResult(model, state.losses, end, wall, state.resumed_from, cpu)


def emotion_classes() -> tuple[str, ...]:
    """``neutral`` followed by the SynthFace emotion prototypes (``facs.EMOTIONS`` order)."""
    return ("neutral", *EMOTIONS)


def emotion_label(expression: Tensor, classes: Sequence[str]) -> int:
    """Class index of an expression: ``neutral`` for no unit above 0.05, else the emotion
    prototype it matches (synthface-faces' ``emotion_of``), else -1 (no emotion)."""
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
    n = config.data.n_images if split == "train" else config.data.n_eval
    d = load_faces(config.data, split, n, progress)
    classes = emotion_classes()
    labels = torch.tensor([emotion_label(e, classes) for e in d["expressions"]], dtype=torch.long)
    return ExpressionData(d["images"], d["expressions"], labels, classes, AU_NAMES)
