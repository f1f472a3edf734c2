"""`facebench run` against a hostile disk and input: --out checks before any work, --seeds bound,
--device, duplicate prompts, line separators, and render file names that never collide."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from facebench import paths
from facebench.errors import FacebenchError

RUN = ["run", "--method", "pac", "--prompts", "emotions.txt", "--budget", "smoke"]
RUN += ["--scene", "synthface:tiny", "--clip", "tiny-random", "--no-prepare"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line_exit_2(capsys, monkeypatch, tmp_path: Path, argv: list[str]) -> str:
    from facebench import cli

    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir(exist_ok=True)
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert _tree(tmp_path) == before  # nothing written: no output folder, no cache
    return err[0]


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "f").write_text("x")
    return tmp_path / "f"


def _under_a_file(tmp_path: Path) -> Path:
    return _a_file(tmp_path) / "sub" / "out"


def _dangling(tmp_path: Path) -> Path:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link"


OUT_CASES = {
    "a file": (_a_file, "is a file"),
    "under a file": (_under_a_file, "which is a file"),
    "a dangling symlink": (_dangling, "broken symlink"),
}


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_out_that_cannot_be_a_folder(tmp_path, capsys, monkeypatch, case):
    make, fragment = OUT_CASES[case]
    out = make(tmp_path)
    line = _one_line_exit_2(capsys, monkeypatch, tmp_path, [*RUN, "--out", str(out)])
    assert fragment in line and "--out" in line


@pytest.mark.parametrize(
    "error, fragment",
    [
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left"),
    ],
)
def test_out_where_nothing_can_be_written(tmp_path, capsys, monkeypatch, error, fragment):
    # what a read-only folder, a read-only filesystem or a full disk answer (even to root)
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(paths.tempfile, "TemporaryFile", refuse)
    argv = [*RUN, "--out", str(tmp_path / "out")]
    line = _one_line_exit_2(capsys, monkeypatch, tmp_path, argv)
    assert fragment in line and "cannot write" in line


def test_out_on_a_nearly_full_disk(tmp_path, capsys, monkeypatch):
    usage = paths.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(paths.shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
    line = _one_line_exit_2(capsys, monkeypatch, tmp_path, [*RUN, "--out", str(tmp_path / "o")])
    assert "only 1 MB free" in line


def test_check_output_dir_accepts_new_and_existing_folders(tmp_path):
    assert paths.check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not created
    assert paths.check_output_dir(tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    with pytest.raises(FacebenchError, match="is a file"):
        paths.check_output_dir(_a_file(tmp_path))


@pytest.mark.parametrize(
    "seeds, fragment",
    [("0", "at least 1"), ("-3", "at least 1"), ("1001", "at most"), (str(10**26), "at most")],
)
def test_seeds_are_bounded(tmp_path, capsys, monkeypatch, seeds, fragment):
    argv = [*RUN, "--out", str(tmp_path / "out"), "--seeds", seeds]
    line = _one_line_exit_2(capsys, monkeypatch, tmp_path, argv)
    assert fragment in line


@pytest.mark.parametrize("device", ["meta", "nonsense", "cuda:99", "cpu:1"])
def test_devices_a_run_cannot_use(tmp_path, capsys, monkeypatch, device):
    argv = [*RUN, "--out", str(tmp_path / "out"), "--device", device]
    line = _one_line_exit_2(capsys, monkeypatch, tmp_path, argv)
    assert "--device" in line


def test_prompt_files_keep_line_separators_and_repeat_nothing(tmp_path):
    from facebench.datasets.prompts import load_prompts

    path = tmp_path / "p.txt"
    path.write_text("smile\na \u2028 b\r\nsmile\n  smile  \nform\x0cfeed\n", encoding="utf-8")
    assert load_prompts(str(path)).prompts == ["smile", "a \u2028 b", "form\x0cfeed"]


def test_render_names_never_collide():
    from facebench.runner import slug

    texts = ["Happy!", "happy", "happy?", "a smiling face", "A smiling face", "sad", "x" * 60]
    texts += ["x" * 61, "synthface:tiny", "synthface-tiny", "synthface tiny"]
    names = [slug(t) for t in texts]
    assert len(set(names)) == len(texts)
    assert slug("sad") == "sad" and slug("a smiling face") == "a-smiling-face"  # as before
    assert all(len(n) <= 48 and n == n.strip("-") for n in names)
    assert slug("Happy!") == slug("Happy!")  # a function of the text alone


def test_a_row_is_reseeded_from_its_seed_and_prompt():
    import torch

    from facebench.runner import seed_row

    seed_row(0, "happy")
    a = torch.rand(3)
    torch.rand(100)  # whatever ran before
    seed_row(0, "happy")
    assert torch.equal(torch.rand(3), a)
    seed_row(1, "happy")
    assert not torch.equal(torch.rand(3), a)
    seed_row(0, "sad")
    assert not torch.equal(torch.rand(3), a)


def test_probe_leaves_no_file_behind_when_writing_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(FacebenchError, match="cannot write"):
        paths.check_output_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_that_fails_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    from facebench import cli, runner

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(runner, "run", full)
    with pytest.raises(SystemExit) as info:
        cli.main([*RUN, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert "No space left on device" in err[0] and "x.png" in err[0] and "resume" in err[0]
