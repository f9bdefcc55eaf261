"""The peers' own test vectors for the hard-prediction and surface metrics, reproduced under mapped arguments.

Each case writes the peer's inputs and expected numbers literally, with the repository, file and case, and our
call under the mapping stated next to it (peers need no install here: nothing of theirs is imported). Their
tolerances are kept (MONAI compares to 1e-4 absolute, torchmetrics' doctests print 4 decimals).

Mappings used throughout (peer -> seglosses):

- A peer's per-sample output ``(N, C)`` (MONAI ``compute_*``, torchmetrics ``multidim_average="samplewise"`` or the
  segmentation functionals, smp ``get_stats``) is our function with ``average="none"`` (or the peer's average) on
  each image alone: :func:`rows`. Their batch means are ours with ``per_image=True``.
- MONAI one-hot ``y_pred``/``y`` whose channels are one-hot: ``mode="multiclass"`` (one-hot target); channels that
  overlap: ``mode="multilabel"``. MONAI returns NaN where 0/0 (``zero_division="nan"``); ``ignore_empty=False``
  gives 1 for a class absent from both (``zero_division=1``). MONAI's default ``ignore_empty=True`` also gives NaN
  where the class is absent from the target but predicted; ours gives 0 there (our dice/iou docstrings), so those
  cases go through :func:`monai_reduce`, which applies MONAI's documented rule and reductions to our per-image
  values.
- torchmetrics classification: 1-D inputs ``(S,)`` are one image ``(1, S)``; multiclass scores ``(S, C)`` are
  ``(1, C, S)``; multilabel ``(N, C)`` is ``(N, C, 1)``. Its ``zero_division`` default 0 is ``zero_division=0``;
  its multiclass ``accuracy`` (default ``average="macro"`` and per class) is our ``recall`` (its per-class accuracy
  is TP / (TP + FN)); ``f1_score`` is our ``dice``; ``jaccard_index`` our ``iou``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import tensor

from seglosses.functional import generalized_dice_loss
from seglosses.metrics import (
    SegmentationMetrics,
    accuracy,
    asd,
    assd,
    confusion,
    dice,
    hausdorff,
    iou,
    masd,
    precision,
    recall,
    specificity,
)

Metric = Callable[..., torch.Tensor]


def rows(fn: Metric, pred: torch.Tensor, target: torch.Tensor, **kw: Any) -> np.ndarray:
    """Our metric on each image alone, stacked: a peer's per-sample output."""
    return np.stack([fn(pred[i : i + 1], target[i : i + 1], **kw).numpy() for i in range(pred.shape[0])])


def stats(pred: torch.Tensor, target: torch.Tensor, *, order: str = "tp fp tn fn", **kw: Any) -> np.ndarray:
    """Our per-image counts ``(N, C, 4)`` in a peer's order (MONAI and torchmetrics: tp, fp, tn, fn)."""
    tp, fp, fn, tn = confusion(pred, target, per_image=True, **kw)
    named = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return torch.stack([named[k] for k in order.split()], dim=-1).numpy()


def monai_reduce(values: np.ndarray, y: torch.Tensor | None, reduction: str) -> np.ndarray:
    """MONAI's ``ignore_empty=True`` (NaN where the class is absent from ``y``) and ``do_metric_reduction``.

    ``values`` are per-image, per-class ``(N, C)``; ``y`` the one-hot target ``(N, C, *S)`` (None: no
    ``ignore_empty``). Means and sums leave NaN out; where nothing is left MONAI gives 0.
    """
    v = values.astype(np.float64).copy()
    if y is not None:
        v[~y.flatten(2).any(-1).numpy()] = np.nan
    kept = ~np.isnan(v)
    z = np.where(kept, v, 0.0)
    if reduction == "none":
        return v
    if reduction == "mean_batch":
        n = kept.sum(0)
        return np.where(n > 0, z.sum(0) / np.maximum(n, 1), 0.0)
    if reduction == "sum_batch":
        return z.sum(0)
    if reduction == "mean":  # per image over classes, then over the images that had a value
        n = kept.sum(1)
        per = np.where(n > 0, z.sum(1) / np.maximum(n, 1), 0.0)
        return np.array(per[n > 0].mean() if (n > 0).any() else 0.0)
    raise AssertionError(reduction)


