"""Import a face video as a Nerfies-layout capture (``facebench prepare video FILE --out DIR``).

1. Frames are decoded with PyAV at a chosen rate (every frame by default), at most
   ``max_frames`` of them, downscaled so that the long side is at most ``work_size``.
2. dlib finds the face (HOG detector, largest face) and its 68 landmarks in every frame.
3. Cameras: with ``static_camera`` (a tripod or dashboard video where the head moves) one
   shared camera at the origin looking down +z, focal length ``focal`` x the long side
   (default :data:`DEFAULT_FOCAL`); otherwise COLMAP structure-from-motion through pycolmap
   (SIFT, exhaustive matching, incremental mapping, one shared SIMPLE_PINHOLE camera whose
   focal length is estimated, or fixed to ``focal`` when given); frames it cannot register
   are dropped, and fewer than half registered is a failure.
4. Scene: the head centre is where the rays through the face-box centres meet (least
   squares; for one static camera, the box centre at the depth a face of
   :data:`FACE_WIDTH` that wide would have); the world is moved and scaled so the head
   sits at the origin with radius about 1, as SynthFace heads do. Bounds and near/far follow.
5. Every frame is cropped to one fixed square around the median face box (``crop`` x its
   side) and resized to ``size``; the intrinsics follow the crop. The landmarks are saved
   beside the frames in crop pixels (``landmarks/1x/<id>.json``; ``null`` where no face).

The capture is written into a temporary folder beside ``out`` and renamed onto it at the
end: a video that cannot be read, shows no face, or whose poses fail raises
:class:`~facebench.errors.FacebenchError` and leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.datasets.capture.files import write_json
from facebench.datasets.capture.nerfies import write_nerfies
from facebench.errors import FacebenchError
from facebench.registry import register_dataset
from facebench.render.cameras import Cameras
from facebench.scene import Scene

DEFAULT_FOCAL = 0.72
"""Focal length / long side of a static camera when none is given (a phone's 26 mm lens)."""

StageProgress = Callable[[str, int, int], None]


def _quiet(stage: str, done: int, total: int) -> None:
    return None


FACE_WIDTH = 0.16
"""Width in metres of dlib's face box on an adult face (static camera's depth guess)."""


@dataclass
class Faces:
    boxes: np.ndarray  # (N, 4) left, top, right, bottom; NaN where no face
    landmarks: list[np.ndarray | None]  # (68, 2) per frame


def read_frames(
    path: Path, fps: float | None = None, max_frames: int = 300, work_size: int = 640
) -> list[np.ndarray]:
    """RGB uint8 frames of the video at ``fps`` (all frames when None), long side <= work_size."""
    import av
    from PIL import Image

    if not path.is_file():
        raise FacebenchError(f"{path}: no such video file")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FacebenchError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            next_t = 0.0
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else len(frames) / 30.0
                if fps is not None and t + 1e-6 < next_t:
                    continue
                next_t = t + 1.0 / fps if fps else t
                img = frame.to_image()
                scale = work_size / max(img.size)
                if scale < 1:
                    img = img.resize(
                        (round(img.width * scale), round(img.height * scale)), Image.BILINEAR
                    )
                frames.append(np.asarray(img.convert("RGB")))
                if len(frames) >= max_frames:
                    break
    except av.FFmpegError as exc:
        raise FacebenchError(f"{path}: cannot read the video ({exc})") from exc
    if len(frames) < 2:
        raise FacebenchError(f"{path}: {len(frames)} frame(s) read; a capture needs at least 2")
    return frames


def detect_faces(frames: list[np.ndarray], progress: StageProgress = _quiet) -> Faces:
    """dlib's largest face box and its 68 landmarks in each frame."""
    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_model_location())
    boxes = np.full((len(frames), 4), np.nan)
    marks: list[np.ndarray | None] = []
    for i, img in enumerate(frames):
        progress("finding faces (dlib)", i, len(frames))
        upsample = 0 if min(img.shape[:2]) >= 640 else 1
        dets = list(detector(img, upsample))
        if not dets:
            marks.append(None)
            continue
        d = max(dets, key=lambda r: r.width() * r.height())
        boxes[i] = (d.left(), d.top(), d.right(), d.bottom())
        shape = predictor(img, d)
        marks.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
    progress("finding faces (dlib)", len(frames), len(frames))
    return Faces(boxes, marks)


