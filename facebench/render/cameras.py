"""Pinhole cameras and rays: the conventions every facebench renderer shares.

Conventions (read these before writing a scene source or a method):

* **Camera frame: OpenCV.** ``c2w`` maps camera coordinates to world
  coordinates; camera x points right in the image, y points *down*, z points
  *forward* (into the scene). ``c2w[:, :, :3]`` holds the camera axes as
  columns, ``c2w[:, :, 3]`` is the camera centre. Use :func:`opencv_to_opengl`
  / :func:`opengl_to_opencv` to convert from/to the OpenGL/Blender convention
  (y up, camera looking down -z); the conversion flips the y and z columns.
* **World frame: right-handed, +y up.** A face sits near the origin and looks
  toward **+z**; a frontal camera is at ``(0, 0, +d)`` looking at the origin
  (``look_at((0, 0, d), (0, 0, 0))``), so the subject's left ear is at +x in
  world space and appears on the right of the image.
* **Pixels.** Pixel ``(x, y)`` (column, row) covers ``[x, x+1) x [y, y+1)`` in
  continuous image coordinates and its ray passes through its centre
  ``(x + 0.5, y + 0.5)``. ``cx, cy`` are in the same continuous coordinates,
  so ``cx = width / 2`` is the image centre. Projection:
  ``u = fx * X_c / Z_c + cx``, the pixel column is ``floor(u)``.
* **Rays.** Directions are unit length, so ray parameters ``t`` (and rendered
  depth) are Euclidean distances along the ray from the camera centre, not
  z-depth. Rays of a full image are ordered ``(N, H, W)`` flattened.

Targets for rays from :func:`sample_pixel_rays` are gathered with
``images[index[:, 0], index[:, 1], index[:, 2]]`` for ``images`` of shape
``(N, H, W, C)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Cameras",
    "RayBundle",
    "generate_rays",
    "look_at",
    "near_far_from_aabb",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "orbit_cameras",
    "rays_from_pixels",
    "sample_pixel_rays",
]


def _flip_yz(c2w: Tensor) -> Tensor:
    flip = torch.tensor([1.0, -1.0, -1.0], dtype=c2w.dtype, device=c2w.device)
    out = c2w.clone()
    out[..., :3, :3] = c2w[..., :3, :3] * flip
    return out


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """OpenCV camera-to-world (x right, y down, z forward) -> OpenGL (y up, looking down -z).

    Works for ``(..., 3, 4)`` and ``(..., 4, 4)``; the camera centre is unchanged.
    """
    return _flip_yz(c2w)


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """OpenGL/Blender camera-to-world -> OpenCV; the inverse of :func:`opencv_to_opengl`."""
    return _flip_yz(c2w)


def look_at(
    eye: Tensor | Sequence[float],
    target: Tensor | Sequence[float] = (0.0, 0.0, 0.0),
    up: Tensor | Sequence[float] = (0.0, 1.0, 0.0),
) -> Tensor:
    """OpenCV camera-to-world ``(..., 3, 4)`` for cameras at ``eye`` looking at ``target``.

    The camera's z axis points from ``eye`` to ``target``, its x axis is
    ``forward x up`` (image right) and its y axis ``forward x right`` (image
    down, i.e. world ``up`` projects upward in the image). ``eye``/``target``/``up``
    broadcast against each other. When ``forward`` is parallel to ``up`` the
    roll is ill-defined; world +z (or +x) is then used as the up hint.
    """
    eye_t = torch.as_tensor(eye)
    dev = eye_t.device
    dtype = eye_t.dtype if eye_t.is_floating_point() else torch.get_default_dtype()
    eye_t = eye_t.to(dtype)
    target_t = torch.as_tensor(target, dtype=dtype, device=dev)
    up_t = torch.as_tensor(up, dtype=dtype, device=dev)
    eye_t, target_t, up_t = torch.broadcast_tensors(eye_t, target_t, up_t)
    forward = torch.nn.functional.normalize(target_t - eye_t, dim=-1)
    right = torch.linalg.cross(forward, up_t, dim=-1)
    # Degenerate case (looking along up): fall back to another hint without a host sync.
    alt_hint = torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=dev).expand_as(forward)
    alt_hint2 = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=dev).expand_as(forward)
    alt = torch.linalg.cross(forward, alt_hint, dim=-1)
    alt = torch.where(
        alt.norm(dim=-1, keepdim=True) < 1e-6, torch.linalg.cross(forward, alt_hint2, dim=-1), alt
    )
    right = torch.where(right.norm(dim=-1, keepdim=True) < 1e-6, alt, right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right, dim=-1)
    rot = torch.stack([right, down, forward], dim=-1)
    return torch.cat([rot, eye_t.unsqueeze(-1)], dim=-1)


def _as_vec(x: Tensor | float, n: int, like: Tensor) -> Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device).expand(n).clone()


@dataclass
class Cameras:
    """A batch of ``N`` pinhole cameras sharing one image size (OpenCV convention, see module)."""

    c2w: Tensor  # (N, 3, 4) camera-to-world, OpenCV axes
    fx: Tensor  # (N,)
    fy: Tensor  # (N,)
    cx: Tensor  # (N,)
    cy: Tensor  # (N,)
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.dim() == 2:
            self.c2w = self.c2w.unsqueeze(0)
        if self.c2w.shape[-2:] == (4, 4):
            self.c2w = self.c2w[..., :3, :]
        if self.c2w.shape[-2:] != (3, 4):
            raise ValueError(f"c2w must be (N,3,4) or (N,4,4), got {tuple(self.c2w.shape)}")
        n = self.c2w.shape[0]
        self.fx, self.fy, self.cx, self.cy = (
            _as_vec(v, n, self.c2w) for v in (self.fx, self.fy, self.cx, self.cy)
        )
        self.width, self.height = int(self.width), int(self.height)

    @classmethod
    def from_fov(
        cls,
        c2w: Tensor,
        width: int,
        height: int,
        fov_y_deg: float = 30.0,
    ) -> Cameras:
        """Square pixels, vertical field of view ``fov_y_deg``, centred principal point."""
        f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
        return cls(c2w, f, f, width / 2, height / 2, width, height)

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx: int | slice | Tensor) -> Cameras:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return Cameras(
            self.c2w[idx],
            self.fx[idx],
            self.fy[idx],
            self.cx[idx],
            self.cy[idx],
            self.width,
            self.height,
        )

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(
            self.c2w.to(device),
            self.fx.to(device),
            self.fy.to(device),
            self.cx.to(device),
            self.cy.to(device),
            self.width,
            self.height,
        )

    def resized(self, height: int | None = None, longest: int | None = None) -> Cameras:
        """The same cameras (poses, field of view) at another image size.

        ``height``: that many rows, the width scaled to keep the aspect. ``longest``: the
        longest side that long (``0`` or the current longest side returns ``self``).
        Intrinsics scale by the new/old width and height ratios. Give exactly one.
        """
        if (height is None) == (longest is None):
            raise ValueError("Cameras.resized: give exactly one of height and longest")
        if height is not None:
            s = height / self.height
            width, rows = max(1, round(self.width * s)), int(height)
        else:
            side = max(self.width, self.height)
            if longest <= 0 or longest == side:
                return self
            s = longest / side
            width, rows = max(1, round(self.width * s)), max(1, round(self.height * s))
        sx, sy = width / self.width, rows / self.height
        return Cameras(
            self.c2w, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, rows
        )

    @property
    def K(self) -> Tensor:  # noqa: N802 - the usual name for the intrinsic matrix
        """Intrinsic matrices ``(N, 3, 3)``."""
        k = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        k[:, 0, 0], k[:, 1, 1] = self.fx, self.fy
        k[:, 0, 2], k[:, 1, 2] = self.cx, self.cy
        k[:, 2, 2] = 1.0
        return k

    @property
    def centers(self) -> Tensor:
        """Camera centres in world space ``(N, 3)``."""
        return self.c2w[:, :, 3]

    def world_to_camera(self, points: Tensor) -> Tensor:
        """World points ``(P, 3)`` or ``(N, P, 3)`` -> camera coordinates ``(N, P, 3)``."""
        rot, center = self.c2w[:, :, :3], self.c2w[:, :, 3]
        pts = points if points.dim() == 3 else points.unsqueeze(0)
        return torch.einsum("nji,npj->npi", rot, pts - center[:, None, :])

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points to continuous pixel coordinates.

        Returns ``(uv (N, P, 2), z (N, P))``; ``uv`` is ``(column, row)`` with
        pixel centres at ``+0.5``; points with ``z <= 0`` are behind the camera.
        """
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        u = self.fx[:, None] * cam[..., 0] / z + self.cx[:, None]
        v = self.fy[:, None] * cam[..., 1] / z + self.cy[:, None]
        return torch.stack([u, v], dim=-1), z


