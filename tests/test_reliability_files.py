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
