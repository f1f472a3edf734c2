"""``facebench report``: the page's table, images and plots, read back without and with a browser.

The results folder is made here (rows through the results store, renders through the
runner's own artifact writers), so these tests need no fit and no edit.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.artifacts import grid, save_grid, save_turntable
from facebench.cli import main
from facebench.errors import FacebenchError
from facebench.report import render_stem, target_image, write_report
from facebench.results import ResultStore

PROMPTS = ["a happy face", "a sad face"]
SCENE, PROMPT_SET = "synthface:tiny", "two"
# (method, variant, overrides): pac's oracle rows are the oracle images of pac's row
GROUPS = [("pac", "full", ""), ("pac", "oracle", ""), ("nerf-ft", "full", "edit.steps=3")]


def _views(value: float, n: int = 3) -> torch.Tensor:
    """``n`` 8x8 views: view i has red ``value`` and green ``i / n`` (tells crops apart)."""
    images = torch.zeros(n, 8, 8, 3)
    images[..., 0] = value
    images[..., 1] = torch.arange(n).float()[:, None, None] / n
    return images


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A run folder: 3 groups x 2 prompts x 2 seeds, with renders and ground-truth targets."""
    out = tmp_path_factory.mktemp("report")
    store = ResultStore(out / "leaderboard.csv")
    neutral = _views(0.0)
    for g, (method, variant, overrides) in enumerate(GROUPS):
        for p, prompt in enumerate(PROMPTS):
            for seed in range(2):
                row = {
                    "method": method,
                    "variant": variant,
                    "scene": SCENE,
                    "prompt_set": PROMPT_SET,
                    "prompt": prompt,
                    "seed": seed,
                    "config_hash": f"hash{g}",
                    **({"overrides": overrides} if overrides else {}),
                    "clip_r_precision": float((p + seed + g) % 2),
                    "expression_r_precision": 0.2 * g + 0.1 * seed,
                    "lpips": 0.1 + 0.05 * g,
                    "gt_psnr": 20.0 + g + seed,
                    "time_s": 1.0 + g + 0.5 * p,
                    "backend_clip": "open_clip:tiny@abc",
                }
                store.append(row)
                edit = _views(0.25 * (g + 1) + 0.1 * p)
                stem = render_stem(out, {**row, "overrides": overrides})
                save_grid(stem.with_suffix(".png"), [neutral, edit])
                save_turntable(stem.with_suffix(".gif"), edit)
    for p, prompt in enumerate(PROMPTS):
        save_grid(target_image(out, SCENE, PROMPT_SET, prompt), [_views(0.9 - 0.1 * p)])
    return out


