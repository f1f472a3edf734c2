"""CLIP adapter: spec parsing, offline loading and missing-weights errors, preprocessing, losses."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from facebench.clip import ClipAugment, clip_cache_status, load_clip, parse_clip_spec
from facebench.errors import FacebenchError
from facebench.metrics.instruments.synthclip import synthclip_checkpoint_path
from facebench.weights import MissingWeightsError


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """Empty open_clip / Hugging Face caches under a temporary HOME."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("FACEBENCH_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_parse_specs(tmp_path):
    assert parse_clip_spec("tiny-random").kind == "tiny-random"
    assert parse_clip_spec("synthclip").kind == "synthclip"
    s = parse_clip_spec("synthclip:2e103db22352")  # a SynthCLIP by config hash
    assert (s.kind, s.source) == ("synthclip", "2e103db22352")
    bad_specs = ("synthclip:", "synthclip:2e103db2235", "synthclip:latest", "synthclip:2E103DB2235")
    for bad in bad_specs:
        with pytest.raises(FacebenchError, match="takes a SynthCLIP config hash"):
            parse_clip_spec(bad)
    s = parse_clip_spec("ViT-B-32:openai")
    assert (s.kind, s.arch, s.source) == ("pretrained", "ViT-B-32", "openai")
    ckpt = tmp_path / "w.pt"
    s = parse_clip_spec(f"ViT-B-32:{ckpt}")
    assert (s.kind, s.source) == ("file", str(ckpt))
    for bad, words in [
        ("ViT-B-32", "is not '<arch>:"),
        ("NoSuchArch:openai", "unknown open_clip architecture"),
        ("ViT-B-32:no_such_tag", "neither a pretrained tag"),
    ]:
        with pytest.raises(FacebenchError) as info:
            parse_clip_spec(bad)
        assert words in _one_line(info.value)


def test_uncached_pretrained_is_one_clear_line_and_no_download(offline_home):
    with pytest.raises(MissingWeightsError) as info:
        load_clip("ViT-B-32:openai", "cpu", download=False, cache=False)
    msg = _one_line(info.value)
    assert "ViT-B-32:openai" in msg and "not cached" in msg
    assert str(offline_home / "hf") in msg and ".cache/clip/ViT-B-32.pt" in msg


def test_cache_lookup_finds_hf_and_url_files(offline_home):
    assert clip_cache_status("ViT-B-32", "openai")[0] is None
    # open_clip's URL cache (~/.cache/clip/<file>)
    url_file = offline_home / ".cache" / "clip" / "ViT-B-32.pt"
    url_file.parent.mkdir(parents=True)
    url_file.write_bytes(b"x")
    assert clip_cache_status("ViT-B-32", "openai")[0] == url_file
    # the Hugging Face hub cache layout (refs/main -> snapshot) is preferred
    repo = offline_home / "hf" / "models--timm--vit_base_patch32_clip_224.openai"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    assert clip_cache_status("ViT-B-32", "openai")[0] == snap / "open_clip_model.safetensors"


def test_synthclip_missing_says_how_to_prepare(tmp_path, monkeypatch, no_shipped_weights):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path))
    assert synthclip_checkpoint_path() is None
    with pytest.raises(MissingWeightsError) as info:
        load_clip("synthclip", "cpu", cache=False)
    assert "facebench prepare synthclip" in _one_line(info.value)


def test_tiny_random_is_labelled_and_deterministic(tiny_clip):
    assert tiny_clip.meaningful is False and tiny_clip.info()["meaningful"] is False
    assert tiny_clip.image_size == (32, 32) and tiny_clip.embed_dim == 32
    other = load_clip("tiny-random", "cpu", cache=False)
    assert other is not tiny_clip
    prompts = ["a smiling face", "a face with closed eyes"]
    # the same weights; the features agree to float rounding (an adapter first used with
    # one thread, as in other test modules, can round differently: 1.8e-7 measured)
    torch.testing.assert_close(
        tiny_clip.encode_text(prompts), other.encode_text(prompts), atol=1e-6, rtol=1e-5
    )
    assert load_clip("tiny-random", "cpu") is tiny_clip  # shared per (spec, device)


def test_state_digest_tells_weights_apart_and_survives_a_reload(tiny_clip):
    from facebench.weights import backend_label, state_digest

    digest = state_digest(tiny_clip.model)
    assert len(digest) == 12 and int(digest, 16) >= 0
    copy = load_clip("tiny-random", "cpu", cache=False)
    assert state_digest(copy.model) == digest == tiny_clip.weights
    with torch.no_grad():
        param = next(copy.model.parameters())
        param.view(-1)[0] = torch.nextafter(param.view(-1)[0], torch.tensor(float("inf")))
    assert state_digest(copy.model) != digest  # one weight one ulp away
    renamed = torch.nn.Linear(2, 2)
    same = torch.nn.Sequential(torch.nn.Linear(2, 2))
    same[0].load_state_dict(renamed.state_dict())
    assert state_digest(same) != state_digest(renamed)  # names count ("0.weight" vs "weight")
    assert backend_label("synthclip:abc", digest) == f"synthclip:abc@{digest}"
    assert backend_label("open_clip:ViT-B-32:openai", "") == "open_clip:ViT-B-32:openai"


