"""CLIP adapter on open_clip: ``--clip`` specs, differentiable preprocessing, cached text, losses.

:func:`load_clip` turns a spec into a :class:`ClipAdapter`:

``<arch>:<pretrained tag>``  e.g. ``ViT-B-32:openai`` -- weights from open_clip's caches
    (the Hugging Face hub cache, or ``~/.cache/clip`` for URL weights). Nothing is
    downloaded unless ``download=True`` or ``FACEBENCH_ALLOW_DOWNLOAD=1``; a missing
    file is one :class:`~facebench.weights.MissingWeightsError` line naming the spec,
    where facebench looked and how to provide the weights.
``<arch>:<path>``  a local checkpoint (``.pt``/``.pth``/``.bin``/``.safetensors``), loaded
    by open_clip with ``weights_only=True``.
``<backend>`` or ``<backend>:<arg>``  a backend registered in
    :data:`facebench.registry.CLIP_BACKENDS`, e.g. ``synthclip`` -- the open_clip model
    facebench trains on SynthFace (``facebench prepare synthclip``) -- or
    ``synthclip:<config hash>``, an earlier SynthCLIP still in the cache.
``tiny-random``  a tiny custom open_clip config (``clip_configs/facebench-tiny.json``,
    registered with open_clip as data) with seeded random weights -- unit tests only;
    the adapter says ``meaningful=False`` and every metric result made with it carries it.

Images are ``(B, 3, H, W)`` float RGB in [0, 1]. Preprocessing (resize per the
model's ``resize_mode``, centre crop, normalize with the model's own mean/std) is
done with torch ops, so CLIP losses backpropagate into renders. Text embeddings
are cached per adapter (one model) and prompt.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facebench.errors import FacebenchError
from facebench.registry import CLIP_BACKENDS
from facebench.weights import (
    MissingWeightsError,
    WeightInfo,
    backend_label,
    checkpoint_problem,
    state_digest,
    weight_probe,
)

__all__ = [
    "ClipAdapter",
    "ClipAugment",
    "ClipSpec",
    "DEFAULT_CLIP",
    "TINY_ARCH",
    "clip_cache_status",
    "clip_instrument",
    "load_clip",
    "parse_clip_spec",
]

DEFAULT_CLIP = "ViT-B-32:openai"
"""The paper's model (FaceCLIPNeRF and CLIP-NeRF use CLIP ViT-B/32)."""

TINY_SPEC = "tiny-random"
TINY_ARCH = "facebench-tiny"
_CONFIG_DIR = Path(__file__).with_name("clip_configs")
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
_OPEN_CLIP_KINDS = ("tiny-random", "file", "pretrained")  # any other kind names a backend
_lock = threading.Lock()
_adapters: dict[tuple[str, str], ClipAdapter] = {}


def _open_clip() -> Any:
    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    if TINY_ARCH not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR / f"{TINY_ARCH}.json")
    return open_clip


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ClipSpec:
    """A parsed ``--clip`` spec; ``kind``: pretrained, file, tiny-random or a backend's name
    (``source``: the backend's argument, "" for the bare name)."""

    text: str
    kind: str
    arch: str = ""
    source: str = ""


def parse_clip_spec(spec: str) -> ClipSpec:
    """Parse a ``--clip`` spec (see module docstring); raise a one-line error when malformed."""
    text = (spec or "").strip()
    if text == TINY_SPEC:
        return ClipSpec(text, "tiny-random", TINY_ARCH)
    arch, sep, source = text.partition(":")
    if arch and arch not in _OPEN_CLIP_KINDS and arch in CLIP_BACKENDS:  # not an open_clip arch
        backend = CLIP_BACKENDS.get(arch).obj
        return ClipSpec(text, arch, arch, backend.check(spec, source if sep else None))
    if not sep or not arch or not source:
        forms = ["'<arch>:<pretrained tag>'", "'<arch>:<checkpoint path>'"]
        forms += [f"'{name}'" for name in CLIP_BACKENDS.names()]
        raise FacebenchError(
            f"CLIP spec {spec!r} is not {', '.join(forms)} or 'tiny-random' "
            "(example: ViT-B-32:openai)"
        )
    open_clip = _open_clip()
    if arch not in open_clip.list_models():
        raise FacebenchError(
            f"CLIP spec {spec!r}: unknown open_clip architecture {arch!r} "
            f"(see open_clip.list_models(); e.g. ViT-B-32, ViT-B-16, RN50)"
        )
    looks_like_path = (
        os.sep in source
        or source.startswith((".", "~"))
        or source.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(source).expanduser().is_file()
    )
    if looks_like_path:
        return ClipSpec(text, "file", arch, str(Path(source).expanduser()))
    if open_clip.get_pretrained_cfg(arch, source):
        return ClipSpec(text, "pretrained", arch, source)
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
    raise FacebenchError(
        f"CLIP spec {spec!r}: {source!r} is neither a pretrained tag of {arch} "
        f"(known: {tags}) nor an existing checkpoint file"
    )


