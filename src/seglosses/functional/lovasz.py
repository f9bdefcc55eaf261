r"""Lovász hinge and Lovász-softmax losses (Berman, Triki, Blaschko, CVPR 2018), vectorised over images and classes."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from seglosses import _dispatch, _ops
from seglosses._checks import Choice, check_hparams, check_one_hot, check_reduction, hyperparameters, values_checked
from seglosses._prepare import Prepared, prepare
from seglosses._types import Mode

Classes = Literal["present", "all"]


def _rows(t: Tensor, per_image: bool) -> Tensor:
    """``(N, C, M)`` to one row per sorted vector: ``(N * C, M)`` per image, else ``(C, N * M)`` (a copy if N > 1)."""
    n, c, m = t.shape
    return t.reshape(n * c, m) if per_image else t.transpose(0, 1).reshape(c, n * m)


def _unrows(r: Tensor, shape: tuple[int, int, int], per_image: bool) -> Tensor:
    """The inverse of :func:`_rows` as a view, ``(N, C, M)``."""
    n, c, m = shape
    return r.view(n, c, m) if per_image else r.view(c, n, m).transpose(0, 1)


def _lovasz_weights(order: Tensor, g: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    r"""Lovász gradient of the Jaccard loss for every row, put back at the unsorted positions.

    For the order ``(R, L)`` that sorts the errors of each row in decreasing order (ignored elements have the key
    ``-inf`` and come last) and the ground truth ``g`` (bool, ``(R, L)``, False where ignored), with :math:`k` the
    rank and
    :math:`G = \sum g`: :math:`I_k = G - \sum_{j \le k} g_{(j)}`, :math:`U_k = G + \sum_{j \le k} (1 - g_{(j)})`,
    :math:`J_k = 1 - I_k / U_k` and the weight of rank k is :math:`J_k - J_{k-1}` (:math:`J_{-1} = 0`), Berman et al.
    Alg. 1. The difference is taken in closed form, free of the cancellation of subtracting two ratios near 1 (in
    float32 that costs several percent of a weight of size 1/L on rows of 10^6 elements): a positive leaves
    :math:`U` unchanged and lowers :math:`I` by one, so its weight is :math:`1 / U_k`; a negative raises :math:`U` by
    one, so its weight is :math:`I_k / ((U_k - 1) U_k)`, and 1 at the first rank of a row without positives
    (:math:`U_0 = 1`, :math:`I_0 = 0`, :math:`J_0 = 1`). :math:`U_k \ge 1`. Counts are kept in ``dtype`` (exact up
    to :math:`2^{24}` per row in float32), in float64 for longer rows. Returns the weights ``(R, L)`` in ``dtype``
    and the positives per row :math:`G` ``(R,)``.

    Runs without autograd: the loss is linear in the errors given their order, so the weights are constants.
    In-place steps keep the extra memory at ``order`` (int64), the sorted targets (bool) and two float buffers of
    one row set's size.
    """
    length = order.shape[-1]
    count_dtype = torch.float64 if length > 2**24 else dtype
    positive = g.gather(-1, order)  # the target at each rank
    cum = positive.cumsum(-1, dtype=count_dtype)  # positives among the first k + 1
    total = cum[:, -1:].clone()
    rank = torch.arange(1, length + 1, dtype=count_dtype, device=order.device)
    union = (total + rank).sub_(cum)  # U_k = G + negatives among the first k + 1
    inter = cum.neg_().add_(total)  # I_k
    grad = inter.div_(union.sub_(1))  # I_k / (U_k - 1): 0 / 0 only at U_0 = 1 of a row without positives
    union.add_(1)
    grad.nan_to_num_(nan=1.0).masked_fill_(positive, 1.0).div_(union)  # negatives I_k / ((U_k - 1) U_k), else 1/U_k
    del positive, union
    weights = torch.empty_like(grad).scatter_(-1, order, grad)  # every position is written: order permutes rows
    return weights.to(dtype), total.squeeze(-1).to(dtype)


def _sort_key(z: Tensor, g: Tensor, kept: Tensor | None, *, hinge: bool) -> Tensor:
    """``(N, C, M)`` errors as sort keys: ``1 - x s`` (hinge, ``s = 2g - 1``) or ``|g - p|``; ``-inf`` if ignored."""
    zd = z.detach()
    if hinge:
        key = (zd * g.to(torch.int8).mul_(2).sub_(1)).neg_().add_(1)
    else:
        key = (zd - g.view(torch.uint8)).abs_()
    if kept is not None:
        key.masked_fill_(~kept, float("-inf"))
    return key


def lovasz_rows_twin(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, *, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The PyTorch twin of the ``seglosses::lovasz_fwd`` operator: ``(value, positives, W, lse)`` (no autograd).

    The arguments and outputs are the operator's (:func:`seglosses._ops.lovasz_fwd`): with ``t`` the softmax of the
    logits ``z`` against class indices, else the dense input ``z`` against the 0/1 target ``g``. The same sort,
    closed-form weights and row layout as the readable path of :func:`lovasz_loss`, with ``W = (1 - 2g) w`` at the
    active elements (0 elsewhere) returned for the backward instead of a graph.
    """
    n, c, m = z.shape
    shape = (n, c, m)
    with torch.no_grad():
        if t is not None:
            lse = torch.logsumexp(z, dim=1)
            e_in = torch.exp(z - lse.unsqueeze(1))
            gb = t.unsqueeze(1) == torch.arange(c, device=z.device).view(1, c, 1)
            kept = None if valid is None else (valid > 0).unsqueeze(1).expand(n, c, m)
        else:
            lse = z.new_empty((n, 0))
            e_in = z
            gb = (g if g is not None else torch.zeros_like(z)) > 0.5
            kept = None if valid is None else (valid > 0).expand(n, c, m)
        if kept is not None:
            gb = gb & kept
        key = _sort_key(e_in, gb, kept, hinge=hinge)
        active = key > 0 if hinge else kept
        key_r = _rows(key, per_image)
        g_r = _rows(gb, per_image)
        active_r = None if active is None else _rows(active, per_image)
        del key, gb, active
        order = torch.sort(key_r, dim=-1, descending=True, stable=True).indices  # ties: position order
        del key_r
        weights, positives = _lovasz_weights(order, g_r, z.dtype)
        del order
        offset = active_r if hinge and active_r is not None else g_r
        slope = g_r.to(torch.int8).mul_(-2).add_(1)  # 1 - 2g
        if active_r is not None:
            slope.mul_(active_r)
        w = _unrows(weights, shape, per_image)
        slope_u = _unrows(slope, shape, per_image)
        errors = (e_in * slope_u).add_(_unrows(offset, shape, per_image))
        dot = (errors * w).sum(-1)  # (N, C)
        value = dot.reshape(-1) if per_image else dot.sum(0)
        big_w = (w * slope_u).contiguous()
    return value, positives, big_w, lse