def test_local_checkpoint_loads_with_weights_only(tiny_clip, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_clip.model.state_dict(), path)
    adapter = load_clip(f"facebench-tiny:{path}", "cpu", cache=False)
    assert adapter.meaningful is True and "tiny.pt" in adapter.backend
    assert adapter.weights == tiny_clip.weights and adapter.label.endswith(f"@{tiny_clip.weights}")
    x = torch.rand(2, 3, 40, 40)
    assert torch.allclose(adapter.encode_images(x), tiny_clip.encode_images(x), atol=1e-6)

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": argparse.Namespace(payload=1)}, evil)  # not allowed by weights_only
    with pytest.raises(FacebenchError) as info:
        load_clip(f"facebench-tiny:{evil}", "cpu", cache=False)
    assert "cannot load" in _one_line(info.value)
    with pytest.raises(MissingWeightsError):
        load_clip(f"facebench-tiny:{tmp_path / 'absent.pt'}", "cpu", cache=False)


def test_preprocess_matches_open_clip_transform(tiny_clip):
    from PIL import Image
    from skimage import data

    from facebench.clip import _open_clip

    open_clip = _open_clip()
    transform = open_clip.image_transform(
        tiny_clip.image_size,
        is_train=False,
        mean=tuple(tiny_clip.mean.flatten().tolist()),
        std=tuple(tiny_clip.std.flatten().tolist()),
        interpolation="bicubic",
        resize_mode="shortest",
    )
    for img in (data.astronaut()[::4, ::4][:100], data.astronaut()[::4, ::4][:, :90]):
        img = np.ascontiguousarray(img)
        reference = transform(Image.fromarray(img))[None]
        mine = tiny_clip.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
        assert mine.shape == reference.shape == (1, 3, 32, 32)
        assert (mine - reference).abs().mean() < 0.02  # PIL rounds to uint8 and clips
        assert (mine - reference).abs().max() < 0.3


def test_losses_backpropagate_and_match_definitions(tiny_clip):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48, requires_grad=True)
    src = torch.rand(2, 3, 48, 48)
    prompts = ["a smiling face", "a surprised face"]
    loss = tiny_clip.global_loss(x, prompts)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        expected = (
            1 - (tiny_clip.encode_images(x) * tiny_clip.encode_text(prompts)).sum(-1)
        ).mean()
        assert torch.allclose(loss, expected, atol=1e-6)
        d_img = tiny_clip.encode_images(x) - tiny_clip.encode_images(src)
        d_txt = tiny_clip.encode_text(prompts) - tiny_clip.encode_text(["a face"] * 2)
        expected = (1 - torch.nn.functional.cosine_similarity(d_img, d_txt, dim=-1)).mean()
        got = tiny_clip.directional_loss(x, src, prompts, "a face")
        assert torch.allclose(got, expected, atol=1e-5)


def test_augmented_views_are_reproducible_and_differentiable(tiny_clip):
    aug = ClipAugment(views=3, scale=(0.5, 0.9))
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    assert tiny_clip.preprocess(x, aug, torch.Generator().manual_seed(1)).shape == (6, 3, 32, 32)
    a = tiny_clip.global_loss(x, "smile", augment=aug, generator=torch.Generator().manual_seed(1))
    b = tiny_clip.global_loss(x, "smile", augment=aug, generator=torch.Generator().manual_seed(1))
    c = tiny_clip.global_loss(x, "smile", augment=aug, generator=torch.Generator().manual_seed(2))
    assert a.item() == b.item() and a.item() != c.item()
    a.backward()
    assert x.grad.abs().sum() > 0


def test_text_embeddings_are_cached_per_prompt(tiny_clip, monkeypatch):
    calls = []
    tokenizer = tiny_clip.tokenizer
    monkeypatch.setattr(
        tiny_clip, "tokenizer", lambda texts: calls.append(list(texts)) or tokenizer(texts)
    )
    first = tiny_clip.encode_text(["cache me", "and me"])
    second = tiny_clip.encode_text(["and me", "cache me"])
    assert calls == [["cache me", "and me"]]
    assert torch.equal(first[0], second[1])
    assert torch.allclose(first.norm(dim=-1), torch.ones(2))
