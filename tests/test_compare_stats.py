"""Value tests of what ``seglosses compare`` prints: summaries, the foreground mean, the paired-bootstrap verdict.

Every expected value comes from NumPy float64 formulas written here, on fixed per-run numbers (no training).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("rich")

from helpers import FixedLogits  # noqa: E402
from seglosses.cli.data import SegData  # noqa: E402
from seglosses.cli.results import (  # noqa: E402
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    ResultsTable,
    RunResult,
    paired_bootstrap,
)
from seglosses.cli.train import RunSetup, per_image_values, validate  # noqa: E402


def reference_bootstrap(d: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """The documented interval: mean of d, 2.5/97.5 percentiles of B resampled means (pairs drawn with replacement
    by default_rng(seed).integers(0, n, (B, n))), widened to contain the mean."""
    d = np.asarray(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = np.array([d[row].mean() for row in idx[:2000]])  # row by row for the first 2000 (a second path)
    means = np.concatenate([means, d[idx[2000:]].mean(axis=1)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(min(low, d.mean())), float(max(high, d.mean()))


D_FIXED = np.array([0.031, -0.012, 0.044, 0.008, 0.019, -0.003, 0.027, 0.051, 0.002, 0.015, -0.021, 0.036])


def test_paired_bootstrap_matches_numpy_reference():
    assert (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED) == (10_000, 0)  # the documented numbers
    mean, low, high = paired_bootstrap(D_FIXED)
    ref = reference_bootstrap(D_FIXED)
    assert mean == pytest.approx(D_FIXED.sum() / 12, abs=1e-15)
    assert (mean, low, high) == pytest.approx(ref, abs=1e-12)
    assert low < mean < high


def test_paired_bootstrap_interval_has_the_normal_width_on_a_large_sample():
    # For n iid values the bootstrap interval of the mean is close to mean +- 1.96 s / sqrt(n) (central limit).
    d = np.random.default_rng(5).normal(0.02, 0.1, size=400)
    mean, low, high = paired_bootstrap(d)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    assert low == pytest.approx(mean - half, abs=0.15 * half)
    assert high == pytest.approx(mean + half, abs=0.15 * half)


def test_paired_bootstrap_edge_cases():
    mean, low, high = paired_bootstrap([0.25])
    assert mean == 0.25
    assert math.isnan(low)
    assert math.isnan(high)
    assert paired_bootstrap([0.1, 0.1, 0.1, 0.1]) == pytest.approx((0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="`differences` must hold at least one value"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match="`differences` must be finite"):
        paired_bootstrap([0.1, float("nan")])


# ------------------------------------------------------------------------------------------------ the table


def _run(loss: str, seed: int, per_image: list[float], pooled: dict[str, float]) -> RunResult:
    metrics = {m: {"mean": pooled[m], "blob": pooled[m]} for m in ("dice", "iou", "precision", "recall")}
    per = {m: list(per_image) for m in ("dice", "iou", "precision", "recall")}
    return RunResult(loss, seed, metrics, [], "ok", 1.0, per_image=per)


# per-image dice of 3 losses x 3 seeds x 4 validation images
PER_IMAGE = {
    "a": [[0.81, 0.77, 0.90, 0.62], [0.79, 0.74, 0.88, 0.66], [0.83, 0.71, 0.91, 0.60]],
    "b": [[0.83, 0.76, 0.91, 0.60], [0.80, 0.76, 0.86, 0.67], [0.81, 0.74, 0.89, 0.58]],
    "c": [[0.51, 0.47, 0.60, 0.32], [0.49, 0.44, 0.58, 0.36], [0.53, 0.41, 0.61, 0.30]],
}
POOLED = {
    "a": [0.80, 0.78, 0.81],
    "b": [0.79, 0.74, 0.80],
    "c": [0.50, 0.47, 0.52],
}


def _table(losses=("a", "b", "c")) -> ResultsTable:
    runs = []
    for loss in losses:
        for seed in range(3):
            pooled = {m: POOLED[loss][seed] - 0.01 * k for k, m in enumerate(("dice", "iou", "precision", "recall"))}
            runs.append(_run(loss, seed, PER_IMAGE[loss][seed], pooled))
    return ResultsTable(runs=runs, class_names=["blob"], mode="binary", data="fixed", val_images=4)


def test_summary_means_and_stds_against_numpy():
    table = _table()
    summary = {s.loss: s for s in table.summary()}
    for loss in ("a", "b", "c"):
        pooled = np.array(POOLED[loss])
        per_image = np.array(PER_IMAGE[loss])
        s = summary[loss]
        assert s.seeds == 3
        for k, m in enumerate(("dice", "iou", "precision", "recall")):
            col = pooled - 0.01 * k
            assert s.mean[f"{m}_mean"] == pytest.approx(col.sum() / 3, abs=1e-12)
            # ddof = 1: the sample standard deviation over seeds
            assert s.std[f"{m}_mean"] == pytest.approx(math.sqrt(((col - col.mean()) ** 2).sum() / 2), abs=1e-12)
            assert s.std[f"{m}_blob"] == pytest.approx(np.std(col, ddof=1), abs=1e-12)
        # the ranking score: mean over (image, seed) pairs; its std over seeds of each seed's mean over images
        assert s.mean["score"] == pytest.approx(per_image.sum() / 12, abs=1e-12)
        assert s.std["score"] == pytest.approx(np.std(per_image.mean(axis=1), ddof=1), abs=1e-12)
    assert [s.loss for s in table.summary()] == ["a", "b", "c"]


def test_recommendation_against_numpy_reference_no_clear_winner():
    table = _table()
    rec = table.recommendation()
    a, b = np.array(PER_IMAGE["a"]).ravel(), np.array(PER_IMAGE["b"]).ravel()
    mean, low, high = reference_bootstrap(a - b)
    assert (rec.best, rec.runner_up) == ("a", "b")
    assert rec.difference == pytest.approx(mean, abs=1e-12)
    assert rec.difference == pytest.approx((a.sum() - b.sum()) / 12, abs=1e-12)
    assert (rec.ci_low, rec.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert low <= 0  # these fixed numbers straddle 0
    assert rec.clear is False
    assert "no clear winner" in rec.text
    # every other loss against the best, in ranking order
    comparisons = table.comparisons()
    assert [c.loss for c in comparisons] == ["b", "c"]
    c = np.array(PER_IMAGE["c"]).ravel()
    assert (comparisons[1].difference, comparisons[1].ci_low, comparisons[1].ci_high) == pytest.approx(
        reference_bootstrap(a - c), abs=1e-12
    )
    assert comparisons[1].pairs == 12


def test_recommendation_clear_winner():
    table = _table(("a", "c"))
    rec = table.recommendation()
    a, c = np.array(PER_IMAGE["a"]).ravel(), np.array(PER_IMAGE["c"]).ravel()
    mean, low, high = reference_bootstrap(a - c)
    assert (rec.best, rec.runner_up, rec.clear) == ("a", "c", True)
    assert (rec.difference, rec.ci_low, rec.ci_high) == pytest.approx((mean, low, high), abs=1e-12)
    assert low > 0
    assert "clear winner" in rec.text
    assert "no clear winner" not in rec.text


def test_recommendation_pairs_by_seed_not_by_rank():
    # Swapping the seeds of one loss changes the pairs (and the interval) but not the mean difference.
    table = _table(("a", "b"))
    swapped = _table(("a", "b"))
    b_runs = [r for r in swapped.runs if r.loss == "b"]
    b_runs[0].seed, b_runs[2].seed = 2, 0
    swapped.runs.sort(key=lambda r: (r.loss, r.seed))
    one, two = table.recommendation(), swapped.recommendation()
    assert one.difference == pytest.approx(two.difference, abs=1e-12)
    b_swapped = np.array([PER_IMAGE["b"][2], PER_IMAGE["b"][1], PER_IMAGE["b"][0]]).ravel()
    assert (two.ci_low, two.ci_high) == pytest.approx(
        reference_bootstrap(np.array(PER_IMAGE["a"]).ravel() - b_swapped)[1:], abs=1e-12
    )


def test_recommendation_with_one_loss():
    rec = _table(("b",)).recommendation()
    assert rec.best == "b"
    assert rec.runner_up is None
    assert math.isnan(rec.difference)
    assert math.isnan(rec.ci_low)
    assert math.isnan(rec.ci_high)
    assert rec.clear is False


def test_recommendation_difference_is_never_negative_for_tied_losses():
    # The same per-image values in another order: equal means, so a tie; NumPy's float mean of the paired
    # differences is a rounding below 0 here (-1.1e-17), but best - runner-up is >= 0 by definition (exactly 0).
    a, b = [0.1, 0.2, 0.3, 0.7, 0.6], [0.2, 0.7, 0.1, 0.3, 0.6]
    d = np.array(a) - np.array(b)
    assert d.mean() < 0  # the rounding this test is about
    runs = [_run("a", 0, a, dict.fromkeys(("dice", "iou", "precision", "recall"), 0.5))]
    runs.append(_run("b", 0, b, dict.fromkeys(("dice", "iou", "precision", "recall"), 0.5)))
    rec = ResultsTable(runs=runs, class_names=["blob"], mode="binary", data="tie", val_images=5).recommendation()
    assert (rec.best, rec.runner_up) == ("a", "b")  # first in the given order on a tie
    assert rec.difference == 0.0
    assert rec.ci_low <= rec.difference <= rec.ci_high
    _, low, high = reference_bootstrap(d)
    assert (rec.ci_low, rec.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert rec.clear is False


def test_failed_run_counts_zero_per_image():
    table = _table(("a", "b"))
    table.runs[0] = RunResult("a", 0, {}, [], "error: RuntimeError: boom", 0.0)
    a = np.array(PER_IMAGE["a"])
    a[0] = 0.0
    score = {s.loss: s.mean["score"] for s in table.summary()}
    assert score["a"] == pytest.approx(a.mean(), abs=1e-12)


def test_terminal_table_says_no_clear_winner():
    from rich.console import Console

    from seglosses.cli.report import rich_table

    console = Console(record=True, width=220)
    console.print(rich_table(_table()))
    text = console.export_text()
    assert "no clear winner" in text
    console = Console(record=True, width=220)
    console.print(rich_table(_table(("a", "c"))))
    text = console.export_text()
    assert "a is a clear winner over c" in text


# ------------------------------------------------------------------------------------------------ validation


def _one_hot_logits(pred: np.ndarray, classes: int) -> torch.Tensor:
    return torch.from_numpy(np.eye(classes, dtype=np.float32)[pred].transpose(2, 0, 1) * 4.0)


def _np_counts(pred: np.ndarray, truth: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.array([np.sum((pred == c) & (truth == c)) for c in range(classes)], dtype=np.float64)
    fp = np.array([np.sum((pred == c) & (truth != c)) for c in range(classes)], dtype=np.float64)
    fn = np.array([np.sum((pred != c) & (truth == c)) for c in range(classes)], dtype=np.float64)
    return tp, fp, fn


def test_validate_multiclass_mean_excludes_background_and_per_image_rule():
    rng = np.random.default_rng(3)
    truths = [rng.integers(0, 3, (8, 8)), rng.integers(0, 2, (8, 8))]  # the second image has no class 2
    preds = [np.where(rng.random((8, 8)) < 0.7, truths[0], rng.integers(0, 3, (8, 8))), truths[1].copy()]
    preds[1][0, :3] = 0  # a few errors, still no class 2 predicted
    images = [torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)]
    data = SegData.from_tensors(
        name="fixed",
        mode="multiclass",
        class_names=["background", "one", "two"],
        ndim=2,
        train_images=images,
        train_masks=[torch.from_numpy(t) for t in truths],
        val_images=images,
        val_masks=[torch.from_numpy(t) for t in truths],
        crop=(8, 8),
    )
    model = FixedLogits([_one_hot_logits(p, 3) for p in preds])
    result = validate(model, data, multiple=8, device="cpu", setup=RunSetup())
    # pooled: counts of both images together; the mean over classes 1 and 2 only
    counts = [_np_counts(p, t, 3) for p, t in zip(preds, truths, strict=True)]
    tp, fp, fn = (sum(c[k] for c in counts) for k in range(3))
    dice = 2 * tp / (2 * tp + fp + fn)
    iou = tp / (tp + fp + fn)
    assert result.metrics["dice"]["mean"] == pytest.approx((dice[1] + dice[2]) / 2, abs=1e-9)
    assert result.metrics["iou"]["mean"] == pytest.approx((iou[1] + iou[2]) / 2, abs=1e-9)
    assert result.metrics["dice"]["background"] == pytest.approx(dice[0], abs=1e-9)
    assert result.metrics["recall"]["two"] == pytest.approx(tp[2] / (tp[2] + fn[2]), abs=1e-9)
    # per image: foreground classes only; image 1's class 2 (absent from mask and prediction) scores 1
    tp1, fp1, fn1 = counts[1]
    assert tp1[2] + fp1[2] + fn1[2] == 0
    expected_1 = (2 * tp1[1] / (2 * tp1[1] + fp1[1] + fn1[1]) + 1.0) / 2
    tp0, fp0, fn0 = counts[0]
    expected_0 = np.mean(2 * tp0[1:] / (2 * tp0[1:] + fp0[1:] + fn0[1:]))
    assert result.per_image["dice"] == pytest.approx([expected_0, expected_1], abs=1e-9)
    assert len(result.previews) == 2


def test_per_image_values_rule_for_empty_classes():
    # binary: one foreground class; an image without foreground and without prediction scores 1 everywhere
    v = per_image_values(np.array([0]), np.array([0]), np.array([0]), foreground=slice(0, None))
    assert v == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    # predicted foreground on an empty mask: dice, iou, precision 0; recall 0/0 = 1
    v = per_image_values(np.array([0]), np.array([5]), np.array([0]), foreground=slice(0, None))
    assert v == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 1.0}
    # missed foreground: precision 0/0 = 1, recall 0
    v = per_image_values(np.array([0]), np.array([0]), np.array([4]), foreground=slice(0, None))
    assert v == {"dice": 0.0, "iou": 0.0, "precision": 1.0, "recall": 0.0}


# ------------------------------------------------------------------------------------------------ HD95 and NSD


def _deepmind(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], tolerance: float) -> tuple[float, float]:
    """HD95 and NSD of one class by DeepMind's surface-distance (the reference), with compare's empty-mask rules."""
    sd = pytest.importorskip("surface_distance")
    if not gt.any() and not pred.any():
        return 0.0, 1.0
    if not gt.any() or not pred.any():  # missed or hallucinated: the image's diagonal, NSD 0
        return math.sqrt(sum(((n - 1) * h) ** 2 for n, h in zip(gt.shape, spacing, strict=True))), 0.0
    dists = sd.compute_surface_distances(gt, pred, spacing)
    return float(sd.compute_robust_hausdorff(dists, 95)), float(sd.compute_surface_dice_at_tolerance(dists, tolerance))


def _blob_mask(shape: tuple[int, ...], rng: np.random.Generator, blobs: int) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    mask = np.zeros(shape, bool)
    for _ in range(blobs):
        centre = [rng.uniform(2, s - 2) for s in shape]
        radius = rng.uniform(1.5, 4.0)
        mask |= sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2
    return mask


@pytest.mark.parametrize("case", ["overlap", "missed", "hallucinated", "both-empty"])
def test_surface_values_binary_against_deepmind(case):
    from seglosses.cli.train import surface_values

    rng = np.random.default_rng(11)
    shape, spacing, tolerance = (30, 26), (0.7, 1.3), 1.5
    gt = _blob_mask(shape, rng, 3)
    pred = _blob_mask(shape, rng, 1) | np.roll(gt, 1, axis=0)
    if case in ("missed", "both-empty"):
        pred[:] = False
    if case in ("hallucinated", "both-empty"):
        gt[:] = False
    logits = torch.from_numpy(np.where(pred, 3.0, -3.0)).float()[None, None]
    target = torch.from_numpy(gt).float()[None, None]
    got = surface_values(logits, target, mode="binary", spacing=spacing, tolerance=tolerance)
    hd95, nsd = _deepmind(gt, pred, spacing, tolerance)
    assert got["hd95"] == pytest.approx(hd95, rel=1e-9)
    assert got["nsd"] == pytest.approx(nsd, rel=1e-9, abs=1e-12)


def test_surface_values_multiclass_3d_mean_over_foreground_against_deepmind():
    from seglosses.cli.train import surface_values

    rng = np.random.default_rng(4)
    shape, spacing, tolerance = (12, 14, 10), (2.0, 0.8, 0.8), 1.0
    truth = np.zeros(shape, np.int64)
    truth[_blob_mask(shape, rng, 2)] = 1
    truth[_blob_mask(shape, rng, 2) & (truth == 0)] = 2
    pred = np.roll(truth, 1, axis=2)  # class 3 absent from both: HD95 0 and NSD 1
    pred[0:3, 0:3, 0:3] = 2
    logits = torch.from_numpy(np.eye(4, dtype=np.float32)[pred].transpose(3, 0, 1, 2) * 4.0)[None]
    got = surface_values(logits, torch.from_numpy(truth)[None], mode="multiclass", spacing=spacing, tolerance=tolerance)
    per_class = [_deepmind(truth == c, pred == c, spacing, tolerance) for c in (1, 2, 3)]  # background excluded
    assert got["hd95"] == pytest.approx(np.mean([v[0] for v in per_class]), rel=1e-9)
    assert got["nsd"] == pytest.approx(np.mean([v[1] for v in per_class]), rel=1e-9)
    assert per_class[2] == (0.0, 1.0)


def test_validate_surface_columns_use_each_image_spacing():
    rng = np.random.default_rng(8)
    truths = [_blob_mask((16, 16), rng, 2).astype(np.int64) for _ in range(2)]
    preds = [np.roll(t, 1, axis=1) for t in truths]
    images = [torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)]
    data = SegData.from_tensors(
        name="fixed",
        mode="binary",
        class_names=["background", "blob"],
        ndim=2,
        train_images=images,
        train_masks=[torch.from_numpy(t) for t in truths],
        val_images=images,
        val_masks=[torch.from_numpy(t) for t in truths],
        crop=(16, 16),
    )
    data.val_spacing = [(1.0, 1.0), (0.5, 2.0)]
    logits = [torch.from_numpy(np.where(p, 4.0, -4.0)).float()[None] for p in preds]
    result = validate(
        FixedLogits(logits), data, multiple=8, device="cpu", setup=RunSetup(nsd_tolerance=0.75), surface=True
    )
    expected = [
        _deepmind(t.astype(bool), p.astype(bool), s, 0.75)
        for t, p, s in zip(truths, preds, data.val_spacing, strict=True)
    ]
    assert result.per_image["hd95"] == pytest.approx([e[0] for e in expected], rel=1e-9)
    assert result.per_image["nsd"] == pytest.approx([e[1] for e in expected], rel=1e-9)
    assert result.metrics["hd95"]["mean"] == pytest.approx(np.mean([e[0] for e in expected]), rel=1e-9)
    assert result.metrics["nsd"]["mean"] == pytest.approx(np.mean([e[1] for e in expected]), rel=1e-9)
    # an explicit spacing overrides the data's
    fixed = validate(
        FixedLogits(logits), data, multiple=8, device="cpu", setup=RunSetup(spacing=(1.0, 1.0)), surface=True
    )
    expected_1 = [
        _deepmind(t.astype(bool), p.astype(bool), (1.0, 1.0), 1.0) for t, p in zip(truths, preds, strict=True)
    ]
    assert fixed.per_image["hd95"] == pytest.approx([e[0] for e in expected_1], rel=1e-9)
