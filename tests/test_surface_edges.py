"""Surface metrics on edge inputs: thin and tiny images, border-touching and far-apart objects, extreme spacing,
huge sparse volumes, input forms, ignore/background/empty rules and streaming with uneven batches.

Expected values come from a brute-force NumPy reference written here (every boundary element against every other,
float64), from hand-derived numbers, or from the independent peers (DeepMind ``surface_distance``, medpy, MONAI)
under the argument mappings stated in the docstrings; a peer's test is skipped when it is absent.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage

from seglosses.metrics import SegmentationMetrics, asd, assd, boundary_iou, hausdorff, masd, nsd
from seglosses.metrics import surface as surface_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FUNCS = {"hausdorff": hausdorff, "assd": assd, "masd": masd, "asd": asd, "nsd": nsd, "boundary_iou": boundary_iou}

# ------------------------------------------------------------------------------------------ brute-force reference


def _surfel_length(inside: list[tuple[int, int]], s0: float, s1: float) -> float:
    """Marching-squares length of a 2x2 cell from its inside corners (i, j)."""
    corner_cut = 0.5 * math.hypot(s0, s1)
    if len(inside) in (1, 3):
        return corner_cut
    if len(inside) == 2:
        (a0, a1), (b0, b1) = inside
        if a0 == b0:  # a row inside, a row outside: the piece crosses the cell along axis 1
            return s1
        if a1 == b1:
            return s0
        return 2 * corner_cut  # diagonal cell: two corner pieces
    return 0.0


def ref_elements(mask: np.ndarray, sp: tuple[float, ...], boundary: str, conn: int = 1):
    """``(coords (K, n), weights (K,))`` of one mask's boundary elements (background outside the image)."""
    padded = np.pad(mask, 1)
    if boundary == "voxel":
        structure = ndimage.generate_binary_structure(mask.ndim, conn)
        border = padded & ~ndimage.binary_erosion(padded, structure=structure, border_value=0)
        coords = np.argwhere(border)
        return coords, np.ones(len(coords))
    assert mask.ndim == 2, "the 2D surfel reference only (3D: DeepMind)"
    coords, weights = [], []
    for i in range(padded.shape[0] - 1):
        for j in range(padded.shape[1] - 1):
            inside = [(a, b) for a in (0, 1) for b in (0, 1) if padded[i + a, j + b]]
            if 0 < len(inside) < 4:
                coords.append((i, j))
                weights.append(_surfel_length(inside, *sp))
    return np.array(coords).reshape(-1, 2), np.array(weights)


def ref_directed(a: np.ndarray, b: np.ndarray, sp: tuple[float, ...]) -> np.ndarray:
    """Distance from every point of ``a`` to the nearest point of ``b`` (every pair tried)."""
    delta = (a[:, None, :] - b[None, :, :]).astype(np.float64) * np.asarray(sp)
    return np.sqrt((delta**2).sum(-1)).min(1)


def ref_unit_quantile(d: np.ndarray, q: float) -> float:
    """The k-th smallest of n, k the least with k / n >= q / 100 (integer percentiles only), 1 at q = 0."""
    n = d.size
    k = next(k for k in range(1, n + 1) if 100 * k >= q * n)
    return float(np.sort(d)[k - 1])


