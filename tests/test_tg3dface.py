"""TG-3DFace: caption parsing, region boxes, losses, networks, training (determinism, resume),
generation with directional guidance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from facebench.method import RunContext
from facebench.methods.tg3dface import (
    Generator,
    TG3DFaceMethod,
    info_nce,
    part_alignment_loss,
    region_boxes,
    region_phrases,
    train_model,
    view_cameras,
)
from facebench.methods.tg3dface.networks import Discriminator, TriplaneField, pose_features
from facebench.methods.tg3dface.train import PairSet, phrase_table

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = [
    "a photo of a happy face with a wide smile and raised cheeks, brown hair and blue eyes",
    "a 3d render of a person with closed eyes and black hair",
    "a face with raised eyebrows, dark skin and red hair",
    "a close-up of a face with an open mouth; blonde hair, green eyes",
]


def smoke_config(**kw):
    return dataclasses.replace(TG3DFaceMethod.preset_config("smoke"), **kw)


def synthetic_pairs(clip, n: int = 8, size: int = 16) -> PairSet:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(n)]
    yaws = tuple(float(v) for v in torch.linspace(-30, 30, n))
    c2w = view_cameras(yaws, size).c2w
    text = clip.encode_text(captions).float()
    return PairSet(images, captions, c2w, 30.0, text, phrase_table(clip, captions))


def test_region_phrases_from_captions():
    assert region_phrases(CAPTIONS[0]) == {
        "mouth": "a wide smile",
        "skin": "raised cheeks",
        "hair": "brown hair",
        "eyes": "blue eyes",
    }
    assert region_phrases(CAPTIONS[2]) == {
        "brows": "raised eyebrows",
        "skin": "dark skin",
        "hair": "red hair",
    }
    assert region_phrases(CAPTIONS[3])["mouth"] == "an open mouth"
    assert region_phrases(CAPTIONS[1])["eyes"] == "closed eyes"


def test_region_boxes_frontal_layout():
    cams = view_cameras((0.0,), 64)
    eyes, mouth, hair = (region_boxes(cams, r)[0] for r in ("eyes", "mouth", "hair"))
    # symmetric about the image centre column, eyes above the mouth, hair on top
    assert abs((eyes[0] + eyes[2]) / 2 - 32) < 0.5
    assert eyes[3] < mouth[1] and hair[1] < eyes[1]
    assert ((eyes >= 0) & (eyes <= 64)).all()


def test_info_nce_prefers_matching_pairs():
    g = torch.Generator().manual_seed(0)
    t = torch.nn.functional.normalize(torch.randn(6, 16, generator=g), dim=-1)
    matched = info_nce(t, t, 0.07)
    shuffled = info_nce(t.roll(1, 0), t, 0.07)
    assert matched < 0.05 and shuffled > 1.0
    # duplicate texts are not negatives of each other: equal loss for a duplicated pair
    dup = torch.cat([t[:1], t[:1]])
    assert info_nce(dup, dup, 0.07) < 1e-3


def test_triplane_sampling_is_bilinear():
    field = TriplaneField(plane_channels=1, hidden=4, box=1.0)
    r = 5
    ramp = torch.linspace(-1, 1, r)
    planes = torch.zeros(1, 3, 1, r, r)
    planes[0, 0, 0] = ramp[None, :].expand(r, r)  # xy plane: feature = x
    pts = torch.tensor([[0.3, -0.2, 0.1], [-0.7, 0.5, -0.4]]) + field.centre
    out = field.sample(planes, pts, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(out[:, 0], torch.tensor([0.3, -0.7]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["3d", "2d"])
def test_generator_renders_and_backpropagates(tiny_clip, mode):
    cfg = smoke_config(mode=mode)
    gen = Generator(cfg, tiny_clip.embed_dim)
    cams = view_cameras((-20.0, 20.0), cfg.image_size)
    z = torch.randn(2, cfg.z_dim)
    img = gen(z, tiny_clip.encode_text(["a", "b"]), cams)
    assert (
        img.shape == (2, 3, 16, 16)
        and 0 <= float(img.detach().min()) <= float(img.detach().max()) <= 1
    )
    img.mean().backward()
    assert gen.mapping.net.out.weight.grad.abs().sum() > 0
    if mode == "3d":  # the decoder is reached through the volume renderer
        assert gen.field.decoder.out.weight.grad.abs().sum() > 0


def test_superres_doubles_the_image(tiny_clip):
    cfg = smoke_config(superres=True)
    gen = Generator(cfg, tiny_clip.embed_dim)
    img = gen(torch.randn(1, cfg.z_dim), tiny_clip.encode_text(["a"]), view_cameras((0.0,), 16))
    assert img.shape == (1, 3, 32, 32)


def test_discriminator_is_pose_conditioned(tiny_clip):
    d = Discriminator((8, 16), tiny_clip.embed_dim)
    torch.nn.init.normal_(d.embed.weight)
    x = torch.rand(1, 3, 16, 16).expand(2, -1, -1, -1)
    pose = pose_features(view_cameras((-30.0, 30.0), 16))
    out = d(x, pose, tiny_clip.encode_text(["a"]).expand(2, -1))
    assert abs(float((out[0] - out[1]).detach())) > 1e-4


def test_part_alignment_has_gradient(tiny_clip):
    cams = view_cameras((-10.0, 0.0, 10.0, 20.0), 16)
    images = torch.rand(4, 3, 16, 16, requires_grad=True)
    loss = part_alignment_loss(tiny_clip, images, cams, CAPTIONS, 0.07)
    loss.backward()
    assert torch.isfinite(loss) and images.grad.abs().sum() > 0


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_is_deterministic_and_resumes(tiny_clip, tmp_path):
    cfg = smoke_config(steps=4, checkpoint_every=2)
    pairs = synthetic_pairs(tiny_clip)
    dev = torch.device("cpu")
    a, state = train_model(cfg, tiny_clip, pairs, None, dev)
    b, _ = train_model(cfg, tiny_clip, pairs, None, dev)
    assert len(state.losses) == 4 and all(torch.isfinite(torch.tensor(state.losses)))
    torch.testing.assert_close(_weights(a), _weights(b), rtol=0, atol=0)
    ckpt = tmp_path / "checkpoint.pt"
    train_model(cfg, tiny_clip, pairs, ckpt, dev, stop_after=2)  # "killed" after step 2
    c, resumed = train_model(cfg, tiny_clip, pairs, ckpt, dev)
    assert resumed.resumed_from == 2
    torch.testing.assert_close(_weights(a), _weights(c), rtol=0, atol=0)


def test_ablations_change_the_trained_model(tiny_clip):
    pairs = synthetic_pairs(tiny_clip)
    dev = torch.device("cpu")
    full, _ = train_model(smoke_config(steps=2), tiny_clip, pairs, None, dev)
    for kw in ({"contrastive": False}, {"part_align": False}):
        other, _ = train_model(smoke_config(steps=2, **kw), tiny_clip, pairs, None, dev)
        assert not torch.equal(_weights(full), _weights(other))


def test_variants_are_data():
    assert set(TG3DFaceMethod.variants) == {
        "full",
        "no-contrastive",
        "no-part-align",
        "no-directional",
        "2d",
    }
    assert TG3DFaceMethod.preset_config("quick", "2d").mode == "2d"
    assert not TG3DFaceMethod.preset_config("quick", "no-directional").directional
    assert TG3DFaceMethod.preset_config("full").superres
    assert "generate_text" in TG3DFaceMethod.capabilities


def test_generation_cached_seeded_and_guided(tiny_clip, tmp_path, monkeypatch):
    import facebench.methods.tg3dface.method as method_mod

    calls = []

    def fake_pairs(cfg, clip, progress):
        calls.append(1)
        return synthetic_pairs(clip)

    monkeypatch.setattr(method_mod, "load_pairs", fake_pairs)
    ctx = RunContext(device=torch.device("cpu"), cache_dir=tmp_path, seed=0)
    m = TG3DFaceMethod.create("full", "smoke")
    m.prepare_generator(tiny_clip, ctx)
    assert m.model_label.startswith("tg3dface:")
    out = m.generate("a smiling face", tiny_clip, ctx)
    assert out.shape == (2, 3, 16, 16, 3)
    again = TG3DFaceMethod.create("full", "smoke")
    again.prepare_generator(tiny_clip, ctx)  # from the cache: no second training
    assert len(calls) == 1 and again.model_label == m.model_label
    torch.testing.assert_close(again.generate("a smiling face", tiny_clip, ctx), out)
    other_seed = RunContext(device=torch.device("cpu"), cache_dir=tmp_path, seed=1)
    assert not torch.equal(again.generate("a smiling face", tiny_clip, other_seed), out)
    plain = TG3DFaceMethod.create("no-directional", "smoke")
    plain.prepare_generator(tiny_clip, ctx)  # same trained model (guidance is inference only)
    assert len(calls) == 1
    assert not torch.equal(plain.generate("a smiling face", tiny_clip, ctx), out)


def test_density_prior_starts_from_a_sphere():
    field = TriplaneField(plane_channels=2, hidden=4, box=1.0, prior=10.0, radius=0.6)
    feats = torch.zeros(3, 2)
    pts = field.centre + torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.59], [0.0, 0.0, 1.0]])
    sigma, _ = field.decode(feats, pts)
    plain, _ = TriplaneField(plane_channels=2, hidden=4, box=1.0).decode(feats, pts)
    assert sigma[0] > sigma[1] > 10 * sigma[2]  # dense inside, nearly empty outside
    assert torch.allclose(plain, plain[0].expand(3))  # no prior: position plays no part


def test_training_uses_the_phrase_table(tiny_clip):
    """Phrases are embedded once at load (resumed runs see the same numbers); the table is used."""
    pairs = synthetic_pairs(tiny_clip)
    assert set(pairs.phrases) == {p for c in CAPTIONS for p in region_phrases(c).values()}
    dev = torch.device("cpu")
    a, _ = train_model(smoke_config(steps=2), tiny_clip, pairs, None, dev)
    shifted = {k: torch.roll(v, 1) for k, v in pairs.phrases.items()}
    b, _ = train_model(
        smoke_config(steps=2), tiny_clip, dataclasses.replace(pairs, phrases=shifted), None, dev
    )
    assert not torch.equal(_weights(a), _weights(b))
