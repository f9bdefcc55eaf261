r"""Region losses: each one a formula over the per-class soft TP/FP/FN of :mod:`seglosses._stats`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seglosses import _whole
from seglosses._checks import (
    FLAG,
    NONNEGATIVE,
    POSITIVE,
    check_hparams,
    check_no_class_weights_binary,
    check_reduction,
    check_weights_vector,
    hyperparameters,
)
from seglosses._numerics import safe_divide, stats_pow
from seglosses._prepare import Prepared, prepare
from seglosses._reduce import reduce_classes, reduce_images, select_classes
from seglosses._stats import SoftStats, soft_stats, two_class_stats
from seglosses._types import Mode, Reduction

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None


def region_prepare(
    fn: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    from_logits: bool,
    class_weights: Weights,
    ignore_index: int | None,
    per_image: bool,
    reduction: str,
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> tuple[Prepared, Tensor | None]:
    """Validate the arguments every region loss shares and prepare the call (see :func:`region_stats`)."""
    check_hparams(fn, per_image=per_image, class_weights=class_weights)
    check_reduction(fn, reduction)
    check_no_class_weights_binary(fn, class_weights, mode)
    weights = check_weights_vector(fn, "class_weights", class_weights)
    prep = prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    return prep, weights


def region_stats(
    fn: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    from_logits: bool,
    class_weights: Weights,
    ignore_index: int | None,
    per_image: bool,
    reduction: str,
    squared: bool = False,
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> tuple[SoftStats, Tensor | None]:
    """Validate the arguments every region loss shares, then compute the soft statistics once.

    With ``sync_stats`` the statistics are summed over the ranks (:mod:`seglosses._distributed`).
    """
    prep, weights = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    return soft_stats(prep, per_image=per_image, squared=squared), weights


def dice_from_stats(stats: SoftStats, *, smooth: float, log_loss: bool) -> Tensor:
    """Per-class Dice loss ``1 - D_c`` (or ``-log D_c``) from the statistics (squared form when they carry it)."""
    if stats.p2_sum is not None and stats.g2_sum is not None:
        den = stats.p2_sum + stats.g2_sum + smooth
    else:
        den = stats.p_sum + stats.g_sum + smooth  # = 2 TP + FP + FN + s
    score = safe_divide(2 * stats.tp + smooth, den, smooth)
    return -torch.log(score) if log_loss else 1 - score


@hyperparameters(smooth=NONNEGATIVE, squared=FLAG, log_loss=FLAG)
def dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    squared: bool = False,
    log_loss: bool = False,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Soft Dice loss (Milletari et al. 2016 for ``squared=True``; the Sørensen-Dice score on soft TP/FP/FN).

    .. math::

        D_c = \frac{2\,TP_c + s}{2\,TP_c + FP_c + FN_c + s}, \qquad
        D_c^{sq} = \frac{2\,TP_c + s}{\sum p_c^2 + \sum g_c^2 + s}, \qquad
        L = \operatorname{reduce}_c (1 - D_c) \quad \text{or} \quad \operatorname{reduce}_c(-\log D_c)

    with :math:`TP_c = \sum p g`, :math:`FP_c = \sum p (1 - g)`, :math:`FN_c = \sum (1 - p) g` summed over the
    spatial dims and the batch (per image with ``per_image=True``), and :math:`s` = ``smooth``.

    Shapes:
        - binary: input ``(N, 1, *S)`` or ``(N, *S)``, target the same shape, values in [0, 1].
        - multiclass: input ``(N, C, *S)``; target ``(N, *S)`` int class indices or ``(N, C, *S)`` one-hot/soft.
        - multilabel: input and target ``(N, C, *S)``.
        - output: ``()`` for ``"mean"``/``"sum"``; ``"none"`` gives ``(C,)``, or ``(N, C)`` with ``per_image``
          (the kept classes, weighted by ``class_weights``).

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see Shapes.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (required: guessing it is how copies go wrong).
        from_logits: apply sigmoid (binary/multilabel) or softmax over dim 1 (multiclass) inside. Default True, since
            networks output logits.
        smooth: added to numerator and denominator (default 1.0: an empty class predicted empty scores 1, loss 0,
            while false positives on an empty target are still penalised). With 0, ``0/0`` is defined as 1.
        squared: use :math:`\sum p^2 + \sum g^2` in the denominator (V-Net). Default False (the plain Dice).
        log_loss: return :math:`-\log D` instead of :math:`1 - D`. Default False. Needs ``smooth > 0`` to stay
            finite: with ``smooth=0`` a class absent from the target but predicted has D = 0 and the loss is inf.
        include_background: keep channel 0 (default True; False drops it in multiclass/multilabel; binary mode's only
            channel is the foreground and is always kept).
        class_weights: per-class weights (length C, or the number of kept classes): weighted mean
            :math:`\sum w_c L_c / \sum w_c`. Default None (equal weights). Not allowed in binary mode.
        ignore_index: target value whose pixels count nowhere (index targets, and marker values such as 255 in
            binary/multilabel targets). Default None.
        per_image: compute the statistics and the score per image, then average (default False: statistics summed
            over the whole batch, which is stable for images with small or no foreground).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks of ``process_group`` before the
            formula, differentiably: every rank gets the loss of the concatenated batch and an input
            gradient K times the single-process one, so DDP's mean over the K ranks gives the single-process update.
            Default False (nothing is synchronised, no cost). Raises if no process group is initialised.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss, see Shapes.

    Raises:
        ValueError: bad shapes, class indices out of range, target values outside [0, 1], NaN in the target,
            negative ``smooth``, ``class_weights`` of the wrong length or in binary mode, unknown options.
        TypeError: non-floating input, a floating index target.

    Note:
        Popular variants mapped to these arguments:

        - Keras "flattened sum, smooth in numerator and denominator" (``(2 sum(y p) + s) / (sum y + sum p + s)`` over
          the whole batch): ``dice_loss(p, y, mode="binary", from_logits=False, smooth=s)``.
        - Keras per-sample sum over the last axis with a squared denominator: ``per_image=True, squared=True`` (our
          sums run over all spatial dims of each image, and we average over images and classes).
        - Keras "sigmoid inside, no smooth": ``from_logits=True, smooth=0.0`` (``0/0`` is 1 here, not NaN).
        - A ``gamma`` exponent on the denominator terms (``sum p^gamma + sum g^gamma``): no argument reproduces it
          except ``gamma = 2`` (``squared=True``); other exponents are not a Dice score and are not offered.
        - MONAI ``DiceLoss(sigmoid=True)`` / ``(softmax=True, to_onehot_y=True)``: its defaults ``smooth_nr =
          smooth_dr = 1e-5`` and ``batch=False`` are ``smooth=1e-5, per_image=True``; ``batch=True`` is our default
          ``per_image=False``; ``squared_pred=True`` is ``squared=True``; ``jaccard=True`` is
          :func:`jaccard_loss` with half the smooth.
        - segmentation_models_pytorch ``DiceLoss``: ``smooth=0`` by default, sums over the batch, and it zeroes the
          loss of classes absent from the target (it hides their false positives); we never do that. With
          ``log_loss=True`` it matches our ``log_loss=True`` except for that rule. For soft targets SMP (since 0.4)
          takes :math:`TP = (\sum p + \sum g - \sum |p - g|) / 2` (MONAI's ``soft_label=True``), not our product
          form; hard targets give the same TP.

        Empty classes: a class absent from target and prediction scores :math:`s/s = 1` (loss 0); a class absent
        from the target but predicted is penalised.

    References:
        F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net", 3DV 2016, eq. 1 (squared form).
        C. H. Sudre et al., "Generalised Dice overlap as a deep learning loss function...", DLMIA 2017.

    Examples:
        A 2x2 binary mask, probabilities given: TP = 1 + 0.5, FP = 0, FN = 0.5, so
        D = (3 + 1) / (3 + 0.5 + 1) = 8/9 and the loss is 1/9.

        >>> import torch
        >>> from seglosses.functional import dice_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(dice_loss(p, g, mode="binary", from_logits=False).item(), 4)
        0.1111

    """
    fn = "dice_loss"
    check_hparams(fn, smooth=smooth, squared=squared, log_loss=log_loss, include_background=include_background)
    prep, weights = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.dice_region(1.0, smooth, log_loss, squared),
        class_weights=weights,
        include_background=include_background,
        per_image=per_image,
    )
    if whole is not None:
        return whole
    stats = soft_stats(prep, per_image=per_image, squared=squared)
    loss = dice_from_stats(stats, smooth=smooth, log_loss=log_loss)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


