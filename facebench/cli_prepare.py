"""``facebench prepare``: write SynthFace scenes as captures, and check captures.

Mounted in :mod:`facebench.cli` as ``app.add_typer(prepare_app, name="prepare")``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from facebench.cli_progress import command_progress
from facebench.errors import FacebenchError

prepare_app = typer.Typer(
    name="prepare",
    help="Prepare datasets and offline models: write SynthFace scenes as Nerfies/HyperNeRF "
    "or transforms.json captures, import face videos as captures, check captures, train "
    "SynthCLIP and the recognizer.\n\n"
    "Examples:\n\n"
    "  facebench prepare synthface --name default --out scene/ --format nerfies\n\n"
    "  facebench prepare video me.mp4 --out captures/me\n\n"
    "  facebench prepare synthclip",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


class CaptureFormat(str, Enum):
    nerfies = "nerfies"
    transforms = "transforms"


def _instrument(name: str):
    """The registered instrument ``name`` (:data:`facebench.registry.INSTRUMENTS`)."""
    from facebench.registry import INSTRUMENTS

    return INSTRUMENTS.get(name).obj


@prepare_app.command("synthface")
def synthface_cmd(
    name: str = typer.Option(
        "default",
        "--name",
        help="Scene preset (default, tiny, hires, alt), optionally with ,key=value overrides.",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (created if missing)."),
    fmt: CaptureFormat = typer.Option(
        CaptureFormat.nerfies, "--format", help="Capture layout to write."
    ),
    resolution: int | None = typer.Option(
        None, "--resolution", min=32, max=512, help="Image size in pixels (64 to 256 recommended)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed for camera path and expressions."),
    frames: int | None = typer.Option(None, "--frames", min=8, help="Number of frames."),
    force: bool = typer.Option(False, "--force", help="Allow writing into a non-empty directory."),
) -> None:
    """Write one SynthFace scene as a capture (images, cameras, split, expressions, masks).

    Examples:

      facebench prepare synthface --name default --out captures/synth --format nerfies

      facebench prepare synthface --name tiny --out /tmp/tf --format transforms --resolution 96

      facebench prepare synthface --name "alt,yaw_deg=30" --out captures/alt --seed 3

    The capture loads like a real one (facebench prepare check captures/synth), and the
    SynthFace ground truth comes back with it.
    """
    from facebench.registry import DATASETS

    if out.exists() and not out.is_dir():
        raise FacebenchError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FacebenchError(f"{out}: directory is not empty (use --force to write into it)")
    synthface, capture = DATASETS.get("synthface").obj, DATASETS.get(fmt.value).obj
    rendering, writing = f"rendering synthface:{name}", f"writing {fmt.value}"
    with command_progress() as progress:
        scene = synthface(
            name,
            resolution=resolution,
            seed=seed,
            n_frames=frames,
            progress=lambda done, total: progress(rendering, done, total),
        )
        progress(rendering, scene.n_frames, scene.n_frames)
        capture.write(scene, out, progress=lambda done, total: progress(writing, done, total))
    cached = " (from cache)" if scene.meta.get("cache_hit") else ""
    typer.echo(f"wrote {scene.summary()}{cached} -> {out} [{fmt.value}]")


@prepare_app.command("video")
def video_cmd(
    video: Path = typer.Argument(..., help="A video file (anything ffmpeg reads: mp4, mov, ...)."),
    out: Path = typer.Option(..., "--out", help="Capture directory to create (must be empty)."),
    fps: float | None = typer.Option(None, "--fps", min=0.1, help="Frames per second to keep."),
    size: int = typer.Option(256, "--size", min=32, max=1024, help="Output image size (pixels)."),
    max_frames: int = typer.Option(300, "--max-frames", min=2, help="At most this many frames."),
    static_camera: bool = typer.Option(
        False,
        "--static-camera",
        help="One fixed camera (tripod, dashboard) where the head moves; no COLMAP.",
    ),
    focal: float | None = typer.Option(
        None,
        "--focal",
        min=0.05,
        help="Focal length / the frame's long side, when known (kept fixed); default: "
        "estimated by COLMAP, or 0.72 (a phone's main lens) with --static-camera.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="COLMAP's random seed (with the thread count it fixes the poses)."
    ),
) -> None:
    """Import a face video as a Nerfies capture: frames, poses, face crop, 68 landmarks.

    Camera poses come from COLMAP structure-from-motion (pycolmap) for a moving camera, or
    one shared camera with --static-camera. A video that cannot be read, shows no face or
    whose poses fail gives one line and exit code 2, and writes nothing. Runs load the
    capture with --scene nerfies:DIR.

    Examples:

      facebench prepare video me.mp4 --out captures/me --fps 5

      facebench prepare video dashboard.mov --out captures/dash --static-camera

      facebench prepare video clip.mov --out captures/clip --focal 1.2 --size 192
    """
    from facebench.registry import DATASETS

    importer = DATASETS.get("video").obj
    with command_progress() as progress:
        scene = importer(
            video,
            out,
            fps=fps,
            size=size,
            max_frames=max_frames,
            static_camera=static_camera,
            focal=focal,
            seed=seed,
            progress=progress,
        )
    typer.echo(f"wrote {scene.summary()} -> {out} [nerfies]")


@prepare_app.command("check")
def check_cmd(
    spec: str = typer.Argument(
        ..., help="A capture directory, transforms.json, or synthface:<preset>."
    ),
) -> None:
    """Load a scene or capture and print a summary; a broken capture fails with one line.

    Examples:

      facebench prepare check captures/me

      facebench prepare check captures/me/transforms.json

      facebench prepare check synthface:tiny
    """
    from facebench.scene import load_scene

    scene = load_scene(spec)
    typer.echo(scene.summary())


def _prepare_command(name: str, what: str, about: str) -> None:
    """Register ``facebench prepare NAME``: prepare the instrument ``name`` (train and cache it),
    then say where its checkpoint (``what``) and quality figures are. ``about`` is the help
    text's middle paragraph."""

    def command(
        retrain: bool = typer.Option(
            False,
            "--retrain",
            help="Train from scratch into the cache and say whether the weights digest "
            "matches the shipped one (runs keep the shipped weights unless asked by digest).",
        ),
    ) -> None:
        instrument = _instrument(name)
        with command_progress() as progress:
            path = instrument.prepare(progress=progress, force=retrain)
        typer.echo(instrument.describe(path))

    command.__name__ = f"{name}_cmd"
    command.__doc__ = (
        f"{about}\n\nExamples:\n\n  facebench prepare {name}\n\n"
        f"  facebench prepare {name} --retrain\n"
    )
    prepare_app.command(name)(command)


_prepare_command(
    "synthclip",
    "SynthCLIP",
    "SynthCLIP (a small open_clip model trained on SynthFace renders): the shipped weights, "
    "or --retrain to train it here from scratch.\n\n"
    "Valid for SynthFace scenes only; not a substitute for CLIP on real photos.\n"
    "A retrain takes about 45 minutes on 2 idle CPU cores; an interrupted one resumes.",
)
_prepare_command(
    "recognizer",
    "recognizer",
    "The SynthFace expression recognizer (action units + emotion): the shipped weights, "
    "or --retrain to train it here from scratch.\n\n"
    "Used by the expression_r_precision and au_error metrics on SynthFace scenes.",
)
_prepare_command(
    "attributes",
    "attribute classifier",
    "Train the SynthFace identity-attribute classifier (hair, eyes, skin, face shape) and "
    "cache it.\n\nUsed by the attribute_accuracy metric of the generation suite.",
)
