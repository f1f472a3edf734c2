"""A realism check of SynthFace: the FER2013 recognizer's confusion matrix on its true renders.

For each SynthFace scene and each emotion prompt of a prompt set (plus the unedited,
neutral face), the scene's ground truth is rendered at its held-out cameras with the
prompt's target expression and read by the FER2013 recognizer. Rows: the emotion asked
for; columns: the emotion read. A recognizer trained on real photos that reads SynthFace's
expressions as asked says SynthFace's expressions look like real ones.

    python -m facebench.metrics.instruments.fer2013.evaluate synthface:default synthface:alt
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from facebench.metrics.instruments.fer2013.recognizer import FER2013Recognizer, load_fer2013


def synthface_confusion(
    scenes: Sequence[str],
    prompts: str = "emotions.txt",
    recognizer: FER2013Recognizer | None = None,
) -> dict[str, Any]:
    """Counts ``{asked: {read: n}}`` over ``scenes``' held-out views, with the face-detection
    rate and each row's accuracy (the expression R-precision of the true render)."""
    from facebench.datasets.prompts import load_prompts
    from facebench.scene import load_scene

    rec = recognizer or load_fer2013()
    prompt_set = load_prompts(prompts)
    counts: dict[str, dict[str, int]] = {}
    detected = total = 0
    for spec in scenes:
        scene = load_scene(spec)
        asked = [("neutral", torch.zeros(len(scene.au_names)))]
        for prompt in prompt_set.prompts:
            emotion = prompt_set.emotions.get(prompt)
            target = prompt_set.target_vector(prompt, scene.au_names)
            if emotion and target is not None:
                asked.append((emotion, target))
        for emotion, target in asked:
            with torch.no_grad():
                images = scene.render_gt(target, scene.eval_cameras)
            read = rec.recognize(images).emotion
            detected += sum(rec.last_detected)
            total += len(read)
            row = counts.setdefault(emotion, dict.fromkeys(rec.emotions, 0))
            for r in read:
                row[r] += 1
    accuracy = {a: row[a] / max(sum(row.values()), 1) for a, row in counts.items()}
    return {
        "backend": rec.backend,
        "scenes": list(scenes),
        "prompts": prompts,
        "counts": counts,
        "accuracy": accuracy,
        "face_detection_rate": detected / max(total, 1),
    }


def confusion_markdown(result: dict[str, Any]) -> str:
    """The confusion matrix as a markdown table (rows: asked; columns: read; last: accuracy)."""
    counts = result["counts"]
    classes = list(next(iter(counts.values())))
    lines = [
        "| asked \\ read | " + " | ".join(classes) + " | accuracy |",
        "|---" * (len(classes) + 2) + "|",
    ]
    for asked, row in counts.items():
        cells = " | ".join(str(row[c]) for c in classes)
        lines.append(f"| {asked} | {cells} | {result['accuracy'][asked]:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    scenes = list(argv if argv is not None else sys.argv[1:]) or ["synthface:default"]
    result = synthface_confusion(scenes)
    print(f"{result['backend']} on {', '.join(scenes)} ({result['prompts']}, held-out views)")
    print(f"faces detected: {result['face_detection_rate']:.1%}")
    print(confusion_markdown(result))


if __name__ == "__main__":
    main()
