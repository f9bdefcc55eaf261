r"""Topology-preserving losses: clDice (Shit et al. 2021) on soft skeletons computed with pooling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from seglosses._checks import (
    NONNEGATIVE,
    UNIT,
    Interval,
    as_caller,
    check_classes_left,
    check_hparams,
    check_no_class_weights_binary,
    check_reduction,
    check_weights_vector,
    hyperparameters,
    is_whole,
)
from seglosses._distributed import sync_sums
from seglosses._numerics import safe_divide
from seglosses._prepare import Prepared, prepare
from seglosses._reduce import reduce_classes, weighted_sum
from seglosses._stats import class_sums, gather_own
from seglosses._types import Mode, Reduction
from seglosses.functional.boundary import first_class, spatial_shape
from seglosses.functional.region import dice_loss

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None


class _WholeInterval(Interval):
    """An :class:`Interval` of whole numbers: the value must also be a Python int (not a bool)."""

    def check(self, fn: str, name: str, value: object, mode: str | None = None) -> float:
        """Return ``value`` as a float, or raise ``TypeError`` (not an int) / ``ValueError`` (outside)."""
        if not is_whole(value):
            raise TypeError(f"{fn}: `{name}` must be an int; got {type(value).__name__} {value!r}")
        return super().check(fn, name, int(value), mode)  # a NumPy integer too


#: ``iterations``: a whole number of skeleton steps, >= 0 (the Module checks it at construction as well).
ITERATIONS = _WholeInterval(0.0)


_POOLS = {1: torch_f.max_pool1d, 2: torch_f.max_pool2d, 3: torch_f.max_pool3d}


def _exporting() -> bool:
    """Whether ``torch.export`` traces now (``torch.compiler.is_exporting``, from torch 2.6; False before it)."""
    check = getattr(torch.compiler, "is_exporting", None)
    return bool(check()) if check is not None else False


def _cross_max_indices(y: Tensor) -> tuple[Tensor, Tensor]:
    """Max over the face-connected cross of ``(B, K, *S)`` (2 or 3 spatial dims) and each winner's flat index.

    One 1-D max-pool of width 3 per spatial axis (``max_pool`` pads with -inf, so the image outside never wins);
    the first axis wins a tie (a later axis replaces the winner only where it is strictly greater). The winners
    are merged in place, so at most two pools' results are alive at once.
    """
    d = y.ndim - 2
    pool = torch_f.max_pool2d if d == 2 else torch_f.max_pool3d
    best, idx = y, y  # replaced by the first axis' pool
    for axis in range(d):
        kernel = [1] * d
        pad = [0] * d
        kernel[axis], pad[axis] = 3, 1
        m, i = pool(y, kernel, 1, pad, return_indices=True)
        if axis == 0:
            best, idx = m, i
        elif _exporting():  # out= has no autograd in an exported program's backward
            take = m > best
            best, idx = torch.where(take, m, best), torch.where(take, i, idx)
        else:
            take = m > best
            torch.where(take, m, best, out=best)
            torch.where(take, i, idx, out=idx)
            del m, i, take
    return best, idx


def _erode_values(x: Tensor) -> Tensor:
    """Min over the face-connected cross of ``(B, K, *S)``, in-image neighbours only, without autograd.

    In place on one copy of ``x``: per axis, ``clamp_max_`` (the min, NaN-propagating) by ``x`` shifted by one
    each way (views, no padding). The same numbers as ``-max_cross(-x)`` (min and max are exact; only the sign
    of a zero may differ), ~10x faster than the pools on CPU and with no temporary of the input's size.
    """
    out = x.clone()
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        out.narrow(axis, 1, n - 1).clamp_max_(x.narrow(axis, 0, n - 1))
        out.narrow(axis, 0, n - 1).clamp_max_(x.narrow(axis, 1, n - 1))
    return out


def _dilate_values(x: Tensor) -> Tensor:
    """Max over the 3^d box of ``(B, K, *S)``, in-image neighbours only, without autograd.

    Separable: a 3-wide max along each axis in turn (shifted views), the same numbers as ``max_pool`` with
    kernel 3, stride 1, padding 1.
    """
    cur = x
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        out = cur.clone()
        out.narrow(axis, 1, n - 1).clamp_min_(cur.narrow(axis, 0, n - 1))
        out.narrow(axis, 0, n - 1).clamp_min_(cur.narrow(axis, 1, n - 1))
        cur = out
    return cur


def _pool_backward(grad: Tensor, y: Tensor, idx: Tensor) -> Tensor:
    """The gradient of a stride-1 max over 3^d windows of ``y`` (2 or 3 spatial dims) with winners ``idx``.

    The max-pool's own backward kernel: ``grad`` scattered (summed) onto the winners. A cross max's merged indices
    lie in the 3^d window, so the same call serves the cross and the box.
    """
    d = y.ndim - 2
    ones, threes = [1] * d, [3] * d
    if d == 2:
        out: Tensor = torch.ops.aten.max_pool2d_with_indices_backward(grad, y, threes, ones, ones, ones, False, idx)
    else:
        out = torch.ops.aten.max_pool3d_with_indices_backward(grad, y, threes, ones, ones, ones, False, idx)
    return out


class _CrossMax(torch.autograd.Function):
    """Max over the face-connected cross of ``(B, K, *S)`` (2 or 3 spatial dims), in-image neighbours only.

    Forward: :func:`_cross_max_indices`. Backward: one scatter of the gradient to the winners (the max-pool's own
    backward kernel, called with the merged indices), instead of one per pool plus the tie-splitting backward of
    ``torch.maximum``.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:  # noqa: ANN401
        best, idx = _cross_max_indices(y)
        ctx.save_for_backward(y, idx)
        return best

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: ANN401
        y, idx = ctx.saved_tensors
        return _pool_backward(grad, y, idx)


