"""The shared path of every metric: check -> hard predictions -> ``hard_stats`` -> formula -> average.

Both :mod:`seglosses.metrics.functional` and :mod:`seglosses.metrics.streaming` go through these helpers, so a
streaming ``compute()`` and one functional call on the concatenated batches run the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from seglosses._checks import (
    check_bool,
    check_classes_left,
    check_ignore_index,
    check_metric_input_target,
    check_mode,
    check_num_classes,
    check_number,
    check_option,
    check_probabilities,
    check_zero_division,
    exact_ignore_target,
)
from seglosses._reduce import select_classes
from seglosses._stats import hard_stats
from seglosses._types import AVERAGES

Counts = tuple[Tensor, Tensor, Tensor, Tensor]

METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity", "accuracy")

# Each metric is one formula over (tp, fp, fn, tn), written as (numerator, denominator).
FORMULAS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "dice": lambda tp, fp, fn, tn: (2 * tp, 2 * tp + fp + fn),
    "iou": lambda tp, fp, fn, tn: (tp, tp + fp + fn),
    "precision": lambda tp, fp, fn, tn: (tp, tp + fp),
    "recall": lambda tp, fp, fn, tn: (tp, tp + fn),
    "specificity": lambda tp, fp, fn, tn: (tn, tn + fp),
    "accuracy": lambda tp, fp, fn, tn: (tp + tn, tp + fp + fn + tn),
}

# Per-image values are averaged over images in fixed point, summed in int64: each value is split into its integer
# part (floor) and its fraction in [0, 1) as a multiple of 2**-32. Integer sums do not depend on the order of
# summation, so the mean over images is the same number whether the images come in one call or in many streaming
# updates. The rounding (< 1.2e-10 per image) is far below any reported digit; int64 holds the fractions of 2**31
# images and the integer parts of 2**32 images of magnitude below ZERO_DIVISION_BOUND (a metric value is in [0, 1],
# only a zero_division number can be larger). A single fixed-point number overflowed for a value of 2**31 or more
# and its sum for 1e6 after about 2,000 images.
_FIXED = 2.0**32
ZERO_DIVISION_BOUND = 2.0**31


def value_dtype(device: torch.device) -> torch.dtype:
    """The dtype of metric values: float64 (ratios of int64 counts), float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def logit(threshold: float, dtype: torch.dtype | None = None) -> float:
    """``log(t / (1 - t))`` in float64, with the limits ``-inf`` at 0 and ``inf`` at 1.

    With ``dtype`` (a floating dtype): the largest value of that dtype not above the logit, so that ``x > logit(t,
    x.dtype)`` compared in ``x``'s dtype is exactly ``sigmoid(x) > t`` for every ``x`` of that dtype. The logit
    rounded to nearest can land above the true value (``t = 0.3`` in float32): ``x`` equal to that rounded value has
    ``sigmoid(x) > t``, but ``x > round(logit)`` is False.
    """
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    value = math.log(threshold) - math.log1p(-threshold)
    if dtype is None:
        return value
    rounded = torch.tensor(value, dtype=dtype)
    if float(rounded) > value:
        rounded = torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))
    return float(rounded)


def check_options(
    fn: str,
    *,
    mode: str,
    threshold: float,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
    num_classes: int | None,
    num_classes_required: bool = False,
) -> tuple[float, int | None]:
    """Check the options every metric call shares; returns ``(threshold, num_classes)``."""
    check_mode(fn, mode)
    t = check_number(fn, "threshold", threshold, low=0.0, high=1.0)
    check_bool(fn, "from_logits", from_logits)
    check_ignore_index(fn, ignore_index)
    check_bool(fn, "per_image", per_image)
    c = check_num_classes(fn, num_classes, mode, required=num_classes_required)
    return t, c


def check_average_options(fn: str, *, average: str, include_background: bool, zero_division: float | str) -> float:
    """Check ``average``, ``include_background`` and ``zero_division``; returns the zero-division value.

    A number for ``zero_division`` must be finite with magnitude below 2**31 (:data:`ZERO_DIVISION_BOUND`): per-image
    values are summed exactly in int64 (:func:`image_sums`), which holds such values over 2**32 images; inf gave a
    meaningless per-image mean.
    """
    check_option(fn, "average", average, AVERAGES)
    check_bool(fn, "include_background", include_background)
    zd = check_zero_division(fn, zero_division)
    if not math.isnan(zd) and not -ZERO_DIVISION_BOUND < zd < ZERO_DIVISION_BOUND:
        raise ValueError(
            f"{fn}: `zero_division` must be 'nan' or a finite number of magnitude below 2**31 (0 or 1 as the value, "
            f"-1 as a marker); got {zd:g}"
        )
    return zd


