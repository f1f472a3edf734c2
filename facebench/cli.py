"""The ``facebench`` command line (Typer + rich).

Every command is thin: it parses options and calls library code. Errors the
user can fix (:class:`~facebench.errors.FacebenchError`, bad options) are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from facebench import __version__
from facebench.cli_progress import command_progress, set_quiet
from facebench.errors import FacebenchError
from facebench.sweep_cli import register_commands, report_line

try:  # typer >= 0.20 vendors its own copy of click
    from typer._click import exceptions as _typer_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _typer_click = click.exceptions


def _both(name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``name`` from click and from typer's vendored click, where defined."""
    found = (getattr(m, name, None) for m in (click.exceptions, _typer_click, typer))
    return tuple({c for c in found if isinstance(c, type)})


app = typer.Typer(
    name="facebench",
    help="Benchmark text-driven 3D face manipulation and generation methods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# pipes and CI logs get a readable width for the result tables (rich defaults to 80 there)
console = Console(width=None if sys.stdout.isatty() else 200)


def _mount_subcommands() -> None:
    from facebench.cli_prepare import prepare_app
    from facebench.cli_weights import weights_app

    app.add_typer(weights_app, name="weights")
    app.add_typer(prepare_app, name="prepare")


_mount_subcommands()


def _version(value: bool) -> None:
    if value:
        console.print(f"facebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="No progress output (before the command: facebench --quiet run ...). Without it, "
        "progress is rich bars on a terminal and plain lines when stderr is a file or pipe.",
    ),
) -> None:
    """Benchmark text-driven 3D face manipulation and generation methods.

    Examples:

      facebench methods

      facebench doctor

      facebench run --method pac --prompts emotions.txt

      facebench --quiet run --method pac --prompts emotions.txt
    """
    set_quiet(quiet)


def _registry_table(kind: str) -> Table:
    from facebench.registry import DATASETS, METHODS, METRICS

    registry = {"methods": METHODS, "metrics": METRICS, "datasets": DATASETS}[kind]
    table = Table(title=f"facebench {kind}")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("capabilities")
    table.add_column("source", style="dim")
    for entry in registry.entries():
        table.add_row(entry.name, entry.description, ", ".join(entry.capabilities), entry.source)
    return table


def _list_command(kind: str, summary: str) -> None:
    """Register ``facebench KIND``: print the registered plugins of ``kind`` as a table."""

    def command() -> None:
        console.print(_registry_table(kind))

    command.__name__ = f"{kind}_cmd"
    command.__doc__ = f"{summary}\n\nExample: facebench {kind}\n"
    app.command(kind)(command)


for _kind, _summary in (
    ("methods", "List registered methods with what each can do."),
    ("metrics", "List registered metrics."),
    ("datasets", "List registered scene sources and datasets."),
):
    _list_command(_kind, _summary)


@app.command("doctor")
def doctor_cmd() -> None:
    """Report versions, device, optional packages and model weights.

    Example: facebench doctor
    """
    from facebench.doctor import doctor_report

    for title, rows in doctor_report():
        table = Table(title=title)
        table.add_column("item", style="bold")
        table.add_column("status")
        table.add_column("detail")
        for row in rows:
            table.add_row(*row)
        console.print(table)


# Options shared by `config`, `run` and `ablate`: declared once, so they read the same.
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="Registered method name.")]
SceneOpt = Annotated[str, typer.Option("--scene", help="Scene spec or capture path.")]
ClipOpt = Annotated[
    str | None,
    typer.Option(
        "--clip",
        help="CLIP spec: ARCH:TAG, ARCH:PATH, synthclip (default on SynthFace scenes), "
        "synthclip:CONFIG_HASH (an earlier SynthCLIP in the cache) or tiny-random.",
    ),
]
SeedsOpt = Annotated[int, typer.Option("--seeds", help="Number of seeds (0..N-1) per prompt.")]
OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output directory.")]
VariantOpt = Annotated[str, typer.Option("--variant", help="Method variant (ablation).")]
BudgetOpt = Annotated[
    str,
    typer.Option("--budget", help="Step-count preset: smoke, quick (CPU default) or full (paper)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute rows already in the CSV.")]
