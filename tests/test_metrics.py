"""seglosses.metrics: confusion counts and the six metrics against a NumPy reference, streaming == one call,
agreement with torchmetrics where the definitions coincide, and every bad-input message.

The reference below (``ref_confusion``, ``ref_metric``) is NumPy float64/integer with loops and never imports
seglosses; its formulas are the per-class definitions (TP, FP, FN, TN ratios) and the 0/0 edge rules.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seglosses.metrics as M
from seglosses.metrics import SegmentationMetrics, confusion

try:  # only the tests marked `needs_torchmetrics` skip without it (the NumPy-reference tests always run)
    import torchmetrics.functional.classification as TMC  # noqa: N812
    import torchmetrics.functional.segmentation as TMS  # noqa: N812
except ImportError:
    TMC = TMS = None
needs_torchmetrics = pytest.mark.skipif(TMC is None, reason="torchmetrics is not installed")

METRICS = ["dice", "iou", "precision", "recall", "specificity", "accuracy"]
MODES = ["binary", "multiclass", "multilabel"]
SPATIAL = {2: (3, 4), 3: (2, 3, 2)}
IGNORE = 255


# ----------------------------------------------------------------------------------------------- NumPy reference


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def ref_confusion(x, t, *, mode, threshold=0.5, from_logits=False, ignore_index=None, num_classes=None):
    """Per-image counts (tp, fp, fn, tn), each int64 (N, C), by looping over images and classes."""
    x, t = np.asarray(x), np.asarray(t)
    n = x.shape[0]
    hard = not np.issubdtype(x.dtype, np.floating)
    if mode == "multiclass":
        c = num_classes if hard else x.shape[1]
        pred = x if hard else np.argmax(x, axis=1)  # first maximum, as torch.argmax
        lab = t if t.ndim == pred.ndim else np.argmax(t, axis=1)
        pred, lab = pred.reshape(n, -1), lab.reshape(n, -1)
        valid = np.ones_like(lab, dtype=bool) if ignore_index is None else lab != ignore_index
        out = np.zeros((4, n, c), dtype=np.int64)
        for i in range(n):
            for k in range(c):
                p, g, v = pred[i] == k, lab[i] == k, valid[i]
                out[:, i, k] = [(p & g & v).sum(), (p & ~g & v).sum(), (~p & g & v).sum(), (~p & ~g & v).sum()]
        return tuple(out)
    c = 1 if mode == "binary" else x.shape[1]
    x, t = x.reshape(n, c, -1), t.reshape(n, c, -1)
    if hard:
        pred = x.astype(bool)
    else:
        pred = (_sigmoid(x.astype(np.float64)) if from_logits else x.astype(np.float64)) > threshold
    valid = np.ones_like(t, dtype=bool) if ignore_index is None else t != ignore_index
    g = t == 1
    out = np.zeros((4, n, c), dtype=np.int64)
    for i in range(n):
        for k in range(c):
            p, gk, v = pred[i, k], g[i, k], valid[i, k]
            out[:, i, k] = [(p & gk & v).sum(), (p & ~gk & v).sum(), (~p & gk & v).sum(), (~p & ~gk & v).sum()]
    return tuple(out)


def _div(num: float, den: float, zd: float) -> float:
    return num / den if den > 0 else zd


def _nanmean(values) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _formula(name, tp, fp, fn, tn, zd):
    return {
        "dice": lambda: _div(2 * tp, 2 * tp + fp + fn, zd),
        "iou": lambda: _div(tp, tp + fp + fn, zd),
        "precision": lambda: _div(tp, tp + fp, zd),
        "recall": lambda: _div(tp, tp + fn, zd),
        "specificity": lambda: _div(tn, tn + fp, zd),
        "accuracy": lambda: _div(tp + tn, tp + fp + fn + tn, zd),
    }[name]()


def ref_metric(
    name,
    x,
    t,
    *,
    mode,
    average="macro",
    per_image=False,
    include_background=True,
    zero_division="nan",
    **kw,
):
    """The metric definitions and averaging rules in plain Python over the reference counts."""
    tp, fp, fn, tn = ref_confusion(x, t, mode=mode, **kw)
    if not per_image:
        tp, fp, fn, tn = (a.sum(0, keepdims=True) for a in (tp, fp, fn, tn))
    if not include_background and mode != "binary":
        tp, fp, fn, tn = (a[:, 1:] for a in (tp, fp, fn, tn))
    zd = math.nan if zero_division == "nan" else float(zero_division)
    rows = []
    for i in range(tp.shape[0]):
        if average == "micro":
            s = [int(a[i].sum()) for a in (tp, fp, fn, tn)]
            if name == "accuracy" and mode == "multiclass":
                rows.append(_div(s[0], s[0] + s[2], zd))  # pixel accuracy over the kept classes
            else:
                rows.append(_formula(name, *s, zd))
            continue
        per_class = [
            _formula(name, int(tp[i, k]), int(fp[i, k]), int(fn[i, k]), int(tn[i, k]), zd) for k in range(tp.shape[1])
        ]
        rows.append(_nanmean(per_class) if average == "macro" else per_class)
    rows = np.array(rows, dtype=np.float64)
    if not per_image:
        return rows[0]
    if rows.ndim == 1:
        return np.float64(_nanmean(rows.tolist()))
    return np.array([_nanmean(rows[:, k].tolist()) for k in range(rows.shape[1])])


# ----------------------------------------------------------------------------------------------- input factory


def make_case(mode, *, dims=2, n=3, c=4, seed=0, ignore=False, logits=False, empty_image=True):
    """Float64 scores and an int64 target (NumPy); small images and C=4 so that absent classes occur.

    ``empty_image`` makes the last image's target all background (class 0 / all zeros), so that per-image zero
    denominators happen. ``ignore`` marks about a fifth of the target with IGNORE.
    """
    rng = np.random.default_rng(seed)
    s = SPATIAL[dims]
    if mode == "multiclass":
        x = rng.normal(size=(n, c, *s))
        t = rng.integers(0, c, size=(n, *s))
        if empty_image:
            t[-1] = 0
    else:
        ch = 1 if mode == "binary" else c
        z = rng.normal(scale=2.0, size=(n, ch, *s))
        x = z if logits else _sigmoid(z)
        t = (rng.random((n, ch, *s)) < 0.4).astype(np.int64)
        if empty_image:
            t[-1] = 0
    if ignore:
        mask = rng.random(t.shape) < 0.2
        t = np.where(mask, IGNORE, t)
    return x, t


def tt(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def assert_same(actual: torch.Tensor, expected, *, exact=False):
    """Equal values with NaN in the same places (exact, or to 1e-9: per-image means round to 2**-32)."""
    expected = torch.as_tensor(np.asarray(expected), dtype=torch.float64)
    assert actual.dtype == torch.float64
    assert tuple(actual.shape) == tuple(expected.shape)
    if exact:
        assert torch.equal(actual.isnan(), expected.isnan()), (actual, expected)
        assert torch.equal(actual.nan_to_num(-7.0), expected.nan_to_num(-7.0)), (actual, expected)
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-9, equal_nan=True)


# ----------------------------------------------------------------------------------------------- reference equality


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_confusion_matches_reference(mode, dims, per_image, ignore):
    x, t = make_case(mode, dims=dims, ignore=ignore, seed=dims)
    ig = IGNORE if ignore else None
    got = confusion(tt(x), tt(t), mode=mode, ignore_index=ig, per_image=per_image)
    want = ref_confusion(x, t, mode=mode, ignore_index=ig)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.int64
        w = w if per_image else w.sum(0)
        assert torch.equal(g, tt(w))
    # every kept element is counted exactly once per image and class
    total = sum(confusion(tt(x), tt(t), mode=mode, ignore_index=ig, per_image=True))
    kept = np.ones_like(t, dtype=bool) if ig is None else t != IGNORE
    if mode == "multiclass":
        kept = np.repeat(kept.reshape(kept.shape[0], 1, -1).sum(-1), 4, axis=1)
    else:
        kept = kept.reshape(*kept.shape[:2], -1).sum(-1)
    assert torch.equal(total, tt(kept))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
def test_confusion_include_background_drops_channel_zero(mode, per_image, ignore):
    x, t = make_case(mode, dims=2, ignore=ignore, seed=31)
    ig = IGNORE if ignore else None
    got = confusion(tt(x), tt(t), mode=mode, ignore_index=ig, per_image=per_image, include_background=False)
    want = ref_confusion(x, t, mode=mode, ignore_index=ig)
    for g, w in zip(got, want, strict=True):
        w = w if per_image else w.sum(0)
        w = w if mode == "binary" else w[..., 1:]  # binary: the one channel is the foreground, always kept
        assert g.dtype == torch.int64
        assert torch.equal(g, tt(np.ascontiguousarray(w)))


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_confusion_include_background_matches_monai_get_confusion_matrix(mode):
    monai_metrics = pytest.importorskip("monai.metrics")
    x, t = make_case(mode, dims=3, seed=32)
    if mode == "multiclass":  # MONAI takes one-hot predictions and targets
        pred = torch.nn.functional.one_hot(tt(x).argmax(1), 4).movedim(-1, 1)
        onehot = torch.nn.functional.one_hot(tt(t), 4).movedim(-1, 1)
    else:
        pred, onehot = (tt(x) > 0.5).long(), tt(t)
    theirs = monai_metrics.get_confusion_matrix(pred.float(), onehot.float(), include_background=False)
    tp, fp, fn, tn = confusion(tt(x), tt(t), mode=mode, per_image=True, include_background=False)
    assert theirs.shape == (3, 3, 4)  # (N, C - 1, [tp, fp, tn, fn])
    for ours, k in ((tp, 0), (fp, 1), (tn, 2), (fn, 3)):
        assert torch.equal(ours, theirs[..., k].long())


def test_zero_division_negative_marker_for_an_absent_class():
    # class 2 is neither predicted nor in the target: its IoU is 0/0, which gets the marker -1 (torchmetrics'
    # per-class IoU marker); the other classes keep their values, and "nan" still leaves it out of the macro mean
    pred = torch.tensor([[[0, 1, 1, 0]]])
    target = torch.tensor([[[0, 1, 0, 0]]])
    kw = {"mode": "multiclass", "num_classes": 3}
    per_class = M.iou(pred, target, average="none", zero_division=-1, **kw)
    assert per_class.tolist() == [2 / 3, 1 / 2, -1.0]
    assert M.dice(pred, target, average="none", zero_division=-1.5, **kw)[2].item() == -1.5
    assert M.iou(pred, target, average="macro", zero_division="nan", **kw).item() == pytest.approx((2 / 3 + 1 / 2) / 2)
    # a negative placeholder is averaged like any value (the documented caveat): (2/3 + 1/2 - 1) / 3
    assert M.iou(pred, target, average="macro", zero_division=-1, **kw).item() == pytest.approx((2 / 3 + 1 / 2 - 1) / 3)
    streaming = SegmentationMetrics(metrics=("iou",), average="none", zero_division=-1, **kw)
    streaming.update(pred, target)
    assert streaming.compute()["iou"].tolist() == [2 / 3, 1 / 2, -1.0]
    if TMC is not None:
        theirs = TMC.multiclass_jaccard_index(pred.flatten(), target.flatten(), 3, average="none", zero_division=-1)
        torch.testing.assert_close(per_class.float(), theirs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("average", ["none", "macro", "micro"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("zero_division", ["nan", 0.0, 1.0])
def test_metrics_match_reference(mode, dims, average, per_image, include_background, zero_division):
    ignore = dims == 3  # ignore_index exercised on half the grid
    x, t = make_case(mode, dims=dims, ignore=ignore, seed=7 + dims)
    kw = {
        "mode": mode,
        "average": average,
        "per_image": per_image,
        "include_background": include_background,
        "zero_division": zero_division,
        "ignore_index": IGNORE if ignore else None,
    }
    for name in METRICS:
        got = getattr(M, name)(tt(x), tt(t), **kw)
        assert_same(got, ref_metric(name, x, t, **kw), exact=not per_image)


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("from_logits", [False, True])
def test_metrics_threshold_and_logits_match_reference(mode, threshold, from_logits):
    x, t = make_case(mode, seed=3, logits=from_logits, ignore=True)
    kw = {"mode": mode, "threshold": threshold, "from_logits": from_logits, "ignore_index": IGNORE}
    got = confusion(tt(x), tt(t), per_image=True, **kw)
    for g, w in zip(got, ref_confusion(x, t, **kw), strict=True):
        assert torch.equal(g, tt(w))
    for name in METRICS:
        assert_same(getattr(M, name)(tt(x), tt(t), average="none", **kw), ref_metric(name, x, t, average="none", **kw))


@pytest.mark.parametrize("mode", MODES)
def test_metrics_hard_label_input_matches_reference(mode):
    x, t = make_case(mode, seed=11, ignore=True)
    hard = np.argmax(x, axis=1) if mode == "multiclass" else (x > 0.5).astype(np.int64)
    kw = {"mode": mode, "ignore_index": IGNORE, "num_classes": 4 if mode != "binary" else 1}
    for name in METRICS:
        want = ref_metric(name, hard, t, average="none", **kw)
        assert_same(getattr(M, name)(tt(hard), tt(t), average="none", **kw), want, exact=True)
        # the same as the scores they came from, and bool labels as int labels
        assert_same(getattr(M, name)(tt(x), tt(t), average="none", **kw), want, exact=True)
        if mode != "multiclass":
            assert_same(getattr(M, name)(tt(hard).bool(), tt(t), average="none", **kw), want, exact=True)


# ----------------------------------------------------------------------------------------------- metamorphic checks


def test_confusion_onehot_target_equals_index_target():
    x, t = make_case("multiclass", seed=5)
    onehot = torch.nn.functional.one_hot(tt(t), 4).movedim(-1, 1)
    for target in (onehot, onehot.float(), onehot.bool()):
        for a, b in zip(
            confusion(tt(x), target, mode="multiclass"), confusion(tt(x), tt(t), mode="multiclass"), strict=True
        ):
            assert torch.equal(a, b)


def test_confusion_binary_without_channel_dim_equals_with():
    x, t = make_case("binary", seed=6)
    a = confusion(tt(x), tt(t), mode="binary", per_image=True)
    b = confusion(tt(x[:, 0]), tt(t[:, 0]), mode="binary", per_image=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_confusion_ignore_index_equals_pixels_removed():
    x, t = make_case("multiclass", seed=8, ignore=True)
    keep = t != IGNORE
    flat_x = tt(np.moveaxis(x, 1, -1)[keep].T[None, :, :, None])  # (1, C, kept, 1)
    flat_t = tt(t[keep][None, :, None])
    a = confusion(tt(x), tt(t), mode="multiclass", ignore_index=IGNORE)
    b = confusion(flat_x, flat_t, mode="multiclass")
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_confusion_argmax_ties_go_to_lowest_index():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 1, 0, 0] = x[0, 2, 0, 0] = 1.0  # tie between classes 1 and 2 at one pixel; all three tie elsewhere
    t = torch.tensor([[[1, 0], [0, 0]]])
    tp, fp, fn, tn = confusion(x, t, mode="multiclass")
    assert tp.tolist() == [3, 1, 0]
    assert fp.tolist() == [0, 0, 0]


def test_confusion_threshold_is_strict():
    # p == threshold is negative (positive when p > threshold, as torchmetrics); the same for logits at logit(t)
    p = torch.tensor([[[0.5, 0.50001], [0.3, 0.3]]], dtype=torch.float64)
    t = torch.ones_like(p)
    assert confusion(p, t, mode="binary")[0].tolist() == [1]
    assert confusion(p, t, mode="binary", threshold=0.3)[0].tolist() == [2]
    z = torch.tensor([[[0.0, 1e-9], [-1.0, 5.0]]], dtype=torch.float64)
    assert confusion(z, t, mode="binary", from_logits=True)[0].tolist() == [2]


def test_confusion_from_logits_equals_sigmoid_probabilities():
    x, t = make_case("multilabel", seed=9, logits=True)
    a = confusion(tt(x), tt(t), mode="multilabel", from_logits=True, threshold=0.35)
    b = confusion(tt(x).sigmoid(), tt(t), mode="multilabel", threshold=0.35)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_metrics_low_precision_input(dtype):
    x, t = make_case("multiclass", seed=10)
    got = M.iou(tt(x).to(dtype), tt(t), mode="multiclass", average="none")
    want = ref_metric("iou", tt(x).to(dtype).double().numpy(), t, mode="multiclass", average="none")
    assert_same(got, want, exact=True)


def test_metrics_hand_values_edge_rules():
    # image 0: class 1 everywhere, predicted right; image 1: class 0 everywhere, predicted right (C = 2)
    pred = torch.tensor([[[1, 1]], [[0, 0]]])
    target = pred.clone()
    kw = {"mode": "multiclass", "num_classes": 2}
    # per image, average none: dice of class 1 is 1 in image 0 and NaN (absent from both) in image 1 -> mean 1
    assert M.dice(pred, target, average="none", per_image=True, **kw).tolist() == [1.0, 1.0]
    # with zero_division=0 the NaN image counts as 0 -> mean 0.5
    assert M.dice(pred, target, average="none", per_image=True, zero_division=0.0, **kw).tolist() == [0.5, 0.5]
    # multiclass micro accuracy without background: sum TP / sum (TP + FN) over class 1 = 2/2
    wrong = torch.tensor([[[1, 0]], [[0, 1]]])
    assert M.accuracy(wrong, target, average="micro", **kw).item() == 0.5  # pixel accuracy 2/4
    assert M.accuracy(wrong, target, average="micro", include_background=False, **kw).item() == 0.5  # 1/2
    assert M.accuracy(wrong, target, average="none", **kw).tolist() == [0.5, 0.5]  # (TP + TN) / 4
    only_fg = torch.tensor([[[1, 1]], [[0, 1]]])  # class 0 pixel predicted as 1; class 1 all right
    assert M.accuracy(only_fg, target, average="micro", include_background=False, **kw).item() == 1.0  # 2/2
    assert M.accuracy(only_fg, target, average="micro", **kw).item() == 0.75  # 3/4
    # macro: NaN classes left out, all NaN gives NaN
    assert math.isnan(M.recall(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), mode="binary").item())
    assert M.recall(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), mode="binary", zero_division=1.0).item() == 1
    # binary include_background=False keeps the one (foreground) class
    p, g = torch.tensor([[[0.9, 0.2]]]), torch.tensor([[[1, 1]]])
    assert M.recall(p, g, mode="binary", include_background=False).item() == 0.5


def test_metrics_every_pixel_ignored_and_empty_batch():
    t = torch.full((2, 3, 3), IGNORE)
    x = torch.randn(2, 3, 3, 3)
    assert [int(v.sum()) for v in confusion(x, t, mode="multiclass", ignore_index=IGNORE)] == [0, 0, 0, 0]
    assert M.dice(x, t, mode="multiclass", ignore_index=IGNORE).isnan().item()
    assert M.dice(x, t, mode="multiclass", ignore_index=IGNORE, per_image=True, average="none").isnan().all()
    assert M.dice(x, t, mode="multiclass", ignore_index=IGNORE, zero_division=1.0).item() == 1.0
    empty = confusion(torch.rand(0, 1, 4, 4), torch.zeros(0, 1, 4, 4), mode="binary", per_image=True)
    assert [tuple(v.shape) for v in empty] == [(0, 1)] * 4
    assert M.iou(torch.rand(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long), mode="multiclass").isnan().item()


def test_metrics_output_shapes():
    x, t = make_case("multiclass", seed=12)
    for per_image in (False, True):
        assert M.dice(tt(x), tt(t), mode="multiclass", average="none", per_image=per_image).shape == (4,)
        assert M.dice(tt(x), tt(t), mode="multiclass", average="none", include_background=False).shape == (3,)
        for average in ("macro", "micro"):
            assert M.dice(tt(x), tt(t), mode="multiclass", average=average, per_image=per_image).shape == ()
    xb, tb = make_case("binary", seed=12)
    assert M.dice(tt(xb), tt(tb), mode="binary", average="none").shape == (1,)


# ----------------------------------------------------------------------------------------------- streaming


def _equal_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(-7), b.nan_to_num(-7))


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 6), max_size=3),
    average=st.sampled_from(["none", "macro", "micro"]),
    per_image=st.booleans(),
    include_background=st.booleans(),
    zero_division=st.sampled_from(["nan", 0.0, 1.0, 0.25]),
    ignore=st.booleans(),
    dims=st.sampled_from([2, 3]),
)
def test_streaming_equals_one_call_on_concatenation(
    mode, seed, n, cuts, average, per_image, include_background, zero_division, ignore, dims
):
    c = 3
    x, t = make_case(mode, dims=dims, n=n, c=c, seed=seed, ignore=ignore, empty_image=seed % 2 == 0)
    kw = {
        "mode": mode,
        "average": average,
        "per_image": per_image,
        "include_background": include_background,
        "zero_division": zero_division,
        "ignore_index": IGNORE if ignore else None,
    }
    m = SegmentationMetrics(num_classes=1 if mode == "binary" else c, **kw)
    bounds = [0, *sorted(min(k, n) for k in cuts), n]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        m.update(tt(x[lo:hi]), tt(t[lo:hi]))  # empty batches included
    out = m.compute()
    assert list(out) == METRICS
    for name in METRICS:
        assert _equal_nan(out[name], getattr(M, name)(tt(x), tt(t), **kw)), name


def test_streaming_state_reset_and_reduce_hook():
    x, t = make_case("multiclass", seed=13)
    m = SegmentationMetrics(mode="multiclass", num_classes=4, metrics=("dice", "iou"))
    assert m.update(tt(x), tt(t)) is None
    assert sorted(m._state) == ["fn", "fp", "tn", "tp"]
    assert all(v.dtype == torch.int64 and v.shape == (4,) for v in m._state.values())
    assert m._reduce_state() is m._state  # identity until distributed sync goes there
    first = m.compute()
    m.reset()
    assert all(int(v.sum()) == 0 for v in m._state.values())
    m.update(tt(x), tt(t))
    assert all(_equal_nan(first[k], v) for k, v in m.compute().items())
    # per-image state: sums and counts of the kept classes, O(C) whatever the number of images
    p = SegmentationMetrics(mode="multiclass", num_classes=4, per_image=True, include_background=False)
    p.update(tt(x), tt(t))
    assert all(v.shape == (3,) and v.dtype == torch.int64 for v in p._state.values())
    assert len(p._state) == 3 * len(METRICS)  # integer parts, fractions and image counts


def test_streaming_default_average_is_none_and_keeps_options():
    m = SegmentationMetrics(mode="multilabel", num_classes=4, threshold=0.3, from_logits=True)
    x, t = make_case("multilabel", seed=14, logits=True)
    m.update(tt(x), tt(t))
    for name, value in m.compute().items():
        want = getattr(M, name)(tt(x), tt(t), mode="multilabel", average="none", threshold=0.3, from_logits=True)
        assert _equal_nan(value, want)
    assert "mode='multilabel'" in repr(m)


# ----------------------------------------------------------------------------------------------- torchmetrics
# Argument mapping (seglosses -> torchmetrics):
#   confusion(mode="multiclass")            -> multiclass_stat_scores(average=None) rows [tp, fp, tn, fn, support]
#   per_image=True (counts)                 -> multidim_average="samplewise"
#   mode="binary" / "multilabel"            -> binary_* / multilabel_*(num_labels=C), same threshold (p > t)
#   ignore_index=255                        -> ignore_index=255 (outside [0, C): see the jaccard note below)
#   dice / iou / precision / recall / specificity (average="none", zero_division=0)
#                                           -> *_f1_score / *_jaccard_index / *_precision / *_recall / *_specificity
#                                              (average="none"; their zero division gives 0)
#   accuracy(mode="multiclass", average="micro") -> multiclass_accuracy(average="micro") (pixel accuracy)
#   dice(per_image=False)                   -> segmentation.dice_score(aggregation_level="global", input_format="index")
#   dice(per_image=True)                    -> nanmean over images of dice_score(aggregation_level="samplewise")
# Where they differ (documented in the docstrings and pinned by test_torchmetrics_documented_differences):
#   - torchmetrics' classification "macro" drops classes absent from both prediction and target but keeps a class
#     with one zero denominator (never predicted: precision; absent from the target: recall) as zero_division=0;
#     zero_division="nan" here leaves every 0/0 out.
#   - multiclass_accuracy per class / macro is the recall TP / (TP + FN); here (TP + TN) / total.
#   - multiclass_jaccard_index with ignore_index inside [0, C) also drops that class from the averages.
#   - torchmetrics guesses logits from values outside [0, 1]; we pass probabilities.


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_image", [False, True])
@needs_torchmetrics
def test_confusion_agrees_with_torchmetrics_stat_scores(mode, per_image):
    x, t = make_case(mode, seed=21, ignore=True)
    md = "samplewise" if per_image else "global"
    if mode == "multiclass":
        s = TMC.multiclass_stat_scores(tt(x), tt(t), 4, average=None, multidim_average=md, ignore_index=IGNORE)
    elif mode == "binary":
        s = TMC.binary_stat_scores(tt(x), tt(t), multidim_average=md, ignore_index=IGNORE).unsqueeze(-2)
    else:
        s = TMC.multilabel_stat_scores(tt(x), tt(t), 4, average=None, multidim_average=md, ignore_index=IGNORE)
    tp, fp, fn, tn = confusion(tt(x), tt(t), mode=mode, ignore_index=IGNORE, per_image=per_image)
    assert torch.equal(torch.stack([tp, fp, tn, fn], -1), s[..., :4])


@pytest.mark.parametrize("mode", MODES)
@needs_torchmetrics
def test_metrics_agree_with_torchmetrics_per_class(mode):
    x, t = make_case(mode, seed=22, ignore=True)
    xs, ts = tt(x).float(), tt(t)
    ours = {
        k: getattr(M, k)(xs, ts, mode=mode, average="none", zero_division=0.0, ignore_index=IGNORE).float()
        for k in METRICS
    }
    kw = {"ignore_index": IGNORE}
    if mode == "multiclass":
        kw.update(num_classes=4, average="none")
        pre = "multiclass"
    elif mode == "multilabel":
        kw.update(num_labels=4, average="none")
        pre = "multilabel"
    else:
        pre = "binary"
    theirs = {
        "dice": getattr(TMC, f"{pre}_f1_score")(xs, ts, **kw),
        "iou": getattr(TMC, f"{pre}_jaccard_index")(xs, ts, **kw),
        "precision": getattr(TMC, f"{pre}_precision")(xs, ts, **kw),
        "recall": getattr(TMC, f"{pre}_recall")(xs, ts, **kw),
        "specificity": getattr(TMC, f"{pre}_specificity")(xs, ts, **kw),
    }
    if mode != "multiclass":  # per-class accuracy (TP + TN) / total: torchmetrics' too in these modes
        theirs["accuracy"] = getattr(TMC, f"{pre}_accuracy")(xs, ts, **kw)
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value.reshape(ours[name].shape), msg=name)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@needs_torchmetrics
def test_metrics_agree_with_torchmetrics_macro_micro_when_every_class_occurs(mode):
    # every class both predicted and present: no zero denominator, so the macro definitions coincide
    x, t = make_case(mode, n=4, seed=23, empty_image=False)
    xs, ts = tt(x).float(), tt(t)
    tp, fp, fn, _ = confusion(xs, ts, mode=mode)
    assert bool((tp + fp > 0).all() and (tp + fn > 0).all())
    pre = mode
    kw = {"num_classes": 4} if mode == "multiclass" else {"num_labels": 4}
    pairs = {
        "dice": "f1_score",
        "iou": "jaccard_index",
        "precision": "precision",
        "recall": "recall",
        "specificity": "specificity",
    }
    for average in ("macro", "micro"):
        for ours_name, tm_name in pairs.items():
            ours = getattr(M, ours_name)(xs, ts, mode=mode, average=average).float()
            theirs = getattr(TMC, f"{pre}_{tm_name}")(xs, ts, average=average, **kw)
            torch.testing.assert_close(ours, theirs, msg=f"{ours_name} {average}")
    if mode == "multiclass":  # pixel accuracy
        ours = M.accuracy(xs, ts, mode=mode, average="micro").float()
        torch.testing.assert_close(ours, TMC.multiclass_accuracy(xs, ts, average="micro", **kw))
    else:
        for average in ("macro", "micro"):
            ours = M.accuracy(xs, ts, mode=mode, average=average).float()
            torch.testing.assert_close(ours, TMC.multilabel_accuracy(xs, ts, average=average, **kw))


@needs_torchmetrics
def test_multiclass_pixel_accuracy_agrees_with_torchmetrics_with_ignore_index():
    x, t = make_case("multiclass", seed=24, ignore=True)
    ours = M.accuracy(tt(x), tt(t), mode="multiclass", average="micro", ignore_index=IGNORE).float()
    theirs = TMC.multiclass_accuracy(tt(x), tt(t), 4, average="micro", ignore_index=IGNORE)
    torch.testing.assert_close(ours, theirs)


@needs_torchmetrics
@pytest.mark.filterwarnings("ignore:dice_score metric currently defaults")
@pytest.mark.parametrize("average", ["none", "macro", "micro"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_agrees_with_torchmetrics_dice_score(average, per_image, include_background):
    # dice_score has NaN for 0/0 and nanmean for macro, as zero_division="nan" here; no ignore_index there
    x, t = make_case("multiclass", dims=3, n=4, seed=25)
    pred = tt(x).argmax(1)
    theirs = TMS.dice_score(
        pred,
        tt(t),
        num_classes=4,
        include_background=include_background,
        average=average,
        input_format="index",
        aggregation_level="samplewise" if per_image else "global",
    )
    theirs = theirs.double().nanmean(0) if per_image else theirs.double().squeeze(0)
    ours = M.dice(
        tt(x), tt(t), mode="multiclass", average=average, per_image=per_image, include_background=include_background
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6, equal_nan=True)


@needs_torchmetrics
def test_torchmetrics_documented_differences():
    # class 3 never in the target but predicted once; class 2 absent from both (C = 4)
    pred = torch.tensor([[[0, 1, 1, 3]]])
    target = torch.tensor([[[0, 1, 0, 1]]])
    kw = {"mode": "multiclass", "num_classes": 4}
    # macro recall: torchmetrics keeps class 3 (tp + fp + fn > 0, recall 0/0 -> 0) and drops class 2 (all zero)
    per_class = M.recall(pred, target, average="none", zero_division=0.0, **kw)
    tm_macro = TMC.multiclass_recall(pred, target, 4, average="macro")
    torch.testing.assert_close(tm_macro.double(), per_class[[0, 1, 3]].mean())
    assert M.recall(pred, target, average="macro", **kw).item() == pytest.approx((1 / 2 + 1 / 2) / 2)
    # multiclass accuracy per class: torchmetrics gives the recall, here (TP + TN) / total
    tm_acc = TMC.multiclass_accuracy(pred, target, 4, average="none")
    torch.testing.assert_close(tm_acc.double(), M.recall(pred, target, average="none", zero_division=0.0, **kw))
    assert M.accuracy(pred, target, average="none", **kw).tolist() == [0.75, 0.5, 1.0, 0.75]
    # jaccard with ignore_index inside [0, C): torchmetrics also drops that class from the macro mean (and, like
    # zero_division="nan" here, the classes absent from both prediction and target)
    tm_iou = TMC.multiclass_jaccard_index(pred, target, 4, average="macro", ignore_index=1, zero_division=0)
    ours = M.iou(pred, target, average="none", ignore_index=1, **kw)
    # kept pixels 0 and 2 only: class 1 predicted once there (never the target), classes 2 and 3 absent
    assert ours[:2].tolist() == [0.5, 0.0]
    assert ours[2:].isnan().all()
    assert M.iou(pred, target, average="macro", ignore_index=1, **kw).item() == 0.25
    torch.testing.assert_close(tm_iou.double(), ours[[0, 2, 3]].nanmean())


# ----------------------------------------------------------------------------------------------- bad input


def msg(fn: str, arg: str, *received: str) -> str:
    """``<fn>: `<arg>` ... <received> ...``, robust to the wording in between."""
    return f"{re.escape(fn)}: `{re.escape(arg)}`" + "".join(".*" + re.escape(r) for r in received)


def _mc():
    return torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))


BAD = [
    # (kwargs of the call, input/target override, error, expected pieces)
    (
        {"mode": "multi"},
        None,
        ValueError,
        ("mode", "'binary', 'multiclass', 'multilabel'", "got 'multi'", "did you mean"),
    ),
    ({"mode": "multiclass", "average": "mean"}, None, ValueError, ("average", "'micro', 'macro', 'none'", "'mean'")),
    ({"mode": "multiclass", "zero_division": "warn"}, None, ValueError, ("zero_division", "'nan'", "'warn'")),
    ({"mode": "multiclass", "zero_division": "0.5"}, None, ValueError, ("zero_division", "'nan' or a number", "'0.5'")),
    ({"mode": "multiclass", "zero_division": True}, None, TypeError, ("zero_division", "a number", "bool True")),
    ({"mode": "multiclass", "zero_division": None}, None, TypeError, ("zero_division", "None")),
    ({"mode": "multiclass", "threshold": 1.5}, None, ValueError, ("threshold", "<= 1", "1.5")),
    ({"mode": "multiclass", "per_image": 1}, None, TypeError, ("per_image", "bool", "1")),
    ({"mode": "multiclass", "include_background": "no"}, None, TypeError, ("include_background", "bool", "'no'")),
    ({"mode": "multiclass", "from_logits": None}, None, TypeError, ("from_logits", "bool", "None")),
    ({"mode": "multiclass", "ignore_index": 1.5}, None, TypeError, ("ignore_index", "int or None", "float")),
    ({"mode": "multiclass", "num_classes": 4}, None, ValueError, ("input", "C=num_classes=4", "(2, 3, 4, 4)")),
    ({"mode": "multiclass", "num_classes": 1}, None, ValueError, ("num_classes", ">= 2", "got 1")),
    ({"mode": "multiclass", "num_classes": 3.0}, None, TypeError, ("num_classes", "int", "3.0")),
    ({"mode": "binary", "num_classes": 2}, "binary", ValueError, ("num_classes", "must be 1", "got 2")),
    ({"mode": "multiclass"}, "labels", ValueError, ("num_classes", "must be given", "(2, 4, 4)", "got None")),
    ({"mode": "multiclass", "num_classes": 3}, "labels_out", ValueError, ("input", "[0, 3)", "max=5")),
    ({"mode": "binary"}, "binary_labels_2", ValueError, ("input", "0 or 1", "max=2")),
    ({"mode": "multiclass"}, "complex", TypeError, ("input", "floating-point", "complex64")),
    ({"mode": "multiclass"}, "list", TypeError, ("input", "torch.Tensor", "list")),
    ({"mode": "multiclass"}, "nan", ValueError, ("input", "NaN", "1 NaN")),
    ({"mode": "multiclass"}, "target_shape", ValueError, ("target", "(N, *S)=(2, 4, 4)", "(2, 1, 4, 4)", "squeeze")),
    ({"mode": "multiclass"}, "target_range", ValueError, ("target", "[0, 3)", "got 7")),
    ({"mode": "multiclass"}, "target_float_index", TypeError, ("target", "integer dtype", "torch.float32")),
    ({"mode": "multiclass"}, "soft_onehot", ValueError, ("target", "hard", "0.5")),
    ({"mode": "multiclass"}, "not_onehot", ValueError, ("target", "one-hot", "got 32 pixels")),
    ({"mode": "multiclass", "ignore_index": 255}, "onehot", ValueError, ("ignore_index", "index targets", "255")),
    ({"mode": "binary"}, "logits_binary", ValueError, ("input", "from_logits=False", "[0, 1]", "max=3")),
    ({"mode": "binary"}, "soft_binary", ValueError, ("target", "hard", "0.3")),
    ({"mode": "binary"}, "binary_shape", ValueError, ("target", "(2, 1, 4, 4)", "(2, 4, 4)", "unsqueeze")),
    ({"mode": "multilabel"}, "multilabel_range", ValueError, ("target", "[0, 1]", "max=2")),
    ({"mode": "multilabel", "include_background": False}, "multilabel_one", ValueError, ("include_background",)),
]


def _bad_data(kind):
    x, t = _mc()
    if kind is None:
        return x, t
    if kind == "binary":
        return torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    if kind == "labels":
        return t, t
    if kind == "labels_out":
        return torch.full((2, 4, 4), 5), t
    if kind == "binary_labels_2":
        return torch.full((2, 1, 4, 4), 2), torch.ones(2, 1, 4, 4)
    if kind == "complex":
        return x.to(torch.complex64), t
    if kind == "list":
        return [[0.5]], t
    if kind == "nan":
        x[0, 0, 0, 0] = math.nan
        return x, t
    if kind == "target_shape":
        return x, t[:, None]
    if kind == "target_range":
        t[1, 2, 2] = 7
        return x, t
    if kind == "target_float_index":
        return x, t.float()
    onehot = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float()
    if kind == "soft_onehot":
        return x, onehot * 0.5
    if kind == "not_onehot":
        return x, torch.zeros_like(x)
    if kind == "onehot":
        return x, onehot
    if kind == "logits_binary":
        return torch.full((2, 1, 4, 4), 3.0), torch.ones(2, 1, 4, 4)
    if kind == "soft_binary":
        return torch.rand(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.3)
    if kind == "binary_shape":
        return torch.rand(2, 1, 4, 4), torch.ones(2, 4, 4)
    if kind == "multilabel_range":
        return torch.rand(2, 3, 4, 4), torch.full((2, 3, 4, 4), 2)
    if kind == "multilabel_one":
        return torch.rand(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    raise AssertionError(kind)


_AVERAGING = ("average", "zero_division")  # options of the metrics, not of confusion
BAD_CALLS = [
    (name, case)
    for case in range(len(BAD))
    for name in ["confusion", *METRICS]
    if name != "confusion" or not any(k in BAD[case][0] for k in _AVERAGING)
]


@pytest.mark.parametrize(("name", "case"), BAD_CALLS)
def test_metrics_bad_input_messages(name, case):
    kwargs, kind, error, pieces = BAD[case]
    x, t = _bad_data(kind)
    with pytest.raises(error, match=msg(name, pieces[0], *pieces[1:])):
        getattr(M, name)(x, t, **kwargs)


def test_streaming_bad_options_and_input_messages():
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "metrics", "'dice'", "got 'f1'")):
        SegmentationMetrics(mode="multiclass", num_classes=3, metrics=("dice", "f1"))
    with pytest.raises(TypeError, match=msg("SegmentationMetrics", "metrics", "sequence", "'dice'")):
        SegmentationMetrics(mode="multiclass", num_classes=3, metrics="dice")
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "metrics", "repeat", "('dice', 'dice')")):
        SegmentationMetrics(mode="multiclass", num_classes=3, metrics=("dice", "dice"))
    with pytest.raises(TypeError, match=msg("SegmentationMetrics", "num_classes", "int", "None")):
        SegmentationMetrics(mode="multiclass", num_classes=None)
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "num_classes", "must be 1", "got 2")):
        SegmentationMetrics(mode="binary", num_classes=2)
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "average", "'macro'", "got 'avg'")):
        SegmentationMetrics(mode="multiclass", num_classes=3, average="avg")
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "include_background", "C=1")):
        SegmentationMetrics(mode="multilabel", num_classes=1, include_background=False)
    m = SegmentationMetrics(mode="multiclass", num_classes=4)
    x, t = _mc()
    with pytest.raises(ValueError, match=msg("SegmentationMetrics.update", "input", "C=num_classes=4", "(2, 3, 4, 4)")):
        m.update(x, t)


# ----------------------------------------------------------------------------------------------- audit regressions


@pytest.mark.parametrize(
    ("mode", "dtype", "ignore_index", "stored"),
    [
        ("multiclass", torch.uint8, -1, 255),  # -1 compared as 255 in uint8
        ("multiclass", torch.int8, 255, -1),  # 255 compared as -1 in int8
        ("binary", torch.uint8, -1, 255),
        ("binary", torch.int8, 255, -1),
    ],
)
def test_metrics_ignore_index_outside_the_target_dtype_is_not_wrapped(mode, dtype, ignore_index, stored):
    # a value the target's dtype stores is not ignore_index when that dtype cannot hold ignore_index: it is an
    # out-of-range target value and must be refused (it was compared after wrapping and silently ignored)
    if mode == "multiclass":
        x, t = torch.randn(1, 3, 4), torch.tensor([[0, 1, 2, stored]], dtype=dtype)
        pieces = ("target", "[0, 3)", f"ignore_index={ignore_index}", f"got {stored}")
    else:
        x, t = torch.rand(1, 1, 4), torch.tensor([[[0, 1, 1, stored]]], dtype=dtype)
        pieces = ("target", "[0, 1]", f"ignore_index={ignore_index}")
    for name in ["confusion", "dice"]:
        with pytest.raises(ValueError, match=msg(name, *pieces)):
            getattr(M, name)(x, t, mode=mode, ignore_index=ignore_index)
    m = SegmentationMetrics(mode=mode, num_classes=3 if mode == "multiclass" else 1, ignore_index=ignore_index)
    with pytest.raises(ValueError, match=msg("SegmentationMetrics.update", *pieces)):
        m.update(x, t)


def test_metrics_ignore_index_outside_the_target_dtype_counts_every_pixel():
    # int8 target, ignore_index=255: no int8 value equals 255, so every pixel counts (NumPy reference on int64)
    x, t = make_case("multiclass", n=2, c=3, seed=5)
    expected = ref_confusion(x, t, mode="multiclass")
    got = confusion(tt(x), tt(t).to(torch.int8), mode="multiclass", ignore_index=255, per_image=True)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g.numpy(), e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.45, 0.7, 0.9, 0.999])  # not 0.5: steps near 0 are tiny
def test_confusion_from_logits_is_exactly_sigmoid_above_threshold(dtype, threshold):
    # every value of the dtype within 40 steps of logit(t): positive exactly when sigmoid(x) > t, decided in NumPy
    # float64 (the steps of these dtypes move sigmoid by far more than float64 rounding). logit(0.3) rounds up to a
    # float32 whose sigmoid is above 0.3: it was compared with that rounded value and counted negative.
    centre = torch.tensor(math.log(threshold / (1 - threshold)), dtype=dtype)
    values, up, down = [centre], centre, centre
    for _ in range(40):
        up = torch.nextafter(up, torch.tensor(math.inf, dtype=dtype))
        down = torch.nextafter(down, torch.tensor(-math.inf, dtype=dtype))
        values += [up, down]
    x = torch.stack(values).view(1, 1, -1)
    expected = _sigmoid(x.double().numpy()) > threshold
    tp, fp, fn, tn = confusion(
        x, torch.ones_like(x, dtype=torch.long), mode="binary", from_logits=True, threshold=threshold
    )
    assert (tp.item(), fn.item()) == (int(expected.sum()), int((~expected).sum()))


def test_confusion_probability_equal_to_threshold_in_its_dtype_is_negative():
    # documented rule (as torchmetrics and NumPy with a Python float): p is compared with the threshold in p's
    # dtype, so float32 0.3 (0.30000001192...) is not above threshold=0.3
    p = torch.tensor([[[0.3, 0.3001]]], dtype=torch.float32)
    tp, fp, fn, tn = confusion(p, torch.ones(1, 1, 2, dtype=torch.long), mode="binary", threshold=0.3)
    assert (tp.item(), fn.item()) == (1, 1)


@pytest.mark.parametrize("value", [2.0**31, -3e9, math.inf, -math.inf])
def test_metrics_zero_division_not_finite_or_too_large_raises(value):
    x, t = _mc()
    for name in METRICS:
        with pytest.raises(ValueError, match=msg(name, "zero_division", "finite", "2**31", f"got {value:g}")):
            getattr(M, name)(x, t, mode="multiclass", zero_division=value)
    with pytest.raises(ValueError, match=msg("SegmentationMetrics", "zero_division", "finite", f"got {value:g}")):
        SegmentationMetrics(mode="multiclass", num_classes=3, zero_division=value)


@pytest.mark.parametrize("z", [-1, 0, 1, -1.5, 2.25, 1e6, 2e9])
@pytest.mark.parametrize("average", ["none", "macro"])
def test_metrics_zero_division_numbers_per_image_exact(z, average):
    # one image with Dice 2/3 and two empty images (0/0 -> z): the per-image mean is (2/3 + 2 z) / 3 (NumPy
    # float64). The fixed-point sum overflowed for |z| >= 2**31 (2e9 was within it: 3e9 gave 1/3) and for 1e6 after
    # about 2,000 images (checked with 2,500 streamed images of z alone).
    x = torch.tensor([[[0.9, 0.9]], [[0.1, 0.1]], [[0.2, 0.2]]])
    t = torch.tensor([[[1, 0]], [[0, 0]], [[0, 0]]])
    expected = (np.float64(2) / 3 + 2 * np.float64(z)) / 3
    got = M.dice(x, t, mode="binary", per_image=True, average=average, zero_division=z)
    assert abs(float(got.reshape(())) - expected) <= 1e-9 * max(1.0, abs(expected))
    m = SegmentationMetrics(mode="binary", num_classes=1, metrics=("dice",), per_image=True, zero_division=z)
    m.update(x, t)
    empty = torch.zeros(2500, 1, 2)
    m.update(empty, empty.long())
    expected = (np.float64(2) / 3 + 2502 * np.float64(z)) / 2503
    assert abs(m.compute()["dice"].item() - expected) <= 1e-9 * max(1.0, abs(expected))
    assert M.dice(x, t, mode="binary", per_image=True, zero_division=math.nan).item() == pytest.approx(2 / 3, abs=1e-9)


def test_streaming_process_group_must_be_a_process_group():
    with pytest.raises(TypeError, match=msg("SegmentationMetrics", "process_group", "ProcessGroup or None", "str")):
        SegmentationMetrics(mode="multiclass", num_classes=3, sync=True, process_group="gloo")


def test_non_tensor_target_with_ignore_index_is_named():
    import numpy as np

    from seglosses.metrics import dice, hausdorff

    x = torch.randn(1, 3, 6, 6)
    t = np.zeros((1, 6, 6), dtype=np.int64)
    for fn in (dice, hausdorff):
        for bad in (t, t.tolist()):
            with pytest.raises(TypeError, match=rf"{fn.__name__}: `target` must be a torch.Tensor"):
                fn(x, bad, mode="multiclass", ignore_index=255)