def _use_op(prep: Prepared) -> bool:
    """Whether the Lovász rows go through the ``seglosses::lovasz_fwd`` operator (else the readable path here).

    The operator where a kernel serves the input (float32 on the CPU with the native kernels, CUDA with Triton),
    under ``torch.compile`` / ``torch.export``, or when :func:`seglosses._dispatch.use` forces ``ops=True``;
    ``ops=False`` or ``fused=False`` force the readable path.
    """
    x = prep.logits
    forced = _dispatch.settings().ops
    if not _dispatch.fused_enabled() or forced is False:
        return False
    if forced or _dispatch.backend(x) == "ops":
        return True
    return x.dtype == torch.float32 and _ops.native_runs(x.device) and x.numel() < 2**31


def _lovasz_op(prep: Prepared, *, hinge: bool, per_image: bool) -> tuple[Tensor, Tensor] | None:
    """Values and positives per row by the operator, or None where its forms do not apply.

    Its forms: multiclass logits with class indices (the softmax inside), and dense targets (the hinge on logits,
    or the flat error on probabilities). Class indices are guarded as every fused pass does
    (:func:`seglosses._dispatch.guard_indices`: where the host check did not run, a bad index makes the rows that
    hold it NaN, without a synchronisation); the Triton kernels count them themselves.
    """
    x = prep.logits
    n, c, _m = x.shape
    if prep.fused():
        t = prep.target
        valid = prep.valid_pixels()
        bad = None
        if not _ops.triton_runs(x.device):
            t, bad = _dispatch.guard_indices(t, c, valid)
        _dispatch._note("lovasz:softmax_index:ops")
        value, positives, _w, _lse = _ops.lovasz_fwd(
            x.contiguous(), t.contiguous(), None, None if valid is None else valid.contiguous(), False, per_image
        )
        if bad is not None:
            nan = torch.where(bad > 0, float("nan"), 0.0).to(value.dtype)
            value = (value.view(n, c) + nan.unsqueeze(1)).reshape(-1) if per_image else value + nan.sum()
        return value, positives
    if prep.form != "dense":
        return None
    z = x if hinge else prep.prob
    valid = prep.valid
    if valid is not None:
        valid = valid.expand_as(z).contiguous()
    _dispatch._note("lovasz:dense:ops")
    value, positives, _w, _lse = _ops.lovasz_fwd(
        z.contiguous(), None, prep.target.contiguous(), valid, hinge, per_image
    )
    return value, positives


