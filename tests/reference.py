"""NumPy float64 reference implementations of the seglosses losses.

Written straight from the papers and the project's contract (docs/contract.rst), for clarity rather than speed:
one-hot targets, explicit masks and plain sums. This module never imports seglosses or torch, so
that the tests compare the implementation against an independent transcription of the contract.

Every function takes NumPy arrays ``x`` (input, logits or probabilities) and ``t`` (target: an
integer array of class indices for multiclass index targets, else a float array) and the same
keyword arguments as the corresponding ``seglosses.functional`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# activations (stable in float64)
# --------------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.exp(log_softmax(x, axis=axis))


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def _log1m(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log1p(-p)


def xlogy(a: np.ndarray, logb: np.ndarray) -> np.ndarray:
    """``a * logb`` with ``0 * log 0 = 0`` (exact 0 and 1 are valid probabilities)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == 0, 0.0, a * logb)


# --------------------------------------------------------------------------------------------
# preparation: (N, C, M) probabilities, log-probabilities, target and validity mask
# --------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    p: np.ndarray  # (N, C, M) probabilities
    logp: np.ndarray  # (N, C, M) log p
    log1mp: np.ndarray  # (N, C, M) log(1 - p)
    g: np.ndarray  # (N, C, M) target (one-hot for index targets), 0 where ignored
    valid: np.ndarray  # (N, C, M) float 0/1: element kept
    pix_valid: np.ndarray  # (N, M) (multiclass) or (N, C, M) (binary/multilabel): unit of pixel means
    index_target: bool
    n_classes: int
    out_shape: tuple[int, ...]  # shape of reduction="none" for pixel losses


def prepare(
    x: np.ndarray, t: np.ndarray, *, mode: str, from_logits: bool = True, ignore_index: int | None = None
) -> Prepared:
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n = x.shape[0]
    if mode == "multiclass":
        c = x.shape[1]
        xf = x.reshape(n, c, -1)
        if from_logits:
            logp = log_softmax(xf, axis=1)
            p = np.exp(logp)
        else:
            p = xf
            logp = _log(p)
        log1mp = _log1m(p)
        if np.issubdtype(t.dtype, np.integer):
            tf = t.reshape(n, -1)
            keep = np.ones(tf.shape, dtype=bool) if ignore_index is None else tf != ignore_index
            g = np.stack([(tf == k) & keep for k in range(c)], axis=1).astype(np.float64)
            valid = np.broadcast_to(keep[:, None, :], g.shape).astype(np.float64)
            return Prepared(p, logp, log1mp, g, valid, keep.astype(np.float64), True, c, t.shape)
        g = t.reshape(n, c, -1).astype(np.float64)
        keep = np.ones((n, g.shape[2]), dtype=np.float64)
        valid = np.ones(g.shape, dtype=np.float64)
        return Prepared(p, logp, log1mp, g, valid, keep, False, c, t.shape[:1] + t.shape[2:])
    if mode in ("binary", "multilabel"):
        c = 1 if mode == "binary" else x.shape[1]
        xf = x.reshape(n, c, -1)
        tf = t.reshape(n, c, -1).astype(np.float64)
        if from_logits:
            logp, log1mp = log_sigmoid(xf), log_sigmoid(-xf)
            p = sigmoid(xf)
        else:
            p = xf
            logp, log1mp = _log(p), _log1m(p)
        keep = np.ones(tf.shape, dtype=bool) if ignore_index is None else tf != ignore_index
        g = np.where(keep, tf, 0.0)
        valid = keep.astype(np.float64)
        return Prepared(p, logp, log1mp, g, valid, valid, False, c, x.shape)
    raise ValueError(f"unknown mode {mode!r}")


# --------------------------------------------------------------------------------------------
# soft confusion statistics and the class reduction
# --------------------------------------------------------------------------------------------


@dataclass
class Stats:
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    psum: np.ndarray  # sum p
    gsum: np.ndarray  # sum g
    psq: np.ndarray  # sum p^2
    gsq: np.ndarray  # sum g^2


