"""Numerically stable building blocks shared by the losses (log-space maths, safe powers)."""

from __future__ import annotations

import torch
from torch import Tensor


def safe_pow(base: Tensor, exponent: float) -> Tensor:
    """``base ** exponent`` for ``base >= 0`` with a finite gradient at ``base == 0``.

    For ``0 < exponent < 1`` the true derivative at 0 is infinite; every use in seglosses multiplies the power by a
    factor that vanishes there (or sits at the loss minimum), so the subgradient 0 is used instead of ``inf * 0 = NaN``.
    A NaN base gives 0 for a positive exponent (``NaN > 0`` is False; per-class statistics use :func:`stats_pow`,
    which keeps NaN) and NaN for exponent 0, whose result is ``base * 0 + 1``: the constant 1 with a zero gradient,
    still attached to the graph.
    """
    if exponent == 0.0:  # the constant 1 (0^0 = 1), still a function of base: a zero gradient, not a detached 1
        return base * 0 + 1
    if exponent == 1.0:
        return base
    positive = base > 0
    safe = torch.where(positive, base, torch.ones_like(base))
    return torch.where(positive, torch.exp(exponent * torch.log(safe)), torch.zeros_like(base))


def stats_pow(base: Tensor, exponent: float) -> Tensor:
    """:func:`safe_pow` of per-class statistics, where a NaN base stays NaN.

    A NaN statistic comes from NaN logits or a bad class index counted on the device; ``safe_pow`` reads it as 0
    (``NaN > 0`` is False) and would turn a poisoned loss into 0.
    """
    return torch.where(torch.isnan(base), base, safe_pow(base, exponent))


def pow_from_log(log_base: Tensor, exponent: float) -> Tensor:
    """``exp(exponent * log_base)``: a power computed from an exact log (finite for finite logits)."""
    if exponent == 0.0:
        return torch.ones_like(log_base)
    return torch.exp(exponent * log_base)


def log1m_softmax(logits: Tensor, dim: int = 1) -> Tensor:
    """``log(1 - softmax(logits))`` along ``dim``, exact where ``1 - p`` underflows.

    ``1 - p_c = sum_{k != c} exp(x_k) / sum_k exp(x_k)``; the exclusive log-sum-exp is assembled from a prefix and a
    suffix ``logcumsumexp`` so that no ``1 - p`` is ever formed (with logits 1e4 and -1e4 it returns -2e4, not -inf).
    """
    lse = torch.logsumexp(logits, dim=dim, keepdim=True)
    prefix = torch.logcumsumexp(logits, dim=dim)
    suffix = torch.logcumsumexp(logits.flip(dim), dim=dim).flip(dim)
    size = logits.shape[dim]
    ninf_shape = list(logits.shape)
    ninf_shape[dim] = 1
    ninf = torch.full(ninf_shape, float("-inf"), dtype=logits.dtype, device=logits.device)
    before = torch.cat([ninf, prefix.narrow(dim, 0, size - 1)], dim=dim)
    after = torch.cat([suffix.narrow(dim, 1, size - 1), ninf], dim=dim)
    return torch.logaddexp(before, after) - lse


def safe_divide(num: Tensor, den: Tensor, smooth: float = 0.0) -> Tensor:
    """``num / den`` with ``0 / 0`` defined as 1 (an empty class predicted empty is a perfect score).

    Only reachable with ``smooth = 0``: ``den`` is a sum of non-negative statistics plus ``smooth``, so with
    ``smooth > 0`` it is positive and the division is plain (fewer ops, fewer autograd nodes).
    """
    if smooth > 0:
        return num / den
    zero = den == 0
    return torch.where(zero, torch.ones_like(num), num / torch.where(zero, torch.ones_like(den), den))


def _log1m_softmax_nograd(x: Tensor, dim: int) -> Tensor:
    """:func:`log1m_softmax`'s operators in its order (the same bits), each intermediate freed once used.

    Without autograd (the forward of :class:`_Log1mSoftmax`): at most three tensors of the input's size alive at once,
    where :func:`log1m_softmax` holds six before it returns.
    """
    lse = torch.logsumexp(x, dim=dim, keepdim=True)
    size = x.shape[dim]
    ninf_shape = list(x.shape)
    ninf_shape[dim] = 1
    ninf = torch.full(ninf_shape, float("-inf"), dtype=x.dtype, device=x.device)
    prefix = torch.logcumsumexp(x, dim=dim)
    before = torch.cat([ninf, prefix.narrow(dim, 0, size - 1)], dim=dim)
    del prefix
    suffix = torch.logcumsumexp(x.flip(dim), dim=dim).flip(dim)
    after = torch.cat([suffix.narrow(dim, 1, size - 1), ninf], dim=dim)
    del suffix
    out = torch.logaddexp(before, after, out=before)
    del after
    return out.sub_(lse)


