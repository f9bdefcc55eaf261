r"""Pixel-wise losses: cross entropy (binary, multiclass, multilabel) and focal loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from seglosses import _dispatch, _whole
from seglosses._checks import (
    NONNEGATIVE,
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
from seglosses._numerics import pow_from_log, safe_pow
from seglosses._prepare import (
    Prepared,
    focal_factors,
    index_log_p,
    index_log_probs,
    log_probs,
    masked_mean,
    prepare,
    sync_ratio,
    unflatten,
)
from seglosses._types import Mode, Reduction

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None


def _finish(values: Tensor, prep: Prepared, reduction: str, valid: Tensor | None) -> Tensor:
    """Per-element loss -> ``reduction`` (mean over kept elements, sum, or the per-element map with 0 at ignored)."""
    if reduction == "none":
        if valid is not None:
            values = torch.where(valid > 0, values, torch.zeros_like(values))
        return unflatten(values, prep)
    return masked_mean(values, valid, reduction, prep.sync)


def fused_pixel_mean(pix: Tensor, prep: Prepared, wpix: Tensor | None, reduction: str) -> Tensor:
    """The fused path's per-image pixel sums ``(N,)`` -> mean over kept pixels (weighted: over kept weight) or sum.

    With ``prep.sync`` the sum and its denominator are summed over the ranks first.
    """
    total = pix.sum()
    if prep.sync is not None:
        den = total.new_tensor(float(prep.target.numel())) if wpix is None else wpix.sum().to(total.dtype)
        return sync_ratio(total, den, reduction, prep.sync)
    if reduction == "sum":
        return total
    if wpix is None:  # max(., 1): an input without pixels gives 0, as when every pixel is ignored
        return total / max(prep.target.numel(), 1)
    den = wpix.sum()
    return torch.where(den > 0, total / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(total))


def pixel_weights(prep: Prepared, w: Tensor | None) -> Tensor | None:
    """``(N, M)`` per-pixel weight ``w[t] * valid`` (or ``valid``, or None) for the fused path."""
    valid = prep.valid_pixels()
    if w is None:
        return valid
    w_t = w[prep.safe_index()[0]]  # a bad index (no host check) is clamped into [0, C): its image is NaN
    return w_t if valid is None else w_t * valid


@hyperparameters(label_smoothing=UNIT)
def cross_entropy_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    class_weights: Weights = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Cross entropy: BCE for binary/multilabel, softmax CE for multiclass (soft targets allowed).

    .. math::

        \text{multiclass:}\quad \ell_i = -\sum_c w_c\, \tilde g_{ic} \log p_{ic}, \qquad
        \tilde g = (1 - \epsilon) g + \epsilon / C

        \text{binary/multilabel:}\quad \ell_{ic} = -w_c [\tilde g \log p + (1 - \tilde g) \log(1 - p)], \qquad
        \tilde g = (1 - \epsilon) g + \epsilon / 2

    Multiclass follows :func:`torch.nn.functional.cross_entropy` exactly: with index targets and weights the mean is
    :math:`\sum_i \ell_i / \sum_i w_{y_i}`; with one-hot/soft targets it is the mean over pixels. Binary/multilabel:
    weight c multiplies channel c's BCE, then the mean over all kept elements (as torch's BCE ``weight``).
    Logs are taken in log space (``log_softmax``, ``logsigmoid``): finite for any finite logit.

    Shapes:
        As :func:`seglosses.functional.dice_loss`. ``reduction="none"``: the per-pixel loss, ``(N, *S)`` for
        multiclass, the input's shape for binary/multilabel (0 at ignored elements).

    Args:
        input: logits (``from_logits=True``, default) or probabilities.
        target: class indices ``(N, *S)`` or one-hot/soft ``(N, C, *S)`` (multiclass); masks in [0, 1] otherwise.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        class_weights: per-class weights of length C (default None). Not allowed in binary mode.
        label_smoothing: :math:`\epsilon` in [0, 1] (default 0).
        ignore_index: target value to ignore; for multiclass only with index targets (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the per-pixel loss and the count (or weight) of kept pixels over
            the ranks of ``process_group``, differentiably: every rank gets the mean over the global
            kept pixels and an input gradient K times the single-process one, so DDP's mean over the K ranks gives
            the single-process update. ``reduction="none"`` returns the local map. Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss. Every element ignored: 0 with a zero gradient.

    Raises:
        ValueError: bad shapes/values (see :func:`seglosses.functional.dice_loss`), ``label_smoothing`` outside
            [0, 1], ``class_weights`` of the wrong length or in binary mode, ``ignore_index`` with soft multiclass
            targets.
        TypeError: non-floating input, floating index target.

    Note:
        ``torch.nn.BCEWithLogitsLoss(weight=w)`` with ``w`` of shape ``(1, C, 1, 1)`` is our multilabel
        ``class_weights=w``; its ``pos_weight`` has no equivalent here (use :func:`focal_loss` ``alpha`` or
        :func:`seglosses.functional.combo_loss` ``beta``).

    References:
        torch.nn.functional.cross_entropy and binary_cross_entropy_with_logits; C. Szegedy et al., "Rethinking the
        Inception architecture", CVPR 2016 (label smoothing).

    Examples:
        Logit 0 gives p = 1/2, so each pixel costs log 2 = 0.6931.

        >>> import torch
        >>> from seglosses.functional import cross_entropy_loss
        >>> x = torch.zeros(1, 2, 2)
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> round(cross_entropy_loss(x, g, mode="binary").item(), 4)
        0.6931

    """
    fn = "cross_entropy_loss"
    check_hparams(fn, class_weights=class_weights, label_smoothing=label_smoothing)
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
    return cross_entropy_values(fn, prep, weights, label_smoothing, reduction)