class _Page(HTMLParser):
    """The report's table rows, images (class, src) and plot figures."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.figures: list[str] = []
        self.groups = self.method_rows = self.prompts = 0
        self.headers: list[str] = []
        self.missing = 0
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "img":
            self.images.append((a.get("class", ""), a.get("src", "")))
        elif tag == "figure":
            self.figures.append(a["id"])
        elif tag == "tr" and "group" in classes:
            self.groups += 1
        elif tag == "tr" and "method-row" in classes:
            self.method_rows += 1
        elif tag == "h3" and "prompt" in classes:
            self.prompts += 1
        elif tag == "span" and "missing" in classes:
            self.missing += 1
        self._in_th = tag == "th" and "sortable" in classes

    def handle_data(self, data):
        if self._in_th:
            self.headers.append(data.strip())
            self._in_th = False


def _decode(src: str) -> Image.Image:
    assert src.startswith("data:image/"), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def test_page_has_the_leaderboard_the_images_and_the_plots(results):
    page = _Page()
    page.feed(write_report(results).read_text())
    assert page.groups == len(GROUPS)  # one leaderboard row per group, as `leaderboard` groups
    assert {"method", "variant", "gt_psnr", "n", "backend_clip"} <= set(page.headers)
    assert page.figures == ["plot-metrics", "plot-tradeoff", "plot-time"]
    # per prompt one row per method; the oracle variant is pac's oracle column, not a row
    assert page.prompts == len(PROMPTS)
    assert page.method_rows == len(PROMPTS) * 2
    kinds = [k for k, _ in page.images]
    assert kinds.count("plot") == 3
    for kind in ("neutral", "edit", "target", "turntable"):
        assert kinds.count(kind) == len(PROMPTS) * 2, kind
    assert kinds.count("oracle") == len(PROMPTS)  # pac has oracle rows, nerf-ft none
    assert page.missing == len(PROMPTS)  # nerf-ft's oracle cell says none
    for kind, src in page.images:
        assert _decode(src).size[0] > 0, kind
    assert "http://" not in page.rawdata and "https://" not in page.rawdata  # no network


def test_image_strips_are_the_runner_renders(results):
    """Neutral and edit are the grid's two rows; the target is the saved true target."""
    page = _Page()
    page.feed(write_report(results).read_text())
    by_kind: dict[str, list[np.ndarray]] = {}
    for kind, src in page.images:
        by_kind.setdefault(kind, []).append(np.asarray(_decode(src).convert("RGB")))
    first_prompt_pac_seed0 = [_views(0.0), _views(0.25)]  # (neutral, edit) of pac full, prompt 0
    assert np.array_equal(by_kind["neutral"][0], grid(first_prompt_pac_seed0[:1]))
    assert np.array_equal(by_kind["edit"][0], grid(first_prompt_pac_seed0[1:]))
    assert np.array_equal(by_kind["target"][0], grid([_views(0.9)]))
    assert np.array_equal(by_kind["oracle"][0], grid([_views(0.5)]))  # pac oracle, prompt 0
    assert np.array_equal(by_kind["edit"][1], grid([_views(0.75)]))  # nerf-ft (its --set dir)


def test_linked_report_points_at_files_beside_it(results, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    path = write_report(copy, embed=False)
    page = _Page()
    page.feed(path.read_text())
    assert page.images and all(not src.startswith("data:") for _, src in page.images)
    for _, src in page.images:
        assert (copy / src).is_file(), src


def test_no_results_is_one_line(tmp_path, capsys):
    with pytest.raises(FacebenchError, match="no such results file"):
        write_report(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facebench: error:") and "no such" in err[0]
    assert not (tmp_path / "report.html").exists()


def _chromium() -> str | None:
    """Debian's chromium; installed here when missing and allowed (root, apt-get, and
    ``FACEBENCH_INSTALL_CHROMIUM=1``: the nox session sets it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.environ.get("FACEBENCH_INSTALL_CHROMIUM") != "1":
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
    return shutil.which("chromium")


def test_page_loads_in_headless_chromium(results, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no chromium (apt-get install chromium, or FACEBENCH_INSTALL_CHROMIUM=1 as root)"
        )
    page = write_report(results)
    n_images = len([1 for _ in _iter_imgs(page.read_text())])
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no script errors, no failed loads, nothing logged
    # the page's own check after load: every image decoded
    assert f'data-images-loaded="{n_images}/{n_images}"' in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1400,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as im:
        assert im.size == (1400, 2400)
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # drew something, not blank


def _iter_imgs(html: str):
    page = _Page()
    page.feed(html)
    return page.images


def test_plots_take_metric_columns_read_as_text():
    # a real capture's run can leave a metric all NaN or text in the CSV: it plots as NaN
    import pandas as pd

    from facebench.report_plots import plots

    rows = pd.DataFrame(
        {
            "method": ["a", "b"],
            "identity": ["nan", "n/a"],
            "lpips": ["0.1", "0.2"],
            "gt_psnr": [20.0, 21.0],
            "time_s": [1.0, 2.0],
            "expression_r_precision": [0.5, 0.6],
        }
    )
    ids = [p[0] for p in plots(rows, lambda r: r["method"])]
    assert ids == ["plot-metrics", "plot-tradeoff", "plot-time"]
