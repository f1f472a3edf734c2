"""The results CSV under damage: one line naming file and line, the user's data never rewritten;
rows appended without rewriting the file; a full disk, stale temporaries, symlinks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from facebench import results as R
from facebench.errors import FacebenchError
from facebench.results import DamagedResultsError, ResultStore, read_rows


def _row(prompt: str, seed: int = 0, value: float = 20.0, **extra) -> dict:
    return {
        "method": "pac",
        "variant": "full",
        "scene": "synthface:tiny",
        "prompt_set": "emotions",
        "prompt": prompt,
        "seed": seed,
        "config_hash": "abc",
        "gt_psnr": value,
        **extra,
    }


def _good(tmp_path: Path) -> Path:
    store = ResultStore(tmp_path / "leaderboard.csv")
    for prompt in ("happy", "sad", 'a, "quoted" prompt'):
        store.append(_row(prompt))
    return store.path


def _cut_last_row(path: Path) -> int:
    path.write_bytes(path.read_bytes()[:-6])
    return 4


def _extra_field(path: Path) -> int:
    with path.open("a", newline="") as fh:
        fh.write("pac,full,synthface:tiny,emotions,x,0,abc,1.0,surplus\r\n")
    return 5


def _missing_field(path: Path) -> int:
    lines = path.read_bytes().split(b"\r\n")
    lines[2] = lines[2].rsplit(b",", 1)[0]
    path.write_bytes(b"\r\n".join(lines))
    return 3


def _foreign_header(path: Path) -> int:
    path.write_text("name,score\nalice,3\n")
    return 1


def _binary(path: Path) -> int:
    data = path.read_bytes()
    path.write_bytes(data + b"\x00\x01\x02garbage\r\n")
    return 5


def _latin1(path: Path) -> int:
    with path.open("ab") as fh:
        fh.write("pac,full,synthface:tiny,emotions,caf\u00e9,0,abc,1.0\r\n".encode("latin-1"))
    return 5


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("gone.csv"))


DAMAGE = {
    "last row cut short": (_cut_last_row, "cut short"),
    "row with an extra field": (_extra_field, "9 fields where the header has 8"),
    "row with a missing field": (_missing_field, "7 fields where the header has 8"),
    "foreign header": (_foreign_header, "not a facebench results CSV"),
    "binary": (_binary, "binary data"),
    "latin-1": (_latin1, "not UTF-8"),
    "folder": (_folder, "is a folder"),
    "dangling symlink": (_dangling_link, "symlink to nothing"),
}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_csv_stops_with_one_line_and_is_never_rewritten(tmp_path, case):
    path = _good(tmp_path)
    damage, what = DAMAGE[case]
    line = damage(path)
    before = _snapshot(tmp_path)
    for attempt in (
        lambda: ResultStore(path),
        lambda: read_rows(path),
        lambda: R._Snapshot(None, []).refresh(path),
    ):
        with pytest.raises(DamagedResultsError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message and what in message and str(path) in message
        if line:
            assert f"line {line}:" in message
    assert _snapshot(tmp_path) == before


def test_damage_appearing_mid_run_stops_the_append_and_keeps_the_file(tmp_path):
    path = _good(tmp_path)
    store = ResultStore(path)
    _cut_last_row(path)  # another process (or a crash) damaged it meanwhile
    before = path.read_bytes()
    with pytest.raises(DamagedResultsError, match="cut short"):
        store.append(_row("angry"))
    assert path.read_bytes() == before


@pytest.mark.parametrize("case", ["last row cut short", "foreign header", "latin-1", "folder"])
def test_leaderboard_command_on_a_damaged_csv(tmp_path, capsys, case):
    from facebench import cli

    path = _good(tmp_path)
    DAMAGE[case][0](path)
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["leaderboard", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0] and DAMAGE[case][1] in err[0]
    assert _snapshot(tmp_path) == before


def test_leaderboard_command_into_a_read_only_folder(tmp_path, capsys, monkeypatch):
    from facebench import cli, leaderboard

    _good(tmp_path)
    before = _snapshot(tmp_path)
    real = leaderboard.atomic_file

    def read_only(path, *args, **kwargs):  # what a read-only folder (even for root) answers
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(leaderboard, "atomic_file", read_only)
    with pytest.raises(SystemExit) as info:
        cli.main(["leaderboard", str(tmp_path)])
    assert info.value.code == 2 and real is not read_only
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the summary" in err[0] and "Read-only" in err[0]
    assert _snapshot(tmp_path) == before


def test_rows_are_appended_not_rewritten(tmp_path):
    path = _good(tmp_path)
    inode, before = path.stat().st_ino, path.read_bytes()
    store = ResultStore(path)
    assert store.append(_row("angry"))
    assert path.stat().st_ino == inode  # same file: no rename of a rewritten copy
    assert path.read_bytes().startswith(before)
    assert [r["prompt"] for r in read_rows(path)][-1] == "angry"
    # a row with a new column does rewrite, atomically, once
    assert store.append(_row("calm", identity=0.5))
    rows = read_rows(path)
    assert rows[-1]["identity"] == "0.5" and rows[0]["identity"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [".leaderboard.csv.lock", path.name]


def test_prompts_round_trip_exactly(tmp_path):
    prompts = ["a \u2028 line separator", 'quote " and, comma', "=HYPERLINK(1)", "tab\tend"]
    store = ResultStore(tmp_path / "leaderboard.csv")
    for p in prompts:
        store.append(_row(p, value=float("nan")))
    rows = read_rows(store.path)
    assert [r["prompt"] for r in rows] == prompts and all(r["gt_psnr"] == "nan" for r in rows)
    assert all(ResultStore(store.path).has(_row(p)) for p in prompts)


def test_a_full_disk_keeps_the_rows_already_written(tmp_path, monkeypatch):
    path = _good(tmp_path)
    before = path.read_bytes()
    store = ResultStore(path)
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        store.append(_row("angry"))
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:3]))  # short write
    with pytest.raises(OSError):
        store.append(_row("angry"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert store.append(_row("angry")) and len(read_rows(path)) == 4


def test_stale_temporaries_are_removed_under_the_lock(tmp_path):
    path = _good(tmp_path)
    stale = tmp_path / ".leaderboard.csv.k1ll3d.tmp"  # what a SIGKILL mid-rewrite leaves
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / ".leaderboard_summary.csv.abc.tmp"  # not this file's: kept
    other.write_bytes(b"y")
    ResultStore(path).append(_row("angry"))
    assert not stale.exists() and other.exists()


def test_a_symlinked_csv_stays_a_symlink(tmp_path):
    real = _good(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    target = real.rename(tmp_path / "elsewhere" / "results.csv")
    link = tmp_path / "leaderboard.csv"
    link.symlink_to(target)
    store = ResultStore(link)
    store.append(_row("angry"))  # appended
    store.append(_row("calm", identity=1.0))  # rewritten
    store.append(_row("calm", value=1.0, identity=2.0), replace=True)  # replaced
    assert link.is_symlink() and len(read_rows(target)) == 5
    assert read_rows(link)[-1]["identity"] == "2.0"


def test_two_stores_see_each_others_rows_and_never_write_a_key_twice(tmp_path):
    first = ResultStore(tmp_path / "leaderboard.csv")
    second = ResultStore(tmp_path / "leaderboard.csv")
    assert first.append(_row("happy"))
    assert not second.append(_row("happy", value=99.0))  # already written by the other run
    assert second.append(_row("sad"))
    first.refresh()
    assert first.has(_row("sad")) and len(read_rows(first.path)) == 2


def test_damaged_results_error_is_a_user_error():
    assert issubclass(DamagedResultsError, FacebenchError)


def test_nan_rows_are_flagged_not_averaged_silently(tmp_path):
    from facebench.leaderboard import write_leaderboard

    store = ResultStore(tmp_path / "leaderboard.csv")
    for prompt, value in (("1", 20.0), ("sad", 24.0), ("angry", float("nan"))):
        store.append(_row(prompt, value=value, identity="", config_hash="012345678901"))
    _, md_path, table = write_leaderboard(tmp_path)
    (group,) = table.to_dict("records")
    assert group["gt_psnr_mean"] == 22.0 and group["gt_psnr_nonfinite"] == 1 and group["n"] == 3
    assert "identity_nonfinite" not in table.columns  # absent ("") is not NaN
    assert group["config_hash"] == "012345678901"  # a hash of digits stays text
    assert "22.000 ± 2.828 (NaN/inf in 1 row, not averaged)" in md_path.read_text()


_WRITER = """
import sys
from facebench.results import ResultStore
store = ResultStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    row = {"method": "pac", "variant": "full", "scene": "s", "prompt_set": "p",
           "prompt": f"prompt {i}", "seed": 0, "config_hash": "abc", "gt_psnr": i / 7}
    if i % 10 == 9:
        row["extra"] = i  # a new column: a whole-file rewrite, killable mid-way
    if not store.has(row):
        store.append(row)
    print(i, flush=True)
"""


@pytest.mark.parametrize("kill_after", [3, 11, 19])
def test_sigkill_while_writing_rows_then_rerun(tmp_path, kill_after):
    import signal
    import subprocess
    import sys

    path = tmp_path / "leaderboard.csv"
    n = 25
    cmd = [sys.executable, "-c", _WRITER, str(path), str(n)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            if int(line) >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
    assert proc.wait() == -signal.SIGKILL
    read_rows(path)  # whatever the kill left is a sound file
    subprocess.run(cmd, check=True, capture_output=True)  # the rerun resumes
    rows = read_rows(path)
    assert [r["prompt"] for r in rows] == [f"prompt {i}" for i in range(n)]
    assert [float(r["gt_psnr"]) for r in rows] == [i / 7 for i in range(n)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".leaderboard.csv.lock", path.name]
    ResultStore(path).append(_row("after"))  # the lock is not held by the dead process
