"""SynthCLIP: a small open_clip model trained by facebench on SynthFace renders and captions.

No pretrained CLIP can be downloaded on facebench's machines, so text-driven
manipulation of SynthFace scenes is measured with a model facebench trains
itself. SynthCLIP is a *real* open_clip model -- a custom model config
registered with open_clip as data (:func:`register_model_config`), the
standard open_clip BPE tokenizer, open_clip's :class:`~open_clip.ClipLoss` --
trained on the ``synthface-faces`` image--caption pairs of the training
identities. It knows SynthFace heads and the attribute vocabulary of their
captions, nothing else: it is valid for SynthFace scenes and is not a
substitute for CLIP on real photos.

Modules: :mod:`.config` (configs and their hash), :mod:`.model` (open_clip
model and encoders), :mod:`.data` (pairs, captions, prompt renders),
:mod:`.train` (losses and the training loop), :mod:`.evaluate` (held-out
quality), :mod:`.cache` (cache, load, prepare; registers the ``synthclip``
instrument and CLIP backend, so ``--clip synthclip`` loads it).
"""

from facebench.metrics.instruments.synthclip.cache import (
    MISSING_MESSAGE,
    PREPARED,
    load_cached_synthclip,
    load_synthclip,
    prepare_synthclip,
    read_meta,
    save_checkpoint,
    synthclip_checkpoint_path,
    synthclip_dir,
    synthclip_label,
    synthclip_name,
)
from facebench.metrics.instruments.synthclip.config import (
    DEFAULT_CONFIG,
    FORMAT_VERSION,
    TINY_CONFIG,
    TINY_DATA,
    UNIT_OFF,
    UNIT_ON,
    DataRecipe,
    SynthCLIPConfig,
    data_version,
)
from facebench.metrics.instruments.synthclip.data import (
    PROMPT_SETS,
    CaptionVariants,
    PairData,
    au_phrases,
    caption_variants,
    faces_dataset,
    load_faces,
    prompt_renders,
    render_training_pairs,
    unit_phrase_texts,
    with_without,
)
from facebench.metrics.instruments.synthclip.evaluate import (
    detection_interval,
    evaluate_quality,
    gradient_check,
    optimise_expression,
    per_au_zero_shot,
    prompt_retrieval,
    unit_detection,
)
from facebench.metrics.instruments.synthclip.model import (
    build_model,
    encode_images,
    encode_text_trimmed,
    encode_texts,
    normalize_images,
    register_model_config,
)
from facebench.metrics.instruments.synthclip.train import (
    TrainResult,
    augment,
    contrastive_loss,
    train_clip,
    unit_direction_loss,
    unit_phrase_loss,
)

__all__ = [
    "DEFAULT_CONFIG",
    "FORMAT_VERSION",
    "MISSING_MESSAGE",
    "PREPARED",
    "PROMPT_SETS",
    "TINY_CONFIG",
    "TINY_DATA",
    "UNIT_OFF",
    "UNIT_ON",
    "CaptionVariants",
    "DataRecipe",
    "PairData",
    "SynthCLIPConfig",
    "TrainResult",
    "au_phrases",
    "augment",
    "build_model",
    "caption_variants",
    "contrastive_loss",
    "data_version",
    "detection_interval",
    "encode_images",
    "encode_text_trimmed",
    "encode_texts",
    "evaluate_quality",
    "faces_dataset",
    "gradient_check",
    "load_cached_synthclip",
    "load_faces",
    "load_synthclip",
    "normalize_images",
    "optimise_expression",
    "per_au_zero_shot",
    "prepare_synthclip",
    "prompt_renders",
    "prompt_retrieval",
    "read_meta",
    "register_model_config",
    "render_training_pairs",
    "save_checkpoint",
    "synthclip_checkpoint_path",
    "synthclip_dir",
    "synthclip_label",
    "synthclip_name",
    "train_clip",
    "unit_detection",
    "unit_direction_loss",
    "unit_phrase_loss",
    "unit_phrase_texts",
    "with_without",
]
