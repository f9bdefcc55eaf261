"""Surface metrics (HD, HD95, ASSD, MASD, ASD, NSD, boundary IoU) against independent references.

- A NumPy float64 reference written here from the definitions: boundary elements (surfel mode: the 2x2 / 2x2x2
  cells of the mask padded by background whose corners differ, weighted by the length of their marching-squares
  piece (2D, table written here) or the area of their marching-cubes surface (3D, DeepMind's table of normals);
  voxel mode: the mask minus its ``scipy.ndimage.binary_erosion``), the exact Euclidean distance transform of the
  other boundary (``distance_transform_edt`` on the whole padded grid) read at each element, and the formulas.
- DeepMind's ``surface_distance`` (surfel mode), MONAI and medpy (voxel mode) under the mapped arguments, on random
  2D/3D masks with anisotropic spacing and objects touching the image border.
- DeepMind's and MONAI's own test vectors (the values written in their test files).
- Properties (hypothesis), the empty-mask rules and the error messages.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from seglosses.metrics import asd, assd, boundary_iou, hausdorff, masd, nsd

surface_distance = pytest.importorskip("surface_distance")
monai_metrics = pytest.importorskip("monai.metrics")
medpy_binary = pytest.importorskip("medpy.metric.binary")
from surface_distance import lookup_tables  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface_distance's scipy.ndimage.* calls

RTOL = 1e-6
SETTINGS = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------------------ NumPy reference


def _length_table_2d(spacing: tuple[float, ...]) -> np.ndarray:
    """Marching-squares contour length of each 2x2 cell code (bit of corner (i, j) = 2 ** (2 i + j))."""
    s0, s1 = spacing
    diag = 0.5 * math.hypot(s0, s1)  # a piece cutting one corner joins two edge midpoints
    table = np.zeros(16)
    for code in range(16):
        inside = [(i, j) for i in (0, 1) for j in (0, 1) if code >> (2 * i + j) & 1]
        if len(inside) in (1, 3):
            table[code] = diag
        elif len(inside) == 2:
            (a0, a1), (b0, b1) = inside
            if a0 == b0:  # the two inside corners share a row: the piece runs along axis 1
                table[code] = s1
            elif a1 == b1:  # they share a column: the piece runs along axis 0
                table[code] = s0
            else:  # diagonal (ambiguous) cell: two corner pieces
                table[code] = 2 * diag
    return table


@functools.cache
def _area_table_3d(spacing: tuple[float, ...]) -> np.ndarray:
    """Marching-cubes area of each 2x2x2 cell code, with bit of corner (i, j, k) = 2 ** (4 i + 2 j + k).

    The areas are DeepMind's table of normals (an independent source), indexed by their corner weights
    ``ENCODE_NEIGHBOURHOOD_3D_KERNEL[i, j, k]``.
    """
    theirs = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL
    table = np.zeros(256)
    for code in range(256):
        their_code = sum(
            int(kernel[i, j, k]) for i in (0, 1) for j in (0, 1) for k in (0, 1) if code >> (4 * i + 2 * j + k) & 1
        )
        table[code] = theirs[their_code]
    return table


def ref_elements(mask: np.ndarray, spacing: tuple[float, ...], boundary: str, connectivity: int = 1):
    """``(grid of boundary elements, weights on that grid)`` of one mask, on the grid of the padded mask's cells."""
    nd = mask.ndim
    padded = np.pad(mask, 1)
    if boundary == "voxel":
        structure = ndimage.generate_binary_structure(nd, connectivity)
        border = padded & ~ndimage.binary_erosion(padded, structure=structure, border_value=0)
        return border, border.astype(np.float64)
    cells = tuple(s - 1 for s in padded.shape)
    code = np.zeros(cells, dtype=np.int64)
    for corner in np.ndindex(*(2,) * nd):
        bit = 2 * corner[0] + corner[1] if nd == 2 else 4 * corner[0] + 2 * corner[1] + corner[2]
        view = padded[tuple(slice(o, o + c) for o, c in zip(corner, cells, strict=True))]
        code += view.astype(np.int64) << bit
    full = (1 << (1 << nd)) - 1
    border = (code != 0) & (code != full)
    table = _length_table_2d(spacing) if nd == 2 else _area_table_3d(spacing)
    return border, np.where(border, table[code], 0.0)


def ref_distances(p: np.ndarray, g: np.ndarray, spacing, boundary: str, connectivity: int = 1):
    """``(d_pg, w_p, d_gp, w_g)``: distances (exact EDT of the other boundary) and weights of each element."""
    bp, wp = ref_elements(p, spacing, boundary, connectivity)
    bg, wg = ref_elements(g, spacing, boundary, connectivity)
    dist_to_g = ndimage.distance_transform_edt(~bg, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~bp, sampling=spacing)
    return dist_to_g[bp], wp[bp], dist_to_p[bg], wg[bg]


def ref_quantile(d: np.ndarray, w: np.ndarray, q: float, method: str) -> float:
    """Inverted CDF (the smallest distance x with weight fraction of {d <= x} >= q / 100) or NumPy's linear."""
    if method == "linear":
        return float(np.percentile(d, q))
    values = np.unique(d)
    if np.all(w == 1.0):  # unit weights: an exact integer comparison
        counts = np.array([np.count_nonzero(d <= v) for v in values])
        return float(values[np.argmax(counts * 100 >= q * d.size)])
    fractions = np.array([w[d <= v].sum() for v in values]) / w.sum()
    return float(values[np.argmax(fractions >= q / 100 - 1e-12)])


def ref_value(kind: str, p: np.ndarray, g: np.ndarray, spacing, boundary="surfel", connectivity=1, **kw: Any) -> float:
    """One image and class; the default empty rules of the functions (overridable through ``kw``)."""
    empty_both = kw.get("empty_both", 1.0 if kind in ("nsd", "boundary_iou") else 0.0)
    empty_one = kw.get("empty_one", 0.0 if kind in ("nsd", "boundary_iou") else math.inf)
    if not p.any() or not g.any():
        rule = empty_both if not p.any() and not g.any() else empty_one
        return math.nan if rule == "nan" else float(rule)
    if kind == "boundary_iou":
        return ref_boundary_iou(p, g, kw.get("dilation"))
    d_pg, w_p, d_gp, w_g = ref_distances(p, g, spacing, boundary, connectivity)
    if kind == "hausdorff":
        q, method = kw.get("percentile", 100.0), kw.get("quantile", "inverted_cdf")
        if kw.get("directions", "max") == "pooled":
            return ref_quantile(np.concatenate([d_pg, d_gp]), np.concatenate([w_p, w_g]), q, method)
        return max(ref_quantile(d_pg, w_p, q, method), ref_quantile(d_gp, w_g, q, method))
    if kind == "assd":
        return float((w_p @ d_pg + w_g @ d_gp) / (w_p.sum() + w_g.sum()))
    if kind == "masd":
        return float((w_p @ d_pg / w_p.sum() + w_g @ d_gp / w_g.sum()) / 2)
    if kind == "asd":
        if kw.get("direction", "pred_to_gt") == "pred_to_gt":
            return float(w_p @ d_pg / w_p.sum())
        return float(w_g @ d_gp / w_g.sum())
    tau = kw["tolerance"]
    return float((w_p[d_pg <= tau].sum() + w_g[d_gp <= tau].sum()) / (w_p.sum() + w_g.sum()))