def tm_round(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """torchmetrics' doctests print float32 values to 4 decimals."""
    return np.round(np.asarray(x, dtype=np.float64), 4)


# ============================================================================================================ MONAI
# Project-MONAI/MONAI, tests/metrics/test_compute_meandice.py, test_compute_meaniou.py,
# test_compute_confusion_matrix.py, test_compute_generalized_dice.py (commit d388d1c6).

# TEST_CASE_2 of test_compute_meandice.py / test_compute_meaniou.py / test_compute_generalized_dice.py and `data` of
# test_compute_confusion_matrix.py: every pixel is one-hot in both tensors.
ONEHOT_PRED = tensor(
    [
        [[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]],
    ]
)
ONEHOT_Y = tensor(
    [
        [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]],
    ]
)
# TEST_CASE_4..8 of test_compute_meandice.py / test_compute_meaniou.py (and 3, 4, 9, 10, 11 of the generalized
# dice tests): the predicted channels overlap (multilabel).
MULTI_PRED = tensor(
    [
        [[[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]],
        [[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]],
    ]
)
MULTI_Y = tensor(  # TEST_CASE_4, 5, 13-15 (dice); 4, 5 (iou); 3, 9, 10, 11 (generalized dice)
    [
        [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]],
    ]
)
MULTI_Y_BG = tensor(  # TEST_CASE_6, 7, 8 (dice, iou); 4 (generalized dice): background everywhere
    [
        [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
        [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
    ]
)
# TEST_CASE_3 of test_compute_meandice.py / test_compute_meaniou.py
NAN_PRED = tensor(
    [
        [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
        [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
    ]
)
NAN_Y = tensor(
    [
        [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
        [[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]],
    ]
)


@pytest.mark.parametrize("fn", [dice, iou])
def test_monai_compute_dice_iou_values(fn: Metric) -> None:
    # test_value of TEST_CASE_1, 2, 9, 11, 12: compute_dice / compute_iou -> (N, C) = our per-image values
    name = fn.__name__
    # TEST_CASE_1: binary 2x2, pred [[1, 0], [0, 1]], y [[1, 0], [1, 1]] (TP 2, FP 0, FN 1)
    pred = tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    y = tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    want = {"dice": [[0.8]], "iou": [[0.6667]]}[name]
    np.testing.assert_allclose(rows(fn, pred, y, mode="binary", average="none"), want, atol=1e-4)
    # TEST_CASE_2: include_background=False on one-hot pairs (multiclass; multilabel counts the same here)
    want = {"dice": [[0.5000, 0.0000], [0.6667, 0.6667]], "iou": [[0.3333, 0.0000], [0.5000, 0.5000]]}[name]
    for mode in ("multiclass", "multilabel"):
        got = rows(fn, ONEHOT_PRED, ONEHOT_Y, mode=mode, average="none", include_background=False)
        np.testing.assert_allclose(got, want, atol=1e-4)
    # TEST_CASE_9: all ones -> 1; TEST_CASE_11 (ignore_empty=False): all zeros -> 1 = zero_division=1;
    # TEST_CASE_12 (ignore_empty=False): y zeros, y_pred ones -> 0
    ones, zeros = torch.ones((2, 2, 3, 3)), torch.zeros((2, 2, 3, 3))
    kw: dict[str, Any] = {"mode": "multilabel", "average": "none"}
    np.testing.assert_allclose(rows(fn, ones, ones, **kw), [[1.0, 1.0], [1.0, 1.0]], atol=1e-4)
    np.testing.assert_allclose(rows(fn, zeros, zeros, zero_division=1, **kw), [[1.0, 1.0], [1.0, 1.0]], atol=1e-4)
    np.testing.assert_allclose(rows(fn, ones, zeros, zero_division=1, **kw), [[0.0, 0.0], [0.0, 0.0]], atol=1e-4)
    # DiceMetric / MeanIoU(ignore_empty=False) with reduction "mean_batch" is per_image=True, average="none"
    got = fn(zeros, zeros, per_image=True, zero_division=1, **kw)
    np.testing.assert_allclose(got.numpy(), [1.0, 1.0], atol=1e-4)


@pytest.mark.parametrize("fn", [dice, iou])
def test_monai_nan_pattern(fn: Metric) -> None:
    # TEST_CASE_3: MONAI's NaN pattern [[False, True, True], [False, False, True]] (ignore_empty=True: NaN wherever
    # the class is absent from y). Class 1 of image 0 is absent from both: NaN here too (zero_division="nan").
    # Class 2 is predicted on every pixel of both images but absent from y: MONAI NaN, ours 0 (a false positive on
    # an empty target scores 0; documented in our docstrings). Class 0 of image 0 is missed entirely: 0 in both.
    got = rows(fn, NAN_PRED, NAN_Y, mode="multilabel", average="none")
    assert np.array_equal(np.isnan(got), [[False, True, False], [False, False, False]])
    assert got[0, 0] == 0.0
    assert got[0, 2] == 0.0
    assert got[1, 2] == 0.0
    # MONAI's pattern itself, through its rule applied to our values (the mapping of ignore_empty=True)
    want_nan = [[False, True, True], [False, False, True]]
    assert np.array_equal(np.isnan(monai_reduce(got, NAN_Y, "none")), want_nan)


@pytest.mark.parametrize(
    ("fn", "y", "params", "want"),
    [
        # test_compute_meandice.py, test_nans_class (DiceMetric, include_background as given, ignore_empty=True)
        (dice, MULTI_Y, {"include_background": True, "reduction": "mean_batch"}, [0.6786, 0.4000, 0.6667]),
        (dice, MULTI_Y, {"include_background": True, "reduction": "mean"}, 0.689683),
        (dice, MULTI_Y_BG, {"include_background": True, "reduction": "sum_batch"}, [1.7143, 0.0000, 0.0000]),
        (dice, MULTI_Y_BG, {"include_background": True, "reduction": "mean"}, 0.857143),
        (dice, MULTI_Y_BG, {"include_background": False, "reduction": "sum_batch"}, [0.0000, 0.0000]),
        # test_compute_meaniou.py, test_nans_class (MeanIoU)
        (iou, MULTI_Y, {"include_background": True, "reduction": "mean_batch"}, [0.5416, 0.2500, 0.5000]),
        (iou, MULTI_Y, {"include_background": True, "reduction": "mean"}, 0.5555),
        (iou, MULTI_Y_BG, {"include_background": True, "reduction": "sum_batch"}, [1.5000, 0.0000, 0.0000]),
        (iou, MULTI_Y_BG, {"include_background": True, "reduction": "mean"}, 0.7500),
        (iou, MULTI_Y_BG, {"include_background": False, "reduction": "sum_batch"}, [0.0000, 0.0000]),
    ],
)
def test_monai_metric_reductions(fn: Metric, y: torch.Tensor, params: dict[str, Any], want: Any) -> None:
    bg = params["include_background"]
    values = rows(fn, MULTI_PRED, y, mode="multilabel", average="none", include_background=bg)
    kept_y = y if bg else y[:, 1:]
    got = monai_reduce(values, kept_y, params["reduction"])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_monai_reductions_without_empty_classes_are_per_image_means() -> None:
    # Where no class is absent from y, MONAI's "mean_batch" is our per_image=True, average="none" and "mean" our
    # per_image=True, average="macro" (TEST_CASE_4/5: class 0 of both images is in y: 0.6786 (dice), 0.5416 (iou)).
    for fn, want in ((dice, 0.6786), (iou, 0.5416)):
        got = fn(MULTI_PRED, MULTI_Y, mode="multilabel", average="none", per_image=True)
        assert abs(got[0].item() - want) <= 1e-4
    # TEST_CASE_2 data (every kept class in every y): DiceMetric(include_background=False, reduction="mean_batch")
    # is the mean of test_value's rows [[0.5, 0], [0.6667, 0.6667]] over images; "mean" their overall mean
    got = dice(ONEHOT_PRED, ONEHOT_Y, mode="multiclass", average="none", per_image=True, include_background=False)
    np.testing.assert_allclose(got.numpy(), [(0.5 + 0.6667) / 2, (0.0 + 0.6667) / 2], atol=1e-4)
    got = dice(ONEHOT_PRED, ONEHOT_Y, mode="multiclass", per_image=True, include_background=False)
    assert abs(got.item() - (0.5 + 0.0 + 0.6667 + 0.6667) / 4) <= 1e-4


def test_monai_get_confusion_matrix() -> None:
    # test_compute_confusion_matrix.py, TEST_CASE_CONFUSION_MATRIX: [tp, fp, tn, fn] per image and class;
    # include_background=False drops channel 0
    want = np.array(
        [
            [[0.0, 1.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 1.0]],
            [[1.0, 0.0, 3.0, 0.0], [1.0, 0.0, 2.0, 1.0], [1.0, 1.0, 2.0, 0.0]],
        ]
    )
    for mode in ("multiclass", "multilabel"):
        np.testing.assert_array_equal(stats(ONEHOT_PRED, ONEHOT_Y, mode=mode), want)
        got = stats(ONEHOT_PRED, ONEHOT_Y, mode=mode, include_background=False)
        np.testing.assert_array_equal(got, want[:, 1:, :])
    # data_nan's confusion matrices, written in its comment
    pred = tensor(
        [
            [[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]],
            [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
            [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
        ]
    )
    y = tensor(
        [
            [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]],
            [[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
            [[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]],
        ]
    )
    want_nan = [
        [[0, 1, 2, 1], [1, 1, 1, 1], [0, 1, 2, 1]],
        [[0, 0, 0, 4], [0, 0, 4, 0], [0, 4, 0, 0]],
        [[0, 0, 2, 2], [0, 0, 2, 2], [0, 4, 0, 0]],
    ]
    np.testing.assert_array_equal(stats(pred, y, mode="multiclass"), want_nan)
    # TEST_CASES_COMPUTE_SAMPLE_NAN (ConfusionMatrixMetric(compute_sample=True)): tpr = recall, tnr = specificity,
    # NaN where 0/0; "sum" and "sum_batch" sum the non-NaN values, not_nans counts them
    for fn, want_sum, n_sum, want_batch, n_batch in (
        (recall, 0.5000, 6, [0.0000, 0.5000, 0.0000], [3.0, 2.0, 1.0]),
        (specificity, 4.8333, 8, [1.6667, 2.5000, 0.6667], [2.0, 3.0, 3.0]),
    ):
        v = rows(fn, pred, y, mode="multiclass", average="none")
        kept = ~np.isnan(v)
        np.testing.assert_allclose(np.nansum(v), want_sum, atol=1e-4)
        assert kept.sum() == n_sum
        np.testing.assert_allclose(np.nansum(v, 0), want_batch, atol=1e-4)
        np.testing.assert_array_equal(kept.sum(0), n_batch)
    # TEST_CASES_CLF: two samples of 3 classes without spatial dims -> one pixel each, (N, C, 1)
    pred = tensor([[1, 0, 0], [0, 0, 1]])[..., None]
    y = tensor([[1, 0, 0], [0, 1, 0]])[..., None]
    want_clf = [
        [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
        [[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]],
    ]
    np.testing.assert_array_equal(stats(pred.float(), y, mode="multiclass"), want_clf)  # float: one-hot scores
    np.testing.assert_array_equal(stats(pred, y, mode="multilabel"), want_clf)
    # ... and reduction="mean_channel" then "tpr": recall of the counts summed over the samples (not per image)
    np.testing.assert_allclose(recall(pred, y, mode="multilabel", average="none").numpy(), [1.0, 0.0, np.nan])


def test_monai_confusion_matrix_large_volume_counts_exactly() -> None:
    # TEST_CASE_PRECISION: all-zero (1, 1, 1024, 1024, 44) -> tn = 46137344 (float32 would lose counts)
    z = torch.zeros((1, 1, 1024, 1024, 44), dtype=torch.uint8)
    tp, fp, fn, tn = confusion(z, z, mode="binary", per_image=True)
    assert (tp.item(), fp.item(), tn.item(), fn.item()) == (0, 0, 46137344, 0)


# ConfusionMatrixMetric(compute_sample=True, include_background=True) on `data`: result_mean_batch / result_mean
# for the metric names that are ours ("tpr", "tnr", "ppv", "acc", "f1", "ts") or their complements ("fnr" = 1 -
# tpr, "fpr" = 1 - tnr, "fdr" = 1 - ppv). "mean_batch" = per_image=True, average="none"; "mean" = per_image=True,
# average="macro" (MONAI: the mean over classes, then over images; no 0/0 in this data).
MONAI_SAMPLE = [
    ("tpr", recall, False, [0.5000, 0.5000, 0.5000], 0.5000),
    ("fpr", specificity, True, [0.1667, 0.2500, 0.3333], 0.2500),
    ("tnr", specificity, False, [0.8333, 0.7500, 0.6667], 0.7500),
    ("ppv", precision, False, [0.5000, 0.7500, 0.2500], 0.5000),
    ("fnr", recall, True, [0.5000, 0.5000, 0.5000], 0.5000),
    ("fdr", precision, True, [0.5000, 0.2500, 0.7500], 0.5000),
    ("ts", iou, False, [0.5000, 0.4167, 0.2500], 0.3889),
    ("acc", accuracy, False, [0.7500, 0.6250, 0.6250], 0.6667),
    ("f1", dice, False, [0.5000, 0.5833, 0.3333], 0.4722),
]


@pytest.mark.parametrize(("name", "fn", "complement", "want_batch", "want_mean"), MONAI_SAMPLE)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_monai_confusion_matrix_metric_compute_sample(
    name: str, fn: Metric, complement: bool, want_batch: list[float], want_mean: float, mode: str
) -> None:
    batch = fn(ONEHOT_PRED, ONEHOT_Y, mode=mode, per_image=True, average="none").numpy()
    mean = fn(ONEHOT_PRED, ONEHOT_Y, mode=mode, per_image=True, average="macro").item()
    if complement:
        batch, mean = 1.0 - batch, 1.0 - mean
    np.testing.assert_allclose(batch, want_batch, atol=1e-4, rtol=1e-4)
    assert math.isclose(mean, want_mean, abs_tol=1e-4, rel_tol=1e-4), (name, mean)


def test_monai_generalized_dice() -> None:
    # test_compute_generalized_dice.py. compute_generalized_dice without sum_over_classes returns per image and
    # class w_c 2 TP_c / (w_c (P_c + G_c)) = the Dice of the class (the weight cancels; an absent class gets the
    # largest weight, so a false positive there scores 0), and 1 where the class is absent from both: our dice per
    # image with average="none", zero_division=1.
    kw: dict[str, Any] = {"mode": "multilabel", "average": "none", "zero_division": 1}
    np.testing.assert_allclose(rows(dice, tensor([[[[1.0, 0.0], [0.0, 1.0]]]]), tensor([[[[1.0, 0.0], [1.0, 1.0]]]]),
                                    **kw), [[0.8]], atol=1e-4)  # fmt: skip  # TEST_CASE_1
    ones, zeros = torch.ones((2, 2, 3, 3)), torch.zeros((2, 2, 3, 3))
    for pred, y, want in ((ones, ones, 1.0), (ones, zeros, 0.0), (zeros, ones, 0.0), (zeros, zeros, 1.0)):  # 5-8
        np.testing.assert_allclose(rows(dice, pred, y, **kw), [[want, want], [want, want]], atol=1e-4)
    # TEST_CASE_10: per class, and GeneralizedDiceScore(reduction="mean_batch") their mean over images
    want10 = np.array([[0.857143, 0.0, 0.0], [0.5, 0.4, 0.666667]])
    np.testing.assert_allclose(rows(dice, MULTI_PRED, MULTI_Y, **kw), want10, atol=1e-4)
    got = dice(MULTI_PRED, MULTI_Y, per_image=True, **kw)
    np.testing.assert_allclose(got.numpy(), want10.mean(0), atol=1e-4)
    # TEST_CASE_2: GeneralizedDiceScore(include_background=False, reduction="mean_batch") on one-hot pairs
    got = dice(ONEHOT_PRED, ONEHOT_Y, per_image=True, include_background=False, **{**kw, "mode": "multiclass"})
    np.testing.assert_allclose(got.numpy(), [0.583333, 0.333333], atol=1e-4)
    # Summed over classes (TEST_CASE_11 compute_generalized_dice(sum_over_classes=True); TEST_CASE_9
    # GeneralizedDiceScore "mean_channel"; TEST_CASE_3 "mean"; TEST_CASE_4 "sum") is Sudre's score per image:
    # 1 - generalized_dice_loss(smooth=0, per_image=True) on the hard maps (its weights 1/G_c^2, an absent class
    # the largest present weight, as MONAI's "square" weights).
    gdl: dict[str, Any] = {"mode": "multilabel", "from_logits": False, "smooth": 0.0, "per_image": True}
    per = 1.0 - generalized_dice_loss(MULTI_PRED, MULTI_Y, reduction="none", **gdl)
    np.testing.assert_allclose(per.numpy(), [0.545455, 0.545455], atol=1e-4)
    mean = 1.0 - generalized_dice_loss(MULTI_PRED, MULTI_Y, reduction="mean", **gdl)
    np.testing.assert_allclose(mean.item(), 0.5454, atol=1e-4)
    total = 2.0 - generalized_dice_loss(MULTI_PRED, MULTI_Y_BG, reduction="sum", **gdl)
    np.testing.assert_allclose(total.item(), 1.045455, atol=1e-4)


def _monai_sphere(radius: float, centre: tuple[int, int, int], spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    # create_spherical_seg_3d of test_surface_distance.py: a 99^3 image, voxel i at i * spacing
    a, b, c = np.ogrid[:99, :99, :99]
    a = a * spacing[0] - centre[0]
    b = b * spacing[1] - centre[1]
    c = c * spacing[2] - centre[2]
    return a * a + b * b + c * c <= radius * radius


# test_surface_distance.py, TEST_CASES with distance_metric="euclidean": SurfaceDistanceMetric(symmetric=True)
# -> [0], (symmetric=False) -> [1]. MONAI: edges = mask minus its erosion (the image border counts), distances
# pooled over both directions when symmetric: our assd(boundary="voxel"); symmetric=False is asd (pred to gt).
MONAI_ASD = [
    ((20.0, (49, 49, 49)), (20.0, (49, 49, 49)), None, (0.0, 0.0)),
    ((33.0, (19, 33, 22)), (33.0, (20, 33, 22)), None, (0.350217, 0.3483278807706289)),
    ((20.0, (20, 33, 22)), (40.0, (20, 33, 22)), None, (15.117741, 12.040033513150455)),
    ((33.0, (42, 45, 52)), (33.0, (43, 45, 52)), (0.85, 1.2, 0.9), (0.4951, 0.4951)),
]


@pytest.mark.parametrize("case", range(len(MONAI_ASD)))
def test_monai_surface_distance_vectors(case: int) -> None:
    (r1, c1), (r2, c2), spacing, (want_sym, want_dir) = MONAI_ASD[case]
    sp = spacing or (1.0, 1.0, 1.0)
    p = torch.from_numpy(_monai_sphere(r1, c1, sp))[None]
    g = torch.from_numpy(_monai_sphere(r2, c2, sp))[None]
    kw: dict[str, Any] = {"mode": "binary", "boundary": "voxel", "spacing": spacing}
    np.testing.assert_allclose(assd(p, g, **kw).item(), want_sym, rtol=1e-5, atol=1e-12)  # their rtol
    np.testing.assert_allclose(asd(p, g, **kw).item(), want_dir, rtol=1e-5, atol=1e-12)


def test_monai_surface_distance_empty_vectors() -> None:
    # TEST_CASES 7 and 8 (one mask empty: inf both ways, our default empty_one); TEST_CASES_NANS (both empty:
    # MONAI NaN, left out of its mean: our empty_both="nan")
    z = torch.zeros((1, 99, 99, 99), dtype=torch.bool)
    s = torch.from_numpy(_monai_sphere(40.0, (20, 33, 22)))[None]
    for p, g in ((z, s), (s, z)):
        assert assd(p, g, mode="binary", boundary="voxel").item() == math.inf
        assert asd(p, g, mode="binary", boundary="voxel").item() == math.inf
    for spacing in (None, (0.85, 1.2, 0.9)):
        assert math.isnan(assd(z, z, mode="binary", boundary="voxel", spacing=spacing, empty_both="nan").item())


# ====================================================================================== segmentation_models.pytorch
# qubvel-org/segmentation_models.pytorch, tests/test_metrics.py at commit c32ae4fa (the get_stats validation branch;
# the default branch has no metric value tests). get_stats(output, target, mode, num_classes) -> (tp, fp, fn, tn)
# per image (N, C) = our confusion(per_image=True); smp's class-index inputs (N, *S) are ours.


def test_smp_get_stats_vectors() -> None:
    kw: dict[str, Any] = {"mode": "multiclass", "num_classes": 3, "per_image": True}
    # test_correct_input
    tp, fp, fn, tn = confusion(tensor([[0, 1, 2, 1]]), tensor([[0, 1, 2, 2]]), **kw)
    assert tuple(tp.shape) == (1, 3)
    assert fp.tolist() == [[0, 1, 0]]
    assert fn.tolist() == [[0, 0, 1]]
    # test_valid_shape1_equals_numclasses: (N, S) = (2, 3)
    tp, fp, fn, tn = confusion(tensor([[0, 1, 2], [2, 1, 0]]), tensor([[0, 1, 2], [2, 2, 0]]), **kw)
    assert tp.tolist() == [[1, 1, 1], [1, 0, 1]]
    assert fp.tolist() == [[0, 0, 0], [0, 1, 0]]
    assert fn.tolist() == [[0, 0, 0], [0, 0, 1]]
    # test_ignore_index_masking: the ignored pixel counts nowhere, tn over the 3 kept pixels
    tp, fp, fn, tn = confusion(tensor([[0, 1, 2, 1]]), tensor([[0, 1, 255, 2]]), ignore_index=255, **kw)
    assert tp.tolist() == [[1, 1, 0]]
    assert fp.tolist() == [[0, 1, 0]]
    assert fn.tolist() == [[0, 0, 1]]
    assert tn.tolist() == [[2, 1, 2]]
    # test_strict_false_allows_onehot_like: (1, 3, 4) class indices, all equal
    x = tensor([[[0, 1, 2, 0], [1, 2, 0, 1], [2, 0, 1, 2]]])
    tp, fp, fn, tn = confusion(x, x, **kw)
    assert tp.tolist() == [[4, 4, 4]]
    assert fp.tolist() == [[0, 0, 0]]
    assert fn.tolist() == [[0, 0, 0]]
    # test_argmax_fix_gives_perfect_iou: iou_score(reduction="macro") of the argmaxed one-hot maps
    onehot = tensor([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    assert iou(onehot.argmax(1), onehot.argmax(1), mode="multiclass", num_classes=3).item() == 1.0
    # test_binary_mode_untouched: (2, 1, 2) probabilities, threshold 0.5
    tp, fp, fn, tn = confusion(
        tensor([[[0.2, 0.8]], [[0.7, 0.3]]]), tensor([[[0, 1]], [[1, 0]]]), mode="binary", per_image=True
    )
    assert (tp.tolist(), fp.tolist(), fn.tolist(), tn.tolist()) == ([[1], [1]], [[0], [0]], [[0], [0]], [[1], [1]])
    # test_multilabel_mode_untouched: (2, 2, 2)
    tp, fp, fn, tn = confusion(
        tensor([[[0.2, 0.8], [0.7, 0.3]], [[0.9, 0.1], [0.4, 0.6]]]),
        tensor([[[0, 1], [1, 0]], [[1, 0], [0, 1]]]),
        mode="multilabel",
        per_image=True,
    )
    assert tp.tolist() == [[1, 1], [1, 1]]
    assert fp.tolist() == [[0, 0], [0, 0]]
    assert fn.tolist() == [[0, 0], [0, 0]]
    assert tn.tolist() == [[1, 1], [1, 1]]


# ===================================================================================================== torchmetrics
# Lightning-AI/torchmetrics (commit dab03339), doctest examples of src/torchmetrics/functional/classification/
# {stat_scores,accuracy,precision_recall,f_beta,jaccard,specificity}.py and of the segmentation metrics.

BIN_T = tensor([[0, 1, 0, 1, 0, 1]])  # binary_*: target [0, 1, 0, 1, 0, 1] as one image of 6 pixels
BIN_P_INT = tensor([[0, 0, 1, 1, 0, 1]])
BIN_P_FLOAT = tensor([[0.11, 0.22, 0.84, 0.73, 0.33, 0.92]])
# the "multidim tensors" examples: 2 images of 3x2 (binary), or 2 images of 3 labels x 2 pixels (multilabel)
MD_T = tensor([[[0, 1], [1, 0], [0, 1]], [[1, 1], [0, 0], [1, 0]]])
MD_P = tensor([[[0.59, 0.91], [0.91, 0.99], [0.63, 0.04]], [[0.38, 0.04], [0.86, 0.780], [0.45, 0.37]]])
MC_T = tensor([[2, 1, 0, 0]])  # multiclass_*: target [2, 1, 0, 0], preds [2, 1, 0, 1] or scores (4, 3)
MC_P_INT = tensor([[2, 1, 0, 1]])
MC_P_SCORES = tensor([[0.16, 0.26, 0.58], [0.22, 0.61, 0.17], [0.71, 0.09, 0.20], [0.05, 0.82, 0.13]]).T[None]
MCD_T = tensor([[[0, 1], [2, 1], [0, 2]], [[1, 1], [2, 0], [1, 2]]])  # multiclass multidim: 2 images of 3x2
MCD_P = tensor([[[0, 2], [2, 0], [0, 1]], [[2, 2], [2, 1], [1, 0]]])
ML_T = tensor([[0, 1, 0], [1, 0, 1]])[..., None]  # multilabel_*: 2 samples of 3 labels -> (2, 3, 1)
ML_P_INT = tensor([[0, 0, 1], [1, 0, 1]])[..., None]
ML_P_FLOAT = tensor([[0.11, 0.22, 0.84], [0.73, 0.33, 0.92]])[..., None]


def test_torchmetrics_stat_scores_examples() -> None:
    # binary_stat_scores -> [tp, fp, tn, fn, support]
    for p in (BIN_P_INT, BIN_P_FLOAT):
        np.testing.assert_array_equal(stats(p, BIN_T, mode="binary", order="tp fp tn fn")[0, 0], [2, 1, 2, 1])
    np.testing.assert_array_equal(
        stats(MD_P, MD_T, mode="binary", order="tp fp tn fn")[:, 0], [[2, 3, 0, 1], [0, 2, 1, 3]]
    )  # samplewise; support 3 and 3
    # multiclass_stat_scores: micro [3, 1, 7, 1, 4] (counts summed over classes), per class
    want = np.array([[1, 0, 2, 1], [1, 1, 2, 0], [1, 0, 3, 0]])
    for p in (MC_P_INT, MC_P_SCORES):
        got = stats(p, MC_T, mode="multiclass", num_classes=3)[0]
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got.sum(0), [3, 1, 7, 1])
    got = stats(MCD_P, MCD_T, mode="multiclass", num_classes=3)  # multidim_average="samplewise"
    np.testing.assert_array_equal(got.sum(1), [[3, 3, 9, 3], [2, 4, 8, 4]])
    want_md = [[[2, 1, 3, 0], [0, 1, 3, 2], [1, 1, 3, 1]], [[0, 1, 4, 1], [1, 1, 2, 2], [1, 2, 2, 1]]]
    np.testing.assert_array_equal(got, want_md)
    # multilabel_stat_scores: micro [2, 1, 2, 1, 3], per label
    for p in (ML_P_INT, ML_P_FLOAT):
        tp, fp, fn, tn = confusion(p, ML_T, mode="multilabel")
        got = torch.stack([tp, fp, tn, fn], -1).numpy()
        np.testing.assert_array_equal(got, [[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]])
        np.testing.assert_array_equal(got.sum(0), [2, 1, 2, 1])
    got = stats(MD_P, MD_T, mode="multilabel")
    np.testing.assert_array_equal(got.sum(1), [[2, 3, 0, 1], [0, 2, 1, 3]])
    want_ml = [[[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]], [[0, 0, 0, 2], [0, 2, 0, 0], [0, 0, 1, 1]]]
    np.testing.assert_array_equal(got, want_ml)
    # stat_scores legacy example: preds [1, 0, 2, 1], target [1, 1, 2, 0]
    got = stats(tensor([[1, 0, 2, 1]]), tensor([[1, 1, 2, 0]]), mode="multiclass", num_classes=3)[0]
    np.testing.assert_array_equal(got, [[0, 1, 2, 1], [1, 1, 1, 1], [1, 0, 3, 0]])
    np.testing.assert_array_equal(got.sum(0), [2, 2, 6, 2])


# (our function, extra keyword arguments, torchmetrics' value) for the binary examples: 1-D int and float preds
# give the same value; the multidim example's samplewise values are our per-image values
TM_BINARY = {
    "accuracy": (accuracy, {}, 0.6667, [0.3333, 0.1667]),
    "precision": (precision, {"zero_division": 0}, 0.6667, [0.4000, 0.0000]),
    "recall": (recall, {"zero_division": 0}, 0.6667, [0.6667, 0.0000]),
    "f1_score": (dice, {"zero_division": 0}, 0.6667, [0.5000, 0.0000]),
    "specificity": (specificity, {"zero_division": 0}, 0.6667, [0.0000, 0.3333]),
}


@pytest.mark.parametrize("name", list(TM_BINARY))
def test_torchmetrics_binary_examples(name: str) -> None:
    fn, kw, want, want_samplewise = TM_BINARY[name]
    for p in (BIN_P_INT, BIN_P_FLOAT):
        assert tm_round(fn(p, BIN_T, mode="binary", **kw)) == want
    np.testing.assert_array_equal(tm_round(rows(fn, MD_P, MD_T, mode="binary", **kw)), want_samplewise)
    # our per_image mean is the mean of their samplewise values
    got = fn(MD_P, MD_T, mode="binary", per_image=True, **kw).item()
    assert abs(got - sum(want_samplewise) / 2) <= 1e-4


def test_torchmetrics_binary_jaccard_examples() -> None:
    # binary_jaccard_index: target [1, 1, 0, 0], preds [0, 1, 0, 0] or [0.35, 0.85, 0.48, 0.01] -> 0.5
    t = tensor([[1, 1, 0, 0]])
    for p in (tensor([[0, 1, 0, 0]]), tensor([[0.35, 0.85, 0.48, 0.01]])):
        assert iou(p, t, mode="binary").item() == 0.5


# multiclass examples on target [2, 1, 0, 0] (default average "macro"; per class average=None) and the multidim
# example (samplewise macro; samplewise per class). multiclass_accuracy is our recall (see the module docstring).
TM_MULTICLASS = {
    "accuracy": (recall, 0.8333, [0.5000, 1.0000, 1.0000], [0.5000, 0.2778], [[1.0, 0.0, 0.5], [0.0, 0.3333, 0.5]]),
    "precision": (
        precision,
        0.8333,
        [1.0000, 0.5000, 1.0000],
        [0.3889, 0.2778],
        [[0.6667, 0.0, 0.5], [0.0, 0.5, 0.3333]],
    ),
    "recall": (recall, 0.8333, [0.5000, 1.0000, 1.0000], [0.5000, 0.2778], [[1.0, 0.0, 0.5], [0.0, 0.3333, 0.5]]),
    "f1_score": (dice, 0.7778, [0.6667, 0.6667, 1.0000], [0.4333, 0.2667], [[0.8, 0.0, 0.5], [0.0, 0.4, 0.4]]),
    "specificity": (
        specificity,
        0.8889,
        [1.0000, 0.6667, 1.0000],
        [0.7500, 0.6556],
        [[0.75, 0.75, 0.75], [0.8, 0.6667, 0.5]],
    ),
    "jaccard_index": (iou, 0.6667, None, None, None),
}


@pytest.mark.parametrize("name", list(TM_MULTICLASS))
def test_torchmetrics_multiclass_examples(name: str) -> None:
    fn, want_macro, want_none, want_sw_macro, want_sw_none = TM_MULTICLASS[name]
    kw: dict[str, Any] = {"mode": "multiclass", "num_classes": 3}
    for p in (MC_P_INT, MC_P_SCORES):
        assert tm_round(fn(p, MC_T, **kw)) == want_macro
        if want_none is not None:
            np.testing.assert_array_equal(tm_round(fn(p, MC_T, average="none", **kw)), want_none)
    if want_sw_macro is not None:
        np.testing.assert_array_equal(tm_round(rows(fn, MCD_P, MCD_T, **kw)), want_sw_macro)
        np.testing.assert_array_equal(tm_round(rows(fn, MCD_P, MCD_T, average="none", **kw)), want_sw_none)


def test_torchmetrics_multiclass_task_wrapper_examples() -> None:
    # precision/recall/specificity(task="multiclass") on preds [2, 0, 2, 1], target [1, 1, 2, 0]
    p, t = tensor([[2, 0, 2, 1]]), tensor([[1, 1, 2, 0]])
    kw: dict[str, Any] = {"mode": "multiclass", "num_classes": 3}
    assert tm_round(precision(p, t, **kw)) == 0.1667
    assert tm_round(precision(p, t, average="micro", **kw)) == 0.25
    assert tm_round(recall(p, t, **kw)) == 0.3333
    assert tm_round(recall(p, t, average="micro", **kw)) == 0.25
    assert tm_round(specificity(p, t, **kw)) == 0.6111
    assert tm_round(specificity(p, t, average="micro", **kw)) == 0.625
    # accuracy(task="multiclass", num_classes=4): preds [0, 2, 1, 3], target [0, 1, 2, 3] -> 0.5 (macro: recall)
    p4, t4 = tensor([[0, 2, 1, 3]]), tensor([[0, 1, 2, 3]])
    assert recall(p4, t4, mode="multiclass", num_classes=4).item() == 0.5
    assert accuracy(p4, t4, mode="multiclass", num_classes=4, average="micro").item() == 0.5
    # jaccard_index(task="multiclass", num_classes=2) (doctest seed 42): a block of a random mask flipped -> 0.9660
    torch.manual_seed(42)
    target = torch.randint(0, 2, (10, 25, 25))
    pred = target.clone()
    pred[2:5, 7:13, 9:15] = 1 - pred[2:5, 7:13, 9:15]
    assert tm_round(iou(pred, target, mode="multiclass", num_classes=2)) == 0.9660


# multilabel examples: macro (torchmetrics keeps a 0/0 label as 0: zero_division=0) and per label, then the
# multidim example's samplewise macro and per label (label 0 of image 1 is never predicted: precision 0/0 -> 0)
TM_MULTILABEL = {
    "accuracy": (accuracy, 0.6667, [1.0, 0.5, 0.5], [0.3333, 0.1667], [[0.5, 0.5, 0.0], [0.0, 0.0, 0.5]]),
    "precision": (precision, 0.5, [1.0, 0.0, 0.5], [0.3333, 0.0], [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]),
    "recall": (recall, 0.6667, [1.0, 0.0, 1.0], [0.6667, 0.0], [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
    "f1_score": (dice, 0.5556, [1.0, 0.0, 0.6667], [0.4444, 0.0], [[0.6667, 0.6667, 0.0], [0.0, 0.0, 0.0]]),
    "specificity": (specificity, 0.6667, [1.0, 1.0, 0.0], [0.0, 0.3333], [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "jaccard_index": (iou, 0.5, None, None, None),
}


@pytest.mark.parametrize("name", list(TM_MULTILABEL))
def test_torchmetrics_multilabel_examples(name: str) -> None:
    fn, want_macro, want_none, want_sw_macro, want_sw_none = TM_MULTILABEL[name]
    kw: dict[str, Any] = {"mode": "multilabel", "zero_division": 0}
    for p in (ML_P_INT, ML_P_FLOAT):
        assert tm_round(fn(p, ML_T, **kw)) == want_macro
        if want_none is not None:
            np.testing.assert_array_equal(tm_round(fn(p, ML_T, average="none", **kw)), want_none)
    if want_sw_macro is not None:
        np.testing.assert_array_equal(tm_round(rows(fn, MD_P, MD_T, **kw)), want_sw_macro)
        np.testing.assert_array_equal(tm_round(rows(fn, MD_P, MD_T, average="none", **kw)), want_sw_none)
        # the streaming class, one image per update, with per_image: the mean of the samplewise macro values
        m = SegmentationMetrics(mode="multilabel", num_classes=3, average="macro", per_image=True, zero_division=0)
        for i in range(2):
            m.update(MD_P[i : i + 1], MD_T[i : i + 1])
        got = m.compute()[fn.__name__].item()
        assert abs(got - sum(want_sw_macro) / 2) <= 1e-4


# ------------------------------------------------------------------------------------------- segmentation metrics
# dice_score / DiceScore, mean_iou / MeanIoU: random inputs of the doctests, drawn the same way. The one-hot
# input_format treats each channel as its own mask (multilabel); "index" is multiclass. average="micro" and the
# per-class values are per sample (our rows); aggregation_level="global" is per_image=False. mean_iou gives -1 for
# a class absent from both (zero_division=-1 with average="none"); its mean over classes leaves those out
# (zero_division="nan").


def test_torchmetrics_dice_score_examples() -> None:
    # functional/segmentation/dice.py, one-hot example (manual_seed 42)
    torch.manual_seed(42)
    p, t = torch.randint(0, 2, (4, 5, 16, 16)), torch.randint(0, 2, (4, 5, 16, 16))
    kw: dict[str, Any] = {"mode": "multilabel"}
    np.testing.assert_array_equal(tm_round(rows(dice, p, t, average="micro", **kw)), [0.4842, 0.4968, 0.5053, 0.4902])
    want = [
        [0.4724, 0.5185, 0.4710, 0.5062, 0.4500],
        [0.4571, 0.4980, 0.5191, 0.4380, 0.5649],
        [0.5428, 0.4904, 0.5358, 0.4830, 0.4724],
        [0.4715, 0.4925, 0.4797, 0.5267, 0.4788],
    ]
    np.testing.assert_array_equal(tm_round(rows(dice, p, t, average="none", **kw)), want)
    assert tm_round(dice(p, t, average="macro", **kw)) == 0.4942
    # generalized_dice_score per_class=True gives the same per-class values (its docstring, same draws)
    # index example (manual_seed 42)
    torch.manual_seed(42)
    p, t = torch.randint(0, 5, (4, 16, 16)), torch.randint(0, 5, (4, 16, 16))
    kw = {"mode": "multiclass", "num_classes": 5}
    np.testing.assert_array_equal(tm_round(rows(dice, p, t, average="micro", **kw)), [0.2031, 0.1914, 0.2266, 0.1641])
    want = [
        [0.1731, 0.1667, 0.2400, 0.2424, 0.1947],
        [0.2245, 0.2247, 0.2321, 0.1132, 0.1682],
        [0.2500, 0.2476, 0.1887, 0.1818, 0.2718],
        [0.1308, 0.1800, 0.1980, 0.1607, 0.1522],
    ]
    np.testing.assert_array_equal(tm_round(rows(dice, p, t, average="none", **kw)), want)
    assert tm_round(dice(p, t, average="macro", **kw)) == 0.1965
    # segmentation/dice.py DiceScore (doctest seed 42): the mean over samples of each sample's value; streamed in
    # two batches of two images
    torch.manual_seed(42)
    p, t = torch.randint(0, 2, (4, 5, 16, 16)), torch.randint(0, 2, (4, 5, 16, 16))
    for average, want_mod in (("micro", 0.4941), ("none", [0.4860, 0.4999, 0.5014, 0.4885, 0.4915])):
        m = SegmentationMetrics(mode="multilabel", num_classes=5, metrics=("dice",), average=average, per_image=True)
        m.update(p[:2], t[:2])
        m.update(p[2:], t[2:])
        np.testing.assert_array_equal(tm_round(m.compute()["dice"]), want_mod)


def test_torchmetrics_mean_iou_examples() -> None:
    # functional/segmentation/mean_iou.py
    gen = torch.Generator
    p = torch.randint(0, 2, (4, 5, 16, 16), generator=gen().manual_seed(42))
    t = torch.randint(0, 2, (4, 5, 16, 16), generator=gen().manual_seed(43))
    kw: dict[str, Any] = {"mode": "multilabel"}
    np.testing.assert_array_equal(tm_round(rows(iou, p, t, **kw)), [0.3323, 0.3336, 0.3397, 0.3435])
    got = rows(iou, p, t, include_background=False, **kw)
    np.testing.assert_array_equal(tm_round(got), [0.3250, 0.3258, 0.3307, 0.3398])
    want = [
        [0.3617, 0.3128, 0.3366, 0.3242, 0.3263],
        [0.3646, 0.2893, 0.3297, 0.3073, 0.3770],
        [0.3756, 0.3168, 0.3505, 0.3400, 0.3155],
        [0.3579, 0.3317, 0.3797, 0.3523, 0.2957],
    ]
    np.testing.assert_array_equal(tm_round(rows(iou, p, t, average="none", **kw)), want)
    p = torch.randint(0, 2, (4, 16, 16), generator=gen().manual_seed(42))
    t = torch.randint(0, 2, (4, 16, 16), generator=gen().manual_seed(43))
    kw = {"mode": "multiclass", "num_classes": 5}
    np.testing.assert_array_equal(tm_round(rows(iou, p, t, **kw)), [0.3617, 0.3128, 0.3047, 0.3499])
    want = [
        [0.3617, 0.3617, -1.0, -1.0, -1.0],
        [0.3128, 0.3128, -1.0, -1.0, -1.0],
        [0.2727, 0.3366, -1.0, -1.0, -1.0],
        [0.3756, 0.3242, -1.0, -1.0, -1.0],
    ]
    np.testing.assert_array_equal(tm_round(rows(iou, p, t, average="none", zero_division=-1, **kw)), want)
    # segmentation/mean_iou.py MeanIoU: the mean over samples (per_image=True); with input_format="index" the
    # (10, 3, 128, 128) tensors are ten 3x128x128 volumes of class indices 0/1 (class 2 absent: -1)
    p = torch.randint(0, 2, (10, 3, 128, 128), generator=gen().manual_seed(42))
    t = torch.randint(0, 2, (10, 3, 128, 128), generator=gen().manual_seed(43))
    kw = {"mode": "multilabel", "per_image": True}
    assert tm_round(iou(p, t, **kw)) == 0.3336
    np.testing.assert_array_equal(tm_round(iou(p, t, average="none", **kw)), [0.3361, 0.3340, 0.3308])
    got = iou(p, t, average="none", include_background=False, **kw)
    np.testing.assert_array_equal(tm_round(got), [0.3340, 0.3308])
    got = iou(p, t, mode="multiclass", num_classes=3, per_image=True, average="none", zero_division=-1)
    np.testing.assert_array_equal(tm_round(got), [0.3334, 0.3336, -1.0])


def test_torchmetrics_generalized_dice_examples() -> None:
    # functional/segmentation/generalized_dice.py (doctest seed 42, both examples in one docstring: the index
    # example draws after the one-hot one). Per sample: 1 - generalized_dice_loss(smooth=0, per_image=True) on
    # the hard maps ("square" weights); per_class=True: the Dice of each class (the weight cancels).
    torch.manual_seed(42)
    p, t = torch.randint(0, 2, (4, 5, 16, 16)), torch.randint(0, 2, (4, 5, 16, 16))
    gdl: dict[str, Any] = {"from_logits": False, "smooth": 0.0, "per_image": True, "reduction": "none"}
    got = 1.0 - generalized_dice_loss(p.double(), t, mode="multilabel", **gdl)
    np.testing.assert_array_equal(tm_round(got), [0.4830, 0.4935, 0.5044, 0.4880])
    p, t = torch.randint(0, 5, (4, 16, 16)), torch.randint(0, 5, (4, 16, 16))
    onehot = torch.nn.functional.one_hot(p, 5).movedim(-1, 1).double()
    got = 1.0 - generalized_dice_loss(onehot, t, mode="multiclass", **gdl)
    np.testing.assert_array_equal(tm_round(got), [0.1991, 0.1971, 0.2350, 0.2216])
    want = [
        [0.1714, 0.2500, 0.1304, 0.2524, 0.2069],
        [0.1837, 0.2162, 0.0962, 0.2692, 0.1895],
        [0.3866, 0.1348, 0.2526, 0.2301, 0.2083],
        [0.1978, 0.2804, 0.1714, 0.1915, 0.2783],
    ]
    np.testing.assert_array_equal(tm_round(rows(dice, p, t, mode="multiclass", num_classes=5, average="none")), want)


def test_torchmetrics_hausdorff_examples() -> None:
    # functional/segmentation/hausdorff_distance.py and segmentation/hausdorff_distance.py (doctest seed 42):
    # edges = mask minus its erosion by the cross, the border counting as background; exact Euclidean distances;
    # include_background=False by default; per sample and class: our hausdorff(boundary="voxel", connectivity=1,
    # per_image=True, average="none"). The class HausdorffDistance averages over samples and classes.
    torch.manual_seed(42)
    p, t = torch.randint(0, 2, (4, 5, 16, 16)), torch.randint(0, 2, (4, 5, 16, 16))
    kw: dict[str, Any] = {"mode": "multilabel", "include_background": False, "boundary": "voxel", "per_image": True}
    want = [
        [2.0000, 1.4142, 2.0000, 2.0000],
        [1.4142, 2.0000, 2.0000, 2.0000],
        [2.0000, 2.0000, 1.4142, 2.0000],
        [2.0000, 2.8284, 2.0000, 2.2361],
    ]
    np.testing.assert_array_equal(tm_round(hausdorff(p, t, average="none", **kw)), want)
    torch.manual_seed(42)
    p, t = torch.randint(0, 2, (4, 5, 16, 16)), torch.randint(0, 2, (4, 5, 16, 16))
    assert tm_round(hausdorff(p, t, average="macro", **kw)) == 1.9567


# ============================================================================================================ medpy
# loli/medpy, tests/metric_/binary.py (commit d6abf410). medpy's 1-D arrays are one row of a 2-D image here (ours
# take 2-D and 3-D images only); medpy's surface is the mask minus its erosion (boundary="voxel"); asd(result,
# reference) is our asd (pred to gt), assd pools both directions (ours).
MEDPY_MIN_RESULT = torch.tensor([[[1, 0]]])
MEDPY_MIN_REFERENCE = torch.tensor([[[0, 1]]])
MEDPY_SYM_RESULT = torch.tensor([[[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]])
MEDPY_SYM_REFERENCE = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]])


def test_medpy_binary_vectors() -> None:
    kw: dict[str, Any] = {"mode": "binary", "boundary": "voxel"}
    r, g = MEDPY_MIN_RESULT, MEDPY_MIN_REFERENCE
    assert asd(r, r, **kw).item() == 0.0
    assert assd(r, r, **kw).item() == 0.0
    assert asd(r, g, **kw).item() == 1.0
    assert assd(r, g, **kw).item() == 1.0
    # voxelspacing=[2] along the row (the added axis has one pixel: its spacing plays no part)
    assert asd(r, g, spacing=(1.0, 2.0), **kw).item() == 2.0
    assert assd(r, g, spacing=(1.0, 2.0), **kw).item() == 2.0
    # asd is not symmetric, assd is
    r, g = MEDPY_SYM_RESULT, MEDPY_SYM_REFERENCE
    assert asd(r, g, **kw).item() != asd(g, r, **kw).item()
    assert assd(r, g, **kw).item() == assd(g, r, **kw).item()
    assert masd(r, g, **kw).item() == masd(g, r, **kw).item()


def test_monai_ignore_index_consistency() -> None:
    # Project-MONAI/MONAI tests/metrics/test_ignore_index_metrics.py (commit 03dd4966), test_metric_ignore_consistency
    # (ignore_index=255: MONAI drops the pixels whose one-hot y is all zero; ours: those pixels hold 255 in an index
    # target). Predictions that differ only on the ignored pixels give the same value, for the region metrics
    # (DiceMetric, MeanIoU, ConfusionMatrixMetric "accuracy") and the surface ones (ignored pixels are background
    # in both masks). Their ignore_index inside [0, C) zeroes a channel instead: not ours (see :func:`confusion`).
    y_pred1 = torch.zeros((1, 2, 4, 4))
    y_pred1[:, 1, 0:2, :] = 1.0
    y_pred2 = y_pred1.clone()
    y_pred2[:, 1, 2:4, :] = 1.0
    y = torch.full((1, 4, 4), 255)
    y[:, 0:2, 0:2] = 1  # their y[:, 1, 0:2, 0:2] = 1
    y[:, 0:2, 2:4] = 0  # their y[:, 0, 0:2, 2:4] = 1; rows 2:4 all zero in their one-hot y
    kw: dict[str, Any] = {"mode": "multiclass", "ignore_index": 255, "include_background": True}
    for fn in (dice, iou, accuracy):
        assert torch.equal(fn(y_pred1, y, **kw), fn(y_pred2, y, **kw)), fn.__name__
    y_kept = y.clamp(max=1)  # control: the same pixels counted make the two predictions differ
    assert not torch.equal(dice(y_pred1, y_kept, mode="multiclass"), dice(y_pred2, y_kept, mode="multiclass"))
    for fn in (hausdorff, assd):
        assert torch.equal(fn(y_pred1, y, **kw), fn(y_pred2, y, **kw)), fn.__name__
