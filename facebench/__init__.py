"""facebench: benchmark and evaluation toolkit for text-driven 3D face manipulation."""

__version__ = "0.1.0"
