r"""More region losses over the shared statistics: log-cosh Dice, sensitivity-specificity, F-beta, Wasserstein Dice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from seglosses._checks import (
    FLAG,
    NONNEGATIVE,
    POSITIVE,
    UNIT,
    check_dist_matrix,
    check_hparams,
    check_mode,
    check_no_class_weights_binary,
    check_one_hot,
    check_reduction,
    check_weights_vector,
    hyperparameters,
    values_checked,
)
from seglosses._distributed import sync_sums
from seglosses._numerics import safe_divide
from seglosses._prepare import Prepared, prepare
from seglosses._reduce import reduce_classes, reduce_images
from seglosses._stats import SoftStats, class_sums, gather_own
from seglosses._types import Mode, Reduction
from seglosses.functional.region import region_stats

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None


def _stats(
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
    squared: bool,
    sync_stats: bool,
    process_group: ProcessGroup | None,
) -> tuple[SoftStats, Tensor | None]:
    """Check the shared arguments, then the soft statistics (:func:`seglosses.functional.region.region_stats`)."""
    return region_stats(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        squared=squared,
        sync_stats=sync_stats,
        process_group=process_group,
    )


@hyperparameters(smooth=NONNEGATIVE, squared=FLAG)
def log_cosh_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    smooth: float = 1.0,
    squared: bool = False,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Log-cosh Dice loss (Jadon 2020): :math:`\log\cosh` of each class's Dice loss.

    .. math::

        L_c = 1 - D_c, \qquad \ell_c = \log\cosh(L_c) = L_c + \operatorname{softplus}(-2 L_c) - \log 2, \qquad
        L = \operatorname{reduce}_c \ell_c

    with :math:`D_c` the Dice score of :func:`seglosses.functional.dice_loss` (the same statistics, ``smooth`` and
    ``squared``). The right-hand form never overflows (``cosh`` would for large arguments); below
    :math:`|L_c| = 1` it would subtract numbers near :math:`\log 2` to get one near :math:`L_c^2 / 2` (in float32
    0 for :math:`L_c < 2 \cdot 10^{-4}`), so there :math:`\log\cosh L = \operatorname{log1p}(2 \sinh^2(L / 2))`
    is used, accurate to rounding. Near 0 it behaves as :math:`L_c^2 / 2`: small Dice errors weigh less than in the
    Dice loss.

    Shapes:
        As :func:`seglosses.functional.dice_loss`.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        smooth: Dice's smooth (default 1.0, Dice's default and reasons).
        squared: Dice's squared denominator (default False).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics (default False).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks before the formula (the loss of
            the concatenated batch; input gradients K times the single-process ones). Default False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`seglosses.functional.dice_loss`.
        TypeError: see :func:`seglosses.functional.dice_loss`.

    Note:
        Jadon's code (``log_cosh_dice_loss`` in the SemSegLoss repository) computes one Dice over every class and
        pixel pooled (``sum(y p)`` over the whole tensor, smooth 1), then ``log(cosh(1 - D))``: equal to ours in
        binary mode (``smooth=1``); with several classes ours is the mean of the per-class values. Dice's
        ``log_loss`` is not offered (a log of a log-cosh is not this loss).

    References:
        S. Jadon, "A survey of loss functions for semantic segmentation", IEEE CIBCB 2020, eq. 18.

    Examples:
        TP = 1.5, FP = 0, FN = 0.5, smooth 1: D = (3 + 1) / (3 + 0.5 + 1) = 8/9, log cosh(1/9) = 0.0061602.

        >>> import torch
        >>> from seglosses.functional import log_cosh_dice_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(log_cosh_dice_loss(p, g, mode="binary", from_logits=False).item(), 6)
        0.00616

    """
    fn = "log_cosh_dice_loss"
    check_hparams(fn, smooth=smooth, squared=squared, include_background=include_background)
    stats, weights = _stats(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        squared=squared,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    if stats.p2_sum is not None and stats.g2_sum is not None:
        den = stats.p2_sum + stats.g2_sum + smooth
    else:
        den = stats.p_sum + stats.g_sum + smooth
    x = 1 - safe_divide(2 * stats.tp + smooth, den, smooth)
    loss = _log_cosh(x)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


def _log_cosh(x: Tensor) -> Tensor:
    """``log(cosh(x))`` to rounding for every finite x, without overflow.

    ``|x| + softplus(-2|x|) - log 2`` for ``|x| >= 1``; below, ``log1p(2 sinh(x/2)^2)`` (``cosh x - 1`` without
    the cancellation of the first form, which lost every digit of ``x^2 / 2`` below ``x ~ sqrt(eps)``). Each branch
    gets inputs where it is finite, so that the branch not taken has a finite gradient (``0 * inf`` would be NaN).
    """
    a = x.abs()
    small = a < 1
    xs = torch.where(small, x, torch.zeros_like(x))
    al = torch.where(small, torch.ones_like(a), a)
    near = torch.log1p(2 * torch.sinh(xs / 2).square())
    far = al + torch_f.softplus(-2 * al) - math.log(2.0)
    return torch.where(small, near, far)


def _sensitivity_sums(prep: Prepared, per_image: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per class: ``sum (g - p)^2 g``, ``sum (g - p)^2 (1 - g)``, ``sum g``, ``sum (1 - g)`` over kept pixels.

    Index targets without a one-hot: ``sum_{t = c} (1 - p_c)^2`` is gathered at each pixel's class and summed into
    it (:func:`seglosses._stats.class_sums`); ``sum_{t != c} p_c^2`` is the sum of ``p^2`` with each pixel's own
    class set to 0. (Not ``sum p_c^2 - sum_{t = c} p_c^2``: that difference of two sums near the class's pixel count
    lost the small off-class terms of a good prediction, and came out negative.)
    """
    p = prep.prob
    n, c, m = p.shape
    valid = prep.valid
    if prep.form == "index":
        t = prep.safe_index()[0]  # indices safe to gather with; an image with a bad one is made NaN below
        p_t = p.gather(1, t.unsqueeze(1)).squeeze(1)
        ones = torch.ones_like(p_t) if valid is None else valid[:, 0]
        pos = class_sums(t, (1 - p_t).square() * ones, c)
        off_sq = p.square().scatter_(1, t.unsqueeze(1), 0.0)  # p_c^2 where c is not the pixel's class (in place)
        neg = (off_sq if valid is None else off_sq * valid).sum(-1)
        g_sum = class_sums(t, ones, c)
        kept = prep.count()
        poison = prep.index_poison(pos.dtype)
        if poison is not None:
            pos = pos + poison.unsqueeze(1)
    else:
        g = prep.target
        err = (g - p).square()
        if valid is not None:
            err = err * valid
        pos = (err * g).sum(-1)
        neg = (err * (1 - g)).sum(-1)
        g_sum = g.sum(-1)
        kept = prep.count()
    g_neg = kept - g_sum
    if not per_image:
        pos, neg, g_sum, g_neg = (v.sum(0) for v in (pos, neg, g_sum, g_neg))
        if prep.sync is not None:
            pos, neg, g_sum, g_neg = sync_sums([pos, neg, g_sum, g_neg], prep.sync)
    return pos, neg, g_sum, g_neg


@hyperparameters(r=UNIT, eps=POSITIVE)
def sensitivity_specificity_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    r: float = 0.05,
    eps: float = 1e-5,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Sensitivity-specificity loss (Brosch et al. 2015): squared errors weighted within positives and negatives.

    .. math::

        L_c = r \frac{\sum (g - p)^2 g}{\sum g + \epsilon} + (1 - r) \frac{\sum (g - p)^2 (1 - g)}{\sum (1 - g)
        + \epsilon}, \qquad L = \operatorname{reduce}_c L_c

    over the kept pixels of the batch (of each image with ``per_image``). The first term is one minus a soft
    sensitivity, the second one minus a soft specificity (for hard targets); ``r`` trades them.

    Shapes:
        As :func:`seglosses.functional.dice_loss`.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.dice_loss` (soft targets use the product form above).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        r: the weight of the sensitivity term in [0, 1] (default 0.05: the paper found 0.01-0.1 to behave alike;
            NiftyNet's default). Small ``r`` suits lesions: the few positives' term is large per pixel anyway.
        eps: added to the denominators only (default 1e-5: no division by zero for a class absent from the target
            or filling it; small enough not to bias large masks).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value to ignore (default None).
        per_image: per-image sums (default False).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the four sums over the ranks before the formula (the loss of
            the concatenated batch; input gradients K times the single-process ones). Default False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`seglosses.functional.dice_loss`; ``r`` outside [0, 1], ``eps <= 0``.
        TypeError: see :func:`seglosses.functional.dice_loss`.

    Note:
        JunMa11/SegLoss ``SSLoss(apply_nonlin=softmax, smooth=1)`` (``r`` fixed at 0.1; softmax of the logits and a
        one-hot target) computes per image and class ``r * sum((g - p)^2 g) / (sum g + smooth) + (1 - r) *
        sum((g - p)^2 (1 - g)) / (sum(1 - g) + smooth)`` (its names are swapped: the positives' term is called
        ``specificity_part``) and takes the mean: ours with ``r=0.1, eps=1.0, per_image=True`` (its
        ``batch_dice=True`` is ``per_image=False``, ``do_bg=False`` is ``include_background=False``). Without
        ``apply_nonlin`` its forward fails (the probabilities are never defined). NiftyNet's
        ``sensitivity_specificity_loss(r=0.05)`` (softmax, epsilon 1e-5 in the denominators, the batch pooled)
        sums the classes: ours with ``reduction="sum"``.

    References:
        T. Brosch, Y. Yoo, L. Y. W. Tang, D. K. B. Li, A. Traboulsee, R. Tam, "Deep convolutional encoder networks
        for multiple sclerosis lesion segmentation", MICCAI 2015, eq. 3.

    Examples:
        Probabilities (1, 0, 0.5, 0) against (1, 0, 1, 0) with r = 0.5 and a negligible eps: the positives' squared
        errors sum to 0.25 over 2 positives, the negatives' to 0: 0.5 * 0.25 / 2 = 0.0625.

        >>> import torch
        >>> from seglosses.functional import sensitivity_specificity_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(sensitivity_specificity_loss(p, g, mode="binary", from_logits=False, r=0.5, eps=1e-9).item(), 6)
        0.0625

    """
    fn = "sensitivity_specificity_loss"
    check_hparams(
        fn, r=r, eps=eps, include_background=include_background, per_image=per_image, class_weights=class_weights
    )
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
    pos, neg, g_sum, g_neg = _sensitivity_sums(prep, per_image)
    loss = r * pos / (g_sum + eps) + (1 - r) * neg / (g_neg + eps)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=prep.sync if per_image else None,
    )


@hyperparameters(beta=NONNEGATIVE, smooth=NONNEGATIVE)
def fbeta_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    beta: float = 1.5,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""F-beta loss (Hashemi et al. 2019, "asymmetric similarity loss"): one minus the soft F-beta score.

    .. math::

        F_{\beta,c} = \frac{(1 + \beta^2)\,TP_c + s}{(1 + \beta^2)\,TP_c + \beta^2 FN_c + FP_c + s}, \qquad
        L = \operatorname{reduce}_c (1 - F_{\beta,c})

    Dividing numerator and denominator by :math:`1 + \beta^2` shows that this is the Tversky loss with
    :math:`\alpha = 1/(1 + \beta^2)` on FP, :math:`\beta_T = \beta^2/(1 + \beta^2)` on FN and smooth
    :math:`s/(1 + \beta^2)`: ``fbeta_loss(beta=b, smooth=s) == tversky_loss(alpha=1/(1+b^2), beta=b^2/(1+b^2),
    smooth=s/(1+b^2))``. :math:`\beta > 1` weighs recall (FN) more than precision; :math:`\beta = 1` is Dice.

    Shapes:
        As :func:`seglosses.functional.dice_loss`.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        beta: >= 0 (default 1.5, the paper's best for lesions: FN weigh 2.25 times FP).
        smooth: added to numerator and denominator (default 1.0, as Dice).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics (default False).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(C,)`` or ``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the statistics over the ranks before the formula. Default
            False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`seglosses.functional.dice_loss`; a negative ``beta``.
        TypeError: see :func:`seglosses.functional.dice_loss`.

    Note:
        JunMa11/SegLoss ``AsymLoss(apply_nonlin=softmax, smooth=1)`` (``beta`` fixed at 1.5) computes per image and
        class ``(TP + s) / (TP + w FN + (1 - w) FP + s)`` with ``w = b^2/(1 + b^2)`` and returns minus its mean (a
        value in [-1, 0]): ``AsymLoss = fbeta_loss(beta=b, smooth=s * (1 + b^2), per_image=True) - 1`` (its
        ``batch_dice=True`` is ``per_image=False``, ``do_bg=False`` is ``include_background=False``).

    References:
        S. R. Hashemi, S. S. M. Salehi, D. Erdogmus, S. P. Prabhu, S. K. Warfield, A. Gholipour, "Asymmetric loss
        functions and deep densely-connected networks for highly-imbalanced medical image segmentation:
        application to multiple sclerosis lesion detection", IEEE Access 7, 2019, eq. 4.

    Examples:
        TP = 1.5, FP = 0, FN = 0.5, beta = 1 (Dice): F = (3 + 1) / (3 + 0.5 + 1) = 8/9, loss 1/9.

        >>> import torch
        >>> from seglosses.functional import fbeta_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(fbeta_loss(p, g, mode="binary", from_logits=False, beta=1.0).item(), 4)
        0.1111

    """
    fn = "fbeta_loss"
    check_hparams(fn, beta=beta, smooth=smooth, include_background=include_background)
    stats, weights = _stats(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        squared=False,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    b2 = beta * beta
    tp = (1 + b2) * stats.tp
    score = safe_divide(tp + smooth, tp + b2 * stats.fn + stats.fp + smooth, smooth)
    return reduce_classes(
        1 - score,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )


@hyperparameters(smooth=NONNEGATIVE)
def generalized_wasserstein_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    dist_matrix: Tensor | Sequence[Sequence[float]],
    from_logits: bool = True,
    smooth: float = 1e-5,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Generalised Wasserstein Dice loss (Fidon et al. 2017): a Dice over a distance between classes.

    .. math::

        W_i = \sum_l M_{y_i, l}\, p_{i,l}, \qquad \alpha_l = M_{l, 0}, \qquad
        TP = \sum_i \alpha_{y_i} (\alpha_{y_i} - W_i), \qquad
        L = 1 - \frac{2\,TP + s}{2\,TP + \sum_i W_i + s}

    per image (sums over its kept pixels), then the mean over images (an image with no kept pixel scores 0 and
    counts in the mean). :math:`M` is ``dist_matrix`` divided by its
    maximum, :math:`W_i` the Wasserstein distance between the prediction at pixel i and its label (a cost of
    confusing class :math:`y_i` with class l), and :math:`\alpha_l` the distance of class l to the background
    (class 0): background pixels contribute no true positive, and confusing two foreground classes that are close
    costs less than confusing either with the background.

    Shapes:
        input ``(N, C, *S)`` (multiclass only); target ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot;
        output ``()`` for ``"mean"``/``"sum"`` (over images), ``(N,)`` for ``"none"``.

    Args:
        input: logits (``from_logits=True``) or probabilities, ``(N, C, *S)``.
        target: class indices or a one-hot (soft targets raise: :math:`W` needs a label per pixel).
        mode: ``"multiclass"`` (the only mode: the loss is defined on C exclusive classes).
        dist_matrix: ``M``, ``(C, C)``, symmetric with a zero diagonal and entries >= 0; required (no choice of
            class distances is neutral; ``1 - eye(C)`` makes every confusion cost the same). Scaled by its maximum.
        from_logits: apply softmax inside (default True).
        smooth: added to numerator and denominator (default 1e-5, the paper's and MONAI's: the loss of an image is
            then 1 only when nothing is right).
        ignore_index: class-index target value to ignore (default None; a one-hot target with it raises).
        reduction: ``"mean"`` (default, over images), ``"sum"`` or ``"none"`` (``(N,)``).
        sync_stats: under ``torch.distributed``, the mean over the images of every rank (each image's value needs
            only its own pixels). Default False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: a mode other than multiclass, soft or non-one-hot dense targets, ``ignore_index`` with a
            one-hot target, a ``dist_matrix`` that is not ``(C, C)``, symmetric, zero on the diagonal and >= 0,
            bad shapes (see :func:`seglosses.functional.dice_loss`).
        TypeError: non-floating input, a floating index target, a non-numeric ``dist_matrix``.

    Note:
        MONAI ``GeneralizedWassersteinDiceLoss(dist_matrix=M, weighting_mode="default", smooth_nr=s,
        smooth_dr=s)`` (logits, index targets) takes :math:`\alpha_l = 1` for every class but the background
        (:math:`\alpha_0 = 0`) and ``TP = sum_i alpha_{y_i} (1 - W_i)``: equal to ours whenever every class is at
        the largest distance from the background (:math:`M_{l,0} = \max M` for l > 0, the usual choice); otherwise
        ours follows the paper's :math:`\alpha_l = M_{l,0}`. MONAI releases before the fix of issue 4650 mixed the
        images of a batch; 1.6 is per image, as here. Its ``weighting_mode="GDL"`` has no equivalent here.

    References:
        L. Fidon, W. Li, L. C. Garcia-Peraza-Herrera et al., "Generalised Wasserstein Dice score for imbalanced
        multi-class segmentation using holistic convolutional networks", BrainLes 2017, eq. 6-9.

    Examples:
        Two classes, M = [[0, 1], [1, 0]], one image with pixels of class (1, 0) and probabilities of class 1
        (1, 0.5): W = (0, 0.5), alpha = (0, 1), TP = 1 * (1 - 0) = 1; loss 1 - 2 / (2 + 0.5) = 0.2 (smooth 0).

        >>> import torch
        >>> from seglosses.functional import generalized_wasserstein_dice_loss
        >>> p = torch.tensor([[[0.0, 0.5], [1.0, 0.5]]])
        >>> y = torch.tensor([[1, 0]])
        >>> m = [[0.0, 1.0], [1.0, 0.0]]
        >>> loss = generalized_wasserstein_dice_loss(p, y, mode="multiclass", dist_matrix=m, from_logits=False,
        ...                                          smooth=0.0)
        >>> round(loss.item(), 4)
        0.2

    """
    fn = "generalized_wasserstein_dice_loss"
    check_mode(fn, mode, ("multiclass",))
    check_hparams(fn, smooth=smooth)
    check_reduction(fn, reduction)
    prep = prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        allow_soft=False,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    c = prep.num_classes
    m = check_dist_matrix(fn, dist_matrix, c).to(device=prep.logits.device, dtype=prep.logits.dtype)
    p = prep.prob
    cost = torch.einsum("kl,nlm->nkm", m, p)  # cost[n, k, i] = sum_l M[k, l] p_il: W_i for a label k
    alpha = m[:, 0]
    if prep.form == "index":
        t = prep.safe_index()[0]  # indices safe to gather with; an image with a bad one is made NaN below
        w = gather_own(cost, t)  # keeps the indices for backward, not the cost map (ATen's gather keeps both)
        a = alpha[t]
        if prep.valid is not None:
            keep = prep.valid[:, 0]
            w, a = w * keep, a * keep
    else:
        g = prep.target
        if values_checked(g):
            check_one_hot(fn, g)
        w = (g * cost).sum(1)
        a = torch.einsum("l,nlm->nm", alpha, g)
    tp = (a * (a - w)).sum(-1)
    w_sum = w.sum(-1)
    loss = 1 - safe_divide(2 * tp + smooth, 2 * tp + w_sum + smooth, smooth)
    poison = prep.index_poison(loss.dtype)
    return reduce_images(loss if poison is None else loss + poison, reduction, prep.sync)
