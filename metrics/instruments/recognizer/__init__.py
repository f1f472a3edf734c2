"""A SynthFace expression recognizer: a small CNN predicting action units and the emotion class.

FaceCLIPNeRF's R-precision needs a facial-expression recognizer; none can be
downloaded here, so facebench trains one on SynthFace renders (varied
identities, camera views and expressions). It predicts the FACS action-unit
vector of :mod:`facebench.scene` (intensities in [0, 1]) and one of the
emotion classes (``neutral`` + the emotions of the SynthFace prototype
table). Like SynthCLIP it is valid for SynthFace renders only.

Modules: :mod:`.config` (config and its hash), :mod:`.model` (the
:class:`ExpressionRecognizer` interface and the CNN), :mod:`.train` (labelled
renders, the training loop), :mod:`.evaluate` (held-out quality), :mod:`.cache`
(cache, load, prepare; registers the ``recognizer`` instrument). Training
renders are the ``synthface-faces`` dataset's cached shards (shared with SynthCLIP).
"""

from facebench.metrics.instruments.recognizer.cache import (
    PREPARED,
    load_recognizer,
    load_recognizer_from,
    prepare_recognizer,
    recognizer_checkpoint_path,
    recognizer_dir,
    recognizer_label,
    recognizer_name,
    save_recognizer,
)
from facebench.metrics.instruments.recognizer.config import (
    DEFAULT_RECOGNIZER,
    FORMAT_VERSION,
    TINY_RECOGNIZER,
    RecognizerConfig,
)
from facebench.metrics.instruments.recognizer.evaluate import (
    evaluate_on_prompt_renders,
    evaluate_recognizer,
)
from facebench.metrics.instruments.recognizer.model import (
    ExpressionRecognizer,
    Recognition,
    RecognizerNet,
    SynthFaceRecognizer,
)
from facebench.metrics.instruments.recognizer.train import (
    ExpressionData,
    RecognizerTrainResult,
    emotion_classes,
    emotion_label,
    render_expression_data,
    train_recognizer,
)

__all__ = [
    "DEFAULT_RECOGNIZER",
    "FORMAT_VERSION",
    "PREPARED",
    "TINY_RECOGNIZER",
    "ExpressionData",
    "ExpressionRecognizer",
    "Recognition",
    "RecognizerConfig",
    "RecognizerNet",
    "RecognizerTrainResult",
    "SynthFaceRecognizer",
    "emotion_classes",
    "emotion_label",
    "evaluate_on_prompt_renders",
    "evaluate_recognizer",
    "load_recognizer",
    "load_recognizer_from",
    "prepare_recognizer",
    "recognizer_checkpoint_path",
    "recognizer_dir",
    "recognizer_label",
    "recognizer_name",
    "render_expression_data",
    "save_recognizer",
    "train_recognizer",
]