def ref_band(x: np.ndarray, d: int) -> np.ndarray:
    """Boundary IoU's band, as the official code: erode the mask padded by one zero pixel d times (3x3...)."""
    padded = np.pad(x, 1)
    structure = np.ones((3,) * x.ndim, dtype=bool)
    eroded = ndimage.binary_erosion(padded, structure=structure, iterations=d, border_value=1)
    return x & ~eroded[(slice(1, -1),) * x.ndim]


def ref_boundary_iou(p: np.ndarray, g: np.ndarray, d: int | None) -> float:
    if d is None:
        d = max(1, int(round(0.02 * math.sqrt(sum(s * s for s in p.shape)))))
    bp, bg = ref_band(p, d), ref_band(g, d)
    return float(np.count_nonzero(bp & bg) / np.count_nonzero(bp | bg))


FUNCS = {"hausdorff": hausdorff, "assd": assd, "masd": masd, "asd": asd, "nsd": nsd, "boundary_iou": boundary_iou}


def ours(kind: str, p: np.ndarray, g: np.ndarray, **kw: Any) -> float:
    """Our value for one binary image (masks as NumPy bool arrays)."""
    tp, tg = torch.from_numpy(p)[None], torch.from_numpy(g)[None].long()
    return float(FUNCS[kind](tp, tg, mode="binary", **kw))


def rand_mask(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.45) -> np.ndarray:
    """Random blobs (an opened random field) or speckle, touching the border more often than not."""
    x = rng.random(shape) < density
    if rng.random() < 0.6:
        x = ndimage.binary_closing(x, border_value=0) | x
        x = ndimage.binary_opening(x, border_value=0) if x.sum() > 8 else x
    return x


def rand_pair(seed: int, nd: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 10 if nd == 2 else 7, nd))
    while True:
        p, g = rand_mask(rng, shape), rand_mask(rng, shape)
        if p.any() and g.any():
            break
    spacing = tuple(float(v) for v in np.round(rng.uniform(0.4, 2.5, nd), 2))
    return p, g, spacing


def close(a: float, b: float, rtol: float = RTOL) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


SEEDS = range(6)

# ------------------------------------------------------------------------------------------ the NumPy reference


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("boundary", ["surfel", "voxel"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_numpy_reference(nd: int, boundary: str, seed: int) -> None:
    p, g, sp = rand_pair(seed, nd)
    conn = 1 + seed % nd if boundary == "voxel" else 1
    base = {"spacing": sp, "boundary": boundary, "connectivity": conn}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("hausdorff", {}),
        ("hausdorff", {"percentile": 95}),
        ("hausdorff", {"percentile": 50, "directions": "pooled"}),
        ("hausdorff", {"percentile": 0}),
        ("assd", {}),
        ("masd", {}),
        ("asd", {}),
        ("asd", {"direction": "gt_to_pred"}),
        ("nsd", {"tolerance": 0.0}),
        ("nsd", {"tolerance": 1.3}),
        ("nsd", {"tolerance": float(sp[0])}),  # exactly at a grid distance: inclusive
    ]
    if boundary == "voxel":
        cases += [
            ("hausdorff", {"percentile": 95, "quantile": "linear"}),
            ("hausdorff", {"percentile": 95, "quantile": "linear", "directions": "pooled"}),
        ]
    for kind, kw in cases:
        got = ours(kind, p, g, **base, **kw)
        want = ref_value(kind, p, g, sp, boundary, conn, **kw)
        assert close(got, want), (kind, kw, got, want)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_boundary_iou_matches_official_erosion(nd: int, seed: int) -> None:
    p, g, _ = rand_pair(seed, nd)
    for d in (None, 1, 2):
        assert close(ours("boundary_iou", p, g, dilation=d), ref_boundary_iou(p, g, d))


def test_boundary_iou_large_dilation_costs_nothing_more() -> None:
    # d beyond the box of P | G gives the same bands (every pixel is then in its band: the IoU of the masks); the
    # box was padded by d + 1 pixels and filtered with a (2d + 1)^3 window, so d = 10**4 wanted a 2 * 10**4 cube
    p = np.zeros((12, 12, 12), bool)
    p[2:8, 2:8, 2:8] = True
    g = np.zeros((12, 12, 12), bool)
    g[3:9, 2:8, 2:8] = True
    for d in (3, 5, 6, 10_000):
        assert close(ours("boundary_iou", p, g, dilation=d), ref_boundary_iou(p, g, d)), d
    assert ours("boundary_iou", p, g, dilation=10_000) == np.count_nonzero(p & g) / np.count_nonzero(p | g)


def test_boundary_iou_default_dilation_rounds_half_to_even() -> None:
    # 0.02 * diagonal: a 125 x 0 ... use a 2D image whose diagonal is 125 pixels: 2.5 -> 2 (Python's round)
    p = np.zeros((75, 100), dtype=bool)
    p[10:60, 10:70] = True
    g = np.zeros_like(p)
    g[14:64, 13:73] = True
    assert round(0.02 * math.hypot(75, 100)) == 2
    assert close(ours("boundary_iou", p, g), ref_boundary_iou(p, g, 2))
    assert not close(ours("boundary_iou", p, g), ref_boundary_iou(p, g, 3))


# ------------------------------------------------------------------------------------------ modes, averages, ignore


def _per_image_class(kind: str, pm: np.ndarray, gm: np.ndarray, sp, **kw: Any) -> np.ndarray:
    """``(N, K)`` reference values of masks ``(N, K, *S)``."""
    n, k = pm.shape[:2]
    return np.array([[ref_value(kind, pm[i, j], gm[i, j], sp, **kw) for j in range(k)] for i in range(n)])


def _reduce(v: np.ndarray, average: str, per_image: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if per_image:
            return v if average == "none" else np.nanmean(np.nanmean(v, 1), 0)
        per_class = np.nanmean(v, 0)
        return per_class if average == "none" else np.nanmean(per_class)


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("average", ["macro", "none"])
@pytest.mark.parametrize("per_image", [False, True])
def test_multiclass_multilabel_averages_and_ignore(nd: int, average: str, per_image: bool) -> None:
    rng = np.random.default_rng(nd + 10 * per_image)
    shape = (5, 6) if nd == 2 else (4, 5, 4)
    n, c = 3, 4
    labels = rng.integers(0, c, (n, *shape))
    labels[1, ..., :2] = 0  # an image where some classes may be missing
    pred = rng.integers(0, c, (n, *shape))
    pred[2][pred[2] == 3] = 1  # class 3 absent from image 2's prediction (an empty-one case)
    target = labels.copy()
    ignore = rng.random(labels.shape) < 0.15
    target[ignore] = 255
    sp = (1.5, 0.7) if nd == 2 else (2.0, 0.8, 1.1)
    # multiclass, class indices, ignored pixels background in both masks, background dropped (None)
    pm = np.stack([(pred == k) & ~ignore for k in range(1, c)], 1)
    gm = np.stack([(target == k) for k in range(1, c)], 1)
    for kind, kw in (("hausdorff", {"percentile": 95}), ("nsd", {"tolerance": 1.0}), ("assd", {"empty_one": "nan"})):
        want = _reduce(_per_image_class(kind, pm, gm, sp, **kw), average, per_image)
        got = FUNCS[kind](
            torch.from_numpy(pred),
            torch.from_numpy(target),
            mode="multiclass",
            num_classes=c,
            ignore_index=255,
            spacing=sp,
            average=average,
            per_image=per_image,
            **kw,
        )
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), want, rtol=RTOL)
    # multilabel probabilities with a threshold; every channel kept by default
    probs = rng.random((n, 3, *shape))
    tgt = (rng.random((n, 3, *shape)) < 0.4).astype(np.int64)
    pm, gm = probs > 0.3, tgt == 1
    want = _reduce(_per_image_class("masd", pm, gm, sp), average, per_image)
    got = masd(
        torch.from_numpy(probs),
        torch.from_numpy(tgt),
        mode="multilabel",
        threshold=0.3,
        spacing=sp,
        average=average,
        per_image=per_image,
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL)


