"""Files a user hands facebench that are not what they claim: FLAME `.npz` files with object
arrays (which only unpickling could read), non-checkpoints as `--clip ARCH:FILE`, and a
damaged LPIPS backbone found before any fit. Each is one line (exit 2), runs nothing from
the file and writes nothing."""

from __future__ import annotations

import json
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.errors import FacebenchError


class _Payload:
    """Unpickling this creates the marker file: proof that the file was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _object_npz(path: Path, marker: Path, **arrays) -> Path:
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    np.savez(path, **arrays, payload=payload)  # an object array is stored as a pickle
    return path


def _not_npz(path: Path, marker: Path, **arrays) -> Path:
    path.write_bytes(pickle.dumps({"v_template": _Payload(marker)}))  # a pickle named .npz
    return path


def _text_npz(path: Path, marker: Path, **arrays) -> Path:
    path.write_text("v_template = 1\n")
    return path


NPZ_CASES = {"object array": _object_npz, "a pickle": _not_npz, "text": _text_npz}
MODEL = {
    "v_template": np.zeros((4, 3), np.float32),
    "shapedirs": np.zeros((4, 3, 2), np.float32),
    "f": np.array([[0, 1, 2], [0, 2, 3]]),
}


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_flame_model_npz_through_the_environment_is_refused_unread(tmp_path, monkeypatch, case):
    from facebench.morphable import scene_morphable

    marker = tmp_path / "ran"
    model = NPZ_CASES[case](tmp_path / "flame2020.npz", marker, **MODEL)
    capture = tmp_path / "capture"
    capture.mkdir()
    (capture / "dataset.json").write_text(json.dumps({"ids": ["f0"], "train_ids": ["f0"]}))
    np.savez(capture / "flame_params.npz", expression=np.zeros((1, 2), np.float32))
    scene = types.SimpleNamespace(
        expressions=None, images=torch.zeros(1, 4, 4, 3), meta={"path": str(capture)}
    )
    monkeypatch.setenv("FACEBENCH_FLAME_MODEL", str(model))
    with pytest.raises(FacebenchError) as info:
        scene_morphable(scene)
    line = _one_line(str(info.value))
    assert str(model) in line and "not a plain .npz" in line
    assert not marker.exists()  # nothing in the file ran


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_convert_with_a_landmark_npz_that_needs_unpickling(tmp_path, capsys, case):
    from facebench.morphable.cli import main

    marker = tmp_path / "ran"
    src = tmp_path / "generic_model.pkl"
    src.write_bytes(pickle.dumps(MODEL, protocol=2))
    emb = NPZ_CASES[case](tmp_path / "embedding.npz", marker, lmk_vertex_ids=np.arange(3))
    dst = tmp_path / "out" / "flame2020.npz"
    assert main(["convert", str(src), str(dst), "--landmarks", str(emb)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(emb) in line and "not a plain .npz" in line
    assert not marker.exists() and not dst.exists() and not dst.parent.exists()
    # the same embedding as plain arrays converts
    np.savez(emb, lmk_vertex_ids=np.arange(3))
    assert main(["convert", str(src), str(dst), "--landmarks", str(emb)]) == 0
    with np.load(dst, allow_pickle=False) as z:
        assert z["lmk_vertex_ids"].tolist() == [0, 1, 2]


def _text(path: Path) -> None:
    path.write_text("hello world, this is a text file\n")  # torch read its magic as 544502645


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_zip(path: Path) -> None:
    torch.save({"w": torch.zeros(256)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


CLIP_FILES = {
    "text": (_text, "is text, not a checkpoint"),
    "empty": (_empty, "is empty"),
    "truncated zip": (_truncated_zip, "is a zip archive cut short"),
    "binary": (_binary, "neither a zip archive nor a pickle"),
}


SCENE = "synthface:tiny,n_eval=2,resolution=32,n_frames=20"  # made once for the module


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("case", list(CLIP_FILES))
def test_a_clip_file_that_is_no_checkpoint_is_one_line(
    tmp_path, capsys, monkeypatch, module_cache, case
):
    from facebench import cli

    make, words = CLIP_FILES[case]
    weights = tmp_path / "weights.pt"
    make(weights)
    monkeypatch.setenv("FACEBENCH_CACHE", str(module_cache))
    out = tmp_path / "out"
    argv = ["run", "--method", "pac", "--prompts", "emotions.txt", "--scene", SCENE]
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--clip", f"RN50:{weights}", "--no-prepare", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert info.value.code == 2
    assert str(weights) in line and words in line and "RN50" in line, line
    assert not out.exists()  # (the scene was loaded, and cached, before the CLIP)


def test_checkpoint_problem_lets_real_formats_through(tmp_path):
    from facebench.weights import checkpoint_problem

    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    np.save(tmp_path / "a.npy", np.zeros(2))
    np.savez(tmp_path / "b.npz", a=np.zeros(2))
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (tmp_path / "c.bin").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    for name in ("zip.pt", "legacy.pt", "a.npy", "b.npz", "c.bin"):
        assert checkpoint_problem(tmp_path / name) is None, name
    assert checkpoint_problem(tmp_path / "missing.pt").startswith("cannot be read")


def _lpips_truncated(path: Path) -> None:
    torch.save({"features.0.weight": torch.ones(64, 3, 11, 11)}, path)
    path.write_bytes(path.read_bytes()[:-100])


def _lpips_other_tensors(path: Path) -> None:
    torch.save({"features.0.weight": torch.ones(64, 3, 11, 11)}, path)  # loads; wrong digest


def _lpips_text(path: Path) -> None:
    path.write_text("not weights\n")


LPIPS_FILES = {
    "truncated": _lpips_truncated,
    "other tensors": _lpips_other_tensors,
    "text": _lpips_text,
}


@pytest.mark.parametrize("case", list(LPIPS_FILES))
def test_a_damaged_lpips_backbone_stops_the_run_before_the_fit(
    tmp_path, capsys, monkeypatch, module_cache, case
):
    from facebench import cli
    from facebench.metrics.instruments.lpips_weights import lpips_backbone_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FACEBENCH_CACHE", str(module_cache))
    backbone = lpips_backbone_path("alex")
    assert backbone.is_relative_to(tmp_path)
    backbone.parent.mkdir(parents=True)
    LPIPS_FILES[case](backbone)
    damaged = backbone.read_bytes()
    out = tmp_path / "out"
    argv = ["run", "--method", "pac", "--prompts", "emotions.txt", "--scene", SCENE]
    argv += ["--clip", "tiny-random", "--budget", "smoke", "--suite", "scene", "--out", str(out)]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    line = _one_line(capsys.readouterr().err)
    assert info.value.code == 2
    assert "LPIPS alex backbone" in line and str(backbone) in line, line
    assert not (module_cache / "scene_manipulator").exists()  # no fit started
    assert not out.exists() and backbone.read_bytes() == damaged  # nothing written or "fixed"
