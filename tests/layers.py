"""The layer contract: which facebench package may import which, read from the source (ast).

facebench has four layers, each a folder of the repository installed inside the
``facebench`` package (see pyproject.toml's package-dir):

* ``core`` -- ``facebench/`` (``facebench.*`` except the three below);
* ``datasets`` -- ``datasets/`` (``facebench.datasets``);
* ``metrics`` -- ``metrics/`` (``facebench.metrics``);
* ``methods`` -- ``methods/`` (``facebench.methods``).

The core imports only the core (it finds plugins through its registries, by
module-name strings); datasets import the core and datasets; metrics the core,
datasets and metrics; methods the core and methods. Every import counts: module
level, inside functions, under ``TYPE_CHECKING``, relative ones, and
``importlib.import_module("a.literal")`` / ``__import__("a.literal")`` calls.

``python tests/layers.py [ROOT]`` prints the violations and exits 1 when there
are any (``nox -s lint`` runs it); ``tests/test_layers.py`` runs it in the suite.
Standard library only, so the lint session needs nothing installed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

#: Folder of the repository -> the package it is installed as.
FOLDERS: dict[str, str] = {
    "facebench": "facebench",
    "datasets": "facebench.datasets",
    "metrics": "facebench.metrics",
    "methods": "facebench.methods",
}

#: Layer -> the layers it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "datasets": frozenset({"core", "datasets"}),
    "metrics": frozenset({"core", "datasets", "metrics"}),
    "methods": frozenset({"core", "methods"}),
}

_PLUGINS = ("datasets", "metrics", "methods")


def layer_of(module: str) -> str | None:
    """The layer of a module name, or None for modules outside facebench."""
    for plugin in _PLUGINS:
        package = f"facebench.{plugin}"
        if module == package or module.startswith(package + "."):
            return plugin
    if module == "facebench" or module.startswith("facebench."):
        return "core"
    return None


def module_name(path: Path, root: Path) -> tuple[str, bool] | None:
    """``(installed module name, is a package __init__)`` of a .py file under ``root``."""
    rel = path.relative_to(root)
    package = FOLDERS.get(rel.parts[0])
    if package is None:
        return None
    parts = [*package.split("."), *rel.parts[1:-1]]
    is_init = rel.name == "__init__.py"
    if not is_init:
        parts.append(rel.stem)
    return ".".join(parts), is_init


def _resolve_relative(module: str, is_init: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_init else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def _literal_import_call(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if (
        isinstance(arg, ast.Constant)
        and isinstance(arg.value, str)
        and not arg.value.startswith(".")
    ):
        return arg.value
    return None


def imports(source: str, module: str, is_init: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``source`` (the module ``module``).

    ``from a import b`` yields ``a.b`` as well as ``a``: ``b`` may be a submodule
    (``from facebench import datasets``).
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_init, node.level, node.module)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name
        elif isinstance(node, ast.Call):
            target = _literal_import_call(node)
            if target is not None:
                yield node.lineno, target


def check_source(source: str, module: str, is_init: bool = False, where: str = "") -> list[str]:
    """Violations of the layer rules by one module's source."""
    own = layer_of(module)
    if own is None:
        return []
    found: dict[tuple[int, str], str] = {}
    for line, target in imports(source, module, is_init):
        other = layer_of(target)
        if other is not None and other not in ALLOWED[own]:
            found.setdefault((line, other), target)
    return [
        f"{where or module}:{line}: {own} module {module} imports {other} ({target})"
        for (line, other), target in sorted(found.items())
    ]


def check_layers(root: str | Path = ".") -> list[str]:
    """Every layer violation in the repository at ``root`` (one line each)."""
    root = Path(root).resolve()
    out: list[str] = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            named = module_name(path, root)
            if named is None:
                continue
            module, is_init = named
            rel = path.relative_to(root).as_posix()
            out += check_source(path.read_text(encoding="utf-8"), module, is_init, rel)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    violations = check_layers(args[0] if args else Path(__file__).resolve().parents[1])
    for line in violations:
        print(line)
    if violations:
        print(f"{len(violations)} layer violation(s); see tests/layers.py for the rules")
        return 1
    print("layers: no violations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