def soft_stats(pr: Prepared, *, per_image: bool) -> Stats:
    """TP, FP, FN per class, shape (N, C) with per_image else (C,)."""
    v, p, g = pr.valid, pr.p, pr.g
    out = Stats(
        tp=(v * p * g).sum(-1),
        fp=(v * p * (1 - g)).sum(-1),
        fn=(v * (1 - p) * g).sum(-1),
        psum=(v * p).sum(-1),
        gsum=(v * g).sum(-1),
        psq=(v * p * p).sum(-1),
        gsq=(v * g * g).sum(-1),
    )
    if not per_image:
        for name in ("tp", "fp", "fn", "psum", "gsum", "psq", "gsq"):
            setattr(out, name, getattr(out, name).sum(0))
    return out


def reduce_classes(
    loss: np.ndarray,
    *,
    mode: str,
    include_background: bool = True,
    class_weights: Sequence[float] | None = None,
    reduction: str = "mean",
) -> np.ndarray:
    """Class selection, class weights and reduction of per-class losses (C,) or (N, C)."""
    c = loss.shape[-1]
    if not include_background and mode != "binary":
        loss = loss[..., 1:]
    w = np.ones(loss.shape[-1]) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    if w.shape[0] == c and loss.shape[-1] == c - 1:
        w = w[1:]
    if reduction == "mean":
        n_rows = 1 if loss.ndim == 1 else loss.shape[0]
        return np.asarray((w * loss).sum() / (w.sum() * n_rows))
    if reduction == "sum":
        return np.asarray((w * loss).sum())
    if reduction == "none":
        return w * loss
    raise ValueError(reduction)


# --------------------------------------------------------------------------------------------
# region losses
# --------------------------------------------------------------------------------------------


def dice_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    smooth=1.0,
    squared=False,
    log_loss=False,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    s = soft_stats(pr, per_image=per_image)
    if squared:
        score = (2 * s.tp + smooth) / (s.psq + s.gsq + smooth)
    else:
        score = (2 * s.tp + smooth) / (2 * s.tp + s.fp + s.fn + smooth)
    loss = -np.log(score) if log_loss else 1 - score
    return reduce_classes(
        loss,
        mode=mode,
        include_background=include_background,
        class_weights=class_weights,
        reduction=reduction,
    )


def jaccard_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    s = soft_stats(pr, per_image=per_image)
    score = (s.tp + smooth) / (s.tp + s.fp + s.fn + smooth)
    return reduce_classes(
        1 - score,
        mode=mode,
        include_background=include_background,
        class_weights=class_weights,
        reduction=reduction,
    )


def _tversky_index(s: Stats, alpha: float, beta: float, smooth: float) -> np.ndarray:
    # alpha weights the false positives, beta the false negatives
    return (s.tp + smooth) / (s.tp + alpha * s.fp + beta * s.fn + smooth)


def tversky_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    alpha=0.3,
    beta=0.7,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    s = soft_stats(pr, per_image=per_image)
    return reduce_classes(
        1 - _tversky_index(s, alpha, beta, smooth),
        mode=mode,
        include_background=include_background,
        class_weights=class_weights,
        reduction=reduction,
    )


def focal_tversky_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    alpha=0.3,
    beta=0.7,
    gamma=0.75,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    s = soft_stats(pr, per_image=per_image)
    return reduce_classes(
        (1 - _tversky_index(s, alpha, beta, smooth)) ** gamma,
        mode=mode,
        include_background=include_background,
        class_weights=class_weights,
        reduction=reduction,
    )


def _two_class(pr: Prepared) -> Prepared:
    """Binary mode as the two classes [1 - p, p] with targets [1 - g, g]."""
    return Prepared(
        p=np.concatenate([1 - pr.p, pr.p], axis=1),
        logp=np.concatenate([pr.log1mp, pr.logp], axis=1),
        log1mp=np.concatenate([pr.logp, pr.log1mp], axis=1),
        g=np.concatenate([1 - pr.g, pr.g], axis=1) * np.concatenate([pr.valid, pr.valid], axis=1),
        valid=np.concatenate([pr.valid, pr.valid], axis=1),
        pix_valid=pr.valid[:, 0, :],
        index_target=False,
        n_classes=2,
        out_shape=pr.out_shape,
    )


