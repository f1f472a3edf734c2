"""flame-nerf: spatial prior, coarse-to-fine window, training, caching/resume, determinism, edits.

One tiny SynthHead scene (16x16 pixels, 4 frames) and one short fit are shared
by the module; each test adds at most a few seconds on 2 CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facebench.method import RunContext
from facebench.render import orbit_cameras
from facebench.render.encoding import window_weights
from facebench.scene import Scene

RES, N_FRAMES = 16, 4
FAST = {
    "steps": 60,
    "lr": 2e-2,
    "lr_final": 2e-3,
    "batch_rays": 96,
    "frames_per_step": 2,
    "n_coarse": 12,
    "n_fine": 0,
    "checkpoint_every": 16,
    "edit.steps": 4,
    "edit.render_size": 16,
    "edit.lr": 0.1,
    "edit.lr_final": 0.1,
    "edit.reg": 0.0,
    "edit.view_jitter_deg": 0.0,
    "edit.augment_views": 0,
}


def tiny_scene() -> Scene:
    """A 4-frame SynthHead capture: neutral, smile, jaw drop, eyes closed (16x16 pixels)."""
    from facebench.datasets.facs import expression_vector
    from facebench.datasets.synthface_truth import SynthFaceTruth

    head = SynthFaceTruth()  # a SynthHead that also answers the GroundTruth protocol
    cams = orbit_cameras(
        N_FRAMES, 4.0, RES, RES, fov_y_deg=40, azimuth_range_deg=(-25, 25), endpoint=True
    )
    expr = torch.stack(
        [
            expression_vector(),
            expression_vector(AU6=0.7, AU12=1.0),
            expression_vector(AU26=1.0),
            expression_vector(AU43=1.0),
        ]
    )
    return Scene(
        name="tiny-synthhead",
        images=head.render(expr, cams),
        cameras=cams,
        train_ids=list(range(N_FRAMES)),
        val_ids=[],
        eval_cameras=cams[torch.tensor([0, N_FRAMES - 1])],
        aabb=torch.tensor([[-2.2, -2.2, -1.8], [2.2, 2.2, 1.6]]),
        near=2.0,
        far=6.0,
        expressions=expr,
        au_names=head.au_names,
        gt=head,
        source="synthface",
    )


def make(variant: str = "full", **kw):
    from facebench.methods.flame_nerf import FlameNerf

    return FlameNerf.create(variant, "smoke", "cpu", overrides={**FAST, **kw})


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def ctx_for(cache: Path, **kw) -> RunContext:
    return RunContext(device=torch.device("cpu"), cache_dir=cache, **kw)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    return tiny_scene()


@pytest.fixture(scope="module")
def fitted(scene, tmp_path_factory):
    cache = tmp_path_factory.mktemp("fn-cache")
    m = make()
    m.prepare(scene, ctx_for(cache))
    return m, cache


def test_registered_with_capabilities_and_variants():
    from facebench.registry import METHODS

    entry = METHODS.get("flame-nerf")
    assert set(entry.capabilities) == {"fit_scene", "edit_text", "edit_oracle", "reanimate"}
    assert set(entry.obj.variants) == {
        "full",
        "no-spatial-prior",
        "oracle",
        "global-loss",
        "clip-init",
        "clip-init-global",
    }
    oracle = entry.obj.create("oracle", "smoke", torch.device("cpu")).config
    assert oracle.edit.guidance == "oracle" and oracle.edit.clip_loss == "directional"
    cfg = entry.obj.create("no-spatial-prior", "smoke", torch.device("cpu")).config_dict()
    assert cfg["spatial_prior"] is False and cfg["variant"] == "no-spatial-prior"


def test_coarse_to_fine_window_values():
    m = make(steps=100, anneal_frac=0.5, warp_freqs=6)
    # linear from 0 to warp_freqs over the first 50 steps, then constant
    assert [m.warp_alpha(s) for s in (0, 10, 25, 50, 75, 100)] == [0.0, 1.2, 3.0, 6.0, 6.0, 6.0]
    w = window_weights(m.warp_alpha(25), 6)  # alpha = 3: bands 0-2 on, 3-5 off
    assert w.tolist() == pytest.approx([1, 1, 1, 0, 0, 0])
    w = window_weights(m.warp_alpha(5), 6)  # alpha = 0.6: band 0 half-way in
    assert w[0].item() == pytest.approx(0.5 * (1 - torch.cos(torch.tensor(0.6 * torch.pi))).item())


def test_spatial_prior_zeroes_condition_outside_the_head(fitted):
    m, _ = fitted
    model = m.model
    pts = torch.tensor(
        [[0.0, 0.0, 0.0], [0.0, 0.1, 0.9], [0.0, 0.0, -1.7], [1.9, 1.9, 1.0], [0.0, 2.0, 1.5]]
    )
    inside = model.in_head(pts)
    assert inside.tolist() == [True, True, False, False, False]
    e = torch.linspace(0.1, 1.0, model.n_expr)
    cond = model.condition(pts, e)
    assert torch.equal(cond[inside], e.expand(int(inside.sum()), -1))
    assert torch.equal(cond[~inside], torch.zeros(int((~inside).sum()), model.n_expr))
    assert (cond[~inside] == 0).all() and not cond[~inside].signbit().any()
    # the ablation conditions every sample
    from dataclasses import replace

    from facebench.methods.flame_nerf import FlameNerfModel

    ablated = FlameNerfModel(
        replace(m.config, spatial_prior=False), N_FRAMES, model.n_expr, model.head.aabb
    )
    ablated.head.load_state_dict(model.head.state_dict())
    assert torch.equal(ablated.condition(pts, e), e.expand(len(pts), -1))


def test_training_loss_falls(fitted):
    m, _ = fitted
    h = m.loss_history
    assert len(h) == FAST["steps"]
    first, last = sum(h[:6]) / 6, sum(h[-6:]) / 6
    assert last < 0.75 * first, (first, last)


def test_a_random_background_makes_the_fit_opaque(scene, tmp_path):
    # the backdrop lies inside the box: fitted against a random colour per ray, every
    # ray must end there; against the scene's white, a half-transparent fog that lets
    # the white through also fits the bright pixels
    from facebench.render import RenderConfig, render_image

    def opacity(random_background: bool) -> float:  # mean over the first frame's pixels
        m = make(random_background=random_background, steps=80)
        m.prepare(scene, ctx_for(tmp_path / str(random_background)))
        field = m.model.field(m.model.codes.weight[0], m.expressions[0])
        rcfg = RenderConfig(n_coarse=m.config.n_coarse, n_fine=0, jitter=False)
        out = render_image(field, scene.cameras, 0, rcfg, aabb=m.model.head.aabb)
        return float(out["opacity"].mean())

    # what shows through: 0.037 of each pixel against the white, 0.011 against random colours
    assert 1.0 - opacity(True) < 0.5 * (1.0 - opacity(False))


def test_the_distortion_loss_enters_the_training_step(scene, tmp_path):
    def first_loss(weight: float) -> float:
        m = make(distortion_weight=weight)
        ctx = ctx_for(tmp_path / str(weight))
        m._build(scene, ctx)
        m._fill_head_region()
        return m.trainer(scene, ctx).train_step()

    # the same rays and samples (same seeds); only the distortion term differs
    assert first_loss(1.0) > first_loss(0.0) + 1e-4


def test_render_shapes_and_reanimation(fitted, scene):
    m, _ = fitted
    img = m.render(scene.eval_cameras)
    assert img.shape == (2, RES, RES, 3) and 0 <= float(img.min()) and float(img.max()) <= 1
    e = torch.zeros(m.model.n_expr)
    e[6] = 1.0
    img2 = m.render_expression(scene.eval_cameras, e)
    assert img2.shape == img.shape and not torch.equal(img, img2)


def test_cache_round_trip_loads_weights_only(fitted, scene, monkeypatch):
    m, cache = fitted
    files = sorted(p.name for p in m.cache_path.iterdir())
    # the checkpoint is removed after the fit; the model's digest sits beside it
    assert files == ["meta.json", "model.pt", "model.pt.sha256"]
    m2 = make()

    def no_training(*a, **k):
        raise AssertionError("should load from the cache")

    monkeypatch.setattr(m2, "_train", no_training)
    m2.prepare(scene, ctx_for(cache))
    assert_same_state(m.model, m2.model)
    assert m2.scene_model_label == m.scene_model_label
    assert m.scene_model_label.startswith(f"flame-nerf:{m.cache_path.name}@")
    assert m2.cached_scene_model_label(scene, ctx_for(cache)) == m.scene_model_label
    assert make().cached_scene_model_label(scene, ctx_for(cache / "empty")) is None
    assert torch.equal(m.render(scene.eval_cameras[0]), m2.render(scene.eval_cameras[0]))


def test_resume_after_interruption_matches_uninterrupted_and_is_deterministic(
    fitted, scene, tmp_path
):
    m_ref, _ = fitted

    class Stop(Exception):
        pass

    def stop_at_24(task, done, total):
        if task == "flame-nerf fit" and done == 24:
            raise Stop

    m = make()
    with pytest.raises(Stop):
        m.prepare(scene, ctx_for(tmp_path, progress=stop_at_24))
    ckpt = m.cache_path / "checkpoint.pt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 16  # last checkpoint before the interruption
    # the lr decays once per step: lr * (lr_final / lr) ** (step / steps)
    lr = state["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(FAST["lr"] * (FAST["lr_final"] / FAST["lr"]) ** (16 / FAST["steps"]))
    m2 = make()
    m2.prepare(scene, ctx_for(tmp_path))
    assert len(m2.loss_history) == FAST["steps"] - 16  # resumed, not restarted
    # resumed fit == uninterrupted fit with the same seed (bitwise on CPU)
    assert_same_state(m_ref.model, m2.model)


def test_text_edit_lowers_clip_loss_with_tiny_random_clip(fitted, scene):
    from facebench.clip import load_clip
    from facebench.methods.clip_edit import EditConfig

    m, _ = fitted
    clip = load_clip("tiny-random", device="cpu")
    prompt = "a smiling face"
    edit = m.edit(prompt, clip, ctx_for(Path("."), seed=0))
    assert edit.expression.shape == (m.model.n_expr,)
    lo, hi = m.expression_range
    assert float(edit.expression.min()) >= lo and float(edit.expression.max()) <= hi
    cams = m.edit_cameras()

    def clip_loss(e):  # the edit's loss: directional, from the neutral expression's renders
        with torch.no_grad():
            img = m.render_expression(cams, e).permute(0, 3, 1, 2)
            src = m.render_expression(cams, m.neutral_expression()).permute(0, 3, 1, 2)
            return float(clip.directional_loss(img, src, prompt, EditConfig().source_prompt))

    before, after = clip_loss(m.neutral_expression()), clip_loss(edit.expression)
    assert after < before, (before, after)
    assert not torch.equal(m.render(scene.eval_cameras, edit), m.render(scene.eval_cameras))


class NearestClip:
    """tiny-random CLIP whose similarity prefers images near ``reference`` (a known answer)."""

    def __init__(self, reference: torch.Tensor):
        from facebench.clip import load_clip

        self.clip, self.reference = load_clip("tiny-random", device="cpu"), reference

    def similarity(self, images, prompt):
        return -((images - self.reference) ** 2).mean((1, 2, 3))

    def __getattr__(self, name):
        return getattr(self.clip, name)


@pytest.mark.parametrize("frame", [1, 2, 3])
def test_clip_init_starts_the_edit_at_the_captured_expression_clip_prefers(fitted, frame):
    m, _ = fitted
    target = m.expressions[frame]
    with torch.no_grad():
        ref = m.render_expression(m.init_cameras(), target).permute(0, 3, 1, 2)
    clip = NearestClip(ref)
    assert torch.equal(m.best_expression("a face", clip), target)
    # the edit starts there (a step too small to move it), and from neutral without it
    still = {"edit.steps": 1, "edit.lr": 1e-9, "edit.lr_final": 1e-9}
    for init, start in (("clip", target), ("neutral", m.neutral_expression())):
        m.config = make(**still, **{"edit.init": init}).config
        e = m.edit("a face", clip, ctx_for(Path("."), seed=0)).expression
        torch.testing.assert_close(e, start, atol=1e-6, rtol=0)
    m.config = make().config
    # the variant, and out of the row hash at the default: earlier rows keep their key
    assert make("clip-init").config.edit.init == "clip"
    assert "init" not in make().config_dict()["edit"]
    assert make("clip-init").config_dict()["edit"]["init"] == "clip"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_and_render(scene, tmp_path):
    from facebench.methods.flame_nerf import FlameNerf

    m = FlameNerf.create("full", "smoke", "cuda", overrides=FAST)
    m.prepare(scene, RunContext(device=torch.device("cuda"), cache_dir=tmp_path))
    img = m.render(scene.eval_cameras)
    assert img.device.type == "cuda" and img.shape == (2, RES, RES, 3)


def test_heldout_combinations_are_unseen_pairs(scene):
    from facebench.datasets.facs import active_groups, heldout_combinations

    vecs, labels = heldout_combinations(scene.expressions, scene.au_names, n=3)
    assert vecs.shape == (len(labels), len(scene.au_names)) and 1 <= len(labels) <= 3
    seen = [set(active_groups(e)) for e in scene.expressions]
    for v, label in zip(vecs, labels, strict=True):
        groups = set(label.split("+"))
        assert len(groups) == 2 and set(active_groups(v)) == groups
        assert groups <= set().union(*seen)  # each group was seen ...
        assert not any(groups <= s for s in seen)  # ... but never together


def test_reanimation_protocol_scores_and_writes(fitted, scene, tmp_path):
    import json

    from facebench.reanimate import reanimate_method

    m, _ = fitted
    res = reanimate_method(m, scene, n_drive=2, n_views=2, names=("flame-nerf", "full", "tiny"))
    assert res.n_views == 2 and len(res.per_expression) == res.n_expressions >= 1
    assert set(res.metrics) == {"psnr", "ssim", "gt_lpips"}
    assert 5 < res.metrics["psnr"] < 60 and 0 <= res.metrics["gt_lpips"] <= 1
    assert res.background_change_gt == 0.0  # SynthFace's backdrop is static
    # The spatial prior confines the expression to the head, so the backdrop stays still
    # (measured 0.0); without it the expression leaks into the backdrop (measured 0.014).
    free = make("no-spatial-prior")
    free.prepare(scene, ctx_for(tmp_path / "no-prior"))
    leak = reanimate_method(free, scene, n_drive=2, n_views=2, names=("flame-nerf", "np", "tiny"))
    assert leak.background_change > 0.005, leak.background_change
    assert res.background_change < 0.1 * leak.background_change, res.background_change
    # a file drive: wrong width is one clear error, a good one is used as given
    from facebench.errors import FacebenchError

    bad = tmp_path / "bad.json"
    bad.write_text("[[0.5, 0.5]]")
    with pytest.raises(FacebenchError, match="shape"):
        reanimate_method(m, scene, drive=str(bad), n_views=1)
    good = tmp_path / "drive.json"
    good.write_text(json.dumps([{"AU12": 1.0}, {"AU26": 0.5, "AU43": 1.0}]))
    res = reanimate_method(m, scene, drive=str(good), n_views=1, out=tmp_path / "out")
    assert [r["drive"] for r in res.per_expression] == ["drive[0]", "drive[1]"]
    written = json.loads((tmp_path / "out" / "reanimate" / "?-full.json").read_text())
    assert (
        written["n_expressions"] == 2 and (tmp_path / "out" / "reanimate" / "?-full.png").exists()
    )


def test_importance_sampling_records_errors_and_resumes_exactly(scene, tmp_path):
    kw = dict(frame_importance=0.5, pixel_importance=0.5, error_map_resolution=4)
    m = make(**kw)
    ctx = ctx_for(tmp_path / "steps")
    m._build(scene, ctx)
    m._fill_head_region()
    tr = m.trainer(scene, ctx)
    for _ in range(3):
        tr.train_step()
    # the drawn frames and cells hold their last error (all start at 1)
    assert (tr.frame_loss < 1).sum() >= 1 and (tr.error_map < 1).sum() >= 3
    assert tr.error_map.shape == (N_FRAMES, 4, 4)

    class Stop(Exception):
        pass

    def stop_at_24(task, done, total):
        if task == "flame-nerf fit" and done == 24:
            raise Stop

    ref = make(**kw)
    ref.prepare(scene, ctx_for(tmp_path / "ref"))
    cut = make(**kw)
    with pytest.raises(Stop):
        cut.prepare(scene, ctx_for(tmp_path / "cut", progress=stop_at_24))
    resumed = make(**kw)
    resumed.prepare(scene, ctx_for(tmp_path / "cut"))
    # the checkpoint carries the error maps: resumed == uninterrupted (bitwise on CPU)
    assert_same_state(ref.model, resumed.model)
    # off at the smoke budget (the tests'), and then out of the config hash: rows made
    # before the option existed keep their key
    assert "pixel_importance" not in make().config_dict()
    assert make().config_dict() != ref.config_dict()


@pytest.mark.parametrize("axes", ["xyz", "xy"])
def test_plane_field_blends_one_basis_per_expression_parameter(scene, axes):
    from facebench.methods.flame_nerf.model import PlaneCanonicalField

    cfg = make(plane_resolution=8, plane_channels=4, plane_expression_axes=axes).config
    torch.manual_seed(0)
    f = PlaneCanonicalField(3, cfg, scene.aabb)
    with torch.no_grad():
        f.planes.normal_()
        f.expression_planes.normal_()
    x, d = torch.rand(50, 3) * 2 - 1, torch.zeros(50, 3)
    e = torch.tensor([0.0, 0.7, 0.0])
    sigma, rgb = f(x, d, e, None)
    (sigma.sum() + rgb.sum()).backward()
    g = f.expression_planes.grad.reshape(-1, 3, 4, 8, 8).abs().sum((0, 2, 3, 4))  # per parameter
    # the base and the one active parameter's basis learn; the others get exactly nothing
    assert f.planes.grad.abs().sum() > 0 and g[1] > 0 and g[0] == 0 and g[2] == 0
    # on the frontal plane alone, the expression leaves the xz and yz planes as they are
    moved = (f.blend(e) - f.planes).abs().sum((1, 2, 3))
    assert moved[0] > 0 and (moved[1:] > 0).tolist() == [axes == "xyz"] * 2
    with torch.no_grad():
        # outside the head region the base planes alone: as with no expression at all
        inside = torch.arange(50) < 25
        s_in, _ = f(x, d, e, inside)
        s0, _ = f(x, d, torch.zeros(3), None)
        torch.testing.assert_close(s_in[25:], s0[25:])
        torch.testing.assert_close(s_in[:25], sigma[:25])
        assert not torch.allclose(sigma[25:], s0[25:])
        # and the expression bases' values do not matter there
        f.expression_planes.zero_()
        torch.testing.assert_close(f(x, d, e, None)[0], s0)


def test_plane_field_fit_trains_the_planes_at_their_own_rate(scene, tmp_path):
    m = make()
    ctx = ctx_for(tmp_path)
    m._build(scene, ctx)
    m._fill_head_region()
    tr = m.trainer(scene, ctx)
    rates = [g["lr"] for g in tr.opt.param_groups]
    assert rates == [FAST["lr"], FAST["lr"] * m.config.plane_lr_scale]
    m.prepare(scene, ctx_for(tmp_path / "fit"))
    h = m.loss_history
    first, last = sum(h[:6]) / 6, sum(h[-6:]) / 6
    assert last < 0.75 * first, (first, last)
    # the planes are the default field; rows made with the paper's MLP before the option
    # existed keep their key
    assert make().config_dict()["canonical"] == "planes"
    mlp = make(canonical="mlp").config_dict()
    assert "canonical" not in mlp and "plane_expression_axes" not in mlp
    # nor do the plane fields, which do not shape the MLP
    mlp16 = make(canonical="mlp", plane_channels=16)
    assert mlp16.config_dict() == mlp
    assert mlp16._cache(scene, ctx).directory == make(canonical="mlp")._cache(scene, ctx).directory