def test_binary_logits_shapes_and_include_background() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 1, 6, 7))
    tgt = (rng.random((2, 1, 6, 7)) < 0.5).astype(np.int64)
    want = _reduce(_per_image_class("hausdorff", logits > 0.4, tgt == 1, (1.0, 1.0)), "none", True)
    got = hausdorff(
        torch.from_numpy(logits),
        torch.from_numpy(tgt),
        mode="binary",
        from_logits=True,
        threshold=1 / (1 + math.exp(-0.4)),
        per_image=True,
        average="none",
    )
    assert got.shape == (2, 1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9)
    # (N, *S) gives the same as (N, 1, *S)
    got2 = hausdorff(
        torch.from_numpy(logits[:, 0]), torch.from_numpy(tgt[:, 0]), mode="binary", from_logits=True, threshold=0.6
    )
    got1 = hausdorff(torch.from_numpy(logits), torch.from_numpy(tgt), mode="binary", from_logits=True, threshold=0.6)
    assert got1.item() == got2.item()
    # multiclass include_background=True adds class 0
    labels = torch.from_numpy(rng.integers(0, 3, (1, 6, 7)))
    pred = torch.from_numpy(rng.integers(0, 3, (1, 6, 7)))
    with_bg = nsd(
        pred, labels, mode="multiclass", num_classes=3, tolerance=1.0, include_background=True, average="none"
    )
    without = nsd(pred, labels, mode="multiclass", num_classes=3, tolerance=1.0, average="none")
    assert with_bg.shape == (3,)
    assert without.shape == (2,)
    assert torch.equal(with_bg[1:], without)
    want0 = ref_value("nsd", pred.numpy()[0] == 0, labels.numpy()[0] == 0, (1.0, 1.0), tolerance=1.0)
    assert close(with_bg[0].item(), want0)


# ------------------------------------------------------------------------------------------ DeepMind surface-distance


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_deepmind(nd: int, seed: int) -> None:
    p, g, sp = rand_pair(100 + seed, nd)
    dists = surface_distance.compute_surface_distances(g, p, sp)
    for q in (100, 95, 80, 50):
        assert close(
            ours("hausdorff", p, g, spacing=sp, percentile=q), surface_distance.compute_robust_hausdorff(dists, q)
        )
    gt_to_pred, pred_to_gt = surface_distance.compute_average_surface_distance(dists)
    assert close(ours("asd", p, g, spacing=sp), pred_to_gt)
    assert close(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), gt_to_pred)
    assert close(ours("masd", p, g, spacing=sp), (gt_to_pred + pred_to_gt) / 2)
    w_g, w_p = dists["surfel_areas_gt"], dists["surfel_areas_pred"]
    pooled = (w_g @ dists["distances_gt_to_pred"] + w_p @ dists["distances_pred_to_gt"]) / (w_g.sum() + w_p.sum())
    assert close(ours("assd", p, g, spacing=sp), pooled)
    for tau in (0.0, 0.5, 1.0, float(sp[-1]), 2.5):
        want = surface_distance.compute_surface_dice_at_tolerance(dists, tau)
        assert close(ours("nsd", p, g, spacing=sp, tolerance=tau), want)


def test_deepmind_vectors_2d() -> None:
    # surface_distance_test.py: two pixels 2 mm apart, spacing (2, 1)
    g = np.zeros((128, 128), bool)
    p = np.zeros((128, 128), bool)
    g[50, 70] = True
    p[50, 72] = True
    sp = (2.0, 1.0)
    assert close(ours("asd", p, g, spacing=sp), 1.5)
    assert close(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), 1.5)
    assert ours("hausdorff", p, g, spacing=sp) == 2.0
    assert ours("hausdorff", p, g, spacing=sp, percentile=95) == 2.0
    assert close(ours("nsd", p, g, spacing=sp, tolerance=1.0), 0.5)
    # two squares shifted by one pixel, spacing (2, 1): the element lists of their test, by hand
    g = np.zeros((6, 6), bool)
    g[1:3, 1:3] = True
    p = np.zeros((6, 6), bool)
    p[1:4, 1:3] = True
    vertical, horizontal = 2.0, 1.0
    diag = 0.5 * math.hypot(horizontal, vertical)
    w_g = np.array([diag, horizontal, diag, vertical, diag, horizontal, diag, vertical])
    w_p = np.array([diag, horizontal, diag, vertical, vertical, diag, horizontal, diag, vertical, vertical])
    d_gp = np.array([0] * 5 + [horizontal] + [0] * 2)
    d_pg = np.array([0] * 5 + [vertical] * 3 + [0] * 2)
    sp = (vertical, horizontal)
    assert close(ours("asd", p, g, spacing=sp), w_p @ d_pg / w_p.sum())
    assert close(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), w_g @ d_gp / w_g.sum())
    assert close(ours("hausdorff", p, g, spacing=sp), vertical)
    want_nsd = (w_p[d_pg <= 1].sum() + w_g[d_gp <= 1].sum()) / (w_p.sum() + w_g.sum())
    assert close(ours("nsd", p, g, spacing=sp, tolerance=1.0), want_nsd)
    # HD95 area-weighted: pred's elements at distance 2 weigh 2 + diag + 1 of 12 + 4 diag -> above 5 %
    assert close(ours("hausdorff", p, g, spacing=sp, percentile=95), vertical)


def test_deepmind_vectors_3d() -> None:
    g = np.zeros((128, 128, 128), bool)
    p = np.zeros((128, 128, 128), bool)
    g[50, 60, 70] = True
    p[50, 60, 72] = True
    sp = (3.0, 2.0, 1.0)
    assert close(ours("asd", p, g, spacing=sp), 1.5)
    assert close(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), 1.5)
    assert ours("hausdorff", p, g, spacing=sp) == 2.0
    assert ours("hausdorff", p, g, spacing=sp, percentile=95) == 2.0
    assert close(ours("nsd", p, g, spacing=sp, tolerance=1.0), 0.5)
    # two cubes (slabs cut by the image border) shifted by one pixel, spacing (2, 1, 1), 3 decimals in their test
    g = np.zeros((100, 100, 100), bool)
    p = np.zeros((100, 100, 100), bool)
    g[0:50] = True
    p[0:51] = True
    sp = (2.0, 1.0, 1.0)
    assert round(ours("asd", p, g, spacing=sp, direction="gt_to_pred"), 3) == 0.322
    assert round(ours("asd", p, g, spacing=sp), 3) == 0.339
    assert ours("hausdorff", p, g, spacing=sp) == 2.0
    assert ours("hausdorff", p, g, spacing=sp, percentile=95) == 2.0
    assert round(ours("nsd", p, g, spacing=sp, tolerance=1.0), 3) == 0.836


