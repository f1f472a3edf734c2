"""The metric convention: registered names, declared inputs, update_from/can_run, summary, cost."""

from __future__ import annotations

import inspect
import math
import time

import pytest
import torch

from facebench.errors import FacebenchError
from facebench.metrics import INPUTS, can_run, make_metric, measure_cost, update_from
from facebench.metrics.base import FacebenchMetric
from facebench.registry import METRICS

BUILTIN = {
    "clip_score": ("images", "prompts"),
    "clip_r_precision": ("images", "prompts"),
    "clip_directional": ("images", "neutral", "prompts"),
    "lpips": ("images", "neutral"),
    "gt_lpips": ("images", "target"),
    "psnr": ("images", "gt"),
    "ssim": ("images", "gt"),
    "gt_psnr": ("images", "target"),
    "locality": ("images", "neutral", "masks"),
    "identity": ("images", "neutral"),
    "mvic": ("images",),
    "fd_clip": ("images", "reference"),
}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_metric_declares_its_inputs(name):
    cls = METRICS.get(name).obj
    assert issubclass(cls, FacebenchMetric) and cls.name == name
    assert cls.requires == BUILTIN[name]
    assert set(cls.requires) | set(cls.optional) <= set(INPUTS)
    params = inspect.signature(cls.update).parameters
    assert all(k in params for k in (*cls.requires, *cls.optional))  # update_from can call it
    assert METRICS.get(name).capabilities == tuple(f"needs:{r}" for r in cls.requires)
    assert METRICS.get(name).description


def test_can_run_and_update_from_feed_only_declared_inputs():
    assert can_run("psnr", {"images", "gt", "prompts"})
    assert not can_run("gt_psnr", {"images", "gt"})
    m = make_metric("gt_psnr")
    x = torch.full((2, 3, 8, 8), 0.25)
    update_from(m, {"images": x, "target": x + 0.1, "prompts": ["a", "b"], "neutral": x})
    summary = m.summary()
    assert summary["value"] == pytest.approx(20.0, abs=1e-4)
    assert summary["std"] == pytest.approx(0.0, abs=1e-4) and summary["n"] == 2
    assert summary["backend"].startswith("torchmetrics") and summary["meaningful"] is True
    with pytest.raises(FacebenchError, match="needs target"):
        update_from(m, {"images": x})
    fresh = make_metric("psnr")
    assert math.isnan(fresh.summary()["value"]) and fresh.summary()["n"] == 0


def test_measure_cost_sees_time_and_memory():
    with measure_cost("cpu") as cost:
        block = torch.ones(64, 1024, 1024)  # 256 MiB, touched
        time.sleep(0.05)
        del block
    row = cost.as_row()
    assert row["time_s"] >= 0.05
    assert row["peak_mem_kind"] in {"rss_sampled", "rss_lifetime_peak"}
    assert row["peak_mem_mb"] >= 256


def test_every_registered_metric_uses_the_input_vocabulary():
    for entry in METRICS.entries():
        cls = entry.obj
        if isinstance(cls, type) and issubclass(cls, FacebenchMetric):
            assert set(cls.requires) | set(cls.optional) <= set(INPUTS), entry.name
