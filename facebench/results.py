"""The per-prompt results CSV (``leaderboard.csv``): atomic appends, resume by row key.

One row per (method, variant, scene, prompt set, prompt, seed, config hash).
Every append rewrites the file to a temporary sibling and renames it over the
original (:func:`os.replace` is atomic on POSIX and Windows), so an
interrupted run leaves either the old file or the new one -- never a partial
row. Re-running skips rows whose key is already present.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from facebench.paths import atomic_file, file_lock

KEY_COLUMNS = ("method", "variant", "scene", "prompt_set", "prompt", "seed", "config_hash")
LEADING_COLUMNS = KEY_COLUMNS[:-1]


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(c, "")) for c in KEY_COLUMNS)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a results CSV (empty list when the file does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = dict.fromkeys(LEADING_COLUMNS)
    for row in rows:
        for column in row:
            seen.setdefault(column, None)
    return list(seen)


def write_rows_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` to ``path`` through a temporary file and an atomic rename."""
    columns = _columns(rows)
    with atomic_file(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


class ResultStore:
    """A results CSV with resume-by-key: ``has(row)``, ``get(row)``, ``append(row)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._load()

    def _load(self) -> None:
        self.rows: list[dict[str, Any]] = list(read_rows(self.path))
        self._by_key = {row_key(r): r for r in self.rows}

    def has(self, key_row: dict[str, Any]) -> bool:
        return row_key(key_row) in self._by_key

    def get(self, key_row: dict[str, Any]) -> dict[str, Any] | None:
        """The stored row with ``key_row``'s key, or None."""
        return self._by_key.get(row_key(key_row))

    def append(self, row: dict[str, Any], replace: bool = False) -> None:
        """Add ``row`` (replacing a row with the same key when ``replace``) and write atomically.

        Under a lock file next to the CSV the rows are re-read first, so two runs writing
        to one directory at once both keep their rows (no lost update).
        """
        key = row_key(row)
        with file_lock(self.path.with_name(f".{self.path.name}.lock")):
            self._load()
            if key in self._by_key:
                if not replace:
                    return
                self.rows = [r for r in self.rows if row_key(r) != key]
            self.rows.append(row)
            self._by_key[key] = row
            write_rows_atomic(self.path, self.rows)
