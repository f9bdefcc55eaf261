"""The results of a comparison: per-run records, summaries over seeds, and the paired-bootstrap recommendation.

Pure data and statistics (NumPy, the standard library): nothing here trains or draws. Rendering lives in
``seglosses.cli.report``, which imports this module (never the other way round).

The recommendation is a paired comparison. For every validation image ``i`` and seed ``s`` each run records the
per-image value of the ranking metric (the mean over the foreground classes of that image); for two losses A and B
trained with the same seed (same initial weights, same batches) the pair ``(i, s)`` gives one difference
``d_is = m_A(i, s) - m_B(i, s)``. The difference of the two losses is the mean of the ``d_is``; its 95 % confidence
interval is the percentile bootstrap of that mean, resampling the ``(image, seed)`` pairs with replacement
(:data:`BOOTSTRAP_RESAMPLES` resamples drawn by ``numpy.random.default_rng(BOOTSTRAP_SEED)``). A loss is called the
clear winner only when the lower end of the interval of its difference with the runner-up is above 0.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "LOADING_HINT_SHARE",
    "METRICS",
    "SURFACE_METRICS",
    "LossSummary",
    "PairedComparison",
    "Recommendation",
    "ResultsTable",
    "RunResult",
    "paired_bootstrap",
]

METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall")
SURFACE_METRICS: tuple[str, ...] = ("hd95", "nsd")  # per image, then averaged over the images (no pooled form)
#: The number of bootstrap resamples of the (image, seed) pairs; the 2.5/97.5 percentiles move by < 0.001 beyond.
BOOTSTRAP_RESAMPLES = 10_000
#: The seed of the bootstrap's own generator, so that the same per-image numbers always give the same interval.
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
#: Above this fraction of the training steps' time spent waiting for the next batch, the data loading is called the
#: bottleneck (the terminal table then suggests more loader workers).
LOADING_HINT_SHARE = 0.2


@dataclass
class RunResult:
    """One (loss, seed) training run.

    Attributes:
        loss: candidate name.
        seed: model-initialisation and batch-sampling seed.
        metrics: ``{"dice": {"mean": v, "<class>": v, ...}, "iou": ..., ...}`` on the validation data, from the
            confusion counts of all validation pixels together (NaN where undefined: a class never predicted has no
            precision). "mean" is the mean over the foreground classes (background excluded), NaN left out.
            ``"hd95"`` and ``"nsd"`` hold only ``"mean"``: the mean over the validation images of each image's value.
        history: per epoch ``{"epoch", "train_loss", "val_dice"}``.
        status: ``"ok"``, ``"diverged"`` (non-finite loss; the last finite weights are evaluated) or
            ``"error: ..."`` (the loss raised; no metrics).
        seconds: wall time of the run.
        loss_args: keyword arguments the loss was built with.
        fingerprint: hash of everything that defines the run (data, schedule, model, loss arguments).
        per_image: ``{"dice": [v_0, v_1, ...], ...}``: each validation image's own value (in the validation set's
            order), the mean over its foreground classes; a class absent from both the image's mask and its
            prediction scores 1 (nothing to find, nothing found), so no image is NaN. ``"hd95"`` and ``"nsd"``: see
            ``seglosses.cli.train.surface_values``. Empty for a failed run.
        data_wait_s: seconds the training steps waited for their batch (the loader's ``next`` plus the
            host-to-device copy calls), summed over the steps; NaN for a run recorded by an older version.
        train_s: seconds of the training steps in all (the wait included, validation not), summed over the steps;
            NaN for a run recorded by an older version. See ``seglosses.cli.train.StepTimes``.

    """

    loss: str
    seed: int
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    status: str
    seconds: float
    loss_args: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    per_image: dict[str, list[float]] = field(default_factory=dict)
    data_wait_s: float = math.nan
    train_s: float = math.nan

    @property
    def loading_share(self) -> float:
        """``data_wait_s / train_s``: the fraction of the training time spent waiting for data (NaN if unknown)."""
        if math.isfinite(self.data_wait_s) and math.isfinite(self.train_s) and self.train_s > 0:
            return self.data_wait_s / self.train_s
        return math.nan

    def score(self, metric: str = "dice") -> float:
        """The mean foreground ``metric``, with NaN (or a failed run) counted as 0 for ranking."""
        value = self.metrics.get(metric, {}).get("mean", math.nan)
        return 0.0 if math.isnan(value) else value

    def image_values(self, metric: str, count: int) -> np.ndarray:
        """The ``count`` per-image values of ``metric`` as float64 (a failed run counts 0 on every image)."""
        values = self.per_image.get(metric, [])
        if len(values) != count:
            return np.zeros(count, dtype=np.float64)
        return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


@dataclass
class LossSummary:
    """Mean and standard deviation over seeds (ddof=1; 0 for one seed) of every column for one loss.

    ``mean["score"]`` is the ranking value: the mean over (validation image, seed) pairs of the per-image metric
    (a failed run counts 0), the quantity the recommendation compares; ``std["score"]`` is the std over seeds of each
    seed's mean over images.
    """

    loss: str
    seeds: int
    mean: dict[str, float]
    std: dict[str, float]
    failed: int = 0


@dataclass
class PairedComparison:
    """The paired difference ``best - other`` of the ranking metric over (validation image, seed) pairs.

    Attributes:
        loss: the other loss.
        difference: mean over pairs of ``metric(best) - metric(other)`` (>= 0 when ``best`` ranks first).
        ci_low / ci_high: the 95 % percentile bootstrap interval of that mean (NaN with fewer than 2 pairs).
        pairs: the number of (image, seed) pairs.

    """

    loss: str
    difference: float
    ci_low: float
    ci_high: float
    pairs: int


@dataclass
class Recommendation:
    """The best loss, the runner-up, and whether the paired difference between them is clear.

    Attributes:
        metric: the ranking metric.
        best: the loss with the highest mean per-image metric over (image, seed) pairs.
        runner_up: the second (``None`` with one loss).
        difference: mean over (image, seed) pairs of ``metric(best) - metric(runner_up)`` (>= 0; NaN with one loss).
        ci_low / ci_high: 95 % percentile bootstrap interval of ``difference`` (NaN with one loss or one pair).
        clear: ``ci_low > 0``: the interval excludes 0 (False with one loss).
        text: one sentence saying so ("no clear winner" when not clear).

    """

    metric: str
    best: str
    runner_up: str | None
    difference: float
    ci_low: float
    ci_high: float
    clear: bool
    text: str


def paired_bootstrap(
    differences: np.ndarray | Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, float]:
    r"""The mean of paired differences and its percentile bootstrap interval.

    .. math::
        \bar d = \frac{1}{n}\sum_k d_k, \qquad
        [\text{low}, \text{high}] = \text{percentiles}_{(1-c)/2,\ (1+c)/2}\Big(\big\{\bar d^{*}_b\big\}_{b=1}^{B}\Big)

    where ``d*_b`` is the mean of ``n`` pairs drawn with replacement (index matrix
    ``numpy.random.default_rng(seed).integers(0, n, size=(B, n))``; percentiles by NumPy's default linear
    interpolation). The interval is widened, if needed, to contain ``d̄`` (a percentile interval of a skewed
    resampling distribution can miss its own centre by a rounding).

    Args:
        differences: the paired differences ``d_k`` (one per (image, seed) pair), finite.
        resamples: ``B`` (default :data:`BOOTSTRAP_RESAMPLES`).
        seed: the bootstrap's random seed (default :data:`BOOTSTRAP_SEED`: a fixed input gives a fixed interval).
        confidence: ``c``, default 0.95.

    Returns:
        ``(mean, low, high)``; ``low``/``high`` are NaN with fewer than 2 pairs (no interval from one number).

    Raises:
        ValueError: no differences, a non-finite one, or ``resamples < 1``.

    Examples:
        >>> mean, low, high = paired_bootstrap([0.1, 0.1, 0.1])
        >>> round(mean, 6), round(low, 6), round(high, 6)
        (0.1, 0.1, 0.1)

    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("paired_bootstrap: `differences` must hold at least one value; got none")
    if not np.isfinite(d).all():
        raise ValueError(f"paired_bootstrap: `differences` must be finite; got {int((~np.isfinite(d)).sum())} not")
    if resamples < 1:
        raise ValueError(f"paired_bootstrap: `resamples` must be >= 1; got {resamples}")
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return mean, min(float(low), mean), max(float(high), mean)


