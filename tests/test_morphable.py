"""Morphable models: restricted FLAME unpickling, blend shapes, skinning, landmarks, in_head."""

from __future__ import annotations

import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from facebench.errors import FacebenchError
from facebench.morphable import (
    FlameModel,
    UnsafePickleError,
    convert_flame_to_npz,
    load_flame_pickle,
    winding_number,
)

# ------------------------------------------------------------------------------------------
# A FLAME-structured fixture: an octahedron "head" with 400 blend-shape columns, 5 joints.

N_V = 6
OCTA_V = 0.1 * np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
# outward-oriented faces (counter-clockwise seen from outside)
OCTA_F = np.array(
    [
        [0, 2, 4],
        [2, 1, 4],
        [1, 3, 4],
        [3, 0, 4],
        [2, 0, 5],
        [1, 2, 5],
        [3, 1, 5],
        [0, 3, 5],
    ],
    dtype=np.uint32,
)


def _fixture_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapedirs = np.zeros((N_V, 3, 400))
    shapedirs[:, :, :300] = rng.normal(scale=0.01, size=(N_V, 3, 300))
    shapedirs[:, :, 300:] = rng.normal(scale=0.01, size=(N_V, 3, 100))
    shapedirs[:, 1, 300] = 0.0
    shapedirs[0, 1, 300] = 1.0  # expression 0 lifts vertex 0 along +y, no other y
    j_reg = np.zeros((5, N_V))
    j_reg[0, :] = 1.0 / N_V  # root at the centroid (origin)
    j_reg[1, 2] = 1.0  # neck at the top vertex
    j_reg[2, 3] = 1.0  # jaw at the bottom vertex
    j_reg[3, 0] = 1.0
    j_reg[4, 1] = 1.0
    weights = np.zeros((N_V, 5))
    weights[:, 0] = 1.0
    weights[3] = [0.0, 0.0, 1.0, 0.0, 0.0]  # bottom vertex follows the jaw
    return {
        "v_template": OCTA_V.copy(),
        "shapedirs": shapedirs,
        "posedirs": rng.normal(scale=0.001, size=(N_V, 3, 36)),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": OCTA_F,
    }


class _FakeCh:
    """Pickles like chumpy's Ch: protocol-2 NEWOBJ + a __dict__ state holding ``x``."""

    def __init__(self, x):
        self.x = x
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False


class _FakeCsc:
    """Pickles like an old scipy ``csc_matrix`` (module scipy.sparse.csc)."""

    def __init__(self, dense):
        dense = np.asarray(dense)
        data, indices, indptr = [], [], [0]
        for c in range(dense.shape[1]):
            rows = np.nonzero(dense[:, c])[0]
            data.extend(dense[rows, c])
            indices.extend(rows)
            indptr.append(len(data))
        self._shape = dense.shape
        self.maxprint = 50
        self.data = np.array(data)
        self.indices = np.array(indices, dtype=np.int32)
        self.indptr = np.array(indptr, dtype=np.int32)


@pytest.fixture
def flame_pickle(tmp_path, monkeypatch):
    """A FLAME-2020-structured chumpy pickle made with stand-in chumpy/scipy classes."""
    ch_mod = types.ModuleType("chumpy.ch")
    pkg = types.ModuleType("chumpy")
    csc_mod = types.ModuleType("scipy.sparse.csc")
    _FakeCh.__module__, _FakeCh.__qualname__ = "chumpy.ch", "Ch"
    _FakeCsc.__module__, _FakeCsc.__qualname__ = "scipy.sparse.csc", "csc_matrix"
    ch_mod.Ch, csc_mod.csc_matrix = _FakeCh, _FakeCsc
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    monkeypatch.setitem(sys.modules, "scipy.sparse.csc", csc_mod)
    for name in ("scipy", "scipy.sparse"):
        if name not in sys.modules:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    a = _fixture_arrays()
    model = {
        "v_template": _FakeCh(a["v_template"]),
        "shapedirs": _FakeCh(a["shapedirs"]),
        "posedirs": a["posedirs"],
        "J_regressor": _FakeCsc(a["J_regressor"]),
        "weights": _FakeCh(a["weights"]),
        "kintree_table": a["kintree_table"],
        "f": a["f"],
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "J": a["J_regressor"] @ a["v_template"],
    }
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=2))
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_restricted_unpickler_loads_the_fixture(flame_pickle):
    raw = load_flame_pickle(flame_pickle)
    a = _fixture_arrays()
    assert set(raw) >= {"v_template", "shapedirs", "J_regressor", "weights", "f", "bs_style"}
    np.testing.assert_array_equal(raw["v_template"], a["v_template"])
    np.testing.assert_array_equal(raw["shapedirs"], a["shapedirs"])
    np.testing.assert_array_equal(raw["J_regressor"], a["J_regressor"])  # csc -> dense
    assert raw["bs_style"] == "lbs"