@dataclass
class RayBundle:
    """``R`` rays: unit ``directions``, ray interval ``[near, far]`` in distance units.

    ``camera_indices`` (optional, ``(R,)`` long) tags each ray with the camera or frame
    it belongs to (nerfstudio's ``camera_indices``), so one bundle can hold rays of
    several frames of a dynamic scene; the renderer then hands each sample's index to
    the field (see :mod:`facebench.render.renderer`).
    """

    origins: Tensor  # (R, 3)
    directions: Tensor  # (R, 3), unit length
    near: Tensor  # (R,)
    far: Tensor  # (R,)
    camera_indices: Tensor | None = None  # (R,) long

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, idx: slice | Tensor) -> RayBundle:
        ids = self.camera_indices
        return RayBundle(
            self.origins[idx],
            self.directions[idx],
            self.near[idx],
            self.far[idx],
            ids[idx] if ids is not None else None,
        )

    def to(self, device: torch.device | str) -> RayBundle:
        ids = self.camera_indices
        return RayBundle(
            self.origins.to(device),
            self.directions.to(device),
            self.near.to(device),
            self.far.to(device),
            ids.to(device) if ids is not None else None,
        )

    @property
    def device(self) -> torch.device:
        return self.origins.device

    def points(self, t: Tensor) -> Tensor:
        """Points ``(R, S, 3)`` at ray parameters ``t`` ``(R, S)``."""
        return self.origins[:, None, :] + self.directions[:, None, :] * t[..., None]


