"""The ``fer2013`` recognizer backend: dlib finds the face, the FER2013 mini-Xception reads it.

It implements :class:`~facebench.metrics.instruments.recognizer.ExpressionRecognizer` for
real photos and real captures. Each image is converted to grayscale (ITU-R 601 luma, as
OpenCV's ``BGR2GRAY`` that the ``fer`` package uses); dlib's HOG frontal-face detector finds
the largest face (upsampling small images so that faces of ~20 px are found); the box is made
square and widened by :data:`MARGIN` of its side on every side (dlib's box is tight, eyebrows
to chin, while FER2013's faces -- and ``fer``'s Haar box plus 10 px -- include forehead and
chin); the crop (edge pixels repeated past the border) is resized to 64x64 bilinearly and
scaled to [-1, 1], as ``fer`` does. An image with no detected face is read whole (its centre
square): :attr:`FER2013Recognizer.last_detected` says which images had a face.

The seven FER2013 classes map onto the prompt sets' emotion names (:data:`EMOTION_NAMES`):
angry -> angry, fear -> fearful, happy -> happy, sad -> sad, surprise -> surprised,
neutral -> neutral, disgust -> disgusted. No shipped prompt asks for disgust, so a face read
as disgusted counts as a miss for every prompt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.metrics.instruments.fer2013.model import (
    FER2013_CLASSES,
    INPUT_SIZE,
    MiniXception,
    load_keras_weights,
)
from facebench.metrics.instruments.fer2013.weights import fer2013_label, require_fer2013
from facebench.metrics.instruments.recognizer.model import Recognition
from facebench.weights import MissingWeightsError

EMOTION_NAMES = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}
"""FER2013 class -> the emotion name the prompt sets use (see the module docstring)."""

MARGIN = 0.2
"""Fraction of dlib's face-box side added on each side before cropping."""

LUMA = (0.299, 0.587, 0.114)


def _detector() -> Any:
    try:
        import dlib
    except ImportError as exc:  # dlib-bin is a dependency; a broken install says so
        raise MissingWeightsError(
            "the fer2013 recognizer finds faces with dlib; pip install dlib-bin"
        ) from exc
    return dlib, dlib.get_frontal_face_detector()


def face_box(gray: np.ndarray, detector: Any) -> tuple[int, int, int, int] | None:
    """The largest frontal face in a uint8 grayscale image as ``(left, top, right, bottom)``,
    or None. Images under 320 px are upsampled so that faces of ~20 px are found."""
    short = min(gray.shape)
    upsample = 0 if short >= 640 else 1 if short >= 320 else 2
    dets = list(detector(gray, upsample))
    if not dets:
        return None
    d = max(dets, key=lambda r: r.width() * r.height())
    return d.left(), d.top(), d.right(), d.bottom()


def crop_square(gray: Tensor, box: tuple[int, int, int, int] | None, margin: float) -> Tensor:
    """``(H, W)`` -> the square around ``box`` widened by ``margin`` per side, at 64x64
    (bilinear, edge pixels repeated past the border); the centre square when ``box`` is None."""
    h, w = gray.shape
    if box is None:
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
    else:
        left, top, right, bottom = box
        side = max(right - left, bottom - top) * (1 + 2 * margin)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        side = max(int(round(side)), 1)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    img = gray[None, None]
    if pad:
        img = F.pad(img, (pad, pad, pad, pad), mode="replicate")
    crop = img[..., y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    return F.interpolate(crop, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)[
        0, 0
    ]


class FER2013Recognizer:
    """FER2013 emotions of ``(N, H, W, 3)`` images in [0, 1] (see the module docstring)."""

    au_names = None  # FER2013 has emotion classes only: au_error skips it with a note

    def __init__(self, net: MiniXception, label: str, device: torch.device | str = "cpu") -> None:
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.emotions = tuple(EMOTION_NAMES[c] for c in FER2013_CLASSES)
        self.dlib, self.detector = _detector()
        self.backend = f"{label}+dlib-{self.dlib.__version__}-hog"
        self.margin = MARGIN
        self.last_detected: list[bool] = []

    def faces(self, images: Tensor) -> Tensor:
        """``(N, 64, 64)`` face crops in [0, 1] (CPU) of ``(N, H, W, 3)`` images in [0, 1]."""
        x = torch.as_tensor(images).detach().float().cpu()
        if x.ndim == 3:
            x = x[None]
        if x.shape[-1] != 3 and x.shape[1] == 3:
            x = x.permute(0, 2, 3, 1)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise FacebenchError(f"fer2013: expected (N, H, W, 3) images, got {tuple(x.shape)}")
        gray = (x.clamp(0, 1) * torch.tensor(LUMA)).sum(-1)
        gray_u8 = (gray * 255).round().to(torch.uint8).numpy()
        crops, found = [], []
        for g, g8 in zip(gray, gray_u8, strict=True):
            box = face_box(np.ascontiguousarray(g8), self.detector)
            found.append(box is not None)
            crops.append(crop_square(g, box, self.margin))
        self.last_detected = found
        return torch.stack(crops)

    @torch.no_grad()
    def recognize(self, images: Tensor) -> Recognition:
        crops = self.faces(images).to(self.device)
        logits = self.net((crops[:, None] - 0.5) * 2.0)
        return Recognition(logits.softmax(-1), None, self.emotions)


_LOADED: dict[tuple[str, str], FER2013Recognizer] = {}


def load_fer2013(device: torch.device | str = "cpu") -> FER2013Recognizer:
    """The FER2013 recognizer from the installed weights (``facebench weights install fer2013``);
    :class:`MissingWeightsError` when they are absent."""
    path = require_fer2013()
    label = fer2013_label(path)
    key = (label, str(device))
    if key not in _LOADED:
        _LOADED[key] = FER2013Recognizer(load_keras_weights(MiniXception(), path), label, device)
    return _LOADED[key]
