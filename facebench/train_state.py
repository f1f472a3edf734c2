"""Resumable training state of every trained model (through :func:`facebench.trainer.fit_loop`).

:meth:`TrainState.resume` loads a checkpoint (``weights_only=True``) into the model and
optimizer when its config hash matches, else starts fresh; :meth:`TrainState.save`
writes it atomically, with the step, the losses so far, the wall and CPU seconds
accumulated over every process that trained it, and ``extra`` (tensors, numbers and
strings the loop needs to continue exactly: generator states, schedulers, samplers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from facebench.paths import atomic_file


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` through :func:`facebench.paths.atomic_file`: no half-written checkpoint."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)


@dataclass
class TrainState:
    path: Path
    hash: str
    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)
    _t0: float = field(default_factory=time.perf_counter, repr=False)
    _c0: float = field(default_factory=time.process_time, repr=False)

    @classmethod
    def resume(
        cls, path: Path, config_hash: str, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> TrainState:
        """The saved state at ``path`` loaded into ``model``/``optimizer`` if it matches."""
        state = cls(path, config_hash)
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("hash") == config_hash:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                state.step = state.resumed_from = int(saved["step"])
                state.losses = list(saved["losses"])
                state.seconds = float(saved.get("seconds", 0.0))
                state.cpu_seconds = float(saved.get("cpu_seconds", 0.0))
                state.extra = dict(saved.get("extra", {}))
        state._t0, state._c0 = time.perf_counter(), time.process_time()
        return state

    def total_seconds(self) -> tuple[float, float]:
        """Wall and CPU seconds over every process, this one up to now included."""
        return (
            self.seconds + time.perf_counter() - self._t0,
            self.cpu_seconds + time.process_time() - self._c0,
        )

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step: int,
        extra: dict | None = None,
    ) -> None:
        wall, cpu = self.total_seconds()
        state = {
            "hash": self.hash,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "losses": self.losses,
            "seconds": wall,
            "cpu_seconds": cpu,
        }
        if extra:
            state["extra"] = extra
        atomic_save(state, self.path)
