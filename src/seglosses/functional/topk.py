r"""TopK loss (Wu et al. 2016; nnU-Net's TopK10): the mean of the largest per-pixel cross-entropy values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seglosses._checks import (
    UNIT,
    Interval,
    as_caller,
    check_hparams,
    check_ignore_index,
    check_mode,
    check_reduction,
    check_sync,
    hyperparameters,
)
from seglosses._distributed import sync_sums
from seglosses._prepare import sync_ratio
from seglosses._types import Mode, Reduction
from seglosses.functional.pixel import cross_entropy_loss

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None

#: ``k``: a percentage in (0, 100].
PERCENT = Interval(0.0, 100.0, low_open=True)


def _fraction(k: float) -> Fraction:
    """``k`` as the rational its shortest decimal spells (10.0 -> 10, 0.1 -> 1/10), denominator at most 10^6."""
    frac = Fraction(repr(float(k)))
    return frac if frac.denominator <= 10**6 else frac.limit_denominator(10**6)


def _ratio(k: float) -> tuple[int, int]:
    """``k / 100`` as ``(numerator, denominator)`` integers (:func:`_fraction`).

    While ``torch.compile`` traces, ``k`` may be symbolic (``dynamic=True``, or a second loss with another ``k`` in
    one process): ``repr`` cannot be traced, so there ``k`` is taken in millionths, ``round(k * 10^6) / 10^6``, the
    same rational for every ``k`` written with at most 6 decimals (the only ones :func:`_fraction` keeps unrounded;
    a ``k`` such as ``100 / 3`` may select one value more or fewer than eagerly on very large pixel counts).
    """
    if torch.compiler.is_compiling():  # (Dynamo shows a symbolic k as a float: no test tells them apart here)
        return round(k * 1_000_000), 100_000_000
    frac = _fraction(k)
    return frac.numerator, 100 * frac.denominator


def topk_count(k: float, kept: Tensor) -> Tensor:
    """``max(1, ceil(k * kept / 100))`` exactly, in int64 (0 where ``kept`` is 0); ``kept`` an int64 tensor."""
    num, den = _ratio(k)
    count = (kept * num + den - 1) // den  # ceil(num * kept / den), exact in integers
    return torch.where(kept > 0, count.clamp_min(1), torch.zeros_like(count))


def _max_count(k: float, n: int) -> int:
    """:func:`topk_count` of ``n`` in Python integers: the most values any row selects (no tensor, no sync)."""
    num, den = _ratio(k)
    return max(1, (n * num + den - 1) // den) if n > 0 else 0


@hyperparameters(k=PERCENT, label_smoothing=UNIT)
def topk_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    k: float = 10.0,
    class_weights: Weights = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""TopK loss: the unweighted mean of the ``k`` percent largest per-pixel cross-entropy values.

    .. math::

        \ell_i = \text{the per-pixel loss of } \texttt{cross\_entropy\_loss}, \qquad
        n = \#\text{kept}, \quad K = \max(1, \lceil k\, n / 100 \rceil), \qquad
        L = \frac{1}{K} \sum_{i \in \text{top}_K(\ell)} \ell_i

    Ignored pixels are removed before the selection (they can never be selected); :math:`K` is computed exactly
    in integers (``k`` read as its shortest decimal: 10.0 is 10, 0.1 is 1/10; under ``torch.compile`` in
    millionths, the same for every ``k`` with at most 6 decimals) and is at least 1; with no kept pixel the loss
    is 0. Over the whole batch, or per image then the mean over the images that have a kept pixel
    (``per_image``). Binary/multilabel mode selects among all kept elements (pixel x channel) of the BCE.

    Shapes:
        input and target as :func:`seglosses.functional.cross_entropy_loss`; output ``()``, or ``(N,)`` for
        ``reduction="none"`` with ``per_image`` (0 for an image with no kept pixel).

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.cross_entropy_loss` (soft targets allowed).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        k: the percentage of pixels kept, in (0, 100] (default 10.0, nnU-Net's TopK10; 100 is the plain CE
            without class weights' normalisation).
        class_weights: per-class weights of the per-pixel CE, as :func:`seglosses.functional.cross_entropy_loss`
            (multiclass: ``w_y`` times each pixel's CE; binary/multilabel: channel c's BCE times ``w_c``); the mean
            of the selected values is unweighted. Default None. Not allowed in binary mode.
        label_smoothing: as :func:`seglosses.functional.cross_entropy_loss` (default 0).
        ignore_index: target value whose pixels are removed before the selection (default None).
        per_image: select and average per image, then the mean over images (default False: over the batch).
        reduction: over the images with ``per_image``: ``"mean"`` (default; the images with a kept pixel),
            ``"sum"`` or ``"none"`` (``(N,)``). Without ``per_image`` there is one value, which every reduction
            returns.
        sync_stats: under ``torch.distributed``: the selection count is not a sum, so each rank selects its own
            :math:`\lceil k\, n_{rank} / 100 \rceil` largest values; the sums of the selected values and the counts
            are then summed over the ranks (the mean of the union of the ranks' selections, which differs from the
            top K of the concatenated batch when the ranks' values are distributed differently). With
            ``per_image`` the mean over the images of every rank is exact. Default False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`seglosses.functional.cross_entropy_loss`; ``k`` outside (0, 100].
        TypeError: see :func:`seglosses.functional.cross_entropy_loss`.

    Note:
        nnU-Net ``TopKLoss(weight=w, k=10)`` (CE with ``reduction="none"``, then ``torch.topk`` over the flattened
        batch of ``int(n * k / 100)`` values) equals ours with ``class_weights=w``, ``per_image=False`` whenever
        ``k n / 100`` is a whole number and no pixel is ignored (JunMa11/SegLoss ``TopKLoss`` is the same code). It
        floors the count (0 values, hence a NaN mean, on inputs of fewer than ``100 / k`` pixels) and keeps ignored
        pixels (CE 0) in the pool and in ``n``, where they can be selected and dilute the mean; ours removes them
        first. Wu et al.'s bootstrapped CE keeps the pixels
        whose loss exceeds a threshold, with a minimum count; K percent is nnU-Net's form.

    References:
        Z. Wu, C. Shen, A. van den Hengel, "Bridging category-level and instance-level semantic image segmentation",
        arXiv:1605.06885, 2016; F. Isensee et al., "nnU-Net", Nature Methods 18, 2021 (TopK10).

    Examples:
        Four pixels with logit 0 (CE log 2 each) and one confident right pixel: with k = 40, K = ceil(0.4 * 5) = 2
        values, both log 2.

        >>> import torch
        >>> from seglosses.functional import topk_loss
        >>> x = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 20.0]]])
        >>> g = torch.ones(1, 1, 5)
        >>> round(topk_loss(x, g, mode="binary", k=40.0).item(), 4)
        0.6931

    """
    fn = "topk_loss"
    check_mode(fn, mode)
    check_hparams(fn, k=k, per_image=per_image)
    check_reduction(fn, reduction)
    check_ignore_index(fn, ignore_index)
    sync = check_sync(fn, sync_stats, process_group)
    with as_caller(fn):
        values = cross_entropy_loss(
            input,
            target,
            mode=mode,
            from_logits=from_logits,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
            reduction="none",
        )
    n = values.shape[0]
    row_size = math.prod(values.shape[1:])  # explicit: reshape cannot infer -1 for an empty batch
    values = values.reshape(n, row_size)
    if ignore_index is None:
        keep = None
    else:
        keep = (target != ignore_index).reshape(n, row_size)
    group = per_image
    rows = values if group else values.reshape(1, -1)
    if keep is None:
        kept = torch.full((rows.shape[0],), rows.shape[1], dtype=torch.int64, device=rows.device)
        pool = rows
    else:
        keep_rows = keep if group else keep.reshape(1, -1)
        kept = keep_rows.sum(-1)
        pool = torch.where(keep_rows, rows, torch.full_like(rows, float("-inf")))
    count = topk_count(k, kept)
    kmax = _max_count(k, rows.shape[1])
    top = pool.topk(kmax, dim=-1, sorted=True).values if kmax else pool[:, :0]
    chosen = torch.arange(kmax, device=rows.device).unsqueeze(0) < count.unsqueeze(1)
    sums = torch.where(chosen, top, torch.zeros_like(top)).sum(-1)
    if sync is not None and not group:
        total, den = sync_sums([sums[0], count[0].to(sums.dtype)], sync)
        ok = den > 0
        return torch.where(ok, total / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(total))
    cnt = count.to(sums.dtype)
    per_row = torch.where(count > 0, sums / cnt.clamp_min(1), torch.zeros_like(sums))
    if not group:
        return per_row[0]
    if reduction == "none":
        return per_row
    has = (count > 0).to(per_row.dtype)
    if sync is not None:
        if reduction == "sum":
            return sync_sums([per_row.sum()], sync)[0]
        return sync_ratio(per_row.sum(), has.sum(), "mean", sync)
    if reduction == "sum":
        return per_row.sum()
    den = has.sum()
    return torch.where(den > 0, per_row.sum() / den.clamp_min(1), torch.zeros_like(den))
