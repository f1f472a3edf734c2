"""Built-in facebench methods; importing this package registers them."""

from facebench.methods import (
    baselines,  # noqa: E402,F401  (issue 6: nerf-ft, nerfies-i, hypernerf-i)
    flame_nerf,  # noqa: E402,F401  (issue 7)
    nerf,  # noqa: F401  (static reference NeRF)
    pac,  # noqa: E402,F401  (issue 6: FaceCLIPNeRF)
)
