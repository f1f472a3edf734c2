"""Built-in facebench methods; importing this package registers them."""
from facebench.methods import nerf  # noqa: F401  (static reference NeRF)
from facebench.methods import flame_nerf  # noqa: E402,F401  (issue 7)
