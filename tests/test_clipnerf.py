"""CLIP-NeRF: disentanglement by construction, training (losses fall, resumable, seeded),
mappers, inversion, edits, and the method on a tiny stand-in category."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from facebench.config import apply_overrides
from facebench.errors import FacebenchError
from facebench.method import RunContext
from facebench.methods.clipnerf import CLIPNeRFMethod
from facebench.methods.clipnerf.config import CLIPNERF_PRESETS, CLIPNeRFConfig, ModelConfig
from facebench.methods.clipnerf.invert import invert, rotate_cameras
from facebench.methods.clipnerf.model import ConditionalNeRF, Mapper, render_codes
from facebench.methods.clipnerf.train import (
    Mappers,
    generator_cache,
    load_or_train_generator,
    mapper_cache,
    train_generator,
    train_mappers,
)
from facebench.render import Cameras, RenderConfig, look_at
from facebench.trainer import seeded

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9]])


class ToyCategory:
    """Two 'identities' (a red and a blue world) seen from a frontal arc: the category API."""

    def __init__(self, size: int = 8, views: int = 4):
        self.aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
        self.target = torch.zeros(3)
        self.cameras = self._cams(torch.linspace(-0.5, 0.5, views).repeat(2), size)
        n = 2 * views
        self.identity_index = torch.arange(n) // views
        self.group_index = self.identity_index.clone()
        self.images = COLOURS[self.identity_index][:, None, None, :].expand(n, size, size, 3)
        self.captions = ["a red face"] * views + ["a blue face"] * views
        self.n_groups = self.n_identities = 2

    @staticmethod
    def _cams(yaw: torch.Tensor, size: int) -> Cameras:
        eye = torch.stack([4 * torch.sin(yaw), torch.zeros_like(yaw), 4 * torch.cos(yaw)], -1)
        return Cameras.from_fov(look_at(eye, torch.zeros_like(eye)), size, size, 30.0)

    def sample_cameras(self, n: int, generator: torch.Generator | None = None) -> Cameras:
        return self._cams(torch.rand(n, generator=generator) - 0.5, self.cameras.height)

    def key(self) -> str:
        return "toy"


def smoke_config(**overrides) -> CLIPNeRFConfig:
    cfg = apply_overrides(CLIPNeRFConfig(), CLIPNERF_PRESETS["smoke"])
    return apply_overrides(cfg, overrides) if overrides else cfg


def small_model(conditioning: str = "deform") -> ConditionalNeRF:
    torch.manual_seed(0)
    cfg = dataclasses.replace(ModelConfig(), code_dim=8, conditioning=conditioning)
    return ConditionalNeRF(cfg, torch.tensor([[-1.0] * 3, [1.0] * 3]))


# ------------------------------------------------------------------------------ the field


def test_appearance_code_cannot_change_density_in_the_disentangled_field():
    model = small_model("deform")
    pts, dirs = torch.rand(256, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(256, 3))
    zs, za, za2 = torch.randn(3, 1, 8).unbind(0)
    s1, c1 = model(pts, dirs, zs.expand(256, -1), za.expand(256, -1))
    s2, c2 = model(pts, dirs, zs.expand(256, -1), za2.expand(256, -1))
    assert torch.equal(s1, s2) and not torch.allclose(c1, c2)
    s3, _ = model(pts, dirs, (zs + 1).expand(256, -1), za.expand(256, -1))
    assert (s3 - s1).abs().max() > 1e-6  # the shape code does move density (small at init)
    # the displacement is tanh-bounded: |gamma* - gamma| < 1 per channel
    delta = model.encoding(pts, (10 * zs).expand(256, -1)) - model.enc(model.normalize(pts))
    assert delta.abs().max() < 1.0 and delta.abs().max() > 0


def test_trivial_conditional_nerf_lets_appearance_change_density():
    model = small_model("concat")
    pts, dirs = torch.rand(64, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(64, 3))
    zs, za = torch.randn(2, 64, 8)
    s1, _ = model(pts, dirs, zs, za)
    s2, _ = model(pts, dirs, zs, za + 1)
    assert (s1 - s2).abs().max() > 1e-5


def test_render_codes_gives_each_image_its_code_and_gradients_reach_it():
    model = small_model()
    cams = ToyCategory(size=4).cameras[torch.tensor([0, 1])]
    zs = torch.randn(2, 8, requires_grad=True)
    za = torch.randn(2, 8, requires_grad=True)
    rcfg = RenderConfig(8, 0, chunk=7)  # several chunks
    out = render_codes(model, cams, zs, za, rcfg, model.center.new_tensor([[-1.0] * 3, [1.0] * 3]))
    assert out["rgb"].shape == (2, 4, 4, 3) and out["depth"].shape == (2, 4, 4)
    out["rgb"][0].sum().backward()
    assert zs.grad[0].abs().sum() > 0 and zs.grad[1].abs().sum() == 0
    assert za.grad[0].abs().sum() > 0 and za.grad[1].abs().sum() == 0
    one = render_codes(
        model,
        cams[torch.tensor([1])],
        zs[1:],
        za[1:],
        rcfg,
        model.center.new_tensor([[-1.0] * 3, [1.0] * 3]),
    )
    assert torch.allclose(one["rgb"][0], out["rgb"][1], atol=1e-6)


def test_mapper_is_the_papers_two_layer_mlp_after_a_projection():
    m = Mapper(512, 128, 256)
    shapes = [tuple(p.shape) for p in m.parameters()]
    assert shapes == [(128, 512), (128,), (256, 128), (256,), (128, 256), (128,)]
    assert isinstance(Mapper(128, 128, 256).proj, torch.nn.Identity)


# ------------------------------------------------------------------------------ training


def test_reconstruction_assisted_training_fits_each_identity(tmp_path):
    cfg = smoke_config(**{"train.steps": 60, "train.recon_rays": 256, "train.lr": 1e-2})
    cat = ToyCategory()
    cache = generator_cache(tmp_path, cfg, cat.key())
    model = train_generator(cfg, cat, torch.device("cpu"), cache)
    recon = [h["recon"] for h in model.history]
    assert sum(recon[-5:]) / 5 < 0.25 * sum(recon[:5]) / 5
    with torch.no_grad():
        cams = cat.cameras[torch.tensor([0, 4])]
        rgb = render_codes(
            model.nerf,
            cams,
            model.shape_codes.weight,
            model.appearance_codes.weight,
            RenderConfig(8, 0),
            cat.aabb,
        )["rgb"]
    got = rgb.mean((1, 2))
    assert (got - COLOURS).abs().max() < 0.2  # red identity red, blue identity blue
    assert all(math.isfinite(h["loss_d"]) for h in model.history)


def test_generator_training_resumes_to_the_same_weights_and_is_seeded(tmp_path):
    cfg = smoke_config(**{"train.steps": 6, "train.checkpoint_every": 2})
    cat = ToyCategory(size=8)
    full = train_generator(cfg, cat, torch.device("cpu"), generator_cache(tmp_path / "a", cfg, "t"))
    cache = generator_cache(tmp_path / "b", cfg, "t")
    train_generator(cfg, cat, torch.device("cpu"), cache, stop_after=3)  # "killed" at step 3
    assert cache.checkpoint.is_file()
    resumed = train_generator(cfg, cat, torch.device("cpu"), cache)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = train_generator(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=5)),
        cat,
        torch.device("cpu"),
        generator_cache(tmp_path / "c", cfg, "t"),
    )
    assert not torch.equal(other.nerf.trunk.out.weight, full.nerf.trunk.out.weight)


def test_generator_cache_loads_what_it_trained(tmp_path):
    cfg = smoke_config()
    cat = ToyCategory()
    cache = generator_cache(tmp_path, cfg, cat.key())
    a = load_or_train_generator(cfg, cat, torch.device("cpu"), cache)
    assert cache.exists() and not cache.checkpoint.exists()
    b = load_or_train_generator(cfg, cat, torch.device("cpu"), cache)
    assert cache.label(a.state_dict()) == cache.label(b.state_dict()) == cache.cached_label()


def test_mappers_lower_the_clip_distance(tmp_path, tiny_clip):
    cfg = smoke_config(
        **{"train.steps": 20, "train.lr": 1e-2, "mapper.steps": 20, "mapper.lr": 0.05}
    )
    cat = ToyCategory()
    model = train_generator(cfg, cat, torch.device("cpu"), generator_cache(tmp_path, cfg, "t"))
    cache = mapper_cache(tmp_path, cfg.mapper, "gen", tiny_clip.label, "t")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mappers = train_mappers(cfg, model, cat, tiny_clip, ["a red face"], cache)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # G, D fixed
    with seeded(cfg.mapper.seed):
        init = Mappers(tiny_clip.embed_dim, cfg.model.code_dim, cfg.mapper)
    assert not torch.equal(init.shape.mlp.out.weight, mappers.shape.mlp.out.weight)
    # fixed codes and views: the appearance mapper's displacement brings renders closer
    cams = cat.cameras[torch.tensor([0, 5])]
    z_s, z_a = model.shape_codes.weight.detach(), model.appearance_codes.weight.detach()
    e = tiny_clip.encode_text(["a red face"]).float()

    def dclip(za):
        with torch.no_grad():
            rgb = render_codes(model.nerf, cams, z_s, za, RenderConfig(8, 0), cat.aabb)["rgb"]
            return float(tiny_clip.global_loss(rgb.permute(0, 3, 1, 2), "a red face"))

    with torch.no_grad():
        moved = z_a + mappers.appearance(e)
    assert dclip(moved) < dclip(z_a) - 0.02


# ------------------------------------------------------------------------------ inversion


def test_rotate_cameras_turns_about_the_pivot():
    cams = ToyCategory().cameras[torch.tensor([0, 3])]
    pivot = torch.tensor([0.0, 0.0, 0.5])
    same = rotate_cameras(cams, torch.zeros(2), pivot)
    assert torch.allclose(same.c2w, cams.c2w, atol=1e-6)
    turned = rotate_cameras(cams, torch.tensor([0.3, -0.2]), pivot)
    d0 = (cams.centers - pivot).norm(dim=-1)
    assert torch.allclose((turned.centers - pivot).norm(dim=-1), d0, atol=1e-5)
    assert not torch.allclose(turned.centers, cams.centers)


def test_inversion_finds_codes_that_render_the_image(tiny_clip):
    model = small_model()
    cat = ToyCategory(size=8)
    aabb = cat.aabb
    true = (torch.randn(1, 8), torch.randn(1, 8))
    cams = cat.cameras[torch.tensor([0, 2])]
    with torch.no_grad():
        images = render_codes(model, cams, *true, RenderConfig(8, 0), aabb)["rgb"]
    cfg = dataclasses.replace(
        CLIPNeRFConfig().invert,
        rounds=2,
        view_steps=3,
        shape_steps=15,
        appearance_steps=15,
        image_size=8,
        n_coarse=8,
        n_fine=0,
        lr=0.1,
    )
    start = (torch.zeros(8), torch.zeros(8))
    inv = invert(model, images, cams, cfg, aabb, cat.target, start, clip=tiny_clip)

    def err(zs, za, angles):
        with torch.no_grad():
            c = rotate_cameras(cams, angles, cat.target)
            return (
                (render_codes(model, c, zs, za, RenderConfig(8, 0), aabb)["rgb"] - images)
                .pow(2)
                .mean()
            )

    before = err(start[0][None], start[1][None], torch.zeros(2))
    after = err(inv.z_s, inv.z_a, inv.angles)
    assert after < 0.3 * before
    assert [h["stage"] for h in inv.history[:3]] == ["view", "shape", "appearance"]


# ------------------------------------------------------------------------------ the method


@pytest.fixture()
def prepared(tmp_path):
    m = CLIPNeRFMethod.create(budget="smoke")
    m.config = apply_overrides(m.config, {"train.steps": 3})
    cat = ToyCategory(size=8)
    m.category_set = lambda split="train", progress=None: cat  # the stand-in category
    ctx = RunContext(device=torch.device("cpu"), cache_dir=tmp_path)
    m.load_generator(ctx)
    m.inversion = m.invert_images(cat.images[:2], cat.cameras[torch.tensor([0, 1])])
    m.train_cameras = cat.cameras
    return m, ctx, cat


def test_mapper_edit_is_one_forward_pass(prepared, tiny_clip):
    m, ctx, cat = prepared
    edit = m.edit("a happy face", tiny_clip, ctx)
    mappers = m.mappers(tiny_clip, ctx)
    e = tiny_clip.encode_text(["a happy face"]).float()
    with torch.no_grad():
        assert torch.allclose(edit.z_s, m.inversion.z_s + mappers.shape(e))
        assert torch.allclose(edit.z_a, m.inversion.z_a + mappers.appearance(e))
    assert edit.latency_s < 0.5 and not edit.meaningful
    img = m.render(cat.cameras[torch.tensor([0, 1])], edit)
    assert img.shape == (2, 8, 8, 3) and 0 <= float(img.min()) and float(img.max()) <= 1


def test_appearance_only_edits_keep_depth_and_shape_edits_move_it(prepared, tiny_clip):
    m, ctx, cat = prepared
    cams = cat.cameras[torch.tensor([0, 1])]
    depth0 = m.render_maps(cams)["depth"]
    m.config = apply_overrides(m.config, {"edit_parts": "appearance"})
    app = m.edit("a red face", tiny_clip, ctx)
    assert torch.equal(app.z_s, m.inversion.z_s)
    assert torch.allclose(m.render_maps(cams, app)["depth"], depth0, atol=1e-5)
    m.config = apply_overrides(m.config, {"edit_parts": "shape"})
    shp = m.edit("a red face", tiny_clip, ctx)
    assert torch.equal(shp.z_a, m.inversion.z_a) and not torch.equal(shp.z_s, m.inversion.z_s)


def test_optimize_variant_and_image_prompts(prepared, tiny_clip, tmp_path):
    from PIL import Image

    m, ctx, cat = prepared
    m.config = apply_overrides(m.config, {"edit_mode": "optimize", "optimize_steps": 3})
    edit = m.edit("a red face", tiny_clip, ctx)
    assert len(edit.history) == 3 and not torch.equal(edit.z_s, m.inversion.z_s)
    path = tmp_path / "exemplar.png"
    Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy()).save(path)
    emb = m.embed(f"image:{path}", tiny_clip)
    assert emb.shape == (1, tiny_clip.embed_dim)
    with pytest.raises(FacebenchError, match="no such file"):
        m.embed("image:/nonexistent.png", tiny_clip)


def test_variants_are_data():
    assert CLIPNeRFMethod.preset_config("smoke", "no-disentangle").model.conditioning == "concat"
    assert CLIPNeRFMethod.preset_config("smoke", "optimize").edit_mode == "optimize"
    assert CLIPNeRFMethod.preset_config("quick", "adversarial").train.recon_rays == 0
    full = CLIPNeRFMethod.preset_config("full")
    assert (full.model.code_dim, full.model.trunk_depth, full.model.trunk_hidden) == (128, 8, 256)
    assert (full.model.deform_depth, full.model.deform_hidden, full.mapper.hidden) == (4, 256, 256)
    inv = full.invert
    assert (inv.lambda_v, inv.lambda_s, inv.lambda_a, full.train.r1_weight) == (0.1, 0.2, 0.2, 0.5)
    assert isinstance(Path(), Path)