def _log1m_softmax_vjp(x: Tensor, grad: Tensor, dim: int) -> Tensor:
    r"""The input gradient of :func:`log1m_softmax` for the output gradient ``grad``, in closed form.

    With :math:`L_c = \log(1 - p_c) = \mathrm{LSE}_{j \ne c}\, x_j - \mathrm{LSE}_j\, x_j`,
    :math:`\partial L_c / \partial x_k = [k \ne c]\, p_k / (1 - p_c) - p_k`; with :math:`r_c = p_c / (1 - p_c)`
    (so :math:`1 / (1 - p) = 1 + r`):

    .. math::

        \frac{\partial}{\partial x_k} \sum_c G_c L_c = p_k \Big(\sum_{c \ne k} G_c r_c - G_k\Big).

    At most one class has :math:`p > 1/2`: the largest logit's, ``d``. Every other :math:`r_c \le 1` is formed
    directly (:math:`1 - p_c \ge 1/2`: no cancellation); :math:`r_d` may overflow (logits 1e4 and -1e4 give
    :math:`e^{2 \cdot 10^4}`) but enters only as :math:`p_k r_d = p_d\, e^{x_k - \mathrm{LSE}_{j \ne d} x_j}
    \le p_d` for :math:`k \ne d`, taken in log space. So with :math:`A = \sum_{c \ne d} G_c r_c` (finite),
    :math:`g_d = p_d (A - G_d)` and
    :math:`g_k = p_k (A - G_k r_k - G_k) + G_d\, p_d\, e^{x_k - \mathrm{LSE}_{j \ne d}}`.

    Under ``create_graph`` (double backward) the formula is built of out-of-place differentiable operators; otherwise
    the same operators run in place (the same bits, at most three tensors of the input's size).
    """
    lse = torch.logsumexp(x, dim=dim, keepdim=True)
    d = torch.argmax(x, dim=dim, keepdim=True)  # NaN counts as the largest: a NaN pixel stays NaN
    if torch.is_grad_enabled():
        lse_others = torch.logsumexp(x.scatter(dim, d, float("-inf")), dim=dim, keepdim=True)  # LSE_{j != d} x_j
        p = torch.exp(x - lse)
        p_d = p.gather(dim, d)
        q = p.scatter(dim, d, 0.0)  # p_c <= 1/2 off d
        gr = grad * (q / (1 - q))  # G_c r_c, 0 at d
        a = gr.sum(dim=dim, keepdim=True)
        # p_k r_d = p_d exp(x_k - LSE_{j != d}) (<= p_d off d); the d entry (exp(x_d - LSE) may overflow) set to 0
        dominant = (grad.gather(dim, d) * p_d) * torch.exp(x - lse_others).scatter(dim, d, 0.0)
        return p * (a - gr - grad) + dominant
    # the same operators in place, the products commuted (the same bits): at most three tensors of the input's size
    lse_others = torch.logsumexp(x.scatter(dim, d, float("-inf")), dim=dim, keepdim=True)
    q = (x - lse).exp_()  # p
    p_d = q.gather(dim, d)
    q.scatter_(dim, d, 0.0)
    r = torch.rsub(q, 1)
    gr = torch.div(q, r, out=r).mul_(grad)
    a = gr.sum(dim=dim, keepdim=True)
    h = gr.neg_().add_(a).sub_(grad)  # a - G r - G
    h_d = h.gather(dim, d)
    h.mul_(q).scatter_(dim, d, h_d * p_d)  # p (a - G r - G), p_d at d
    dominant = torch.sub(x, lse_others, out=q).exp_().scatter_(dim, d, 0.0).mul_(grad.gather(dim, d) * p_d)
    return h.add_(dominant)


class _Log1mSoftmax(torch.autograd.Function):
    """:func:`log1m_softmax` whose backward keeps the logits only and recomputes (:func:`_log1m_softmax_vjp`)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, dim: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.dim = dim  # type: ignore[attr-defined]
        return _log1m_softmax_nograd(x, dim)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return _log1m_softmax_vjp(x, grad, ctx.dim), None  # type: ignore[attr-defined]


def log1m_softmax_lean(logits: Tensor, dim: int = 1) -> Tensor:
    """:func:`log1m_softmax` (the same values, bit for bit) whose backward saves only the logits.

    Autograd through :func:`log1m_softmax` keeps its prefix and suffix ``logcumsumexp`` and their concatenations
    (5.25 times the input's bytes saved, 13.5 at peak with the backward); this computes the forward without autograd
    and the gradient in closed form from the logits (:func:`_log1m_softmax_vjp`), equal to autograd's within rounding
    (also at logits of +-1e4, where both are as exact as float64 allows). Double backward works: under
    ``create_graph`` the backward is made of differentiable operators.
    """
    return _Log1mSoftmax.apply(logits, dim % logits.ndim)  # type: ignore[no-any-return,no-untyped-call]
