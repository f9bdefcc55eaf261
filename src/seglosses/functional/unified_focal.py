r"""Unified focal loss (Yeung et al. 2022) and its four public components."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from seglosses import _dispatch, _whole
from seglosses._checks import FLAG, NONNEGATIVE, UNIT, check_hparams, check_mode, check_reduction, hyperparameters
from seglosses._numerics import safe_divide, safe_pow, stats_pow
from seglosses._prepare import Prepared, focal_factors, index_log_probs, log_probs, masked_mean, prepare, unflatten
from seglosses._reduce import reduce_images, weighted_sum
from seglosses._stats import SoftStats, fused_stats_and_pixel, soft_stats, two_class_stats
from seglosses._types import Mode
from seglosses.functional.pixel import fused_pixel_mean

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

_MODES = ("binary", "multiclass")


def _prepare_uf(
    fn: str,
    input: Tensor,
    target: Tensor,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    sync_stats: bool,
    process_group: ProcessGroup | None,
) -> Prepared:
    check_mode(fn, mode, _MODES)
    return prepare(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        ignore_index=ignore_index,
        sync_stats=sync_stats,
        process_group=process_group,
    )


def _fused_focal_weights(
    prep: Prepared, delta: float, gamma: float, asymmetric: bool
) -> tuple[Tensor | None, Tensor, float | Tensor]:
    """``L_F`` on the fused softmax path: kept-pixel mask, per-pixel weight and per-pixel exponent, each ``(N, M)``.

    The weight is ``1 - delta`` on background pixels and ``delta`` on rare-class pixels (times the mask); the
    exponent is ``gamma`` on the background and, on the rare classes, 0 when asymmetric, else ``gamma``.
    """
    valid_px = prep.valid_pixels()
    background = prep.target == 0
    full = prep.logits.new_full  # scalars in the logits' dtype (a Python float in torch.where would be float32)
    weight = torch.where(background, full((), 1.0 - delta), full((), delta))
    wpix = weight if valid_px is None else weight * valid_px
    g_pix: float | Tensor = background.to(prep.logits.dtype) * gamma if asymmetric else float(gamma)
    return valid_px, wpix, g_pix


def _binary_valid(prep: Prepared) -> Tensor | None:
    """The kept-element mask of a binary call, ``(N, 1, M)`` like the logits (or None)."""
    valid = prep.valid
    if valid is not None and valid.shape != prep.logits.shape:
        valid = valid.expand_as(prep.logits)
    return valid


def _uf_region(
    weight: float, delta: float, gamma: float, asymmetric: bool, smooth: float, binary: bool = False
) -> _whole.Region:
    """``L_FT`` as the whole-loss operator's ratio part (binary: the pair [1 - p, p] from the one channel).

    mTI = (TP + s) / (TP + delta FN + (1 - delta) FP + s): ``c1 = 1 - delta`` on P, ``c2 = delta`` on G and no TP
    term left in the denominator; ``(1 - mTI)^(1 - gamma)``, the background's linear when asymmetric.
    """
    return _whole.Region(
        weight, 1.0, 0.0, 1 - delta, delta, smooth, 1 - gamma, 2, gamma0=1.0 if asymmetric else 1 - gamma,
        two_class=binary,
    )  # fmt: skip


def _uf_pixel(weight: float, delta: float, gamma: float, asymmetric: bool, binary: bool = False) -> _whole.Pixel:
    """``L_F`` as the whole-loss operator's pixel part.

    Multiclass: weight ``1 - delta`` and exponent ``gamma`` on background pixels, ``delta`` and (asymmetric) 0 on
    the others, read from the target in the kernels. Binary: the sigmoid focal term with ``alpha = delta`` and, when
    asymmetric, no modulation of the foreground term (see :func:`_focal_part`).
    """
    if binary:
        return _whole.Pixel(weight, gamma, alpha=delta, pos0=asymmetric)
    return _whole.Pixel(weight, gamma, split=(1 - delta, delta, gamma, 0.0 if asymmetric else gamma))


def _focal_part(prep: Prepared, delta: float, gamma: float, asymmetric: bool, reduction: str) -> Tensor:
    """``L_F``: per pixel, the sum over classes of the modified focal terms, then the mean over kept pixels."""
    if prep.mode in ("multiclass", "binary"):  # the GPU's short path: the whole loss in one operator
        pixel = _uf_pixel(1.0, delta, gamma, asymmetric, binary=prep.mode == "binary")
        whole = _whole.whole(prep, fn="focal", reduction=reduction, pixel=pixel, per_image=True)
        if whole is not None:
            return whole
    path = _dispatch.pixel_path(prep, reduction=reduction)
    if prep.mode == "binary" and path == "sigmoid_dense":
        # L_F of the pair [1 - p, p] is the sigmoid focal term with alpha = delta and, when asymmetric, no
        # modulation of the foreground term
        pix = _dispatch.sigmoid_dense_sums(
            prep.logits, prep.target, prep.valid, alpha=delta, gamma=gamma, need_stats=False, need_pixel=True,
            gamma_pos0=asymmetric,
        ).pixel  # fmt: skip
        return fused_pixel_mean(pix, prep, _binary_valid(prep), reduction)
    if prep.mode == "binary":
        # the pair [1 - p, p]: class 0 is the background, log p_0 = log(1 - p), 1 - p_0 = p
        logp, log1mp = log_probs(prep)
        mod_fg, mod_bg = focal_factors(prep, gamma, logp, log1mp)
        g = prep.target
        back = (1 - delta) * mod_bg * (-(1 - g) * log1mp)
        fore = delta * (-g * logp) if asymmetric else delta * mod_fg * (-g * logp)
        values, valid = back + fore, prep.valid
    elif path == "softmax_index":
        valid_px, wpix, g_pix = _fused_focal_weights(prep, delta, gamma, asymmetric)
        pix = _dispatch.softmax_index_sums(
            prep.logits, prep.target, valid_px, wpix=wpix, gamma=g_pix, need_stats=False, need_pixel=True
        ).pixel
        return fused_pixel_mean(pix, prep, valid_px, reduction)
    elif prep.form == "index":
        logp_t, log1m_t, p_t = index_log_probs(prep, need_log1m=prep.from_logits)
        mod = torch.exp(gamma * log1m_t) if log1m_t is not None else safe_pow(1 - p_t, gamma)
        background = prep.target == 0
        rare_coef = delta * (torch.ones_like(mod) if asymmetric else mod)
        values = -logp_t * torch.where(background, (1 - delta) * mod, rare_coef)
        valid = None if prep.valid is None else prep.valid.squeeze(1)
    else:
        logp, log1mp = log_probs(prep)
        mod, _ = focal_factors(prep, gamma, logp, log1mp)
        ce = -prep.target * logp
        coef = delta * (torch.ones_like(mod) if asymmetric else mod)
        coef = torch.cat([(1 - delta) * mod[:, :1], coef[:, 1:]], dim=1)
        values, valid = (coef * ce).sum(1), None
    if reduction == "none":
        if valid is not None:
            values = torch.where(valid > 0, values, torch.zeros_like(values))
        return unflatten(values, prep)
    return masked_mean(values, valid, reduction, prep.sync)


def _tversky_part(
    prep: Prepared, delta: float, gamma: float, asymmetric: bool, smooth: float, reduction: str
) -> Tensor:
    """``L_FT``: per image and class modified Tversky terms, then the mean over images and classes.

    The per-image statistics need no sync; with ``prep.sync`` the mean runs over the images of every rank.
    """
    if prep.mode in ("multiclass", "binary"):  # the GPU's short path: the whole loss in one operator
        region = _uf_region(1.0, delta, gamma, asymmetric, smooth, binary=prep.mode == "binary")
        whole = _whole.whole(prep, fn="focal_tversky", reduction=reduction, region=region, per_image=True)
        if whole is not None:
            return whole
    return _tversky_from_stats(soft_stats(prep, per_image=True), prep, delta, gamma, asymmetric, smooth, reduction)


def _tversky_from_stats(
    stats: SoftStats, prep: Prepared, delta: float, gamma: float, asymmetric: bool, smooth: float, reduction: str
) -> Tensor:
    """``L_FT`` from per-image statistics (see :func:`_tversky_part`)."""
    if prep.mode == "binary":
        stats = two_class_stats(stats)
    mti = safe_divide(stats.tp + smooth, stats.tp + delta * stats.fn + (1 - delta) * stats.fp + smooth, smooth)
    rare = stats_pow(1 - mti, 1 - gamma)  # NaN statistics stay NaN
    back = (1 - mti[:, :1]) if asymmetric else rare[:, :1]
    values = torch.cat([back, rare[:, 1:]], dim=1)  # (N, C)
    return reduce_images(values, reduction, stats.sync)


@hyperparameters(delta=UNIT, gamma=NONNEGATIVE)
def asymmetric_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    delta: float = 0.7,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Asymmetric (modified) focal loss, the pixel part of the asymmetric unified focal loss.

    .. math::

        L_{aF} = \operatorname{mean}_i \Big[ -(1 - \delta)(1 - p_{i0})^{\gamma} g_{i0} \log p_{i0}
        - \delta \sum_{r \geq 1} g_{ir} \log p_{ir} \Big]

    The background (class 0) is focally suppressed, the rare classes are not. Binary mode uses the two classes
    [1 - p, p]; multiclass uses class 0 as the background and 1..C-1 as the rare classes; multilabel raises.

    Shapes:
        As :func:`seglosses.functional.dice_loss` (binary/multiclass); ``reduction="none"``: per pixel, ``(N, *S)``
        for multiclass, the input's shape for binary.

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"`` or ``"multiclass"``.
        from_logits: apply sigmoid/softmax inside (default True).
        delta: weight of the rare classes, in [0, 1] (default 0.7, the reference code's).
        gamma: focal exponent of the background term, >= 0 (default 2, the reference code's).
        ignore_index: target value to ignore (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the pixel sums and counts (and the per-image terms and the
            number of images) over the ranks of ``process_group``, differentiably: every rank gets the
            loss of the concatenated batch and an input gradient K times the single-process one, so DDP's mean over
            the K ranks gives the single-process update. ``reduction="none"`` returns local values. Default False.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: ``mode="multilabel"``, ``delta`` outside [0, 1], negative ``gamma``, and the shape/value errors
            of :func:`seglosses.functional.dice_loss`.
        TypeError: non-floating input, floating index target.

    References:
        M. Yeung, E. Sala, C.-B. Schönlieb, L. Rundo, "Unified Focal loss: Generalising Dice and cross entropy-based
        losses to handle class imbalanced medical image segmentation", Comput Med Imaging Graph 95:102026, 2022,
        eq. 14.

    Examples:
        Logit 0 (p = 1/2), one foreground and one background pixel: the terms are 0.7 log 2 and
        0.3 (1/2)^2 log 2, and the mean is 0.2686.

        >>> import torch
        >>> from seglosses.functional import asymmetric_focal_loss
        >>> x = torch.zeros(1, 1, 2); g = torch.tensor([[[1.0, 0.0]]])
        >>> round(asymmetric_focal_loss(x, g, mode="binary").item(), 4)
        0.2686

    """
    fn = "asymmetric_focal_loss"
    check_hparams(fn, delta=delta, gamma=gamma)
    check_reduction(fn, reduction)
    prep = _prepare_uf(fn, input, target, mode, from_logits, ignore_index, sync_stats, process_group)
    return _focal_part(prep, delta, gamma, True, reduction)