def _hf_candidates(hf_hub: str) -> tuple[str, list[str]]:
    """``(repo_id, filenames)`` open_clip would fetch for an ``hf_hub`` pretrained entry."""
    repo_id, filename = os.path.split(hf_hub)
    if not filename:
        return repo_id, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    names = [filename]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo_id, names


def clip_cache_status(arch: str, tag: str) -> tuple[Path | None, list[str]]:
    """Where open_clip's caches hold ``arch:tag`` (None if nowhere) and the places searched.

    Looks, without any network access, in the Hugging Face hub cache (used when
    the tag has an ``hf_hub`` entry; ``HF_HUB_CACHE``/``HF_HOME`` respected) and in
    ``~/.cache/clip`` (open_clip's cache for URL weights).
    """
    open_clip = _open_clip()
    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    searched: list[str] = []
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        repo_id, names = _hf_candidates(cfg["hf_hub"])
        searched.append(f"hf cache {HF_HUB_CACHE} ({repo_id})")
        for name in names:
            found = try_to_load_from_cache(repo_id, name)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), searched
    if cfg.get("url"):
        target = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        searched.append(str(target))
        if target.is_file():
            return target, searched
    return None, searched


def clip_instrument(spec: str) -> str | None:
    """The instrument (:data:`facebench.registry.INSTRUMENTS`) that prepares the weights of
    ``spec`` when they are missing: a backend's own, for its bare name only (``synthclip``,
    not ``synthclip:HASH``, which names a model already made); else None."""
    parsed = parse_clip_spec(spec)
    if parsed.kind in _OPEN_CLIP_KINDS or parsed.source:
        return None
    return getattr(CLIP_BACKENDS.get(parsed.kind).obj, "instrument", None)


# --------------------------------------------------------------------------- loading


def load_clip(
    spec: str = DEFAULT_CLIP,
    device: torch.device | str | None = None,
    *,
    download: bool | None = None,
    cache: bool = True,
) -> ClipAdapter:
    """Load the CLIP model named by ``spec`` on ``device`` (default: CUDA if available).

    Adapters are shared per ``(spec, device)`` unless ``cache=False``. ``download``
    (default ``FACEBENCH_ALLOW_DOWNLOAD=1``) lets open_clip fetch missing
    pretrained weights; otherwise only cached files are used. Raises
    :class:`~facebench.weights.MissingWeightsError` (one line) when weights are
    absent -- never returns random weights except for ``tiny-random``.
    """
    dev = torch.device(device) if device is not None else _default_device()
    key = (spec, str(dev))
    if cache:
        with _lock:
            if key in _adapters:
                return _adapters[key]
    adapter = _build(parse_clip_spec(spec), dev, download)
    if cache:
        with _lock:
            adapter = _adapters.setdefault(key, adapter)
    return adapter


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _quiet_create(open_clip: Any, *args: Any, **kwargs: Any) -> torch.nn.Module:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip logs "random init" warnings at WARNING
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return open_clip.create_model(*args, **kwargs)
    finally:
        root.setLevel(level)


