"""Anchors, PAC, TV loss and the ``pac`` method (methods/pac/) on a tiny toy scene."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from toy_scene import make_toy_scene

from facebench.config import apply_overrides
from facebench.errors import FacebenchError
from facebench.method import RunContext
from facebench.methods.clip_edit import perturb_cameras
from facebench.methods.manipulator import (
    fit_hash,
    manipulator_cache,
    render_cameras,
    render_config,
)
from facebench.methods.pac import (
    PAC,
    PACConfig,
    PACMethod,
    kmeans,
    kmeans_plus_plus,
    select_anchors,
    tv_loss,
)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- k-means / anchors


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0], [-4.0, -3.0, 3.0]])
    labels = torch.arange(4).repeat_interleave(25)
    x = centres[labels] + 0.3 * torch.randn(100, 3, generator=g)
    perm = torch.randperm(100, generator=g)
    return x[perm], labels[perm], centres


def test_kmeans_recovers_known_clusters():
    x, truth, centres = _blobs()
    found, labels = kmeans(x, 4, torch.Generator().manual_seed(3))
    # each found cluster is exactly one true cluster
    for k in range(4):
        assert truth[labels == k].unique().numel() == 1
    # and the centres match up to order
    d = torch.cdist(found, centres)
    assert d.min(dim=1).values.max() < 0.3
    again, labels2 = kmeans(x, 4, torch.Generator().manual_seed(3))
    assert torch.equal(found, again) and torch.equal(labels, labels2)


def test_kmeans_converges_to_a_lloyd_fixed_point_from_its_seeding():
    """Three groups in 2D, asked for two clusters: the result is a local optimum (each point
    with its nearest centre, each centre its points' mean) no worse than the seeding."""
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    x = torch.cat([torch.randn(30, 2, generator=g) * 0.2 + c for c in groups])
    init = kmeans_plus_plus(x, 2, torch.Generator().manual_seed(1))
    assert all(any(torch.equal(c, row) for row in x) for c in init)  # seeds are data points
    centres, labels = kmeans(x, 2, torch.Generator().manual_seed(1))
    assert torch.equal(labels, torch.cdist(x, centres).argmin(-1))
    for k in range(2):
        assert torch.allclose(centres[k], x[labels == k].mean(0), atol=1e-5)
    seeded = torch.cdist(x, init).min(-1).values.pow(2).sum()
    assert (x - centres[labels]).pow(2).sum() <= seeded
    with pytest.raises(ValueError, match="k >= 1"):
        kmeans(x, 0)


def test_select_anchors_neutral_first_snapped_or_explicit():
    x, _, _ = _blobs()
    frames = list(range(100))
    anchors, ids = select_anchors(
        x, frames, 5, neutral=7, generator=torch.Generator().manual_seed(0)
    )
    assert anchors.shape == (5, 3) and ids[0] == 7
    assert torch.equal(anchors[0], x[7])
    for a, i in zip(anchors[1:], ids[1:], strict=True):
        assert i >= 0 and torch.equal(a, x[i])  # snapped to an observed frame code
    explicit, eids = select_anchors(x, frames, 5, explicit=(3, 9))
    assert eids == [3, 9] and torch.equal(explicit, x[[3, 9]])


def test_select_anchors_by_features_one_per_cluster_besides_neutral():
    # codes are noise; what the codes *do* (features) falls in 4 clusters
    feats, truth, _ = _blobs()
    codes = torch.randn(100, 6, generator=torch.Generator().manual_seed(1))
    neutral = int((truth == 0).nonzero()[0])
    anchors, ids = select_anchors(
        codes,
        list(range(100)),
        4,
        neutral=neutral,
        generator=torch.Generator().manual_seed(0),
        features=feats,
    )
    assert ids[0] == neutral
    assert sorted(int(truth[i]) for i in ids[1:]) == [1, 2, 3]  # the neutral cluster dropped
    assert torch.equal(anchors, codes[ids])  # anchors are the chosen frames' codes
    # on the raw codes the same call cannot see the clusters
    _, code_ids = select_anchors(
        codes, list(range(100)), 4, neutral=neutral, generator=torch.Generator().manual_seed(0)
    )
    assert sorted(int(truth[i]) for i in code_ids[1:]) != [1, 2, 3]


# --------------------------------------------------------------------------- PAC / TV


def test_pac_ratios_sum_to_one_and_one_hot_gives_anchor():
    anchors = torch.randn(4, 6)
    pac = PAC(anchors, depth=3, width=16, n_freqs=2)
    with torch.no_grad():
        for p in pac.mlp.parameters():
            p.normal_(0, 0.5)
    x = torch.rand(50, 3) * 2 - 1
    r = pac.ratios(x)
    assert r.shape == (50, 4) and torch.allclose(r.sum(-1), torch.ones(50), atol=1e-6)
    assert (r > 0).all()
    codes = pac(x)
    assert codes.shape == (50, 6)
    assert torch.allclose(codes, r @ anchors, atol=1e-6)
    one_hot = torch.zeros(50, 4)
    one_hot[:, 2] = 1
    assert torch.allclose(pac.compose(one_hot), anchors[2].expand(50, -1))
    # a dominant logit drives the softmax to one-hot and the code to that anchor
    dominant = PAC(anchors, depth=2, width=8, init_logits=torch.tensor([0.0, 0.0, 0.0, 60.0]))
    assert torch.allclose(dominant(x), anchors[3].expand(50, -1), atol=1e-5)


def _adam_steps(pac: PAC, x: torch.Tensor, target: torch.Tensor, steps: int) -> None:
    opt = torch.optim.Adam(pac.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        ((pac(x) - target) ** 2).mean().backward()
        opt.step()


def test_grid_compositor_gives_each_region_its_own_anchor():
    torch.manual_seed(0)
    anchors = torch.randn(3, 6)
    start = torch.tensor([2.0, 0.0, 0.0])
    left = torch.rand(40, 3) * 0.2 + torch.tensor([-0.4, -0.1, -0.1])
    right = torch.rand(40, 3) * 0.2 + torch.tensor([0.2, -0.1, -0.1])
    grid = PAC(anchors, init_logits=start, grid_resolution=16, grid_extent=0.5)
    mlp = PAC(anchors, depth=3, width=16, n_freqs=2, init_logits=start)
    for pac in (grid, mlp):  # both start spatially constant, at softmax(init_logits)
        r = pac.ratios(torch.cat([left, right])).detach()
        assert torch.allclose(r, torch.softmax(start, 0).expand_as(r), atol=1e-6)
    # a step on the left region's loss leaves the grid's ratios on the right untouched;
    # the MLP's, whose parameters every position shares, move with them
    for pac in (grid, mlp):
        before = pac.ratios(right).detach()
        _adam_steps(pac, left, anchors[1].expand(40, -1), 1)
        moved = (pac.ratios(right).detach() - before).abs().max()
        assert (moved == 0) if pac is grid else (moved > 1e-3)
    # each region reaches its own anchor
    x = torch.cat([left, right])
    target = torch.cat([anchors[1].expand(40, -1), anchors[2].expand(40, -1)])
    _adam_steps(grid, x, target, 60)
    won = grid.ratios(x).argmax(-1)
    assert (won[:40] == 1).all() and (won[40:] == 2).all()


def test_tv_loss_zero_for_constant_positive_otherwise():
    const = torch.tensor([0.2, 0.3, 0.5]).expand(2, 8, 8, 3).clone()
    assert float(tv_loss(const)) == 0.0
    varied = const.clone()
    varied[:, :, 4:] = torch.tensor([1.0, 0.0, 0.0])
    assert float(tv_loss(varied)) > 0.0
    valid = torch.ones(2, 8, 8, dtype=torch.bool)
    valid[:, :, 4:] = False  # the edge is between a valid and an invalid pixel: ignored
    assert float(tv_loss(varied, valid)) == 0.0


def test_perturbed_cameras_stay_near_and_resize():
    scene = make_toy_scene(n_frames=4, size=12, n_val=0)
    target = torch.zeros(3)
    g = torch.Generator().manual_seed(0)
    cams = perturb_cameras(scene.cameras, 6, g, 10.0, target, size=8)
    assert cams.width == 8 and cams.height == 8 and len(cams) == 6
    dist = cams.centers.norm(dim=-1)
    assert torch.allclose(
        dist, torch.full_like(dist, 4.0), atol=1e-3
    )  # rotated about the look-at point
    fwd = cams.c2w[:, :, 2]
    to_target = torch.nn.functional.normalize(target - cams.centers, dim=-1)
    assert ((fwd * to_target).sum(-1) > 0.999).all()
    same = scene.cameras.resized(longest=0)
    assert same.width == scene.cameras.width


# --------------------------------------------------------------------------- the method


def _config(**kw):
    cfg = PACMethod.create("full", "smoke").config
    cfg = apply_overrides(
        cfg,
        {
            "manipulator.steps": 30,
            "manipulator.occupancy_resolution": 0,
            "edit.steps": 12,
            "edit.lr": 3e-2,
            "edit.lr_final": 3e-2,
            "edit.render_size": 12,
            "edit.view_jitter_deg": 0.0,
            **kw,
        },
    )
    return cfg


@pytest.fixture(scope="module")
def toy():
    return make_toy_scene(n_frames=8, size=12, n_val=1)


@pytest.fixture(scope="module")
def prepared(toy, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    m = PACMethod(_config(), CPU)
    m.prepare(toy, RunContext(device=CPU, cache_dir=cache))
    return m, cache


def _clip_loss(method, scene, tiny_clip, prompt, edit=None):
    """The CLIP loss the edit minimises (its config's ``clip_loss``) at the training views."""
    ecfg = method.config.edit
    cams = method.train_cameras.resized(longest=ecfg.render_size)
    with torch.no_grad():
        imgs = method.render(cams, edit).permute(0, 3, 1, 2)
        if ecfg.clip_loss == "global":
            return float(tiny_clip.global_loss(imgs, prompt))
        src = method.render(cams, None).permute(0, 3, 1, 2)
        return float(tiny_clip.directional_loss(imgs, src, prompt, ecfg.source_prompt))


def test_variants_and_configs():
    assert set(PACMethod.variants) == {
        "full",
        "oracle",
        "global-loss",
        "no-lipschitz",
        "mlp-manipulator",
        "no-tv",
        "single-code",
        "clip-init",
        "grid-compositor",
        "grid-global-loss",
        "grid-oracle",
    }
    planes = PACMethod.create("full", "quick").config.manipulator
    assert planes.representation == "planes"
    mlp = PACMethod.create("mlp-manipulator", "quick").config.manipulator
    assert mlp.representation == "hypernerf"
    assert PACMethod.create("full", "quick").config.edit.clip_loss == "directional"
    assert PACMethod.create("global-loss", "quick").config.edit.clip_loss == "global"
    assert PACMethod.create("oracle", "quick").config.edit.guidance == "oracle"
    assert PACMethod.create("clip-init", "quick").config.pac_init == "clip"
    full = PACMethod.create("full", "quick")
    assert (
        full.config.tv_weight == 100.0
        and full.config.pac_depth == 6
        and full.config.pac_width == 64
    )
    assert full.config.manipulator.lipschitz_weight == 1e-7
    assert PACMethod.create("no-tv", "quick").config.tv_weight == 0.0
    grid = PACMethod.create("grid-compositor", "quick")
    assert (grid.config.compositor, grid.config.tv_weight) == ("grid", 0.0)
    # each logit is one region's own: the grid steps ten times the MLP's learning rate
    assert grid.config.edit.lr == 10 * full.config.edit.lr
    ceiling = PACMethod.create("grid-oracle", "quick").config
    assert dataclasses.replace(ceiling, edit=grid.config.edit) == grid.config
    assert ceiling.edit == dataclasses.replace(grid.config.edit, guidance="oracle")
    grid_global = PACMethod.create("grid-global-loss", "quick").config
    assert grid_global.edit == dataclasses.replace(grid.config.edit, clip_loss="global")
    assert dataclasses.replace(grid_global, edit=grid.config.edit) == grid.config
    # the compositor's fields stay out of the config hash at the paper's MLP
    assert "compositor" not in full.config_dict() and "compositor" in grid.config_dict()
    with pytest.raises(ValueError, match="compositor"):
        PACMethod(dataclasses.replace(full.config, compositor="nope"))
    assert PACMethod.create("single-code", "quick").config.mode == "single"
    assert PACMethod.create("no-lipschitz", "quick").config.manipulator.lipschitz is False
    paper = PACMethod.create("full", "full").config
    assert (paper.edit.steps, paper.edit.lr, paper.edit.lr_final) == (7000, 5e-4, 5e-5)
    assert (paper.manipulator.n_coarse, paper.manipulator.n_fine) == (64, 64)
    assert full.config_dict() != PACMethod.create("no-tv", "quick").config_dict()
    with pytest.raises(KeyError):
        PACMethod.create("nope", "quick")
    with pytest.raises(KeyError):
        apply_overrides(full.config, {"manipulator.nope": 1})


def test_registered():
    import facebench.methods  # noqa: F401  (registers the built-ins)
    from facebench.registry import METHODS

    entry = METHODS.get("pac")
    assert entry.obj is PACMethod
    assert set(entry.capabilities) == {"fit_scene", "edit_text", "edit_oracle"}


def test_prepare_anchors_and_neutral_render(prepared, toy):
    m, cache = prepared
    assert m.anchors.shape == (m.config.n_anchors, m.config.manipulator.code_dim)
    assert m.anchor_code_ids[0] == 0  # the neutral frame's code is anchor 0
    assert torch.equal(m.anchors[0], m.model.deform_codes.weight[0])
    imgs = m.render(toy.eval_cameras)
    assert imgs.shape == (3, 12, 12, 3) and imgs.min() >= 0 and imgs.max() <= 1
    # a second prepare loads the cached manipulator: the same weights, the same label
    m2 = PACMethod(m.config, CPU)
    assert m2.scene_model_label is None  # not fitted yet
    ctx = RunContext(device=CPU, cache_dir=cache)
    empty = RunContext(device=CPU, cache_dir=cache / "empty")
    assert m2.cached_scene_model_label(toy, empty) is None  # nothing cached there
    # the label read from the cache file (no model built) is the loaded model's
    assert m2.cached_scene_model_label(toy, ctx) == m.scene_model_label
    m2.prepare(toy, ctx)
    assert torch.equal(m2.render(toy.eval_cameras), imgs)
    label = m.scene_model_label
    assert re.fullmatch(rf"manipulator:{fit_hash(m.config.manipulator)}@[0-9a-f]{{12}}", label)
    assert m2.scene_model_label == label
    with torch.no_grad():  # one weight moved: another digest
        m2.model.deform_codes.weight[0, 0] += 1e-3
    assert m2.scene_model_label != label


def test_pac_edit_reduces_clip_loss_and_is_deterministic(prepared, toy, tiny_clip):
    m, cache = prepared
    prompt = "a face with a big smile"
    before = _clip_loss(m, toy, tiny_clip, prompt)
    ctx = RunContext(device=CPU, cache_dir=cache, seed=0)
    edit = m.edit(prompt, tiny_clip, ctx)
    after = _clip_loss(m, toy, tiny_clip, prompt, edit)
    assert after < before
    assert edit.pac is not None and not edit.meaningful  # tiny-random CLIP is flagged
    assert "tv" in edit.history[0]
    again = m.edit(prompt, tiny_clip, ctx)
    sa, sb = edit.pac.state_dict(), again.pac.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    imgs = m.render(toy.eval_cameras, edit)
    assert imgs.shape == (3, 12, 12, 3)
    ratios = m.ratio_images(toy.eval_cameras, edit)
    assert ratios.shape == (3, 12, 12, m.config.n_anchors)


def test_single_code_edit_reduces_clip_loss(prepared, toy, tiny_clip):
    m, cache = prepared
    # the global loss: at the neutral code the directional loss compares a render with
    # itself (a zero direction), and on the toy's weakly coded model it stays near 1
    cfg = apply_overrides(m.config, {"mode": "single", "edit.clip_loss": "global"})
    single = PACMethod(cfg, CPU)
    single.prepare(toy, RunContext(device=CPU, cache_dir=cache))  # same manipulator: loaded
    prompt = "closed eyes"
    before = _clip_loss(single, toy, tiny_clip, prompt)
    edit = single.edit(prompt, tiny_clip, RunContext(device=CPU, cache_dir=cache, seed=1))
    assert edit.pac is None and edit.code is not None
    assert not torch.equal(edit.code, single.neutral_code)
    assert _clip_loss(single, toy, tiny_clip, prompt, edit) < before


def test_no_lipschitz_variant_uses_its_own_manipulator(toy):
    full = PACMethod(_config(), CPU)
    off = PACMethod(_config(**{"manipulator.lipschitz": False}), CPU)
    a = manipulator_cache("/c", toy, full.config.manipulator).directory
    b = manipulator_cache("/c", toy, off.config.manipulator).directory
    assert a != b


def test_anchor_features_follow_the_scenes_expressions(prepared, toy):
    from facebench.errors import FacebenchError

    m, _ = prepared
    assert m.config.anchor_features == "auto"
    frames = list(toy.train_ids)
    table = m.anchor_feature_table(toy, frames)
    assert torch.equal(table, toy.expressions)  # auto: the scene's expressions, by code id
    # without expressions auto falls back to what each code renders (0 for the neutral code)
    bare = dataclasses.replace(toy, expressions=None)
    rendered = m.anchor_feature_table(bare, frames)
    s = m.config.anchor_render_size
    assert rendered.shape == (toy.images.shape[0], 3 * s * s)
    assert rendered[0].abs().max() == 0 and rendered[frames[1]].abs().max() > 0
    strict = PACMethod(dataclasses.replace(m.config, anchor_features="expression"), CPU)
    strict.model = m.model
    with pytest.raises(FacebenchError, match="needs per-frame expressions"):
        strict.anchor_feature_table(bare, frames)
    code = PACMethod(dataclasses.replace(m.config, anchor_features="code"), CPU)
    assert code.anchor_feature_table(toy, frames) is None
    with pytest.raises(ValueError, match="anchor_features"):
        PACMethod(dataclasses.replace(m.config, anchor_features="landmarks"), CPU)


class _BrightnessCLIP:
    """A stand-in CLIP whose similarity is an image's mean brightness (or its negative)."""

    def __init__(self, sign: float):
        self.sign = sign

    def similarity(self, images, prompt):
        return self.sign * images.mean(dim=(1, 2, 3))


def test_clip_init_starts_at_the_anchor_clip_scores_best(prepared):
    m, _ = prepared
    rcfg = render_config(m.model.config, False, m.background)
    cams = m.train_cameras.resized(longest=m.config.edit.render_size)
    with torch.no_grad():
        bright = torch.stack(
            [
                render_cameras(
                    m.model, cams, a, m.neutral_appearance, m.background, m.occupancy, rcfg
                ).mean()
                for a in m.anchors
            ]
        )
    assert bright.max() - bright.min() > 1e-6  # the anchors render differently
    m.config = dataclasses.replace(m.config, init_views=len(m.train_cameras))
    try:
        for sign, want in ((1.0, bright.argmax()), (-1.0, bright.argmin())):
            start = m.best_anchor("any", _BrightnessCLIP(sign), rcfg)
            assert start == int(want)
            ratios = m.make_pac(0, start).ratios(torch.zeros(5, 3))
            assert torch.equal(ratios.argmax(-1), torch.full((5,), start))
    finally:
        m.config = dataclasses.replace(m.config, init_views=PACConfig().init_views)


class _BrightnessTinyCLIP(_BrightnessCLIP):
    """:class:`_BrightnessCLIP`'s similarity, tiny-random CLIP's losses."""

    def __init__(self, sign: float, clip):
        super().__init__(sign)
        self.clip = clip

    def __getattr__(self, name):
        return getattr(self.clip, name)


def test_clip_init_starts_a_single_code_at_pacs_best_anchor(prepared, toy, tiny_clip):
    m, cache = prepared
    still = {"edit.steps": 1, "edit.lr": 1e-9, "edit.lr_final": 1e-9}
    single = PACMethod(
        apply_overrides(m.config, {"mode": "single", "pac_init": "clip", **still}), CPU
    )
    single.prepare(toy, RunContext(device=CPU, cache_dir=cache))  # same manipulator: loaded
    assert torch.equal(single.anchors, m.anchors)  # the anchors it starts from are pac's
    rcfg = render_config(m.model.config, False, m.background)
    starts = []
    for sign in (1.0, -1.0):
        clip = _BrightnessTinyCLIP(sign, tiny_clip)
        starts.append(single.best_anchor("any", clip, rcfg))
        edit = single.edit("any", clip, RunContext(device=CPU, cache_dir=cache, seed=0))
        torch.testing.assert_close(edit.code, single.anchors[starts[-1]], atol=1e-6, rtol=0)
    assert starts[0] != starts[1]
    # and without clip-init, from the neutral frame's code
    single.config = apply_overrides(m.config, {"mode": "single", **still})
    edit = single.edit("any", tiny_clip, RunContext(device=CPU, cache_dir=cache, seed=0))
    torch.testing.assert_close(edit.code, single.neutral_code, atol=1e-6, rtol=0)


def _target_error(method, edit, target_fn):
    cams = method.train_cameras.resized(longest=method.config.edit.render_size)
    with torch.no_grad():
        return float(((method.render(cams, edit) - target_fn(cams)) ** 2).mean())


@pytest.mark.parametrize("mode", ["pac", "single"])
def test_oracle_guidance_moves_the_edit_toward_the_true_target(prepared, toy, tiny_clip, mode):
    m, cache = prepared
    method = PACMethod(
        apply_overrides(m.config, {"mode": mode, "edit.guidance": "oracle", "edit.steps": 15}), CPU
    )
    method.prepare(toy, RunContext(device=CPU, cache_dir=cache))  # same manipulator: loaded
    # a target the representation can show: the render of a code far from the neutral one,
    # made PAC's second anchor (a PAC composes anchors; one code is free to reach it)
    code = method.neutral_code + torch.linspace(-1.0, 1.0, method.neutral_code.numel())
    method.anchors[1] = code
    seen: list[torch.Tensor] = []

    def target_fn(cams):
        seen.append(cams.c2w)
        return render_cameras(
            method.model, cams, code, method.neutral_appearance, method.background, None
        )

    before = _target_error(method, None, target_fn)
    ctx = RunContext(device=CPU, cache_dir=cache, seed=0, oracle=target_fn)
    edit = method.edit("a face with a big smile", tiny_clip, ctx)
    assert "photometric" in edit.history[0] and "clip" not in edit.history[0]
    assert _target_error(method, edit, target_fn) < 0.5 * before
    # the targets are drawn at the exact training cameras (no jitter, no held-out view)
    assert torch.equal(seen[0], method.train_cameras.c2w)
    with pytest.raises(FacebenchError, match="oracle"):
        method.edit("a face with a big smile", tiny_clip, RunContext(device=CPU, cache_dir=cache))


def test_directional_loss_needs_the_unedited_renders():
    from facebench.methods.clip_edit import EditConfig, check_edit_config, clip_optimize

    toy_cams = make_toy_scene(n_frames=2, size=8, n_val=0).cameras
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="source_fn"):
        clip_optimize(
            [p],
            lambda c: (p.expand(len(c), 8, 8, 3), {}),
            None,
            "x",
            toy_cams,
            torch.zeros(3),
            EditConfig(steps=1),
            torch.Generator(),
        )
    with pytest.raises(ValueError, match="guidance"):
        check_edit_config(EditConfig(guidance="teacher"))
    with pytest.raises(ValueError, match="clip_loss"):
        check_edit_config(EditConfig(clip_loss="local"))


def test_anchor_frames_outside_the_scene_are_one_clear_error(prepared, toy):
    m, cache = prepared
    bad = PACMethod(dataclasses.replace(m.config, anchor_frames=(0, 99)), CPU)
    with pytest.raises(FacebenchError, match=r"anchor_frames \[99\].*frames 0\.\.7"):
        bad.prepare(toy, RunContext(device=CPU, cache_dir=cache))