def ref_value(kind: str, p: np.ndarray, g: np.ndarray, sp, boundary: str = "voxel", conn: int = 1, **kw: Any):
    ep, wp = ref_elements(p, sp, boundary, conn)
    eg, wg = ref_elements(g, sp, boundary, conn)
    d_pg, d_gp = ref_directed(ep, eg, sp), ref_directed(eg, ep, sp)
    if kind == "hausdorff":
        q = kw.get("percentile", 100)
        if q == 100:
            return max(d_pg.max(), d_gp.max())
        if q == 0:
            return max(d_pg.min(), d_gp.min())
        assert boundary == "voxel"
        if kw.get("quantile") == "linear":
            return max(float(np.percentile(d_pg, q)), float(np.percentile(d_gp, q)))
        return max(ref_unit_quantile(d_pg, q), ref_unit_quantile(d_gp, q))
    if kind == "assd":
        return (wp @ d_pg + wg @ d_gp) / (wp.sum() + wg.sum())
    if kind == "masd":
        return (wp @ d_pg / wp.sum() + wg @ d_gp / wg.sum()) / 2
    if kind == "asd":
        return wp @ d_pg / wp.sum() if kw.get("direction", "pred_to_gt") == "pred_to_gt" else wg @ d_gp / wg.sum()
    tau = kw["tolerance"]
    return (wp[d_pg <= tau].sum() + wg[d_gp <= tau].sum()) / (wp.sum() + wg.sum())


def ours(kind: str, p: np.ndarray, g: np.ndarray, **kw: Any) -> float:
    """One binary image given as ``(1, 1, *S)`` (so a spatial dim of 1 stays a spatial dim)."""
    x = torch.from_numpy(np.ascontiguousarray(p))[None, None]
    t = torch.from_numpy(np.ascontiguousarray(g))[None, None].long()
    return float(FUNCS[kind](x, t, mode="binary", **kw))


def close(a: float, b: float, rtol: float = 1e-9) -> bool:
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


def _pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        p = rng.random(shape) < rng.uniform(0.3, 0.8)
        g = rng.random(shape) < rng.uniform(0.3, 0.8)
        if p.any() and g.any():
            return p, g