def test_unit_weight_percentile_is_exact_for_integer_percentiles() -> None:
    # the voxel rule: the k-th smallest of n distances, k the smallest integer with 100 k >= p n (integers only);
    # NumPy's inverted_cdf is off by one where n * (p / 100) rounds above an integer (p = 7, n = 100 -> 8th)
    from seglosses.metrics.surface import _weighted_quantile

    rng = np.random.default_rng(5)
    for n in range(1, 121):
        d = rng.permutation(np.arange(1, n + 1, dtype=np.float64))
        for q in range(101):
            k = max(1, next(k for k in range(n + 1) if 100 * k >= q * n))
            assert _weighted_quantile(d, None, float(q), "inverted_cdf") == k, (n, q)
    assert np.percentile(np.arange(1.0, 101.0), 7, method="inverted_cdf") == 8.0  # NumPy's rounding


def test_deepmind_percentile_at_a_tie() -> None:
    # A two-pixel bar in the corner of a full 2x13 image: the target's boundary is symmetric, so the sorted weights
    # reach exactly half of their sum at the 15th element (distance 7.15...) and HD50 is a tie at 50 %. DeepMind
    # divides the running sum by the sum of the sorted weights; summing the unsorted ones (pairwise, another
    # order) moved that fraction by one ulp and took the other neighbour (7.15 instead of DeepMind's 8.86).
    g = np.ones((2, 13), bool)
    p = np.zeros((2, 13), bool)
    p[1, 11:] = True
    sp = (0.959, 1.772)
    dists = surface_distance.compute_surface_distances(g, p, sp)
    for q in (50, 25, 75, 95):
        assert ours("hausdorff", p, g, spacing=sp, percentile=q) == surface_distance.compute_robust_hausdorff(dists, q)
    assert ours("hausdorff", p, g, spacing=sp, percentile=50) == 8.86  # 5 steps of 1.772 along axis 1


@pytest.mark.parametrize("nd", [2, 3])
def test_deepmind_percentiles_to_the_bit(nd: int) -> None:
    # every 5th percentile of random pairs, the same float64 number as DeepMind's (ties included)
    for seed in range(10):
        p, g, sp = rand_pair(300 + seed, nd)
        dists = surface_distance.compute_surface_distances(g, p, sp)
        for q in range(0, 101, 5):
            assert ours("hausdorff", p, g, spacing=sp, percentile=q) == surface_distance.compute_robust_hausdorff(
                dists, q
            ), (seed, q)


@pytest.mark.parametrize("nd", [2, 3])
def test_deepmind_empty_vectors(nd: int) -> None:
    # their expected values: one empty -> HD inf, surface Dice 0; both empty -> HD inf, surface Dice NaN
    shape = (128,) * nd
    z = np.zeros(shape, bool)
    one = z.copy()
    one[(50, 60, 70)[:nd]] = True
    sp = (3.0, 2.0, 1.0)[:nd]
    for p, g in ((z, one), (one, z)):
        assert ours("hausdorff", p, g, spacing=sp) == math.inf
        assert ours("hausdorff", p, g, spacing=sp, percentile=95) == math.inf
        assert ours("nsd", p, g, spacing=sp, tolerance=1.0) == 0.0
    # DeepMind's both-empty conventions are our empty_both=inf (distances) and "nan" (surface Dice)
    assert ours("hausdorff", z, z, spacing=sp, empty_both=math.inf) == math.inf
    assert math.isnan(ours("nsd", z, z, spacing=sp, tolerance=1.0, empty_both="nan"))
    assert ours("hausdorff", z, z, spacing=sp) == 0.0  # our default
    assert ours("nsd", z, z, spacing=sp, tolerance=1.0) == 1.0


# ------------------------------------------------------------------------------------------ MONAI


def _onehot(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([~x, x]))[None].float()


