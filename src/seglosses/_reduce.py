"""Class selection, class weights and reduction: the one implementation every region loss uses."""

from __future__ import annotations

import math

from torch import Tensor

from seglosses._checks import check_class_weights_length, check_classes_left
from seglosses._distributed import Sync
from seglosses._prepare import sync_ratio


def _mean(values: Tensor) -> Tensor:
    """The mean, or 0 (with a zero gradient) over no element: an empty batch (N = 0) with ``per_image``."""
    return values.mean() if values.numel() else values.sum()


def select_classes(values: Tensor, *, mode: str, include_background: bool, fn: str) -> Tensor:
    """Drop channel 0 (the last dim) when ``include_background=False``; binary mode's only channel is foreground."""
    if mode == "binary" or include_background:
        return values
    check_classes_left(fn, int(values.shape[-1]), include_background)
    return values[..., 1:]


def reduce_classes(
    values: Tensor,
    *,
    fn: str,
    mode: str,
    include_background: bool,
    class_weights: Tensor | None,
    reduction: str,
    sync: Sync | None = None,
) -> Tensor:
    """Reduce per-class losses ``(C,)`` or ``(N, C)``.

    ``"mean"``: ``sum_c w_c L_c / sum_c w_c`` (then the mean over images); ``"sum"``: ``sum w_c L_c``;
    ``"none"``: ``w_c L_c`` of the kept classes, ``(C,)`` or ``(N, C)``. With ``sync`` (per-image values under
    ``sync_stats=True``) the mean and the sum run over the images of every rank (:func:`reduce_images`).
    """
    num_classes = int(values.shape[-1])
    kept = select_classes(values, mode=mode, include_background=include_background, fn=fn)
    if class_weights is None:
        if sync is not None and reduction != "none":
            return reduce_images(kept, reduction, sync)
        if reduction == "mean":
            return _mean(kept)
        return kept.sum() if reduction == "sum" else kept
    check_class_weights_length(fn, class_weights, num_classes, int(kept.shape[-1]))
    w = class_weights.to(device=kept.device, dtype=kept.dtype)
    if w.numel() != kept.shape[-1]:
        w = w[1:]
    weighted = kept * w
    if sync is not None and reduction != "none":
        return reduce_images(weighted.sum(-1) / w.sum() if reduction == "mean" else weighted, reduction, sync)
    if reduction == "mean":
        return _mean(weighted.sum(-1) / w.sum())
    return weighted.sum() if reduction == "sum" else weighted


def reduce_images(values: Tensor, reduction: str, sync: Sync | None) -> Tensor:
    """Mean (or sum) of per-image values ``(N, ...)`` over every element, the images of all ranks with ``sync``.

    The mean is ``sum / (N_global * prod(other dims))``: the local sum and the local number of images are summed
    over the ranks in one collective. ``"none"`` returns ``values`` (local rows, nothing to sync).
    """
    if reduction == "none":
        return values
    if sync is None:
        return _mean(values) if reduction == "mean" else values.sum()
    per_row = math.prod(values.shape[1:])  # not values[0]: a rank may hold no image (N = 0)
    images = values.new_tensor(float(values.shape[0] * per_row) if values.ndim else 1.0)
    return sync_ratio(values.sum(), images, reduction, sync)


def weighted_sum(*terms: tuple[float, Tensor]) -> Tensor:
    """``sum_k w_k T_k`` of a compound loss's terms, a term whose weight is exactly 0 left out.

    ``0 * T`` would be NaN where ``T`` is infinite (``-log 0`` of a wrong probability that is exactly 0 or 1, valid
    input with ``from_logits=False``; ``log_loss`` with ``smooth=0``), so that ``ce_weight=0`` would not mean "no
    cross entropy": such a term contributes zeros of its shape (broadcast as before) and no gradient. With every
    weight 0 the plain ``sum_k 0 * T_k`` is kept, so the result stays part of the graph. The weights are Python
    numbers (hyperparameters): the test reads no tensor.
    """
    if all(isinstance(w, int | float) and w == 0 for w, _ in terms):
        return sum((w * t for w, t in terms[1:]), terms[0][0] * terms[0][1])
    parts = [t.new_zeros(t.shape) if isinstance(w, int | float) and w == 0 else w * t for w, t in terms]
    return sum(parts[1:], parts[0])
