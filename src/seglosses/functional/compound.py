r"""Compound losses: weighted sums of the public losses (Dice + CE, Combo, Hybrid Focal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from seglosses import _dispatch, _whole
from seglosses._checks import (
    FLAG,
    NONNEGATIVE,
    POSITIVE,
    UNIT,
    ClassBalance,
    check_class_weights_length,
    check_focal_alpha,
    check_hparams,
    check_no_class_weights_binary,
    check_reduction,
    check_weights_vector,
    hyperparameters,
)
from seglosses._distributed import sync_sums
from seglosses._numerics import log1m_softmax_lean
from seglosses._prepare import index_log_p, log_probs, masked_mean, prepare
from seglosses._reduce import reduce_classes, weighted_sum
from seglosses._stats import fused_stats_and_pixel, soft_stats
from seglosses._types import Mode
from seglosses.functional.pixel import cross_entropy_values, focal_values, fused_pixel_mean, pixel_weights
from seglosses.functional.region import dice_from_stats, focal_tversky_from_stats

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None
CompoundReduction = Literal["mean", "sum"]


@hyperparameters(
    ce_weight=NONNEGATIVE,
    dice_weight=NONNEGATIVE,
    smooth=NONNEGATIVE,
    squared=FLAG,
    log_loss=FLAG,
    label_smoothing=UNIT,
)
def dice_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    squared: bool = False,
    log_loss: bool = False,
    label_smoothing: float = 0.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: CompoundReduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Dice + cross entropy (binary mode: the seeds' BCE-Dice).

    .. math::

        L = w_{ce}\, \mathrm{CE}(p, g) + w_{dice}\, \mathrm{DiceLoss}(p, g)

    with :func:`seglosses.functional.cross_entropy_loss` and :func:`seglosses.functional.dice_loss`.
    ``class_weights`` go to both terms; ``include_background``, ``smooth``, ``squared``, ``log_loss`` and
    ``per_image`` to the Dice term only (the CE term is always the mean over kept pixels); ``label_smoothing`` to CE.

    Shapes:
        As :func:`seglosses.functional.dice_loss`; output ``()``.

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        ce_weight: weight of the CE term (default 1.0, as MONAI's ``DiceCELoss``; the seeds' U-Net tutorial uses 0.5).
        dice_weight: weight of the Dice term (default 1.0; the tutorial: 0.5).
        smooth: Dice smoothing (default 1.0).
        squared: squared Dice denominator (default False).
        log_loss: ``-log D`` for the Dice term (default False).
        label_smoothing: CE label smoothing (default 0).
        include_background: keep channel 0 in the Dice term (default True).
        class_weights: per-class weights for both terms, one per class (C, background included, also with
            ``include_background=False``: the cross-entropy term weighs every pixel by its class) (default None;
            not in binary mode).
        ignore_index: target value to ignore (default None).
        per_image: per-image Dice (default False).
        reduction: ``"mean"`` (default) or ``"sum"`` (each term with that reduction); ``"none"`` raises.
        sync_stats: under ``torch.distributed``, sum every term's statistics, pixel sums and counts over the ranks of
            ``process_group``, differentiably: every rank gets the loss of the concatenated batch and
            an input gradient K times the single-process one, so DDP's mean over the K ranks gives the
            single-process update. Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: as the two terms; negative weights; ``reduction="none"``.
        TypeError: as the two terms.

    Note:
        MONAI ``DiceCELoss(softmax=True, to_onehot_y=True)`` is ``smooth=1e-5, per_image=True`` here with
        ``ce_weight = lambda_ce`` and ``dice_weight = lambda_dice``; its Dice is per image by default.

    References:
        F. Isensee et al., "nnU-Net", Nature Methods 2021 (Dice + CE as the default segmentation loss).

    Examples:
        Logit 0 everywhere on a 1x2 mask with one positive: CE = log 2; the Dice term has TP = 0.5, FP = 0.5,
        FN = 0.5, so D = (1 + 1) / (2 + 1) and the sum is 0.6931 + 0.3333.

        >>> import torch
        >>> from seglosses.functional import dice_ce_loss
        >>> x = torch.zeros(1, 1, 2)
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> round(dice_ce_loss(x, g, mode="binary").item(), 4)
        1.0265

    """
    fn = "dice_ce_loss"
    check_hparams(
        fn,
        ce_weight=ce_weight,
        dice_weight=dice_weight,
        smooth=smooth,
        squared=squared,
        log_loss=log_loss,
        label_smoothing=label_smoothing,
        include_background=include_background,
        class_weights=class_weights,
        per_image=per_image,
    )
    check_reduction(fn, reduction, ("mean", "sum"))
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
    c = prep.num_classes
    if weights is not None and weights.numel() != c:  # not the kept classes only: the CE term weighs every class
        raise ValueError(
            f"{fn}: `class_weights` must have length C={c} (the cross-entropy term weighs every class, background "
            f"included, also with include_background=False); got {weights.numel()}"
        )
    if weights is not None:  # on the weights as given (a CPU vector is checked on every device): kept sum > 0
        check_class_weights_length(fn, weights, c, c - (0 if include_background else 1))
    # the class weights weigh both terms: Dice's classes, and the cross entropy of each pixel by its class (a mean
    # over the summed weight)
    w_dev = None if weights is None else weights.to(device=prep.device, dtype=prep.dtype)
    whole = _whole.whole(
        prep,
        fn=fn,
        reduction=reduction,
        region=_whole.dice_region(dice_weight, smooth, log_loss, squared),
        pixel=_whole.Pixel(ce_weight, smoothing=label_smoothing),
        class_weights=w_dev,
        include_background=include_background,
        per_image=per_image,
        class_w=w_dev,
        kept_weighted=w_dev is not None and mode == "multiclass",
    )
    if whole is not None:  # the GPU's short path: the whole loss in one operator
        return whole
    path = _dispatch.stats_path(prep, squared=squared) if label_smoothing == 0 else "generic"
    fused = None
    if path == "softmax_index":
        # one softmax pass: the statistics and the (class-weighted) cross entropy sums together
        pixel_valid = pixel_weights(prep, w_dev)
        fused = fused_stats_and_pixel(prep, per_image=per_image, wpix=pixel_valid)
    elif path == "sigmoid_dense" and weights is None:
        # one sigmoid pass: the statistics and the BCE sums together
        fused = fused_stats_and_pixel(prep, per_image=per_image)
        valid = prep.valid
        pixel_valid = valid if valid is None or valid.shape == prep.logits.shape else valid.expand_as(prep.logits)
    if fused is not None:
        stats, pix = fused
        ce = fused_pixel_mean(pix, prep, pixel_valid, reduction)
    else:  # the generic formulas of both terms, on the same prepared call
        ce = cross_entropy_values(fn, prep, weights, label_smoothing, reduction)
        stats = soft_stats(prep, per_image=per_image, squared=squared)
    dice = reduce_classes(
        dice_from_stats(stats, smooth=smooth, log_loss=log_loss),
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )
    return weighted_sum((ce_weight, ce), (dice_weight, dice))


