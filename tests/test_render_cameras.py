"""Camera conventions: OpenCV/OpenGL round trips, look_at, projection, ray generation, slabs."""

import math

import pytest
import torch

from facebench.render import (
    Cameras,
    generate_rays,
    look_at,
    near_far_from_aabb,
    opencv_to_opengl,
    opengl_to_opencv,
    orbit_cameras,
    sample_pixel_rays,
)


def test_opencv_opengl_round_trip_34_and_44():
    torch.manual_seed(0)
    c2w = look_at(torch.randn(5, 3) * 3, torch.randn(5, 3) * 0.1)
    back = opengl_to_opencv(opencv_to_opengl(c2w))
    assert torch.allclose(back, c2w)
    c44 = torch.eye(4).repeat(5, 1, 1)
    c44[:, :3, :] = c2w
    gl = opencv_to_opengl(c44)
    assert gl.shape == (5, 4, 4)
    assert torch.allclose(gl[:, 3], c44[:, 3])
    assert torch.allclose(opengl_to_opencv(gl), c44)
    # y and z axes flipped, x axis and centre kept.
    assert torch.allclose(gl[:, :3, 0], c2w[:, :, 0])
    assert torch.allclose(gl[:, :3, 1], -c2w[:, :, 1])
    assert torch.allclose(gl[:, :3, 2], -c2w[:, :, 2])
    assert torch.allclose(gl[:, :3, 3], c2w[:, :, 3])


