r"""Differentiable sums across ``torch.distributed`` ranks: the one place where seglosses talks to other processes.

With ``sync_stats=True`` every statistic a loss needs (TP, P, G, counts, the sum of per-pixel
terms and the number of kept pixels, the sum of per-image terms and the number of images) is summed over the ranks
of the process group before the formula, so every rank computes the loss of the concatenated batch.

Gradient convention (the one of ``torch.distributed.nn.functional.all_reduce``): the backward of the sum is again a
sum over the ranks. Every rank's loss ``L(S)`` depends on ``S = sum_k s_k``; rank k's own ``s_k`` receives
``sum_j dL_j/dS = K dL/dS``, so the gradient w.r.t. each rank's input is **K times** the single-process gradient of
its pixels. DDP then averages the parameter gradients over the K ranks, ``(1/K) sum_k K g_k = sum_k g_k``: exactly
the gradient of one process on the concatenated batch. Every path from a rank's input to the loss goes through
exactly one such sum, so the factor K is the same everywhere. Every rank must call ``backward`` (as under DDP), in
the same order, since the backward is a collective too. The backward is the same sum again, so it is differentiable
in turn (a gradient penalty through a synced loss, where the loss itself is twice differentiable).

The autograd function is our own rather than ``torch.distributed.nn.functional.all_reduce`` (the same forward and
backward), which torch 2.13 deprecates with a ``FutureWarning``; it has no ``torch.compile`` support either, so a
compiled loss with ``sync_stats=True`` breaks the graph there. With ``sync_stats=False`` nothing of this module runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Sync:
    """Where to sum the statistics: ``group`` is a ``torch.distributed`` process group, or None for the default."""

    group: Any = None


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` whose backward all-reduces (sums) the incoming gradient over the same group."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        # the same function again, so that the backward is itself differentiable (a second backward, e.g. a gradient
        # penalty, sums over the ranks too); a bare in-place all_reduce here was invisible to autograd: the second
        # backward took it as the identity, silently K times too small in the terms that cross it
        out: Tensor = _AllReduceSum.apply(grad, ctx.group)  # type: ignore[no-untyped-call]
        return out, None


def is_ready() -> bool:
    """Whether ``torch.distributed`` is available and a default process group is initialised."""
    return bool(dist.is_available() and dist.is_initialized())


def sync_sum(tensor: Tensor, sync: Sync) -> Tensor:
    """Sum ``tensor`` over the ranks of ``sync.group``, differentiably (see the module docstring for the gradient)."""
    out: Tensor = _AllReduceSum.apply(tensor, sync.group)  # type: ignore[no-untyped-call]
    return out


def sync_sums(tensors: list[Tensor], sync: Sync) -> list[Tensor]:
    """Sum several tensors over the ranks with ONE collective: flattened into one buffer, reduced, split back.

    The tensors are cast to a common floating dtype (the widest of them); each comes back in its own shape.
    """
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    total = sync_sum(flat, sync)
    sizes = [t.numel() for t in tensors]
    return [part.view(t.shape) for part, t in zip(torch.split(total, sizes), tensors, strict=True)]


def sync_int_state(state: dict[str, Tensor], group: Any = None) -> dict[str, Tensor]:
    """Sum a dict of integer tensors over the ranks (one plain, non-differentiable ``all_reduce``)."""
    if not state:
        return state
    keys = list(state)
    flat = torch.cat([state[k].reshape(-1) for k in keys])
    home = flat.device
    flat = flat.to(collective_device(flat, group))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    parts = torch.split(flat.to(home), [state[k].numel() for k in keys])
    return {k: p.view(state[k].shape) for k, p in zip(keys, parts, strict=True)}


def collective_device(tensor: Tensor, group: Any = None) -> torch.device:
    """The device a collective of ``group`` needs ``tensor`` on: its own, or under NCCL the current CUDA device.

    A metrics object that never saw a batch on a rank (fewer validation batches than ranks) still holds its state on
    the CPU, which NCCL cannot reduce; gloo takes CPU tensors (and CUDA ones).
    """
    if tensor.device.type == "cpu" and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device
