"""synthface-faces: identity splits, deterministic parameters and renders, captions."""

from __future__ import annotations

import torch

from facebench.datasets.faces import SynthFaceFaces, caption, emotion_of, expression_phrases
from facebench.datasets.facs import EMOTIONS, expression_vector
from facebench.datasets.synthhead import HAIR_COLORS, Identity, render_threads
from facebench.registry import DATASETS


def test_registered_with_splits():
    entry = DATASETS.get("synthface-faces")
    assert "image_text" in entry.capabilities and entry.obj is SynthFaceFaces
    splits = {
        s: SynthFaceFaces(s, n_identities=50, per_identity=3) for s in ("train", "val", "test")
    }
    ids = {s: set(d.identity_ids) for s, d in splits.items()}
    assert len(ids["train"]) == 40 and len(ids["val"]) == 5 and len(ids["test"]) == 5
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"])
    assert not (ids["val"] & ids["test"])
    assert len(splits["train"]) == 120


def test_parameters_are_deterministic_and_varied():
    a = SynthFaceFaces("train", n_identities=50, per_identity=4)
    b = SynthFaceFaces("train", n_identities=50, per_identity=4)
    sa, sb = a.sample(7), b.sample(7)
    assert sa.caption == sb.caption and torch.equal(sa.expression, sb.expression)
    assert sa.identity == sb.identity
    captions = {a.sample(i).caption for i in range(len(a))}
    assert len(captions) > 0.6 * len(a)
    hairs = {a.sample(i).identity.describe()["hair"] for i in range(0, len(a), 4)}
    assert len(hairs) >= 4
    assert SynthFaceFaces("train", n_identities=50, seed=1).sample(7).caption != sa.caption


def test_captions_follow_parameters():
    ident = Identity(hair_color=HAIR_COLORS["red"])
    ex = expression_vector(AU12=1.0, AU43=1.0)
    for v in range(4):
        text = caption(ident, ex, variant=v)
        assert "red hair" in text and "wide smile" in text and "closed eyes" in text
    assert expression_phrases(torch.zeros(12)) == []
    assert "neutral" in caption(ident, torch.zeros(12))
    assert emotion_of(expression_vector(EMOTIONS["surprised"])) == "surprised"
    assert "surprised" in caption(ident, expression_vector(EMOTIONS["surprised"]))
    assert emotion_of(expression_vector(AU43=1.0)) is None


def test_batches_render_deterministically(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    ds = SynthFaceFaces(
        "val", n_identities=20, per_identity=2, resolution=32, shard_size=4, cache=True
    )
    with render_threads():
        batch = next(ds.batches(3))
        assert batch["images"].shape == (3, 32, 32, 3) and len(batch["captions"]) == 3
        assert batch["expressions"].shape == (3, 12)
        again = SynthFaceFaces(
            "val", n_identities=20, per_identity=2, resolution=32, shard_size=4, cache=True
        )[1]
    assert torch.equal(again["image"], batch["images"][1])  # from the shard cache
    assert again["caption"] == batch["captions"][1]
    assert list((tmp_path / "faces").rglob("*.npz"))
    assert batch["images"].std() > 0.05