@hyperparameters(delta=UNIT, gamma=NONNEGATIVE)
def symmetric_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    delta: float = 0.7,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Symmetric (modified) focal loss, the pixel part of the symmetric unified focal loss.

    .. math::

        L_{mF} = \operatorname{mean}_i \Big[ -(1 - \delta)(1 - p_{i0})^{\gamma} g_{i0} \log p_{i0}
        - \delta \sum_{r \geq 1} (1 - p_{ir})^{\gamma} g_{ir} \log p_{ir} \Big]

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"`` or ``"multiclass"``.
        from_logits: apply sigmoid/softmax inside (default True).
        delta: weight of the rare classes, in [0, 1] (default 0.7).
        gamma: focal exponent of every class, >= 0 (default 2).
        ignore_index: target value to ignore (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the pixel sums and counts (and the per-image terms and the
            number of images) over the ranks of ``process_group``, differentiably: every rank gets the
            loss of the concatenated batch and an input gradient K times the single-process one, so DDP's mean over
            the K ranks gives the single-process update. ``reduction="none"`` returns local values. Default False.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss; shapes as :func:`asymmetric_focal_loss`.

    Raises:
        ValueError: as :func:`asymmetric_focal_loss`.
        TypeError: as :func:`asymmetric_focal_loss`.

    References:
        Yeung et al. 2022 (see :func:`asymmetric_focal_loss`), eq. 12.

    Examples:
        Logit 0, one foreground and one background pixel: (0.7 + 0.3) (1/2)^2 log 2 / 2 = 0.0866.

        >>> import torch
        >>> from seglosses.functional import symmetric_focal_loss
        >>> x = torch.zeros(1, 1, 2); g = torch.tensor([[[1.0, 0.0]]])
        >>> round(symmetric_focal_loss(x, g, mode="binary").item(), 4)
        0.0866

    """
    fn = "symmetric_focal_loss"
    check_hparams(fn, delta=delta, gamma=gamma)
    check_reduction(fn, reduction)
    prep = _prepare_uf(fn, input, target, mode, from_logits, ignore_index, sync_stats, process_group)
    return _focal_part(prep, delta, gamma, False, reduction)


@hyperparameters(delta=UNIT, gamma=UNIT, smooth=NONNEGATIVE)
def asymmetric_focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    delta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Asymmetric focal Tversky loss, the region part of the asymmetric unified focal loss.

    .. math::

        mTI_c = \frac{TP_c + \epsilon}{TP_c + \delta FN_c + (1 - \delta) FP_c + \epsilon}, \qquad
        L_{aFT} = \operatorname{mean}_{n, c} \begin{cases} 1 - mTI_{n0} & c = 0 \\
        (1 - mTI_{nc})^{1 - \gamma} & c \geq 1 \end{cases}

    Statistics are per image (as in the reference code). ``delta`` weights the false negatives.

    Shapes:
        As :func:`seglosses.functional.dice_loss` (binary/multiclass); ``reduction="none"`` gives ``(N, C)``
        (``C = 2`` in binary mode: background, foreground).

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"`` (classes [1 - p, p]) or ``"multiclass"`` (class 0 the background).
        from_logits: apply sigmoid/softmax inside (default True).
        delta: FN weight, in [0, 1] (default 0.7, the reference code's).
        gamma: in [0, 1]; the rare classes are raised to 1 - gamma (default 0.75, the reference code's).
        smooth: :math:`\epsilon` (default 1e-7, the reference code's epsilon).
        ignore_index: target value to ignore (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the pixel sums and counts (and the per-image terms and the
            number of images) over the ranks of ``process_group``, differentiably: every rank gets the
            loss of the concatenated batch and an input gradient K times the single-process one, so DDP's mean over
            the K ranks gives the single-process update. ``reduction="none"`` returns local values. Default False.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: as :func:`asymmetric_focal_loss`; ``gamma`` outside [0, 1].
        TypeError: as :func:`asymmetric_focal_loss`.

    References:
        Yeung et al. 2022 (see :func:`asymmetric_focal_loss`), eq. 15.

    Examples:
        A perfect prediction (probabilities 0/1) gives mTI = 1 for both classes, so the loss is 0.

        >>> import torch
        >>> from seglosses.functional import asymmetric_focal_tversky_loss
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> asymmetric_focal_tversky_loss(g, g, mode="binary", from_logits=False).item()
        0.0

    """
    fn = "asymmetric_focal_tversky_loss"
    check_hparams(fn, delta=delta, gamma=gamma, smooth=smooth)
    check_reduction(fn, reduction)
    prep = _prepare_uf(fn, input, target, mode, from_logits, ignore_index, sync_stats, process_group)
    return _tversky_part(prep, delta, gamma, True, smooth, reduction)


@hyperparameters(delta=UNIT, gamma=UNIT, smooth=NONNEGATIVE)
def symmetric_focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    delta: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Literal["mean", "sum", "none"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Symmetric focal Tversky loss, the region part of the symmetric unified focal loss.

    .. math::

        L_{mFT} = \operatorname{mean}_{n, c} (1 - mTI_{nc})^{1 - \gamma}

    with :math:`mTI` as in :func:`asymmetric_focal_tversky_loss` (per image; ``delta`` weights FN).

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"`` or ``"multiclass"``.
        from_logits: apply sigmoid/softmax inside (default True).
        delta: FN weight, in [0, 1] (default 0.7).
        gamma: in [0, 1]; every class is raised to 1 - gamma (default 0.75).
        smooth: :math:`\epsilon` (default 1e-7).
        ignore_index: target value to ignore (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(N, C)``).
        sync_stats: under ``torch.distributed``, sum the pixel sums and counts (and the per-image terms and the
            number of images) over the ranks of ``process_group``, differentiably: every rank gets the
            loss of the concatenated batch and an input gradient K times the single-process one, so DDP's mean over
            the K ranks gives the single-process update. ``reduction="none"`` returns local values. Default False.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: as :func:`asymmetric_focal_tversky_loss`.
        TypeError: as :func:`asymmetric_focal_tversky_loss`.

    References:
        Yeung et al. 2022 (see :func:`asymmetric_focal_loss`), eq. 13.

    Examples:
        >>> import torch
        >>> from seglosses.functional import symmetric_focal_tversky_loss
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> symmetric_focal_tversky_loss(g, g, mode="binary", from_logits=False).item()
        0.0

    """
    fn = "symmetric_focal_tversky_loss"
    check_hparams(fn, delta=delta, gamma=gamma, smooth=smooth)
    check_reduction(fn, reduction)
    prep = _prepare_uf(fn, input, target, mode, from_logits, ignore_index, sync_stats, process_group)
    return _tversky_part(prep, delta, gamma, False, smooth, reduction)


@hyperparameters(weight=UNIT, delta=UNIT, gamma=UNIT, asymmetric=FLAG, smooth=NONNEGATIVE)
def unified_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    weight: float = 0.5,
    delta: float = 0.6,
    gamma: float = 0.5,
    asymmetric: bool = True,
    smooth: float = 1e-7,
    ignore_index: int | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Unified focal loss (Yeung et al. 2022), asymmetric (default) or symmetric.

    .. math::

        L = w\, L_F + (1 - w)\, L_{FT}

    where, asymmetric: :math:`L_F` = :func:`asymmetric_focal_loss` and :math:`L_{FT}` =
    :func:`asymmetric_focal_tversky_loss`; symmetric: the symmetric pair. Both take the same ``delta`` and
    ``gamma``. ``L_FT`` uses per-image statistics and is the mean over images and classes, as in the authors' code
    (the paper writes a sum over classes: C times this mean).

    Shapes:
        As :func:`seglosses.functional.dice_loss` (binary/multiclass); output ``()``.

    Args:
        input: logits (default) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"`` (classes [1 - p, p]) or ``"multiclass"`` (class 0 the background); multilabel raises.
        from_logits: apply sigmoid/softmax inside (default True).
        weight: :math:`\lambda`, the weight of the focal term, in [0, 1] (default 0.5). The paper and the seed code
            put it on the focal term; the authors' Keras code puts it on the Tversky term (the same at 0.5).
        delta: in [0, 1] (default 0.6, the paper's): weight of the rare classes in :math:`L_F` and of FN in mTI.
        gamma: in [0, 1] (default 0.5, the paper's): focal exponent of :math:`L_F`; :math:`L_{FT}` uses 1 - gamma.
        asymmetric: the asymmetric variant (default True, the paper's recommendation).
        smooth: mTI's epsilon (default 1e-7, the reference code's).
        ignore_index: target value to ignore (default None). An image with no kept pixel in a batch that has some
            counts with mTI = 1 (its L_FT terms are 0).
        reduction: ``"mean"`` (default) or ``"sum"``.
        sync_stats: under ``torch.distributed``, sum the pixel sums and counts (and the per-image terms and the
            number of images) over the ranks of ``process_group``, differentiably: every rank gets the
            loss of the concatenated batch and an input gradient K times the single-process one, so DDP's mean over
            the K ranks gives the single-process update. ``reduction="none"`` returns local values. Default False.
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The scalar loss.

    Raises:
        ValueError: as :func:`asymmetric_focal_tversky_loss`; ``weight`` outside [0, 1].
        TypeError: as :func:`asymmetric_focal_loss`.

    References:
        M. Yeung, E. Sala, C.-B. Schönlieb, L. Rundo, "Unified Focal loss", Comput Med Imaging Graph 95:102026,
        2022, eq. 16-17.

    Examples:
        A perfect hard prediction gives 0:

        >>> import torch
        >>> from seglosses.functional import unified_focal_loss
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> unified_focal_loss(g, g, mode="binary", from_logits=False).item()
        0.0

    """
    fn = "unified_focal_loss"
    check_hparams(fn, weight=weight, delta=delta, gamma=gamma, asymmetric=asymmetric, smooth=smooth)
    check_reduction(fn, reduction, ("mean", "sum"))
    prep = _prepare_uf(fn, input, target, mode, from_logits, ignore_index, sync_stats, process_group)
    if _whole.applies(prep, reduction):  # the GPU's short path: one operator (binary or multiclass)
        binary = prep.mode == "binary"
        region = _uf_region(1 - weight, delta, gamma, asymmetric, smooth, binary=binary)
        pixel = _uf_pixel(weight, delta, gamma, asymmetric, binary=binary)
        whole = _whole.whole(prep, fn=fn, reduction=reduction, region=region, pixel=pixel, per_image=True)
        if whole is not None:
            return whole
    fused = None
    path = _dispatch.stats_path(prep)
    if path == "softmax_index":
        # both parts from one fused softmax pass: the focal sums and the per-image statistics together
        valid_px, wpix, g_pix = _fused_focal_weights(prep, delta, gamma, asymmetric)
        fused = fused_stats_and_pixel(prep, per_image=True, wpix=wpix, gamma=g_pix, valid=valid_px)
        valid_f = valid_px
    elif prep.mode == "binary" and path == "sigmoid_dense":
        # both parts from one sigmoid pass: L_F is the sigmoid focal term with alpha = delta (see _focal_part)
        fused = fused_stats_and_pixel(prep, per_image=True, alpha=delta, gamma=gamma, gamma_pos0=asymmetric)
        valid_f = _binary_valid(prep)
    if fused is not None:
        stats, pix = fused
        lf = fused_pixel_mean(pix, prep, valid_f, reduction)
        lft = _tversky_from_stats(stats, prep, delta, gamma, asymmetric, smooth, reduction)
    else:
        lf = _focal_part(prep, delta, gamma, asymmetric, reduction)
        lft = _tversky_part(prep, delta, gamma, asymmetric, smooth, reduction)
    return weighted_sum((weight, lf), (1 - weight, lft))