def test_restricted_unpickler_reads_a_real_scipy_csc_matrix():
    sparse = pytest.importorskip("scipy.sparse")
    dense = np.array([[0.0, 2.0, 0.0], [1.5, 0.0, 0.0], [0.0, 0.0, -3.0]])
    blob = pickle.dumps({"J_regressor": sparse.csc_matrix(dense)}, protocol=2)
    np.testing.assert_array_equal(load_flame_pickle(blob)["J_regressor"], dense)


@pytest.mark.parametrize("evil", [_Evil(), _EvalEvil()])
def test_restricted_unpickler_refuses_code(tmp_path, evil):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": evil}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refusing to load evil\.pkl: it references") as e:
        load_flame_pickle(path)
    assert "\n" not in str(e.value)
    assert isinstance(e.value, FacebenchError)


def test_npz_conversion_round_trip(flame_pickle, tmp_path):
    out = convert_flame_to_npz(flame_pickle, tmp_path / "flame.npz")
    with np.load(out, allow_pickle=False) as z:
        assert z["shapedirs"].shape == (N_V, 3, 400)
        assert z["J_regressor"].dtype == np.float32
    m_pkl = FlameModel.load(flame_pickle, n_shape=2, n_expr=3)
    m_npz = FlameModel.load(out, n_shape=2, n_expr=3)
    beta, psi = torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.5, -1.0])
    torch.testing.assert_close(m_pkl.vertices(beta, psi), m_npz.vertices(beta, psi))


def test_flame_blend_shapes_expected_vertices(flame_pickle):
    m = FlameModel.load(flame_pickle, n_shape=2, n_expr=3)
    a = _fixture_arrays()
    v0 = m.vertices()
    np.testing.assert_allclose(v0.numpy(), a["v_template"], atol=1e-7)
    # expression 0 = 0.5 lifts vertex 0 by exactly 0.5 in y, other y's unchanged
    v = m.vertices(expression=torch.tensor([0.5, 0.0, 0.0]))
    assert v[0, 1].item() == pytest.approx(0.5, abs=1e-6)
    assert torch.equal(v[1:, 1], v0[1:, 1])
    beta, psi = np.array([0.3, -0.2]), np.array([0.1, 0.5, -1.0])
    expect = a["v_template"] + a["shapedirs"][:, :, :2] @ beta + a["shapedirs"][:, :, 300:303] @ psi
    got = m.vertices(
        torch.tensor(beta, dtype=torch.float32), torch.tensor(psi, dtype=torch.float32)
    )
    np.testing.assert_allclose(got.numpy(), expect, atol=1e-6)
    # batched parameters give batched vertices
    assert m.vertices(expression=torch.zeros(4, 3)).shape == (4, N_V, 3)


def test_flame_pose_zero_is_rest_and_global_rotation_rotates(flame_pickle):
    m = FlameModel.load(flame_pickle, n_shape=2, n_expr=3)
    rest = m.vertices()
    torch.testing.assert_close(m.vertices(pose=torch.zeros(15)), rest)
    pose = torch.zeros(15)
    pose[1] = math.pi / 2  # global rotation of 90 degrees about +y: x -> -z
    v = m.vertices(pose=pose)
    # vertex 0 (+x, skinned to the root at the origin) goes to -z, up to pose correctives
    assert v[0].tolist() == pytest.approx([0.0, 0.0, -0.1], abs=0.01)


def test_flame_landmarks_from_embedding_and_vertex_ids(flame_pickle, tmp_path):
    emb = tmp_path / "emb.npz"
    np.savez(emb, lmk_faces_idx=np.array([0, 4]), lmk_b_coords=np.array([[1, 0, 0], [0, 0.5, 0.5]]))
    m = FlameModel.load(flame_pickle, n_shape=2, n_expr=3, landmarks=emb)
    lmk = m.landmarks()
    torch.testing.assert_close(lmk[0], torch.tensor([0.1, 0.0, 0.0]))  # vertex 0
    torch.testing.assert_close(
        lmk[1], torch.tensor([0.05, 0.0, -0.05])
    )  # face [2, 0, 5]: mid of v0, v5
    m2 = FlameModel.load(flame_pickle, n_shape=2, n_expr=3, landmark_vertex_ids=[2, 3])
    torch.testing.assert_close(m2.landmarks()[:, 1], torch.tensor([0.1, -0.1]))
    m3 = FlameModel.load(flame_pickle, n_shape=2, n_expr=3)
    with pytest.raises(FacebenchError, match="no landmark embedding"):
        m3.landmarks()