def _interval(value: Tensor | float, n: int, like: Tensor) -> Tensor:
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return v.expand(n).contiguous() if v.dim() == 0 else v.reshape(n).contiguous()


def rays_from_pixels(
    cameras: Cameras,
    cam_idx: Tensor,
    px: Tensor,
    py: Tensor,
    near: Tensor | float,
    far: Tensor | float,
) -> RayBundle:
    """Rays through continuous pixel coordinates ``(px, py)`` of cameras ``cam_idx`` (all ``(R,)``).

    Pass ``x + 0.5`` for the centre of pixel column ``x``.
    """
    c2w = cameras.c2w[cam_idx]
    dirs_cam = torch.stack(
        [
            (px - cameras.cx[cam_idx]) / cameras.fx[cam_idx],
            (py - cameras.cy[cam_idx]) / cameras.fy[cam_idx],
            torch.ones_like(px),
        ],
        dim=-1,
    )
    dirs = torch.einsum("rij,rj->ri", c2w[:, :, :3], dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = c2w[:, :, 3].expand_as(dirs).contiguous()
    n = dirs.shape[0]
    return RayBundle(origins, dirs, _interval(near, n, dirs), _interval(far, n, dirs))


def generate_rays(cameras: Cameras, near: Tensor | float, far: Tensor | float) -> RayBundle:
    """Rays through every pixel centre of every camera, ordered ``(N, H, W)`` flattened.

    ``near``/``far`` are floats or tensors with ``N*H*W`` elements.
    """
    n, h, w = len(cameras), cameras.height, cameras.width
    dev, dt = cameras.device, cameras.c2w.dtype
    cam = torch.arange(n, device=dev).repeat_interleave(h * w)
    ys = torch.arange(h, device=dev, dtype=dt).repeat_interleave(w).repeat(n)
    xs = torch.arange(w, device=dev, dtype=dt).repeat(n * h)
    return rays_from_pixels(cameras, cam, xs + 0.5, ys + 0.5, near, far)


def sample_pixel_rays(
    cameras: Cameras,
    n_rays: int,
    near: Tensor | float,
    far: Tensor | float,
    generator: torch.Generator | None = None,
) -> tuple[RayBundle, Tensor]:
    """``n_rays`` rays through uniformly random pixel centres of random cameras.

    Returns ``(rays, index)``, ``index`` a LongTensor ``(n_rays, 3)`` of
    ``(camera, y, x)``. A ``generator`` on another device than the cameras
    (e.g. a CPU generator for CUDA cameras) draws there and the result moves.
    ``near``/``far`` are floats or ``(n_rays,)`` tensors.
    """
    dev = cameras.device
    gdev = generator.device if generator is not None else dev
    cam = torch.randint(len(cameras), (n_rays,), device=gdev, generator=generator).to(dev)
    y = torch.randint(cameras.height, (n_rays,), device=gdev, generator=generator).to(dev)
    x = torch.randint(cameras.width, (n_rays,), device=gdev, generator=generator).to(dev)
    dt = cameras.c2w.dtype
    rays = rays_from_pixels(cameras, cam, x.to(dt) + 0.5, y.to(dt) + 0.5, near, far)
    return rays, torch.stack([cam, y, x], dim=-1)


def near_far_from_aabb(
    origins: Tensor, directions: Tensor, aabb: Tensor, min_near: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Ray/box intersection by the slab method.

    ``aabb`` is ``(2, 3)`` (min corner, max corner). Returns ``(near, far,
    hit_mask)``, all ``(R,)``; ``near >= min_near``. Rays that miss the box get
    ``near = far = min_near`` (an empty interval, rendering as background).
    """
    aabb = aabb.to(device=origins.device, dtype=origins.dtype)
    eps = 1e-9
    safe = torch.where(directions.abs() < eps, torch.full_like(directions, eps), directions)
    safe = torch.where((directions < 0) & (directions.abs() < eps), -safe, safe)
    inv = 1.0 / safe
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(min_near)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    fill = torch.full_like(near, min_near)
    return torch.where(hit, near, fill), torch.where(hit, far, fill), hit


def orbit_cameras(
    n: int,
    radius: float,
    width: int,
    height: int,
    fov_y_deg: float = 30.0,
    elevation_deg: float = 0.0,
    azimuth_range_deg: tuple[float, float] = (0.0, 360.0),
    target: Sequence[float] = (0.0, 0.0, 0.0),
    device: torch.device | str | None = None,
    endpoint: bool = False,
) -> Cameras:
    """``n`` cameras on a horizontal ring around ``target`` looking at it.

    Azimuth 0 is the frontal camera at ``+z``; positive azimuth moves toward
    ``+x``. ``endpoint`` includes the end of ``azimuth_range_deg`` (use it for
    arcs, not for full circles).
    """
    lo, hi = azimuth_range_deg
    steps = n - 1 if endpoint and n > 1 else n
    az = torch.tensor([math.radians(lo + (hi - lo) * i / max(steps, 1)) for i in range(n)])
    el = math.radians(elevation_deg)
    tgt = torch.tensor(target, dtype=torch.get_default_dtype())
    eye = (
        torch.stack(
            [
                radius * math.cos(el) * torch.sin(az),
                torch.full_like(az, radius * math.sin(el)),
                radius * math.cos(el) * torch.cos(az),
            ],
            dim=-1,
        )
        + tgt
    )
    c2w = look_at(eye, tgt.expand_as(eye))
    cams = Cameras.from_fov(c2w, width, height, fov_y_deg)
    return cams.to(device) if device is not None else cams
