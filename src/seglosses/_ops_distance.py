r"""Exact Euclidean distance maps as the ``torch.library`` operator ``seglosses::distance_maps``.

For one mask ``m`` and ``edt_s(x)`` = for every True element of ``x`` the Euclidean distance, in the units of
``spacing`` (the pixel size along each spatial axis), to the nearest False element (0 on False):

- ``"signed"``: ``phi(m) = edt_s(~m) * (~m) - edt_s(erode(m)) * m``, ``erode`` with the face-connected (cross)
  neighbourhood and the image outside counting as background: 0 on the inner boundary ring of the mask, minus the
  distance to that ring inside, the distance to the mask outside;
- ``"unsigned"``: ``d(m) = edt_s(m) + edt_s(~m)``, the distance to the other side of the boundary (the image
  outside is not background).

An empty or a full mask gives 0 everywhere. The transform is exact and runs on the CPU in float64: with the native
kernels (:mod:`seglosses._native`, ``sl_edt``) one call over the whole stack (Felzenszwalb and Huttenlocher's
separable transform, its lines spread over the threads), without them scipy's ``distance_transform_edt`` with
``sampling=``, one call per mask on its bounding box (the reference; the tests pin the two together).

The operator makes the maps one opaque call for ``torch.compile`` (no graph break, ``fullgraph=True`` works) and
``torch.export``: its fake-tensor registration gives the shape of the masks and the requested dtype, and its kernel
runs eagerly on the real data (the empty/full-mask early outs are inside it). The maps are constants of the losses
that use them: the operator has no autograd formula (its input is bool). CUDA masks are transformed on the device
(:mod:`seglosses._edt_device`: the same exact separable transform as min-plus passes, a Triton kernel per axis): no
host-device synchronisation, and a loss computing its maps inside can be captured in a CUDA graph. Masks on another
device are copied to the CPU, transformed and copied back (a synchronisation). A loss given precomputed maps
(``dist_map``, from :class:`seglosses.distance.DistanceMapTransform` in the data loader) does not call the operator
for them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from seglosses import _edt_device, _native

__all__ = ["distance_maps", "maps_from_masks"]

_KINDS = ("signed", "unsigned")
_MAX_EXTENT = 1e150  # the image diagonal in spacing units; twice its square is < the float64 maximum (1.8e308)
_DTYPES: dict[torch.dtype, type[np.floating[Any]]] = {torch.float32: np.float32, torch.float64: np.float64}


def _box(mask: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the True elements of ``mask`` grown by one element per side (clipped to the image)."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2) if len(hit) else slice(None))
    return tuple(box)


def _edt_scipy(masks: np.ndarray, spacing: tuple[float, ...], skip: np.ndarray) -> np.ndarray:
    """``edt_s`` of every mask of a stack ``(B, *S)`` with scipy, one call per mask (the reference path).

    Each call runs on the bounding box of the mask's True elements grown by one element: exact, since the nearest
    False element of a True element x always has a True face-neighbour (else its neighbour one step towards x
    would be a nearer False element), so it lies in that box.
    """
    out = np.zeros(masks.shape, dtype=np.float64)
    for b in np.flatnonzero(~skip):
        box = _box(masks[b])
        out[b][box] = ndimage.distance_transform_edt(masks[b][box], sampling=spacing)
    return out


def _edt_each(masks: np.ndarray, spacing: tuple[float, ...], skip: np.ndarray) -> np.ndarray:
    """``edt_s`` of every mask of a stack ``(B, *S)``, float64; 0 for the masks flagged in ``skip`` ``(B,)``.

    With the native kernels (``seglosses._native``): one call over the whole stack, the separable exact
    transform of Felzenszwalb and Huttenlocher (squared distances along the last axis, then the lower envelope
    of parabolas along every other axis, lines spread over the threads; no line crosses two masks). Without
    them: scipy's ``distance_transform_edt``, one call per mask (:func:`_edt_scipy`). The two agree to rounding
    (the tests pin them together); a single scipy call over the stack (a spacing on the stacking axis larger than
    any in-image distance keeps the masks apart) was measured 2.1x slower than one call per mask, since scipy
    runs its pass along that axis at full cost.
    """
    lib = _native.library()
    if lib is None or masks.size == 0 or masks.ndim < 2:
        return _edt_scipy(masks, spacing, skip)
    m = np.ascontiguousarray(masks, dtype=np.bool_)
    flags = np.ascontiguousarray(skip, dtype=np.bool_)
    out = np.empty(m.shape, dtype=np.float64)
    shape = np.asarray(m.shape[1:], dtype=np.int64)
    sp = np.asarray(spacing, dtype=np.float64)
    lib.sl_edt(
        m.ctypes.data,
        flags.ctypes.data,
        out.ctypes.data,
        m.shape[0],
        m.ndim - 1,
        shape.ctypes.data,
        sp.ctypes.data,
        torch.get_num_threads(),
    )
    return out


def _erode_cross(masks: np.ndarray) -> np.ndarray:
    """Erosion of each mask of ``(B, *S)`` with the face-connected cross; the image outside is background.

    Vectorised over the stack: a pixel stays when it and its 2 neighbours along every spatial axis are in the mask.
    """
    out = masks.copy()
    for axis in range(1, masks.ndim):
        n = masks.shape[axis]
        lo = [slice(None)] * masks.ndim
        hi = [slice(None)] * masks.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        out[tuple(hi)] &= masks[tuple(lo)]
        out[tuple(lo)] &= masks[tuple(hi)]
        edge = [slice(None)] * masks.ndim
        for i in (0, n - 1):
            edge[axis] = slice(i, i + 1)
            out[tuple(edge)] = False
    return out


def maps_from_masks(
    masks: np.ndarray, spacing: tuple[float, ...], kind: str, dtype: type[np.floating[Any]] = np.float32
) -> np.ndarray:
    """Signed or unsigned distance maps of a stack of bool masks ``(B, *S)`` as ``dtype``; 0 for empty/full masks."""
    flat = masks.reshape(masks.shape[0], -1)
    trivial: np.ndarray = np.logical_or(~flat.any(1), flat.all(1))  # empty or full: the map is 0 (no transform run)
    if kind == "signed":
        out = _edt_each(~masks, spacing, trivial)  # distance of outside pixels to the mask
        eroded = _erode_cross(masks)
        no_core: np.ndarray = np.logical_or(trivial, ~eroded.reshape(len(masks), -1).any(1))
        inside = _edt_each(eroded, spacing, no_core)  # 0 on the ring
        dist = out - inside
    else:
        dist = _edt_each(masks, spacing, trivial) + _edt_each(~masks, spacing, trivial)
    return np.asarray(dist, dtype=dtype)


def _check(masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype) -> None:
    """The arguments of :func:`distance_maps` (the same errors while tracing and in the kernel)."""
    fn = "seglosses::distance_maps"
    if masks.dtype != torch.bool:
        raise TypeError(f"{fn}: `masks` must be a bool tensor; got {masks.dtype}")
    if masks.ndim < 2:
        raise ValueError(f"{fn}: `masks` must have shape (B, *S) with at least one spatial axis; got {masks.ndim}-D")
    if len(spacing) != masks.ndim - 1:
        raise ValueError(f"{fn}: `spacing` must hold one value per spatial axis ({masks.ndim - 1}); got {len(spacing)}")
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"{fn}: `spacing` must hold finite values > 0; got {list(spacing)}")
    sizes = masks.shape[1:]
    if all(isinstance(n, int) for n in sizes):  # concrete sizes (a symbolic one is left unguarded)
        # the transform works on squared distances in float64: past ~1e154 they overflow (inf - inf: NaN maps)
        extent = math.hypot(*(n * s for n, s in zip(sizes, spacing, strict=True)))
        if extent > _MAX_EXTENT:
            raise ValueError(
                f"{fn}: `spacing` times the image size must stay <= {_MAX_EXTENT:g} (the squared distances are "
                f"float64); got spacing {list(spacing)} for spatial size {tuple(sizes)} (extent {extent:g})"
            )
    if kind not in _KINDS:
        raise ValueError(f"{fn}: `kind` must be one of {_KINDS}; got {kind!r}")
    if dtype not in _DTYPES:
        raise TypeError(f"{fn}: `dtype` must be torch.float32 or torch.float64; got {dtype}")


@torch.library.custom_op("seglosses::distance_maps", mutates_args=())
def _distance_maps_op(masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype) -> Tensor:
    """The operator's kernel, for every device (the transform runs on the CPU; see :func:`distance_maps`)."""
    _check(masks, spacing, kind, dtype)
    if masks.numel() == 0:
        return torch.zeros(masks.shape, dtype=dtype, device=masks.device)
    arr = masks.detach().to("cpu").contiguous().numpy()
    dist = maps_from_masks(arr, tuple(float(s) for s in spacing), kind, _DTYPES[dtype])
    return torch.from_numpy(dist).to(masks.device)