def _lovasz_terms(prep: Prepared, *, hinge: bool, per_image: bool) -> tuple[Tensor, Tensor, Tensor]:
    r"""Lovász loss of every row: ``(loss, positives, kept)``, each ``(N, C)`` per image, else ``(C,)``.

    The Lovász extension of a row is :math:`\sum_i w_i h_i` with the weights :math:`w` fixed by the order of the
    errors :math:`h` (piecewise linear), and :math:`h = a + b z` is affine in the differentiable input :math:`z`
    (``h = g + (1 - 2g) p`` for the flat form, ``h = [e > 0] (1 - (2g - 1) x)`` for the hinge, with int8 ``a, b``);
    so the sort and the weights run without autograd, which only sees ``(a + b z) w``.
    Ignored elements get the sort key ``-inf`` (last, outside every count) and the coefficient 0 (no value, no
    gradient).
    """
    if prep.logits.numel() > 0 and _use_op(prep):
        rows = _lovasz_op(prep, hinge=hinge, per_image=per_image)
        if rows is not None:  # the operator (C++ / Triton kernels): no probabilities or masks built here
            dot, positives = rows
            count = prep.count()
            if per_image:
                n, c = prep.logits.shape[:2]
                return dot.view(n, c), positives.view(n, c), count
            return dot, positives, count.sum(0)
    z = prep.logits if hinge else prep.prob
    shape = (int(z.shape[0]), int(z.shape[1]), int(z.shape[2]))
    n, c, m = shape
    bad = None
    if prep.form == "index":
        classes = torch.arange(c, device=z.device).view(1, c, 1)
        target, bad = prep.safe_index()  # where the host check did not run, a bad index makes its rows NaN below
        g = target.unsqueeze(1) == classes  # (N, C, M) bool: no float one-hot
    else:
        g = prep.target > 0.5
    kept = None if prep.valid is None else (prep.valid > 0).expand(n, c, m)
    if kept is not None:
        g = g & kept
    if n * c * m == 0:
        zero = z.sum((0, 2)) * 0
        return (zero.expand(n, c), zero.expand(n, c), zero.expand(n, c)) if per_image else (zero, zero, zero)
    with torch.no_grad():
        key = _sort_key(z, g, kept, hinge=hinge)
        active = key > 0 if hinge else kept  # where the error enters linearly (relu for the hinge)
        key_r = _rows(key, per_image)
        g_r = _rows(g, per_image)
        active_r = None if active is None else _rows(active, per_image)
        del key, g, active  # the row copies (batch mode) are the ones kept
        # stable: equal errors keep their position order, as Berman et al.'s torch.sort on the CPU (the value is the
        # same in any order; the weights of tied elements, i.e. the gradient, follow this order)
        order = torch.sort(key_r, dim=-1, descending=True, stable=True).indices
        del key_r  # freed before the weights' buffers are allocated
        weights, positives = _lovasz_weights(order, g_r, z.dtype)
        del order
        # h = a + b z: the error where it is active, 0 elsewhere (ignored, or a hinge error <= 0)
        offset = active_r if hinge and active_r is not None else g_r
        slope = g_r.to(torch.int8).mul_(-2).add_(1)  # 1 - 2g
        if active_r is not None:
            slope.mul_(active_r)
    errors = (z * _unrows(slope, shape, per_image)).add_(_unrows(offset, shape, per_image))
    dot = (errors * _unrows(weights, shape, per_image)).sum(-1)  # (N, C)
    if bad is not None:  # the guarded (clamped) bad index is a present class: its rows are kept, and NaN
        dot = dot + torch.where(bad > 0, float("nan"), 0.0).to(dot.dtype).unsqueeze(1)
    count = prep.count()
    if per_image:
        return dot, positives.view(n, c), count
    return dot.sum(0), positives, count.sum(0)