def test_winding_number_and_flame_in_head(flame_pickle):
    m = FlameModel.load(flame_pickle, n_shape=2, n_expr=3, margin=0.01)
    pts = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # centre: inside
            [0.03, 0.03, 0.03],  # |x|+|y|+|z| = 0.09 < 0.1: inside
            [0.05, 0.05, 0.05],  # 0.15: outside, 0.087 from vertices
            [0.105, 0.0, 0.0],  # outside the surface but within the margin of vertex 0
            [0.3, 0.0, 0.0],  # far outside
        ]
    )
    wn = winding_number(pts, m.vertices(), m.faces)
    assert wn[0].item() == pytest.approx(1.0, abs=1e-5)
    assert wn[4].item() == pytest.approx(0.0, abs=1e-5)
    assert m.in_head(pts).tolist() == [True, True, False, True, False]


# ------------------------------------------------------------------------------------------
# SynthHead through the same interface


def test_synthhead_in_head_known_points_and_landmarks():
    from facebench.datasets.synthhead_morphable import SynthHeadModel
    from facebench.morphable import MorphableModel

    m = SynthHeadModel()
    assert isinstance(m, MorphableModel)
    assert m.n_expr == len(m.expression_names) and m.expression_range == (0.0, 1.0)
    pts = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # centre of the skull
            [0.0, 0.1, 0.95],  # just behind the nose bridge
            [0.0, -2.0, -0.2],  # inside the neck
            [0.0, 0.0, 3.0],  # in front of the face (camera side)
            [0.0, 0.0, -1.69],  # on the backdrop plane
            [2.5, 0.0, 0.0],  # beside the head
        ]
    )
    assert m.in_head(pts).tolist() == [True, True, True, False, False, False]
    assert torch.equal(m.in_head(pts), m.head.in_head(pts))  # same test at the neutral face
    lmk = m.landmarks()
    assert lmk.shape == (5, 3)
    assert lmk[0, 0].item() == pytest.approx(-lmk[1, 0].item())  # eyes symmetric in x


# ------------------------------------------------------------------------------------------
# A capture with per-frame FLAME parameters (flame_params.npz)


def test_flame_params_file_reorders_by_frame_id_and_places_flame(flame_pickle, tmp_path):
    import json
    import types

    from facebench.methods.flame_nerf import scene_expressions
    from facebench.morphable import PlacedFlame, load_flame_params, scene_morphable

    ids = ["f0", "f1", "f2"]
    (tmp_path / "dataset.json").write_text(json.dumps({"ids": ids, "train_ids": ids}))
    (tmp_path / "scene.json").write_text(json.dumps({"scale": 2.0, "center": [0.0, 0.0, 1.0]}))
    expr = np.array([[0.2, 0, 0], [0.0, 0.1, 0], [0.0, 0, 0.3]], dtype=np.float32)
    to_world = np.eye(4, dtype=np.float32)
    to_world[:3, 3] = [0.0, 0.0, 1.0]  # FLAME head at z = 1 in the capture's world
    np.savez(
        tmp_path / "flame_params.npz",
        frame_ids=np.array(["f2", "f0", "f1"]),  # stored out of order
        expression=expr[[2, 0, 1]],
        shape=np.zeros(2, dtype=np.float32),
        flame_to_world=to_world,
    )
    params = load_flame_params(tmp_path / "flame_params.npz", ids)
    np.testing.assert_array_equal(params.expression.numpy(), expr)
    with pytest.raises(FacebenchError, match="no parameters for frame"):
        load_flame_params(tmp_path / "flame_params.npz", ["f0", "nope"])

    scene = types.SimpleNamespace(
        expressions=None, images=torch.zeros(3, 4, 4, 3), meta={"path": str(tmp_path)}
    )
    got, names = scene_expressions(scene)
    assert torch.equal(got, torch.from_numpy(expr)) and names == ("psi0", "psi1", "psi2")
    model = scene_morphable(scene, {"flame_model": str(flame_pickle)})
    assert isinstance(model, PlacedFlame)
    # capture world z=1 is FLAME's origin; facebench normalises (p - center) * scale -> origin
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.19, 0.0, 0.0], [0.3, 0.0, 0.0]])
    assert model.in_head(pts).tolist() == [True, True, False]  # octahedron radius 0.1 * 2
