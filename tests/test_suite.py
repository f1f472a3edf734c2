"""The evaluator (facebench/suite.py) on a tiny SynthFace scene: answers, masks, known scores."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from facebench.registry import DATASETS
from facebench.scene import load_scene
from facebench.suite import Evaluator, landmarks_tensor, scene_answers

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "synthface:tiny,n_frames=8,n_eval=2,resolution=32"
HAPPY, SAD = "a happy face", "a sad face"
# the regions the FACS units of each prototype may change (datasets/facs.py):
# happy = AU6 (cheeks, eyes) + AU12 (mouth); sad = AU1, AU4 (brows) + AU15 (mouth)
REGIONS = {HAPPY: ("cheeks", "eyes", "mouth"), SAD: ("brows", "mouth")}


def chw(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).clamp(0, 1)


@pytest.fixture(scope="module")
def scene():
    return load_scene(SPEC, cache=False)


@pytest.fixture(scope="module")
def emotions():
    return DATASETS.get("prompts").obj("emotions")


@pytest.fixture(scope="module")
def answers(scene, emotions):
    return scene_answers(scene, emotions)


@pytest.fixture(scope="module")
def neutral(scene):
    return scene.render_gt(None)


@pytest.fixture(scope="module")
def evaluator(scene, emotions, tiny_clip, neutral):
    suite = ["clip_score", "gt_psnr", "locality", "fd_clip"]
    return Evaluator(suite, scene, emotions, tiny_clip, neutral, torch.device("cpu"))


def test_answers_are_the_true_renders_of_each_prompts_target(scene, emotions, answers):
    assert list(answers) == emotions.prompts  # every shipped emotion prompt has a target
    for prompt, (target, mask, expression) in answers.items():
        want = emotions.target_vector(prompt, scene.au_names)
        assert torch.equal(expression, want)
        assert torch.equal(target, chw(scene.render_gt(want)))
        assert mask.shape == (2, 1, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("prompt", [HAPPY, SAD])
def test_masks_cover_exactly_the_regions_of_the_targets_units(scene, emotions, answers, prompt):
    expression = emotions.target_vector(prompt, scene.au_names)
    before, after = scene.gt_masks(None), scene.gt_masks(expression)
    want = torch.zeros(2, 32, 32, dtype=torch.bool)
    for region in REGIONS[prompt]:
        want |= before[region] | after[region]
    mask = answers[prompt][1][:, 0].bool()
    assert torch.equal(mask, want) and 0 < mask.float().mean() < 0.5
    assert not (mask & before["background"] & after["background"]).any()


def test_the_true_target_scores_perfectly_and_the_neutral_face_does_not(
    evaluator, answers, neutral
):
    target = answers[HAPPY][0].permute(0, 2, 3, 1)
    values, backends = evaluator.score(HAPPY, target)
    assert values["gt_psnr"] == float("inf")  # the target against itself
    assert values["locality"] < 1e-3  # a unit changes nothing outside its regions
    assert backends["meaningful"] == "no"  # tiny-random CLIP
    values, _ = evaluator.score(HAPPY, neutral)
    assert values["locality"] == 0.0  # nothing changed at all
    assert 20 < values["gt_psnr"] < 45  # the smile is missing
    # the happy face scored as "sad": the cheeks and eyes changed outside sad's regions
    values, _ = evaluator.score(SAD, target)
    assert values["locality"] > 10 * evaluator.score(HAPPY, target)[0]["locality"]
    assert values["gt_psnr"] < 40


def test_a_metric_without_its_inputs_is_skipped_with_a_note(
    scene, evaluator, tiny_clip, neutral, tmp_path
):
    assert "fd_clip skipped: this scene/prompt set cannot supply its inputs" in evaluator.notes
    assert set(evaluator.metrics) == {"clip_score", "gt_psnr", "locality"}
    prompts = tmp_path / "mine.txt"
    prompts.write_text("a happy face\n")  # no mine.targets.json: no answers
    mine = DATASETS.get("prompts").obj(str(prompts))
    suite = ["clip_score", "gt_psnr", "locality"]
    ev = Evaluator(suite, scene, mine, tiny_clip, neutral, torch.device("cpu"))
    assert ev.notes == [
        "ground-truth metrics skipped: prompt set 'mine' has no target answers",
        "gt_psnr skipped: this scene/prompt set cannot supply its inputs",
        "locality skipped: this scene/prompt set cannot supply its inputs",
    ]
    values, _ = ev.score(HAPPY, neutral)
    assert set(values) == {"clip_score", "clip_score_std"}
    capture = replace(scene, gt=None)  # a real capture: no ground truth at all
    ev = Evaluator(["gt_psnr"], capture, mine, tiny_clip, neutral, torch.device("cpu"))
    assert ev.notes[0] == "ground-truth metrics skipped: the scene has no ground truth"


def test_landmarks_are_five_points_with_each_pair_image_left_first(scene):
    points = scene.gt_landmarks()
    lm = landmarks_tensor(points, scene.gt.landmark_names)
    assert lm.shape == (2, 5, 2)
    assert scene.gt.landmark_names == (
        "eye_left",
        "eye_right",
        "nose_tip",
        "mouth_left",
        "mouth_right",
    )
    for view in range(2):
        assert lm[view, 0, 0] < lm[view, 1, 0] and lm[view, 3, 0] < lm[view, 4, 0]
        torch.testing.assert_close(lm[view, 2], points["nose_tip"][view].float())
        eyes = {tuple(points[n][view].tolist()) for n in ("eye_left", "eye_right")}
        assert {tuple(lm[view, i].tolist()) for i in (0, 1)} == eyes


def test_rows_record_the_unedited_face_against_the_same_answer(evaluator, answers, neutral):
    """``gt_psnr_neutral`` is the neutral render's PSNR against the prompt's target,
    whatever the edit, so a row carries its own gain."""
    from facebench.imageops import psnr

    target = answers[HAPPY][0]
    views = chw(neutral)
    want = sum(psnr(views[i], target[i]) for i in range(len(target))) / len(target)
    edited, _ = evaluator.score(HAPPY, target.permute(0, 2, 3, 1))
    unedited, _ = evaluator.score(HAPPY, neutral)
    assert edited["gt_psnr_neutral"] == pytest.approx(want, rel=1e-5)
    assert unedited["gt_psnr_neutral"] == unedited["gt_psnr"]  # no edit, no gain
    assert edited["gt_psnr"] > edited["gt_psnr_neutral"]  # the target itself gains
    # metrics that do not score against an answer have no such column
    assert "locality_neutral" not in edited and "clip_score_neutral" not in edited
