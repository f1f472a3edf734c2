"""Entry point of ``python -m facebench.morphable`` (see :mod:`facebench.morphable.cli`)."""

from facebench.morphable.cli import main

raise SystemExit(main())
