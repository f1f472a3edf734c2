"""Where facebench keeps caches and weights, how it writes files (atomically), and how it
tells a damaged cache file (a sha256 recorded beside each entry)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def cache_dir() -> Path:
    """Root of facebench's cache: ``$FACEBENCH_CACHE`` or ``$XDG_CACHE_HOME/facebench``."""
    env = os.environ.get("FACEBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "facebench"


def torch_home() -> Path:
    """torch's cache root (``$TORCH_HOME``, default ``~/.cache/torch``)."""
    import torch.hub

    return Path(torch.hub.get_dir()).parent


@contextmanager
def atomic_file(path: Path | str, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success rename it onto ``path``.

    Readers see the old file or the whole new one, never half of it; on an error the
    temporary file is removed and ``path`` is untouched. The file gets the permissions
    a plain ``open`` would give (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(lock_path: Path | str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    ``on_wait()`` is called once when another process holds it and this one has to
    wait. Without ``fcntl`` (not POSIX) the block runs unlocked.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


DIGEST_SUFFIX = ".sha256"
"""A cache file's sha256 is kept beside it in ``<name>.sha256`` (:func:`write_digest`)."""


def file_sha256(path: Path | str) -> str:
    """The sha256 of the file at ``path`` (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_digest(path: Path | str) -> None:
    """Record ``path``'s sha256 beside it, atomically (call right after writing it)."""
    path = Path(path)
    with atomic_file(path.with_name(path.name + DIGEST_SUFFIX), "w") as fh:
        fh.write(file_sha256(path) + "\n")


def cache_damage(
    path: Path | str, load: Callable[[Path], Any] | None = None, record: bool = True
) -> str | None:
    """Why the cache file at ``path`` cannot be trusted, or None when it can.

    With a recorded digest: whether the file still has it. Without one (an entry written
    before digests were kept, or a file rewritten as it goes, such as a resume state):
    whether ``load(path)`` reads it; if so, and ``record``, the digest is recorded now.
    """
    path = Path(path)
    side = path.with_name(path.name + DIGEST_SUFFIX)
    try:
        if side.is_file():
            recorded = side.read_text().strip()
            return None if file_sha256(path) == recorded else "its sha256 differs from the record"
        if load is not None:
            load(path)
    except Exception as exc:  # any failure to read it is damage, said in one line
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        return f"unreadable ({type(exc).__name__}{': ' + first if first else ''})"
    if record:
        try:
            write_digest(path)
        except OSError:  # a read-only cache: checked again next time
            pass
    return None


def move_aside(path: Path | str) -> Path:
    """Rename a damaged cache file to ``<name>.damaged`` (kept for inspection, replacing an
    older one) and drop its digest; returns the new path."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    path.with_name(path.name + DIGEST_SUFFIX).unlink(missing_ok=True)
    return aside


MIN_FREE_BYTES = 16 << 20
"""What an output folder needs free before a run starts (rows, renders, configs)."""


def check_output_dir(out: Path | str, option: str = "--out") -> Path:
    """``out`` if a run can write there, else a one-line :class:`FacebenchError`.

    Checked before any work and without creating anything: ``out`` (or its nearest
    existing ancestor) must be a folder in which a file can be written -- not a file, not
    under a file, not read-only (also for root: a test file is written and removed), on a
    disk with :data:`MIN_FREE_BYTES` free.
    """
    from facebench.errors import FacebenchError

    out = Path(out).expanduser()
    probe = out
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "is" if probe == out else f"is under {probe}, which is"
        kind = "a broken symlink" if probe.is_symlink() and not probe.exists() else "a file"
        raise FacebenchError(f"{option} {out}: {what} {kind}, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".facebench-probe-") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise FacebenchError(
            f"{option} {out}: cannot write in {probe} ({exc.strerror or type(exc).__name__})"
        ) from None
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        raise FacebenchError(
            f"{option} {out}: only {free >> 20} MB free on its disk "
            f"(a run needs at least {MIN_FREE_BYTES >> 20} MB)"
        )
    return out