def test_look_at_properties():
    eye = torch.tensor([[0.0, 0.0, 4.0], [3.0, 1.0, -2.0], [0.5, 2.0, 0.1]])
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.0]])
    c2w = look_at(eye, target)
    rot = c2w[:, :, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3), atol=1e-6)
    assert torch.allclose(c2w[:, :, 3], eye)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    assert torch.allclose(rot[:, :, 2], fwd, atol=1e-6)
    # Image-down axis points against world +y; image-right is horizontal.
    assert (rot[:, 1, 1] < 0).all()
    assert torch.allclose(rot[:, 1, 0], torch.zeros(3), atol=1e-6)
    # The frontal camera at +z: camera x == world +x, camera y == world -y.
    front = look_at((0.0, 0.0, 4.0))
    assert torch.allclose(front[:, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    # Degenerate: looking straight down along -y stays finite and orthonormal.
    down = look_at((0.0, 5.0, 0.0))
    assert torch.isfinite(down).all()
    assert torch.allclose(down[:, :3].T @ down[:, :3], torch.eye(3), atol=1e-6)


def test_projection_lands_on_expected_pixel():
    cams = orbit_cameras(3, 4.0, 40, 30, fov_y_deg=40.0, elevation_deg=10.0)
    # The target projects onto the image centre.
    uv, z = cams.project(torch.zeros(1, 3))
    assert torch.allclose(uv[:, 0], torch.tensor([20.0, 15.0]).expand(3, 2), atol=1e-4)
    assert torch.allclose(z[:, 0], torch.full((3,), 4.0), atol=1e-5)
    # A point above the target appears higher (smaller row); frontal camera: +x appears right.
    uv, _ = cams[0].project(torch.tensor([[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]))
    assert uv[0, 0, 1] < 15.0 and uv[0, 1, 0] > 20.0
    # Pinhole arithmetic: a camera at the origin looking down +z.
    cam = Cameras(torch.eye(4)[:3], 50.0, 60.0, 16.0, 12.0, 32, 24)
    uv, _ = cam.project(torch.tensor([[0.1, -0.05, 2.0]]))
    assert torch.allclose(uv[0, 0], torch.tensor([16.0 + 2.5, 12.0 - 1.5]))
    assert uv[0, 0].floor().tolist() == [18.0, 10.0]


def test_generate_rays_order_and_pixel_centres():
    cams = orbit_cameras(2, 3.0, 7, 5, fov_y_deg=50.0, elevation_deg=20.0)
    rays = generate_rays(cams, 0.5, 6.0)
    assert len(rays) == 2 * 5 * 7
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(70), atol=1e-6)
    assert torch.equal(rays.near, torch.full((70,), 0.5))
    # A point on ray (n, y, x) projects to pixel centre (x + 0.5, y + 0.5) of camera n.
    for n, y, x in [(0, 0, 0), (0, 4, 6), (1, 2, 3), (1, 4, 0)]:
        i = n * 35 + y * 7 + x
        p = rays.origins[i] + 2.5 * rays.directions[i]
        uv, _ = cams[n].project(p[None])
        assert torch.allclose(uv[0, 0], torch.tensor([x + 0.5, y + 0.5]), atol=1e-4)


def test_sample_pixel_rays_matches_full_image_rays():
    cams = orbit_cameras(3, 3.0, 8, 6)
    full = generate_rays(cams, 1.0, 5.0)
    g = torch.Generator().manual_seed(3)
    rays, index = sample_pixel_rays(cams, 50, 1.0, 5.0, generator=g)
    assert index.dtype == torch.long and index.shape == (50, 3)
    flat = index[:, 0] * 48 + index[:, 1] * 8 + index[:, 2]
    assert torch.allclose(rays.directions, full.directions[flat], atol=1e-6)
    assert torch.allclose(rays.origins, full.origins[flat])
    images = torch.rand(3, 6, 8, 3)
    target = images[index[:, 0], index[:, 1], index[:, 2]]
    assert target.shape == (50, 3)
    g2 = torch.Generator().manual_seed(3)
    _, index2 = sample_pixel_rays(cams, 50, 1.0, 5.0, generator=g2)
    assert torch.equal(index, index2)


def test_near_far_from_aabb():
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    origins = torch.tensor(
        [[0.0, 0.0, 4.0], [0.0, 0.0, 4.0], [0.0, 0.0, 0.0], [3.0, 3.0, 4.0], [0.5, 0.5, 4.0]]
    )
    dirs = torch.tensor(
        [[0.0, 0.0, -1.0], [0.1, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]
    )
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    dz = float(dirs[1, 2].abs())
    near, far, hit = near_far_from_aabb(origins, dirs, aabb, min_near=0.1)
    assert hit.tolist() == [True, True, True, False, False]
    assert torch.allclose(near[:3], torch.tensor([3.0, 3.0 / dz, 0.1]))
    assert torch.allclose(far[:3], torch.tensor([5.0, 5.0 / dz, 1.0]))
    assert torch.equal(near[3:], far[3:])


def test_cameras_container():
    cams = orbit_cameras(4, 3.0, 8, 6)
    assert len(cams) == 4 and len(cams[1]) == 1 and len(cams[1:3]) == 2
    assert len(cams[torch.tensor([0, 3])]) == 2
    assert torch.allclose(cams[-1].c2w[0], cams.c2w[3])
    assert cams.to("cpu").device.type == "cpu"
    assert cams.K.shape == (4, 3, 3)
    f = 0.5 * 6 / math.tan(math.radians(15.0))
    assert torch.allclose(cams.fy, torch.full((4,), f))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rays_cuda_match_cpu():
    cams = orbit_cameras(2, 3.0, 16, 12)
    a = generate_rays(cams, 1.0, 5.0)
    b = generate_rays(cams.to("cuda"), 1.0, 5.0)
    assert b.device.type == "cuda"
    assert torch.allclose(a.directions, b.directions.cpu(), atol=1e-6)
    near, far, hit = near_far_from_aabb(
        b.origins, b.directions, torch.tensor([[-1.0] * 3, [1.0] * 3])
    )
    assert near.device.type == "cuda"
    # A CPU generator drives CUDA sampling identically to CPU sampling.
    ra, ia = sample_pixel_rays(cams, 64, 1.0, 5.0, generator=torch.Generator().manual_seed(0))
    rb, ib = sample_pixel_rays(
        cams.to("cuda"), 64, 1.0, 5.0, generator=torch.Generator().manual_seed(0)
    )
    assert ib.device.type == "cuda" and torch.equal(ia, ib.cpu())
    assert torch.allclose(ra.directions, rb.directions.cpu(), atol=1e-6)


def _scale_cameras_formula(cameras: Cameras, height: int) -> Cameras:
    """flame-nerf's former ``scale_cameras``: ``height`` rows, aspect kept."""
    s = height / cameras.height
    width = max(1, round(cameras.width * s))
    sx, sy = width / cameras.width, height / cameras.height
    return Cameras(
        cameras.c2w,
        cameras.fx * sx,
        cameras.fy * sy,
        cameras.cx * sx,
        cameras.cy * sy,
        width,
        height,
    )


def _resize_cameras_formula(cameras: Cameras, size: int) -> Cameras:
    """The CLIP edit's former ``resize_cameras``: longest side ``size`` (0 keeps them)."""
    if size <= 0 or size == max(cameras.width, cameras.height):
        return cameras
    s = size / max(cameras.width, cameras.height)
    w, h = max(1, round(cameras.width * s)), max(1, round(cameras.height * s))
    sx, sy = w / cameras.width, h / cameras.height
    return Cameras(
        cameras.c2w, cameras.fx * sx, cameras.fy * sy, cameras.cx * sx, cameras.cy * sy, w, h
    )


def _same(a: Cameras, b: Cameras) -> bool:
    return (a.width, a.height) == (b.width, b.height) and all(
        torch.equal(getattr(a, k), getattr(b, k)) for k in ("c2w", "fx", "fy", "cx", "cy")
    )


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (37, 53), (1, 5)])
def test_resized_matches_the_former_formulas_bit_for_bit(size):
    w, h = size
    cams = orbit_cameras(3, 4.0, w, h, fov_y_deg=31.0)
    cams.cx += torch.tensor([0.1, -0.3, 0.7])
    for rows in (1, 16, 17, 40, 64, 129):
        assert _same(cams.resized(height=rows), _scale_cameras_formula(cams, rows))
    for side in (0, 1, 16, 23, 40, max(w, h), 200):
        new, old = cams.resized(longest=side), _resize_cameras_formula(cams, side)
        assert _same(new, old)
        assert (new is cams) == (old is cams)
    with pytest.raises(ValueError):
        cams.resized()
    with pytest.raises(ValueError):
        cams.resized(height=8, longest=8)