def _column_names(class_names: Sequence[str]) -> list[str]:
    return [f"{m}_{c}" for m in METRICS for c in ("mean", *class_names)] + [f"{m}_mean" for m in SURFACE_METRICS]


@dataclass
class ResultsTable:
    """All runs of a comparison, with summaries, the recommendation and writers (rendering: ``seglosses.cli.report``).

    Attributes:
        runs: one :class:`RunResult` per (loss, seed).
        class_names: names of the classes reported per class (binary: the foreground only).
        mode: ``"binary"`` or ``"multiclass"``.
        data: the data spec.
        description: one line about the data.
        metric: the ranking metric (per-image mean over the foreground classes).
        config: the settings as a dict.
        val_images: the number of validation images (the length of every run's per-image lists).

    """

    runs: list[RunResult]
    class_names: list[str]
    mode: str
    data: str
    description: str = ""
    metric: str = "dice"
    config: dict[str, Any] = field(default_factory=dict)
    val_images: int = 0

    @property
    def columns(self) -> list[str]:
        """Metric columns, ``<metric>_mean`` then ``<metric>_<class>``, then ``hd95_mean`` and ``nsd_mean``."""
        return _column_names(self.class_names)

    @property
    def losses(self) -> list[str]:
        """Candidate names in the order they were run."""
        return list(dict.fromkeys(r.loss for r in self.runs))

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order they were run."""
        return list(dict.fromkeys(r.seed for r in self.runs))

    def row(self, run: RunResult) -> dict[str, float]:
        """The flat metric columns of one run (NaN where a run has no value, e.g. results of an older version)."""
        out = {}
        for column in self.columns:
            metric, key = self._split(column)
            out[column] = run.metrics.get(metric, {}).get(key, math.nan)
        return out

    def _split(self, column: str) -> tuple[str, str]:
        for metric in (*METRICS, *SURFACE_METRICS):
            if column.startswith(metric + "_"):
                return metric, column[len(metric) + 1 :]
        raise KeyError(column)

    def data_loading(self) -> tuple[float, float, float]:
        """``(data_wait_s, train_s, share)`` summed over the runs that recorded both (``share`` = wait / train).

        Runs recorded by an older version (no timings) are left out; ``(NaN, NaN, NaN)`` when no run has them.
        """
        timed = [r for r in self.runs if math.isfinite(r.loading_share)]
        if not timed:
            return math.nan, math.nan, math.nan
        wait = math.fsum(r.data_wait_s for r in timed)
        train = math.fsum(r.train_s for r in timed)
        return wait, train, wait / train

    def image_matrix(self, loss: str, metric: str | None = None) -> np.ndarray:
        """``(seeds, val_images)`` float64 per-image values of ``loss`` (rows in :attr:`seeds` order)."""
        metric = metric or self.metric
        by_seed = {r.seed: r for r in self.runs if r.loss == loss}
        rows = []
        for seed in self.seeds:
            run = by_seed.get(seed)
            rows.append(
                run.image_values(metric, self.val_images) if run is not None else np.zeros(self.val_images, np.float64)
            )
        return np.stack(rows) if rows else np.zeros((0, self.val_images), np.float64)

    def summary(self) -> list[LossSummary]:
        """One :class:`LossSummary` per loss, best first (by ``mean["score"]``)."""
        out = []
        for loss in self.losses:
            runs = [r for r in self.runs if r.loss == loss]
            rows = np.array([[self.row(r)[c] for c in self.columns] for r in runs], dtype=np.float64)
            with np.errstate(all="ignore"), _quiet_nan_warnings():
                mean = np.nanmean(rows, axis=0)
                std = np.nanstd(rows, axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(self.columns))
            mean_d = dict(zip(self.columns, mean.tolist(), strict=True))
            std_d = dict(zip(self.columns, std.tolist(), strict=True))
            if self.val_images:
                per_seed = self.image_matrix(loss).mean(axis=1)
            else:  # no per-image values (results of an older version): the pooled value of each run
                per_seed = np.array([r.score(self.metric) for r in runs], dtype=np.float64)
            mean_d["score"] = float(per_seed.mean())
            std_d["score"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
            failed = sum(r.status.startswith("error") for r in runs)
            out.append(LossSummary(loss=loss, seeds=len(runs), mean=mean_d, std=std_d, failed=failed))
        return sorted(out, key=lambda s: -s.mean["score"])

    def comparisons(self) -> list[PairedComparison]:
        """The paired difference (and bootstrap interval) of the best loss against every other, in ranking order."""
        ranked = self.summary()
        if len(ranked) < 2 or not self.val_images:
            return []
        best = self.image_matrix(ranked[0].loss).ravel()
        out = []
        for s in ranked[1:]:
            d = best - self.image_matrix(s.loss).ravel()
            mean, low, high = paired_bootstrap(d)
            # The ranking puts `best` first by its mean, so the exact mean difference is >= 0; with tied means the
            # float mean of the differences can come out a rounding below 0 (-1e-17): it is 0 then.
            if mean < 0:
                mean = 0.0
                if not math.isnan(low):
                    low, high = min(low, 0.0), max(high, 0.0)
            out.append(PairedComparison(s.loss, mean, low, high, int(d.size)))
        return out

    def recommendation(self) -> Recommendation:
        """The best loss and whether its paired difference with the runner-up is clear (interval above 0)."""
        ranked = self.summary()
        best = ranked[0]
        m = self.metric
        if len(ranked) == 1:
            text = f"{best.loss}: mean per-image {m} {best.mean['score']:.3f} (only one candidate: nothing to compare)"
            return Recommendation(m, best.loss, None, math.nan, math.nan, math.nan, False, text)
        comparisons = self.comparisons()
        if not comparisons:  # no per-image values: no paired comparison possible
            second = ranked[1]
            text = f"Best: {best.loss}; runner-up {second.loss}: no per-image values, no interval: no clear winner."
            return Recommendation(m, best.loss, second.loss, math.nan, math.nan, math.nan, False, text)
        runner = comparisons[0]
        clear = bool(runner.ci_low > 0)
        seeds = len(self.seeds)
        head = (
            f"Best: {best.loss} (mean per-image {m} {best.mean['score']:.3f}); runner-up {runner.loss} "
            f"({ranked[1].mean['score']:.3f}). Paired difference {runner.difference:.3f}, 95% CI "
            f"[{runner.ci_low:.3f}, {runner.ci_high:.3f}] over {runner.pairs} (image, seed) pairs "
            f"({self.val_images} image(s) x {seeds} seed(s))"
        )
        if math.isnan(runner.ci_low):
            tail = ": a single pair gives no interval: no clear winner."
        elif clear:
            tail = f": the interval excludes 0, {best.loss} is a clear winner here."
        else:
            tail = ": the interval includes 0: no clear winner; more seeds or validation images would tell them apart."
        return Recommendation(
            m, best.loss, runner.loss, runner.difference, runner.ci_low, runner.ci_high, clear, head + tail
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per (loss, seed): loss, seed, status, seconds, the metric columns, then data_wait_s and train_s."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["loss", "seed", "status", "seconds", *self.columns, "data_wait_s", "train_s"])
        for r in self.runs:
            row = self.row(r)
            metrics = [f"{row[c]:.6g}" for c in self.columns]
            timings = [f"{r.data_wait_s:.4g}", f"{r.train_s:.4g}"]
            writer.writerow([r.loss, r.seed, r.status, f"{r.seconds:.2f}", *metrics, *timings])
        return atomic_write(Path(path), buffer.getvalue())

    def per_image_to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per (loss, seed, validation image): the per-image value of every metric.

        A run without per-image values (a failed run) writes ``nan``, as in ``results.csv``: the recorded values,
        not the ranking's convention that counts such a run 0 on every image (:meth:`RunResult.image_values`).
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["loss", "seed", "image", *METRICS, *SURFACE_METRICS])
        for r in self.runs:
            columns = [_values_or_nan(r.per_image.get(m, []), self.val_images) for m in (*METRICS, *SURFACE_METRICS)]
            for i in range(self.val_images):
                writer.writerow([r.loss, r.seed, i, *(f"{c[i]:.6g}" for c in columns)])
        return atomic_write(Path(path), buffer.getvalue())

    def summary_to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per loss, best first: mean and std over seeds of every column."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        cols = ["score", *self.columns]
        writer.writerow(["rank", "loss", "seeds", "failed", *(f"{c}{s}" for c in cols for s in ("", "_std"))])
        for rank, s in enumerate(self.summary(), 1):
            values = [f"{v:.6g}" for c in cols for v in (s.mean[c], s.std[c])]
            writer.writerow([rank, s.loss, s.seeds, s.failed, *values])
        return atomic_write(Path(path), buffer.getvalue())

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-serialisable data (NaN written as null)."""
        out: dict[str, Any] = nan_to_none(
            {
                "data": self.data,
                "description": self.description,
                "mode": self.mode,
                "class_names": self.class_names,
                "metric": self.metric,
                "config": self.config,
                "val_images": self.val_images,
                "recommendation": asdict(self.recommendation()),
                "comparisons": [asdict(c) for c in self.comparisons()],
                "data_loading": dict(zip(("data_wait_s", "train_s", "share"), self.data_loading(), strict=True)),
                "summary": [asdict(s) for s in self.summary()],
                "runs": [asdict(r) for r in self.runs],
            }
        )
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON."""
        return atomic_write(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False))


def _values_or_nan(values: Sequence[float], count: int) -> np.ndarray:
    """``values`` as float64, or ``count`` NaN where the run has none (a failed run, an older version's results)."""
    return np.asarray(values, np.float64) if len(values) == count else np.full(count, math.nan)


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """Silence NumPy's "mean of empty slice" warnings (an all-NaN column is a legitimate NaN here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def nan_to_none(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (JSON has no NaN), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


def none_to_nan(obj: Any) -> Any:
    """Replace ``None`` by NaN, recursively through dicts and lists (the inverse of :func:`nan_to_none`)."""
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: none_to_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [none_to_nan(v) for v in obj]
    return obj


def atomic_write(path: Path, text: str | bytes) -> Path:
    """Write to ``path`` through a temporary file in the same folder and an atomic rename.

    ``path`` holds either its old content or the new one, never a part; the temporary file
    (``.<name>.<pid>.tmp``) is removed when the write fails (a full disk, Ctrl-C). A process killed outright
    (SIGKILL) can leave it: :func:`seglosses.compare` removes such files when it resumes the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:  # a full disk, Ctrl-C: no partial temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise
    return path