def _monai(name: str, p: np.ndarray, g: np.ndarray, sp, **kw: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = getattr(monai_metrics, name)
        if name == "compute_surface_dice":
            return float(fn(_onehot(p), _onehot(g), spacing=list(sp), include_background=False, **kw))
        return float(fn(_onehot(p), _onehot(g), spacing=list(sp), include_background=False, **kw))


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_monai(nd: int, seed: int) -> None:
    p, g, sp = rand_pair(200 + seed, nd)
    v = {"spacing": sp, "boundary": "voxel"}
    for q in (None, 95, 50):
        want = _monai("compute_hausdorff_distance", p, g, sp, percentile=q)
        got = ours("hausdorff", p, g, percentile=q or 100, quantile="linear", **v)
        assert close(got, want), (q, got, want)  # MONAI's distances are float32
    assert close(ours("assd", p, g, **v), _monai("compute_average_surface_distance", p, g, sp, symmetric=True))
    assert close(ours("asd", p, g, **v), _monai("compute_average_surface_distance", p, g, sp, symmetric=False))
    for tau in (0.0, 1.0, 2.2):
        want = _monai("compute_surface_dice", p, g, sp, class_thresholds=[tau], use_subvoxels=False)
        assert close(ours("nsd", p, g, tolerance=tau, **v), want)
        want = _monai("compute_surface_dice", p, g, sp, class_thresholds=[tau], use_subvoxels=True)
        assert close(ours("nsd", p, g, tolerance=tau, spacing=sp), want)


@pytest.mark.parametrize("which", ["both", "pred", "gt"])
def test_monai_empty_rules(which: str) -> None:
    z = np.zeros((6, 7), bool)
    o = z.copy()
    o[2:4, 2:5] = True
    p, g = {"both": (z, z), "pred": (z, o), "gt": (o, z)}[which]
    sp = (1.0, 1.0)
    v = {"spacing": sp, "boundary": "voxel", "empty_both": "nan"}
    hd95 = _monai("compute_hausdorff_distance", p, g, sp, percentile=95)
    hd = _monai("compute_hausdorff_distance", p, g, sp)
    # MONAI's HD95 is NaN for one empty mask as well (a defect): empty_one="nan" reproduces it
    assert close(ours("hausdorff", p, g, percentile=95, quantile="linear", empty_one="nan", **v), hd95)
    assert close(ours("hausdorff", p, g, **v), hd)
    assert close(ours("assd", p, g, **v), _monai("compute_average_surface_distance", p, g, sp, symmetric=True))
    for sub in (False, True):
        want = _monai("compute_surface_dice", p, g, sp, class_thresholds=[1.0], use_subvoxels=sub)
        assert close(ours("nsd", p, g, tolerance=1.0, **{**v, "boundary": "surfel" if sub else "voxel"}), want)
    if which != "both":
        assert math.isnan(hd95)
        assert ours("hausdorff", p, g, percentile=95, spacing=sp) == math.inf


def _sphere(radius: float, centre, shape=(99, 99, 99), spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    a, b, c = np.ogrid[: shape[0], : shape[1], : shape[2]]
    a = a * spacing[0] - centre[0]
    b = b * spacing[1] - centre[1]
    c = c * spacing[2] - centre[2]
    return a * a + b * b + c * c <= radius * radius


MONAI_SPHERES = [  # test_hausdorff_distance.py: (pred, gt, spacing, percentile, symmetric euclidean value)
    ((20, (20, 20, 20)), (20, (19, 19, 19)), None, None, 1.7320508075688772),
    ((33, (19, 33, 22)), (33, (20, 33, 22)), None, None, 1.0),
    ((20, (20, 33, 22)), (40, (20, 33, 22)), None, None, 20.223748416156685),
    ((20, (20, 33, 22)), (40, (20, 33, 22)), None, 95, 20.09975124224178),
    ((20, (20, 20, 20)), (20, (19, 19, 19)), (0.85, 1.2, 0.9), None, 2.2671568),
    ((15, (20, 33, 22)), (30, (20, 33, 22)), (0.85, 1.2, 0.9), None, 15.62594),
]


@pytest.mark.parametrize("case", range(len(MONAI_SPHERES)))
def test_monai_hausdorff_vectors(case: int) -> None:
    (r1, c1), (r2, c2), sp, q, want = MONAI_SPHERES[case]
    spacing = sp or (1.0, 1.0, 1.0)
    p, g = _sphere(r1, c1, spacing=spacing), _sphere(r2, c2, spacing=spacing)
    got = ours("hausdorff", p, g, spacing=spacing, percentile=q or 100, boundary="voxel", quantile="linear")
    assert math.isclose(got, want, rel_tol=1e-6)  # their values are float32


def test_monai_surface_dice_vectors() -> None:
    # test_surface_dice.py, test_tolerance_all_distances: voxel boundaries, class thresholds per class
    pred = torch.zeros((1, 10, 10), dtype=torch.int64)
    labels = torch.zeros((1, 10, 10), dtype=torch.int64)
    pred[0, 1:4, 1] = 1
    labels[0, 5:8, 6] = 1
    kw: dict[str, Any] = {
        "mode": "multiclass",
        "num_classes": 2,
        "include_background": True,
        "boundary": "voxel",
        "average": "none",
    }
    for taus, want in (
        ((0, 0), [1 - (8 + 4) / (36 * 2 + 8 + 4), 0]),
        ((2.8, 5.5), [1 - 3 / (36 * 2 + 8 + 4), 1 - (2 + 2) / (3 + 3)]),
        ((3, 6), [1 - 1 / (36 * 2 + 8 + 4), 1 - 2 / (3 + 3)]),
    ):
        got = [nsd(pred, labels, tolerance=t, **kw)[k].item() for k, t in enumerate(taus)]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # test_tolerance_euclidean_distance_with_spacing: a 10-pixel shift in a 480 x 640 image, spacing (0.85, 1.2);
    # image 1 is all background (class 1 empty in both: NaN with MONAI's rule)
    pred = torch.zeros((2, 480, 640), dtype=torch.int64)
    labels = torch.zeros((2, 480, 640), dtype=torch.int64)
    pred[0, :, 50:] = 1
    labels[0, :, 60:] = 1
    got = nsd(pred, labels, tolerance=0.0, spacing=(0.85, 1.2), per_image=True, empty_both="nan", **kw)
    want = np.zeros((2, 2))
    want[0, 1] = 1 - (478 + 480 + 9 * 2) / (480 * 4 + 588 * 2 + 578 * 2)
    want[0, 0] = 1 - (478 + 480 + 9 * 2) / (480 * 4 + 48 * 2 + 58 * 2)
    want[1, 0] = 1
    want[1, 1] = np.nan
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    macro = nsd(pred, labels, tolerance=0.0, spacing=(0.85, 1.2), per_image=True, empty_both="nan",
                **{**kw, "average": "macro"})  # fmt: skip
    assert close(macro.item(), float(np.nanmean(np.nanmean(want, 1))))
    at12 = nsd(pred, labels, tolerance=12.0, spacing=(0.85, 1.2), per_image=True, **kw)
    assert torch.equal(at12[0], torch.ones(2, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ medpy


@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_matches_medpy(nd: int, seed: int) -> None:
    p, g, sp = rand_pair(300 + seed, nd)
    for conn in range(1, nd + 1):
        v = {"spacing": sp, "boundary": "voxel", "connectivity": conn}
        assert close(ours("hausdorff", p, g, **v), medpy_binary.hd(p, g, sp, conn))
        want = medpy_binary.hd95(p, g, sp, conn)
        assert close(ours("hausdorff", p, g, percentile=95, directions="pooled", quantile="linear", **v), want)
        assert close(ours("assd", p, g, **v), medpy_binary.assd(p, g, sp, conn))
        assert close(ours("asd", p, g, **v), medpy_binary.asd(p, g, sp, conn))
        assert close(ours("asd", p, g, direction="gt_to_pred", **v), medpy_binary.asd(g, p, sp, conn))


def test_medpy_empty_raises_and_ours_raise_rule() -> None:
    z = np.zeros((5, 5), bool)
    o = z.copy()
    o[1:3, 1:3] = True
    with pytest.raises(RuntimeError):
        medpy_binary.hd95(z, o)
    raise_rules = {"empty_both": "raise", "empty_one": "raise"}
    with pytest.raises(ValueError, match=r"^hausdorff: image 0, class 0: prediction empty \(empty_one='raise'\)$"):
        ours("hausdorff", z, o, percentile=95, boundary="voxel", **raise_rules)
    with pytest.raises(ValueError, match=r"^assd: image 0, class 0: target empty \(empty_one='raise'\)$"):
        ours("assd", o, z, **raise_rules)
    with pytest.raises(ValueError, match=r"^nsd: image 0, class 0: both masks empty \(empty_both='raise'\)$"):
        ours("nsd", z, z, tolerance=1.0, **raise_rules)


# ------------------------------------------------------------------------------------------ empty rules


@pytest.mark.parametrize("kind", ["hausdorff", "assd", "masd", "asd", "nsd", "boundary_iou"])
def test_empty_rules(kind: str) -> None:
    z = np.zeros((2, 6, 6), bool)
    o = z.copy()
    o[:, 1:4, 2:5] = True
    extra = {"tolerance": 1.0} if kind == "nsd" else {}
    good = kind in ("nsd", "boundary_iou")
    p = torch.from_numpy(np.stack([o[0], z[0], o[0]]))  # image 0: equal, image 1: both empty, image 2: gt empty
    g = torch.from_numpy(np.stack([o[0], z[0], z[0]])).long()
    fn = FUNCS[kind]
    got = fn(p, g, mode="binary", per_image=True, average="none", **extra)
    want = [[1.0], [1.0], [0.0]] if good else [[0.0], [0.0], [math.inf]]
    assert got.tolist() == want
    got = fn(p, g, mode="binary", per_image=True, average="none", empty_both=7.0, empty_one="nan", **extra)
    assert got[1, 0].item() == 7.0
    assert math.isnan(got[2, 0].item())
    # a macro mean leaves NaN out and keeps inf
    mean = fn(p, g, mode="binary", per_image=True, empty_both="nan", **extra).item()
    assert mean == (0.5 if good else math.inf)
    mean = fn(p, g, mode="binary", empty_one="nan", **extra).item()
    assert mean == (1.0 if good else 0.0)
    assert math.isnan(fn(p[1:2], g[1:2], mode="binary", empty_both="nan", **extra).item())
    with pytest.raises(ValueError, match=rf"^{kind}: image 1, class 0: both masks empty \(empty_both='raise'\)$"):
        fn(p, g, mode="binary", empty_both="raise", **extra)
    with pytest.raises(ValueError, match=rf"^{kind}: image 2, class 0: target empty \(empty_one='raise'\)$"):
        fn(p, g, mode="binary", empty_one="raise", **extra)


def test_raise_rule_names_kept_classes_only() -> None:
    # class 0 (background, dropped) is never checked; class 2 is empty in both
    pred = torch.tensor([[[0, 1], [1, 0]]])
    target = torch.tensor([[[0, 1], [1, 1]]])
    with pytest.raises(ValueError, match=r"^hausdorff: image 0, class 2: both masks empty"):
        hausdorff(pred, target, mode="multiclass", num_classes=3, empty_both="raise")
    assert hausdorff(pred, target, mode="multiclass", num_classes=3, average="none")[1].item() == 0.0


# ------------------------------------------------------------------------------------------ properties


@st.composite
def pairs(draw: Any) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    nd = draw(st.sampled_from([2, 3]))
    seed = draw(st.integers(0, 2**31 - 1))
    return rand_pair(seed, nd)


@SETTINGS
@given(pair=pairs(), boundary=st.sampled_from(["surfel", "voxel"]))
def test_properties(pair: tuple[np.ndarray, np.ndarray, tuple[float, ...]], boundary: str) -> None:
    p, g, sp = pair
    v = {"spacing": sp, "boundary": boundary}
    hd = ours("hausdorff", p, g, **v)
    # symmetric metrics are symmetric; the directed one swaps its direction
    for kind, kw in (("hausdorff", {}), ("hausdorff", {"percentile": 90}), ("assd", {}), ("masd", {}),
                     ("nsd", {"tolerance": 1.0})):  # fmt: skip
        assert close(ours(kind, p, g, **v, **kw), ours(kind, g, p, **v, **kw))
    assert close(ours("asd", p, g, **v), ours("asd", g, p, direction="gt_to_pred", **v))
    # order: HD >= HD95 >= HD50; HD >= every mean; masd between the directed means
    assert hd >= ours("hausdorff", p, g, percentile=95, **v) >= ours("hausdorff", p, g, percentile=50, **v)
    a, b = ours("asd", p, g, **v), ours("asd", p, g, direction="gt_to_pred", **v)
    assert min(a, b) - 1e-12 <= ours("assd", p, g, **v) <= max(a, b) + 1e-12
    assert close(ours("masd", p, g, **v), (a + b) / 2)
    assert hd + 1e-12 >= max(a, b)
    # NSD grows with the tolerance, is 1 from the Hausdorff distance on
    n1, n2 = ours("nsd", p, g, tolerance=0.5, **v), ours("nsd", p, g, tolerance=1.5, **v)
    assert 0.0 <= n1 <= n2 <= 1.0
    assert ours("nsd", p, g, tolerance=hd, **v) == 1.0
    # scaling the spacing scales every distance; NSD at the scaled tolerance is unchanged
    sp3 = tuple(3 * s for s in sp)
    assert close(ours("hausdorff", p, g, spacing=sp3, boundary=boundary), 3 * hd)
    assert close(ours("assd", p, g, spacing=sp3, boundary=boundary), 3 * ours("assd", p, g, **v))
    assert close(ours("nsd", p, g, spacing=sp3, boundary=boundary, tolerance=4.5), n2)
    # a background margin around the image changes nothing (work on the bounding box; outside is background)
    pad = [(2, 3)] * p.ndim
    assert ours("hausdorff", np.pad(p, pad), np.pad(g, pad), **v) == hd
    # identical masks
    assert ours("hausdorff", p, p, **v) == 0.0
    assert ours("nsd", p, p, tolerance=0.0, **v) == 1.0
    assert ours("boundary_iou", p, p) == 1.0


def test_object_cut_by_the_border_has_a_surface_there() -> None:
    # a full image against the same image minus its last column: voxel borders are the image's outline
    g = np.ones((4, 5), bool)
    p = g.copy()
    p[:, -1] = False
    assert ours("hausdorff", p, g, boundary="voxel") == 1.0
    assert ours("asd", g, g, boundary="voxel") == 0.0
    # p's outline (12 pixels) and g's (14) share the top and bottom rows' first 4 pixels and the left column's 2
    assert ours("nsd", p, g, boundary="voxel", tolerance=0.0) == pytest.approx((10 + 10) / (12 + 14), rel=1e-12)


def test_surfel_linear_quantile_and_bad_inputs() -> None:
    x = torch.zeros(1, 4, 4, dtype=torch.long)
    x[0, 1:3, 1:3] = 1
    b = {"mode": "binary"}
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: hausdorff(x, x, quantile="linear", **b), ValueError,
         r"^hausdorff: `quantile`='linear' interpolates between equally weighted distances and needs "
         r"boundary='voxel'; got boundary='surfel'"),
        (lambda: hausdorff(x, x, average="micro", **b), ValueError,
         r"^hausdorff: `average`='micro' has no meaning for surface metrics"),
        (lambda: hausdorff(x, x, percentile=101, **b), ValueError,
         r"^hausdorff: `percentile` must be in \[0, 100\]; got 101"),
        (lambda: hausdorff(x, x, percentile=-1, **b), ValueError, r"^hausdorff: `percentile` must be a finite"),
        (lambda: assd(x, x, spacing=(1.0, 2.0, 3.0), **b), ValueError,
         r"^assd: `spacing` must have one value per spatial axis \(2\); got 3 values"),
        (lambda: assd(x, x, spacing=(1.0, 0.0), **b), ValueError, r"^assd: `spacing` must hold finite values > 0"),
        (lambda: masd(x, x, boundary="voxel", connectivity=3, **b), ValueError,
         r"^masd: `connectivity` must be in \[1, 2\] for 2D images; got 3"),
        (lambda: masd(x, x, boundary="edge", **b), ValueError, r"^masd: `boundary`"),  # type: ignore[arg-type]
        (lambda: nsd(x, x, tolerance=-1.0, **b), ValueError, r"^nsd: `tolerance` must be a finite number >= 0"),
        (lambda: asd(x, x, direction="both", **b), ValueError, r"^asd: `direction`"),  # type: ignore[arg-type]
        (lambda: boundary_iou(x, x, dilation=0, **b), ValueError, r"^boundary_iou: `dilation` must be a finite"),
        (lambda: hausdorff(x, x, empty_both="zero", **b), ValueError,
         r"^hausdorff: `empty_both` must be a number, 'nan' or 'raise'; got 'zero'"),
        (lambda: hausdorff(x, x, empty_one=None, **b), TypeError,  # type: ignore[arg-type]
         r"^hausdorff: `empty_one` must be a number, 'nan' or 'raise'; got NoneType"),
        (lambda: hausdorff(x[:, 0], x[:, 0], **b), ValueError, r"^hausdorff: surface metrics need 2D or 3D images"),
        (lambda: hausdorff(x.view(1, 1, 1, 1, 4, 4), x.view(1, 1, 1, 1, 4, 4), mode="multilabel"), ValueError,
         r"^hausdorff: surface metrics need 2D or 3D images"),
    ]  # fmt: skip
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


def test_each_argument_changes_the_output() -> None:
    p, g, sp = rand_pair(7, 2)
    base = ours("hausdorff", p, g, percentile=95, boundary="voxel")
    assert base != ours("hausdorff", p, g, percentile=95, boundary="voxel", spacing=sp)
    assert ours("assd", p, g, boundary="voxel") != ours("assd", p, g)
    assert ours("asd", p, g, boundary="voxel") != ours("asd", p, g, boundary="voxel", connectivity=2)
    # a 1x3 bar against a dot at its end: distances (0, 1, 2) from the bar, (0) from the dot
    bar = np.zeros((3, 5), bool)
    bar[1, 1:4] = True
    dot = np.zeros((3, 5), bool)
    dot[1, 1] = True
    v = {"percentile": 60, "boundary": "voxel"}
    assert ours("hausdorff", bar, dot, **v) == 1.0  # the 2nd of 3: ceil(0.6 * 3)
    assert close(ours("hausdorff", bar, dot, quantile="linear", **v), 1.2)  # position 0.6 * (3 - 1) = 1.2
    assert close(ours("hausdorff", bar, dot, quantile="linear", directions="pooled", **v), 0.8)  # (0, 0, 1, 2) at 1.8
    assert ours("hausdorff", bar, dot, directions="pooled", **v) == 1.0  # the 3rd of 4: ceil(0.6 * 4)
    assert ours("boundary_iou", p, g, dilation=1) != ours("boundary_iou", p, g, dilation=2)


# ------------------------------------------------------------------------------------------ devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["hausdorff", "assd", "nsd", "boundary_iou"])
def test_cuda_same_numbers(kind: str) -> None:
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.random((2, 3, 6, 7, 5)))
    target = torch.from_numpy(rng.integers(0, 3, (2, 6, 7, 5)))
    kw: dict[str, Any] = {"mode": "multiclass", "per_image": True, "average": "none"}
    if kind == "nsd":
        kw["tolerance"] = 1.0
    if kind != "boundary_iou":
        kw["spacing"] = (2.0, 0.8, 0.8)
    cpu = FUNCS[kind](pred, target, **kw)
    cuda = FUNCS[kind](pred.cuda(), target.cuda(), **kw)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=0, equal_nan=True)