PrepareOpt = Annotated[
    bool,
    typer.Option("--prepare/--no-prepare", help="Train SynthCLIP / the recognizer when missing."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a method config field, KEY=VALUE (dotted for nested configs: "
        "manipulator.steps=3000); repeatable. Rows get their own config hash.",
    ),
]


@app.command("config")
def config_cmd(
    method: str = typer.Argument(..., help="Registered method name."),
    variant: VariantOpt = "full",
    budget: BudgetOpt = "quick",
    overrides: SetOpt = None,
    fields: Annotated[
        bool,
        typer.Option(
            "--fields", help="List each field `--set` can change: dotted name, type, value."
        ),
    ] = False,
) -> None:
    """Print a method's full config as JSON: every field `run --set` can change.

    Examples:

      facebench config pac

      facebench config pac --budget full --set edit.steps=600

      facebench config flame-nerf --fields
    """
    import dataclasses
    import json

    from facebench.config import config_fields
    from facebench.runner import create_method

    m = create_method(method, variant, budget, None, tuple(overrides or ()))
    config = getattr(m, "config", None)
    if not fields:
        print(json.dumps(m.config_dict(), indent=2, default=str))
    elif dataclasses.is_dataclass(config):
        refused = set(getattr(m, "scene_fields", ()))
        rows = [r for r in config_fields(config) if r[0] not in refused]
        width = max(len(r[0]) for r in rows)
        for name, kind, value in rows:
            print(f"{name:<{width}}  {kind:<16}  {value!r}")
    else:
        raise FacebenchError(f"method {method!r} has no dataclass config to list")


@app.command("run")
def run_cmd(
    method: MethodOpt,
    prompts: Annotated[
        str,
        typer.Option(
            "--prompts", "-p", help="Prompt file: a path, or a shipped set (emotions.txt)."
        ),
    ],
    scene: SceneOpt = "synthface:default",
    clip: ClipOpt = None,
    seeds: SeedsOpt = 1,
    out: OutOpt = "runs",
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            help="Metric suite name [default: the method's own protocol: generation for a "
            "text-to-face generator, else scene].",
        ),
    ] = None,
    variant: VariantOpt = "full",
    budget: BudgetOpt = "quick",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    prepare: PrepareOpt = True,
    overrides: SetOpt = None,
) -> None:
    """Fit a scene, edit it for every prompt, score the renders, append leaderboard rows.

    Examples:

      facebench run --method pac --prompts emotions.txt

      facebench run --method hypernerf-i --prompts descriptive.txt --seeds 3 --out runs

      facebench run --method pac --variant no-tv --prompts my_prompts.txt --clip ViT-B-32:openai

      facebench run --method pac --prompts emotions.txt --set edit.steps=600 --set tv_weight=0.1

      facebench run --method tg3dface --prompts attributes.txt

      facebench run --method tg3dface --suite scene --prompts emotions.txt

    Progress goes to stderr: bars on a terminal, plain lines (each stage's start and end, every
    ~10 % of a long loop) when stderr is a file; `facebench --quiet run ...` prints none.
    """
    options = _run_options(locals())  # first: locals() is the command's parameters
    from facebench.runner import run

    with command_progress() as progress:
        summary = run(options, progress=progress)
    _print_summary(summary)
    report_line(console, options.out, wrote=bool(summary.rows))


def _run_options(params: dict):
    """A command's parameters as :class:`~facebench.runner.RunOptions` (they are named as its
    fields, except ``prepare`` for ``prepare_missing`` and ``--set``'s list of strings)."""
    from pathlib import Path

    from facebench.runner import RunOptions

    p = dict(params)
    p["prepare_missing"] = p.pop("prepare")
    p["out"], p["overrides"] = Path(p["out"]), tuple(p["overrides"] or ())
    return RunOptions(**p)


def summary_metrics(rows: list[dict]) -> list[str]:
    """The headline metrics a run's summary table shows: its suite's (a run's rows share
    one suite), those the rows have."""
    from facebench.leaderboard import HEADLINE, SUITE_HEADLINES

    headline = SUITE_HEADLINES.get(rows[0].get("suite") or "", HEADLINE)
    return [m for m in headline if any(m in r for r in rows)]


def _print_summary(summary) -> None:
    for note in summary.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if summary.rows:
        metrics = summary_metrics(summary.rows)
        table = Table(title="facebench run")
        for column in ["method", "variant", "prompt", "seed", *metrics]:
            table.add_column(column)
        for row in summary.rows:
            cells = [str(row["method"]), str(row["variant"]), str(row["prompt"]), str(row["seed"])]
            cells += [_fmt(row.get(m)) for m in metrics]
            table.add_row(*cells)
        console.print(table)
    console.print(
        f"{len(summary.rows)} row(s) written, {summary.skipped_rows} already present -> "
        f"{summary.csv_path}"
    )


def _fmt(value) -> str:
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return str(value)


@app.command("ablate")
def ablate_cmd(
    method: MethodOpt,
    prompts: Annotated[
        str, typer.Option("--prompts", "-p", help="Prompt file or set.")
    ] = "emotions.txt",
    scene: SceneOpt = "synthface:default",
    clip: ClipOpt = None,
    seeds: SeedsOpt = 1,
    out: OutOpt = "runs",
    budget: BudgetOpt = "quick",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    prepare: PrepareOpt = True,
    overrides: SetOpt = None,
) -> None:
    """Run every variant of a method (the full method and its ablations) on the same setup.

    Examples:

      facebench ablate --method pac

      facebench ablate --method pac --prompts descriptive.txt --seeds 3

      facebench ablate --method pac --set edit.steps=600
    """
    options = _run_options(locals())  # first: locals() is the command's parameters
    import dataclasses

    from facebench.registry import METHODS
    from facebench.runner import run

    variants = list(getattr(METHODS.get(method).obj, "variants", {"full": {}}))
    with command_progress() as progress:
        summaries = [
            run(dataclasses.replace(options, variant=variant), progress=progress)
            for variant in variants
        ]
    for summary in summaries:
        _print_summary(summary)


