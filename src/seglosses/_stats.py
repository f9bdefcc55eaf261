"""Per-class confusion statistics: the shared core of every region loss and metric.

With index targets nothing of the input's size is one-hot encoded: each pixel's probability of its own class is
gathered and summed into that class (``scatter_add``), ``P_c = sum p_c`` and ``G_c`` counts the pixels of class c;
then ``FP = P - TP`` and ``FN = G - TP``. These equal the product forms ``sum p (1 - g)`` and ``sum (1 - p) g``
exactly, also for soft targets.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from seglosses import _dispatch
from seglosses._dispatch import FusedSums
from seglosses._distributed import Sync, sync_sums
from seglosses._prepare import Prepared


class SoftStats(NamedTuple):
    """Soft confusion statistics, each ``(N, C)`` with ``per_image=True``, else ``(C,)``.

    Attributes:
        tp: ``sum p g``.
        fp: ``sum p (1 - g)``.
        fn: ``sum (1 - p) g``.
        p_sum: ``sum p`` (= tp + fp).
        g_sum: ``sum g`` (= tp + fn).
        kept: number of kept elements.
        p2_sum: ``sum p^2`` (only with ``squared=True``, else None).
        g2_sum: ``sum g^2`` (only with ``squared=True``, else None).
        sync: with ``sync_stats=True`` and ``per_image=True``, where the mean over images must still be summed over
            ranks (the per-image statistics themselves need no sync); else None.

    """

    tp: Tensor
    fp: Tensor
    fn: Tensor
    p_sum: Tensor
    g_sum: Tensor
    kept: Tensor
    p2_sum: Tensor | None = None
    g2_sum: Tensor | None = None
    sync: Sync | None = None


#: Pixels summed sequentially into one accumulator by :func:`class_sums` (each class gets one slot per span).
_SPAN = 1024


class _GatherOwn(torch.autograd.Function):
    """``x.gather(1, index)`` whose backward keeps the index only.

    ATen's ``gather`` keeps its whole input for the backward (``gather_backward`` reads only its shape): where
    nothing else keeps that input (a skeleton ``S(p)``, a cost map), it was one more tensor of the input's size
    alive until the backward. The backward is ATen's own, so the gradient is the same bit for bit: the incoming
    gradient added into zeros at the gathered positions.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return x.gather(1, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_add_(1, index, grad), None


def gather_own(x: Tensor, index: Tensor) -> Tensor:
    """Each pixel's value at its own class, ``(N, M)``: ``x`` ``(N, K, M)`` gathered at ``index`` ``(N, M)``.

    The same values and gradient as ``x.gather(1, index.unsqueeze(1)).squeeze(1)``; autograd keeps the index, not
    ``x``.
    """
    out: Tensor = _GatherOwn.apply(x, index.unsqueeze(1))  # type: ignore[no-untyped-call]
    return out.squeeze(1)


def class_sums(target: Tensor, values: Tensor, num_classes: int) -> Tensor:
    """``sum_{m: t_m = c} values_m`` per image and class, ``(N, C)``, from indices ``(N, M)``: no one-hot.

    ``scatter_add`` adds a class's values one after another into one accumulator (on a GPU by atomics): in float32
    an accumulator past 2^24 drops every further increment of 1 (a count of a class with more than 2^24 pixels in
    one image stopped at 16777216, and a sum of probabilities near 1 stalled there too). So each span of
    ``_SPAN`` pixels has its own slot per class, and the slots are summed by ``torch.sum`` (a pairwise reduction):
    every count is exact up to 2^24 per slot and the rounding of a sum stays that of a pairwise sum.
    """
    n, m = target.shape
    spans = m // _SPAN
    out = values.new_zeros((n, num_classes))
    if spans > 0:
        head = spans * _SPAN
        slots = values.new_zeros((n, spans, num_classes))
        slots = slots.scatter_add(
            2, target[:, :head].reshape(n, spans, _SPAN), values[:, :head].reshape(n, spans, _SPAN)
        )
        out = slots.sum(1)
        target, values = target[:, head:], values[:, head:]
    return out.scatter_add(1, target, values)


def _synced(stats: SoftStats, prep: Prepared, per_image: bool) -> SoftStats:
    """With ``prep.sync``: batch statistics summed over the ranks (one collective), or per-image ones marked."""
    sync = prep.sync
    if sync is None:
        return stats
    if per_image:
        return stats._replace(sync=sync)
    parts = [stats.tp, stats.p_sum, stats.g_sum, stats.kept]
    if stats.p2_sum is not None and stats.g2_sum is not None:
        parts += [stats.p2_sum, stats.g2_sum]
    tp, p_sum, g_sum, kept, *squares = sync_sums(parts, sync)
    p2_sum, g2_sum = squares if squares else (None, None)
    return SoftStats(tp, p_sum - tp, g_sum - tp, p_sum, g_sum, kept, p2_sum, g2_sum)


def soft_stats(prep: Prepared, *, per_image: bool, squared: bool = False) -> SoftStats:
    """Compute :class:`SoftStats` from a prepared call, summed over the batch unless ``per_image``.

    The path (fused softmax pass, fused sigmoid pass, or the generic formulas on probabilities) is chosen by
    :func:`seglosses._dispatch.stats_path`; every path gives the same numbers. With ``prep.sync``
    (``sync_stats=True``) the batch statistics are summed over the ranks too: one differentiable all-reduce.
    """
    path = _dispatch.stats_path(prep, squared=squared)
    if path == "softmax_index":
        sums = _dispatch.softmax_index_sums(prep.logits, prep.target, prep.valid_pixels())
        return stats_from_sums(prep, sums, per_image)
    if path == "sigmoid_dense":
        return stats_from_sums(prep, _dispatch.sigmoid_dense_sums(prep.logits, prep.target, prep.valid), per_image)
    _dispatch.note_generic("stats")
    p = prep.prob
    n, c, _ = p.shape
    valid = prep.valid
    pv = p if valid is None else p * valid
    p_sum = pv.sum(-1)
    p2_sum: Tensor | None = None
    g2_sum: Tensor | None = None
    if prep.form == "index":
        target, bad = _dispatch.guard_indices(prep.target, c, prep.valid_pixels())
        t = target.unsqueeze(1)  # (N, 1, M)
        p_t = pv.gather(1, t).squeeze(1)  # (N, M): each pixel's probability of its own class (0 if ignored)
        tp = class_sums(target, p_t, c)
        ones = torch.ones_like(p_t) if valid is None else valid.squeeze(1)
        g_sum = class_sums(target, ones, c)
        if bad is not None:  # the host check did not run: NaN statistics for an image with a bad index
            poisoned = _dispatch.poison(FusedSums(tp, p_sum, g_sum, p_sum[:, 0]), bad)
            tp, p_sum, g_sum = poisoned.tp, poisoned.p_sum, poisoned.g_sum
        if squared:
            p2_sum = (pv * p).sum(-1)
            g2_sum = g_sum
    else:
        g = prep.target  # already 0 at ignored elements
        tp = (pv * g).sum(-1)
        g_sum = g.sum(-1)
        if squared:
            p2_sum = (pv * p).sum(-1)
            g2_sum = (g * g).sum(-1)
    count = prep.count()
    stats = SoftStats(tp, p_sum - tp, g_sum - tp, p_sum, g_sum, count, p2_sum, g2_sum)
    if not per_image:
        stats = SoftStats(
            tp.sum(0),
            stats.fp.sum(0),
            stats.fn.sum(0),
            p_sum.sum(0),
            g_sum.sum(0),
            count.sum(0),
            None if p2_sum is None else p2_sum.sum(0),
            None if g2_sum is None else g2_sum.sum(0),
        )
    return _synced(stats, prep, per_image)


def stats_from_sums(prep: Prepared, sums: FusedSums, per_image: bool) -> SoftStats:
    """Complete :class:`SoftStats` from the per-image ``TP``, ``P`` and ``G`` of a fused pass (synced as above)."""
    tp, p_sum, g_sum = sums.tp, sums.p_sum, sums.g_sum
    count = prep.count()
    if not per_image:
        tp, p_sum, g_sum, count = tp.sum(0), p_sum.sum(0), g_sum.sum(0), count.sum(0)
    return _synced(SoftStats(tp, p_sum - tp, g_sum - tp, p_sum, g_sum, count), prep, per_image)


def fused_stats_and_pixel(
    prep: Prepared,
    *,
    per_image: bool,
    wpix: Tensor | None = None,
    gamma: float | Tensor = 0.0,
    alpha: float | None = None,
    gamma_pos0: bool = False,
    valid: Tensor | None = None,
) -> tuple[SoftStats, Tensor] | None:
    """:class:`SoftStats` and the per-image pixel sums ``(N,)`` from one fused pass; None on the generic path.

    The compound losses (Dice + CE, unified focal) take both from the same pass. Softmax (multiclass logits, index
    targets): ``wpix`` and ``gamma`` (float or per-pixel) of the pixel term, ``valid`` the ``(N, M)`` kept mask
    (default: the prepared one). Sigmoid (binary/multilabel logits): ``alpha``, ``gamma`` (a float) and
    ``gamma_pos0``; ``valid`` is the prepared mask.
    """
    path = _dispatch.stats_path(prep)
    if path == "softmax_index":
        sums = _dispatch.softmax_index_sums(
            prep.logits,
            prep.target,
            prep.valid_pixels() if valid is None else valid,
            wpix=wpix,
            gamma=gamma,
            need_pixel=True,
        )
    elif path == "sigmoid_dense":
        assert not isinstance(gamma, Tensor)
        sums = _dispatch.sigmoid_dense_sums(
            prep.logits, prep.target, prep.valid, alpha=alpha, gamma=gamma, need_pixel=True, gamma_pos0=gamma_pos0
        )
    else:
        return None
    return stats_from_sums(prep, sums, per_image), sums.pixel


def two_class_stats(stats: SoftStats) -> SoftStats:
    """Statistics of the pair [1 - p, p] from the foreground's (binary mode as two classes, as Sudre et al. did).

    Background: ``TP_0 = count - P - G + TP``, ``FP_0 = FN_1``, ``FN_0 = FP_1``; shape gains a class dim of 2 in front
    of the foreground's one (binary statistics have C = 1).
    """
    tp, fp, fn, p_sum, g_sum, count = stats.tp, stats.fp, stats.fn, stats.p_sum, stats.g_sum, stats.kept
    p0 = count - p_sum
    g0 = count - g_sum
    # TP_0 = count - P - G + TP, taken as G_0 - FP_1: an absent background (G_0 = 0, every kept pixel foreground) then
    # gets TP_0 + FN_0 = -FP_1 + FP_1 = 0 exactly, so smooth = 0 reaches the 0/0 rule of safe_divide; the other order
    # left a rounding residual (-1.1e-16), a ratio of two residuals whose gradient (~1e16, cancelling) erased the
    # image's other gradients
    tp0 = g0 - fp
    cat = torch.cat
    return SoftStats(
        cat([tp0, tp], -1),
        cat([fn, fp], -1),
        cat([fp, fn], -1),
        cat([p0, p_sum], -1),
        cat([g0, g_sum], -1),
        cat([count, count], -1),
        sync=stats.sync,
    )


def hard_stats(
    pred: Tensor, target: Tensor, valid: Tensor | None, num_classes: int, *, multilabel: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Confusion counts ``(tp, fp, fn, tn)`` of hard predictions, int64 ``(N, C)`` with ``per_image``, else ``(C,)``.

    Multiclass (``multilabel=False``): one ``bincount`` over the codes ``(image, target, pred)`` gives the confusion
    matrix ``cm[n, target, pred]`` (of the whole batch unless ``per_image``); ``TP_c`` is its diagonal, ``FP_c`` the
    pixels predicted c with another target, ``FN_c`` the pixels of class c predicted as another, and
    ``TN_c = kept - TP_c - FP_c - FN_c``. Multilabel and binary (one channel): each channel is its own 0/1 problem.

    Args:
        pred: ``(N, M)`` int64 class indices in [0, C), or ``(N, C, M)`` bool/0-1 maps when ``multilabel``.
        target: the same form as ``pred`` (any value at ignored elements).
        valid: ``None`` (every element kept) or a bool mask, ``(N, M)`` (class indices) or ``(N, C, M)``.
        num_classes: C.
        multilabel: whether ``pred``/``target`` are per-channel 0/1 maps.
        per_image: keep the batch dimension.

    """
    if multilabel:
        pb, tb = pred.bool(), target.bool()
        if valid is not None:
            v = valid.bool()
            pb, tb = pb & v, tb & v
            total = v.sum(-1)
        else:
            n, c, m = pb.shape
            total = torch.full((n, c), m, dtype=torch.int64, device=pb.device)
        tp = (pb & tb).sum(-1)
        fp = pb.sum(-1) - tp
        fn = tb.sum(-1) - tp
    else:
        n, m = pred.shape
        c = num_classes
        images = n if per_image else 1
        code = target.long() * c + pred.long()
        if per_image:  # one confusion matrix per image
            code = code + torch.arange(n, device=pred.device).unsqueeze(1) * (c * c)
        if valid is not None:  # ignored pixels go to one extra bin, dropped below
            code = torch.where(valid.bool(), code, torch.full_like(code, images * c * c))
        bins = images * c * c
        cm = torch.bincount(code.flatten(), minlength=bins + 1)[:bins].view(images, c, c)
        tp = cm.diagonal(dim1=1, dim2=2)
        fp = cm.sum(1) - tp  # predicted c, target another class
        fn = cm.sum(2) - tp  # target c, predicted another class
        total = cm.sum((1, 2)).unsqueeze(1).expand(images, c)
        if not per_image:
            tp, fp, fn, total = tp[0], fp[0], fn[0], total[0]
        return tp, fp, fn, total - tp - fp - fn
    tn = total - tp - fp - fn
    if not per_image:
        tp, fp, fn, tn = tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0)
    return tp, fp, fn, tn