@hyperparameters(alpha=UNIT, beta=UNIT, smooth=NONNEGATIVE)
def combo_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Literal["mean"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Combo loss (Taghanaki et al. 2019): a weighted cross entropy minus the Dice score.

    .. math::

        L = \alpha\, L_{wce} - (1 - \alpha)\, D, \qquad
        L_{wce} = -\operatorname{mean}\big[\beta\, g \log p + (1 - \beta)(1 - g) \log(1 - p)\big]

    :math:`L_{wce}` is averaged over every kept pixel and class (one-vs-rest on the probabilities in multiclass
    mode), :math:`D` is the mean per-class Dice score ``1 - dice_loss`` (with ``smooth``, ``include_background``,
    ``class_weights`` and ``per_image`` applied to it). The loss can be negative: that is the paper's
    definition (its minimum is :math:`-(1 - \alpha)`).

    Shapes:
        As :func:`seglosses.functional.dice_loss`; output ``()``.

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        alpha: weight of the CE term against the Dice term, in [0, 1] (default 0.5, the paper's).
        beta: weight of the positive (g) term in the CE, in [0, 1]; beta > 0.5 penalises false negatives more
            (default 0.5).
        smooth: Dice smoothing (default 1.0, the paper's code).
        include_background: keep channel 0 in the Dice term (default True).
        class_weights: per-class weights of the Dice mean (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image Dice (default False).
        reduction: ``"mean"`` only (the two terms are means of different things; a sum has no agreed meaning).
        sync_stats: under ``torch.distributed``, sum every term's statistics, pixel sums and counts over the ranks of
            ``process_group``, differentiably: every rank gets the loss of the concatenated batch and
            an input gradient K times the single-process one, so DDP's mean over the K ranks gives the
            single-process update. Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: as :func:`seglosses.functional.dice_loss`; alpha or beta outside [0, 1].
        TypeError: as :func:`seglosses.functional.dice_loss`.

    Note:
        A common copy multiplies the second log term by ``beta * (1 - beta)``; that is not the paper's loss. Another
        clamps p to [eps, 1 - eps]; we compute the logs in log space instead.

    References:
        S. A. Taghanaki et al., "Combo loss: Handling input and output imbalance in multi-organ segmentation",
        Computerized Medical Imaging and Graphics 75, 2019, eq. 3-4.

    Examples:
        Logit 0 on a 1x2 mask with one positive: L_wce = -mean[0.5 log 0.5, 0.5 log 0.5] = 0.5 log 2 and D = 2/3,
        so L = 0.5 * 0.3466 - 0.5 * 0.6667.

        >>> import torch
        >>> from seglosses.functional import combo_loss
        >>> x = torch.zeros(1, 1, 2)
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> round(combo_loss(x, g, mode="binary").item(), 4)
        -0.16

    """
    fn = "combo_loss"
    check_hparams(
        fn,
        alpha=alpha,
        beta=beta,
        smooth=smooth,
        include_background=include_background,
        per_image=per_image,
        class_weights=class_weights,
    )
    check_reduction(fn, reduction, ("mean",))
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
    # the Dice term from the statistics of the one prepared call (as dice_loss with reduction="mean")
    stats = soft_stats(prep, per_image=per_image)
    dice = reduce_classes(
        dice_from_stats(stats, smooth=smooth, log_loss=False),
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction="mean",
        sync=stats.sync,
    )
    # -D = (dice loss - 1); with every pixel ignored the loss is 0, not -(1 - alpha):
    # the factor is a tensor (no host synchronisation)
    # (no pixel at all, an empty batch or a zero-length axis, is the same case: 0)
    if prep.valid is None:
        any_kept: float | Tensor = 1.0 if prep.logits.numel() else 0.0
    else:
        any_kept = (prep.valid.sum() > 0).to(prep.valid.dtype)
    if prep.sync is not None and prep.valid is not None:  # a pixel kept on any rank
        any_kept = (sync_sums([prep.valid.sum()], prep.sync)[0] > 0).to(prep.valid.dtype)
    if prep.form == "index":
        logp_t = index_log_p(prep)  # NaN in an image with a bad index (device count); no softmax kept
        t = prep.safe_index()[0].unsqueeze(1)  # indices safe to scatter with
        # sum over the classes other than the pixel's own: its own entry is zeroed (no one-hot is built); the exact
        # log(1 - p) whose backward keeps the logits only (autograd through it kept ~5 tensors of the input's size)
        if prep.from_logits:
            others = log1m_softmax_lean(prep.logits, dim=1).scatter(1, t, 0.0).sum(1)
        else:
            kept = prep.prob if prep.valid is None else prep.prob * prep.valid
            others = torch.log1p(-kept.scatter(1, t, 0.0)).sum(1)
        per_pixel = -(beta * logp_t + (1 - beta) * others)
        valid = None if prep.valid is None else prep.valid.squeeze(1)
        wce = masked_mean(per_pixel, valid, "mean", prep.sync) / prep.num_classes
    else:
        logp, log1mp = log_probs(prep)  # multiclass from logits: log(1 - p) with the lean backward
        g = prep.target
        wce = masked_mean(-(beta * g * logp + (1 - beta) * (1 - g) * log1mp), prep.valid, "mean", prep.sync)
    return weighted_sum((alpha, wce), (1 - alpha, (dice - 1) * any_kept))


@hyperparameters(
    weight=UNIT,
    focal_alpha=ClassBalance(UNIT),
    focal_gamma=NONNEGATIVE,
    tversky_alpha=NONNEGATIVE,
    tversky_beta=NONNEGATIVE,
    tversky_gamma=POSITIVE,
    smooth=NONNEGATIVE,
)
def hybrid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    weight: float = 0.5,
    focal_alpha: float | Sequence[float] | Tensor | None | Literal["auto"] = "auto",
    focal_gamma: float = 2.0,
    tversky_alpha: float = 0.3,
    tversky_beta: float = 0.7,
    tversky_gamma: float = 0.75,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: CompoundReduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Hybrid focal loss (Yeung et al. 2021): focal loss plus focal Tversky loss.

    .. math::

        L = w\, \mathrm{FL}(\alpha_f, \gamma_f) + (1 - w)\, \mathrm{FTL}(\alpha_t, \beta_t, \gamma_t)

    with :func:`seglosses.functional.focal_loss` and :func:`seglosses.functional.focal_tversky_loss` at their own
    defaults. ``smooth``, ``include_background``, ``class_weights`` and ``per_image`` go to the focal Tversky term.

    Shapes:
        As :func:`seglosses.functional.dice_loss`; output ``()``.

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        weight: weight of the focal term, in [0, 1] (default 0.5).
        focal_alpha: focal ``alpha`` (default ``"auto"``: 0.25 binary/multilabel, None multiclass).
        focal_gamma: focal ``gamma`` (default 2).
        tversky_alpha: FP weight of the Tversky index (default 0.3).
        tversky_beta: FN weight of the Tversky index (default 0.7).
        tversky_gamma: focal Tversky exponent (default 0.75).
        smooth: Tversky smoothing (default 1.0).
        include_background: keep channel 0 in the Tversky term (default True).
        class_weights: per-class weights of the Tversky mean (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image Tversky statistics (default False).
        reduction: ``"mean"`` (default) or ``"sum"``.
        sync_stats: under ``torch.distributed``, sum every term's statistics, pixel sums and counts over the ranks of
            ``process_group``, differentiably: every rank gets the loss of the concatenated batch and
            an input gradient K times the single-process one, so DDP's mean over the K ranks gives the
            single-process update. Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: as the two terms; ``weight`` outside [0, 1].
        TypeError: as the two terms.

    Note:
        Yeung et al.'s own code of the hybrid focal loss uses ``weight=0.5`` and the components' defaults.

    References:
        M. Yeung, E. Sala, C.-B. Schönlieb, L. Rundo, "Focus U-Net: A novel dual attention-gated CNN for polyp
        segmentation during colonoscopy", Computers in Biology and Medicine 137, 2021.

    Examples:
        Equal parts of the two terms. By hand, with p = sigmoid(2) = 0.8808 (foreground) and sigmoid(-1) = 0.2689
        (background): focal = (0.25 * 0.1192^2 * -log 0.8808 + 0.75 * 0.2689^2 * -log 0.7311) / 2 = 0.00872;
        T = (0.8808 + 1) / (0.8808 + 0.3 * 0.2689 + 0.7 * 0.1192 + 1) = 0.9198, (1 - T)^0.75 = 0.1508; the mean of
        the two is 0.0798:

        >>> import torch
        >>> from seglosses.functional import hybrid_focal_loss, focal_loss, focal_tversky_loss
        >>> x = torch.tensor([[[2.0, -1.0]]]); g = torch.tensor([[[1.0, 0.0]]])
        >>> round(hybrid_focal_loss(x, g, mode="binary").item(), 4)
        0.0798
        >>> b = 0.5 * focal_loss(x, g, mode="binary") + 0.5 * focal_tversky_loss(x, g, mode="binary")
        >>> round(b.item(), 4)
        0.0798

    """
    fn = "hybrid_focal_loss"
    check_hparams(
        fn,
        weight=weight,
        focal_gamma=focal_gamma,
        tversky_alpha=tversky_alpha,
        tversky_beta=tversky_beta,
        tversky_gamma=tversky_gamma,
        smooth=smooth,
        include_background=include_background,
        per_image=per_image,
        class_weights=class_weights,
    )
    check_reduction(fn, reduction, ("mean", "sum"))
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
    a = check_focal_alpha(fn, "focal_alpha", focal_alpha, mode, prep.num_classes)
    # the focal term's pixel sums and the statistics of the focal Tversky term from one fused pass where one applies
    fused = None
    path = _dispatch.stats_path(prep)
    if path == "softmax_index":
        a_t = None if a is None else torch.as_tensor(a).to(device=prep.device, dtype=prep.dtype)
        wpix = pixel_weights(prep, a_t)
        fused = fused_stats_and_pixel(prep, per_image=per_image, wpix=wpix, gamma=focal_gamma)
        pixel_valid = prep.valid_pixels()
    elif path == "sigmoid_dense":
        a_f = None if a is None else float(a)  # type: ignore[arg-type]
        fused = fused_stats_and_pixel(prep, per_image=per_image, alpha=a_f, gamma=focal_gamma)
        pixel_valid = prep.valid
    if fused is not None:
        stats, pix = fused
        fl = fused_pixel_mean(pix, prep, pixel_valid, reduction)
    else:
        fl = focal_values(prep, a, focal_gamma, reduction)
        stats = soft_stats(prep, per_image=per_image)
    ftl = reduce_classes(
        focal_tversky_from_stats(stats, tversky_alpha, tversky_beta, tversky_gamma, smooth),
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=stats.sync,
    )
    return weighted_sum((weight, fl), (1 - weight, ftl))
