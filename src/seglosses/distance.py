r"""Exact Euclidean distance maps of segmentation targets, in physical units (boundary and Hausdorff-DT losses).

For one class mask ``m`` (the hard target of class c; binary: the foreground) and ``edt_s(x)`` = for every True
element of ``x`` the distance to the nearest False element (0 on False), with ``spacing`` the size of a pixel
along each spatial axis:

- signed distance ``phi(m) = edt_s(~m) * (~m) - edt_s(erode(m)) * m``: ``erode`` uses the face-connected (cross)
  neighbourhood and the image outside counts as background, so ``phi`` is 0 on the inner boundary ring, negative
  inside and positive outside (:func:`signed_distance`);
- unsigned distance ``d(m) = edt_s(m) + edt_s(~m)``, the distance to the other side of the boundary; here the image
  outside is not background (no boundary on the image border, as MONAI) (:func:`unsigned_distance`).

An empty or a full mask gives 0 everywhere (scipy's transform of an all-True array is not a distance).

The transform is exact, on the CPU in float64, returned as float32: with the native kernels
(``seglosses._native``) one call computes the maps of every image and class of the batch (Felzenszwalb and
Huttenlocher's separable transform, its lines spread over the threads); without them scipy's
``scipy.ndimage.distance_transform_edt`` with ``sampling=``, one call per image and class on the bounding box of the
mask (the reference; the tests pin the two together). Empty and full masks are skipped; the masks, the erosion and
the class selection are vectorised over the batch. The transform is the operator ``seglosses::distance_maps``
(``seglosses._ops_distance``), which the losses call on masks made with tensor operations, so that a loss computing
its maps compiles into one graph (``torch.compile(fullgraph=True)``) and exports (``torch.export``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from seglosses._checks import (
    check_ignore_index,
    check_mode,
    check_num_classes,
    check_option,
    check_spacing,
    check_spacing_form,
    exact_ignore_target,
)
from seglosses._ops_distance import distance_maps
from seglosses._types import Mode

Kind = Literal["signed", "unsigned"]

_INTEGERS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
_WIDENED = (torch.uint16, torch.uint32)  # read as int64

__all__ = ["DistanceMapTransform", "signed_distance", "unsigned_distance"]


def class_masks(
    fn: str,
    target: Tensor,
    *,
    mode: str,
    num_classes: int | None,
    ignore_index: int | None,
) -> np.ndarray:
    """Hard per-class masks ``(N, C, *S)`` (bool, NumPy) of a target; ignored pixels are background everywhere.

    binary: ``(N, 1, *S)`` or ``(N, *S)`` 0/1 (C = 1); multiclass: integer class indices ``(N, *S)`` (needs
    ``num_classes``) or a float/bool one-hot ``(N, C, *S)``; multilabel: ``(N, C, *S)`` 0/1. Soft values raise.
    """
    check_mode(fn, mode)
    check_ignore_index(fn, ignore_index)
    if not isinstance(target, Tensor):
        raise TypeError(f"{fn}: `target` must be a torch.Tensor; got {type(target).__name__}")
    t = target.detach().cpu()
    if t.dtype in _WIDENED:
        t = t.long()  # exact; torch has no order comparison for these (uint16 label images are common)
    elif not (t.dtype == torch.bool or torch.is_floating_point(t) or t.dtype in _INTEGERS):
        raise TypeError(
            f"{fn}: `target` must be a bool, integer (uint8, int8, int16, int32, int64, uint16, uint32) or "
            f"floating-point tensor; got {t.dtype}"
        )
    # widened when its dtype cannot hold ignore_index: torch compares a uint8 target's 255 equal to -1 and an int8
    # target's 1 equal to 257, so those pixels were taken as ignored (the losses refuse them or keep them)
    t = exact_ignore_target(t, ignore_index)
    integer = not (torch.is_floating_point(t) or t.dtype == torch.bool)
    if mode == "multiclass" and integer:
        c = int(check_num_classes(fn, num_classes, mode, required=True) or 0)
        if t.ndim < 2:
            raise ValueError(f"{fn}: `target` of class indices must have shape (N, *S); got {tuple(t.shape)}")
        out_of_range = (t < 0) | (t >= c)
        if ignore_index is not None:
            out_of_range &= t != ignore_index
        if bool(out_of_range.any()):
            bad = int(t[out_of_range][0])
            raise ValueError(
                f"{fn}: `target` class indices must be in [0, {c}) or equal ignore_index={ignore_index}; got {bad}"
            )
        idx = t.numpy()
        classes = np.arange(c).reshape((1, c) + (1,) * (t.ndim - 1))
        return np.asarray(idx[:, None] == classes)  # an ignored pixel (not in [0, C)) is in no class
    if mode == "binary":
        if t.ndim < 2:
            raise ValueError(
                f"{fn}: `target` for mode='binary' must have shape (N, 1, *S) or (N, *S); got {tuple(t.shape)}"
            )
        if not (t.ndim >= 3 and t.shape[1] == 1):
            t = t.unsqueeze(1)
    elif t.ndim < 3:
        raise ValueError(f"{fn}: `target` for mode={mode!r} must have shape (N, C, *S); got {tuple(t.shape)}")
    c = 1 if mode == "binary" else int(t.shape[1])
    if num_classes is not None:
        check_num_classes(fn, num_classes, mode)
        if num_classes != c:
            raise ValueError(f"{fn}: `target` must have C=num_classes={num_classes} channels in dim 1; got {c}")
    ignored = None if ignore_index is None or t.dtype == torch.bool else t == ignore_index
    if t.dtype == torch.bool:
        mask = t
    else:
        hard = (t == 0) | (t == 1)
        if ignored is not None:
            hard |= ignored
        if not bool(hard.all()):
            others = t[~hard].double()
            if bool(torch.isnan(others).any()):
                raise ValueError(
                    f"{fn}: `target` must not contain NaN; got {int(torch.isnan(others).sum())} NaN values"
                )
            raise ValueError(
                f"{fn}: `target` must be hard (values 0 or 1, or ignore_index) to define a distance map; got "
                f"{others.numel()} other values, e.g. {float(others[0]):g}"
            )
        mask = t == 1
        if ignored is not None:
            mask &= ~ignored
    if mode == "multiclass":
        not_one_hot = mask.sum(1) != 1
        if ignore_index is None and bool(not_one_hot.any()):
            raise ValueError(
                f"{fn}: `target` of shape (N, C, *S) for mode='multiclass' must be one-hot (exactly one 1 per "
                f"pixel); got {int(not_one_hot.sum())} pixels whose channels sum to other than 1"
            )
    return np.asarray(mask.numpy())


def _distance(
    fn: str,
    kind: str,
    target: Tensor,
    mode: str,
    num_classes: int | None,
    spacing: float | Sequence[float] | Tensor | None,
    ignore_index: int | None,
) -> Tensor:
    masks = class_masks(fn, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    n, c, *s = masks.shape
    sp = check_spacing(fn, spacing, len(s))
    dist = distance_maps(torch.from_numpy(masks.reshape(n * c, *s)), sp, kind, torch.float32)
    return dist.reshape(masks.shape).to(target.device)


def signed_distance(
    target: Tensor,
    *,
    mode: Mode,
    num_classes: int | None = None,
    spacing: float | Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    r"""Signed distance map of each image and class of a hard target (Kervadec et al.'s boundary loss).

    .. math::

        \phi(m) = \operatorname{edt}_s(\lnot m) \cdot [\lnot m] - \operatorname{edt}_s(\operatorname{erode}(m))
        \cdot [m]

    where :math:`\operatorname{edt}_s(x)` is, for every True element of x, the Euclidean distance in physical units to
    the nearest False element, and ``erode`` uses the face-connected (cross) neighbourhood with the image outside
    counting as background. :math:`\phi` is 0 on the inner boundary ring of the mask, negative inside (minus the
    distance to that ring) and positive outside (the distance to the mask). An empty or full mask gives 0.

    Shapes:
        - binary: target ``(N, 1, *S)`` or ``(N, *S)`` (a target with ``ndim >= 3`` and ``shape[1] == 1`` is read as
          ``(N, 1, *S)``), values 0/1; output ``(N, 1, *S)``.
        - multiclass: integer class indices ``(N, *S)`` with ``num_classes`` = C, or a float/bool one-hot
          ``(N, C, *S)``; output ``(N, C, *S)``.
        - multilabel: ``(N, C, *S)`` 0/1; output ``(N, C, *S)``.

    Args:
        target: a hard target (soft values raise: a distance map needs a mask).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (required, as for the losses).
        num_classes: C for class-index targets (required there: guessing it from the largest index present drops
            the maps of absent classes); optional elsewhere (checked against the target's channels).
        spacing: the pixel size along each spatial axis, in array order (default None: 1 everywhere); one number
            applies to every axis. Distances are in these units.
        ignore_index: target value whose pixels count as background in every class mask (default None).

    Returns:
        float32 maps on the target's device (computed on the CPU: the native batched transform, else scipy).

    Raises:
        ValueError: soft target values, class indices out of range, a one-hot target that is not one-hot, a spacing
            of the wrong length or not positive, bad shapes.
        TypeError: a non-tensor target, a target of another dtype (complex, uint64), a non-numeric spacing.

    Note:
        LIVIAETS boundary-loss ``one_hot2dist`` computes ``edt(~m) * ~m - (edt(m) - 1) * m`` with scipy's EDT: it
        agrees with this map at unit spacing where the nearest outside pixel lies along a grid axis and the mask
        does not touch the image border (scipy's transform does not see the image outside), is wrong for other
        spacings (``edt(m) - 1`` subtracts one unit, not one pixel: inside an axis-aligned box at spacing s ours
        minus theirs is s - 1), gives a class that fills the image ``-(edt(all True) - 1)`` (scipy's transform of
        an all-True array is not a distance; ours is 0), and its data loader truncates the map to integers. Every
        loss that takes a map accepts any map through ``dist_map``.

    References:
        H. Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019 / MedIA 2021.

    Examples:
        A 1x4 row with the mask on the two middle pixels: both are on the boundary ring (0), the outer pixels are
        1 from the mask.

        >>> import torch
        >>> from seglosses.distance import signed_distance
        >>> signed_distance(torch.tensor([[[[0, 1, 1, 0]]]]), mode="binary").tolist()
        [[[[1.0, 0.0, 0.0, 1.0]]]]

        One spatial axis, five mask pixels 2 units wide: the ring is the two ends (the image outside is background),
        the inner pixels are 2 and 4 from it.

        >>> signed_distance(torch.tensor([[[1, 1, 1, 1, 1, 0]]]), mode="binary", spacing=2).tolist()
        [[[0.0, -2.0, -4.0, -2.0, 0.0, 2.0]]]

    """
    return _distance("signed_distance", "signed", target, mode, num_classes, spacing, ignore_index)


def unsigned_distance(
    target: Tensor,
    *,
    mode: Mode,
    num_classes: int | None = None,
    spacing: float | Sequence[float] | Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    r"""Unsigned distance map (to the other side of the boundary) of each image and class (HD-DT loss).

    .. math::

        d(m) = \operatorname{edt}_s(m) + \operatorname{edt}_s(\lnot m)

    with :math:`\operatorname{edt}_s` as in :func:`signed_distance`: inside the mask the distance to the nearest
    background pixel, outside it the distance to the nearest mask pixel. The image outside is not background (no
    boundary on the image border, as MONAI's ``HausdorffDTLoss``). An empty or full mask gives 0.

    Shapes:
        As :func:`signed_distance`.

    Args:
        target: a hard target.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: C for class-index targets (required there).
        spacing: the pixel size along each spatial axis (default None: 1).
        ignore_index: target value whose pixels count as background (default None).

    Returns:
        float32 maps on the target's device.

    Raises:
        ValueError: see :func:`signed_distance`.
        TypeError: see :func:`signed_distance`.

    Note:
        MONAI ``HausdorffDTLoss.distance_field`` computes the same map per image (``edt(fg) + edt(bg)`` of the
        channel thresholded at 0.5, 0 for an empty or full mask) at unit spacing; it has no spacing.

    References:
        D. Karimi, S. E. Salcudean, "Reducing the Hausdorff distance in medical image segmentation with
        convolutional neural networks", IEEE TMI 2019.

    Examples:
        >>> import torch
        >>> from seglosses.distance import unsigned_distance
        >>> unsigned_distance(torch.tensor([[[[0, 1, 1, 0, 0]]]]), mode="binary").tolist()
        [[[[1.0, 1.0, 1.0, 1.0, 2.0]]]]

    """
    return _distance("unsigned_distance", "unsigned", target, mode, num_classes, spacing, ignore_index)


class DistanceMapTransform:
    """A picklable data-loader transform that adds the distance map of a sample's mask to the sample.

    The sample is one image (no batch dim): a dict (the map is stored under ``key``, the mask read from
    ``mask_key``) or a tuple/list ``(image, mask, ...)`` (the map is appended). The map has shape ``(C, *S)``
    (``(1, *S)`` in binary mode), so the default collation gives the ``(N, C, *S)`` maps the losses take as
    ``dist_map``: equal to the maps a loss computes itself, without computing them in every step.

    Args:
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        kind: ``"signed"`` (:func:`signed_distance`, for the boundary loss; default) or ``"unsigned"``
            (:func:`unsigned_distance`, the target's map of the Hausdorff-DT loss).
        num_classes: C for class-index masks ``(*S)``.
        spacing: pixel size per spatial axis (default None: 1).
        ignore_index: mask value counted as background (default None).
        mask_key: the dict key of the mask (default ``"mask"``).
        key: the dict key the map is stored under (default ``"dist_map"``).

    Examples:
        >>> import torch
        >>> from seglosses.distance import DistanceMapTransform
        >>> t = DistanceMapTransform(mode="multiclass", num_classes=2)
        >>> sample = t({"image": torch.zeros(1, 1, 3), "mask": torch.tensor([[0, 1, 1]])})
        >>> sample["dist_map"].tolist()  # class 0 is pixel 0 (its ring), class 1 pixels 1-2 (both on its ring)
        [[[0.0, 1.0, 2.0]], [[1.0, 0.0, 0.0]]]

    """

    def __init__(
        self,
        *,
        mode: Mode,
        kind: Kind = "signed",
        num_classes: int | None = None,
        spacing: float | Sequence[float] | Tensor | None = None,
        ignore_index: int | None = None,
        mask_key: str = "mask",
        key: str = "dist_map",
    ) -> None:
        fn = "DistanceMapTransform"
        check_mode(fn, mode)
        check_option(fn, "kind", kind, ("signed", "unsigned"))
        check_ignore_index(fn, ignore_index)
        if num_classes is not None:
            check_num_classes(fn, num_classes, mode)
        self.mode = mode
        self.kind = kind
        self.num_classes = num_classes
        self.spacing = check_spacing_form(fn, spacing)  # its length is checked against each mask
        self.ignore_index = ignore_index
        self.mask_key = mask_key
        self.key = key

    def map(self, mask: Tensor) -> Tensor:
        """The ``(C, *S)`` map of one mask (``(*S)`` indices, ``(C, *S)`` one-hot/multilabel, binary either form)."""
        if isinstance(mask, np.ndarray):
            mask = np.ascontiguousarray(mask)  # a flipped or rotated view has negative strides torch cannot take
        mask = torch.as_tensor(mask)
        batch = mask.unsqueeze(0)
        if self.mode == "binary" and mask.ndim >= 2 and mask.shape[0] == 1:
            batch = mask.unsqueeze(0)  # (1, 1, *S)
        elif self.mode == "binary":
            batch = mask.unsqueeze(0).unsqueeze(0)
        fn = signed_distance if self.kind == "signed" else unsigned_distance
        out = fn(
            batch, mode=self.mode, num_classes=self.num_classes, spacing=self.spacing, ignore_index=self.ignore_index
        )
        return out[0]

    def __call__(self, sample: Any) -> Any:
        """The sample with the map added (a new dict or tuple; the input is not modified)."""
        if isinstance(sample, Mapping):
            out = dict(sample)
            out[self.key] = self.map(sample[self.mask_key])
            return out
        if isinstance(sample, (tuple, list)) and len(sample) >= 2:
            return (*sample, self.map(sample[1]))
        raise TypeError(
            f"DistanceMapTransform: `sample` must be a dict with key {self.mask_key!r} or a tuple (image, mask, ...); "
            f"got {type(sample).__name__}"
        )

    def __repr__(self) -> str:
        """The arguments."""
        return (
            f"DistanceMapTransform(mode={self.mode!r}, kind={self.kind!r}, num_classes={self.num_classes!r}, "
            f"spacing={self.spacing!r}, ignore_index={self.ignore_index!r})"
        )