def test_empty_batch_keeps_the_values_device() -> None:
    # no image (N = 0): the class means are NaN on the values' device (they were made on the CPU); meta stands in
    # for a CUDA device here
    from seglosses.metrics.surface import reduce_values

    values = torch.empty((0, 3), dtype=torch.float64, device="meta")
    for average, per_image, shape in (("none", False, (3,)), ("macro", False, ()), ("none", True, (0, 3))):
        out = reduce_values(values, average=average, per_image=per_image)
        assert out.device.type == "meta"
        assert tuple(out.shape) == shape
    cpu = reduce_values(torch.empty((0, 3), dtype=torch.float64), average="none", per_image=False)
    assert torch.isnan(cpu).all()
    assert cpu.shape == (3,)


# ------------------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("average", ["none", "macro"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_streaming_equals_one_call(average: str, per_image: bool, include_background: bool) -> None:
    from seglosses.metrics import SegmentationMetrics

    rng = np.random.default_rng(5)
    c = 3
    scores = torch.from_numpy(rng.random((5, c, 6, 7)))
    target = torch.from_numpy(rng.integers(0, c, (5, 6, 7)))
    target[1][target[1] == 2] = 0  # class 2 missing from image 1's target: an empty-one value (inf)
    target[3, :2] = 255
    sp, tau = (1.7, 0.6), 1.2
    kw: dict[str, Any] = {
        "mode": "multiclass",
        "average": average,
        "per_image": per_image,
        "include_background": include_background,
        "ignore_index": 255,
    }
    m = SegmentationMetrics(num_classes=c, surface=("hd95", "nsd", "assd", "boundary_iou"), spacing=sp,
                            tolerance=tau, metrics=("dice",), **kw)  # fmt: skip
    for lo, hi in ((0, 2), (2, 3), (3, 5)):
        m.update(scores[lo:hi], target[lo:hi])
    got = m.compute()
    assert list(got) == ["dice", "hd95", "nsd", "assd", "boundary_iou"]
    want = {
        "hd95": hausdorff(scores, target, percentile=95, spacing=sp, **kw),
        "nsd": nsd(scores, target, tolerance=tau, spacing=sp, **kw),
        "assd": assd(scores, target, spacing=sp, **kw),
        "boundary_iou": boundary_iou(scores, target, **kw),
    }
    for name, value in want.items():
        assert got[name].shape == value.shape
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, equal_nan=True)
    if not per_image:
        assert got["hd95"].isinf().any()  # the missing class: inf kept in the mean over images
    m.reset()
    empty = m.compute()["nsd"]
    assert empty.isnan().all()


