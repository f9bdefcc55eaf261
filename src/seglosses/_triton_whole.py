r"""Triton kernel of a loss's final formula: one program after finalize, so that a fused loss is 3 + 1 launches.

On CUDA the region losses of the ratio family (Dice, Jaccard, Tversky, focal Tversky), the pixel losses (cross
entropy, focal) and Dice + CE take three launches forward (statistics, finalize, this formula) and one backward
(the gradient pass of :mod:`seglosses._triton`, which multiplies the coefficients written here by the loss's
incoming gradient in the kernel), instead of two dozen small PyTorch operations on ``(N, C)`` tensors.

The loss is :math:`L = \lambda_r R + \lambda_p F`. The region part, per class (and image, with ``per_image``), from
the statistics ``TP``, ``P = sum p`` and ``G = sum g``:

.. math::

    r = \frac{a\,TP + s}{e\,TP + c_1 P + c_2 G + s}, \qquad
    \ell(r) = 1 - r \;|\; -\log r \;|\; (1 - r)^\gamma

(Dice: ``a = 2, e = 0, c1 = c2 = 1``; Jaccard: ``a = 1, e = -1, c1 = c2 = 1``; Tversky:
``a = 1, e = 1 - alpha - beta, c1 = alpha, c2 = beta``), ``0 / 0 = 1`` when ``s = 0`` (with a zero gradient),
``(1 - r)^\gamma`` with the subgradient 0 at ``r = 1`` (as :func:`seglosses._numerics.safe_pow`; class 0 may have
its own exponent, an exponent of 1 is the plain ``1 - r`` and one of 0 the constant 1, also at ``r = 1``; NaN
statistics, poisoned by a value-check counter, give NaN);
``R = sum w_c l_c / norm`` with ``w`` the class weights (1 without; 0 for a class left out), ``norm = sum w``
(times the number of images with ``per_image``) for the mean, 1 for the sum. The pixel part: the per-image pixel
sums ``F_n`` of the statistics pass (cross entropy or focal terms) give ``F = sum F_n / sum kept_n`` (0 when nothing
is kept) for the mean, ``sum F_n`` for the sum. Written too: the coefficients ``dL/dTP_{n,c}``, ``dL/dP_{n,c}``
(per image: the batch statistics are sums over the images) and ``dL/dF_n``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seglosses._triton import _acc, _next_pow2, _tl_acc

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

#: The region part's kinds: the ratio's per-class term ``1 - r``, ``-log r``, ``(1 - r)^gamma``; or the generalized
#: Dice (Sudre et al., weights ``1 / G_c^2``), with binary input as the pair [background, foreground].
TERMS = {"one_minus": 0, "neg_log": 1, "power": 2, "generalized_dice": 3, "generalized_dice_two_class": 4}


if triton is not None:
    from seglosses._triton import _as_acc

    @triton.jit  # type: ignore[untyped-decorator]
    def _ratio_terms(
        tp: tl.tensor,
        p: tl.tensor,
        g: tl.tensor,
        a: tl.tensor,
        e: tl.tensor,
        c1: tl.tensor,
        c2: tl.tensor,
        smooth: tl.tensor,
        gamma: tl.tensor,
        TERM: tl.constexpr,
        SMOOTH_ZERO: tl.constexpr,
    ) -> Any:
        """``(l(r), dl/dTP, dl/dP)`` of one row of classes."""
        num = a * tp + smooth
        den = e * tp + c1 * p + c2 * g + smooth
        if SMOOTH_ZERO:
            zero = den == 0.0
            den_s = tl.where(zero, 1.0, den)
            r = tl.where(zero, 1.0, num / den_s)
            dr_tp = tl.where(zero, 0.0, (a * den_s - num * e) / (den_s * den_s))
            dr_p = tl.where(zero, 0.0, -num * c1 / (den_s * den_s))
        else:
            r = num / den
            dr_tp = (a * den - num * e) / (den * den)
            dr_p = -num * c1 / (den * den)
        if TERM == 0:
            val = 1.0 - r
            dval = tl.full(r.shape, -1.0, r.dtype)
        elif TERM == 1:
            val = -tl.log(r)
            dval = -1.0 / r
        else:  # gamma may differ per class (a vector): an exponent of 1 is the plain 1 - r, of 0 the constant 1
            base = 1.0 - r
            pos = base > 0.0
            lb = tl.log(tl.where(pos, base, 1.0))
            keep_nan = tl.where(base != base, base, 0.0)  # poisoned (NaN) statistics stay NaN, not the 0 of base <= 0
            val = tl.where(pos, tl.exp(gamma * lb), keep_nan)
            dval = tl.where(pos, -gamma * tl.exp((gamma - 1.0) * lb), keep_nan)
            val = tl.where(gamma == 0.0, 1.0 + keep_nan, val)  # 0^0 = 1 (safe_pow's exponent 0), no gradient
            dval = tl.where(gamma == 0.0, keep_nan, dval)
            val = tl.where(gamma == 1.0, base, val)
            dval = tl.where(gamma == 1.0, -1.0, dval)
        return val, dval * dr_tp, dval * dr_p

    @triton.jit  # type: ignore[untyped-decorator]
    def _row_stats(
        tp_ptr: tl.tensor,
        p_ptr: tl.tensor,
        g_ptr: tl.tensor,
        kept_ptr: tl.tensor,
        n: tl.tensor,
        C: tl.tensor,
        offs: tl.tensor,
        mc: tl.tensor,
        TWO_CLASS: tl.constexpr,
        ACC: tl.constexpr,
    ) -> Any:
        """``(TP, P, G)`` of image ``n`` over the classes.

        ``TWO_CLASS``: the pair [background, foreground] of one channel, the background's ``TP_0 = K - P - G + TP``
        (taken as ``(K - G) - (P - TP)``, as :func:`seglosses._stats.two_class_stats`: exactly 0 when every kept
        element is foreground), ``P_0 = K - P``, ``G_0 = K - G`` (``K`` the kept elements).
        """
        if TWO_CLASS:
            t1 = tl.load(tp_ptr + n).to(ACC)
            p1 = tl.load(p_ptr + n).to(ACC)
            g1 = tl.load(g_ptr + n).to(ACC)
            k = tl.load(kept_ptr + n).to(ACC)
            tp = tl.where(offs == 0, (k - g1) - (p1 - t1), t1)
            p = tl.where(offs == 0, k - p1, p1)
            g = tl.where(offs == 0, k - g1, g1)
        else:
            row = n * C + offs
            tp = tl.load(tp_ptr + row, mask=mc, other=0.0).to(ACC)
            p = tl.load(p_ptr + row, mask=mc, other=0.0).to(ACC)
            g = tl.load(g_ptr + row, mask=mc, other=0.0).to(ACC)
        return tp, p, g

    @triton.jit  # type: ignore[untyped-decorator]
    def _store_coefs(
        ctp_ptr: tl.tensor,
        cp_ptr: tl.tensor,
        n: tl.tensor,
        C: tl.tensor,
        offs: tl.tensor,
        mc: tl.tensor,
        dtp: tl.tensor,
        dp: tl.tensor,
        TWO_CLASS: tl.constexpr,
    ) -> None:
        """Write image ``n``'s coefficients.

        ``TWO_CLASS``: the background's flow back to the foreground's ``TP`` (``+1``) and ``P`` (``-1`` through
        ``TP_0`` and ``P_0``).
        """
        if TWO_CLASS:
            d0 = tl.sum(tl.where(offs == 0, dtp, 0.0), axis=0)
            e0 = tl.sum(tl.where(offs == 0, dp, 0.0), axis=0)
            d1 = tl.sum(tl.where(offs == 1, dtp, 0.0), axis=0)
            e1 = tl.sum(tl.where(offs == 1, dp, 0.0), axis=0)
            tl.store(ctp_ptr + n, d1 + d0)
            tl.store(cp_ptr + n, e1 - d0 - e0)
        else:
            tl.store(ctp_ptr + n * C + offs, dtp, mask=mc)
            tl.store(cp_ptr + n * C + offs, dp, mask=mc)

    @triton.jit  # type: ignore[untyped-decorator]
    def _whole_kernel(
        tp_ptr: tl.tensor,
        p_ptr: tl.tensor,
        g_ptr: tl.tensor,
        pix_ptr: tl.tensor,
        kept_ptr: tl.tensor,
        w_ptr: tl.tensor,
        loss_ptr: tl.tensor,
        ctp_ptr: tl.tensor,
        cp_ptr: tl.tensor,
        cpix_ptr: tl.tensor,
        N: tl.tensor,
        C: tl.tensor,
        lam_r: tl.float64,
        lam_p: tl.float64,
        a: tl.float64,
        e: tl.float64,
        c1: tl.float64,
        c2: tl.float64,
        smooth: tl.float64,
        gamma: tl.float64,
        gamma0: tl.float64,
        TERM: tl.constexpr,
        SMOOTH_ZERO: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        MEAN: tl.constexpr,
        HAS_W: tl.constexpr,
        SKIP_FIRST: tl.constexpr,
        HAS_REGION: tl.constexpr,
        HAS_PIXEL: tl.constexpr,
        TWO_CLASS: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """The loss and its coefficients from the ``(N, C)`` statistics and ``(N,)`` pixel sums (one program)."""
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        lam_r = _as_acc(lam_r, ACC)
        lam_p = _as_acc(lam_p, ACC)
        a = _as_acc(a, ACC)
        e = _as_acc(e, ACC)
        c1 = _as_acc(c1, ACC)
        c2 = _as_acc(c2, ACC)
        smooth = _as_acc(smooth, ACC)
        gamma = _as_acc(gamma, ACC)
        gamma0 = _as_acc(gamma0, ACC)
        offs = tl.arange(0, BLOCK_C)
        if TWO_CLASS:  # one channel as the pair [background, foreground]
            mc = offs < 2
        else:
            mc = offs < C
        loss = tl.sum(tl.where(mc, 0.0, 0.0).to(ACC), axis=0)
        gam = tl.where(offs == 0, gamma0, gamma).to(ACC)  # class 0 may have its own exponent
        if HAS_REGION:
            if HAS_W:
                w = tl.load(w_ptr + offs, mask=mc, other=0.0).to(ACC)
            else:
                w = tl.where(mc, 1.0, 0.0).to(ACC)
            if SKIP_FIRST:  # the background class left out
                w = tl.where(offs == 0, 0.0, w)
            norm = tl.sum(w, axis=0)
            if not MEAN:
                norm = norm * 0.0 + 1.0
            if PER_IMAGE:
                if MEAN:
                    norm = norm * N
                w = w * lam_r / norm
                total = tl.sum(w * 0.0, axis=0)
                for n in range(N):
                    tp, p, g = _row_stats(tp_ptr, p_ptr, g_ptr, kept_ptr, n, C, offs, mc, TWO_CLASS, ACC)
                    val, dtp, dp = _ratio_terms(tp, p, g, a, e, c1, c2, smooth, gam, TERM, SMOOTH_ZERO)
                    total += tl.sum(tl.where(mc, w * val, 0.0), axis=0)
                    _store_coefs(ctp_ptr, cp_ptr, n, C, offs, mc, w * dtp, w * dp, TWO_CLASS)
                loss += total
            else:
                w = w * lam_r / norm
                tp = w * 0.0
                p = w * 0.0
                g = w * 0.0
                for n in range(N):  # the batch statistics: the images added in order (deterministic)
                    tpn, pn, gn = _row_stats(tp_ptr, p_ptr, g_ptr, kept_ptr, n, C, offs, mc, TWO_CLASS, ACC)
                    tp += tpn
                    p += pn
                    g += gn
                val, dtp, dp = _ratio_terms(tp, p, g, a, e, c1, c2, smooth, gam, TERM, SMOOTH_ZERO)
                loss += tl.sum(tl.where(mc, w * val, 0.0), axis=0)
                for n in range(N):
                    _store_coefs(ctp_ptr, cp_ptr, n, C, offs, mc, w * dtp, w * dp, TWO_CLASS)
        if HAS_PIXEL:
            fsum = loss * 0.0
            kept = loss * 0.0
            for n in range(N):
                fsum += tl.load(pix_ptr + n).to(ACC)
                kept += tl.load(kept_ptr + n).to(ACC)
            if MEAN:
                den = tl.where(kept > 0.0, kept, 1.0)
                coef = tl.where(kept > 0.0, lam_p / den, 0.0)
            else:
                coef = lam_p + loss * 0.0
            loss += tl.where(coef != 0.0, fsum * coef, 0.0)
            for n in range(N):
                tl.store(cpix_ptr + n, coef)
        tl.store(loss_ptr, loss)


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _gdl_row(
        tp: tl.tensor, p: tl.tensor, g: tl.tensor, sel: tl.tensor, smooth: tl.tensor, SMOOTH_ZERO: tl.constexpr
    ) -> Any:
        """Generalized Dice of one row of classes: ``(1 - score, dl/dTP, dl/dP)``, the weights held constant."""
        present = (g > 0.0) & sel
        # (G_min / G_c)^2: the weights 1 / G_c^2 once normalised, without their overflow for a class of tiny mass
        g_min = tl.min(tl.where(present, g, float("inf")), axis=0)
        ratio = g_min / tl.where(present, g, 1.0)
        inv = tl.where(present, ratio * ratio, 0.0)
        largest = tl.max(inv, axis=0)
        inv = tl.where(present, inv, largest)
        inv = tl.where(largest > 0.0, inv, 1.0)  # no class present: equal weights
        inv = tl.where(sel, inv, 0.0)
        w = inv / tl.sum(inv, axis=0)
        num = 2.0 * tl.sum(w * tp, axis=0) + smooth
        den = tl.sum(w * (p + g), axis=0) + smooth
        if SMOOTH_ZERO:
            zero = den == 0.0
            den_s = tl.where(zero, 1.0, den)
            score = tl.where(zero, 1.0, num / den_s)
            dtp = tl.where(zero, 0.0, -2.0 * w / den_s)
            dp = tl.where(zero, 0.0, num * w / (den_s * den_s))
        else:
            score = num / den
            dtp = -2.0 * w / den
            dp = num * w / (den * den)
        return 1.0 - score, dtp, dp

    @triton.jit  # type: ignore[untyped-decorator]
    def _gdl_kernel(
        tp_ptr: tl.tensor,
        p_ptr: tl.tensor,
        g_ptr: tl.tensor,
        kept_ptr: tl.tensor,
        loss_ptr: tl.tensor,
        ctp_ptr: tl.tensor,
        cp_ptr: tl.tensor,
        N: tl.tensor,
        C: tl.tensor,
        lam_r: tl.float64,
        smooth: tl.float64,
        SMOOTH_ZERO: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        MEAN: tl.constexpr,
        SKIP_FIRST: tl.constexpr,
        TWO_CLASS: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """Generalized Dice (Sudre et al.): per image or of the batch; binary as the pair [background, foreground].

        With ``TWO_CLASS`` (one channel) the background's statistics are ``TP_0 = K - P - G + TP``,
        ``P_0 = K - P``, ``G_0 = K - G`` (``K`` the kept elements) and its coefficients flow back to the foreground's
        ``TP`` (``+1``) and ``P`` (``-1`` through ``TP_0`` and ``P_0``).
        """
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        lam_r = _as_acc(lam_r, ACC)
        smooth = _as_acc(smooth, ACC)
        offs = tl.arange(0, BLOCK_C)
        if TWO_CLASS:
            mc = offs < 2
        else:
            mc = offs < C
        sel = mc
        if SKIP_FIRST:
            sel = sel & (offs != 0)
        scale = lam_r
        if PER_IMAGE:
            if MEAN:
                scale = lam_r / N
        if PER_IMAGE:
            total = tl.sum(tl.where(mc, 0.0, 0.0).to(ACC), axis=0)
            for n in range(N):
                tp, p, g = _row_stats(tp_ptr, p_ptr, g_ptr, kept_ptr, n, C, offs, mc, TWO_CLASS, ACC)
                val, dtp, dp = _gdl_row(tp, p, g, sel, smooth, SMOOTH_ZERO)
                total += val
                _store_coefs(ctp_ptr, cp_ptr, n, C, offs, mc, dtp * scale, dp * scale, TWO_CLASS)
            tl.store(loss_ptr, total * scale)
        else:
            tp = tl.where(mc, 0.0, 0.0).to(ACC)
            p = tp
            g = tp
            for n in range(N):  # the batch statistics: the images added in order (deterministic)
                tpn, pn, gn = _row_stats(tp_ptr, p_ptr, g_ptr, kept_ptr, n, C, offs, mc, TWO_CLASS, ACC)
                tp += tpn
                p += pn
                g += gn
            val, dtp, dp = _gdl_row(tp, p, g, sel, smooth, SMOOTH_ZERO)
            tl.store(loss_ptr, val * scale)
            for n in range(N):
                _store_coefs(ctp_ptr, cp_ptr, n, C, offs, mc, dtp * scale, dp * scale, TWO_CLASS)


def whole_loss(
    tp: Tensor,
    psum: Tensor,
    gsum: Tensor,
    pix: Tensor,
    kept: Tensor,
    weights: Tensor | None,
    region: tuple[float, float, float, float, float, float, float, float],
    term: int,
    lam_p: float,
    *,
    skip_first: bool,
    per_image: bool,
    mean: bool,
    two_class: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Launch the formula program: ``(loss (), dL/dTP (N, C), dL/dP (N, C), dL/dF (N,))`` (``(0,)`` if absent).

    ``region`` ``(lambda_r, a, e, c1, c2, smooth, gamma, gamma_0)`` (``lambda_r = 0``: no region part; ``gamma_0``
    the exponent of class 0), ``term`` one of
    :data:`TERMS`, ``weights`` ``(C,)`` class weights on the device or None, ``skip_first``: class 0 left out;
    ``lam_p`` the weight of the pixel part (0: none); ``pix`` and ``kept`` ``(N,)`` from finalize; ``two_class``: the
    one channel's ratio part as the pair [background, foreground].
    """
    n, c = tp.shape
    acc = _acc(tp.dtype)
    loss = torch.empty((), dtype=acc, device=tp.device)
    lam_r, a, e, c1, c2, smooth, gamma, gamma0 = (float(v) for v in region)
    has_region = lam_r != 0.0
    # the coefficients of an absent part are empty tensors (the gradient pass skips that part; nothing to fill)
    ctp = torch.empty((n, c) if has_region else (0,), dtype=acc, device=tp.device)
    cp = torch.empty((n, c) if has_region else (0,), dtype=acc, device=tp.device)
    cpix = torch.empty((n,) if lam_p != 0.0 else (0,), dtype=acc, device=tp.device)
    if term >= 3:  # generalized Dice (4: binary as two classes); no pixel part
        _gdl_kernel[(1,)](
            tp, psum, gsum, kept, loss, ctp, cp, n, c, lam_r, smooth,
            SMOOTH_ZERO=smooth == 0.0, PER_IMAGE=per_image, MEAN=mean, SKIP_FIRST=skip_first, TWO_CLASS=term == 4,
            ACC=_tl_acc(acc), BLOCK_C=2 if term == 4 else _next_pow2(c),
        )  # fmt: skip
        return loss, ctp, cp, cpix
    _whole_kernel[(1,)](
        tp, psum, gsum, pix, kept, tp if weights is None else weights, loss, ctp, cp, cpix, n, c, lam_r, float(lam_p),
        a, e, c1, c2, smooth, gamma, gamma0,
        TERM=term, SMOOTH_ZERO=smooth == 0.0, PER_IMAGE=per_image, MEAN=mean, HAS_W=weights is not None,
        SKIP_FIRST=skip_first, HAS_REGION=has_region, HAS_PIXEL=lam_p != 0.0, TWO_CLASS=two_class, ACC=_tl_acc(acc),
        BLOCK_C=2 if two_class else _next_pow2(c),
    )  # fmt: skip
    return loss, ctp, cp, cpix