@hyperparameters(smooth=NONNEGATIVE)
def jaccard_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Soft Jaccard (IoU) loss.

    .. math::

        J_c = \frac{TP_c + s}{TP_c + FP_c + FN_c + s}, \qquad L = \operatorname{reduce}_c (1 - J_c)

    Shapes, ``mode``, ``from_logits``, ``include_background``, ``class_weights``, ``ignore_index``, ``per_image``
    and ``reduction`` are as in :func:`dice_loss`.

    Args:
        input: logits or probabilities, see :func:`dice_loss`.
        target: see :func:`dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        smooth: added to numerator and denominator (default 1.0, same reasons as Dice).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics (default False).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks of ``process_group`` before the
            formula, differentiably: every rank gets the loss of the concatenated batch and an input
            gradient K times the single-process one, so DDP's mean over the K ranks gives the single-process update.
            Default False (nothing is synchronised, no cost). Raises if no process group is initialised.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`dice_loss`.
        TypeError: see :func:`dice_loss`.

    Note:
        MONAI ``DiceLoss(jaccard=True, smooth_nr=s, smooth_dr=s)`` computes ``(2 TP + s) / (2 (TP + FP + FN) + s)``,
        which is ``(TP + s/2) / (TP + FP + FN + s/2)``: our ``smooth=s/2``; with its defaults (``s = 1e-5``,
        ``batch=False``) that is ``smooth=5e-6, per_image=True``.
        segmentation_models_pytorch ``JaccardLoss`` uses ``smooth=0`` and zeroes classes absent from the target
        (and its own TP for soft targets: see :func:`dice_loss`).

    References:
        P. Jaccard 1912; M. A. Rahman, Y. Wang, "Optimizing Intersection-over-Union in deep neural networks for image
        segmentation", ISVC 2016.

    Examples:
        TP = 1.5, FP = 0, FN = 0.5: J = (1.5 + 1) / (2 + 1) = 5/6, loss 1/6.

        >>> import torch
        >>> from seglosses.functional import jaccard_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(jaccard_loss(p, g, mode="binary", from_logits=False).item(), 4)
        0.1667

    """
    fn = "jaccard_loss"
    check_hparams(fn, smooth=smooth, include_background=include_background)
    prep, weights = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.jaccard_region(1.0, smooth),
        class_weights=weights,
        include_background=include_background,
        per_image=per_image,
    )
    if whole is not None:
        return whole
    stats = soft_stats(prep, per_image=per_image)
    score = safe_divide(stats.tp + smooth, stats.p_sum + stats.fn + smooth, smooth)  # TP + FP = P
    return reduce_classes(
        1 - score,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


def _tversky_index(stats: SoftStats, alpha: float, beta: float, smooth: float) -> Tensor:
    return safe_divide(stats.tp + smooth, stats.tp + alpha * stats.fp + beta * stats.fn + smooth, smooth)


@hyperparameters(alpha=NONNEGATIVE, beta=NONNEGATIVE, smooth=NONNEGATIVE)
def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float = 0.3,
    beta: float = 0.7,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Tversky loss (Salehi et al. 2017).

    .. math::

        T_c = \frac{TP_c + s}{TP_c + \alpha\,FP_c + \beta\,FN_c + s}, \qquad L = \operatorname{reduce}_c (1 - T_c)

    ``alpha`` weights the false positives and ``beta`` the false negatives; ``alpha = beta = 0.5`` is Dice,
    ``alpha = beta = 1`` is Jaccard.

    Args:
        input: logits or probabilities, see :func:`dice_loss` for shapes.
        target: see :func:`dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        alpha: weight of FP (default 0.3, Salehi et al.'s best setting, favouring recall).
        beta: weight of FN (default 0.7).
        smooth: added to numerator and denominator (default 1.0).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics (default False).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks of ``process_group`` before the
            formula, differentiably: every rank gets the loss of the concatenated batch and an input
            gradient K times the single-process one, so DDP's mean over the K ranks gives the single-process update.
            Default False (nothing is synchronised, no cost). Raises if no process group is initialised.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`dice_loss`; negative ``alpha``/``beta``.
        TypeError: see :func:`dice_loss`.

    Note:
        MONAI ``TverskyLoss`` has ``alpha = beta = 0.5`` by default with ``alpha`` on FP and ``beta`` on FN (as here),
        ``smooth_nr = smooth_dr = 1e-5`` and per-image statistics (``batch=False``): pass ``alpha=0.5, beta=0.5,
        smooth=1e-5, per_image=True``. segmentation_models_pytorch ``TverskyLoss`` (alpha 0.5, beta 0.5, smooth 0)
        zeroes classes absent from the target; we do not (and its TP for soft targets differs: see
        :func:`dice_loss`). Its ``gamma`` raises the class mean to the power, :math:`(\operatorname{mean}_c
        (1 - T_c))^\gamma`, not each class's loss as :func:`focal_tversky_loss`.

    References:
        S. S. M. Salehi, D. Erdogmus, A. Gholipour, "Tversky loss function for image segmentation using 3D fully
        convolutional deep networks", MLMI 2017, eq. 3.

    Examples:
        TP = 1.5, FP = 0, FN = 0.5: T = 2.5 / (1.5 + 0.35 + 1) = 2.5 / 2.85.

        >>> import torch
        >>> from seglosses.functional import tversky_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(tversky_loss(p, g, mode="binary", from_logits=False).item(), 4)
        0.1228

    """
    fn = "tversky_loss"
    check_hparams(fn, alpha=alpha, beta=beta, smooth=smooth, include_background=include_background)
    prep, weights = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.tversky_region(1.0, alpha, beta, smooth),
        class_weights=weights,
        include_background=include_background,
        per_image=per_image,
    )
    if whole is not None:
        return whole
    stats = soft_stats(prep, per_image=per_image)
    loss = 1 - _tversky_index(stats, alpha, beta, smooth)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


def focal_tversky_from_stats(stats: SoftStats, alpha: float, beta: float, gamma: float, smooth: float) -> Tensor:
    """Per-class focal Tversky loss ``(1 - TI_c)^gamma`` from the statistics (see :func:`focal_tversky_loss`).

    A NaN statistic (NaN logits, or a bad class index counted on the device) gives a NaN loss, as in every other
    region loss (:func:`stats_pow`).
    """
    return stats_pow(1 - _tversky_index(stats, alpha, beta, smooth), gamma)


@hyperparameters(alpha=NONNEGATIVE, beta=NONNEGATIVE, gamma=POSITIVE, smooth=NONNEGATIVE)
def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float = 0.3,
    beta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Focal Tversky loss (Abraham & Khan 2019).

    .. math::

        T_c = \frac{TP_c + s}{TP_c + \alpha\,FP_c + \beta\,FN_c + s}, \qquad
        L = \operatorname{reduce}_c (1 - T_c)^{\gamma}

    Args:
        input: logits or probabilities, see :func:`dice_loss` for shapes.
        target: see :func:`dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        alpha: weight of FP (default 0.3).
        beta: weight of FN (default 0.7).
        gamma: focal exponent, > 0 (default 0.75 = 1/(4/3): the paper writes :math:`(1 - T)^{1/\gamma}` with
            :math:`\gamma = 4/3`, the same loss). gamma < 1 raises the loss of classes already well segmented less
            than of hard ones.
        smooth: added to numerator and denominator (default 1.0).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics (default False).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks of ``process_group`` before the
            formula, differentiably: every rank gets the loss of the concatenated batch and an input
            gradient K times the single-process one, so DDP's mean over the K ranks gives the single-process update.
            Default False (nothing is synchronised, no cost). Raises if no process group is initialised.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`tversky_loss`; ``gamma <= 0``.
        TypeError: see :func:`dice_loss`.

    Note:
        The paper's code uses ``smooth=1``, ``alpha=0.7`` on FN (our ``beta``) and ``gamma=0.75``. At a perfect class
        (:math:`T = 1`) the gradient of :math:`(1 - T)^{\gamma}` is taken as 0 (its subgradient) instead of the
        infinite derivative for :math:`\gamma < 1`.

    References:
        N. Abraham, N. M. Khan, "A novel focal Tversky loss function with improved attention U-Net for lesion
        segmentation", ISBI 2019, eq. 4.

    Examples:
        With gamma = 1 this is the Tversky loss: 1 - 2.5 / 2.85.

        >>> import torch
        >>> from seglosses.functional import focal_tversky_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(focal_tversky_loss(p, g, mode="binary", from_logits=False, gamma=1.0).item(), 4)
        0.1228

    """
    fn = "focal_tversky_loss"
    check_hparams(fn, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, include_background=include_background)
    prep, weights = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.tversky_region(1.0, alpha, beta, smooth, gamma),
        class_weights=weights,
        include_background=include_background,
        per_image=per_image,
    )
    if whole is not None:
        return whole
    stats = soft_stats(prep, per_image=per_image)
    loss = focal_tversky_from_stats(stats, alpha, beta, gamma, smooth)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