def test_streaming_binary_hd_and_options() -> None:
    from seglosses.metrics import SegmentationMetrics

    rng = np.random.default_rng(6)
    x = torch.from_numpy(rng.normal(size=(4, 1, 5, 6, 4)))
    t = torch.from_numpy((rng.random((4, 1, 5, 6, 4)) < 0.5).astype(np.int64))
    m = SegmentationMetrics(mode="binary", num_classes=1, surface=("hd", "masd"), spacing=2.0, from_logits=True,
                            average="macro", per_image=True)  # fmt: skip
    m.update(x[:1], t[:1])
    m.update(x[1:], t[1:])
    got = m.compute()
    kw: dict[str, Any] = {"mode": "binary", "spacing": 2.0, "from_logits": True, "per_image": True}
    torch.testing.assert_close(got["hd"], hausdorff(x, t, **kw), rtol=0, atol=0)
    torch.testing.assert_close(got["masd"], masd(x, t, **kw), rtol=0, atol=0)
    assert "surface=('hd', 'masd')" in repr(m)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"surface": ("hd95",), "average": "micro"}, ValueError,
         r"^SegmentationMetrics: `average`='micro' has no meaning for surface metrics"),
        ({"surface": ("nsd",)}, ValueError, r"^SegmentationMetrics: 'nsd' in `surface` needs `tolerance`"),
        ({"surface": ("hd96",)}, ValueError, r"^SegmentationMetrics: `surface`"),
        ({"surface": "hd95"}, TypeError, r"^SegmentationMetrics: `surface` must be a sequence"),
        ({"surface": ("hd", "hd")}, ValueError, r"^SegmentationMetrics: `surface` must not repeat a name"),
        ({"surface": ("hd",), "spacing": -1.0}, ValueError, r"^SegmentationMetrics: `spacing` must hold finite"),
        ({"surface": ("nsd",), "tolerance": -1.0}, ValueError, r"^SegmentationMetrics: `tolerance` must be a finite"),
    ]  # fmt: skip
    for extra, exc, pattern in bad:
        with pytest.raises(exc, match=pattern):
            SegmentationMetrics(mode="binary", num_classes=1, **{"average": "none", **extra})
    m = SegmentationMetrics(mode="binary", num_classes=1, surface=("hd",), spacing=(1.0, 2.0), from_logits=True)
    with pytest.raises(ValueError, match=r"^SegmentationMetrics.update: `spacing` must have one value per spatial"):
        m.update(x, t)


@pytest.mark.parametrize("boundary", ["surfel", "voxel"])
@pytest.mark.parametrize("layout", ["near", "mixed", "far"])
def test_near_search_and_tree_give_the_reference(boundary: str, layout: str) -> None:
    # near points are resolved by the offset search, far ones by the k-d tree (and all by it when most are far)
    rng = np.random.default_rng(len(layout))
    g = np.zeros((40, 36), bool)
    g[5:15, 4:14] = rand_mask(rng, (10, 10), 0.7) | True
    p = np.zeros_like(g)
    if layout in ("near", "mixed"):
        p[6:16, 5:13] = True
    if layout in ("mixed", "far"):
        p[28:37, 22:33] = rng.random((9, 11)) < 0.8
    sp = (0.9, 1.6)
    for kind, kw in (("hausdorff", {}), ("assd", {}), ("nsd", {"tolerance": 2.5}), ("nsd", {"tolerance": 30.0})):
        got = ours(kind, p, g, spacing=sp, boundary=boundary, **kw)
        assert close(got, ref_value(kind, p, g, sp, boundary, **kw)), (kind, got)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.7), (1.0, 1.0, 1.0), (2.0, 0.8, 1.3)])
