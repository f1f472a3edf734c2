"""User-facing errors: the CLI prints their message as one line on stderr and exits 2."""


class FacebenchError(Exception):
    """An error caused by input or environment that the user can fix; its message is one line."""


class CaptureError(FacebenchError):
    """A capture on disk is broken or is not a capture; the message names the file and the
    problem. Raised by the capture sources and by :func:`facebench.scene.load_scene`."""