def _max_cross(y: Tensor) -> Tensor:
    """Max over the face-connected cross (3x1 and 1x3; in 3D 3x1x1, 1x3x1, 1x1x3) of ``(B, K, *S)``, in-image."""
    if y.ndim == 3:  # one spatial axis: a 3-wide max-pool (as a 1 x W image)
        out: Tensor = _CrossMax.apply(y.unsqueeze(2))  # type: ignore[no-untyped-call]
        return out.squeeze(2)
    result: Tensor = _CrossMax.apply(y)  # type: ignore[no-untyped-call]
    return result


def soft_erode(x: Tensor) -> Tensor:
    """Soft erosion: the min over the face-connected cross of ``(B, K, *S)`` (in-image neighbours only)."""
    return -_max_cross(-x)


def soft_dilate(x: Tensor) -> Tensor:
    """Soft dilation: the max over the full 3^d neighbourhood (in-image neighbours only)."""
    d = x.ndim - 2
    return _POOLS[d](x, 3, 1, 1)


def _soft_skeleton_autograd(x: Tensor, iterations: int) -> Tensor:
    """:func:`soft_skeleton` as a plain autograd composition (keeps every step's pools for the backward).

    Used for a backward with ``create_graph=True``: it is differentiable again, as the lean path is not.
    """
    neg_eroded = _max_cross(-x)  # -erode(x)
    eroded = -neg_eroded
    skel = torch_f.relu(x - soft_dilate(eroded))
    for _ in range(iterations):
        x = eroded
        neg_eroded = _max_cross(neg_eroded)  # -erode(x) = max_cross(-x)
        eroded = -neg_eroded
        delta = torch_f.relu(x - soft_dilate(eroded))
        skel = skel + torch_f.relu(delta - skel * delta)
    return skel


