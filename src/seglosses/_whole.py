r"""A fused loss computed whole by the ``seglosses::whole_loss_fwd`` operator (the GPU's short path).

On CUDA with Triton the ratio losses (Dice, Jaccard, Tversky, focal Tversky), cross entropy, focal and Dice + CE run
as three launches forward (statistics, finalize, the formula of :mod:`seglosses._triton_whole`) and one backward,
instead of the statistics operators followed by two dozen small PyTorch operations. :func:`whole` is the one entry
point the losses call; it returns None wherever the usual path runs (the CPU unless
:func:`seglosses._dispatch.use` forces ``ops=True``, ``reduction="none"``, ``sync_stats``, inputs without a fused
statistics pass). The numbers are the same: the tests run the losses through both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from seglosses import _dispatch, _ops
from seglosses._checks import check_class_weights_length, check_classes_left
from seglosses._prepare import Prepared


class Region(NamedTuple):
    r"""The ratio part: ``weight * reduce_c l(r_c)``, :math:`r = (a TP + s) / (e TP + c_1 P + c_2 G + s)`.

    ``term`` 0: ``1 - r``, 1: ``-log r``, 2: ``(1 - r)^gamma`` (class 0 with the exponent ``gamma0`` when given; 1
    is the plain ``1 - r``); 3 and 4: the generalized Dice instead (its own weights; 4: one channel as the pair
    [background, foreground]). ``two_class``: the ratio part of one channel as that pair too. ``squared``: ``P`` and
    ``G`` are ``sum p^2`` and ``sum g^2`` (Milletari's Dice).
    """

    weight: float
    a: float
    e: float
    c1: float
    c2: float
    smooth: float
    gamma: float
    term: int
    gamma0: float | None = None
    two_class: bool = False
    squared: bool = False


class Pixel(NamedTuple):
    """The pixel part: ``weight *`` the mean (or sum) over kept pixels of the cross entropy / focal term.

    ``split`` ``(w_0, w_other, gamma_0, gamma_other)``: the softmax term's weight and exponent by background / other
    class (the unified focal loss), read from the target in the kernels (no per-pixel maps built); ``pos0``: the
    sigmoid term's positive part without focal modulation (the asymmetric variant); ``smoothing``: label smoothing
    ``eps`` of the cross entropy (softmax: ``(1 - eps)`` of the term plus ``eps / C sum_c u_c (-log p_c)``; sigmoid:
    the target ``(1 - eps) g + eps / 2``).
    """

    weight: float
    gamma: float = 0.0
    alpha: float | None = None
    split: tuple[float, float, float, float] | None = None
    pos0: bool = False
    smoothing: float = 0.0


def tversky_region(weight: float, alpha: float, beta: float, smooth: float, gamma: float = 1.0) -> Region:
    """The Tversky index ``(TP + s) / (TP + alpha FP + beta FN + s)`` (focal with ``gamma != 1``)."""
    return Region(weight, 1.0, 1.0 - alpha - beta, alpha, beta, smooth, gamma, 0 if gamma == 1.0 else 2)


def dice_region(weight: float, smooth: float, log_loss: bool = False, squared: bool = False) -> Region:
    """The Dice score ``(2 TP + s) / (P + G + s)``; ``-log`` of it with ``log_loss``; ``squared``: P, G of squares."""
    return Region(weight, 2.0, 0.0, 1.0, 1.0, smooth, 1.0, 1 if log_loss else 0, squared=squared)


def jaccard_region(weight: float, smooth: float) -> Region:
    """The Jaccard index ``(TP + s) / (P + G - TP + s)``."""
    return Region(weight, 1.0, -1.0, 1.0, 1.0, smooth, 1.0, 0)


def generalized_dice_region(weight: float, smooth: float, two_class: bool) -> Region:
    """Generalized Dice (weights ``1 / G_c^2``); ``two_class``: one channel as the pair [background, foreground]."""
    return Region(weight, 0.0, 0.0, 0.0, 0.0, smooth, 1.0, 4 if two_class else 3)


def applies(prep: Prepared, reduction: str) -> bool:
    """Whether the operator computes this call whole (CUDA with Triton or forced operators, a fused pass, ...)."""
    x = prep.raw
    if prep.sync is not None or reduction not in ("mean", "sum") or x.numel() == 0:
        return False
    if not (_ops.triton_runs(x.device) or _dispatch.settings().ops is True):
        return False
    return _dispatch.stats_path(prep) != "generic"


def whole(
    prep: Prepared,
    *,
    fn: str,
    reduction: str,
    region: Region | None = None,
    pixel: Pixel | None = None,
    class_weights: Tensor | None = None,
    include_background: bool = True,
    per_image: bool = False,
    wpix: Tensor | None = None,
    gamma_pix: Tensor | None = None,
    class_w: Tensor | None = None,
    kept_weighted: bool = False,
) -> Tensor | None:
    """The loss by the operator, or None where :func:`applies` says no.

    ``class_weights`` weigh the region part's classes (all C, or the kept ones); ``wpix`` ``(N, M)`` weighs the
    softmax pixel term (already times the kept mask) and ``gamma_pix`` ``(N, M)`` its per-pixel focal exponent;
    ``class_w`` ``(C,)`` weighs it by each pixel's class instead (read in the kernels; the sigmoid term: by
    channel), and ``kept_weighted`` makes its mean divide by the summed weight (the softmax's weighted cross entropy)
    instead of the kept pixels. ``per_image`` and
    ``include_background`` apply to the region part.
    """
    if not applies(prep, reduction):
        return None
    x = prep.raw  # float16/bfloat16 as they are: the kernels reduce them in float32 (no float32 copy)
    n, c, _m = x.shape
    two_class = region is not None and (region.term == 4 or region.two_class)
    skip_first = region is not None and (prep.mode != "binary" or two_class) and not include_background
    if skip_first:
        check_classes_left(fn, 2 if two_class else c, include_background)
    w = None
    if region is not None and class_weights is not None:
        check_class_weights_length(fn, class_weights, c, c - int(skip_first))
        w = class_weights.to(device=x.device, dtype=prep.dtype)
        if w.numel() != c:  # given for the kept classes only
            w = torch.cat([w.new_zeros(1), w])
    reg = region if region is not None else Region(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0)
    if (gamma_pix is not None or wpix is not None) and prep.mode != "multiclass":
        raise ValueError("whole: per-pixel weights and exponents of the pixel term apply to the softmax only")
    pix = pixel if pixel is not None else Pixel(0.0)
    gamma0 = reg.gamma if reg.gamma0 is None else reg.gamma0
    region_args = [reg.weight, reg.a, reg.e, reg.c1, reg.c2, reg.smooth, reg.gamma, gamma0, float(reg.two_class)]
    region_args.append(float(reg.squared))
    pixel_args = [pix.weight, pix.gamma, float("nan") if pix.alpha is None else float(pix.alpha)]
    pixel_args += [float(v) for v in pix.split] if pix.split is not None else [float("nan")] * 4
    pixel_args += [1.0 if kept_weighted else 0.0, 1.0 if pix.pos0 else 0.0, float(pix.smoothing)]
    mean = reduction == "mean"
    # the target as given (any dtype; bool seen as uint8), ignored values and all: the kernels read it as it is (no
    # converted or cleaned copy, no mask; they compare with ignore_index and count bad class indices themselves);
    # without them (forced operators on the CPU) the cleaned target, its kept mask and the bad-index guard
    raw = prep.target_raw
    valid: Tensor | None = None
    ignore = prep.ignore_index
    bad = None
    triton = _ops.triton_runs(x.device)
    if prep.mode == "multiclass":
        t, g = raw, None
        if not triton:
            t, valid, ignore = prep.target, prep.valid_pixels(), None
            t, bad = _dispatch.guard_indices(t, c, valid)
            if wpix is None and class_w is None:  # the pixel term counts the kept pixels only (the operators' rule)
                wpix = valid
        _dispatch._note("whole:softmax_index:ops")
    else:
        t, g = None, raw.view(torch.uint8) if raw.dtype == torch.bool else raw
        if ignore is not None and not triton:
            g, valid, ignore = prep.target, prep.valid, None
            if valid is not None and valid.shape != x.shape:
                valid = valid.expand_as(x).contiguous()
        _dispatch._note("whole:sigmoid_dense:ops")
    out: tuple[Tensor, Tensor, Tensor, Tensor] = _ops.whole_loss_fwd(
        x, t, g, valid, wpix, gamma_pix, class_w, w, region_args, reg.term, pixel_args, skip_first, per_image, mean,
        ignore,
    )  # fmt: skip
    loss = out[0]
    if bad is not None:  # the host check did not run: NaN where a class index is out of range, without a sync
        loss = loss + torch.where(bad.sum() > 0, float("nan"), 0.0).to(loss.dtype)
    return loss
