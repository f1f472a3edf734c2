"""SynthCLIP: open_clip config registration, tiny training, determinism, resume, save/load.

Uses a tiny config and a stand-in image--caption set (coloured halves), so
the whole file trains in seconds on a CPU. Quality on SynthFace is measured
by ``facebench prepare synthclip`` / ``benchmarks/bench_synthclip.py``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from facebench.metrics.instruments import synthclip as sc
from facebench.metrics.instruments.prepared import train_threads
from facebench.metrics.instruments.synthclip.model import _open_clip
from facebench.metrics.instruments.synthclip.train import _batch
from facebench.weights import MissingWeightsError

COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 1.0, 0.1), "blue": (0.1, 0.1, 1.0)}


def standin_pairs(n: int = 192, size: int = 16, seed: int = 0) -> sc.PairData:
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, size, size, 3), 0.5)
    captions = []
    for i in range(n):
        colour = list(COLOURS)[int(torch.randint(3, (1,), generator=g))]
        side = ["left", "right"][int(torch.randint(2, (1,), generator=g))]
        cols = slice(0, size // 2) if side == "left" else slice(size // 2, size)
        images[i, :, cols] = torch.tensor(COLOURS[colour])
        captions.append(f"a {colour} block on the {side}, sample {i % 16}")
    levels = torch.zeros(n, 12)  # no action unit shown (for the unit-phrase loss)
    return sc.PairData((images * 255).round().to(torch.uint8), captions, None, levels)


def emotion_pairs(n: int = 64, size: int = 16) -> sc.PairData:
    """``n`` random images labelled, in turn, with each emotion prototype and neutral."""
    from facebench.datasets.facs import EMOTIONS, expression_vector
    from facebench.datasets.synthhead import Identity

    exprs = [expression_vector(EMOTIONS[e]) for e in EMOTIONS] + [torch.zeros(12)]
    levels = torch.stack([exprs[i % len(exprs)] for i in range(n)])
    variants = [sc.caption_variants(Identity(), v) for v in levels]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, size, size, 3), generator=g).to(torch.uint8)
    return sc.PairData(images, [v.templates[0] for v in variants], variants, levels)


def test_config_is_registered_with_open_clip(cache):
    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    name = sc.register_model_config(sc.TINY_CONFIG)
    assert name.startswith("SynthCLIP-") and name in open_clip.list_models()
    assert open_clip.get_model_config(name) == sc.TINY_CONFIG.model
    tok = open_clip.get_tokenizer(name)
    assert tok(["a face with a smile"]).shape == (1, sc.TINY_CONFIG.context_length)
    # the default config registers too and is small enough for CPU training
    model, _, _ = sc.build_model(sc.DEFAULT_CONFIG)
    assert sum(p.numel() for p in model.visual.parameters()) < 3e6


def test_cache_path_is_versioned_by_config(cache):
    other = dataclasses.replace(sc.TINY_CONFIG, steps=31)
    assert sc.synthclip_dir(sc.TINY_CONFIG) != sc.synthclip_dir(other)
    assert sc.synthclip_dir(sc.TINY_CONFIG).parent == cache / "synthclip"
    same = dataclasses.replace(sc.TINY_CONFIG, checkpoint_every=5)  # does not change weights
    assert sc.synthclip_dir(sc.TINY_CONFIG) == sc.synthclip_dir(same)


def test_missing_checkpoint_says_how_to_prepare(cache):
    assert sc.synthclip_checkpoint_path(sc.TINY_CONFIG) is None
    with pytest.raises(MissingWeightsError, match="facebench prepare synthclip"):
        sc.load_synthclip(config=sc.TINY_CONFIG)


def test_tiny_training_loss_falls_deterministic_and_resumes(cache):
    data = standin_pairs()
    cfg = sc.TINY_CONFIG
    full = sc.train_clip(cfg, data, cache / "a")
    first, last = sum(full.losses[:5]) / 5, sum(full.losses[-5:]) / 5
    assert last < 0.8 * first, full.losses

    # interrupted after 10 steps, then resumed: same weights as the uninterrupted run
    part = sc.train_clip(cfg, data, cache / "b", stop_after=10)
    assert part.steps == 10 and (cache / "b" / "train_state.pt").exists()
    resumed = sc.train_clip(cfg, data, cache / "b")
    assert resumed.resumed_from == 10 and resumed.steps == cfg.steps
    sd_a, sd_b = full.model.state_dict(), resumed.model.state_dict()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    assert resumed.losses == full.losses


def test_prepare_save_load_round_trip(cache, monkeypatch):
    data = standin_pairs(n=96)
    cfg = dataclasses.replace(sc.TINY_CONFIG, steps=6)
    calls = []
    path = sc.prepare_synthclip(
        progress=lambda *a: calls.append(a), config=cfg, data=data, evaluate=False
    )
    assert path == sc.synthclip_checkpoint_path(cfg) and path.parent.name == cfg.hash()
    assert calls and calls[-1] == ("train synthclip", 6, 6)
    assert not (path.parent / "train_state.pt").exists()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "meta"}
    assert sc.read_meta(path)["steps"] == 6

    model, _, tokenizer = sc.load_synthclip(config=cfg)
    again, _, _ = sc.load_synthclip(config=cfg)
    images = sc.normalize_images(data.images[:4].float() / 255, cfg.image_size)
    text = tokenizer(data.captions[:4])
    with torch.no_grad():
        a = model.encode_image(images), model.encode_text(text)
        b = again.encode_image(images), again.encode_text(text)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # `facebench weights` names the file's weights as the loaded model's rows do
    from facebench.weights import checkpoint_label, state_digest

    assert checkpoint_label("synthclip:x", path) == f"synthclip:x@{state_digest(model)}"
    path.with_name("broken.pt").write_bytes(b"not a checkpoint")
    assert checkpoint_label("synthclip:x", path.with_name("broken.pt")) == "synthclip:x@unreadable"
    assert checkpoint_label("synthclip:x", None) == ""
    assert sc.synthclip_label(cfg) == f"synthclip:{cfg.hash()}@{state_digest(model)}"
    # `--clip synthclip` loads the default config's checkpoint and labels it the same way
    from facebench.clip import load_clip

    monkeypatch.setattr(sc.cache, "DEFAULT_CONFIG", cfg)  # where --clip synthclip reads it
    adapter = load_clip("synthclip", "cpu", cache=False)
    assert adapter.label == sc.synthclip_label(cfg) and adapter.meaningful
    pinned = load_clip(f"synthclip:{cfg.hash()}", "cpu", cache=False)
    assert pinned.label == adapter.label
    # after the default changes, the earlier model is still loaded by its hash, from the
    # cache, with the same weights and label
    other = dataclasses.replace(cfg, seed=1)
    monkeypatch.setattr(sc.cache, "DEFAULT_CONFIG", other)
    earlier = load_clip(f"synthclip:{cfg.hash()}", "cpu", cache=False)
    assert earlier.label == adapter.label and earlier.backend == f"synthclip:{cfg.hash()}"
    torch.testing.assert_close(
        earlier.encode_text(["a red block"]), adapter.encode_text(["a red block"])
    )
    with pytest.raises(MissingWeightsError) as info:
        load_clip("synthclip:0123456789ab", "cpu", cache=False)
    message = str(info.value)
    assert "0123456789ab" in message and cfg.hash() in message and "\n" not in message
    with pytest.raises(MissingWeightsError, match="facebench prepare synthclip"):
        load_clip("synthclip", "cpu", cache=False)  # the new default is not prepared
    (path.parent / "open_clip_config.json").write_text("{not json")
    with pytest.raises(MissingWeightsError, match="no readable model config"):
        load_clip(f"synthclip:{cfg.hash()}", "cpu", cache=False)
    # cached: a second prepare returns at once without training
    assert sc.prepare_synthclip(config=cfg, data=None) == path


def test_caption_variants_come_from_the_dataset_vocabulary():
    from facebench.datasets.faces import caption
    from facebench.datasets.facs import EMOTIONS, expression_vector
    from facebench.datasets.synthhead import Identity

    identity = Identity()
    happy = expression_vector(EMOTIONS["happy"])
    v = sc.caption_variants(identity, happy)
    assert caption(identity, happy, 0) in v.templates
    assert "a happy face" in v.short
    assert "closed eyes" in v.absent and "a wide smile" not in v.absent
    g = torch.Generator().manual_seed(0)
    texts = {v.choose(g)[0] for _ in range(200)}
    assert any(t.endswith("without closed eyes") for t in texts)
    # the share of full (identity) captions follows full_rate
    kinds = [v.choose(g, full_rate=0.2)[1] for _ in range(2000)]
    assert abs(kinds.count("full") / 2000 - 0.2) < 0.03
    assert {v.choose(g, full_rate=0.0)[1] for _ in range(200)} == {"short"}
    assert {v.choose(g, full_rate=1.0)[1] for _ in range(200)} == {"full"}
    assert set(sc.au_phrases()) == {
        "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU12", "AU15", "AU20", "AU23", "AU26", "AU43"
    }  # fmt: skip


def test_caption_synonyms_and_hard_negatives_are_true_and_false():
    from facebench.datasets.facs import GROUPS, expression_vector
    from facebench.datasets.synthhead import Identity

    laugh = expression_vector({**GROUPS["smile"], **GROUPS["jaw_drop"]})  # AU6 .7, AU12, AU26
    v = sc.caption_variants(Identity(), laugh)
    assert "a smiling face with a wide open mouth" in v.short
    assert "a laughing face with an open mouth" in v.short
    assert "a face with a wide open mouth and a smile" in v.short
    assert "a face with a wide smile, a wide open mouth and raised cheeks" in v.short
    # hard negatives: "without" each unit shown (>= 0.5), "with" each unit absent (<= 0.05)
    assert set(v.contrast) == {
        "a face without raised cheeks", "a face without a wide smile",
        "a face without a wide open mouth",
    } | {f"a face with {p}" for p in v.absent}  # fmt: skip
    assert len(v.absent) == 9
    neutral = sc.caption_variants(Identity(), torch.zeros(12))
    assert not any("without" in c for c in neutral.contrast) and len(neutral.contrast) == 12
    g = torch.Generator().manual_seed(0)
    assert {v.negative(g) for _ in range(300)} == set(v.contrast)


def test_contrastive_loss_hard_negative_only_in_its_own_row():
    open_clip = _open_clip()  # via facebench's torchvision shim
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    neg = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    scale = torch.tensor(10.0)
    clip = open_clip.ClipLoss()
    assert torch.equal(sc.contrastive_loss(clip, img, txt, scale), clip(img, txt, scale))
    # by hand: row i of the image side is [s * img_i . txt_j for j] + [s * img_i . neg_i]
    rows = []
    for i in range(3):
        logits = torch.cat([scale * img[i] @ txt.T, (scale * img[i] @ neg[i]).reshape(1)])
        rows.append(torch.logsumexp(logits, 0) - logits[i])
    per_text = torch.nn.functional.cross_entropy(scale * txt @ img.T, torch.arange(3))
    want = (torch.stack(rows).mean() + per_text) / 2
    got = sc.contrastive_loss(clip, img, txt, scale, neg)
    assert torch.allclose(got, want, atol=1e-6)
    # a negative equal to the true caption raises the loss; one opposite the image barely adds
    plain = clip(img, txt, scale)
    assert sc.contrastive_loss(clip, img, txt, scale, txt) > plain + 0.1
    far = sc.contrastive_loss(clip, img, txt, scale, -img)
    assert plain < far < plain + 1e-3


def test_training_with_hard_negatives_scores_them(cache):
    data = emotion_pairs()
    cfg = dataclasses.replace(sc.TINY_CONFIG, steps=2, batch_size=8)
    plain = sc.train_clip(dataclasses.replace(cfg, hard_negatives=False), data, cache / "plain")
    hard = sc.train_clip(dataclasses.replace(cfg, hard_negatives=True), data, cache / "hard")
    # same weights and batch at step 0; one more negative per image-side row can only add
    assert hard.losses[0] > plain.losses[0]


def test_unit_phrase_loss_matches_hand_computation_and_skips_middle_levels():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    units = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    # 0.3 is neither on nor off; unit 0 has two positives and one negative
    levels = torch.tensor([[1.0, 0.0, 0.3], [0.6, 0.04, 0.0], [0.0, 0.7, 0.0]])
    scale = torch.tensor(10.0)
    per_unit = []
    for u in range(3):
        by_class = {0: [], 1: []}
        for b in range(3):
            if 0.05 < levels[b, u] < 0.5:
                continue
            logits = scale * units[u] @ img[b]
            label = 0 if levels[b, u] >= 0.5 else 1
            by_class[label].append(torch.logsumexp(logits, 0) - logits[label])
        means = [torch.stack(v).mean() for v in by_class.values() if v]
        per_unit.append(torch.stack(means).mean())
    want = torch.stack(per_unit).mean()
    got = sc.unit_phrase_loss(img, units, scale, levels)
    assert torch.allclose(got, want, atol=1e-6)
    # an image equal to its "with" text and opposite its "without" text: near-zero loss
    perfect = torch.stack([units[0, 0], units[0, 0]])
    lv = torch.tensor([[1.0, 0.3, 0.3], [1.0, 0.3, 0.3]])
    assert sc.unit_phrase_loss(perfect, units, torch.tensor(100.0), lv) < 0.05


def test_unit_phrase_weight_is_hashed_only_when_on_and_trains_the_loss(cache):
    off = dataclasses.replace(sc.TINY_CONFIG, unit_phrase_weight=0.0)
    assert "unit_phrase_weight" not in off.hash_dict()  # models from before it keep their hash
    on = sc.TINY_CONFIG
    assert on.hash_dict()["unit_phrase_weight"] == 8.0 and on.hash() != off.hash()
    texts, columns = sc.unit_phrase_texts()
    assert len(texts) == 2 * len(columns) == 24
    assert texts[:2] == [
        "a face with raised inner eyebrows",
        "a face without raised inner eyebrows",
    ]

    data = emotion_pairs()
    cfg = dataclasses.replace(
        sc.TINY_CONFIG, steps=2, batch_size=8, hard_negatives=False, unit_phrase_weight=0.0
    )
    plain = sc.train_clip(cfg, data, cache / "plain")
    units = sc.train_clip(dataclasses.replace(cfg, unit_phrase_weight=1.0), data, cache / "units")
    # same weights and batch at step 0; the unit term is a positive cross-entropy
    assert units.losses[0] > plain.losses[0] + 0.1
    with pytest.raises(ValueError, match="expressions"):
        no_levels = sc.PairData(data.images, data.captions, data.variants)
        sc.train_clip(dataclasses.replace(cfg, unit_phrase_weight=1.0), no_levels, cache / "x")


def test_unit_direction_loss_reads_the_difference_within_an_identity():
    # two units, 4-d embeddings; "with" texts along +e0 / +e1, "without" along -e0 / -e1
    units = torch.tensor([[[1.0, 0, 0, 0], [-1.0, 0, 0, 0]], [[0, 1.0, 0, 0], [0, -1.0, 0, 0]]])
    face = torch.tensor([0, 0, 1.0, 0])  # what the identity adds to every image of it
    img = torch.stack(
        [face + torch.tensor([0.5, 0, 0, 0]), face, face + torch.tensor([0, 0, 0, 3.0])]
    )
    levels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    ids = torch.tensor([7, 7, 8])
    scale = torch.tensor(2.0)
    # one term: pair (0, 1) on unit 0 (image 2 has no partner of its identity);
    # score 2 * <(0.5, 0, 0, 0), (2, 0, 0, 0)> = 2
    got = sc.unit_direction_loss(img, units, scale, levels, ids)
    assert torch.allclose(got, torch.nn.functional.softplus(torch.tensor(-2.0)))
    # the pair in the other order, and a different identity offset: the same loss
    swapped = sc.unit_direction_loss(img[[1, 0, 2]], units, scale, levels[[1, 0, 2]], ids)
    assert torch.allclose(swapped, got)
    moved = sc.unit_direction_loss(img + torch.tensor([0, 0, 0, 5.0]), units, scale, levels, ids)
    assert torch.allclose(moved, got)
    # a difference against the unit's direction costs more; no same-identity pair: 0
    wrong = sc.unit_direction_loss(img, units, scale, levels[[1, 0, 2]], ids)
    assert wrong > got + 1.0
    assert sc.unit_direction_loss(img, units, scale, levels, torch.tensor([1, 2, 3])) == 0
    # middle levels are left out, as in the unit-phrase loss
    mid = sc.unit_direction_loss(
        img, units, scale, torch.tensor([[0.3, 0.0], [0.0, 0.0], [0.0, 1.0]]), ids
    )
    assert mid == 0


def test_unit_direction_weight_is_hashed_only_when_on_and_trains_the_loss(cache):
    assert "unit_direction_weight" not in sc.TINY_CONFIG.hash_dict()
    data = emotion_pairs()
    data = sc.PairData(
        data.images, data.captions, data.variants, data.expressions, torch.arange(64) // 4
    )
    cfg = dataclasses.replace(sc.TINY_CONFIG, steps=2, batch_size=16, hard_negatives=False)
    on = dataclasses.replace(cfg, unit_direction_weight=4.0)
    assert on.hash_dict()["unit_direction_weight"] == 4.0 and on.hash() != cfg.hash()
    plain = sc.train_clip(cfg, data, cache / "plain")
    directions = sc.train_clip(on, data, cache / "directions")
    # same weights and batch at step 0; the direction term is a positive logistic loss
    assert directions.losses[0] > plain.losses[0] + 0.1
    with pytest.raises(ValueError, match="identity_ids"):
        no_ids = sc.PairData(data.images, data.captions, data.variants, data.expressions)
        sc.train_clip(on, no_ids, cache / "x")


def test_batches_avoid_false_negatives():
    from facebench.datasets.facs import EMOTIONS, expression_vector
    from facebench.datasets.synthhead import Identity

    exprs = [expression_vector(EMOTIONS[e]) for e in EMOTIONS] + [torch.zeros(12)]
    variants = [sc.caption_variants(Identity(), exprs[i % len(exprs)]) for i in range(60)]
    data = sc.PairData(
        torch.zeros(60, 4, 4, 3, dtype=torch.uint8), [v.templates[0] for v in variants], variants
    )
    for step in range(5):
        idx, texts = _batch(step, data, 16, 0, True)
        assert len(set(texts)) == len(texts) == len(idx)
        short_keys = [
            data.variants[i].key for i, t in zip(idx.tolist(), texts, strict=True)
            if t not in data.variants[i].templates
        ]  # fmt: skip
        all_keys = [data.variants[i].key for i in idx.tolist()]
        for k in short_keys:
            assert all_keys.count(k) == 1
        again = _batch(step, data, 16, 0, True)
        assert torch.equal(again[0], idx) and again[1] == texts


@pytest.mark.slow
def test_prepare_on_synthface_faces_records_quality(cache):
    """End to end at 16 px: render synthface-faces shards, train, evaluate, cache, reuse."""
    import json

    cfg = dataclasses.replace(sc.TINY_CONFIG, steps=8)
    path = sc.prepare_synthclip(config=cfg)
    q = json.loads((path.parent / "quality.json").read_text())
    assert set(q["per_au_zero_shot"]) == set(sc.au_phrases())
    assert {"emotions", "descriptive", "all"} <= set(q["prompt_retrieval"])
    assert q["heldout"]["n_identities"] == 2 and q["train_seconds"] >= 0
    # renders are the dataset's own shard cache, loadable without pickles
    shards = sorted((cache / "faces").rglob("*.npz"))
    assert shards
    import numpy as np

    with np.load(shards[0], allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8
    # the recognizer reuses the same shards
    from facebench.metrics.instruments import recognizer as rc

    n_before = len(shards)
    rpath = rc.prepare_recognizer(config=dataclasses.replace(rc.TINY_RECOGNIZER, steps=8))
    assert len(sorted((cache / "faces").rglob("*.npz"))) == n_before
    rq = json.loads((rpath.parent / "quality.json").read_text())
    assert 0 <= rq["emotion_accuracy"] <= 1 and rq["au_mae"] >= 0


def test_train_threads_defaults_to_torch_and_honours_the_variable(monkeypatch):
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.delenv("FACEBENCH_TRAIN_THREADS", raising=False)
        with train_threads():
            assert torch.get_num_threads() == 2
        monkeypatch.setenv("FACEBENCH_TRAIN_THREADS", "1")
        with train_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_unit_detection_scores_positives_and_negatives_and_skips_the_middle():
    levels = torch.tensor([1.0, 0.8, 0.6, 0.0, 0.0, 0.02, 0.3, 0.3])
    says_on = torch.tensor([True, True, False, False, True, False, True, False])
    d = sc.unit_detection(says_on, levels)
    assert d["n_positive"] == 3 and d["n_negative"] == 3  # the 0.3s are left out
    assert d["true_positive_rate"] == round(2 / 3, 4)
    assert d["true_negative_rate"] == round(2 / 3, 4)
    assert d["accuracy"] == round(2 / 3, 4)
    assert math.isnan(sc.unit_detection(says_on[3:6], levels[3:6])["accuracy"])  # no positives


def test_detection_interval_resamples_identities_not_images():
    # every identity: one positive read, one positive missed, one negative read -> any
    # resample of identities scores (1/2 + 1)/2, so the interval is that point
    says = torch.tensor([True, False, False] * 6)
    levels = torch.tensor([1.0, 1.0, 0.0] * 6)
    groups = torch.arange(6).repeat_interleave(3)
    assert sc.detection_interval(says, levels, groups, n_resamples=200) == [0.75, 0.75]
    # identities that differ: half read perfectly, half miss every positive
    says = torch.tensor([True, False] * 3 + [False, False] * 3)
    levels = torch.tensor([1.0, 0.0] * 6)
    groups = torch.arange(6).repeat_interleave(2)
    point = sc.unit_detection(says, levels)["accuracy"]
    low, high = sc.detection_interval(says, levels, groups, n_resamples=500)
    assert point == 0.75 and 0.5 <= low < point < high <= 1.0
    assert sc.detection_interval(says, levels, groups, n_resamples=500) == [low, high]


def test_trimmed_text_encoding_equals_open_clips_and_passes_gradients(cache):
    """Cutting the padding after the longest text changes no feature (causal tower,
    end-token pooling), and training's gradients reach the token embeddings."""
    torch.manual_seed(0)
    model, _, tokenizer = sc.build_model(sc.TINY_CONFIG)
    texts = ["a face", "a face with raised brows and a wide open mouth", "a smiling face"]
    tokens = tokenizer(texts)
    assert tokens.shape[1] == sc.TINY_CONFIG.context_length
    assert int((tokens != 0).sum(1).max()) < tokens.shape[1]  # there is padding to cut
    full = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    trimmed = sc.encode_text_trimmed(model, tokens)
    assert trimmed.shape == full.shape
    torch.testing.assert_close(trimmed, full, atol=1e-6, rtol=1e-5)
    # a batch of short texts is cut further and still matches
    short = tokenizer(["a face", "a smiling face"])
    torch.testing.assert_close(
        sc.encode_text_trimmed(model, short),
        torch.nn.functional.normalize(model.encode_text(short), dim=-1),
        atol=1e-6,
        rtol=1e-5,
    )
    sc.encode_text_trimmed(model, tokens).sum().backward()
    grad = model.token_embedding.weight.grad
    assert grad is not None and grad[tokens[0, 1]].abs().sum() > 0
    assert grad[0].abs().sum() == 0  # the padding token's row gets none


def test_augment_shifts_each_image_by_its_own_offset():
    """Each image is its edge-padded copy shifted by an offset in [-max, max]."""
    images = torch.arange(4 * 3 * 6 * 5, dtype=torch.float32).reshape(4, 3, 6, 5)
    out = sc.augment(images, 2, torch.Generator().manual_seed(3))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, [2] * 4, mode="replicate")
    for i in range(4):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 5])
        ]
        assert len(matches) == 1
    assert not all(torch.equal(out[i], images[i]) for i in range(4))  # something moved
    flipped = sc.augment(images, 0, torch.Generator().manual_seed(0), flip=True)
    for i in range(4):
        assert torch.equal(flipped[i], images[i]) or torch.equal(flipped[i], images[i].flip(-1))
