"""The ``facebench`` command line (Typer + rich).

Every command is thin: it parses options and calls library code. Errors the
user can fix (:class:`~facebench.errors.FacebenchError`, bad options) are
printed as one line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.table import Table

from facebench import __version__
from facebench.errors import FacebenchError

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
console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"facebench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Benchmark text-driven 3D face manipulation and generation methods.

    Examples:

      facebench methods

      facebench doctor

      facebench run --method pac --prompts emotions.txt
    """


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


@app.command("methods")
def methods_cmd() -> None:
    """List registered methods with what each can do.

    Example: facebench methods
    """
    console.print(_registry_table("methods"))


@app.command("metrics")
def metrics_cmd() -> None:
    """List registered metrics.

    Example: facebench metrics
    """
    console.print(_registry_table("metrics"))


@app.command("datasets")
def datasets_cmd() -> None:
    """List registered scene sources and datasets.

    Example: facebench datasets
    """
    console.print(_registry_table("datasets"))


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


def _fail(message: str) -> None:
    first = (message.strip().splitlines() or ["error"])[0]
    print(f"facebench: error: {first}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one stderr line."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="facebench", standalone_mode=False)
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
    except KeyboardInterrupt:
        print("facebench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
