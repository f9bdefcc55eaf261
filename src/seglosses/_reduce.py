"""Class selection, class weights and reduction: the one implementation every region loss uses."""

from __future__ import annotations

from torch import Tensor

from seglosses._checks import check_class_weights_length, check_classes_left


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
) -> Tensor:
    """Reduce per-class losses ``(C,)`` or ``(N, C)`` (SPEC section 3).

    ``"mean"``: ``sum_c w_c L_c / sum_c w_c`` (then the mean over images); ``"sum"``: ``sum w_c L_c``;
    ``"none"``: ``w_c L_c`` of the kept classes, ``(C,)`` or ``(N, C)``.
    """
    num_classes = int(values.shape[-1])
    kept = select_classes(values, mode=mode, include_background=include_background, fn=fn)
    if class_weights is None:
        if reduction == "mean":
            return kept.mean()
        return kept.sum() if reduction == "sum" else kept
    check_class_weights_length(fn, class_weights, num_classes, int(kept.shape[-1]))
    w = class_weights.to(device=kept.device, dtype=kept.dtype)
    if w.numel() != kept.shape[-1]:
        w = w[1:]
    weighted = kept * w
    if reduction == "mean":
        return (weighted.sum(-1) / w.sum()).mean()
    return weighted.sum() if reduction == "sum" else weighted