def cross_entropy_values(
    fn: str, prep: Prepared, weights: Tensor | None, label_smoothing: float, reduction: str
) -> Tensor:
    """The cross entropy of a prepared call with checked class ``weights`` (see :func:`cross_entropy_loss`).

    ``weights`` must have one entry per class (checked here, under ``fn``'s name).
    """
    c = prep.num_classes
    mode = prep.mode
    w = None
    if weights is not None:
        check_class_weights_length(fn, weights, c, c)
        w = weights.to(device=prep.device, dtype=prep.dtype)
    eps = label_smoothing
    # the GPU's short path: the whole loss in one operator (class weights read there at each pixel's class, or
    # channel; the softmax's weighted mean divides by the summed weight, the sigmoid's by the kept elements; label
    # smoothing in the kernels too)
    whole = _whole.whole(
        prep, fn=fn, reduction=reduction, pixel=_whole.Pixel(1.0, smoothing=eps), class_w=w,
        kept_weighted=w is not None and mode == "multiclass",
    )  # fmt: skip
    if whole is not None:
        return whole
    path = _dispatch.pixel_path(prep, reduction=reduction) if eps == 0 else "generic"
    if path == "softmax_index":
        # one pass of logsumexp; the gradient written in one expression (seglosses._dispatch)
        wpix = pixel_weights(prep, w)
        pix = _dispatch.softmax_index_sums(
            prep.logits, prep.target, prep.valid_pixels(), wpix=wpix, need_stats=False, need_pixel=True
        ).pixel
        return fused_pixel_mean(pix, prep, wpix, reduction)
    if mode == "multiclass" and prep.form == "index":
        logp_t = index_log_p(prep)
        w_t = None if w is None else w[prep.safe_index()[0]]  # (N, M)
        values = -(1 - eps) * logp_t if w_t is None else -(1 - eps) * w_t * logp_t
        if eps > 0:
            if prep.from_logits:
                logp = torch.log_softmax(prep.logits, dim=1)
            else:
                logp = torch.log(prep.prob if prep.valid is None else torch.where(prep.valid > 0, prep.prob, 1.0))
            wl = logp if w is None else logp * w.view(1, c, 1)
            values = values - eps / c * wl.sum(1)
        valid = None if prep.valid is None else prep.valid.squeeze(1)
        if reduction != "mean" or w_t is None:
            return _finish(values, prep, reduction, valid)
        num = values.sum() if valid is None else torch.where(valid > 0, values, torch.zeros_like(values)).sum()
        den = w_t.sum() if valid is None else (w_t * valid).sum()
        if prep.sync is not None:
            return sync_ratio(num, den, reduction, prep.sync)
        return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
    if mode == "multiclass":
        g = prep.target * (1 - eps) + eps / c if eps > 0 else prep.target
        logp, _ = log_probs(prep, g)
        ce = -(g * logp)
        if w is not None:
            ce = ce * w.view(1, c, 1)
        return _finish(ce.sum(1), prep, reduction, None)
    g = prep.target * (1 - eps) + eps / 2 if eps > 0 else prep.target
    path = _dispatch.pixel_path(prep, reduction=reduction)
    if path == "sigmoid_dense" and w is None and _dispatch.sigmoid_kernel_runs(prep.logits, g, prep.valid):
        # the kernel of the sigmoid focal term with gamma = 0 and no alpha is exactly BCE-with-logits (one pass
        # each way, no temporaries); the same numbers as the torch call below
        pix = _dispatch.sigmoid_dense_sums(prep.logits, g, prep.valid, need_stats=False, need_pixel=True).pixel
        return fused_pixel_mean(pix, prep, prep.valid, reduction)
    if prep.from_logits and reduction != "none":
        # torch's fused BCE-with-logits (softplus form, exact for every finite logit); the kept-element mask and the
        # class weights enter as its elementwise weight
        weight = prep.valid
        if w is not None:
            wc = w.view(1, c, 1)
            weight = wc.expand_as(prep.logits) if weight is None else weight * wc
        total = torch_f.binary_cross_entropy_with_logits(prep.logits, g, weight=weight, reduction="sum")
        if prep.sync is not None:
            kept = total.new_tensor(float(prep.logits.numel())) if prep.valid is None else prep.valid.sum()
            return sync_ratio(total, kept, reduction, prep.sync)
        if reduction == "sum":
            return total
        count = max(prep.logits.numel(), 1) if prep.valid is None else prep.valid.sum().clamp_min(1)
        return total / count
    logp, log1mp = log_probs(prep, g)
    bce = -(g * logp + (1 - g) * log1mp)
    if w is not None:
        bce = bce * w.view(1, c, 1)
    return _finish(bce, prep, reduction, prep.valid)