def colmap_poses(
    frames: list[np.ndarray], workdir: Path, focal_px: float | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict]:
    """COLMAP SfM: ``(registered (N,) bool, c2w (N, 3, 4), {"f", "cx", "cy"})``. A known
    ``focal_px`` is kept fixed (a short, narrow-angle video constrains the focal poorly).
    COLMAP's RANSAC and mapper draw from a PRNG seeded with ``seed`` and run on torch's
    thread count, so a seed and a thread count fix the poses (unseeded runs on all cores
    differed by several degrees)."""
    import pycolmap
    from PIL import Image

    pycolmap.logging.minloglevel = 2  # COLMAP's own INFO/WARNING lines stay out of the log
    images = workdir / "images"
    images.mkdir(parents=True)
    names = [f"{i:06d}.png" for i in range(len(frames))]
    for name, img in zip(names, frames, strict=True):
        Image.fromarray(img).save(images / name)
    db = workdir / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_PINHOLE"
    threads = torch.get_num_threads()
    pycolmap.set_random_seed(seed)
    extraction = pycolmap.FeatureExtractionOptions(num_threads=threads)
    matching = pycolmap.FeatureMatchingOptions(num_threads=threads)
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = seed
    mapper = pycolmap.IncrementalPipelineOptions(num_threads=threads, random_seed=seed)
    mapper.mapper.random_seed = seed
    if focal_px is not None:
        height, width = frames[0].shape[:2]
        reader.camera_params = f"{focal_px},{width / 2},{height / 2}"
        mapper.ba_refine_focal_length = False
    cpu = pycolmap.Device.cpu
    pycolmap.extract_features(
        db,
        images,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=cpu,
    )
    pycolmap.match_exhaustive(
        db, matching_options=matching, verification_options=verification, device=cpu
    )
    recs = pycolmap.incremental_mapping(db, images, workdir / "sparse", options=mapper)
    if not recs:
        raise FacebenchError("camera poses failed: COLMAP registered no frames")
    rec = max(recs.values(), key=lambda r: r.num_reg_images())
    registered = np.zeros(len(frames), bool)
    c2w = np.zeros((len(frames), 3, 4))
    for image in rec.images.values():
        if not image.has_pose:
            continue
        i = names.index(image.name)
        w2c = image.cam_from_world().matrix()  # (3, 4)
        rot = w2c[:, :3].T
        c2w[i] = np.concatenate([rot, -rot @ w2c[:, 3:]], axis=1)
        registered[i] = True
    (camera,) = rec.cameras.values()
    f, cx, cy = (float(v) for v in camera.params)
    return registered, c2w, {"f": f, "cx": cx, "cy": cy}


