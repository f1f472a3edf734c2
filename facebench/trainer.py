"""The training loop every trained model shares: learning-rate schedules and :func:`fit_loop`.

Schedules are plain functions of the step, each the exact formula one trainer has
always used, so learning rates (and weights) stay bit-identical:

* :func:`exp_decay` -- ``lr`` to ``lr_final`` exponentially, reached at ``steps``;
* :func:`exp_decay_to_last` -- the same, reached at the last step (``steps - 1``);
* :func:`exp_gamma` -- the per-step factor of :class:`torch.optim.lr_scheduler.ExponentialLR`
  (a running product, which differs from :func:`exp_decay` in the last bits);
* :func:`warmup_cosine` -- linear warmup, then cosine decay to ``floor`` of the peak.

:func:`fit_loop` runs steps ``[start, steps)`` of a fit: it sets the learning rate,
calls the step, steps a torch scheduler, reports progress, and checkpoints through
:class:`~facebench.train_state.TrainState` (model, optimizer, scheduler, generators and
whatever else the caller adds) so that a fit killed at any step and run again
continues to bit-identical weights. :func:`seeded` builds models from a seed without
touching the global random state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facebench.threads import env_threads
from facebench.train_state import TrainState

__all__ = [
    "Progress",
    "exp_decay",
    "exp_decay_to_last",
    "exp_gamma",
    "fit_loop",
    "seeded",
    "set_lr",
    "warmup_cosine",
]

Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- schedules


def exp_decay(lr: float, lr_final: float, step: int, steps: int) -> float:
    """``lr * (lr_final / lr) ** (step / steps)``, held at ``lr_final`` from ``steps`` on."""
    frac = min(step / max(steps, 1), 1.0)
    return lr * (lr_final / lr) ** frac


def exp_decay_to_last(lr: float, lr_final: float, step: int, steps: int) -> float:
    """``lr * (lr_final / lr) ** (step / (steps - 1))``: ``lr_final`` at the last step."""
    return lr * (lr_final / lr) ** (step / max(steps - 1, 1))


def exp_gamma(ratio: float, steps: int) -> float:
    """The factor per step that scales a learning rate by ``ratio`` over ``steps`` steps
    (for :class:`torch.optim.lr_scheduler.ExponentialLR`)."""
    return ratio ** (1.0 / max(steps, 1))


def warmup_cosine(lr: float, step: int, steps: int, warmup: int, floor: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay from ``lr`` to ``floor * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr`` times its ``lr_scale`` (if any)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block (e.g. a model's construction) with torch's CPU generator seeded by
    ``seed``, restoring the global random state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- the loop


def fit_loop(
    step_fn: Callable[[int], float | None],
    steps: int,
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: Callable[[int], float] | None = None,
    scheduler: Any | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 0,
    config_hash: str = "",
    save_extra: Callable[[], dict[str, Any]] | None = None,
    load_extra: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
    task: str = "fit",
    stop_after: int | None = None,
    threads: tuple[str, int] | None = None,
    save_last: bool = False,
    report_start: bool = False,
) -> TrainState:
    """Run ``step_fn(step)`` for ``step`` in ``[start, end)``; returns the :class:`TrainState`.

    ``start`` is 0, or the step of ``checkpoint`` when it exists and was written for
    ``config_hash``: then the model, optimizer, ``scheduler``, ``generators`` and
    ``load_extra``'s share are restored first. ``end`` is ``steps`` (or ``stop_after``
    when smaller). Before each step the optimizer's learning rate is set to
    ``lr(step)`` (see :func:`set_lr`); after it ``scheduler.step()`` runs, a float that
    ``step_fn`` returns is appended to ``state.losses``, ``progress(task, done, steps)``
    is called, and every ``checkpoint_every`` steps short of ``steps`` (and at a
    ``stop_after`` stop) the state is saved with ``save_extra()``'s tensors; with
    ``save_last`` also at the last step. ``report_start`` calls ``progress(task, start,
    steps)`` before the first step.
    ``model`` and ``optimizer`` are needed for a checkpoint (and ``optimizer`` for ``lr``).
    ``threads=(variable, default)`` runs the loop with that many torch threads
    (:func:`facebench.threads.env_threads`).
    """
    gens = dict(generators or {})
    if (lr is not None or checkpoint is not None) and optimizer is None:
        raise ValueError("fit_loop: lr and checkpoint need the optimizer")
    if checkpoint is not None:
        if model is None:
            raise ValueError("fit_loop: a checkpoint needs the model")
        state = TrainState.resume(Path(checkpoint), config_hash, model, optimizer)
    else:
        state = TrainState(Path(), config_hash)
    if state.step > 0:
        extra = state.extra
        if scheduler is not None:
            scheduler.load_state_dict(extra["scheduler"])
        for name, gen in gens.items():
            gen.set_state(extra["generators"][name].cpu())
        if load_extra is not None:
            load_extra(extra.get("user", {}))

    def save(done: int) -> None:
        assert model is not None and optimizer is not None
        extra: dict[str, Any] = {}
        if gens:  # no extra at all when there is nothing to keep beyond model and optimizer
            extra["generators"] = {k: g.get_state() for k, g in gens.items()}
        if scheduler is not None:
            extra["scheduler"] = scheduler.state_dict()
        if save_extra is not None:
            extra["user"] = save_extra()
        state.save(model, optimizer, done, extra)

    end = steps if stop_after is None else min(steps, stop_after)
    if report_start and progress is not None:
        progress(task, state.step, steps)
    with env_threads(*threads) if threads is not None else nullcontext():
        for step in range(state.step, end):
            if lr is not None:
                set_lr(optimizer, lr(step))
            loss = step_fn(step)
            if scheduler is not None:
                scheduler.step()
            if loss is not None:
                state.losses.append(float(loss))
            done = state.step = step + 1
            if progress is not None:
                progress(task, done, steps)
            if checkpoint is not None and (done < steps or save_last):
                if (checkpoint_every > 0 and done % checkpoint_every == 0) or done == end:
                    save(done)
    return state
