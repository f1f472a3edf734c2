"""Positional encoding windows, Lipschitz layers, MLP builder, SE(3) exponential and warps."""

import math

import torch

from facebench.render.deform import SE3Field, TranslationField, se3_exp, skew, so3_exp
from facebench.render.encoding import PositionalEncoding, linear_window, window_weights
from facebench.render.lipschitz import LipschitzLinear, lipschitz_bounds, lipschitz_loss
from facebench.render.mlp import make_mlp


def test_positional_encoding_values_and_window():
    enc = PositionalEncoding(4, include_input=True)
    assert enc.out_dim == 3 * (1 + 8)
    x = torch.tensor([[0.3, -1.2, 2.0]])
    y = enc(x)
    assert torch.allclose(y[0, :3], x[0])
    # Band k: sin(2^k x) then cos(2^k x).
    assert torch.allclose(y[0, 3 + 6 * 2 : 3 + 6 * 2 + 3], torch.sin(4 * x[0]))
    assert torch.allclose(y[0, 3 + 6 * 2 + 3 : 3 + 6 * 3], torch.cos(4 * x[0]))
    # Window at alpha = k + 0.5: bands < k fully on, band k at (1 - cos(pi/2))/2 = 0.5, rest 0.
    for k in range(4):
        w = window_weights(k + 0.5, 4)
        want = torch.tensor([1.0 if j < k else (0.5 if j == k else 0.0) for j in range(4)])
        assert torch.allclose(w, want, atol=1e-6)
        yw = enc(x, alpha=k + 0.5)
        assert torch.allclose(yw[0, :3], x[0])
        band = yw[0, 3:].reshape(4, 2, 3)
        assert torch.allclose(band, y[0, 3:].reshape(4, 2, 3) * want[:, None, None], atol=1e-6)
    assert torch.allclose(window_weights(0.25, 1), torch.tensor([(1 - math.cos(math.pi / 4)) / 2]))
    assert torch.allclose(enc(x, alpha=4.0), y) and torch.allclose(enc(x, alpha=10.0), y)
    assert linear_window(0, 100, 8) == 0.0 and linear_window(50, 100, 8) == 4.0
    assert linear_window(500, 100, 8) == 8.0
    assert PositionalEncoding(2, include_input=False, min_deg=1, in_dim=2).out_dim == 8


def test_lipschitz_layer_bounds_and_loss():
    torch.manual_seed(0)
    layer = LipschitzLinear(16, 8)
    row_sum = layer.weight.abs().sum(1).max()
    assert torch.allclose(layer.c, row_sum)
    # softplus(c) > c, so the freshly initialised layer equals a plain linear layer.
    assert torch.allclose(layer.normalized_weight(), layer.weight)
    with torch.no_grad():
        layer.c.fill_(-1.0)  # softplus(-1) ~ 0.313: a tight bound
    bound = torch.nn.functional.softplus(torch.tensor(-1.0))
    w = layer.normalized_weight()
    assert (w.abs().sum(1) <= bound + 1e-6).all()
    x, y = torch.randn(256, 16), torch.randn(256, 16)
    lhs = (layer(x) - layer(y)).abs().amax(-1)
    rhs = bound * (x - y).abs().amax(-1)
    assert (lhs <= rhs + 1e-6).all()
    mlp = make_mlp(5, 32, 3, 2, lipschitz=True)
    layers = [m for m in mlp.modules() if isinstance(m, LipschitzLinear)]
    assert len(layers) == 4
    for i, m in enumerate(layers):
        with torch.no_grad():
            m.c.fill_(0.1 * (i + 1))
        xx, yy = torch.randn(64, m.in_features), torch.randn(64, m.in_features)
        assert ((m(xx) - m(yy)).abs().amax(-1) <= m.bound() * (xx - yy).abs().amax(-1) + 1e-6).all()
    want = torch.stack(
        [torch.nn.functional.softplus(torch.tensor(0.1 * (i + 1))) for i in range(4)]
    ).prod()
    loss = lipschitz_loss(mlp)
    assert torch.allclose(loss, want)
    assert len(lipschitz_bounds(mlp)) == 4
    loss.backward()
    assert all(m.c.grad is not None and m.c.grad > 0 for m in layers)
    # The whole network is then softplus-product Lipschitz (ReLU is 1-Lipschitz).
    xx, yy = torch.randn(64, 5), torch.randn(64, 5)
    assert ((mlp(xx) - mlp(yy)).abs().amax(-1) <= want * (xx - yy).abs().amax(-1) + 1e-6).all()
    assert lipschitz_loss(torch.nn.Linear(2, 2)).item() == 1.0


def test_mlp_skips_and_shapes():
    mlp = make_mlp(7, 16, 8, 4, skips=(4,))
    assert mlp.layers[4].in_features == 16 + 7
    assert mlp(torch.randn(10, 7)).shape == (10, 4)
    assert mlp(torch.randn(0, 7)).shape == (0, 4)


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_se3_exp_closed_forms():
    # Pure rotation about z and about an arbitrary axis (Rodrigues).
    for a in (0.0, 1e-6, 0.3, math.pi / 2, 2.5):
        rot, t = se3_exp(torch.tensor([0.0, 0.0, a, 0.0, 0.0, 0.0]))
        assert torch.allclose(rot, _rot_z(a), atol=1e-6)
        assert torch.allclose(t, torch.zeros(3))
    axis = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -0.5]), dim=0)
    ang = 1.1
    k = skew(axis)
    want = torch.eye(3) + math.sin(ang) * k + (1 - math.cos(ang)) * k @ k
    assert torch.allclose(so3_exp(axis * ang), want, atol=1e-6)
    # Pure translation.
    rot, t = se3_exp(torch.tensor([0.0, 0.0, 0.0, 0.4, -1.0, 2.0]))
    assert torch.allclose(rot, torch.eye(3)) and torch.allclose(t, torch.tensor([0.4, -1.0, 2.0]))
    # General twists agree with the matrix exponential of the 4x4 twist matrix.
    torch.manual_seed(0)
    tw = torch.randn(16, 6, dtype=torch.float64)
    tw[:4, :3] *= 1e-5  # near-zero rotation uses the Taylor branch
    rot, t = se3_exp(tw)
    m = torch.zeros(16, 4, 4, dtype=torch.float64)
    m[:, :3, :3] = skew(tw[:, :3])
    m[:, :3, 3] = tw[:, 3:]
    e = torch.linalg.matrix_exp(m)
    assert torch.allclose(rot, e[:, :3, :3], atol=1e-10) and torch.allclose(
        t, e[:, :3, 3], atol=1e-10
    )
    # Finite gradients at exactly zero rotation.
    z = torch.zeros(6, requires_grad=True)
    r, tt = se3_exp(z)
    (r.sum() + tt.sum()).backward()
    assert torch.isfinite(z.grad).all()


def test_deformation_fields_start_near_identity_and_train():
    torch.manual_seed(0)
    pts = torch.randn(32, 3)
    code = torch.randn(8)
    for cls in (TranslationField, SE3Field):
        field = cls(code_dim=8, n_freqs=4, hidden=32, depth=3, skips=())
        out = field(pts, code, alpha=2.0)
        assert out.shape == (32, 3)
        assert (out - pts).abs().max() < 1e-2
        (out - pts - 0.1).pow(2).mean().backward()
        assert all(p.grad is not None for p in field.parameters() if p.requires_grad)
    se3 = SE3Field(code_dim=0, n_freqs=2, hidden=16, depth=2, skips=())
    assert se3.twist(pts).shape == (32, 6)
    assert se3(pts, None).shape == (32, 3)