def head_centre(c2w: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to the rays from each camera centre along ``rays``."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for m, d in zip(c2w, rays, strict=True):
        d = d / np.linalg.norm(d)
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ m[:, 3]
    return np.linalg.solve(a, b)


def _crop_box(boxes: np.ndarray, width: int, height: int, crop: float) -> tuple[int, int, int]:
    """One square ``(x0, y0, side)`` around the median face box, inside the frame."""
    ok = boxes[~np.isnan(boxes[:, 0])]
    left, top, right, bottom = np.median(ok, axis=0)
    side = int(round(min(max(right - left, bottom - top) * crop, width, height)))
    x0 = int(round(min(max((left + right) / 2 - side / 2, 0), width - side)))
    y0 = int(round(min(max((top + bottom) / 2 - side / 2, 0), height - side)))
    return x0, y0, side


@register_dataset(
    "video",
    capabilities=("import",),
    description="a face video imported as a Nerfies capture (facebench prepare video)",
)
def import_video(
    video: str | Path,
    out: str | Path,
    *,
    fps: float | None = None,
    size: int = 256,
    max_frames: int = 300,
    static_camera: bool = False,
    focal: float | None = None,
    crop: float = 2.0,
    val_every: int = 10,
    seed: int = 0,
    progress: StageProgress = _quiet,
) -> Scene:
    """Write ``video`` as a Nerfies capture at ``out``; returns the scene (see the module).
    ``progress(stage, done, total)`` hears each stage (:data:`facebench.method.Progress`)."""
    from PIL import Image

    video, out = Path(video), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacebenchError(f"{out}: exists and is not an empty directory")
    progress("reading video", 0, 1)
    frames = read_frames(video, fps, max_frames)
    progress("reading video", 1, 1)
    height, width = frames[0].shape[:2]
    faces = detect_faces(frames, progress)
    has_face = ~np.isnan(faces.boxes[:, 0])
    if not has_face.any():
        raise FacebenchError(f"{video}: no face found in any of {len(frames)} frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        work = Path(tmp)
        if static_camera:
            keep = np.ones(len(frames), bool)
            c2w = np.tile(np.eye(4)[:3], (len(frames), 1, 1))
            f = (focal or DEFAULT_FOCAL) * max(width, height)
            intr = {"f": f, "cx": width / 2, "cy": height / 2}
        else:
            focal_px = focal * max(width, height) if focal else None
            progress("camera poses (COLMAP)", 0, 1)
            keep, c2w, intr = colmap_poses(frames, work / "colmap", focal_px, seed)
            progress("camera poses (COLMAP)", 1, 1)
            if keep.sum() < max(2, len(frames) / 2):
                raise FacebenchError(
                    f"{video}: camera poses failed (COLMAP registered {int(keep.sum())} of "
                    f"{len(frames)} frames); for a fixed camera use --static-camera"
                )
        f, cx, cy = intr["f"], intr["cx"], intr["cy"]
        use = keep & has_face
        centres = (faces.boxes[use, :2] + faces.boxes[use, 2:]) / 2
        rays = np.stack(
            [(centres[:, 0] - cx) / f, (centres[:, 1] - cy) / f, np.ones(len(centres))], 1
        )
        rays = np.einsum("nij,nj->ni", c2w[use, :, :3], rays)
        box_w = faces.boxes[use, 2] - faces.boxes[use, 0]
        if static_camera:
            depth = float(np.median(f * FACE_WIDTH / box_w))
            centre = np.median(rays, axis=0) * depth
        else:
            centre = head_centre(c2w[use], rays)
        dist = np.linalg.norm(c2w[use, :, 3] - centre, axis=1)
        radius = float(np.median(box_w / 2 / f * dist)) * 1.3  # face half-width -> head
        c2w = c2w.copy()
        c2w[:, :, 3] = (c2w[:, :, 3] - centre) / radius  # head at the origin, radius ~1
        ids = np.flatnonzero(keep)
        x0, y0, side = _crop_box(faces.boxes[keep], width, height, crop)
        s = size / side
        images, landmarks = [], []
        for i in ids:
            img = Image.fromarray(frames[i][y0 : y0 + side, x0 : x0 + side]).resize(
                (size, size), Image.BICUBIC
            )
            images.append(np.asarray(img))
            lm = faces.landmarks[i]
            landmarks.append(None if lm is None else ((lm - [x0, y0]) * s).round(2).tolist())
        n = len(ids)
        cams = Cameras(
            torch.tensor(c2w[ids], dtype=torch.float32),
            torch.full((n,), f * s),
            torch.full((n,), f * s),
            torch.full((n,), (cx - x0) * s),
            torch.full((n,), (cy - y0) * s),
            size,
            size,
        )
        far_cam = float(np.linalg.norm(c2w[ids, :, 3], axis=1).max())
        near_cam = float(np.linalg.norm(c2w[ids, :, 3], axis=1).min())
        val = list(range(val_every - 1, n, val_every)) if n >= 2 * val_every else [n - 1]
        scene = Scene(
            name=f"video:{video.stem}",
            images=torch.from_numpy(np.stack(images)).float() / 255.0,
            cameras=cams,
            train_ids=[i for i in range(n) if i not in val],
            val_ids=val,
            eval_cameras=cams[torch.as_tensor(val)],
            aabb=torch.tensor([[-1.6] * 3, [1.6] * 3]),
            near=max(near_cam - 2.0, 0.05 * near_cam),
            far=far_cam + 2.0,
            source=f"video:{video}",
            meta={"frames": [int(i) for i in ids], "static_camera": static_camera},
        )
        staged = work / "capture"
        write_nerfies(scene, staged, lambda done, total: progress("writing", done, total))
        for k, lm in enumerate(landmarks):
            write_json(staged / "landmarks" / "1x" / f"{k:06d}.json", {"points68": lm})
        write_json(
            staged / "video.json",
            {
                "source": str(video),
                "frames": [int(i) for i in ids],
                "static_camera": static_camera,
                "colmap": {"seed": seed, "threads": torch.get_num_threads()},
                "crop": {"x0": x0, "y0": y0, "side": side, "frame_size": [width, height]},
                "camera": {"model": "pinhole" if static_camera else "SIMPLE_PINHOLE", **intr},
                "world_from_colmap": {"centre": centre.tolist(), "scale": 1 / radius},
                "faces_found": int(has_face.sum()),
            },
        )
        if out.exists():
            out.rmdir()
        os.replace(staged, out)
    return scene


def pose_error(est_c2w: Any, true_c2w: Any) -> dict[str, float]:
    """Camera pose error after a similarity alignment of ``est`` onto ``true``: the rotation
    is the chordal mean of ``R_true R_est^T`` over the cameras (camera centres on a short
    arc fix it poorly), scale and offset then by least squares on the centres. Returns mean
    / max rotation error in degrees and centre error relative to the true centres' spread
    (RMS distance from their mean)."""
    est = np.asarray(est_c2w, dtype=np.float64)
    true = np.asarray(true_c2w, dtype=np.float64)
    u, _, vt = np.linalg.svd(np.einsum("nij,nkj->ik", true[:, :, :3], est[:, :, :3]))
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    a, b = est[:, :, 3] @ rot.T, true[:, :, 3]
    da, db = a - a.mean(0), b - b.mean(0)
    scale = float((da * db).sum() / (da * da).sum())
    spread = float(np.sqrt((db**2).sum(1).mean()))
    t_err = np.linalg.norm(scale * da - db, axis=1) / spread
    rel = np.einsum("nji,jk,nkl->nil", true[:, :, :3], rot, est[:, :, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)
    r_err = np.degrees(np.arccos(cos))
    return {
        "rotation_deg_mean": float(r_err.mean()),
        "rotation_deg_max": float(r_err.max()),
        "translation_rel_mean": float(t_err.mean()),
        "translation_rel_max": float(t_err.max()),
    }