def sudre_weights(gsum: np.ndarray) -> np.ndarray:
    """Sudre weights for one row of kept classes: 1 / G^2, absent -> largest present, sum 1."""
    present = gsum > 0
    if not present.any():
        w = np.ones_like(gsum)
    else:
        w = np.zeros_like(gsum)
        w[present] = 1.0 / gsum[present] ** 2
        w[~present] = w[present].max()
    return w / w.sum()


def generalized_dice_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    smooth=1.0,
    include_background=True,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    if mode == "binary":
        pr = _two_class(pr)
    s = soft_stats(pr, per_image=True)  # (N, C)
    tp, psum, gsum = s.tp, s.psum, s.gsum
    if not per_image:
        tp, psum, gsum = tp.sum(0, keepdims=True), psum.sum(0, keepdims=True), gsum.sum(0, keepdims=True)
    if not include_background:
        tp, psum, gsum = tp[:, 1:], psum[:, 1:], gsum[:, 1:]
    rows = []
    for i in range(tp.shape[0]):
        w = sudre_weights(gsum[i])
        rows.append(1 - (2 * (w * tp[i]).sum() + smooth) / ((w * (psum[i] + gsum[i])).sum() + smooth))
    loss = np.asarray(rows)
    if not per_image:
        return np.asarray(loss[0])
    if reduction == "mean":
        return np.asarray(loss.mean())
    if reduction == "sum":
        return np.asarray(loss.sum())
    return loss


# --------------------------------------------------------------------------------------------
# pixel losses
# --------------------------------------------------------------------------------------------


def _pixel_reduce(per_elem: np.ndarray, unit_valid: np.ndarray, out_shape, reduction: str) -> np.ndarray:
    per_elem = per_elem * unit_valid
    if reduction == "mean":
        count = unit_valid.sum()
        return np.asarray(0.0 if count == 0 else per_elem.sum() / count)
    if reduction == "sum":
        return np.asarray(per_elem.sum())
    return per_elem.reshape(out_shape)


def cross_entropy_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    class_weights=None,
    label_smoothing=0.0,
    ignore_index=None,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    ls = label_smoothing
    if mode == "multiclass":
        c = pr.n_classes
        w = np.ones(c) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        wb = w[None, :, None]
        if pr.index_target:
            # torch.nn.functional.cross_entropy with class indices: the NLL term is normalised by
            # sum_i w_{y_i}; the label-smoothing term -sum_c w_c log p_c by the same sum
            keep = pr.pix_valid
            nll = -xlogy(pr.g, pr.logp)
            nll = (wb * nll).sum(1) * keep
            smooth_term = -(wb * pr.logp).sum(1) * keep if ls > 0 else np.zeros_like(nll)
            per_pix = (1 - ls) * nll + ls / c * smooth_term
            if reduction == "mean":
                denom = (pr.g * wb).sum()  # sum_i w_{y_i} over the kept pixels (g is one-hot there)
                return np.asarray(0.0 if keep.sum() == 0 else per_pix.sum() / denom)
            if reduction == "sum":
                return np.asarray(per_pix.sum())
            return per_pix.reshape(pr.out_shape)
        # probability targets: g -> g (1 - ls) + ls / C, loss -sum_c w_c g_c log p_c, mean over pixels
        g = pr.g * (1 - ls) + ls / c
        per_pix = -(wb * xlogy(g, pr.logp)).sum(1)
        return _pixel_reduce(per_pix, pr.pix_valid, pr.out_shape, reduction)
    # binary / multilabel BCE, weight c multiplies channel c, mean over kept elements
    c = pr.n_classes
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    g = pr.g * (1 - ls) + ls / 2
    per_elem = -w[None, :, None] * (xlogy(g, pr.logp) + xlogy(1 - g, pr.log1mp))
    return _pixel_reduce(per_elem, pr.valid, pr.out_shape, reduction)


cross_entropy = cross_entropy_loss


def _pow1m(logq: np.ndarray, gamma: float) -> np.ndarray:
    """q^gamma from log q, with 0^0 = 1."""
    if gamma == 0:
        return np.ones_like(logq)
    return np.exp(gamma * logq)