@app.command("leaderboard")
def leaderboard_cmd(
    directory: str = typer.Argument("runs", help="A run output directory (holds leaderboard.csv)."),
) -> None:
    """Aggregate DIR/leaderboard.csv into mean ± std per method, variant, scene and prompt set.

    Writes DIR/leaderboard_summary.csv and DIR/leaderboard_summary.md.

    Examples:

      facebench leaderboard runs

      facebench leaderboard /data/facebench-results
    """
    from pathlib import Path

    from facebench.leaderboard import write_leaderboard

    csv_path, md_path, table = write_leaderboard(Path(directory))
    from facebench.leaderboard import to_markdown

    console.print(to_markdown(table), markup=False)
    console.print(f"wrote {csv_path} and {md_path}")


@app.command("reanimate")
def reanimate_cmd(
    method: str = typer.Option("flame-nerf", "--method", "-m", help="A method that re-animates."),
    scene: str = typer.Option("synthface:default", "--scene", help="Scene spec or capture path."),
    drive: str = typer.Option(
        "heldout",
        "--drive",
        help="Driving expressions: 'heldout' (unseen combinations), a scene spec, "
        "or an .npz ('expression' array) / .json (list of vectors or {AU: value}) file.",
    ),
    variant: str = typer.Option("full", "--variant", help="Method variant (ablation)."),
    budget: str = typer.Option("quick", "--budget", help="smoke, quick or full."),
    n_drive: int = typer.Option(4, "--n-drive", min=1, help="Held-out combinations to drive."),
    n_views: int = typer.Option(4, "--views", min=1, help="Held-out cameras to render."),
    out: str = typer.Option("runs", "--out", "-o", help="Output directory."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, "--force", help="Refit the scene model."),
) -> None:
    """Drive a fitted scene with other expressions; score against ground truth on SynthFace.

    Writes OUT/reanimate/METHOD-VARIANT.json (PSNR, SSIM, LPIPS, background change) and a
    PNG grid (ground truth above render, per driving expression).

    Examples:

      facebench reanimate --method flame-nerf

      facebench reanimate --method flame-nerf --variant no-spatial-prior --out runs

      facebench reanimate --method flame-nerf --drive synthface:alt
    """
    from pathlib import Path

    from facebench.reanimate import reanimate

    with command_progress() as progress:
        result = reanimate(
            method,
            scene,
            drive=drive,
            variant=variant,
            budget=budget,
            device=device,
            n_drive=n_drive,
            n_views=n_views,
            out=Path(out),
            force=force,
            progress=progress,
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    table = Table(title=f"facebench reanimate: {method} ({variant}), drive {result.drive}")
    scores = ("psnr", "ssim", "gt_lpips", "background_change")
    for column in ("drive", *scores):
        table.add_column(column)
    for row in result.per_expression:
        table.add_row(str(row["drive"]), *(_fmt(row.get(k)) for k in scores))
    console.print(table)
    means = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
    console.print(
        f"mean over {result.n_expressions} expression(s) x {result.n_views} view(s): {means}; "
        f"background change {result.background_change:.4f} "
        f"(ground truth {result.background_change_gt:.4f})"
    )
    console.print(f"wrote {Path(out) / 'reanimate' / f'{method}-{variant}.json'}")


register_commands(app)  # sweep, report (facebench/sweep_cli.py)


def _fail(message: str) -> None:
    first = (message.strip().splitlines() or ["error"])[0]
    print(f"facebench: error: {first}", file=sys.stderr)
    raise SystemExit(2)


_RESUME = "every row finished so far is in the leaderboard; rerun the same command to resume"
_signals: dict[str, bool] = {"terminated": False}


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C (finished rows stay written), remembered for the exit code."""
    _signals["terminated"] = True
    raise KeyboardInterrupt


def _interrupted() -> None:
    if _signals["terminated"]:
        print(f"facebench: terminated; {_RESUME}", file=sys.stderr)
        raise SystemExit(143)
    print(f"facebench: interrupted; {_RESUME}", file=sys.stderr)
    raise SystemExit(130)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one stderr line.

    Ctrl-C exits 130 and SIGTERM 143, each with one line. (Not standalone, typer turns a
    KeyboardInterrupt into an exit code that it returns rather than raises.)"""
    command = typer.main.get_command(app)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        code = command.main(args=argv, prog_name="facebench", standalone_mode=False)
    except _both("NoArgsIsHelpError"):
        raise SystemExit(0) from None
    except _both("Abort"):
        print("facebench: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except _both("ClickException") as exc:  # usage errors and bad parameters
        _fail(exc.format_message())
    except _both("Exit") as exc:
        raise SystemExit(exc.exit_code) from None
    except FacebenchError as exc:
        _fail(str(exc))
    except OSError as exc:  # the disk: full, read-only, gone (rows already written are whole)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc} (finished work is kept; rerun to resume)")
    except KeyboardInterrupt:
        _interrupted()
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:  # typer's Exit(130) for a KeyboardInterrupt
            _interrupted()
        raise SystemExit(code)


if __name__ == "__main__":
    main()