def _build(spec: ClipSpec, device: torch.device, download: bool | None) -> ClipAdapter:
    open_clip = _open_clip()
    meaningful = True
    weights = ""  # digest of weights made or given locally (a pretrained tag names its own)
    if spec.kind == "tiny-random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = _quiet_create(open_clip, TINY_ARCH, pretrained=None)
        tokenizer = open_clip.get_tokenizer(TINY_ARCH)
        backend = "open_clip:facebench-tiny:random(seed=0)"
        weights = state_digest(model)  # torch's initialisation decides them
        meaningful = False
    elif spec.kind not in _OPEN_CLIP_KINDS:  # a registered backend (says how to prepare it)
        model, tokenizer, backend = CLIP_BACKENDS.get(spec.kind).obj.load(spec.source)
        weights = state_digest(model)
    elif spec.kind == "file":
        path = Path(spec.source)
        if not path.is_file():
            raise MissingWeightsError(
                f"CLIP spec {spec.text!r}: checkpoint file {path} does not exist; "
                f"give an existing open_clip checkpoint for {spec.arch}"
            )
        problem = checkpoint_problem(path)
        if problem is not None:
            raise FacebenchError(
                f"CLIP spec {spec.text!r}: {path} {problem}; "
                f"give an open_clip checkpoint for {spec.arch}"
            )
        try:
            model = _quiet_create(open_clip, spec.arch, pretrained=str(path), weights_only=True)
        except Exception as exc:  # open_clip raises RuntimeError/KeyError/... for bad files
            raise FacebenchError(
                f"CLIP spec {spec.text!r}: cannot load {path} as {spec.arch} weights "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
            ) from exc
        tokenizer = open_clip.get_tokenizer(spec.arch)
        backend = f"open_clip:{spec.arch}:file:{path.name}"
        weights = state_digest(model)
    else:
        model = _load_pretrained(open_clip, spec, download)
        tokenizer = open_clip.get_tokenizer(spec.arch)
        backend = f"open_clip:{spec.arch}:{spec.source}"
    return ClipAdapter(
        model,
        tokenizer,
        spec=spec.text,
        backend=backend,
        meaningful=meaningful,
        device=device,
        weights=weights,
    )


def _load_pretrained(open_clip: Any, spec: ClipSpec, download: bool | None) -> torch.nn.Module:
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.source)
    path, searched = clip_cache_status(spec.arch, spec.source)
    if download is None:
        download = os.environ.get("FACEBENCH_ALLOW_DOWNLOAD", "") not in ("", "0")
    if path is None and not download:
        raise MissingWeightsError(
            f"CLIP spec {spec.text!r}: weights not cached (looked in {'; '.join(searched)}); "
            f"fetch them once where the hub is reachable (FACEBENCH_ALLOW_DOWNLOAD=1) and copy the "
            f"cache, or use '{spec.arch}:<path to checkpoint>'"
        )
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    try:
        return _quiet_create(
            open_clip,
            spec.arch,
            pretrained=str(path) if path is not None else spec.source,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess,
            weights_only=True,
        )
    except Exception as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        if path is None:
            raise MissingWeightsError(
                f"CLIP spec {spec.text!r}: download failed ({first}); "
                f"use '{spec.arch}:<path to checkpoint>' on machines without the hub"
            ) from exc
        raise FacebenchError(f"CLIP spec {spec.text!r}: cannot load {path}: {first}") from exc


# --------------------------------------------------------------------------- adapter