@hyperparameters(alpha=ClassBalance(UNIT), gamma=NONNEGATIVE)
def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float | Sequence[float] | Tensor | None | Literal["auto"] = "auto",
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Focal loss (Lin et al. 2017), per pixel, then the mean over kept pixels.

    .. math::

        FL = -\alpha_t (1 - p_t)^{\gamma} \log p_t

    Soft targets use the per-class sum form, the same in every mode:

    .. math::

        \text{multiclass:}\; -\sum_c \alpha_c g_c (1 - p_c)^{\gamma} \log p_c, \qquad
        \text{binary/multilabel:}\; -[\alpha g (1 - p)^{\gamma} \log p + (1 - \alpha)(1 - g) p^{\gamma} \log(1 - p)]

    which equals Lin et al. for hard targets. :math:`(1 - p)^{\gamma}` is computed as
    :math:`\exp(\gamma \log(1 - p))` from exact log-space quantities, so :math:`\gamma < 1` gives no NaN gradient at
    saturated logits.

    Shapes:
        As :func:`cross_entropy_loss` (``reduction="none"`` gives the per-pixel map).

    Args:
        input: logits (default) or probabilities.
        target: see :func:`cross_entropy_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        alpha: binary/multilabel: weight of positives in [0, 1] (negatives get 1 - alpha) or None (no weighting);
            multiclass: a sequence of C per-class weights or None. ``"auto"`` (default) is 0.25 for binary/multilabel
            (Lin et al.'s best with gamma 2) and None for multiclass.
        gamma: focusing exponent >= 0 (default 2, Lin et al.). ``gamma=0, alpha=None`` equals
            :func:`cross_entropy_loss` exactly.
        ignore_index: target value to ignore (default None).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the per-pixel loss and the count (or weight) of kept pixels over
            the ranks of ``process_group``, differentiably: every rank gets the mean over the global
            kept pixels and an input gradient K times the single-process one, so DDP's mean over the K ranks gives
            the single-process update. ``reduction="none"`` returns the local map. Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss.

    Raises:
        ValueError: bad shapes/values; ``alpha`` outside [0, 1] or a float in multiclass mode; negative ``gamma``.
        TypeError: non-floating input, floating index target.

    Note:
        torchvision's ``sigmoid_focal_loss`` (alpha 0.25, gamma 2, reduction none by default) equals our binary and
        multilabel focal loss for hard targets; for soft targets it uses :math:`p_t = p g + (1 - p)(1 - g)` and
        :math:`\alpha_t = \alpha g + (1 - \alpha)(1 - g)`, which differs from the per-class sum form used here.
        MONAI ``FocalLoss(use_softmax=False)`` with ``alpha=a`` matches ``alpha=a``; without alpha it matches
        ``alpha=None`` (hard targets; a one-hot target in multilabel mode for its ``to_onehot_y``). MONAI
        ``FocalLoss(use_softmax=True)`` also averages over the classes: our multiclass loss is C times its value
        (its scalar ``alpha=a`` is our ``alpha=(1 - a, a, ..., a)``). segmentation_models_pytorch ``FocalLoss``
        (``alpha=None`` default) matches ``alpha=None`` in binary and multilabel mode; in multiclass mode it applies
        the *sigmoid* focal loss one-vs-rest, i.e. our ``mode="multilabel"`` terms on the one-hot target: SMP 0.5.0
        sums the C per-class means (C times ours), its main branch since March 2026 (class weights, PR 1290)
        averages them (equal to ours).

    References:
        T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal loss for dense object detection", ICCV 2017, eq. 5.

    Examples:
        Logit 0, a positive pixel and a negative one, alpha 0.25, gamma 2: each term is
        weight * (1/2)^2 * log 2, so the mean is (0.25 + 0.75) / 2 * 0.25 * log 2 = 0.0866.

        >>> import torch
        >>> from seglosses.functional import focal_loss
        >>> x = torch.zeros(1, 1, 2)
        >>> g = torch.tensor([[[1.0, 0.0]]])
        >>> round(focal_loss(x, g, mode="binary").item(), 4)
        0.0866

    """
    fn = "focal_loss"
    check_hparams(fn, gamma=gamma)
    check_reduction(fn, reduction)
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
    a = check_focal_alpha(fn, "alpha", alpha, mode, prep.num_classes)
    return focal_values(prep, a, gamma, reduction)


def focal_values(prep: Prepared, alpha: object, gamma: float, reduction: str) -> Tensor:
    """The focal loss of a prepared call with a checked ``alpha`` (see :func:`focal_loss`), reduced."""
    c = prep.num_classes
    if _whole.applies(prep, reduction):  # the GPU's short path: the whole loss in one operator
        if prep.mode == "multiclass":
            a_w = None if alpha is None else torch.as_tensor(alpha).to(device=prep.device, dtype=prep.dtype)
            whole = _whole.whole(
                prep, fn="focal_loss", reduction=reduction, pixel=_whole.Pixel(1.0, gamma), class_w=a_w
            )
        else:
            a_s = None if alpha is None else float(alpha)  # type: ignore[arg-type]
            whole = _whole.whole(prep, fn="focal_loss", reduction=reduction, pixel=_whole.Pixel(1.0, gamma, a_s))
        if whole is not None:
            return whole
    if prep.mode == "multiclass":
        a = None if alpha is None else torch.as_tensor(alpha).to(device=prep.device, dtype=prep.dtype)
        if _dispatch.pixel_path(prep, reduction=reduction) == "softmax_index":
            wpix = pixel_weights(prep, a)
            pix = _dispatch.softmax_index_sums(
                prep.logits, prep.target, prep.valid_pixels(), wpix=wpix, gamma=gamma, need_stats=False, need_pixel=True
            ).pixel
            return fused_pixel_mean(pix, prep, prep.valid_pixels(), reduction)
        if prep.form == "index":
            logp_t, log1m_t, p_t = index_log_probs(prep, need_log1m=prep.from_logits)
            if prep.from_logits and log1m_t is not None:
                mod = pow_from_log(log1m_t, gamma)
            else:
                mod = safe_pow(1 - p_t, gamma)
            values = -mod * logp_t
            if a is not None:
                values = values * a[prep.safe_index()[0]]
            valid = None if prep.valid is None else prep.valid.squeeze(1)
            return _finish(values, prep, reduction, valid)
        logp, log1mp = log_probs(prep)
        mod, _ = focal_factors(prep, gamma, logp, log1mp)
        terms = -prep.target * mod * logp
        if a is not None:
            terms = terms * a.view(1, c, 1)
        return _finish(terms.sum(1), prep, reduction, None)
    if _dispatch.pixel_path(prep, reduction=reduction) == "sigmoid_dense":
        # binary/multilabel from logits: the fused sigmoid focal term (seglosses._dispatch)
        a_f = None if alpha is None else float(alpha)  # type: ignore[arg-type]
        pix = _dispatch.sigmoid_dense_sums(
            prep.logits, prep.target, prep.valid, alpha=a_f, gamma=gamma, need_stats=False, need_pixel=True
        ).pixel
        return fused_pixel_mean(pix, prep, prep.valid, reduction)
    logp, log1mp = log_probs(prep)
    mod_pos, mod_neg = focal_factors(prep, gamma, logp, log1mp)
    g = prep.target
    pos = g * mod_pos * logp
    neg = (1 - g) * mod_neg * log1mp
    if alpha is not None:
        a_f = float(alpha)  # type: ignore[arg-type]
        values = -(a_f * pos + (1 - a_f) * neg)
    else:
        values = -(pos + neg)
    return _finish(values, prep, reduction, prep.valid)
