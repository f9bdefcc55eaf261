r"""Distance-map losses: the boundary loss (Kervadec et al.) and the Hausdorff-DT loss (Karimi & Salcudean).

Both are per-pixel losses weighted by constant distance maps (:mod:`seglosses.distance`): per class, the mean over
the class's kept pixels (over the batch, or per image with ``per_image``), then the class reduction of every
region loss. A map not given is computed from the target where it lies (the exact EDT of
:mod:`seglosses.distance`: on the CPU one native call over the batch, on CUDA on the device without a host round
trip); precomputing the target's map in the data loader (:class:`seglosses.distance.DistanceMapTransform`) still
saves that work in every step. The Hausdorff-DT loss always computes the map of its thresholded prediction this
way. The maps are computed by one call of the operator ``seglosses::distance_maps``
(:mod:`seglosses._ops_distance`) on masks made with tensor operations (class comparison, thresholding), so both
losses compile into one graph (``torch.compile(fullgraph=True)``) and export (``torch.export``). The check that a
dense target is hard (0/1) is a value check (:func:`seglosses.set_value_checks`: CPU targets by default, never while
``torch.compile`` traces); where it does not run, values other than 1 count as background. On CUDA nothing
synchronises with the host.

Cost of the maps computed inside (fwd+bwd, float32, multiclass, 4 classes, the idle 2-core VM, ``seglosses bench``,
``benchmarks/RESULTS_catalogue.md``): a boundary-loss step took 68 ms against 12 ms with the map given on
(8, 4, 256, 256) and 335 ms against 93 ms on (2, 4, 96, 96, 96); a Hausdorff-DT step (whose prediction map is
computed in every call anyway) 139 ms against 73 ms and 650 ms against 401 ms (MONAI's HausdorffDTLoss, which
computes both maps in every call: 683 ms and 4234 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from seglosses._checks import (
    FLAG,
    NONNEGATIVE,
    check_classes_left,
    check_dist_map,
    check_hparams,
    check_no_class_weights_binary,
    check_reduction,
    check_spacing,
    check_weights_vector,
    hyperparameters,
    values_checked,
)
from seglosses._distributed import sync_sums
from seglosses._ops_distance import distance_maps
from seglosses._prepare import Prepared, prepare
from seglosses._reduce import reduce_classes
from seglosses._types import Mode, Reduction

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

Weights = Sequence[float] | Tensor | None
Spacing = float | Sequence[float] | Tensor | None


def spatial_shape(prep: Prepared) -> tuple[int, ...]:
    """The spatial shape ``S`` of a prepared call (binary ``(N, 1, *S)`` when dim 1 has size 1, else ``(N, *S)``)."""
    shape = prep.shape
    if prep.mode == "binary" and not (len(shape) >= 3 and shape[1] == 1):
        return shape[1:]
    return shape[2:]


def first_class(mode: str, include_background: bool) -> int:
    """Index of the first class a per-class loss keeps (1 when channel 0 is dropped)."""
    return 0 if mode == "binary" or include_background else 1


def masks_to_maps(masks: Tensor, prep: Prepared, kind: str, spacing: tuple[float, ...]) -> Tensor:
    """Distance maps ``(N, K, M)`` (dtype and device of the input) of bool masks ``(N, K, M)`` on any device.

    One call of the operator ``seglosses::distance_maps`` (float64 maps for float64 input, else float32), opaque to
    ``torch.compile`` and ``torch.export``: the transform runs where the masks are (CPU or CUDA).
    """
    n, k, m = masks.shape
    if masks.numel() == 0:  # no image or no pixel: no map to compute
        return masks.new_zeros((n, k, m), dtype=prep.logits.dtype)
    dtype = prep.dtype
    dist = distance_maps(masks.detach().reshape(n * k, *spatial_shape(prep)), spacing, kind, dtype)
    return dist.reshape(n, k, m).to(device=prep.logits.device, dtype=prep.logits.dtype)


def target_masks(fn: str, prep: Prepared, start: int) -> Tensor:
    """Hard masks ``(N, C - start, M)`` of the target's classes ``start..C-1``; ignored pixels are background.

    Class indices give ``t == c`` (a bool tensor, a quarter of the float input's size); dense targets must be hard.
    """
    c = prep.num_classes
    if prep.form == "index":
        target, _ = prep.safe_index()  # a bad index (not checked on the host) is class 0 here, its image NaN
        classes = torch.arange(start, c, device=target.device).view(1, -1, 1)
        masks = target.unsqueeze(1) == classes
        if prep.valid is not None:
            masks &= prep.valid > 0
        return masks
    g = prep.target[:, start:]
    soft = (g != 0) & (g != 1)
    # a check of the values, where value checks apply (the CPU by default; never while torch.compile traces): on a
    # GPU it would synchronise, and soft values then count as background (only 1 is foreground)
    if values_checked(g) and bool(soft.any()):
        raise ValueError(
            f"{fn}: `target` must be hard (values 0 or 1) to compute its distance map; got {int(soft.sum())} soft "
            "values (pass `dist_map` computed from a hard mask)"
        )
    return g == 1


def flat_dist_map(fn: str, dist_map: object, prep: Prepared, *, unsigned: bool = False) -> Tensor:
    """A given ``dist_map`` ``(N, C, *S)`` (binary: ``(N, 1, *S)`` or the input's shape), checked, as ``(N, C, M)``.

    Checked by :func:`seglosses._checks.check_dist_map`; where value checks apply (:func:`values_checked`: CPU maps
    by default, never while ``torch.compile`` traces) its values must be finite, and >= 0 for an ``unsigned`` map
    (a signed map passed by mistake would otherwise be raised to ``alpha`` silently, or give NaN). Returned
    detached, in the input's dtype.
    """
    n, c, m = prep.logits.shape
    checked = check_dist_map(fn, dist_map, (n, c, *spatial_shape(prep)), prep.logits.device, also=prep.shape)
    if checked.numel() and values_checked(checked):
        bad = ~torch.isfinite(checked)
        if unsigned:
            bad |= checked < 0
        if bool(bad.any()):
            lo, hi = torch.aminmax(checked.detach())
            need = "finite values >= 0 (the target's unsigned distance map)" if unsigned else "finite values"
            raise ValueError(
                f"{fn}: `dist_map` must hold {need}; got {int(bad.sum())} other values (min={lo.item():g}, "
                f"max={hi.item():g})"
            )
    return checked.detach().reshape(n, c, m).to(prep.logits.dtype)


def class_pixel_mean(values: Tensor, prep: Prepared, start: int, per_image: bool) -> Tensor:
    """Per-class mean over kept pixels of ``values`` ``(N, K, M)`` (classes ``start..``), padded back to C classes.

    Returns ``(C,)`` (batch-pooled; with ``prep.sync`` the sums and counts of every rank) or ``(N, C)``; a class
    with no kept pixel gives 0; an image holding a bad class index (not checked on the host) NaN. Dropped leading
    classes are 0 columns (``reduce_classes`` drops them again).
    """
    n, k, m = values.shape
    if prep.valid is None:
        sums = values.sum(-1)
        counts = torch.full_like(sums, m)  # not float(m): a dynamic size stays symbolic under torch.export
    else:
        valid = prep.valid if prep.valid.shape[1] == 1 else prep.valid[:, start:]
        sums = torch.where(valid > 0, values, torch.zeros_like(values)).sum(-1)
        counts = valid.sum(-1).expand(n, k).to(sums.dtype)
    poison = prep.index_poison(sums.dtype)  # an image with a class index outside [0, C) (counted on the device): NaN
    if poison is not None:
        sums = sums + poison.view(-1, 1)
    if not per_image:
        sums, counts = sums.sum(0), counts.sum(0)
        if prep.sync is not None:
            sums, counts = sync_sums([sums, counts], prep.sync)
    ok = counts > 0
    mean = torch.where(ok, sums / torch.where(ok, counts, torch.ones_like(counts)), torch.zeros_like(sums))
    if start:
        mean = torch.cat([torch.zeros_like(mean[..., :start]), mean], -1)
    return mean


def _prepare_distance_loss(
    fn: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    from_logits: bool,
    spacing: Spacing,
    include_background: bool,
    class_weights: Weights,
    ignore_index: int | None,
    per_image: bool,
    reduction: str,
    sync_stats: bool,
    process_group: ProcessGroup | None,
) -> tuple[Prepared, Tensor | None, tuple[float, ...], int]:
    check_hparams(fn, include_background=include_background, per_image=per_image, class_weights=class_weights)
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
    sp = check_spacing(fn, spacing, len(spatial_shape(prep)))
    start = first_class(mode, include_background)
    if start:
        check_classes_left(fn, prep.num_classes, include_background)
    return prep, weights, sp, start


@hyperparameters()
def boundary_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    dist_map: Tensor | None = None,
    spacing: Spacing = None,
    include_background: bool = False,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Boundary loss (Kervadec et al. 2019): the probabilities integrated against the target's signed distance.

    .. math::

        L_c = \frac{1}{|K_c|} \sum_{i \in K_c} p_{c,i}\, \phi(g_c)_i, \qquad L = \operatorname{reduce}_c L_c

    with :math:`\phi` the signed distance map of the hard target of class c (:func:`seglosses.distance.signed_distance`:
    0 on the inner boundary ring, minus the distance to it inside, the distance to the mask outside, in physical units;
    0 for an empty or full mask) and :math:`K_c` the kept pixels (of the batch, or of each image with ``per_image``).
    The loss is smallest when the probability mass sits inside the object and can be negative. Use it with a region
    loss: :func:`seglosses.schedules.rebalance` gives the paper's weight :math:`\alpha` of
    ``alpha * region + (1 - alpha) * boundary``.

    Shapes:
        - input as :func:`seglosses.functional.dice_loss`; ``dist_map`` ``(N, C, *S)`` (binary ``(N, 1, *S)`` or
          the input's shape).
        - output: ``()`` for ``"mean"``/``"sum"``; ``"none"``: ``(K,)`` of the kept classes, or ``(N, K)`` with
          ``per_image``.

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: as :func:`seglosses.functional.dice_loss`; hard when ``dist_map`` is None.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        dist_map: the signed maps of the target (constants; no gradient), e.g. from
            :class:`seglosses.distance.DistanceMapTransform` in the data loader. Default None: computed from the
            target in every call, on its device (ignored pixels count as background).
        spacing: the pixel size per spatial axis for the computed map (default None: 1). Unused with ``dist_map``.
        include_background: keep channel 0 (default False, as the paper: the background's map is the negative of
            the foreground's and only doubles its weight; binary mode's one channel is always kept).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value whose pixels count nowhere (default None); background in the computed map.
        per_image: the mean over each image's kept pixels, then over images (default False: over the batch).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum each class's sum and count of kept pixels over the ranks of
            ``process_group`` before the division (the loss of the concatenated batch; input gradients K times the
            single-process ones, so DDP's mean gives the single-process update). Default False (no cost).
        process_group: the group to sum over (default None: the default group). Used only with ``sync_stats``.

    Returns:
        The loss, see Shapes.

    Raises:
        ValueError: bad shapes or values (see :func:`seglosses.functional.dice_loss`), a ``dist_map`` of the wrong
            shape or device, a soft target without ``dist_map``, a bad ``spacing``.
        TypeError: non-floating input or ``dist_map``, a floating index target.

    Note:
        LIVIAETS boundary-loss ``SurfaceLoss(idc=[1, ..., C-1])(probs, dist_maps)`` is
        ``(probs[:, idc] * dist_maps[:, idc]).mean()`` on softmax outputs: with its maps passed as ``dist_map``,
        ``from_logits=False`` and the default ``include_background=False`` (``idc`` = the classes from 1) it
        equals ours (every class has the same pixel count, so its global mean is our mean over classes of each
        class's mean). Its maps (``one_hot2dist``) differ from ours: ``edt(m) - 1`` inside instead of the distance
        to the inner ring, which agrees only at unit spacing where the nearest outside pixel lies along a grid
        axis and the mask does not touch the image border (scipy's transform does not see the image outside); a
        class filling the image gets ``-(edt(all True) - 1)``, not a distance; and its data loader truncates the
        map to integers. MONAI 1.6 has no boundary loss; the ``BoundaryLoss`` added to MONAI after 1.6 builds the
        same map as ``one_hot2dist`` (``edt(m) - 1`` inside, 0 for an empty or full mask) and averages over pixels,
        images and kept classes, so ``BoundaryLoss(softmax=True, to_onehot_y=True, include_background=b)`` equals
        ours with its map passed as ``dist_map`` and ``include_background=b`` (with or without its ``batch``). The
        paper's schedule ``alpha * region + (1 - alpha) * boundary`` is :func:`seglosses.schedules.rebalance`,
        applied by the user's training loop.

    References:
        H. Kervadec, J. Bouchtiba, C. Desrosiers, E. Granger, J. Dolz, I. Ben Ayed, "Boundary loss for highly
        unbalanced segmentation", MIDL 2019, eq. 5; Medical Image Analysis 67 (2021).

    Examples:
        A 1x4 binary image with the mask on the middle two pixels: phi = (1, 0, 0, 1). Probabilities
        (0.5, 1, 1, 0) give (0.5 + 0 + 0 + 0) / 4 = 0.125.

        >>> import torch
        >>> from seglosses.functional import boundary_loss
        >>> p = torch.tensor([[[[0.5, 1.0, 1.0, 0.0]]]])
        >>> g = torch.tensor([[[[0.0, 1.0, 1.0, 0.0]]]])
        >>> boundary_loss(p, g, mode="binary", from_logits=False).item()
        0.125

    """
    fn = "boundary_loss"
    prep, weights, sp, start = _prepare_distance_loss(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        spacing=spacing,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    if dist_map is None:
        phi = masks_to_maps(target_masks(fn, prep, start), prep, "signed", sp)
    else:
        phi = flat_dist_map(fn, dist_map, prep)[:, start:]
    values = prep.prob[:, start:] * phi
    per_class = class_pixel_mean(values, prep, start, per_image)
    return reduce_classes(
        per_class,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=prep.sync if per_image else None,
    )


@hyperparameters(alpha=NONNEGATIVE, log_loss=FLAG)
def hausdorff_dt_loss(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    from_logits: bool = True,
    dist_map: Tensor | None = None,
    alpha: float = 2.0,
    spacing: Spacing = None,
    log_loss: bool = False,
    include_background: bool = False,
    class_weights: Weights = None,
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: Reduction = "mean",
    sync_stats: bool = False,
    process_group: ProcessGroup | None = None,
) -> Tensor:
    r"""Hausdorff-distance loss from distance transforms (HD-DT, Karimi & Salcudean 2019).

    .. math::

        L_c = \frac{1}{|K_c|} \sum_{i \in K_c} (p_{c,i} - g_{c,i})^2 \left(d(g_c)_i^{\alpha} + d(q_c)_i^{\alpha}\right),
        \qquad q_c = [p_c > 0.5], \qquad L = \operatorname{reduce}_c L_c \;\;(\text{or } \log(1 + L))

    with :math:`d` the unsigned distance map (:func:`seglosses.distance.unsigned_distance`: the distance to the
    other side of the boundary, the image outside not background, 0 for an empty or full mask), per image and
    class, in physical units. :math:`q_c` is detached: only :math:`(p - g)^2` carries the gradient. The errors far
    from either boundary weigh most, which approximates the Hausdorff distance.

    Shapes:
        As :func:`boundary_loss` (``dist_map`` is the target's unsigned map).

    Args:
        input: logits (``from_logits=True``) or probabilities.
        target: as :func:`seglosses.functional.dice_loss` (soft values enter :math:`(p - g)^2`; hard when
            ``dist_map`` is None).
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        from_logits: apply sigmoid/softmax inside (default True).
        dist_map: the unsigned maps of the target (constants), e.g. from
            :class:`seglosses.distance.DistanceMapTransform` (``kind="unsigned"``). Default None: computed from the
            target in every call, on its device. The prediction's map is always computed in the call (it changes
            with every step).
        alpha: the exponent of the distances, >= 0 (default 2.0, the paper's best and MONAI's default).
        spacing: the pixel size per spatial axis (default None: 1), for the maps computed in the call.
        log_loss: return :math:`\log(1 + L)` of the reduced value (elementwise for ``"none"``), as MONAI's
            ``LogHausdorffDTLoss`` (default False).
        include_background: keep channel 0 in multiclass/multilabel mode (default False, as MONAI; binary mode keeps
            its one channel, so the loss is never all zero).
        class_weights: per-class weights for the weighted mean (default None). Not allowed in binary mode.
        ignore_index: target value whose pixels count nowhere (default None); background in both maps.
        per_image: the mean over each image's kept pixels, then over images (default False: over the batch).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        sync_stats: under ``torch.distributed``, sum each class's sum and count of kept pixels over the ranks
            before the division (see :func:`boundary_loss`). Default False.
        process_group: the group to sum over (default None). Used only with ``sync_stats``.

    Returns:
        The loss, see Shapes.

    Raises:
        ValueError: see :func:`boundary_loss`; a negative ``alpha``.
        TypeError: see :func:`boundary_loss`.

    Note:
        MONAI ``HausdorffDTLoss(alpha=a, include_background=b, batch=k)`` with ``sigmoid=True`` (binary and
        multilabel logits) or ``softmax=True, to_onehot_y=True`` (multiclass) computes the same maps at unit
        spacing (``edt(fg) + edt(bg)`` of each image's channel thresholded at 0.5, 0 for an empty or full mask) and
        the same per-pixel terms. Its default ``batch=False`` averages each image's pixels per class, then the
        images and classes: ours with ``per_image=True``; ``batch=True`` pools the images' pixels per class: ours
        with the default ``per_image=False``; ``reduction="none"`` gives ``(N, K, 1, ...)`` where ours gives
        ``(N, K)``. ``LogHausdorffDTLoss`` is ``log_loss=True``. In binary mode (one channel) MONAI ignores
        ``include_background=False``, as we do. MONAI has no ``spacing`` and no ``ignore_index``, and computes
        four transforms per image and class in every call (ours: two, with the target's map passed as
        ``dist_map``). Karimi & Salcudean's one-sided and erosion-based variants are not offered.

    References:
        D. Karimi, S. E. Salcudean, "Reducing the Hausdorff distance in medical image segmentation with
        convolutional neural networks", IEEE Transactions on Medical Imaging 39(2), 2019, eq. 8.

    Examples:
        A 1x4 binary image with the mask on the middle two pixels: d(g) = (1, 1, 1, 1). With probabilities
        (0, 1, 1, 1) the prediction's mask is the last three pixels, d(q) = (1, 1, 2, 3) (the image outside is not
        background); only the last pixel is wrong: (0 - 1)^2 * (1^2 + 3^2) / 4 = 2.5.

        >>> import torch
        >>> from seglosses.functional import hausdorff_dt_loss
        >>> p = torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]])
        >>> g = torch.tensor([[[[0.0, 1.0, 1.0, 0.0]]]])
        >>> hausdorff_dt_loss(p, g, mode="binary", from_logits=False).item()
        2.5

    """
    fn = "hausdorff_dt_loss"
    check_hparams(fn, alpha=alpha, log_loss=log_loss)
    prep, weights, sp, start = _prepare_distance_loss(
        fn,
        input,
        target,
        mode=mode,
        from_logits=from_logits,
        spacing=spacing,
        include_background=include_background,
        class_weights=class_weights,
        ignore_index=ignore_index,
        per_image=per_image,
        reduction=reduction,
        sync_stats=sync_stats,
        process_group=process_group,
    )
    p = prep.prob[:, start:]
    if dist_map is None:
        d_g = masks_to_maps(target_masks(fn, prep, start), prep, "unsigned", sp)
    else:
        d_g = flat_dist_map(fn, dist_map, prep, unsigned=True)[:, start:]
    q = p.detach() > 0.5
    if prep.valid is not None:
        q &= prep.valid[:, start:] > 0 if prep.valid.shape[1] > 1 else prep.valid > 0
    d_q = masks_to_maps(q, prep, "unsigned", sp)
    if prep.form == "index":  # p - g without a one-hot: subtract 1 at each pixel's own class (if kept)
        t = prep.safe_index()[0].unsqueeze(1) - start
        own = t >= 0
        diff = p.scatter_add(1, t.clamp_min(0), -own.to(p.dtype))
    else:
        diff = p - prep.target[:, start:]
    values = diff.square() * (d_g.pow(alpha) + d_q.pow(alpha))
    per_class = class_pixel_mean(values, prep, start, per_image)
    loss = reduce_classes(
        per_class,
        fn=fn,
        mode=mode,
        include_background=include_background,
        class_weights=weights,
        reduction=reduction,
        sync=prep.sync if per_image else None,
    )
    return torch.log1p(loss) if log_loss else loss
