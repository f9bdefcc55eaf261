r"""Hard-prediction metrics: :func:`confusion` and one function per metric.

Every metric is one formula over the confusion counts ``(tp, fp, fn, tn)`` of :func:`confusion`, computed once by
the shared statistics core (``seglosses._stats.hard_stats``), then averaged over classes and images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor

from seglosses._checks import check_bool
from seglosses._reduce import select_classes
from seglosses._types import Average, Mode
from seglosses.metrics import _core

__all__ = ["accuracy", "confusion", "dice", "iou", "precision", "recall", "specificity"]


_F = TypeVar("_F", bound=Callable[..., Any])

#: The arguments, return value and errors shared by :func:`dice`, :func:`iou`, :func:`precision`, :func:`recall`,
#: :func:`specificity` and :func:`accuracy`, written once and put into each docstring by :func:`_shared_doc`.
_METRIC_ARGS = """Args:
        input: scores ``(N, C, *S)`` (multiclass: argmax over C, ties to the lowest index; ``from_logits`` and
            ``threshold`` play no part), probabilities (binary ``(N, 1, *S)`` or ``(N, *S)``, multilabel
            ``(N, C, *S)``: positive when ``p > threshold``), logits with ``from_logits=True`` (positive when
            ``sigmoid(x) > threshold``), or hard labels of an integer/bool dtype: 0/1 maps of those shapes, or class
            indices ``(N, *S)`` in multiclass mode (then ``num_classes`` is required).
        target: class indices ``(N, *S)`` or a one-hot ``(N, C, *S)`` (multiclass); 0/1 of the input's shape
            (binary, multilabel). Elements equal to ``ignore_index`` are left out.
        mode: ``"binary" | "multiclass" | "multilabel"`` (required: the shapes alone are ambiguous).
        average: ``"none"``: per class ``(C_kept,)``; ``"macro"`` (default, the usual "mean Dice/IoU"): the mean over
            the kept classes, NaN values left out (all NaN gives NaN); ``"micro"``: the formula on the counts summed
            over the kept classes.
        per_image: False (default): counts of the whole batch. True: each image's value first (with ``average``
            applied per image), then the mean over the images whose value is not NaN (summed in fixed point to
            2**-32, so the mean does not depend on how the images are batched).
        ignore_index: target value whose elements count nowhere (pixels for class indices, elements for 0/1
            targets). Default None.
        include_background: False drops class 0 (multiclass, multilabel). Binary mode has one class, the
            foreground, which is always kept (as in the losses). Default True.
        zero_division: value where the denominator is 0: ``"nan"`` (default: undefined, left out of macro and image
            means) or a finite number (magnitude below 2**31), which takes its place (``0``, ``1``, or a marker
            such as torchmetrics' ``-1`` for an absent class). A number is averaged like any other value: a
            negative placeholder makes a macro (or per-image) mean meaningless unless the classes that got it are
            excluded, so average with ``"nan"`` and use a marker only with ``average="none"``.
        threshold: probability threshold for binary/multilabel scores, default 0.5 (as torchmetrics). Probabilities
            are compared with it in their own dtype, as torchmetrics and NumPy do (float32 ``0.3`` is not above
            ``threshold=0.3``); logits exactly as ``sigmoid(x) > threshold``.
        from_logits: binary/multilabel ``input`` holds logits; default False (metrics usually see probabilities;
            values outside [0, 1] then raise instead of being guessed to be logits).
        num_classes: C; required for multiclass class-index input, else optional and checked against the input.

    Returns:
        The metric, float64: ``()``, or ``(C_kept,)`` with ``average="none"``.

    Raises:
        ValueError: unknown ``mode``/``average``, bad shapes, class indices out of range, soft or NaN targets,
            ``num_classes`` missing or not matching the input, ``threshold`` out of [0, 1], ``zero_division``
            neither ``"nan"`` nor a finite number.
        TypeError: non-tensor input, complex dtypes, float class indices, non-bool flags."""


def _shared_doc(fn: _F) -> _F:
    """Put :data:`_METRIC_ARGS` in place of ``{METRIC_ARGS}`` in ``fn``'s docstring."""
    fn.__doc__ = (fn.__doc__ or "").replace("{METRIC_ARGS}", _METRIC_ARGS)
    return fn


def confusion(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    threshold: float = 0.5,
    from_logits: bool = False,
    ignore_index: int | None = None,
    per_image: bool = False,
    include_background: bool = True,
    num_classes: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Confusion counts ``(tp, fp, fn, tn)`` of hard predictions, per class.

    .. math::
        TP_c = \#\{\hat y = c,\ y = c\}, \quad FP_c = \#\{\hat y = c,\ y \ne c\}, \quad
        FN_c = \#\{\hat y \ne c,\ y = c\}, \quad TN_c = \#\{\hat y \ne c,\ y \ne c\}

    over the kept (not ignored) elements; binary and multilabel count each channel as its own 0/1 problem (binary
    has C = 1, the foreground). Per image ``TP_c + FP_c + FN_c + TN_c`` is the number of kept pixels. With
    ``include_background=False`` the counts of class 0 are left out of the output; the other classes' counts do not
    change (a background pixel predicted as class 1 is still an FP of class 1).

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: four int64 tensors ``(C_kept,)``, or ``(N, C_kept)`` with ``per_image=True`` (``C_kept = C - 1``
          with ``include_background=False`` in multiclass/multilabel mode, else C; binary: 1).

    Args:
        input: scores ``(N, C, *S)`` (multiclass: argmax over C, ties to the lowest index; ``from_logits`` and
            ``threshold`` play no part), probabilities (binary ``(N, 1, *S)`` or ``(N, *S)``, multilabel
            ``(N, C, *S)``: positive when ``p > threshold``), logits with ``from_logits=True`` (positive when
            ``sigmoid(x) > threshold``), or hard labels of an integer/bool dtype: 0/1 maps of those shapes, or class
            indices ``(N, *S)`` in multiclass mode (then ``num_classes`` is required).
        target: class indices ``(N, *S)`` or a one-hot ``(N, C, *S)`` (multiclass); 0/1 of the input's shape
            (binary, multilabel). Elements equal to ``ignore_index`` are left out.
        mode: ``"binary" | "multiclass" | "multilabel"`` (required: the shapes alone are ambiguous).
        threshold: probability threshold for binary/multilabel scores, default 0.5 (as torchmetrics). Probabilities
            are compared with it in their own dtype, as torchmetrics and NumPy do (float32 ``0.3`` is not above
            ``threshold=0.3``); logits exactly as ``sigmoid(x) > threshold``.
        from_logits: binary/multilabel ``input`` holds logits; default False (metrics usually see probabilities;
            values outside [0, 1] then raise instead of being guessed to be logits).
            The comparison is ``x > log(t / (1 - t))``, the same as ``sigmoid(x) > t`` without the sigmoid (the
            logit taken to the largest value of the input's dtype not above it, so no rounding moves a boundary
            value across: torchmetrics' float32 sigmoid can).
        ignore_index: target value whose elements count nowhere (pixels for class indices, elements for 0/1
            targets). Default None.
        per_image: keep the batch dimension (default False: counts summed over the batch).
        include_background: False drops class 0 (multiclass, multilabel), as in every metric and loss. Binary mode
            has one class, the foreground, which is always kept. Default True (every class, as torchmetrics'
            ``stat_scores``).
        num_classes: C; required for multiclass class-index input, else optional and checked against the input.

    Returns:
        ``(tp, fp, fn, tn)``, int64.

    Raises:
        ValueError: unknown ``mode``/``average``, bad shapes, class indices out of range, soft or NaN targets,
            ``num_classes`` missing or not matching the input, ``threshold`` out of [0, 1],
            ``include_background=False`` with a single class.
        TypeError: non-tensor input, complex dtypes, float class indices, non-bool flags.

    Note:
        MONAI: ``monai.metrics.get_confusion_matrix(y_pred, y, include_background)`` (one-hot inputs, counts per
        image) matches ``per_image=True`` with the same ``include_background``; its last axis holds
        ``[tp, fp, tn, fn]``. MONAI's ``ignore_index`` differs: inside [0, C) it zeroes that channel (its pixels stay,
        counted for the other classes), outside it drops the pixels whose one-hot label is all zero; ours is reached
        with a one-hot ``y`` that is all zero on the ignored pixels and ``ignore_index`` outside [0, C).
        torchmetrics: ``classification.multiclass_stat_scores(preds, target, num_classes, average=None)`` returns
        ``[tp, fp, tn, fn, support]`` per class (note the order), ``multidim_average="samplewise"`` being
        ``per_image=True``; ``binary_stat_scores``/``multilabel_stat_scores`` likewise. torchmetrics guesses
        logits from values outside [0, 1]; here ``from_logits`` says so.

    Examples:
        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``:

        >>> import torch
        >>> from seglosses.metrics import confusion
        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> tp, fp, fn, tn = confusion(pred, target, mode="multiclass", num_classes=3)
        >>> tp, fp, fn, tn
        (tensor([1, 1, 1]), tensor([0, 0, 1]), tensor([0, 1, 0]), tensor([3, 2, 2]))

        Binary probabilities, threshold 0.5 (positive when ``p > 0.5``):

        >>> confusion(torch.tensor([[[0.9, 0.5], [0.7, 0.1]]]), torch.tensor([[[1, 0], [0, 0]]]), mode="binary")
        (tensor([1]), tensor([1]), tensor([0]), tensor([2]))

        Without the background (class 0), the first example keeps classes 1 and 2:

        >>> confusion(pred, target, mode="multiclass", num_classes=3, include_background=False)
        (tensor([1, 1]), tensor([0, 1]), tensor([1, 0]), tensor([2, 2]))

    """
    fn = "confusion"
    t, c = _core.check_options(
        fn,
        mode=mode,
        threshold=threshold,
        from_logits=from_logits,
        ignore_index=ignore_index,
        per_image=per_image,
        num_classes=num_classes,
    )
    check_bool(fn, "include_background", include_background)
    stats = _core.counts(
        fn,
        input,
        target,
        mode=mode,
        threshold=t,
        from_logits=from_logits,
        ignore_index=ignore_index,
        per_image=per_image,
        num_classes=c,
        include_background=include_background,
    )
    tp, fp, fn_, tn = (select_classes(s, mode=mode, include_background=include_background, fn=fn) for s in stats)
    return tp, fp, fn_, tn


def _metric(
    metric: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    average: str,
    per_image: bool,
    ignore_index: int | None,
    include_background: bool,
    zero_division: float | str,
    threshold: float,
    from_logits: bool,
    num_classes: int | None,
) -> Tensor:
    """Check, count, apply the formula of ``metric``, average over classes and then over images."""
    t, c = _core.check_options(
        metric,
        mode=mode,
        threshold=threshold,
        from_logits=from_logits,
        ignore_index=ignore_index,
        per_image=per_image,
        num_classes=num_classes,
    )
    zd = _core.check_average_options(
        metric, average=average, include_background=include_background, zero_division=zero_division
    )
    stats = _core.counts(
        metric,
        input,
        target,
        mode=mode,
        threshold=t,
        from_logits=from_logits,
        ignore_index=ignore_index,
        per_image=per_image,
        num_classes=c,
        include_background=include_background,
    )
    value = _core.values(
        metric, stats, fn=metric, mode=mode, average=average, include_background=include_background, zero_division=zd
    )
    return _core.image_mean(*_core.image_sums(value)) if per_image else value


@_shared_doc
def dice(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Dice coefficient (F1 score) of hard predictions.

    .. math::
        \mathrm{Dice}_c = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}

    from the counts of :func:`confusion`. Its denominator is 0 for a class absent from both prediction and target:
    the value is then ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        torchmetrics: ``classification.multiclass_f1_score`` / ``binary_f1_score`` / ``multilabel_f1_score``
        give the same values per class (``average=None``), and ``segmentation.dice_score`` too
        (``aggregation_level="global"`` is ``per_image=False``; ``"samplewise"`` returns the per-image values,
        whose nanmean over images is ``per_image=True``). torchmetrics' multiclass ``average="macro"`` leaves
        out classes absent from both prediction and target (like ``zero_division="nan"`` here); its multilabel
        ``"macro"`` keeps them with its ``zero_division`` (default 0).
        MONAI: ``DiceMetric(ignore_empty=False)`` on one-hot inputs is ``per_image=True, zero_division=1``
        (``reduction="mean_batch"``: ``average="none"``; ``"mean"``: ``average="macro"``, except that MONAI gives 0
        where every value is NaN). Its default ``ignore_empty=True`` gives NaN for every class absent from the
        target, even where it is predicted (a false positive on an empty image scores nothing); here that class
        scores 0.

    References:
        Dice 1945; Sorensen 1948.

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import dice
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> dice(input, target, mode="binary")  # 2*1 / (2*1 + 1 + 0)
        tensor(0.6667, dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> dice(pred, target, mode="multiclass", num_classes=3, average="none")  # 2/2, 2/3, 2/3
        tensor([1.0000, 0.6667, 0.6667], dtype=torch.float64)

    """
    return _metric(
        "dice",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )


@_shared_doc
def iou(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Intersection over union (Jaccard index) of hard predictions.

    .. math::
        \mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c + FN_c}

    from the counts of :func:`confusion`. Its denominator is 0 for a class absent from both prediction and target:
    the value is then ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        torchmetrics: ``classification.multiclass_jaccard_index(average="none")`` gives the same per-class
        values; with ``ignore_index`` inside [0, C) torchmetrics also drops that class from its averages, here
        the class stays (its predictions on kept pixels are false positives). Its multiclass ``"macro"`` leaves
        out classes absent from both (as ``zero_division="nan"`` here), its multilabel ``"macro"`` keeps them as
        ``zero_division``. ``segmentation.mean_iou`` is per image and gives -1 (not NaN) for a class absent from both.
        MONAI: ``MeanIoU(ignore_empty=False)`` on one-hot inputs is ``per_image=True, zero_division=1``, as
        ``DiceMetric`` (see :func:`dice`).

    References:
        Jaccard 1912.

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import iou
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> iou(input, target, mode="binary")  # 1 / (1 + 1 + 0)
        tensor(0.5000, dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> iou(pred, target, mode="multiclass", num_classes=3, average="none")  # 1/1, 1/2, 1/2
        tensor([1.0000, 0.5000, 0.5000], dtype=torch.float64)

    """
    return _metric(
        "iou",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )


@_shared_doc
def precision(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Precision (positive predictive value) of hard predictions.

    .. math::
        \mathrm{Precision}_c = \frac{TP_c}{TP_c + FP_c}

    from the counts of :func:`confusion`. Its denominator is 0 for a class never predicted: the value is then
    ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        torchmetrics: ``classification.{binary,multiclass,multilabel}_precision`` with ``average=None``
        and ``zero_division=0`` agree with ``zero_division=0`` here; their ``"macro"`` keeps a class that is
        never predicted but present in the target as 0, where ``zero_division="nan"`` leaves it out.

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import precision
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> precision(input, target, mode="binary")  # 1 / (1 + 1)
        tensor(0.5000, dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> precision(pred, target, mode="multiclass", num_classes=3, average="none")  # 1/1, 1/1, 1/2
        tensor([1.0000, 1.0000, 0.5000], dtype=torch.float64)

    """
    return _metric(
        "precision",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )


@_shared_doc
def recall(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Recall (sensitivity, true positive rate) of hard predictions.

    .. math::
        \mathrm{Recall}_c = \frac{TP_c}{TP_c + FN_c}

    from the counts of :func:`confusion`. Its denominator is 0 for a class absent from the target: the value is then
    ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        torchmetrics: ``classification.{binary,multiclass,multilabel}_recall`` with ``average=None`` and
        ``zero_division=0`` agree with ``zero_division=0`` here (see :func:`precision` for ``"macro"``).

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import recall
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> recall(input, target, mode="binary")  # 1 / (1 + 0)
        tensor(1., dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> recall(pred, target, mode="multiclass", num_classes=3, average="none")  # 1/1, 1/2, 1/1
        tensor([1.0000, 0.5000, 1.0000], dtype=torch.float64)

    """
    return _metric(
        "recall",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )


@_shared_doc
def specificity(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Specificity (true negative rate) of hard predictions.

    .. math::
        \mathrm{Specificity}_c = \frac{TN_c}{TN_c + FP_c}

    from the counts of :func:`confusion`. Its denominator is 0 for a class present in every kept element: the value is
    then ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        torchmetrics: ``classification.{binary,multiclass,multilabel}_specificity`` with
        ``average=None`` agree (zero division there gives 0); their multiclass ``"macro"`` leaves out a class absent
        from both prediction and target, whose specificity (no false positive) is counted here.
        MONAI: ``compute_confusion_matrix_metric("specificity", get_confusion_matrix(...))`` gives the per-image
        values of ``average="none"`` (NaN for 0/0, as ``zero_division="nan"``); likewise ``"precision"``,
        ``"sensitivity"`` (recall), ``"accuracy"`` and ``"f1 score"`` (Dice).

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import specificity
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> specificity(input, target, mode="binary")  # 2 / (2 + 1)
        tensor(0.6667, dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> specificity(pred, target, mode="multiclass", num_classes=3, average="none")  # 3/3, 2/2, 2/3
        tensor([1.0000, 1.0000, 0.6667], dtype=torch.float64)

    """
    return _metric(
        "specificity",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )


@_shared_doc
def accuracy(
    input: Tensor,
    target: Tensor,
    *,
    mode: Mode,
    average: Average = "macro",
    per_image: bool = False,
    ignore_index: int | None = None,
    include_background: bool = True,
    zero_division: float | str = "nan",
    threshold: float = 0.5,
    from_logits: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    r"""Accuracy of hard predictions.

    .. math::
        \mathrm{Accuracy}_c = \frac{TP_c + TN_c}{TP_c + FP_c + FN_c + TN_c}, \qquad
        \text{multiclass micro: } \frac{\sum_c TP_c}{\sum_c (TP_c + FN_c)}

    from the counts of :func:`confusion`. Its denominator is 0 for no kept element: the value is then
    ``zero_division``.

    Shapes:
        - input: ``(N, C, *S)``, ``(N, 1, *S)``/``(N, *S)`` (binary) or ``(N, *S)`` class indices (multiclass).
        - target: ``(N, *S)`` class indices or ``(N, C, *S)`` one-hot (multiclass); the input's shape otherwise.
        - output: ``()``, or ``(C_kept,)`` with ``average="none"`` (``C_kept = C - 1`` without background;
          binary ``(1,)``), float64.

    {METRIC_ARGS}

    Note:
        Multiclass ``average="micro"`` is pixel accuracy ``sum_c TP_c / pixels`` (every class kept); with
        ``include_background=False`` it is ``sum_c TP_c / sum_c (TP_c + FN_c)`` over the kept classes: the share
        of the kept classes' pixels labelled right. Binary/multilabel micro is
        ``sum (TP + TN) / sum (TP + FP + FN + TN)``. torchmetrics: ``multiclass_accuracy(average="micro")`` and
        ``binary_accuracy``/``multilabel_accuracy`` agree; torchmetrics' multiclass *per-class* and macro
        accuracy is the recall ``TP / (TP + FN)``, not ``(TP + TN) / total`` as here.

    Examples:
        A 2x2 binary mask: probabilities ``[[0.9, 0.2], [0.7, 0.1]]`` give the prediction ``[[1, 0], [1, 0]]``;
        against the target ``[[1, 0], [0, 0]]``: TP = 1, FP = 1, FN = 0, TN = 2.

        >>> import torch
        >>> from seglosses.metrics import accuracy
        >>> input = torch.tensor([[[0.9, 0.2], [0.7, 0.1]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> accuracy(input, target, mode="binary")  # (1 + 2) / 4
        tensor(0.7500, dtype=torch.float64)

        Multiclass class indices (C = 3) ``[[0, 1], [2, 2]]`` against ``[[0, 1], [1, 2]]``: per class
        TP = (1, 1, 1), FP = (0, 0, 1), FN = (0, 1, 0), TN = (3, 2, 2).

        >>> pred = torch.tensor([[[0, 1], [2, 2]]])
        >>> target = torch.tensor([[[0, 1], [1, 2]]])
        >>> accuracy(pred, target, mode="multiclass", num_classes=3, average="none")  # 4/4, 3/4, 3/4
        tensor([1.0000, 0.7500, 0.7500], dtype=torch.float64)

    """
    return _metric(
        "accuracy",
        input,
        target,
        mode=mode,
        average=average,
        per_image=per_image,
        ignore_index=ignore_index,
        include_background=include_background,
        zero_division=zero_division,
        threshold=threshold,
        from_logits=from_logits,
        num_classes=num_classes,
    )
