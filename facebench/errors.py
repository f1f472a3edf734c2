"""User-facing errors: the CLI prints their message as one line on stderr and exits 2."""


class FacebenchError(Exception):
    """An error caused by input or environment that the user can fix; its message is one line."""
