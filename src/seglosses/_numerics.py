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