def focal_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    alpha="auto",
    gamma=2.0,
    ignore_index=None,
    reduction="mean",
):
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    if mode == "multiclass":
        a = np.ones(pr.n_classes) if alpha in (None, "auto") else np.asarray(alpha, dtype=np.float64)
        # -sum_c alpha_c g_c (1 - p_c)^gamma log p_c, per pixel
        coef = a[None, :, None] * pr.g * _pow1m(pr.log1mp, gamma)
        per_pix = -xlogy(coef, pr.logp).sum(1)
        return _pixel_reduce(per_pix, pr.pix_valid, pr.out_shape, reduction)
    a = 0.25 if alpha == "auto" else alpha
    a_pos, a_neg = (1.0, 1.0) if a is None else (a, 1 - a)
    pos = xlogy(a_pos * pr.g * _pow1m(pr.log1mp, gamma), pr.logp)
    neg = xlogy(a_neg * (1 - pr.g) * _pow1m(pr.logp, gamma), pr.log1mp)
    return _pixel_reduce(-(pos + neg), pr.valid, pr.out_shape, reduction)


# --------------------------------------------------------------------------------------------
# compound losses
# --------------------------------------------------------------------------------------------


def dice_ce_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    ce_weight=1.0,
    dice_weight=1.0,
    smooth=1.0,
    squared=False,
    log_loss=False,
    label_smoothing=0.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    ce = cross_entropy_loss(
        x,
        t,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    dl = dice_loss(
        x,
        t,
        mode=mode,
        from_logits=from_logits,
        smooth=smooth,
        squared=squared,
        log_loss=log_loss,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
    )
    return ce_weight * ce + dice_weight * dl


def combo_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    alpha=0.5,
    beta=0.5,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    """Taghanaki et al. 2019: alpha * L_wce - (1 - alpha) * D (reduction="mean")."""
    if reduction != "mean":
        raise NotImplementedError("the reference combo loss is defined for reduction='mean'")
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    # one-vs-rest weighted BCE on the probabilities, averaged over every kept pixel and class
    per_elem = -(beta * xlogy(pr.g, pr.logp) + (1 - beta) * xlogy(1 - pr.g, pr.log1mp))
    count = pr.valid.sum()
    l_wce = 0.0 if count == 0 else (per_elem * pr.valid).sum() / count
    d = 1 - dice_loss(
        x,
        t,
        mode=mode,
        from_logits=from_logits,
        smooth=smooth,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction="mean",
    )
    return np.asarray(alpha * l_wce - (1 - alpha) * d)


def hybrid_focal_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    weight=0.5,
    focal_alpha="auto",
    focal_gamma=2.0,
    tversky_alpha=0.3,
    tversky_beta=0.7,
    tversky_gamma=0.75,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    fl = focal_loss(
        x,
        t,
        mode=mode,
        from_logits=from_logits,
        alpha=focal_alpha,
        gamma=focal_gamma,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    ftl = focal_tversky_loss(
        x,
        t,
        mode=mode,
        from_logits=from_logits,
        alpha=tversky_alpha,
        beta=tversky_beta,
        gamma=tversky_gamma,
        smooth=smooth,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
    )
    return weight * fl + (1 - weight) * ftl


# --------------------------------------------------------------------------------------------
# unified focal loss (Yeung et al. 2022), reduction="mean"
# --------------------------------------------------------------------------------------------


def _uf_prepare(x, t, mode, from_logits, ignore_index) -> Prepared:
    if mode == "multilabel":
        raise ValueError("unified focal: multilabel is not defined")
    pr = prepare(x, t, mode=mode, from_logits=from_logits, ignore_index=ignore_index)
    return _two_class(pr) if mode == "binary" else pr


def _uf_focal(pr: Prepared, delta: float, gamma: float, asymmetric: bool) -> float:
    ce = -xlogy(pr.g, pr.logp)  # (N, C, M)
    back = (1 - delta) * _pow1m(pr.log1mp[:, :1], gamma) * ce[:, :1]
    rare = delta * ce[:, 1:]
    if not asymmetric:
        rare = rare * _pow1m(pr.log1mp[:, 1:], gamma)
    per_pix = back.sum(1) + rare.sum(1)
    keep = pr.pix_valid
    return 0.0 if keep.sum() == 0 else float((per_pix * keep).sum() / keep.sum())


def _uf_tversky(pr: Prepared, delta: float, gamma: float, smooth: float, asymmetric: bool) -> float:
    s = soft_stats(pr, per_image=True)  # (N, C): statistics per image
    mti = (s.tp + smooth) / (s.tp + delta * s.fn + (1 - delta) * s.fp + smooth)
    back = 1 - mti[:, :1]
    if not asymmetric:
        back = back ** (1 - gamma)
    rare = (1 - mti[:, 1:]) ** (1 - gamma)
    return float(np.concatenate([back, rare], axis=1).mean())


def asymmetric_focal_loss(x, t, *, mode, from_logits=True, delta=0.7, gamma=2.0, ignore_index=None):
    return _uf_focal(_uf_prepare(x, t, mode, from_logits, ignore_index), delta, gamma, True)


def symmetric_focal_loss(x, t, *, mode, from_logits=True, delta=0.7, gamma=2.0, ignore_index=None):
    return _uf_focal(_uf_prepare(x, t, mode, from_logits, ignore_index), delta, gamma, False)


def asymmetric_focal_tversky_loss(
    x, t, *, mode, from_logits=True, delta=0.7, gamma=0.75, smooth=1e-7, ignore_index=None
):
    return _uf_tversky(_uf_prepare(x, t, mode, from_logits, ignore_index), delta, gamma, smooth, True)


def symmetric_focal_tversky_loss(
    x, t, *, mode, from_logits=True, delta=0.7, gamma=0.75, smooth=1e-7, ignore_index=None
):
    return _uf_tversky(_uf_prepare(x, t, mode, from_logits, ignore_index), delta, gamma, smooth, False)


def unified_focal_loss(
    x,
    t,
    *,
    mode,
    from_logits=True,
    weight=0.5,
    delta=0.6,
    gamma=0.5,
    asymmetric=True,
    smooth=1e-7,
    ignore_index=None,
):
    pr = _uf_prepare(x, t, mode, from_logits, ignore_index)
    l_f = _uf_focal(pr, delta, gamma, asymmetric)
    l_ft = _uf_tversky(pr, delta, gamma, smooth, asymmetric)
    return weight * l_f + (1 - weight) * l_ft


# --------------------------------------------------------------------------------------------
# helpers for the tests
# --------------------------------------------------------------------------------------------

REFERENCES: dict[str, Callable[..., np.ndarray | float]] = {
    "dice_loss": dice_loss,
    "jaccard_loss": jaccard_loss,
    "tversky_loss": tversky_loss,
    "focal_tversky_loss": focal_tversky_loss,
    "generalized_dice_loss": generalized_dice_loss,
    "cross_entropy_loss": cross_entropy_loss,
    "focal_loss": focal_loss,
    "dice_ce_loss": dice_ce_loss,
    "combo_loss": combo_loss,
    "hybrid_focal_loss": hybrid_focal_loss,
    "unified_focal_loss": unified_focal_loss,
    "asymmetric_focal_loss": asymmetric_focal_loss,
    "symmetric_focal_loss": symmetric_focal_loss,
    "asymmetric_focal_tversky_loss": asymmetric_focal_tversky_loss,
    "symmetric_focal_tversky_loss": symmetric_focal_tversky_loss,
}


def numeric_grad(
    f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6, probabilities: bool = False
) -> np.ndarray:
    """Central finite difference of a scalar function of an array, in float64.

    With ``probabilities=True`` the step shrinks near 0 and 1 (at most 1e-4 of the distance), so that
    the truncation error stays small where log p or log(1 - p) is steep.
    """
    x = np.array(x, dtype=np.float64, order="C")  # reshape(-1) below must be a view (not a copy of an F array)
    step = np.full(x.shape, eps)
    if probabilities:
        step = np.minimum(step, 1e-4 * np.minimum(np.abs(x), np.abs(1 - x)))
    grad = np.zeros_like(x)
    flat, gflat, hflat = x.reshape(-1), grad.reshape(-1), step.reshape(-1)
    for i in range(flat.size):
        old, h = flat[i], hflat[i]
        flat[i] = old + h
        up = float(f(x))
        flat[i] = old - h
        down = float(f(x))
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad
