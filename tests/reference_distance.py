"""NumPy float64 references for the distance maps and the distance-map losses (no seglosses import).

``edt_brute`` is a brute-force Euclidean distance over every pair of pixels; the rest use scipy's exact EDT
(``scipy.ndimage.distance_transform_edt``) and ``binary_erosion``, written from the definitions: for a class mask
``m``, ``phi(m) = edt_s(~m) (~m) - edt_s(erode(m)) m`` (erode with the face-connected cross, the image outside as
background) and ``d(m) = edt_s(m) + edt_s(~m)``, both 0 for an empty or full mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage


def edt_brute(x: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """``edt_s``: for every True element, the distance to the nearest False element (0 on False); O(n^2)."""
    coords = np.stack(
        np.meshgrid(*[np.arange(n) * s for n, s in zip(x.shape, spacing, strict=False)], indexing="ij"), -1
    )
    pts = coords.reshape(-1, x.ndim)
    flat = x.reshape(-1)
    out = np.zeros(flat.shape)
    off = pts[~flat]
    if len(off) == 0:
        return out.reshape(x.shape)
    for i in np.flatnonzero(flat):
        out[i] = np.sqrt(((off - pts[i]) ** 2).sum(-1)).min()
    return out.reshape(x.shape)


def erode_cross_ref(m: np.ndarray) -> np.ndarray:
    """Erosion with the face-connected cross, the image outside counting as background."""
    return ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1), border_value=0)


def signed_ref(m: np.ndarray, spacing: tuple[float, ...], edt: Any = None) -> np.ndarray:  # noqa: ANN401
    """``phi(m) = edt_s(~m) (~m) - edt_s(erode(m)) m``; 0 for an empty or full mask."""
    if edt is None:
        edt = lambda a, s: ndimage.distance_transform_edt(a, sampling=s)  # noqa: E731
    if not m.any() or m.all():
        return np.zeros(m.shape)
    return edt(~m, spacing) * ~m - edt(erode_cross_ref(m), spacing) * m


def unsigned_ref(m: np.ndarray, spacing: tuple[float, ...], edt: Any = None) -> np.ndarray:  # noqa: ANN401
    """``d(m) = edt_s(m) + edt_s(~m)``; 0 for an empty or full mask."""
    if edt is None:
        edt = lambda a, s: ndimage.distance_transform_edt(a, sampling=s)  # noqa: E731
    if not m.any() or m.all():
        return np.zeros(m.shape)
    return edt(m, spacing) + edt(~m, spacing)


def blobs(n: int, c: int, spatial: tuple[int, ...], seed: int) -> np.ndarray:
    """Class indices ``(n, *spatial)`` with smooth blobs (smoothed noise, argmax over c channels)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, c, *spatial))
    smooth = ndimage.uniform_filter(noise, size=(1, 1) + (3,) * len(spatial))
    return smooth.argmax(1)


def one_hot2dist_liviaets(seg: np.ndarray, resolution: tuple[float, ...]) -> np.ndarray:
    """LIVIAETS boundary-loss ``utils.one_hot2dist`` (one image, ``(K, *S)`` one-hot), as published."""
    res = np.zeros(seg.shape)
    for k in range(len(seg)):
        posmask = seg[k].astype(bool)
        if posmask.any():
            negmask = ~posmask
            res[k] = (
                ndimage.distance_transform_edt(negmask, sampling=resolution) * negmask
                - (ndimage.distance_transform_edt(posmask, sampling=resolution) - 1) * posmask
            )
    return res


# ---------------------------------------------------------------------------------------------------- losses


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reduce_ref(per_class: np.ndarray, start: int, reduction: str, weights: np.ndarray | None) -> np.ndarray:
    """Class reduction of ``(C,)`` or ``(N, C)`` values: classes ``start..``; weighted mean / sum / none."""
    kept = per_class[..., start:]
    w = np.ones(kept.shape[-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != kept.shape[-1]:
        w = w[start:]
    if reduction == "none":
        return kept * w
    if reduction == "sum":
        return np.asarray((kept * w).sum())
    return np.asarray(((kept * w).sum(-1) / w.sum()).mean())


def pixel_mean_ref(values: np.ndarray, valid: np.ndarray, per_image: bool) -> np.ndarray:
    """Per class, the mean of ``values`` ``(N, C, *S)`` over the kept elements (batch-pooled or per image)."""
    n, c = values.shape[:2]
    v = np.where(valid, values, 0.0).reshape(n, c, -1)
    k = np.broadcast_to(valid, values.shape).reshape(n, c, -1).astype(np.float64)
    s, cnt = v.sum(-1), k.sum(-1)
    if not per_image:
        s, cnt = s.sum(0), cnt.sum(0)
    return np.where(cnt > 0, s / np.maximum(cnt, 1), 0.0)


def boundary_loss_ref(
    p: np.ndarray,
    g: np.ndarray,
    valid: np.ndarray,
    *,
    start: int,
    spacing: tuple[float, ...],
    per_image: bool = False,
    reduction: str = "mean",
    weights: np.ndarray | None = None,
    phi: np.ndarray | None = None,
) -> np.ndarray:
    """Kervadec et al.: ``L_c = mean_i p_ci phi(g_c)_i`` over kept pixels; ``g`` hard ``(N, C, *S)``."""
    if phi is None:
        phi = np.stack(
            [np.stack([signed_ref(g[i, c] & valid[i, c], spacing) for c in range(g.shape[1])]) for i in range(len(g))]
        )
    return reduce_ref(pixel_mean_ref(p * phi, valid, per_image), start, reduction, weights)


def hausdorff_dt_loss_ref(
    p: np.ndarray,
    g: np.ndarray,
    valid: np.ndarray,
    *,
    start: int,
    spacing: tuple[float, ...],
    alpha: float = 2.0,
    per_image: bool = False,
    reduction: str = "mean",
    weights: np.ndarray | None = None,
    log_loss: bool = False,
    d_g: np.ndarray | None = None,
) -> np.ndarray:
    """Karimi & Salcudean: ``L_c = mean_i (p - g)^2 (d(g_c)^a + d(q_c)^a)``, ``q = p > 0.5``; ``g`` float."""
    n, c = g.shape[:2]
    if d_g is None:
        d_g = np.stack(
            [np.stack([unsigned_ref((g[i, k] == 1) & valid[i, k], spacing) for k in range(c)]) for i in range(n)]
        )
    q = (p > 0.5) & valid
    d_q = np.stack([np.stack([unsigned_ref(q[i, k], spacing) for k in range(c)]) for i in range(n)])
    values = (p - g) ** 2 * (d_g**alpha + d_q**alpha)
    out = reduce_ref(pixel_mean_ref(values, valid, per_image), start, reduction, weights)
    return np.log1p(out) if log_loss else out


# ---------------------------------------------------------------------------------------------------- clDice


def _pool(x: np.ndarray, offsets: list[tuple[int, ...]], fill: float, op: Any) -> np.ndarray:  # noqa: ANN401
    """``op`` over the neighbours at ``offsets`` of every element of ``(N, C, *S)``, outside elements ``fill``."""
    d = x.ndim - 2
    padded = np.pad(x, [(0, 0), (0, 0)] + [(1, 1)] * d, constant_values=fill)
    out = None
    for off in offsets:
        sl = (slice(None), slice(None)) + tuple(slice(1 + o, 1 + o + n) for o, n in zip(off, x.shape[2:], strict=True))
        out = padded[sl] if out is None else op(out, padded[sl])
    assert out is not None
    return out


def soft_erode_ref(x: np.ndarray) -> np.ndarray:
    """Min over the face-connected cross (the element and its 2d axis neighbours), in-image only."""
    d = x.ndim - 2
    offs = [(0,) * d] + [tuple(s if i == a else 0 for i in range(d)) for a in range(d) for s in (-1, 1)]
    return _pool(x, offs, np.inf, np.minimum)


def soft_dilate_ref(x: np.ndarray) -> np.ndarray:
    """Max over the 3^d box, in-image only."""
    d = x.ndim - 2
    offs = [tuple(o) for o in np.ndindex(*(3,) * d)]
    return _pool(x, [tuple(v - 1 for v in o) for o in offs], -np.inf, np.maximum)


def soft_skel_ref(img: np.ndarray, iterations: int) -> np.ndarray:
    """Algorithm 1 of Shit et al. (2021), literally (every opening recomputes its erosion)."""

    def relu(a: np.ndarray) -> np.ndarray:
        return np.maximum(a, 0.0)

    skel = relu(img - soft_dilate_ref(soft_erode_ref(img)))
    for _ in range(iterations):
        img = soft_erode_ref(img)
        delta = relu(img - soft_dilate_ref(soft_erode_ref(img)))
        skel = skel + relu(delta - skel * delta)
    return skel


def cldice_sums_ref(p: np.ndarray, g: np.ndarray, valid: np.ndarray, iterations: int) -> tuple[np.ndarray, ...]:
    """``(sum S(p) g, sum S(p), sum S(g) p, sum S(g))`` per image and class over kept elements; ``g`` 0 there."""
    sp, sg = soft_skel_ref(p, iterations), soft_skel_ref(g, iterations)
    n, c = p.shape[:2]
    v = np.broadcast_to(valid, p.shape)

    def total(a: np.ndarray) -> np.ndarray:
        return np.where(v, a, 0.0).reshape(n, c, -1).sum(-1)

    return total(sp * g), total(sp), total(sg * p), total(sg)


def harmonic_ref(tprec: np.ndarray, tsens: np.ndarray) -> np.ndarray:
    den = tprec + tsens
    return np.where(den > 0, 2 * tprec * tsens / np.where(den > 0, den, 1.0), 0.0)


def cldice_loss_ref(
    p: np.ndarray,
    g: np.ndarray,
    valid: np.ndarray,
    *,
    start: int,
    iterations: int = 10,
    smooth: float = 1.0,
    per_image: bool = False,
    reduction: str = "mean",
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Shit et al. per class: ``1 - 2 Tprec Tsens / (Tprec + Tsens)``, then the class reduction."""
    a, b, c, e = cldice_sums_ref(p, g, valid, iterations)
    if not per_image:
        a, b, c, e = (v.sum(0) for v in (a, b, c, e))
    tprec = np.where(b + smooth > 0, (a + smooth) / np.where(b + smooth > 0, b + smooth, 1.0), 1.0)
    tsens = np.where(e + smooth > 0, (c + smooth) / np.where(e + smooth > 0, e + smooth, 1.0), 1.0)
    return reduce_ref(1.0 - harmonic_ref(tprec, tsens), start, reduction, weights)


def cldice_official_ref(y_true: np.ndarray, y_pred: np.ndarray, smooth: float = 1.0) -> float:
    """The official clDice PyTorch ``soft_cldice.forward`` (its ``iter_`` is unused: SoftSkeletonize(num_iter=10)).

    Every channel given (after its ``exclude_background`` slicing) and every image pooled into one ratio each.
    """
    skel_pred, skel_true = soft_skel_ref(y_pred, 10), soft_skel_ref(y_true, 10)
    tprec = ((skel_pred * y_true).sum() + smooth) / (skel_pred.sum() + smooth)
    tsens = ((skel_true * y_pred).sum() + smooth) / (skel_true.sum() + smooth)
    return float(1.0 - 2.0 * (tprec * tsens) / (tprec + tsens))