def counts(
    fn: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    threshold: float,
    from_logits: bool,
    ignore_index: int | None,
    per_image: bool,
    num_classes: int | None,
    include_background: bool = True,
) -> Counts:
    """Validate one call, make the hard predictions and count ``(tp, fp, fn, tn)`` with :func:`hard_stats`."""
    if isinstance(target, Tensor):  # else the check below names the argument
        target = exact_ignore_target(target, ignore_index)
    c, hard, form = check_metric_input_target(
        fn, input, target, mode=mode, ignore_index=ignore_index, num_classes=num_classes
    )
    if mode != "binary":
        check_classes_left(fn, c, include_background)
    n = input.shape[0]
    # elements per image and channel (explicit: reshape cannot infer it from an empty batch)
    m = math.prod(target.shape[2:] if form == "dense" and mode != "binary" else target.shape[1:])
    if mode == "multiclass":
        pred = (input if hard else input.argmax(1)).reshape(n, m).long()  # argmax: ties to the lowest index
        if form == "dense":  # a checked one-hot: its argmax is the class index
            target = (target.byte() if target.dtype == torch.bool else target).argmax(1)
        t = target.reshape(n, m)
        valid = None if ignore_index is None else t != ignore_index
        return hard_stats(pred, t, valid, c, multilabel=False, per_image=per_image)
    x = input.reshape(n, c, m)
    if not hard and not from_logits:
        check_probabilities(fn, x)  # logits passed as probabilities would be thresholded at the wrong place
    if hard:
        pred = x.bool()
    elif from_logits:
        pred = x > logit(threshold, x.dtype)  # exactly sigmoid(x) > t, without the sigmoid, in the input's dtype
    else:
        pred = x > threshold  # as torchmetrics: positive when p > threshold
    t = target.reshape(n, c, m)
    valid = None if ignore_index is None else t != ignore_index
    return hard_stats(pred, t == 1, valid, c, multilabel=True, per_image=per_image)


def ratio(num: Tensor, den: Tensor, zero_division: float) -> Tensor:
    """``num / den`` as floats, ``zero_division`` (NaN or a number) where ``den == 0``."""
    dtype = value_dtype(num.device)
    value = num.to(dtype) / den.to(dtype)
    return torch.where(den > 0, value, torch.full_like(value, zero_division))


def values(
    metric: str,
    stats: Counts,
    *,
    fn: str,
    mode: str,
    average: str,
    include_background: bool,
    zero_division: float,
) -> Tensor:
    """One metric from counts ``(..., C)``: ``(..., C_kept)`` for ``average="none"``, else ``(...)``.

    ``"macro"`` is the mean over kept classes leaving NaN out (all NaN gives NaN); ``"micro"`` applies the formula
    to the counts summed over the kept classes. Multiclass ``accuracy`` with ``"micro"`` is
    ``sum_c TP_c / sum_c (TP_c + FN_c)``: pixel accuracy when every class is kept.
    """
    tp, fp, fn_, tn = (select_classes(s, mode=mode, include_background=include_background, fn=fn) for s in stats)
    if average == "micro":
        tp, fp, fn_, tn = tp.sum(-1), fp.sum(-1), fn_.sum(-1), tn.sum(-1)
        if metric == "accuracy" and mode == "multiclass":
            return ratio(tp, tp + fn_, zero_division)
    value = ratio(*FORMULAS[metric](tp, fp, fn_, tn), zero_division)
    return value.nanmean(-1) if average == "macro" else value


def image_sums(per_image_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact int64 sums over images (dim 0) of the non-NaN values: ``(whole, fraction, count)``.

    ``whole`` sums the integer parts (floor), ``fraction`` the rest in multiples of 2**-32, ``count`` the images
    that had a value.
    """
    kept = ~per_image_values.isnan()
    values = torch.where(kept, per_image_values, 0.0)
    whole = torch.floor(values)
    fraction = torch.round((values - whole) * _FIXED).to(torch.int64)
    return whole.to(torch.int64).sum(0), fraction.sum(0), kept.sum(0)


def image_mean(whole: Tensor, fraction: Tensor, count: Tensor) -> Tensor:
    """The mean over images from :func:`image_sums` (NaN where no image had a value)."""
    dtype = value_dtype(whole.device)
    value = (whole.to(dtype) + fraction.to(dtype) / _FIXED) / count.to(dtype)
    return torch.where(count > 0, value, torch.full_like(value, math.nan))