def test_neighbour_code_tables_equal_deepmind_and_the_2d_definition(spacing: tuple[float, ...]) -> None:
    from seglosses.metrics.surface import _element_sizes

    nd = len(spacing)
    ours_table = _element_sizes(spacing)  # our bit of corner (o_0, ..., o_{n-1}) is sum_k o_k 2^k
    if nd == 2:
        theirs = lookup_tables.create_table_neighbour_code_to_contour_length(spacing)
        kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL
        mine = _length_table_2d(spacing)  # bit 2 o_0 + o_1
    else:
        theirs = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL
    for code in range(1 << (1 << nd)):
        corners = [c for c in np.ndindex(*(2,) * nd) if code >> sum(o << k for k, o in enumerate(c)) & 1]
        their_code = sum(int(kernel[c]) for c in corners)
        assert math.isclose(ours_table[code], theirs[their_code], rel_tol=1e-12, abs_tol=1e-15), code
        if nd == 2:
            my_code = sum(1 << (2 * c[0] + c[1]) for c in corners)
            assert math.isclose(ours_table[code], mine[my_code], rel_tol=1e-12), code


def test_bench_surface_rows() -> None:
    from dataclasses import fields

    from seglosses.cli.bench_surface import CASES, surface_rows

    rows = surface_rows(repeats=1, warmup=1, size=24)
    assert [r["case"] for r in rows] == [f"{c.library}:{c.quantity}" for c in CASES]
    try:
        from seglosses.cli.benchmark import Result
    except ImportError:  # pragma: no cover - the benchmark module is optional here
        Result = None  # noqa: N806
    if Result is not None:
        assert set(rows[0]) == {f.name for f in fields(Result)}
    by_case = {r["case"]: r for r in rows}
    for ours_case, peer in (("seglosses:hd95_voxel", "monai:hd95_voxel"), ("seglosses:hd95", "deepmind:hd95"),
                            ("seglosses:nsd", "deepmind:nsd")):  # fmt: skip
        assert by_case[ours_case]["status"] == by_case[peer]["status"] == "ok"
        assert math.isclose(by_case[ours_case]["value"], by_case[peer]["value"], rel_tol=1e-6)
        assert by_case[ours_case]["peer_speedup"] == by_case[peer]["ms"] / by_case[ours_case]["ms"]
    with pytest.raises(ValueError, match=r"^repeats, warmup and threads must be >= 1 and size >= 8; got 0"):
        surface_rows(repeats=0)


def test_very_anisotropic_spacing() -> None:
    # the near search shrinks its radius to keep few offsets; the numbers stay the reference's
    p, g, _ = rand_pair(41, 3)
    sp = (5.0, 0.1, 0.13)
    for kind, kw in (("hausdorff", {"percentile": 95}), ("assd", {}), ("nsd", {"tolerance": 0.35})):
        for boundary in ("surfel", "voxel"):
            got = ours(kind, p, g, spacing=sp, boundary=boundary, **kw)
            assert close(got, ref_value(kind, p, g, sp, boundary, **kw)), (kind, boundary)


def test_one_hot_target_and_hard_label_input_equal_index_forms() -> None:
    rng = np.random.default_rng(9)
    scores = torch.from_numpy(rng.random((2, 3, 7, 6)))
    labels = torch.from_numpy(rng.integers(0, 3, (2, 7, 6)))
    onehot = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2)
    kw: dict[str, Any] = {"mode": "multiclass", "per_image": True, "average": "none", "spacing": (1.3, 0.7)}
    base = hausdorff(scores, labels, **kw)
    torch.testing.assert_close(hausdorff(scores, onehot, **kw), base, rtol=0, atol=0)
    torch.testing.assert_close(hausdorff(scores.argmax(1), labels, num_classes=3, **kw), base, rtol=0, atol=0)
    # binary: bool input, probabilities above the threshold, and logits above its logit give the same masks
    probs = torch.from_numpy(rng.random((2, 1, 7, 6)))
    t = torch.from_numpy(rng.random((2, 1, 7, 6)) < 0.5)
    b: dict[str, Any] = {"mode": "binary", "per_image": True, "average": "none"}
    want = nsd(probs > 0.3, t, tolerance=1.0, **b)
    torch.testing.assert_close(nsd(probs, t.long(), tolerance=1.0, threshold=0.3, **b), want, rtol=0, atol=0)
    logits = torch.log(probs / (1 - probs))
    got = nsd(logits, t.long(), tolerance=1.0, threshold=0.3, from_logits=True, **b)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------ thresholds and ignore values


@pytest.mark.parametrize(
    ("fn", "kw"),
    [
        (hausdorff, {"spacing": (1.0, 0.7)}),
        (assd, {"spacing": (1.0, 0.7)}),
        (nsd, {"tolerance": 0.5}),
        (boundary_iou, {}),
    ],
)
def test_logit_at_the_rounded_threshold_counts_as_foreground(fn, kw) -> None:
    # logit(0.3) rounds up in float32: a logit equal to that float32 value has sigmoid > 0.3 (exactly, in float64),
    # so its pixels are predicted foreground, as the overlap metrics count them. The expected masks come from the
    # sigmoid in float64 and go in as hard (bool) predictions.
    v = torch.tensor(math.log(0.3) - math.log1p(-0.3), dtype=torch.float32)
    assert float(v) > math.log(0.3) - math.log1p(-0.3)
    g = torch.zeros(2, 1, 12, 12)
    g[:, 0, 3:8, 3:8] = 1
    x = torch.full((2, 1, 12, 12), -10.0)
    x[:, 0, 3:8, 3:9] = v
    hard = torch.sigmoid(x.double()) > 0.3
    assert int(hard.sum()) == 2 * 30
    got = fn(x, g, mode="binary", from_logits=True, threshold=0.3, **kw)
    want = fn(hard, g.bool(), mode="binary", **kw)
    assert torch.equal(got, want)


@pytest.mark.parametrize(("dtype", "ignore", "value"), [(torch.uint8, -1, 255), (torch.int8, 255, -1)])
def test_ignore_index_outside_the_target_dtype_does_not_wrap(dtype, ignore, value) -> None:
    # ignore_index=-1 compared with a uint8 target becomes 255 (int8 with 255: -1); such a value is a class index
    # out of range, refused, not silently ignored
    t = torch.zeros(1, 12, 12, dtype=dtype)
    t[0, 3:8, 3:8] = 1
    t[0, 0, 0] = value
    p = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=rf"hausdorff: `target` class indices must be in \[0, 3\).*got {value}"):
        hausdorff(p, t, mode="multiclass", ignore_index=ignore)
    t[0, 0, 0] = 0
    assert torch.equal(
        hausdorff(p, t, mode="multiclass", ignore_index=ignore), hausdorff(p, t.long(), mode="multiclass")
    )
