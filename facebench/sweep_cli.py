"""The ``facebench sweep`` and ``facebench report`` commands (registered on the main app)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from facebench.errors import FacebenchError

__all__ = ["register_commands", "report_line"]


def report_line(console: Console, out: Path | str, wrote: bool = True) -> None:
    """Write ``OUT/report.html`` (when ``wrote`` rows, or when it is missing) and print its
    path; a report that cannot be made is a note (the rows are already safe)."""
    from facebench.report import write_report

    path = Path(out) / "report.html"
    try:
        if wrote or not path.exists():
            path = write_report(out)
    except FacebenchError as exc:
        console.print(f"[yellow]note:[/yellow] no report: {exc}")
        return
    console.print(f"report: {path}")


def _spec(params: dict[str, Any]) -> Any:
    """The sweep's :class:`~facebench.sweep.SweepSpec`: the TOML file's values, then every
    option given on the command line (lists replace, ``--set`` is added to every set)."""
    from facebench.sweep import SweepSpec, load_spec

    spec: dict[str, Any] = load_spec(params["spec_file"]) if params["spec_file"] else {}
    lists = {"method": "methods", "prompts": "prompts", "variant": "variants", "scene": "scenes"}
    for option, key in lists.items():
        if params[option]:
            spec[key] = list(params[option])
    given = ("seeds", "clip", "budget", "suite", "device", "out", "backend", "workers")
    for key in (*given, "address", "retries", "threads", "batch"):
        if params[key] is not None:
            spec[key] = params[key]
    if params["gpus_per_task"] is not None:
        spec["num_gpus"] = params["gpus_per_task"]
    if params["prepare"] is not None:
        spec["prepare_missing"] = params["prepare"]
    fixed = tuple(params["overrides"] or ())
    spec["overrides"] = [tuple(s) + fixed for s in spec.get("overrides", [()])]
    spec["out"] = Path(spec.get("out", "runs"))
    if "methods" not in spec or "prompts" not in spec:
        raise FacebenchError("sweep: give --method and --prompts (or methods and prompts in SPEC)")
    return SweepSpec(**spec)


def sweep_cmd(
    spec_file: Annotated[
        str | None, typer.Argument(help="A TOML sweep file (keys as the options).")
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Method (repeatable).")
    ] = None,
    prompts: Annotated[
        list[str] | None, typer.Option("--prompts", "-p", help="Prompt set (repeatable).")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Variant (repeatable; 'all': every variant of each)."),
    ] = None,
    scene: Annotated[list[str] | None, typer.Option("--scene", help="Scene (repeatable).")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Seeds 0..N-1 per prompt.")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE for every cell (repeatable); grids: SPEC file."),
    ] = None,
    clip: Annotated[str | None, typer.Option("--clip", help="CLIP spec (as run).")] = None,
    budget: Annotated[str | None, typer.Option("--budget", help="smoke, quick or full.")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="Metric suite.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda.")] = None,
    prepare: Annotated[
        bool | None,
        typer.Option("--prepare/--no-prepare", help="Train SynthCLIP / instruments if missing."),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output directory.")] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="local (default) or ray.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="local: processes (1: this process); ray: local CPUs."),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (ray.init(address)).")
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="Retries of a failed task (default 1).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads per task (default 1).")
    ] = None,
    gpus_per_task: Annotated[
        float | None, typer.Option("--gpus-per-task", help="GPUs per task (Ray: fractions).")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", min=1, help="Cells per task (one runner call; default 1)."),
    ] = None,
) -> None:
    """Run a grid of methods x variants x scenes x prompt sets x seeds, resumably.

    Each cell is one leaderboard row; cells already in OUT/leaderboard.csv are skipped.
    Scene models are fitted once, before the cells that need them.

    Examples:

      facebench sweep --method pac --method nerfies-i --variant all --prompts emotions.txt

      facebench sweep grid.toml --backend ray --gpus-per-task 1

      facebench sweep grid.toml --backend ray --address ray://head:10001

      facebench sweep --method pac --prompts emotions.txt --workers 2 --threads 1
    """
    from facebench.cli import console
    from facebench.cli_progress import command_progress, is_quiet
    from facebench.sweep import sweep

    spec = _spec(dict(locals()))

    def log(line: str) -> None:
        if not is_quiet():
            print(f"sweep: {line}", file=sys.stderr, flush=True)

    with command_progress() as progress:
        summary = sweep(spec, progress=progress, log=log)
    for note in summary.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    for cell, error in summary.failed:
        console.print(f"[red]failed:[/red] {cell}: {error}", markup=True, highlight=False)
    console.print(
        f"{summary.cells} cell(s): {summary.done} run, {summary.skipped} already present, "
        f"{len(summary.failed)} failed -> {summary.csv_path}"
    )
    report_line(console, spec.out, wrote=bool(summary.rows))
    if summary.failed:
        raise typer.Exit(1)


def report_cmd(
    directory: Annotated[str, typer.Argument(help="A run or sweep output directory.")] = "runs",
    link: Annotated[
        bool, typer.Option("--link", help="Link images beside the page instead of embedding.")
    ] = False,
) -> None:
    """Write DIR/report.html: the leaderboard (sortable), each prompt's edits, plots.

    One self-contained file (images embedded; --link: beside it), no network needed.

    Examples:

      facebench report runs

      facebench report /data/sweep --link
    """
    from facebench.cli import console
    from facebench.report import write_report

    console.print(f"report: {write_report(Path(directory), embed=not link)}")


def register_commands(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("report")(report_cmd)