def _corners(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.zeros(shape, bool), np.zeros(shape, bool)
    p[(0,) * len(shape)] = True
    g[tuple(s - 1 for s in shape)] = True
    return p, g


EDGE_SHAPES_2D = [(1, 9), (9, 1), (1, 1), (1, 2), (2, 2)]
EDGE_SHAPES_3D = [(1, 1, 1), (1, 4, 5), (2, 4, 5), (4, 1, 5), (4, 5, 2), (1, 1, 7)]
SPACINGS = {2: [(1.0, 1.0), (5.0, 0.3), (1e-3, 1.0), (1e3, 1.0)],
            3: [(1.0, 1.0, 1.0), (5.0, 0.3, 0.3), (1e-3, 1.0, 1.0), (1e3, 1.0, 1.0)]}  # fmt: skip


def _edge_pairs(nd: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    shapes = EDGE_SHAPES_2D if nd == 2 else EDGE_SHAPES_3D
    out = [(f"{s}-{k}", *_pair(s, 10 * k + len(s))) for s in shapes for k in range(3)]
    full = np.ones((3, 4) if nd == 2 else (2, 3, 4), bool)
    hole = full.copy()
    hole[(1,) * nd] = False
    out.append(("full-vs-hole", full, hole))  # both touch every border; the hole's surface is inside
    out.append(("full-vs-full", full, full))
    out.append(("opposite-corners", *_corners((9, 7) if nd == 2 else (6, 5, 4))))
    return out


# ------------------------------------------------------------------------------------------ edge shapes


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("boundary", ["voxel", "surfel"])
def test_edge_shapes_match_the_reference(nd: int, boundary: str) -> None:
    if nd == 3 and boundary == "surfel":
        pytest.skip("3D surface elements: test_peers_on_edge_shapes (DeepMind)")
    for name, p, g in _edge_pairs(nd):
        for sp in SPACINGS[nd]:
            for conn in range(1, nd + 1) if boundary == "voxel" else (1,):
                base = {"spacing": sp, "boundary": boundary, "connectivity": conn}
                cases: list[tuple[str, dict[str, Any]]] = [
                    ("hausdorff", {}), ("hausdorff", {"percentile": 0}), ("assd", {}), ("masd", {}), ("asd", {}),
                    ("asd", {"direction": "gt_to_pred"}), ("nsd", {"tolerance": 0.0}),
                    ("nsd", {"tolerance": 0.7 * max(sp)}), ("nsd", {"tolerance": 1e9}),
                ]  # fmt: skip
                if boundary == "voxel":
                    cases += [("hausdorff", {"percentile": 50}), ("hausdorff", {"percentile": 95}),
                              ("hausdorff", {"percentile": 99.9, "quantile": "linear"})]  # fmt: skip
                for kind, kw in cases:
                    got = ours(kind, p, g, **base, **kw)
                    want = float(ref_value(kind, p, g, sp, boundary, conn, **kw))
                    assert close(got, want), (name, sp, conn, kind, kw, got, want)


def test_hand_derived_tiny_cases() -> None:
    one = np.ones((1, 1), bool)
    for kind, want in (("hausdorff", 0.0), ("assd", 0.0), ("boundary_iou", 1.0)):
        assert ours(kind, one, one) == want
    assert ours("nsd", one, one, tolerance=0.0) == 1.0
    # 1x2 image, p = [1, 0], g = [0, 1], spacing (s0, s1): each pixel has 4 corner-cut elements (equal lengths),
    # 2 of them shared with the other pixel (distance 0), 2 one step along axis 1 away (distance s1)
    p, g = np.array([[True, False]]), np.array([[False, True]])
    sp = (3.0, 0.5)
    assert ours("hausdorff", p, g, spacing=sp) == 0.5
    assert ours("hausdorff", p, g, spacing=sp, percentile=50) == 0.0
    assert ours("assd", p, g, spacing=sp) == 0.25
    assert ours("nsd", p, g, spacing=sp, tolerance=0.0) == 0.5
    assert ours("nsd", p, g, spacing=sp, tolerance=0.5) == 1.0  # inclusive
    assert ours("hausdorff", p, g, spacing=sp, boundary="voxel") == 0.5
    assert ours("boundary_iou", p, g) == 0.0
    # the same in a 2x1 image: the step is along axis 0 now
    assert ours("hausdorff", p.T, g.T, spacing=sp) == 3.0
    # single pixels at opposite corners of a 9x7 image: P's 4 elements (cells (0..1, 0..1)) are at
    # distances 10, sqrt(89), sqrt(85), sqrt(74) from G's nearest cell (8, 6); G's likewise by symmetry
    p, g = _corners((9, 7))
    d = [10.0, math.sqrt(89), math.sqrt(85), math.sqrt(74)]
    assert ours("hausdorff", p, g) == 10.0
    assert close(ours("assd", p, g), sum(d) / 4)
    assert ours("hausdorff", p, g, percentile=0) == math.sqrt(74)
    assert ours("hausdorff", p, g, boundary="voxel") == 10.0
    # sqrt(74) = 8.60, sqrt(85) = 9.22 and sqrt(89) = 9.43 are within 9.5, 10 is not: 3 of 4 equal elements a side
    assert ours("nsd", p, g, tolerance=9.5) == 0.75


def test_1x1x1_volume_and_one_voxel_slabs() -> None:
    one = np.ones((1, 1, 1), bool)
    assert ours("hausdorff", one, one, spacing=(5.0, 0.3, 0.3)) == 0.0
    assert ours("nsd", one, one, tolerance=0.0) == 1.0
    # two voxels side by side in a 1x1x2 volume, spacing (s0, s1, s2): as the 1x2 image, in 3D the elements of
    # each voxel are its 8 corner cells; 4 are shared, the other 4 are one step of s2 away
    p, g = np.array([[[True, False]]]), np.array([[[False, True]]])
    sp = (2.0, 3.0, 0.25)
    assert ours("hausdorff", p, g, spacing=sp) == 0.25
    assert ours("hausdorff", p, g, spacing=sp, boundary="voxel") == 0.25
    assert ours("nsd", p, g, spacing=sp, tolerance=0.0) == 0.5


# ------------------------------------------------------------------------------------------ extreme spacing


def test_extreme_anisotropy_lists_few_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The near search chose its radius by listing every integer offset within 2 largest voxel sides: with a side
    # 1000 times the others that is 5 x 4001 x 4001 offsets (minutes and 8 GB for a 6x8x8 volume). The listing is
    # now bounded; the numbers are the reference's either way.
    listed = surface_module._shell_offsets

    def bounded(spacing: tuple[float, ...], radius: float) -> Any:
        box = math.prod(2 * int(radius // s) + 1 for s in spacing)
        assert box <= 10**5, (spacing, radius, box)
        return listed(spacing, radius)

    monkeypatch.setattr(surface_module, "_shell_offsets", bounded)
    surface_module._shell_radius.cache_clear()
    try:
        p = np.zeros((6, 8, 8), bool)
        p[2:4, 2:5, 2:5] = True
        g = np.zeros_like(p)
        g[2:5, 3:6, 2:5] = True
        for sp in ((1e3, 1.0, 1.0), (2.0, 1e3, 0.5), (1e6, 1.0, 1.0)):
            for kind, kw in (("hausdorff", {}), ("assd", {}), ("nsd", {"tolerance": 1.5})):
                got = ours(kind, p, g, spacing=sp, boundary="voxel", **kw)
                assert close(got, float(ref_value(kind, p, g, sp, "voxel", **kw))), (sp, kind)
        # two voxels one step apart along the long axis: every distance is that side
        a, b = np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool)
        a[0, 1, 1] = b[1, 1, 1] = True
        assert ours("hausdorff", a, b, spacing=(1e3, 1.0, 1.0), boundary="voxel") == 1e3
        assert ours("nsd", a, b, spacing=(1e3, 1.0, 1.0), boundary="voxel", tolerance=999.0) == 0.0
    finally:
        surface_module._shell_radius.cache_clear()


def test_sparse_volume_works_on_the_box() -> None:
    # two voxels in a 512^3 volume: the work is on their bounding box; NumPy allocates about one mask's worth
    # (the union whose box is taken), not a float map of the volume (8 bytes a voxel)
    n = 512
    p = torch.zeros(1, n, n, n, dtype=torch.bool)
    g = torch.zeros(1, n, n, n, dtype=torch.bool)
    p[0, 100, 100, 100] = True
    g[0, 100, 100, 101] = True
    tracemalloc.start()
    try:
        hd = hausdorff(p, g, mode="binary")
        biou = boundary_iou(p, g, mode="binary")
        vox = assd(p, g, mode="binary", boundary="voxel", spacing=(1.0, 1.0, 2.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # each voxel: 8 corner cells, 4 shared with the other, 4 one step away
    assert hd.item() == 1.0
    assert biou.item() == 0.0  # 1-voxel bands that do not overlap
    assert vox.item() == 2.0
    assert peak < 2 * n**3, peak


# ------------------------------------------------------------------------------------------ peers


def _onehot(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([~x, x]))[None].float()


@pytest.mark.parametrize("nd", [2, 3])
def test_peers_on_edge_shapes(nd: int) -> None:
    sd = pytest.importorskip("surface_distance")
    for name, p, g in _edge_pairs(nd):
        for sp in SPACINGS[nd]:
            dists = sd.compute_surface_distances(g, p, sp)
            for q in (0, 50, 95, 99.9, 100):
                want = sd.compute_robust_hausdorff(dists, q)
                assert close(ours("hausdorff", p, g, spacing=sp, percentile=q), want, 1e-12), (name, sp, q)
            gt_to_pred, pred_to_gt = sd.compute_average_surface_distance(dists)
            assert close(ours("asd", p, g, spacing=sp), pred_to_gt), (name, sp)
            assert close(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), gt_to_pred), (name, sp)
            for tau in (0.0, 0.7 * max(sp), 1e9):
                want = sd.compute_surface_dice_at_tolerance(dists, tau)
                assert close(ours("nsd", p, g, spacing=sp, tolerance=tau), want), (name, sp, tau)


@pytest.mark.parametrize("nd", [2, 3])
def test_medpy_on_edge_shapes(nd: int) -> None:
    mb = pytest.importorskip("medpy.metric.binary")
    for name, p, g in _edge_pairs(nd):
        for sp in SPACINGS[nd][:3]:
            for conn in range(1, nd + 1):
                v = {"spacing": sp, "boundary": "voxel", "connectivity": conn}
                want = mb.hd95(p, g, sp, conn)
                got = ours("hausdorff", p, g, percentile=95, directions="pooled", quantile="linear", **v)
                assert close(got, want), (name, sp, conn)
                assert close(ours("assd", p, g, **v), mb.assd(p, g, sp, conn)), (name, sp, conn)
                assert close(ours("asd", p, g, **v), mb.asd(p, g, sp, conn)), (name, sp, conn)


@pytest.mark.parametrize("nd", [2, 3])
def test_monai_on_edge_shapes(nd: int) -> None:
    mm = pytest.importorskip("monai.metrics")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, p, g in _edge_pairs(nd)[::2]:
            for sp in SPACINGS[nd][:3]:
                v = {"spacing": sp, "boundary": "voxel"}
                for q in (None, 50, 99.9):
                    want = float(mm.compute_hausdorff_distance(_onehot(p), _onehot(g), spacing=list(sp), percentile=q))
                    got = ours("hausdorff", p, g, percentile=q or 100, quantile="linear", **v)
                    # MONAI's distances and its interpolation position are float32 (99.9 % of a few hundred
                    # distances: 1e-6 of the position off); the float64 value is the reference's above
                    assert math.isclose(got, want, rel_tol=1e-6 if q != 99.9 else 1e-5), (name, sp, q)
                for sub in (False, True):
                    want = float(mm.compute_surface_dice(_onehot(p), _onehot(g), [1.0], spacing=list(sp),
                                                         use_subvoxels=sub))  # fmt: skip
                    kw = {"spacing": sp} if sub else v
                    assert math.isclose(ours("nsd", p, g, tolerance=1.0, **kw), want, rel_tol=1e-6), (name, sp, sub)


# ------------------------------------------------------------------------------------------ input forms and rules


def test_input_forms_give_the_same_numbers() -> None:
    rng = np.random.default_rng(4)
    probs = rng.random((2, 1, 7, 9))
    probs[0, 0, 3, :4] = 0.5  # exactly at the threshold: background (p > threshold)
    gt = rng.random((2, 1, 7, 9)) < 0.5
    hard = probs > 0.5
    want = [[float(ref_value("hausdorff", hard[i, 0], gt[i, 0], (1.0, 1.0)))] for i in range(2)]
    forms = {
        "float64 probabilities": (torch.from_numpy(probs), torch.from_numpy(gt).long(), {}),
        "float32 probabilities": (torch.from_numpy(probs).float(), torch.from_numpy(gt).float(), {}),
        "logits": (torch.logit(torch.from_numpy(probs)), torch.from_numpy(gt), {"from_logits": True}),
        "bool": (torch.from_numpy(hard), torch.from_numpy(gt), {}),
        "uint8": (torch.from_numpy(hard).to(torch.uint8), torch.from_numpy(gt).to(torch.uint8), {}),
        "int32": (torch.from_numpy(hard).int(), torch.from_numpy(gt).int(), {}),
        "(N, *S)": (torch.from_numpy(probs[:, 0]), torch.from_numpy(gt[:, 0]).long(), {}),
        "non-contiguous": (
            torch.from_numpy(np.ascontiguousarray(hard.transpose(0, 1, 3, 2))).transpose(2, 3),
            torch.from_numpy(np.ascontiguousarray(gt.transpose(0, 1, 3, 2))).transpose(2, 3),
            {},
        ),
    }
    for name, (x, t, kw) in forms.items():
        got = hausdorff(x, t, mode="binary", boundary="voxel", per_image=True, average="none", **kw)
        assert got.tolist() == want, name


def test_nan_input_raises() -> None:
    x = torch.full((1, 1, 4, 4), 0.9)
    x[0, 0, 1, 2] = math.nan
    t = torch.ones(1, 1, 4, 4, dtype=torch.long)
    for kw in ({}, {"from_logits": True}):
        with pytest.raises(ValueError, match=r"^hausdorff: `input` must not contain NaN; got 1 NaN values"):
            hausdorff(x, t, mode="binary", **kw)
    xm = torch.rand(1, 3, 4, 4)
    xm[0, :, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"^nsd: `input` must not contain NaN; got 3 NaN values"):
        nsd(xm, torch.zeros(1, 4, 4, dtype=torch.long), mode="multiclass", tolerance=1.0)


def test_ignore_index_covering_an_object_or_an_image() -> None:
    pred = torch.zeros(2, 6, 6, dtype=torch.long)
    tgt = torch.zeros(2, 6, 6, dtype=torch.long)
    pred[:, 1:3, 1:3] = 1
    tgt[:, 1:3, 1:4] = 1
    pred[:, 4:6, 4:6] = 2
    tgt[:, 4:6, 4:6] = 2
    tgt[0][tgt[0] == 2] = 255  # image 0: class 2's object ignored (its predicted pixels too): both empty
    tgt[1] = 255  # image 1 ignored: every class empty in both
    kw: dict[str, Any] = {"mode": "multiclass", "num_classes": 3, "ignore_index": 255, "per_image": True,
                          "average": "none", "boundary": "voxel"}  # fmt: skip
    p1, g1 = pred[0].numpy() == 1, tgt[0].numpy() == 1
    want_hd = float(ref_value("hausdorff", p1, g1, (1.0, 1.0)))
    assert hausdorff(pred, tgt, **kw).tolist() == [[want_hd, 0.0], [0.0, 0.0]]
    assert nsd(pred, tgt, tolerance=0.0, **kw)[:, 1].tolist() == [1.0, 1.0]
    got = hausdorff(pred, tgt, empty_both="nan", **{**kw, "average": "macro"})
    assert got.item() == want_hd  # the NaN cases left out of the means
    with pytest.raises(ValueError, match=r"^hausdorff: image 0, class 2: both masks empty \(empty_both='raise'\)$"):
        hausdorff(pred, tgt, empty_both="raise", **kw)


def test_include_background_per_mode_and_raise_names_the_class() -> None:
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.random((2, 3, 5, 6)) < 0.5)
    y = torch.from_numpy(rng.random((2, 3, 5, 6)) < 0.5)
    shapes = {None: 3, True: 3, False: 2}
    for ib, c in shapes.items():
        got = hausdorff(x, y, mode="multilabel", include_background=ib, boundary="voxel", per_image=True,
                        average="none")  # fmt: skip
        assert got.shape == (2, c)
        want = [[float(ref_value("hausdorff", x[i, k].numpy(), y[i, k].numpy(), (1.0, 1.0))) for k in range(3 - c, 3)]
                for i in range(2)]  # fmt: skip
        assert np.allclose(got.numpy(), want, rtol=1e-12)
        assert hausdorff(x[:, :1], y[:, :1], mode="binary", include_background=ib, average="none").shape == (1,)
    labels = torch.from_numpy(rng.integers(0, 3, (2, 5, 6)))
    for ib, c in {None: 2, True: 3, False: 2}.items():
        got = hausdorff(labels, labels, mode="multiclass", num_classes=3, include_background=ib, average="none")
        assert got.tolist() == [0.0] * c
    # multilabel without channel 0: the first kept channel is named 1
    z = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"^assd: image 0, class 1: both masks empty \(empty_both='raise'\)$"):
        assd(z, z.long(), mode="multilabel", include_background=False, empty_both="raise")
    z1 = z.clone()
    z1[1, 2, 0, 0] = 1
    with pytest.raises(ValueError, match=r"^assd: image 1, class 2: prediction empty \(empty_one='raise'\)$"):
        assd(z, z1.long(), mode="multilabel", empty_one="raise")


def test_connectivity_accepts_numpy_ints() -> None:
    # the other numbers of these functions accept NumPy scalars; connectivity was a TypeError ('got int64')
    p, g = _pair((6, 7), 3)
    for conn in (1, 2):
        want = float(ref_value("hausdorff", p, g, (1.0, 1.0), "voxel", conn))
        assert ours("hausdorff", p, g, boundary="voxel", connectivity=np.int64(conn)) == want
    with pytest.raises(TypeError, match=r"^hausdorff: `connectivity` must be an int; got float$"):
        ours("hausdorff", p, g, boundary="voxel", connectivity=1.0)
    with pytest.raises(TypeError, match=r"^hausdorff: `connectivity` must be an int; got bool$"):
        ours("hausdorff", p, g, boundary="voxel", connectivity=np.bool_(True))


# ------------------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("average", ["none", "macro"])
def test_streaming_uneven_batches_equal_the_reference(per_image: bool, average: str) -> None:
    rng = np.random.default_rng(11)
    n, c, sp, tau = 6, 3, (1.5, 0.5), 0.8
    scores = torch.from_numpy(rng.normal(size=(n, c, 6, 5)))
    target = torch.from_numpy(rng.integers(0, c, (n, 6, 5)))
    target[2] = 255  # an image wholly ignored: both masks empty in every class
    target[4, :3] = 255
    m = SegmentationMetrics(mode="multiclass", num_classes=c, metrics=("dice",), surface=("hd", "assd", "nsd"),
                            spacing=sp, tolerance=tau, average=average, per_image=per_image, ignore_index=255,
                            include_background=False)  # fmt: skip
    for lo, hi in ((0, 1), (1, 5), (5, 5), (5, 6)):  # uneven, one empty batch
        m.update(scores[lo:hi], target[lo:hi])
    got = m.compute()
    pred = scores.argmax(1).numpy()
    tg = target.numpy()
    valid = tg != 255
    for name, kind, kw, both, one in (("hd", "hausdorff", {}, 0.0, math.inf), ("assd", "assd", {}, 0.0, math.inf),
                                      ("nsd", "nsd", {"tolerance": tau}, 1.0, 0.0)):  # fmt: skip
        v = np.empty((n, c - 1))
        for i in range(n):
            for k in range(1, c):
                p, g = (pred[i] == k) & valid[i], tg[i] == k
                if p.any() and g.any():
                    v[i, k - 1] = ref_value(kind, p, g, sp, "surfel", **kw)
                else:
                    v[i, k - 1] = both if not p.any() and not g.any() else one
        if per_image:
            want = v if average == "none" else v.mean(1).mean(0)
        else:
            want = v.mean(0) if average == "none" else v.mean(0).mean()
        assert got[name].shape == np.shape(want), name
        np.testing.assert_allclose(got[name].numpy(), want, rtol=1e-9, err_msg=name)


@pytest.mark.parametrize(("q", "n", "k"), [(1.1, 3000, 33), (99.9, 41000, 40959), (95, 20, 19), (0.5, 200, 1)])
def test_unit_weight_percentiles_are_exact_for_decimal_percentiles(q: float, n: int, k: int) -> None:
    """With unit weights the q-th percentile is the k-th smallest, k = ceil(q n / 100) in exact decimals.

    1.1 % of 3000 is 33 exactly (float arithmetic: 33.000000000000004, the 34th); 99.9 % of 41000 is 40959.
    """
    from seglosses.metrics.surface import _weighted_quantile

    d = np.random.default_rng(0).permutation(np.arange(1, n + 1, dtype=np.float64))
    assert _weighted_quantile(d, None, q, "inverted_cdf") == float(k)
