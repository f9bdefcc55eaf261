r"""Exact distance maps computed on the masks' own device (CUDA): no host round trip, no synchronisation.

The separable form of the exact squared Euclidean distance transform (Felzenszwalb and Huttenlocher): with
:math:`f_0(x) = 0` on the False elements of a mask and :math:`+\infty` on the True ones, one pass per spatial axis
:math:`a` (pixel size :math:`s_a`)

.. math::
    f_a(\dots, i, \dots) = \min_j \big( f_{a-1}(\dots, j, \dots) + s_a^2 (i - j)^2 \big)

gives after the last axis the squared distance of every element to the nearest False element, exactly (the
minimum over all False elements of :math:`\sum_a s_a^2 \Delta_a^2` splits over the axes). Each pass is a min-plus
product of the lines along that axis with the fixed matrix :math:`s_a^2 (i - j)^2`: on CUDA one Triton program per
(line, block of outputs) streams the line through registers (:func:`min_plus_lines`); elsewhere, and as the
reference the tests pin the kernel to, :func:`min_plus_lines_twin` does the same in PyTorch in chunks of lines.
Everything runs in float64, as the CPU transform does; no shape depends on the data, so a loss that computes its
maps inside can be captured in a CUDA graph. The cost is :math:`O(n)` per element and axis (:math:`n` the line
length) instead of the CPU's :math:`O(1)`, which a GPU affords for the image sizes of segmentation (512 per axis:
about 2 x 512 min-plus steps per pixel in 2D).

:func:`maps_on_device` builds the signed and unsigned maps of :mod:`seglosses._ops_distance` from these
transforms, with the same conventions (empty or full masks give 0; the signed map's inside distance is measured to
the eroded mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

#: Elements of the (lines, n, n) block that the PyTorch twin materialises per step.
_TWIN_BLOCK = 1 << 22
#: Outputs per program of the Triton pass, and elements of the line read per step.
_BLOCK_I = 64
_BLOCK_J = 64

if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _min_plus_kernel(
        src_ptr: tl.tensor,
        dst_ptr: tl.tensor,
        M: tl.tensor,
        s2: tl.float64,
        BLOCK_I: tl.constexpr,
        BLOCK_J: tl.constexpr,
    ) -> None:
        """``dst[line, i] = min_j src[line, j] + s2 (i - j)^2`` for one line and a block of ``i``."""
        line = tl.program_id(0)
        offs_i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
        base = line.to(tl.int64) * M
        best = tl.full([BLOCK_I], float("inf"), tl.float64)
        for j0 in range(0, M, BLOCK_J):
            offs_j = j0 + tl.arange(0, BLOCK_J)
            f = tl.load(src_ptr + base + offs_j, mask=offs_j < M, other=float("inf")).to(tl.float64)
            d = (offs_i[:, None] - offs_j[None, :]).to(tl.float64)
            best = tl.minimum(best, tl.min(f[None, :] + d * d * s2, axis=1))
        tl.store(dst_ptr + base + offs_i, best, mask=offs_i < M)


def min_plus_lines_twin(f: Tensor, s2: float) -> Tensor:
    """``out[l, i] = min_j f[l, j] + s2 (i - j)^2`` of float64 lines ``f`` ``(L, n)`` in PyTorch (any device).

    The ``(lines, n, n)`` sums are formed a few lines at a time (about ``2^22`` elements per step), in the same
    order of operations as the Triton kernel (so the two agree to the bit).
    """
    n_lines, n = f.shape
    idx = torch.arange(n, device=f.device, dtype=torch.float64)
    d = idx[:, None] - idx[None, :]
    cost = d * d * s2  # (i, j)
    out = torch.empty_like(f)
    step = max(1, _TWIN_BLOCK // max(n * n, 1))
    for a in range(0, n_lines, step):
        out[a : a + step] = (f[a : a + step, None, :] + cost[None]).amin(-1)
    return out


def kernel_runs(device: torch.device) -> bool:
    """Whether the Triton pass serves lines on ``device`` (CUDA with triton importable; the tests widen it)."""
    return triton is not None and device.type == "cuda"


def min_plus_lines(f: Tensor, s2: float) -> Tensor:
    """:func:`min_plus_lines_twin` by the Triton kernel on CUDA (one launch), else the twin itself."""
    if not kernel_runs(f.device):
        return min_plus_lines_twin(f, s2)
    return _min_plus_launch(f, s2)


def _min_plus_launch(f: Tensor, s2: float) -> Tensor:
    """One launch of the Triton pass over contiguous float64 lines ``(L, n)`` (the interpreter runs it on the CPU)."""
    n_lines, n = f.shape
    out = torch.empty_like(f)
    if f.numel():
        grid = (n_lines, triton.cdiv(n, _BLOCK_I))
        _min_plus_kernel[grid](f, out, n, float(s2), BLOCK_I=_BLOCK_I, BLOCK_J=_BLOCK_J)
    return out


def squared_edt(masks: Tensor, spacing: Sequence[float], *, twin: bool = False) -> Tensor:
    """Squared distance of every True element of ``masks`` ``(B, *S)`` to the nearest False one (0 on False).

    float64, on the masks' device; ``+inf`` throughout a mask with no False element (callers flag those).
    ``twin`` forces the PyTorch passes (the tests' reference of the kernel).
    """
    f = torch.zeros(masks.shape, dtype=torch.float64, device=masks.device).masked_fill_(masks, float("inf"))
    for axis, s in enumerate(spacing, start=1):
        n = f.shape[axis]
        moved = f.movedim(axis, -1)
        lines = moved.contiguous().view(-1, n)
        s2 = float(s) * float(s)
        done = min_plus_lines_twin(lines, s2) if twin else min_plus_lines(lines, s2)
        f = done.view(moved.shape).movedim(-1, axis)
    return f.contiguous()


def _erode_cross(masks: Tensor) -> Tensor:
    """Erosion of each mask of ``(B, *S)`` with the face-connected cross; the image outside is background."""
    out = masks.clone()
    for axis in range(1, masks.ndim):
        n = masks.shape[axis]
        if n < 3:  # every element touches the image edge along this axis
            return torch.zeros_like(masks)
        out.narrow(axis, 1, n - 1).logical_and_(masks.narrow(axis, 0, n - 1))
        out.narrow(axis, 0, n - 1).logical_and_(masks.narrow(axis, 1, n - 1))
        out.narrow(axis, 0, 1).zero_()
        out.narrow(axis, n - 1, 1).zero_()
    return out


def _edt(masks: Tensor, spacing: Sequence[float], skip: Tensor, twin: bool) -> Tensor:
    """``edt_s`` (the distance, not its square) of every mask; 0 for the masks flagged in ``skip`` ``(B,)``."""
    dist = squared_edt(masks, spacing, twin=twin).sqrt()
    flag = skip.view(-1, *([1] * (masks.ndim - 1)))
    return torch.where(flag, 0.0, dist)


def maps_on_device(
    masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype, *, twin: bool = False
) -> Tensor:
    """Signed or unsigned maps of bool masks ``(B, *S)`` (see :mod:`seglosses._ops_distance`), on their device.

    The same conventions as the CPU transform: an empty or a full mask gives 0; ``"signed"`` is
    ``edt_s(~m) - edt_s(erode(m))`` (0 on the inner boundary ring), ``"unsigned"`` is ``edt_s(m) + edt_s(~m)``.
    """
    flat = masks.reshape(masks.shape[0], -1)
    trivial = (~flat.any(1)) | flat.all(1)
    if kind == "signed":
        outside = _edt(~masks, spacing, trivial, twin)
        eroded = _erode_cross(masks)
        no_core = trivial | ~eroded.reshape(masks.shape[0], -1).any(1)
        dist = outside - _edt(eroded, spacing, no_core, twin)
    else:
        dist = _edt(masks, spacing, trivial, twin) + _edt(~masks, spacing, trivial, twin)
    return dist.to(dtype)