def _skeleton_step(x: Tensor, skel: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step of Algorithm 1 without autograd: ``(erode(x), S + relu(delta - S delta))`` (``S = delta`` first).

    ``delta = relu(x - dilate(erode(x)))``. The same operations as :func:`_soft_skeleton_autograd` give the same
    bits (``a - b`` is computed in place as ``(-b) + a``, which IEEE arithmetic rounds identically).
    """
    eroded = _erode_values(x)
    delta = _dilate_values(eroded).neg_().add_(x).relu_()
    if skel is None:
        return eroded, delta
    kept = (skel * delta).neg_().add_(delta).relu_()
    del delta
    return eroded, kept.add_(skel)


def _skeleton_step_backward(x: Tensor, skel: Tensor | None, carry: list[Tensor | None]) -> None:
    """Reverse one step of :func:`_skeleton_step` from its inputs, recomputing its pools with their indices.

    ``carry`` holds, in place, ``[dL/dS_k, dL/d erode(x) from step k + 1, dL/d(-erode(x)) from step k + 1]`` (the
    two last None for the last step) and leaves ``[dL/dS_{k-1}, dL/dx as the minuend of x - open(x), dL/d(-x) as
    the cross max's input]`` (the first None for the first step). These are exactly the terms, and the
    operations, that autograd forms for :func:`_soft_skeleton_autograd` (every accumulation there has two terms,
    so the order of the sums does not change a bit); tensors are released as soon as they are used.
    """
    grad_skel = carry[0]
    assert grad_skel is not None
    pool = torch_f.max_pool2d if x.ndim == 4 else torch_f.max_pool3d
    dilated, dil_idx = pool(_erode_values(x), 3, 1, 1, return_indices=True)
    delta = dilated.neg_().add_(x).relu_()  # x - dilate(erode(x)), relu
    del dilated
    if skel is None:
        grad_delta = grad_skel
        carry[0] = None
    else:
        kept = (skel * delta).neg_().add_(delta)  # delta - S delta, before the relu
        neg_grad_u = torch.ops.aten.threshold_backward(grad_skel, kept, 0).neg_()  # relu' of relu(kept) = kept > 0
        del kept
        grad_delta = (neg_grad_u * skel).sub_(neg_grad_u)  # grad_u + (-grad_u) S
        carry[0] = neg_grad_u.mul_(delta).add_(grad_skel)  # grad_S + (-grad_u) delta
        del neg_grad_u
    del grad_skel
    grad_diff: Tensor = torch.ops.aten.threshold_backward(grad_delta, delta, 0)
    del delta, grad_delta
    grad_e = _pool_backward(-grad_diff, grad_diff, dil_idx)  # the second argument only gives the shape
    del dil_idx
    if carry[1] is not None:
        grad_e.add_(carry[1])
    carry[1] = grad_diff
    grad_n = grad_e.neg_()
    if carry[2] is not None:
        grad_n.add_(carry[2])
    carry[2] = None
    cross_idx = _cross_max_indices(-x)[1]  # now, when the dilation's indices are gone
    carry[2] = _pool_backward(grad_n, grad_n, cross_idx)


def _segment_length(iterations: int) -> int:
    """Steps per checkpoint segment, ``ceil(sqrt(iterations + 1))``: the states kept at once stay ~2 sqrt(steps)."""
    return math.isqrt(iterations) + 1


class _SoftSkeleton(torch.autograd.Function):
    """:func:`soft_skeleton` of ``(B, K, *S)`` (2 or 3 spatial dims) with a recomputing backward.

    Forward: the ``iterations + 1`` steps without autograd; saved are ``x`` and the state ``(erode^k(x), S_k)`` at
    the end of every segment of :func:`_segment_length` steps but the last. Backward: the segments in reverse; in
    each, the steps in reverse, each one's inputs recomputed from the segment's start (one state alive at a time,
    at most ``segment * (segment - 1) / 2`` extra steps per segment) and its own pools recomputed with their
    indices (:func:`_skeleton_step_backward`).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, iterations: int) -> Tensor:  # noqa: ANN401
        seg = _segment_length(iterations)
        saved: list[Tensor] = []
        eroded, skel = _skeleton_step(x, None)
        for k in range(1, iterations + 1):
            if k % seg == 0:
                saved += [eroded, skel]
            eroded, skel = _skeleton_step(eroded, skel)
        ctx.iterations = iterations
        ctx.save_for_backward(x, *saved)
        return skel

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN401
        x, *saved = ctx.saved_tensors
        iterations: int = ctx.iterations
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward, by the plain composition
            (out,) = torch.autograd.grad(_soft_skeleton_autograd(x, iterations), x, grad, create_graph=True)
            return out, None
        seg = _segment_length(iterations)
        carry: list[Tensor | None] = [grad, None, None]
        del grad
        for first in reversed(range(0, iterations + 1, seg)):
            last = min(first + seg, iterations + 1)
            j = 2 * (first // seg - 1)
            start: tuple[Tensor, Tensor | None] = (x, None) if first == 0 else (saved[j], saved[j + 1])
            for k in reversed(range(first, last)):
                state = start
                for _ in range(first, k):  # the inputs of step k, from the segment's start
                    state = _skeleton_step(*state)
                _skeleton_step_backward(*state, carry)
                del state
        grad_x, grad_neg = carry[1], carry[2]
        assert grad_x is not None
        assert grad_neg is not None
        return grad_x.sub_(grad_neg), None


def soft_skeleton(x: Tensor, iterations: int) -> Tensor:
    r"""Soft skeleton of ``x`` ``(B, K, *S)`` (1 to 3 spatial dims) by Algorithm 1 of Shit et al. (2021).

    .. math::

        S \leftarrow \operatorname{relu}(x - \operatorname{open}(x)); \quad \text{repeat } k \text{ times: }
        x \leftarrow \operatorname{erode}(x),\; \delta = \operatorname{relu}(x - \operatorname{open}(x)),\;
        S \leftarrow S + \operatorname{relu}(\delta - S\,\delta)

    with ``open = dilate(erode(.))``, erode the min over the face-connected cross and dilate the max over the
    3^d box, both over in-image neighbours. Each step's erosion is the one its opening already computed. Shifted
    tensor views only (a min or max with the neighbour one element away along each axis, in place): no loop over
    pixels or images.

    Memory: a custom autograd Function. The forward runs the ``iterations + 1`` steps without autograd and keeps
    for the backward only ``x`` and the state ``(erode^k(x), S_k)`` at the end of every segment of
    ``ceil(sqrt(iterations + 1))`` steps (4 tensors of ``x``'s size at 10 steps, instead of ~9 per step with
    int64 pool indices among them). The backward walks the segments in reverse and, in each, the steps in reverse,
    recomputing a step's inputs from its segment's start (cheap: shifted views) and its cross max and 3^d max-pool
    with their indices: the values are the same bits as the plain autograd composition, and so are the gradients (the
    max-pool's own backward kernel scatters them; the first axis wins a tie of the cross, the max-pool's scan
    order a tie of the box; every accumulation has two terms). A backward with ``create_graph=True`` runs that
    plain composition instead, so second derivatives are as before.

    Measured on a shared 2-core VM (torch 2.13 CPU, 2 threads, other jobs running), ``cldice_loss`` forward +
    backward, multiclass, index targets, ``iterations=10``; bytes autograd keeps for the backward (distinct
    storages, the logits excluded) and the peak RSS rise (with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed
    tensors leave RSS; with glibc's default, which keeps freed blocks, the rise is 143x -> 30x in 2D, 134x -> 32x
    in 3D, MONAI 337x / 462x; the 2D figures include ~32 MiB = 4x that autograd's engine touches on any
    backward), as multiples of the float32 logits, before -> after, and MONAI 1.6
    ``SoftclDiceLoss(iter_=10, softmax=True)`` on one-hot targets:

    - ``(8, 4, 256, 256)``: saved 98.8x -> 5.5x, peak RSS rise 102x -> 19x; MONAI saved 234x, peak 242x.
    - ``(2, 4, 96, 96, 96)``: saved 98.8x -> 5.5x, peak RSS rise 102x -> 19x; MONAI saved 339x, peak 348x.

    Time: the forward's shifted views are ~8x faster than the pools they replace, but the backward recomputes
    step values ``~(iterations + 1) (sqrt(iterations + 1) - 1) / 2`` times (15 at 10 iterations, 75 at 30, ~500
    at 100: the lean memory costs more time as ``iterations`` grows) and every step's pools with their indices
    once: fwd+bwd 1.27 s -> 1.47 s in 2D and
    9.2 s -> 11.1 s in 3D (the fastest of 4 runs each, before -> after, load average ~1.5-1.8 from the other jobs
    on the 2 cores; timings there vary by ~20% between runs).
    """
    if x.numel() == 0:  # no pixel (an empty batch or a zero-length axis): the empty skeleton, in the graph
        return x * 0
    if x.ndim == 3:  # one spatial axis: a 1 x W image (the 3x3 box and cross reduce to 3-wide windows)
        return soft_skeleton(x.unsqueeze(2), iterations).squeeze(2)
    if _exporting():
        # torch.export records the Function's forward as plain operators, whose in-place steps then break the
        # exported program's backward ("modified by an inplace operation"): export the plain composition
        return _soft_skeleton_autograd(x, iterations)
    out: Tensor = _SoftSkeleton.apply(x, iterations)  # type: ignore[no-untyped-call]
    return out


def _shift_and(out: Tensor, src: Tensor, axis: int, op: str) -> None:
    """In place: ``out[i] op= src[i - 1]`` and ``out[i] op= src[i + 1]`` along ``axis`` (in-image neighbours)."""
    n = src.shape[axis]
    if n < 2:
        return
    lo, hi = out.narrow(axis, 0, n - 1), out.narrow(axis, 1, n - 1)
    if op == "and":
        hi &= src.narrow(axis, 0, n - 1)
        lo &= src.narrow(axis, 1, n - 1)
    else:
        hi |= src.narrow(axis, 0, n - 1)
        lo |= src.narrow(axis, 1, n - 1)


def _erode_bool(m: Tensor) -> Tensor:
    """Erosion of 0/1 masks ``(B, K, *S)`` (bool or uint8) with the face-connected cross, in-image neighbours only."""
    out = m.clone()
    for axis in range(2, m.ndim):
        _shift_and(out, m, axis, "and")
    return out


def _dilate_bool(m: Tensor) -> Tensor:
    """Dilation of 0/1 masks ``(B, K, *S)`` (bool or uint8) with the 3^d box (one 3-wide OR per axis), in-image."""
    cur = m
    for axis in range(2, m.ndim):
        nxt = cur.clone()
        _shift_and(nxt, cur, axis, "or")
        cur = nxt
    return cur


def hard_skeleton(m: Tensor, iterations: int) -> Tensor:
    """:func:`soft_skeleton` of a hard mask, in bool arithmetic (one byte per element, no autograd).

    For 0/1 values every step of Algorithm 1 stays 0/1: min and max are AND and OR, ``relu(x - open(x))`` is
    ``x AND NOT open(x)`` and ``S + relu(delta - S delta)`` is ``S OR delta``; the result equals the soft skeleton
    of the mask as floats, exactly.
    """
    # in uint8 0/1 (one byte too): Inductor's CPU code for bool masks loaded at the image edge does not compile
    # (VecMask<int> against VecMask<float>, torch 2.13), so torch.compile of clDice failed there
    if m.numel() == 0:
        return m.bool()
    m8 = m.to(torch.uint8)
    eroded = _erode_bool(m8)
    skel = m8 & (_dilate_bool(eroded) ^ 1)
    for _ in range(iterations):
        x = eroded
        eroded = _erode_bool(x)
        skel |= x & (_dilate_bool(eroded) ^ 1)
    return skel.bool()


def _cldice_sums(fn: str, prep: Prepared, start: int, iterations: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per image and kept class ``(N, K)``: ``sum S(p) g``, ``sum S(p)``, ``sum S(g) p``, ``sum S(g)`` (kept pixels).

    Index targets: no tensor of the input's size is built from the target. ``sum S(p) g`` gathers each pixel's
    ``S(p)`` of its own class and sums it into that class (:func:`~seglosses._stats.class_sums`); the target's
    skeleton is :func:`hard_skeleton` of one class's bool mask ``(N, 1, *S)`` at a time, and since a class's
    skeleton lies inside its mask (the masks are disjoint), the skeletons of all classes fit in one ``(N, M)`` bool
    map "this pixel is on its own class's skeleton". The backward keeps that map and the indices, not a copy of
    ``S(p)`` nor a mask per class.
    Dense targets: the soft skeleton of the target, without autograd.
    """
    n, c, m = prep.logits.shape
    s = spatial_shape(prep)
    if len(s) not in _POOLS:
        raise ValueError(f"{fn}: the input must have 1 to 3 spatial dims (N, C, *S); got shape {prep.shape}")
    p = prep.prob[:, start:]
    k = c - start
    skel_p = soft_skeleton(p.reshape(n, k, *s), iterations).reshape(n, k, m)
    valid = prep.valid
    sp_kept = skel_p if valid is None else skel_p * (valid if valid.shape[1] == 1 else valid[:, start:])
    sum_sp = sp_kept.sum(-1)
    if prep.form == "index":
        t = prep.safe_index()[0]  # (N, M), ignored pixels are 0 and masked by `valid`; bad indices 0 (see below)
        # a pixel counts for kept class t - start when it is kept and t >= start (else it adds an exact 0 to class 0)
        keep = None if valid is None else valid[:, 0] > 0
        idx = t
        if start > 0:
            keep = t >= start if keep is None else keep & (t >= start)
            idx = (t - start).clamp_min(0)
        with torch.no_grad():
            on_skel = torch.zeros((n, m), dtype=torch.bool, device=t.device)  # on its own class's skeleton
            for j in range(k):
                mask = t == start + j
                if valid is not None:
                    mask &= valid[:, 0] > 0
                on_skel |= hard_skeleton(mask.reshape(n, 1, *s), iterations).reshape(n, m)
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        sp_t = gather_own(sp_kept, idx)  # S(p) of each pixel's own class
        if keep is not None:
            sp_t = torch.where(keep, sp_t, zero)
        p_t = gather_own(p, idx)
        sum_sp_g = class_sums(idx, sp_t, k)
        sum_sg_p = class_sums(idx, torch.where(on_skel, p_t, zero), k)
        poison = prep.index_poison(p.dtype)  # an image with a class index outside [0, C): NaN
        if poison is not None:
            sum_sp_g = sum_sp_g + poison.unsqueeze(1)
        return sum_sp_g, sum_sp, sum_sg_p, class_sums(idx, on_skel.to(p.dtype), k)
    g = prep.target[:, start:]  # 0 at ignored elements
    with torch.no_grad():
        skel_g = soft_skeleton(g.reshape(n, k, *s), iterations).reshape(n, k, m)
        if valid is not None:
            skel_g = skel_g * (valid if valid.shape[1] == 1 else valid[:, start:])
    return (sp_kept * g).sum(-1), sum_sp, (skel_g * p).sum(-1), skel_g.sum(-1)


def _harmonic(tprec: Tensor, tsens: Tensor) -> Tensor:
    """``2 a b / (a + b)``, 0 where both are 0, NaN where either is NaN."""
    den = tprec + tsens
    ok = ~(den <= 0)  # NaN (a poisoned image) stays NaN
    return torch.where(ok, 2 * tprec * tsens / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))


@hyperparameters(iterations=ITERATIONS, smooth=NONNEGATIVE)
def cldice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    iterations: int = 10,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Soft clDice loss (Shit et al. 2021): the harmonic mean of topology precision and sensitivity.

    .. math::

        T_{prec,c} = \frac{\sum S(p_c)\, g_c + s}{\sum S(p_c) + s}, \qquad
        T_{sens,c} = \frac{\sum S(g_c)\, p_c + s}{\sum S(g_c) + s}, \qquad
        L = \operatorname{reduce}_c \left(1 - \frac{2\, T_{prec,c} T_{sens,c}}{T_{prec,c} + T_{sens,c}}\right)

    with :math:`S` the soft skeleton (Algorithm 1 of the paper, :func:`~seglosses.functional.topology.soft_skeleton`:
    erode = min-pool over the face-connected cross, dilate = 3^d max-pool, ``iterations`` steps, in-image neighbours
    only), sums over the kept pixels of the batch (of each image with ``per_image``). The prediction's skeleton is taken
    of the probabilities as given (the pooling sees every pixel, so the probabilities at ignored pixels still shape the
    skeleton at their neighbours; only the sums leave them out); the target's of the hard or soft target with ignored
    pixels as background (no gradient flows through it). A harmonic mean of two zeros is 0; with ``smooth=0`` an empty
    skeleton gives ``0/0 = 1``.

    Shapes:
        As :func:`seglosses.functional.dice_loss` with 1 to 3 spatial dims; ``"none"`` gives ``(K,)`` or
        ``(N, K)`` with ``per_image``.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.dice_loss` (soft targets allowed).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        iterations: skeleton steps (default 10, the official PyTorch code's effective value; MONAI uses 3). A step
            thins by one pixel, so structures thicker than about 2 * iterations pixels keep an incomplete skeleton.
        smooth: added to numerator and denominator of both ratios (default 1.0, as the paper's code and MONAI).
        include_background: keep channel 0 (default True, as every region loss; binary mode keeps its one channel).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value whose pixels count nowhere (default None).
        per_image: ratios per image, then the mean (default False: sums over the batch).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum the four skeleton sums of each class over the ranks of
            ``process_group`` before the formula (the loss of the concatenated batch; input gradients K times the
            single-process ones). Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss, see Shapes.

    Raises:
        ValueError: see :func:`seglosses.functional.dice_loss`; a negative ``iterations``, more than 3 spatial dims.
        TypeError: see :func:`seglosses.functional.dice_loss`; a non-int ``iterations``.

    Note:
        - The official PyTorch code, ``soft_cldice(iter_=3, smooth=1., exclude_background=False)`` called as
          ``(y_true, y_pred)`` on probabilities: its ``iter_`` is never used (the skeleton is
          ``SoftSkeletonize(num_iter=10)``: always 10 steps, our default), and it pools every channel given
          (``exclude_background`` drops channel 0; an earlier version always dropped it) and every image into one
          ``T_prec`` and one ``T_sens``. Ours is one ratio per class, then the class reduction: equal to it in
          binary mode (and multiclass with two classes and ``include_background=False``) with
          ``from_logits=False, iterations=10, smooth=1``; with several kept classes the difference is exactly
          that pooling.
        - MONAI ``SoftclDiceLoss(iter_=k, smooth_nr=s, smooth_dr=s, smooth=eps, include_background=b)`` with
          ``sigmoid=True`` (binary/multilabel) or ``softmax=True, to_onehot_y=True`` (multiclass): the same
          skeleton (``iterations=k``, ``smooth=s``; its default ``iter_=3`` is ours ``iterations=3``), sums per
          image (``per_image=True``) with the kept classes of an image pooled, and ``eps`` (default 1e-4) added to
          the harmonic mean's denominator, ``1 - 2 T_p T_s / (T_p + T_s + eps)``; ours adds nothing there. With
          one kept class and a negligible ``eps`` the numbers are equal.
        - Empty classes: with ``smooth > 0`` an empty target class predicted empty scores ``T_p = T_s = 1``
          (loss 0); false positives of a class absent from the target still lower ``T_p``.
        - Cost: a skeleton step is a min over the cross and a separable 3^d max on the kept classes'
          probabilities (shifted views); the backward recomputes each step with its pool indices. The target's
          skeleton (index targets) is computed in bool arithmetic without autograd. Memory: autograd keeps the
          probabilities, ~2 sqrt(iterations) skeleton checkpoints of their size and, for index targets, two bool
          masks: 5.5x the float32 logits at 10 steps (the pooled autograd skeleton kept ~99x, MONAI's 234x in 2D),
          peak ~19x; see :func:`~seglosses.functional.topology.soft_skeleton` for the measurements.

    References:
        S. Shit, J. C. Paetzold, A. Sekuboyina et al., "clDice - a novel topology-preserving loss function for
        tubular structure segmentation", CVPR 2021, Algorithm 1 and eq. 1-3.

    Examples:
        A 3x3 image whose middle row is the target; the prediction is the same mask. Both skeletons are the row
        (each of its pixels is on the boundary), so Tprec = Tsens = (3 + 1) / (3 + 1) and the loss is 0.

        >>> import torch
        >>> from seglosses.functional import cldice_loss
        >>> g = torch.tensor([[[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]])
        >>> cldice_loss(g, g, mode="binary", from_logits=False).item()
        0.0

        Predicting nothing: S(p) = 0, so Tprec = (0 + 1) / (0 + 1) = 1 and Tsens = (0 + 1) / (3 + 1) = 1/4;
        clDice = 2 * (1/4) / (5/4) = 0.4 and the loss is 0.6.

        >>> round(cldice_loss(torch.zeros_like(g), g, mode="binary", from_logits=False).item(), 6)
        0.6

    """
    fn = "cldice_loss"
    check_hparams(
        fn,
        iterations=iterations,
        smooth=smooth,
        include_background=include_background,
        per_image=per_image,
        class_weights=class_weights,
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
    start = first_class(mode, include_background)
    if start:
        check_classes_left(fn, prep.num_classes, include_background)
    sp_g, sp, sg_p, sg = _cldice_sums(fn, prep, start, iterations)
    if not per_image:
        sp_g, sp, sg_p, sg = (v.sum(0) for v in (sp_g, sp, sg_p, sg))
        if prep.sync is not None:
            sp_g, sp, sg_p, sg = sync_sums([sp_g, sp, sg_p, sg], prep.sync)
    tprec = safe_divide(sp_g + smooth, sp + smooth, smooth)
    tsens = safe_divide(sg_p + smooth, sg + smooth, smooth)
    loss = 1 - _harmonic(tprec, tsens)
    if start:
        loss = torch.cat([torch.zeros_like(loss[..., :start]), loss], -1)
    return reduce_classes(
        loss,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=prep.sync if per_image else None,
    )


@hyperparameters(alpha=UNIT, iterations=ITERATIONS, smooth=NONNEGATIVE)
def dice_cldice_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    alpha: float = 0.5,
    iterations: int = 10,
    smooth: float = 1.0,
    include_background: bool = True,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Dice + clDice (Shit et al. 2021): ``(1 - alpha) * dice_loss + alpha * cldice_loss``.

    .. math::

        L = (1 - \alpha)\, L_{Dice} + \alpha\, L_{clDice}

    Both terms take the shared arguments (``smooth``, ``include_background``, ``class_weights``,
    ``ignore_index``, ``per_image``, ``reduction``, ``sync_stats``); Dice's ``squared``/``log_loss`` are not
    offered. Both have the same shape for every reduction, so ``"none"`` is their weighted sum per class.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: see :func:`seglosses.functional.dice_loss`.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        alpha: the weight of clDice in [0, 1] (default 0.5, the paper's and MONAI's).
        iterations: skeleton steps (default 10, see :func:`cldice_loss`).
        smooth: both terms' ``smooth`` (default 1.0).
        include_background: keep channel 0 (default True).
        class_weights: per-class weights (default None).
        ignore_index: target value to ignore (default None).
        per_image: per-image statistics in both terms (default False).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: sum both terms' statistics over the ranks (see :func:`cldice_loss`). Default False.
        process_group: the group to sum over (default None).

    Returns:
        The loss.

    Raises:
        ValueError: see :func:`cldice_loss`; ``alpha`` outside [0, 1].
        TypeError: see :func:`cldice_loss`.

    Note:
        MONAI ``SoftDiceclDiceLoss(iter_=k, alpha=a, smooth_nr=s, smooth_dr=s, smooth=eps)`` is ``alpha=a,
        iterations=k, smooth=s, per_image=True`` (its Dice is MONAI ``DiceLoss`` per image and class, as ours with
        ``per_image=True``), up to the class pooling and the harmonic mean's ``eps`` of its clDice term (see
        :func:`cldice_loss`): equal with one kept class and a negligible ``eps``. The official clDice code's
        ``soft_dice_cldice(iter_, alpha, smooth, exclude_background)`` runs 10 skeleton steps whatever ``iter_``
        and pools every channel and image in both terms (its Dice uses ``smooth = 1``): equal to ours in binary
        mode with ``from_logits=False, iterations=10``.

    References:
        S. Shit et al., "clDice - a novel topology-preserving loss function for tubular structure segmentation",
        CVPR 2021, eq. 4.

    Examples:
        A perfect hard prediction of a one-pixel-wide row: both terms are 0.

        >>> import torch
        >>> from seglosses.functional import dice_cldice_loss
        >>> g = torch.tensor([[[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]])
        >>> dice_cldice_loss(g, g, mode="binary", from_logits=False).item()
        0.0

    """
    fn = "dice_cldice_loss"
    check_hparams(fn, alpha=alpha, iterations=iterations, smooth=smooth)
    shared = {
        "mode": mode,
        "from_logits": from_logits,
        "smooth": smooth,
        "include_background": include_background,
        "class_weights": class_weights,
        "ignore_index": ignore_index,
        "per_image": per_image,
        "reduction": reduction,
        "sync_stats": sync_stats,
        "process_group": process_group,
    }
    with as_caller(fn):
        dice = dice_loss(input, target, **shared)  # type: ignore[arg-type]
        cl = cldice_loss(input, target, iterations=iterations, **shared)  # type: ignore[arg-type]
    return weighted_sum((1 - alpha, dice), (alpha, cl))
