"""The shared training loop: schedules equal the formulas trainers used; exact resume; progress."""

from __future__ import annotations

import math

import pytest
import torch

from facebench.imageops import mse_to_psnr, psnr
from facebench.trainer import (
    exp_decay,
    exp_decay_to_last,
    exp_gamma,
    fit_loop,
    seeded,
    set_lr,
    warmup_cosine,
)

STEPS = [0, 1, 2, 7, 49, 50, 99, 100, 101, 1499, 1500, 2000]


# The formulas as the trainers wrote them before the shared module (copies, not imports).
def manipulator_lr(lr, lr_final, steps, step):
    frac = min(step / max(steps, 1), 1.0)
    return lr * (lr_final / lr) ** frac


def edit_lr(lr, lr_final, steps, step):
    return lr * (lr_final / lr) ** (step / max(steps - 1, 1))


def synthclip_lr(lr, warmup, steps, step):
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def recognizer_lr(lr, steps, step):
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    frac = (step - warm) / max(1, steps - warm)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


@pytest.mark.parametrize("steps", [1, 2, 50, 1500])
def test_schedules_equal_the_former_formulas(steps):
    for step in STEPS:
        assert exp_decay(5e-3, 5e-4, step, steps) == manipulator_lr(5e-3, 5e-4, steps, step)
        assert exp_decay(1e-2, 1e-2, step, steps) == manipulator_lr(1e-2, 1e-2, steps, step)
        assert exp_decay_to_last(3e-2, 3e-3, step, steps) == edit_lr(3e-2, 3e-3, steps, step)
        assert warmup_cosine(1e-3, step, steps, 50, 0.05) == synthclip_lr(1e-3, 50, steps, step)
        assert warmup_cosine(2e-3, step, steps, max(1, steps // 20), 0.02) == recognizer_lr(
            2e-3, steps, step
        )
    # ExponentialLR's factor: NeRF's (lr_final / lr) and flame-nerf's ratio
    assert exp_gamma(5e-5 / 5e-4, steps) == (5e-5 / 5e-4) ** (1.0 / max(steps, 1))
    assert exp_gamma(0.1, steps) == 0.1 ** (1.0 / max(steps, 1))


def test_set_lr_scales_groups():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a], "lr_scale": 0.5}, {"params": [b]}], lr=1.0)
    set_lr(opt, 0.3)
    assert [g["lr"] for g in opt.param_groups] == [0.3 * 0.5, 0.3]


def test_psnr():
    a = torch.zeros(2, 4, 4, 3)
    b = torch.full((2, 4, 4, 3), 0.1)
    assert psnr(a, b) == -10.0 * math.log10(float((a - b).pow(2).mean()))
    assert psnr(a, a) == math.inf and mse_to_psnr(0.0) == math.inf
    assert mse_to_psnr(1e-2) == pytest.approx(20.0)


# --------------------------------------------------------------------------- the loop


class Boom(RuntimeError):
    pass


def _fit(ckpt, steps=12, every=3, die_at=None, calls=None, scheduler=True, stop_after=None):
    """A small regression fit: random batches from a generator, Adam, an exponential lr, and
    a running mean kept across steps (extra state the checkpoint must carry)."""
    with seeded(3):
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = (
        torch.optim.lr_scheduler.ExponentialLR(opt, exp_gamma(0.1, steps)) if scheduler else None
    )
    gen = torch.Generator().manual_seed(11)
    running = torch.zeros(1)
    w = torch.arange(4.0)

    def step(i: int) -> float:
        if die_at is not None and i == die_at:
            raise Boom
        x = torch.randn(16, 4, generator=gen)
        loss = (model(x).squeeze(-1) - x @ w).pow(2).mean() + 0.01 * running.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.mul_(0.9).add_(loss.detach())
        return float(loss.detach())

    def progress(task, done, total):
        if calls is not None:
            calls.append((task, done, total))

    state = fit_loop(
        step,
        steps,
        model=model,
        optimizer=opt,
        lr=None if scheduler else (lambda s: exp_decay(1e-2, 1e-3, s, steps)),
        scheduler=sched,
        generators={"batches": gen},
        checkpoint=ckpt,
        checkpoint_every=every,
        config_hash="h1",
        save_extra=lambda: {"running": running.clone()},
        load_extra=lambda extra: running.copy_(extra["running"]),
        progress=progress,
        task="toy fit",
        stop_after=stop_after,
    )
    return model, state


@pytest.mark.parametrize("scheduler", [True, False])
@pytest.mark.parametrize("die_at", [1, 5, 7, 11])
def test_killed_and_resumed_fit_is_bit_identical(tmp_path, die_at, scheduler):
    reference, ref_state = _fit(None, scheduler=scheduler)
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Boom):
        _fit(ckpt, die_at=die_at, scheduler=scheduler)
    assert ckpt.exists() == (die_at >= 3)
    calls: list = []
    resumed, state = _fit(ckpt, calls=calls, scheduler=scheduler)
    start = (die_at // 3) * 3
    assert state.resumed_from == start and state.step == 12
    assert [c[1] for c in calls] == list(range(start + 1, 13))
    assert all(c[0] == "toy fit" and c[2] == 12 for c in calls)
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert state.losses == ref_state.losses


def test_checkpoint_of_another_config_is_ignored(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Boom):
        _fit(ckpt, die_at=7)
    saved = torch.load(ckpt, weights_only=True)
    saved["hash"] = "other"
    torch.save(saved, ckpt)
    _, state = _fit(ckpt)
    assert state.resumed_from == 0


def test_stop_after_saves_and_the_next_run_finishes(tmp_path):
    reference, _ = _fit(None)
    ckpt = tmp_path / "checkpoint.pt"
    _, state = _fit(ckpt, every=0, stop_after=5)
    assert state.step == 5 and ckpt.exists()
    resumed, state = _fit(ckpt, every=0)
    assert state.resumed_from == 5
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
