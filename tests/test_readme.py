"""The README: its quick start and CI agree (.ci/run runs the test command verbatim), it stays
short and free of run logs, its CLI table covers every command, and its links resolve."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = []
    for block in blocks:
        lines = [ln for ln in block.strip().splitlines() if not ln.startswith("#")]
        commands.extend(lines)
    return commands


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_test_one():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    main_job, tests = commands
    assert "facebench run" in main_job
    assert "pytest" in tests
    for command in commands:  # no CUDA download on CPU machines: torch pinned in the same pip call
        assert "pip install torch==2.13.0 " in command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci, ".ci/run must run the README's test command verbatim"


def test_readme_is_short_and_dateless():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", doc.read_text())
        assert not dates, f"{doc.name} carries dates {dates}: say which machine instead"


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert (REPO / link).is_file(), link


def test_readme_cli_table_lists_every_command():
    import typer

    from facebench.cli import app

    section = (REPO / "README.md").read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`facebench ([a-z-]+)", section))
    listed |= set(re.findall(r"/ `([a-z-]+)`", section))  # `facebench methods` / `metrics`
    assert set(typer.main.get_command(app).commands) <= listed