@_distance_maps_op.register_kernel("cuda")
def _distance_maps_cuda(masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype) -> Tensor:
    """On the device: :func:`seglosses._edt_device.maps_on_device` (Triton passes; no host round trip)."""
    _check(masks, spacing, kind, dtype)
    if masks.numel() == 0:
        return torch.zeros(masks.shape, dtype=dtype, device=masks.device)
    # Triton launches on the current CUDA device, not the tensors' (see seglosses._ops._on_input_device); the
    # interpreter's tests run this implementation on CPU tensors, which have no device context
    context = torch.cuda.device(masks.device) if masks.device.type == "cuda" else contextlib.nullcontext()
    with context:
        return _edt_device.maps_on_device(masks, [float(s) for s in spacing], kind, dtype)


@_distance_maps_op.register_fake
def _distance_maps_fake(masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype) -> Tensor:
    _check(masks, spacing, kind, dtype)
    return masks.new_empty(masks.shape, dtype=dtype)


def distance_maps(masks: Tensor, spacing: Sequence[float], kind: str, dtype: torch.dtype) -> Tensor:
    r"""Signed or unsigned exact distance maps of a stack of masks, one opaque call for the PyTorch tracers.

    Args:
        masks: bool ``(B, *S)``, one mask per leading index (``S`` of 1 or more axes; the masks do not see each
            other).
        spacing: the pixel size along each spatial axis, ``len(S)`` positive floats (distances in these units).
        kind: ``"signed"`` (:math:`\phi`, boundary loss) or ``"unsigned"`` (:math:`d`, Hausdorff-DT loss); see the
            module docstring.
        dtype: ``torch.float32`` or ``torch.float64``, the dtype of the result (computed in float64 either way).

    Returns:
        ``(B, *S)`` maps of ``dtype`` on the device of ``masks``; 0 for an empty or a full mask.

    Raises:
        TypeError: non-bool masks, another dtype.
        ValueError: fewer than 2 dimensions, a spacing of the wrong length or not finite and > 0, an image diagonal
            over 1e150 units (its squared distances would overflow float64), another kind.

    CUDA masks are transformed on the device (no synchronisation); masks on another device not the CPU go through
    the CPU (a synchronising copy there and back).

    Examples:
        >>> import torch
        >>> from seglosses._ops_distance import distance_maps
        >>> distance_maps(torch.tensor([[False, True, True, False]]), [1.0], "signed", torch.float32).tolist()
        [[1.0, 0.0, 0.0, 1.0]]
        >>> distance_maps(torch.tensor([[0, 1, 1, 0, 0]]).bool(), [2.0], "unsigned", torch.float64).tolist()
        [[2.0, 2.0, 2.0, 2.0, 4.0]]

    """
    out: Tensor = _distance_maps_op(masks, spacing, kind, dtype)
    return out
