"""Metric throughput at 128 px: images per second of each registered metric (``nox -s bench``).

Each benchmark scores one batch of ``BATCH`` 128x128 face images (scikit-image's
astronaut, jittered) -- ``reset``, ``update`` with the inputs the metric declares,
``compute`` -- and reports ``images_per_second`` (median wall time),
``images_per_cpu_second`` and the model ``backend`` in ``extra_info``. CLIP
metrics use SynthCLIP when it is prepared, else the tiny random test CLIP
(``FACEBENCH_BENCH_CLIP`` overrides): the figure is the metric's overhead around
that model, not ViT-B/32's speed. Metrics whose weights or packages are missing
are skipped with the reason.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from facebench.weights import MissingWeightsError

BATCH = 8
SIZE = 128
THREADS = int(os.environ.get("FACEBENCH_BENCH_THREADS", "1"))
"""Torch threads: 1 by default, so figures are per core and stable on a shared machine."""
# astronaut's eye centres, nose tip and mouth corners in the 512 px image
LANDMARKS_512 = np.array(
    [[203.2, 101.5], [246.5, 104.2], [225.0, 127.0], [201.0, 139.0], [246.0, 141.0]]
)


def _clip_spec() -> str:
    if os.environ.get("FACEBENCH_BENCH_CLIP"):
        return os.environ["FACEBENCH_BENCH_CLIP"]
    from facebench.metrics.instruments.synthclip import synthclip_checkpoint_path

    return "synthclip" if synthclip_checkpoint_path() is not None else "tiny-random"


@pytest.fixture(scope="module")
def batch() -> dict:
    from skimage import data

    img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255
    img = torch.nn.functional.interpolate(img, size=(SIZE, SIZE), mode="area")
    g = torch.Generator().manual_seed(0)
    images = (img + 0.03 * torch.randn(BATCH, 3, SIZE, SIZE, generator=g)).clamp(0, 1)
    neutral = img.expand(BATCH, -1, -1, -1).contiguous()
    masks = torch.zeros(BATCH, 1, SIZE, SIZE)
    masks[..., SIZE // 2 :, :] = 1
    landmarks = torch.tensor(LANDMARKS_512 * SIZE / 512).float()[None].expand(BATCH, -1, -1)
    prompts = ["a smiling face", "a sad face", "a surprised face", "an angry face"] * (BATCH // 4)
    return {
        "images": images,
        "neutral": neutral,
        "target": neutral,
        "gt": neutral,
        "masks": masks,
        "reference": neutral.flip(-1),
        "prompts": prompts,
        "landmarks": landmarks,
        "neutral_landmarks": landmarks,
    }


def _kwargs(name: str) -> dict:
    if name in {"clip_score", "clip_r_precision", "clip_directional", "fd_clip"}:
        return {"clip": _clip_spec(), "device": "cpu"}
    if name in {"identity", "mvic"}:
        return {"backend": os.environ.get("FACEBENCH_BENCH_IDENTITY", "auto")}
    return {}


METRIC_NAMES = [
    "psnr",
    "ssim",
    "gt_psnr",
    "locality",
    "lpips",
    "gt_lpips",
    "clip_score",
    "clip_r_precision",
    "clip_directional",
    "fd_clip",
    "identity",
    "mvic",
]


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_throughput(benchmark, batch, name):
    from facebench.metrics import make_metric, update_from

    torch.set_num_threads(THREADS)
    try:
        metric = make_metric(name, **_kwargs(name))
    except MissingWeightsError as exc:
        pytest.skip(str(exc))

    cpu: list[float] = []

    def run() -> None:
        start = time.process_time()
        metric.reset()
        update_from(metric, batch)
        metric.compute()
        cpu.append(time.process_time() - start)

    run()  # warm-up: model caches, text embeddings, allocator
    cpu.clear()
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=0)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(
        {
            "images_per_second": round(BATCH / seconds, 2),
            # per CPU-second of this process (all threads): robust to other load on the machine
            "images_per_cpu_second": round(BATCH / (sum(cpu) / len(cpu)), 2),
            "batch": BATCH,
            "size": SIZE,
            "backend": metric.backend,
            "meaningful": metric.meaningful,
            "threads": torch.get_num_threads(),
        }
    )
