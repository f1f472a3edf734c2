"""``python -m facebench.morphable convert SRC DST [--landmarks FILE]``: FLAME pickle -> .npz."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from facebench.errors import FacebenchError
from facebench.morphable.flame_file import convert_flame_to_npz

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facebench.morphable")
    sub = parser.add_subparsers(dest="cmd", required=True)
    conv = sub.add_parser("convert", help="convert a FLAME pickle to .npz (safely)")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--landmarks", default=None)
    args = parser.parse_args(argv)
    try:
        out = convert_flame_to_npz(args.src, args.dst, args.landmarks)
    except FacebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
