"""Prompt sets: shipped files by name, working-directory paths first, answers, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from facebench.datasets import load_prompts
from facebench.datasets.facs import AU_NAMES, EMOTIONS, expression_vector
from facebench.datasets.prompts import shipped_prompt_sets
from facebench.errors import FacebenchError


def test_shipped_sets_by_name():
    assert {"emotions.txt", "descriptive.txt"} <= set(shipped_prompt_sets())
    for name in ("emotions.txt", "emotions"):
        ps = load_prompts(name)
        assert ps.shipped and ps.name == "emotions" and len(ps) == 5
    ps = load_prompts("descriptive.txt")
    assert len(ps) >= 10 and ps.has_targets
    assert set(ps.targets) == set(ps.prompts)  # every shipped prompt has its answer


def test_emotion_targets_come_from_the_one_table():
    ps = load_prompts("emotions.txt")
    assert set(ps.emotions.values()) == {"happy", "surprised", "fearful", "angry", "sad"}
    for prompt in ps.prompts:
        emotion = ps.emotions[prompt]
        assert emotion in prompt or emotion[:4] in prompt
        assert ps.targets[prompt] == EMOTIONS[emotion]
        assert torch.equal(ps.target_vector(prompt), expression_vector(EMOTIONS[emotion]))
    assert ps.target_vector(ps.prompts[0]).shape == (len(AU_NAMES),)


def test_path_in_working_directory_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "emotions.txt").write_text("# mine\na grumpy face\n\na sleepy face\n")
    ps = load_prompts("emotions.txt")
    assert ps.prompts == ["a grumpy face", "a sleepy face"]
    assert ps.targets is None and not ps.shipped  # a user's file without answers still loads
    assert ps.target_vector("a grumpy face") is None
    (tmp_path / "emotions.targets.json").write_text(
        json.dumps(
            {
                "a grumpy face": {"AU4": 1.0, "emotion": "angry"},
                "a sleepy face": {"43": 0.8, "groups": ["brow_lower"]},
            }
        )
    )
    ps = load_prompts(str(tmp_path / "emotions.txt"))
    assert ps.targets["a grumpy face"]["AU4"] == 1.0 and ps.targets["a grumpy face"]["AU23"] == 1.0
    assert ps.targets["a sleepy face"] == {"AU43": 0.8, "AU4": 1.0}
    assert ps.emotions == {"a grumpy face": "angry"}
    # a name that is not a file here still finds the shipped set
    assert load_prompts("descriptive").shipped


@pytest.mark.parametrize(
    ("text", "targets", "message"),
    [
        ("", None, "no prompts"),
        ("# only a comment\n\n", None, "no prompts"),
        ("a face\n", "{not json", "invalid JSON"),
        ("a face\n", json.dumps({"a face": {"AU99": 1.0}}), "unknown action unit 'AU99'"),
        ("a face\n", json.dumps({"a face": {"AU12": 2.0}}), "must be a number in [0, 1]"),
        ("a face\n", json.dumps({"a face": {"emotion": "bored"}}), "unknown emotion 'bored'"),
        ("a face\n", json.dumps(["a face"]), "expected an object"),
    ],
)
def test_bad_prompt_files(tmp_path, text, targets, message):
    p = tmp_path / "mine.txt"
    p.write_text(text)
    if targets is not None:
        (tmp_path / "mine.targets.json").write_text(targets)
    with pytest.raises(FacebenchError) as info:
        load_prompts(str(p))
    msg = str(info.value)
    assert message in msg and "\n" not in msg
    assert "mine." in msg  # names the file


def test_missing_prompt_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FacebenchError, match="not found") as info:
        load_prompts("nothing.txt")
    assert "emotions.txt" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FacebenchError, match="directory"):
        load_prompts(str(tmp_path))
