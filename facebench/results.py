"""The per-prompt results CSV (``leaderboard.csv``): checked reads, atomic appends, resume by key.

One row per (method, variant, scene, prompt set, prompt, seed, config hash).

- **Read strictly.** The file is the user's data: a damaged one (a row cut short, a
  row with more or fewer fields than the header, a header that is not facebench's,
  text that is not UTF-8, a folder in its place) raises one :class:`FacebenchError`
  naming the file and the line, and is never rewritten or "repaired".
- **Append, don't rewrite.** A row whose columns the header already has is appended
  as one ``write`` to the end of the file and fsynced (constant cost per row, not a
  rewrite of the whole file). If that write fails (a full disk) the file is cut back
  to its previous length, so the rows already written stay intact. Only a row that
  brings new columns, or replaces one (``--force``), rewrites the file -- through a
  temporary sibling and an atomic rename (:func:`facebench.paths.atomic_file`), into
  the target of a symlinked CSV rather than over the link.
- **One writer at a time.** Every write holds a lock file beside the CSV, re-reads
  what other processes appended meanwhile (only the new bytes), and removes stale
  temporaries a killed rewrite left behind.
- **One computation per row.** A run computes a row only under that row's claim (an
  ``flock`` on ``.leaderboard.csv.claims/<key digest>.lock``), and re-reads the CSV
  after taking it: two runs on one folder split the rows instead of both computing
  each (:meth:`ResultStore.claimed`). A claim is removed when its row is done; one a
  killed run left holds no lock and is simply taken over.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from facebench.errors import FacebenchError
from facebench.paths import atomic_file, file_lock

KEY_COLUMNS = ("method", "variant", "scene", "prompt_set", "prompt", "seed", "config_hash")
LEADING_COLUMNS = KEY_COLUMNS[:-1]
LINE_END = "\r\n"  # the csv module's own line terminator


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(c, "")) for c in KEY_COLUMNS)


class DamagedResultsError(FacebenchError):
    """A results CSV that facebench cannot read as its own; nothing was written to it."""


def _damaged(path: Path, line: int | None, what: str) -> DamagedResultsError:
    where = f"{path}, line {line}" if line else str(path)
    return DamagedResultsError(f"{where}: {what}; left unchanged (fix or move it)")


def _decode(path: Path, data: bytes, start_line: int) -> str:
    """``data`` as UTF-8 text; a damaged byte names its line."""
    if b"\0" in data:
        line = start_line + data[: data.index(b"\0")].count(b"\n")
        raise _damaged(path, line, "binary data (a NUL byte), not a CSV")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = start_line + data[: exc.start].count(b"\n")
        raise _damaged(path, line, "not UTF-8 text") from exc


def _parse(path: Path, text: str, header: list[str] | None, start_line: int) -> tuple:
    """``(header, rows)`` of ``text`` (the whole file, or the bytes appended after the
    known ``header``), each row checked to have exactly the header's fields."""
    if text and not text.endswith("\n"):
        last = start_line + text.count("\n")
        raise _damaged(path, last, "the last row is cut short (no line end)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[dict[str, str]] = []
    try:
        if header is None:
            header = next(reader, None)
            if header is None:
                return None, []
            missing = [c for c in KEY_COLUMNS if c not in header]
            if missing or len(set(header)) != len(header):
                what = f"lacks {missing}" if missing else "repeats a column"
                raise _damaged(path, 1, f"header {what}: not a facebench results CSV")
        for fields in reader:
            line = start_line + reader.line_num - 1
            if len(fields) != len(header):
                raise _damaged(
                    path, line, f"{len(fields)} fields where the header has {len(header)}"
                )
            rows.append(dict(zip(header, fields, strict=True)))
    except csv.Error as exc:
        raise _damaged(path, start_line + reader.line_num - 1, f"not CSV ({exc})") from exc
    return header, rows


def _check_file(path: Path) -> bool:
    """Whether ``path`` exists as a readable regular file (one line if not: a folder...)."""
    if not os.path.lexists(path):
        return False
    if path.is_dir():
        raise _damaged(path, None, "is a folder, not a results CSV")
    if not path.exists():
        raise _damaged(path, None, "is a symlink to nothing")
    if not path.is_file():
        raise _damaged(path, None, "is not a regular file")
    return True


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a results CSV (empty list when the file does not exist), checked as the
    module docstring says; :class:`DamagedResultsError` names the file and line."""
    return _Snapshot.read(Path(path)).rows


class _Snapshot:
    """What has been read of the CSV: header, rows, and how many bytes they took."""

    def __init__(
        self, header: list[str] | None, rows: list[dict[str, str]], size=0, ino=0, lines=0
    ):
        self.header, self.rows, self.size, self.ino, self.lines = header, rows, size, ino, lines

    @classmethod
    def read(cls, path: Path) -> _Snapshot:
        if not _check_file(path):
            return cls(None, [])
        try:
            with open(path, "rb") as fh:
                data = fh.read()
                ino = os.fstat(fh.fileno()).st_ino
        except OSError as exc:
            raise _damaged(path, None, f"cannot be read ({exc.strerror})") from exc
        header, rows = _parse(path, _decode(path, data, 1), None, 1)
        return cls(header, rows, len(data), ino, data.count(b"\n"))

    def refresh(self, path: Path) -> tuple[_Snapshot, list[dict[str, str]] | None]:
        """The snapshot with what was appended since, and the rows appended (None: the file
        shrank or was replaced, and was read again whole)."""
        if not _check_file(path):
            return _Snapshot(None, []), None
        st = path.stat()
        if self.header is None or st.st_ino != self.ino or st.st_size < self.size:
            return _Snapshot.read(path), None
        if st.st_size == self.size:
            return self, []
        with open(path, "rb") as fh:
            fh.seek(self.size)
            data = fh.read()
        start = self.lines + 1
        _, new = _parse(path, _decode(path, data, start), self.header, start)
        size, lines = self.size + len(data), self.lines + data.count(b"\n")
        return _Snapshot(self.header, self.rows + new, size, self.ino, lines), new


def _columns(rows: Iterable[dict[str, Any]], first: Iterable[str] = LEADING_COLUMNS) -> list[str]:
    seen: dict[str, None] = dict.fromkeys(first)
    for row in rows:
        for column in row:
            seen.setdefault(column, None)
    return list(seen)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


def _line(columns: list[str], row: dict[str, Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=LINE_END).writerow([_cell(row.get(c, "")) for c in columns])
    return out.getvalue()


def write_rows_atomic(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None):
    """Write ``rows`` to ``path`` (a symlink's target) through a temporary file and an
    atomic rename; ``header`` first (new columns after it)."""
    columns = _columns(rows, header or LEADING_COLUMNS)
    target = Path(os.path.realpath(path))
    with atomic_file(target, "w", newline="", encoding="utf-8") as fh:
        fh.write(_line(columns, dict(zip(columns, columns, strict=True))))
        for row in rows:
            fh.write(_line(columns, row))


def _append_line(path: Path, text: str) -> None:
    """Append ``text`` in one write and fsync it; on failure cut the file back."""
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def clean_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries a killed rewrite of ``path`` left (call under its lock)."""
    target = Path(os.path.realpath(path))
    stale = sorted(target.parent.glob(f".{target.name}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def _claim(path: Path, wait: bool) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created) for the block and remove the file
    at its end; yields False at once, holding nothing, when another process holds it and
    not ``wait``. Without ``fcntl`` (not POSIX) nothing is held and True is yielded."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no claims
        yield True
        return
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # another run removed the empty folder meanwhile
            continue
        except FileExistsError:
            # mkdir found the folder, then another run removed it before mkdir checked
            # that it is a folder: try again (a file in its place is an error)
            if path.parent.exists():
                raise
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            # the holder before us removes the file as it lets go: claim the file that
            # is there now, not the removed one
            if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)  # still held: nobody claims the removed file
        os.close(fd)
        with contextlib.suppress(OSError):  # the last claim out removes the folder
            path.parent.rmdir()


class ResultStore:
    """A results CSV with resume-by-key: ``has(row)``, ``get(row)``, ``append(row)``.

    Opening it reads and checks the whole file (:func:`read_rows`), so a damaged file
    stops a run before anything is computed.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._snap = _Snapshot.read(self.path)
        self._by_key = {row_key(r): r for r in self._snap.rows}

    @property
    def rows(self) -> list[dict[str, str]]:
        return self._snap.rows

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def refresh(self) -> None:
        """Read what other processes appended since (only the new bytes)."""
        self._snap, new = self._snap.refresh(self.path)
        if new is None:  # read again whole
            self._by_key = {row_key(r): r for r in self._snap.rows}
            return
        for row in new:
            self._by_key[row_key(row)] = row

    @property
    def claims(self) -> Path:
        """The folder of per-row claims (:meth:`claimed`), beside the CSV."""
        return self.path.with_name(f".{self.path.name}.claims")

    def claimed(
        self, key_rows: Sequence[dict[str, Any]], force: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The rows of ``key_rows`` this process is to compute, one at a time, each with
        its claim held until the next is asked for (close the iterator to let the last
        go). A row whose key is in the CSV once its claim is taken is skipped (unless
        ``force``). A row another process holds is put back and tried after the others;
        the second time, this process waits for it -- then the holder has usually
        written it, and it is skipped."""
        queue = deque(key_rows)
        deferred: set[tuple[str, ...]] = set()
        while queue:
            key_row = queue.popleft()
            key = row_key(key_row)
            name = hashlib.sha256("\0".join(key).encode()).hexdigest()[:32] + ".lock"
            with _claim(self.claims / name, wait=key in deferred or not queue) as held:
                if not held:
                    deferred.add(key)
                    queue.append(key_row)
                    continue
                self.refresh()  # another run may have written it before letting it go
                if force or key not in self._by_key:
                    yield key_row

    def has(self, key_row: dict[str, Any]) -> bool:
        return row_key(key_row) in self._by_key

    def get(self, key_row: dict[str, Any]) -> dict[str, Any] | None:
        """The stored row with ``key_row``'s key, or None."""
        return self._by_key.get(row_key(key_row))

    def append(self, row: dict[str, Any], replace: bool = False) -> bool:
        """Add ``row`` (replacing a row with the same key when ``replace``); False when a
        row with its key is already there (another run wrote it) and nothing was written.

        Under a lock file next to the CSV what others appended is read first, so two runs
        writing to one directory at once both keep their rows (no lost update).
        """
        key = row_key(row)
        with file_lock(self.lock_path):
            clean_temporaries(self.path)
            self.refresh()
            present = key in self._by_key
            if present and not replace:
                return False
            header = self._snap.header
            if header is None or present or any(c not in header for c in row):
                rows = [r for r in self._snap.rows if row_key(r) != key] + [row]
                write_rows_atomic(self.path, rows, header)
                self._snap = _Snapshot.read(self.path)
                self._by_key = {row_key(r): r for r in self._snap.rows}
                return True
            _append_line(self.path, _line(header, row))
            self.refresh()
            return True