@dataclass(frozen=True)
class ClipAugment:
    """Random crop-and-rescale (+ optional horizontal flip) views for CLIP-guided optimization.

    Each image gives ``views`` crops covering ``scale`` of its area (square, random
    position), resampled back to the model's input size with ``grid_sample`` after
    the (antialiased) resize -- differentiable, no aliasing. Pass a
    ``torch.Generator`` to the adapter call for reproducible views.
    """

    views: int = 4
    scale: tuple[float, float] = (0.7, 1.0)
    flip: bool = True

    def sample(self, batch: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """``(batch * views, 2, 3)`` affine matrices for :func:`torch.nn.functional.affine_grid`."""
        n = batch * self.views
        r = torch.rand(n, 4, generator=generator)
        lo, hi = self.scale
        side = (lo + (hi - lo) * r[:, 0]).sqrt()  # fraction of the side length
        cx = (1 - side) * (2 * r[:, 1] - 1)
        cy = (1 - side) * (2 * r[:, 2] - 1)
        sx = torch.where(r[:, 3] < 0.5, -side, side) if self.flip else side
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = sx, cx
        theta[:, 1, 1], theta[:, 1, 2] = side, cy
        return theta.to(device)


class ClipAdapter:
    """A loaded CLIP model with torch preprocessing, cached text embeddings and CLIP losses.

    Attributes: ``spec`` (as given), ``backend`` (the model's name, hashed into rows),
    ``weights`` (a digest of weights made or given locally, "" for a pretrained tag),
    ``label`` (``backend@weights``, recorded in results), ``meaningful`` (False for
    ``tiny-random``), ``device``, ``image_size``,
    ``embed_dim``, ``mean``/``std`` (the model's own), ``interpolation``,
    ``resize_mode``. The model is frozen (eval, no parameter gradients); gradients
    flow to input images.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        spec: str,
        backend: str,
        meaningful: bool,
        device: torch.device,
        weights: str = "",
    ) -> None:
        open_clip = _open_clip()
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec, self.backend, self.meaningful, self.device = spec, backend, meaningful, device
        self.weights = weights
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = cfg.get("size", 224)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.interpolation = str(cfg.get("interpolation", "bicubic"))
        self.resize_mode = str(cfg.get("resize_mode", "shortest"))
        self.fill = float(cfg.get("fill_color", 0)) / 255.0
        self._text: dict[str, Tensor] = {}
        self.embed_dim = int(self.encode_text(["a photo of a face"]).shape[-1])

    @property
    def label(self) -> str:
        """``backend@weights``: what results record as the model that scored them."""
        return backend_label(self.backend, self.weights)

    def __repr__(self) -> str:
        flag = "" if self.meaningful else ", meaningful=False"
        return f"ClipAdapter({self.label!r}, device={self.device}{flag})"

    def info(self) -> dict[str, Any]:
        """What to record with every result made with this model."""
        return {"clip": self.label, "meaningful": self.meaningful}

    # ----------------------------------------------------------- preprocessing

    def _resize(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        mode = "bicubic" if self.interpolation == "bicubic" else "bilinear"
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)

    def preprocess(
        self,
        images: Tensor,
        augment: ClipAugment | None = None,
        generator: torch.Generator | None = None,
        theta: Tensor | None = None,
    ) -> Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> normalized model input (``B*views`` rows with ``augment``).

        ``resize_mode`` ``shortest``: resize the short side then centre-crop (CLIP's
        own transform); ``longest``: resize the long side and pad with the fill
        colour; ``squash``: resize both sides. Differentiable throughout.
        """
        x = _as_batch(images).to(self.device, torch.float32)
        th, tw = self.image_size
        h, w = x.shape[-2:]
        if self.resize_mode == "squash":
            x = self._resize(x, (th, tw))
        elif self.resize_mode == "longest":
            s = min(th / h, tw / w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            x = self._resize(x, (nh, nw))
            pt, pl = (th - nh) // 2, (tw - nw) // 2
            x = F.pad(x, (pl, tw - nw - pl, pt, th - nh - pt), value=self.fill)
        else:
            # torchvision's Resize(int): short side -> target, long side int() (floored)
            if h <= w:
                nh, nw = th, max(tw, int(th * w / h))
            else:
                nh, nw = max(th, int(tw * h / w)), tw
            x = self._resize(x, (nh, nw))
            top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
            x = x[..., top : top + th, left : left + tw]
        if augment is not None or theta is not None:
            if theta is None:
                theta = augment.sample(x.shape[0], generator, x.device)  # type: ignore[union-attr]
            views = theta.shape[0] // x.shape[0]
            x = x.repeat_interleave(views, dim=0)
            grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
        return (x - self.mean) / self.std

    # ----------------------------------------------------------- embeddings

    def _embed(self, images: Tensor, theta: Tensor | None = None) -> Tensor:
        """Normalized image embeddings, ``(B, views, D)`` (views = 1 without augmentation)."""
        batch = _as_batch(images).shape[0]
        feats = self.model.encode_image(self.preprocess(images, theta=theta))
        return F.normalize(feats.float(), dim=-1).view(batch, -1, feats.shape[-1])

    def encode_images(
        self,
        images: Tensor,
        *,
        augment: ClipAugment | None = None,
        generator: torch.Generator | None = None,
        normalize: bool = True,
    ) -> Tensor:
        """``(B, D)`` image embeddings (differentiable w.r.t. ``images``).

        With ``augment``, the mean of the normalized per-view embeddings.
        """
        theta = None
        if augment is not None:
            theta = augment.sample(_as_batch(images).shape[0], generator, self.device)
        feats = self._embed(images, theta).mean(dim=1)
        return F.normalize(feats, dim=-1) if normalize else feats

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str] | str) -> Tensor:
        """``(N, D)`` normalized text embeddings, cached per prompt for this model."""
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            feats = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for p, f in zip(missing, feats, strict=True):
                self._text[p] = f
        return torch.stack([self._text[p] for p in prompts])

    def similarity(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """``(B,)`` cosine of each image and its prompt (one prompt per image, or one for all)."""
        img = self.encode_images(images)
        txt = self.encode_text(_per_image(prompts, img.shape[0]))
        return (img * txt).sum(-1)

    # ----------------------------------------------------------- losses

    def global_loss(
        self,
        images: Tensor,
        prompts: Sequence[str] | str,
        *,
        augment: ClipAugment | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Mean of ``1 - cos(E_i(view), E_t(prompt))`` over images and views (CLIP-NeRF's D)."""
        batch = _as_batch(images).shape[0]
        theta = augment.sample(batch, generator, self.device) if augment is not None else None
        img = self._embed(images, theta)
        txt = self.encode_text(_per_image(prompts, batch))
        return (1 - (img * txt[:, None]).sum(-1)).mean()

    def directional_loss(
        self,
        images: Tensor,
        source_images: Tensor,
        prompts: Sequence[str] | str,
        source_prompts: Sequence[str] | str,
        *,
        augment: ClipAugment | None = None,
        generator: torch.Generator | None = None,
        eps: float = 1e-8,
    ) -> Tensor:
        """Mean of ``1 - cos(E_i(x) - E_i(x_src), E_t(t) - E_t(t_src))`` (StyleGAN-NADA/TG-3DFace).

        With ``augment`` the same views are taken of an image and its source.
        """
        batch = _as_batch(images).shape[0]
        theta = augment.sample(batch, generator, self.device) if augment is not None else None
        d_img = self._embed(images, theta) - self._embed(source_images, theta)
        d_txt = self.encode_text(_per_image(prompts, batch)) - self.encode_text(
            _per_image(source_prompts, batch)
        )
        cos = F.cosine_similarity(d_img, d_txt[:, None].expand_as(d_img), dim=-1, eps=eps)
        return (1 - cos).mean()


def _as_batch(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor):
        raise FacebenchError(f"expected images as a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise FacebenchError(
            f"expected images of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}"
        )
    return images


def _per_image(prompts: Sequence[str] | str, batch: int) -> list[str]:
    if isinstance(prompts, str):
        return [prompts] * batch
    prompts = list(prompts)
    if len(prompts) == 1:
        return prompts * batch
    if len(prompts) != batch:
        raise FacebenchError(f"got {len(prompts)} prompts for {batch} images")
    return prompts


# --------------------------------------------------------------------------- weights


@weight_probe
def _probe() -> list[WeightInfo]:
    rows: list[WeightInfo] = []
    try:
        path, searched = clip_cache_status("ViT-B-32", "openai")
    except Exception as exc:  # a diagnostic must not crash
        return [WeightInfo("clip ViT-B-32:openai", False, "", f"open_clip unusable: {exc}")]
    rows.append(
        WeightInfo(
            name="clip ViT-B-32:openai",
            present=path is not None,
            location=str(path) if path else "; ".join(searched),
            how_to="not downloadable here: copy an open_clip ViT-B-32 checkpoint and use "
            "--clip ViT-B-32:<path>, or FACEBENCH_ALLOW_DOWNLOAD=1 where the hub is reachable",
        )
    )
    return rows