@hyperparameters(smooth=NONNEGATIVE)
def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    include_background: bool = True,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Generalised Dice loss (Sudre et al. 2017).

    .. math::

        w_c = \frac{1 / G_c^2}{\sum_k 1 / G_k^2}, \qquad
        L = 1 - \frac{2 \sum_c w_c TP_c + s}{\sum_c w_c (P_c + G_c) + s}

    with :math:`P_c = \sum p_c`, :math:`G_c = \sum g_c` over the kept classes. Weights come from the target only
    (no gradient flows through them). A class absent from the target (:math:`G_c = 0`) takes the largest weight of
    the present classes, so its false positives stay penalised; with no class present all weights are equal.
    The normalisation to sum 1 leaves the ratio unchanged and makes ``smooth`` comparable to Dice's.

    Shapes:
        As :func:`dice_loss`; output ``()``, or ``(N,)`` for ``reduction="none"`` with ``per_image=True``
        (``"none"`` without ``per_image`` gives ``()``: the score has no per-class value).

    Args:
        input: logits or probabilities.
        target: see :func:`dice_loss`.
        mode: ``"binary"`` (the two classes [1 - p, p], as Sudre et al.), ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        smooth: added to numerator and denominator (default 1.0).
        include_background: keep channel 0; in binary mode False keeps only the foreground of the pair.
        ignore_index: target value to ignore (default None).
        per_image: weights and score per image, then the mean (default False: over the batch).
        reduction: ``"mean"``, ``"sum"`` (over images) or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks of ``process_group`` before the
            formula, differentiably: every rank gets the loss of the concatenated batch and an input
            gradient K times the single-process one, so DDP's mean over the K ranks gives the single-process update.
            Default False (nothing is synchronised, no cost). Raises if no process group is initialised.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`dice_loss`.
        TypeError: see :func:`dice_loss`.

    Note:
        MONAI ``GeneralizedDiceLoss(w_type="square")`` uses the same weights, the same rule for an absent class
        (the largest finite weight) but no normalisation, so its ``smooth_nr``/``smooth_dr`` act on another scale;
        with ``smooth=0`` (MONAI ``smooth_nr=smooth_dr=0``) and at least one class present the two are equal. MONAI's
        default ``batch=False`` is our ``per_image=True``. With no class present MONAI's weights are all 0 (loss 0 for
        any prediction); ours are equal, so false positives on an empty image are penalised.

    References:
        C. H. Sudre, W. Li, T. Vercauteren, S. Ourselin, M. J. Cardoso, "Generalised Dice overlap as a deep learning
        loss function for highly unbalanced segmentations", DLMIA 2017, eq. 2.

    Examples:
        Binary pair [1 - p, p] with p = [1, 0, 0.5, 0], g = [1, 0, 1, 0]: both classes have G = 2, so the weights
        are 1/2 each; TP = (2, 1.5) and P + G = (4.5, 3.5), so the score is 3.5 / 4 and the loss 0.125 (smooth 0).

        >>> import torch
        >>> from seglosses.functional import generalized_dice_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(generalized_dice_loss(p, g, mode="binary", from_logits=False, smooth=0.0).item(), 4)
        0.125

    """
    fn = "generalized_dice_loss"
    check_hparams(fn, smooth=smooth, include_background=include_background)
    prep, _ = region_prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=None,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.generalized_dice_region(1.0, smooth, two_class=mode == "binary"),
        include_background=include_background,
        per_image=per_image,
    )
    if whole is not None:
        return whole
    stats = soft_stats(prep, per_image=per_image)
    if mode == "binary":
        stats = two_class_stats(stats)
        mode_for_classes = "multiclass"
    else:
        mode_for_classes = mode
    tp, p_sum, g_sum = (
        select_classes(s, mode=mode_for_classes, include_background=include_background, fn=fn)
        for s in (stats.tp, stats.p_sum, stats.g_sum)
    )
    g = g_sum.detach()
    present = g > 0
    # 1 / G_c^2 scaled by G_min^2 (the smallest present G): (G_min / G_c)^2 in (0, 1], the same weights once
    # normalised. 1 / G_c^2 itself overflowed for a soft target's class of tiny mass (G < 5e-20 in float32, < 1e-154
    # in float64): an infinite weight, then inf / inf = NaN
    g_min = torch.where(present, g, torch.full_like(g, float("inf"))).amin(-1, keepdim=True)
    inv = torch.where(present, g_min / torch.where(present, g, torch.ones_like(g)), torch.zeros_like(g)).square()
    largest = inv.amax(-1, keepdim=True)  # 1, or 0 when no class is present
    inv = torch.where(present, inv, largest)
    # no class present: every weight is 0 so far; equal weights then
    inv = torch.where(largest > 0, inv, torch.ones_like(inv))
    w = inv / inv.sum(-1, keepdim=True)
    score = safe_divide(2 * (w * tp).sum(-1) + smooth, (w * (p_sum + g_sum)).sum(-1) + smooth, smooth)
    return reduce_images(1 - score, reduction, stats.sync)
