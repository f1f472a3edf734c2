"""The cache of fitted scene models (one per scene, method family and fit config).

Every scene method keeps its fit in ``<root>/<family>/<Scene.key()>/<config hash>/``:
``model.pt`` holds ``{"state_dict": tensors, "meta": JSON text}`` (written atomically,
read with ``weights_only=True``, so a model file can run no code), ``checkpoint.pt`` the
resumable state of an unfinished fit (:func:`facebench.trainer.fit_loop`), and
``meta.json`` a readable copy of the meta, ``model.pt.sha256`` the model file's digest.
A model file that no longer matches its digest (or, written before digests were kept,
no longer loads) and a resume state that does not load are moved aside
(``*.damaged``), said in one line on the ``facebench`` logger, and fitted again. A
fitted model is named
``<name>:<config hash>@<weights digest>`` (:func:`facebench.weights.state_digest`), and
:meth:`SceneModelCache.cached_label` gives that name from the file without building
the model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from facebench.paths import atomic_file, cache_damage, move_aside, write_digest
from facebench.scene import Scene
from facebench.train_state import atomic_save
from facebench.weights import backend_label, checkpoint_label, state_digest

__all__ = ["SceneModelCache"]

log = logging.getLogger("facebench")


def _load_weights(path: Path) -> object:
    return torch.load(path, map_location="cpu", weights_only=True)


class SceneModelCache:
    """Where one (scene, family, config) fit lives, and how it is saved, loaded and named.

    ``family`` is the folder under ``root`` (e.g. ``scene_manipulator``); ``name`` the
    label's prefix (default: ``family``).
    """

    MODEL = "model.pt"
    CHECKPOINT = "checkpoint.pt"
    META = "meta.json"

    def __init__(
        self, root: Path | str, family: str, scene: Scene, config_hash: str, name: str = ""
    ):
        self.family = family
        self.name = name or family
        self.config_hash = config_hash
        self.scene_key = scene.key()
        self.directory = Path(root) / family / self.scene_key / config_hash

    @property
    def key(self) -> str:
        """``<scene key>/<config hash>``: what the fit is of, and with which settings."""
        return f"{self.scene_key}/{self.config_hash}"

    @property
    def model_path(self) -> Path:
        return self.directory / self.MODEL

    @property
    def checkpoint(self) -> Path:
        """The resumable state of an unfinished fit (removed by :meth:`save`)."""
        return self.directory / self.CHECKPOINT

    def exists(self) -> bool:
        return self.model_path.is_file()

    def _heal(self, path: Path) -> bool:
        """Whether ``path`` was damaged (then it is moved aside, and the log says so). A
        resume state, rewritten as the fit goes, gets no digest: it must load."""
        record = path != self.checkpoint
        why = cache_damage(path, _load_weights, record) if path.is_file() else None
        if why is None:
            return False
        aside = move_aside(path)
        log.warning(f"{path} is damaged ({why}); moved to {aside.name}, fitting again")
        return True

    def load(self, map_location: Any = "cpu") -> dict[str, Any] | None:
        """``{"state_dict": ..., "meta": dict}`` of the cached fit, or None when absent or
        damaged (moved aside: the caller fits again, resuming from a sound checkpoint)."""
        if not self.exists() or self._heal(self.model_path):
            self._heal(self.checkpoint)
            return None
        saved = torch.load(self.model_path, map_location=map_location, weights_only=True)
        try:
            return {"state_dict": saved["state_dict"], "meta": json.loads(saved.get("meta", "{}"))}
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a foreign file
            aside = move_aside(self.model_path)
            log.warning(
                f"{self.model_path} is not a scene model ({type(exc).__name__}); "
                f"moved to {aside.name}, fitting again"
            )
            return None

    def save(self, state_dict: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        """Store a finished fit atomically (and drop its checkpoint). ``state_dict`` holds
        tensors (nested dicts of them, numbers, strings); ``meta`` JSON-able values."""
        text = json.dumps(meta or {}, indent=2)
        atomic_save({"state_dict": state_dict, "meta": text}, self.model_path)
        write_digest(self.model_path)
        with atomic_file(self.directory / self.META, "w") as fh:
            fh.write(text)
        self.checkpoint.unlink(missing_ok=True)

    def label(self, state: Any) -> str:
        """``<name>:<config hash>@<digest>`` of a model (a module or its state dict)."""
        return backend_label(f"{self.name}:{self.config_hash}", state_digest(state))

    def cached_label(self) -> str | None:
        """:meth:`label` of the cached fit read from its file, or None when absent."""
        if not self.exists():
            return None
        return checkpoint_label(f"{self.name}:{self.config_hash}", self.model_path)

    def clear(self) -> None:
        """Forget the fit and its checkpoint (``--force``)."""
        model_digest = self.model_path.with_name(self.MODEL + ".sha256")
        for path in (self.model_path, model_digest, self.checkpoint, self.directory / self.META):
            path.unlink(missing_ok=True)