@hyperparameters(classes=Choice(("present", "all")))
def lovasz_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    classes: Classes = "present",
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    r"""Lovász hinge (binary, multilabel) and Lovász-softmax (multiclass) loss (Berman et al., CVPR 2018).

    The Jaccard loss of a class as a set function of its mispredicted pixels :math:`M`, with :math:`G` the target's
    pixels, is :math:`\Delta_J(M) = |M| / |G \cup M|`. Its Lovász extension, evaluated at a vector of non-negative
    pixel errors :math:`m` sorted in decreasing order :math:`m_{\pi_1} \ge m_{\pi_2} \ge \dots`, is

    .. math::

        \overline{\Delta_J}(m) = \sum_{k} m_{\pi_k} \, \big(\Delta_J(\{\pi_1, \dots, \pi_k\})
        - \Delta_J(\{\pi_1, \dots, \pi_{k-1}\})\big)

    (convex, piecewise linear, equal to :math:`\Delta_J` on 0/1 errors). The errors are

    - Lovász hinge (binary/multilabel from logits): :math:`m_i = \max(0, 1 - x_i s_i)`, :math:`s_i = 2 g_i - 1`.
    - Lovász-softmax, flat form (multiclass; binary/multilabel with ``from_logits=False``):
      :math:`m_i = |g_{i,c} - p_{i,c}|`, with :math:`p` the softmax over dim 1 (multiclass logits) or the input.

    Each class (channel) of the whole batch, or of each image with ``per_image=True``, is one such term; the loss is
    the mean of the terms over the classes (multiclass: those selected by ``classes``), and with ``per_image`` the mean
    over images of each image's class mean.

    Shapes:
        - binary: input ``(N, 1, *S)`` or ``(N, *S)``; target the same shape, values 0 or 1.
        - multiclass: input ``(N, C, *S)``; target ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot.
        - multilabel: input and target ``(N, C, *S)``, values 0 or 1.
        - output: ``()``.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: hard labels, see Shapes (the loss is defined on sets: soft targets raise).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: default True, since networks output logits. Binary/multilabel: True uses the hinge on the raw
            logits (no sigmoid, as in the paper), False the flat form on the given probabilities. Multiclass: True
            applies the softmax over dim 1 inside.
        classes: multiclass only: ``"present"`` (default, the paper's code) averages over the classes present in the
            target (of the batch, or of each image with ``per_image``), ``"all"`` over all C classes (an absent class
            then costs its largest probability). Binary and multilabel always keep every channel with a kept element
            (the hinge's own rule: an empty channel's false positives are still penalised); the option has no effect
            there.
        ignore_index: target value whose pixels are removed (index targets, and markers such as 255 in
            binary/multilabel targets): they change neither the value nor get a gradient. Default None.
        per_image: one term per image and class, mean over images (default False: the batch is one set per class, as
            the paper's ``lovasz_softmax``). An image with no kept pixel is left out of the mean over images.
        reduction: ``"mean"`` (default) or ``"sum"``: the sum of the terms the mean averages (the classes, or with
            ``per_image`` the images' class means). ``"none"`` is not offered: the terms differ by mode and option.

    Returns:
        The loss, ``()``. 0 with a zero gradient when every pixel is ignored.

    Raises:
        ValueError: bad shapes, class indices out of range, target values other than 0 or 1 (soft targets), a
            multiclass ``(N, C, *S)`` target that is not one-hot, unknown ``classes``/``mode``/``reduction`` (also
            ``"none"``), probabilities outside [0, 1] with ``from_logits=False``.
        TypeError: non-floating input, a floating index target, non-bool ``per_image``/``from_logits``.

    Note:
        Popular variants mapped to these arguments:

        - Berman's ``lovasz_hinge(logits, labels, per_image=True, ignore=None)`` (default per image!):
          ``mode="binary", per_image=True``. ``lovasz_softmax(probas, labels, classes="present", per_image=False,
          ignore=None)`` takes probabilities: ``mode="multiclass", from_logits=False`` with the same ``classes``,
          ``per_image`` and ``ignore_index``. One difference: there an image whose pixels are all ignored adds a 0
          to the mean over images; here it is left out. A list of class ids for ``classes`` is not offered.
        - segmentation_models_pytorch ``LovaszLoss(mode, per_image=False, ignore_index=None)``: multiclass is ours
          (softmax always applied, classes present). Its binary is ours. Its multilabel is the hinge over all
          channels pooled into one set, not a mean over channels: reshape the input and target to ``(N, -1)`` and
          use ``mode="binary"``.
        - kornia ``lovasz_hinge_loss(pred, target)``: ``mode="binary", per_image=True``. kornia
          ``lovasz_softmax_loss(pred, target)`` (per image, all classes, no ignore): ``mode="multiclass",
          per_image=True, classes="all"``; its ``weight`` is not offered.

    References:
        M. Berman, A. Rannen Triki, M. B. Blaschko, "The Lovász-Softmax loss: A tractable surrogate for the
        optimization of the intersection-over-union measure in neural networks", CVPR 2018, eqs. 8-12 and Alg. 1.

    Examples:
        Probabilities p = [1, 0, 0.5, 0] on g = [1, 0, 1, 0]: the only error is 0.5 (third pixel), and
        :math:`\Delta_J` of that one pixel missed is 1/2 (``|M| = 1``, ``|G u M| = 2``), so the loss is 0.5 * 1/2.
        The logits [2, -2, 0.5, -1] give the hinge errors relu(1 - x s) = [0, 0, 0.5, 0]: the same loss.

        >>> import torch
        >>> from seglosses.functional import lovasz_loss
        >>> p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
        >>> g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
        >>> lovasz_loss(p, g, mode="binary", from_logits=False)
        tensor(0.2500)
        >>> x = torch.tensor([[[2.0, -2.0], [0.5, -1.0]]])
        >>> lovasz_loss(x, g, mode="binary")
        tensor(0.2500)

    """
    fn = "lovasz_loss"
    check_hparams(fn, per_image=per_image, classes=classes)
    check_reduction(fn, reduction, ("mean", "sum"))
    prep = prepare(fn, input, target, mode=mode, from_logits=from_logits, ignore_index=ignore_index, allow_soft=False)
    if mode == "multiclass" and prep.form == "dense" and values_checked(prep.target):  # no host sync on a GPU
        check_one_hot(fn, prep.target)
    hinge = from_logits and mode != "multiclass"
    loss, positives, count = _lovasz_terms(prep, hinge=hinge, per_image=per_image)
    keep = positives > 0 if (mode == "multiclass" and classes == "present") else count > 0
    loss = torch.where(keep, loss, torch.zeros_like(loss))
    if per_image:  # each image's mean over its kept classes, then the images that have one
        loss = loss.sum(1) / keep.sum(1).clamp_min(1).to(loss.dtype)
        keep = keep.any(1)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / keep.sum().clamp_min(1).to(loss.dtype)
