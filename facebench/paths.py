"""Where facebench keeps caches, checkpoints and downloaded or trained model weights."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of facebench's cache: ``$FACEBENCH_CACHE`` or ``$XDG_CACHE_HOME/facebench``."""
    env = os.environ.get("FACEBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "facebench"


def torch_home() -> Path:
    """torch's cache root (``$TORCH_HOME``, default ``~/.cache/torch``)."""
    import torch.hub

    return Path(torch.hub.get_dir()).parent
