"""Train the same U-Net with each candidate loss and compare them on held-out data.

Python API: :func:`compare` returns a :class:`ResultsTable`. The command line (``seglosses compare``) is a thin
wrapper around it. Fairness by construction: for a given seed every loss gets the same initial weights
(:func:`seglosses.cli.model.build_model`), the same sequence of training batches and augmentations (one
``torch.Generator`` seeded per run), the same optimiser (AdamW), schedule (linear warm-up then cosine decay) and
number of steps; the validation data are never trained on. Metrics are those of the final weights (choosing the
best epoch on the validation data would leak it into the comparison).

Results are written as each (loss, seed) run finishes (``OUT/runs/<loss>__seed<k>.json``, written to a temporary
file then renamed, so Ctrl-C never leaves half a file); running again with the same ``out`` skips the runs already
finished with the same settings.

Only torch, numpy and the standard library are imported at module level; rich and matplotlib are imported inside
the functions that draw.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from seglosses.cli.data import SegData, load_data, pad_to_multiple, sample_batch
from seglosses.cli.model import build_model

if TYPE_CHECKING:
    from seglosses.cli.ddp import DistContext

__all__ = [
    "DEFAULT_LOSSES",
    "METRICS",
    "LossSummary",
    "Recommendation",
    "ResultsTable",
    "RunResult",
    "TrainConfig",
    "compare",
    "evaluate",
    "parse_loss_args",
    "predict_logits",
    "train_run",
]

DEFAULT_LOSSES: tuple[str, ...] = ("dice", "dice_ce", "focal", "tversky", "focal_tversky", "lovasz", "unified_focal")
METRICS: tuple[str, ...] = ("dice", "iou", "precision", "recall")
PREVIEWS = 2  # validation images shown in the predictions grid
LossFactory = Callable[[str], nn.Module]  # mode -> loss module, for candidates outside the registry


@dataclass(frozen=True)
class TrainConfig:
    """The schedule shared by every loss of a comparison.

    Attributes:
        epochs: validation passes (one per epoch, for the curves).
        steps_per_epoch: optimiser steps per epoch (random crops, so an epoch is a number of steps).
        batch_size: crops per step.
        lr: peak learning rate of AdamW (linear warm-up over 5 % of the steps, then cosine to 0).
        weight_decay: AdamW weight decay.
        base: U-Net channels at the first level.
        depth: U-Net poolings.

    """

    epochs: int = 12
    steps_per_epoch: int = 20
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    base: int = 8
    depth: int = 3

    @classmethod
    def preset(cls, *, quick: bool, ndim: int, epochs: int | None = None) -> TrainConfig:
        """Default (``quick=False``) or ``--quick`` schedule; ``epochs`` overrides the preset's."""
        cfg = cls(epochs=4, steps_per_epoch=10) if quick else cls()
        if ndim == 3:
            cfg = cls(**{**asdict(cfg), "batch_size": 2})
        if epochs is not None:
            cfg = cls(**{**asdict(cfg), "epochs": epochs})
        return cfg


@dataclass
class RunResult:
    """One (loss, seed) training run.

    Attributes:
        loss: candidate name.
        seed: model-initialisation and batch-sampling seed.
        metrics: ``{"dice": {"mean": v, "<class>": v, ...}, "iou": ..., ...}`` on the validation data
            (NaN where undefined: a class never predicted has no precision). "mean" is the mean over the
            foreground classes (background excluded).
        history: per epoch ``{"epoch", "train_loss", "val_dice"}``.
        status: ``"ok"``, ``"diverged"`` (non-finite loss; the last finite weights are evaluated) or
            ``"error: ..."`` (the loss raised; no metrics).
        seconds: wall time of the run.
        loss_args: keyword arguments the loss was built with.
        fingerprint: hash of everything that defines the run (data, schedule, loss arguments).

    """

    loss: str
    seed: int
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    status: str
    seconds: float
    loss_args: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    def score(self, metric: str = "dice") -> float:
        """The mean foreground ``metric``, with NaN (or a failed run) counted as 0 for ranking."""
        value = self.metrics.get(metric, {}).get("mean", math.nan)
        return 0.0 if math.isnan(value) else value


@dataclass
class LossSummary:
    """Mean and standard deviation (over seeds, ddof=1; 0 for one seed) of every column for one loss."""

    loss: str
    seeds: int
    mean: dict[str, float]
    std: dict[str, float]
    failed: int = 0


@dataclass
class Recommendation:
    """Best loss, runner-up, and whether the lead exceeds the spread across seeds."""

    metric: str
    best: str
    best_mean: float
    best_std: float
    runner_up: str | None
    runner_up_mean: float
    runner_up_std: float
    lead: float
    spread: float
    clear: bool
    text: str


def _column_names(class_names: Sequence[str]) -> list[str]:
    return [f"{m}_{c}" for m in METRICS for c in ("mean", *class_names)]


@dataclass
class ResultsTable:
    """All runs of a comparison, with summaries and writers; rendering lives in :mod:`seglosses.cli.report`.

    Attributes:
        runs: one :class:`RunResult` per (loss, seed).
        class_names: names of the classes reported per class (binary: the foreground only).
        mode: ``"binary"`` or ``"multiclass"``.
        data: the data spec.
        description: one line about the data.
        metric: the ranking metric (mean foreground value).
        config: the :class:`TrainConfig` as a dict.

    """

    runs: list[RunResult]
    class_names: list[str]
    mode: str
    data: str
    description: str = ""
    metric: str = "dice"
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Metric columns, ``<metric>_mean`` then ``<metric>_<class>``."""
        return _column_names(self.class_names)

    @property
    def losses(self) -> list[str]:
        """Candidate names in the order they were run."""
        return list(dict.fromkeys(r.loss for r in self.runs))

    def row(self, run: RunResult) -> dict[str, float]:
        """The flat metric columns of one run."""
        return {
            f"{m}_{c}": run.metrics.get(m, {}).get(c, math.nan) for m in METRICS for c in ("mean", *self.class_names)
        }

    def summary(self) -> list[LossSummary]:
        """One :class:`LossSummary` per loss, best first (by the mean of ``metric``, failed runs count 0)."""
        out = []
        for loss in self.losses:
            runs = [r for r in self.runs if r.loss == loss]
            rows = np.array([[self.row(r)[c] for c in self.columns] for r in runs], dtype=np.float64)
            with np.errstate(all="ignore"), _quiet_nan_warnings():
                mean = np.nanmean(rows, axis=0)
                std = np.nanstd(rows, axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(self.columns))
            scores = np.array([r.score(self.metric) for r in runs])
            mean_d = dict(zip(self.columns, mean.tolist(), strict=True))
            std_d = dict(zip(self.columns, std.tolist(), strict=True))
            mean_d["score"] = float(scores.mean())
            std_d["score"] = float(scores.std(ddof=1)) if len(runs) > 1 else 0.0
            failed = sum(r.status.startswith("error") for r in runs)
            out.append(LossSummary(loss=loss, seeds=len(runs), mean=mean_d, std=std_d, failed=failed))
        return sorted(out, key=lambda s: -s.mean["score"])

    def recommendation(self) -> Recommendation:
        """Name the best loss and say whether its lead over the runner-up exceeds the spread across seeds.

        The spread is the larger of the two losses' standard deviations over seeds; with one seed there is no
        spread and the lead is never called clear.
        """
        ranked = self.summary()
        best = ranked[0]
        m = self.metric
        if len(ranked) == 1:
            text = f"{best.loss}: mean {m} {best.mean['score']:.3f} (only one candidate)"
            return Recommendation(
                m,
                best.loss,
                best.mean["score"],
                best.std["score"],
                None,
                math.nan,
                math.nan,
                math.nan,
                math.nan,
                False,
                text,
            )
        second = ranked[1]
        lead = best.mean["score"] - second.mean["score"]
        spread = max(best.std["score"], second.std["score"])
        enough_seeds = best.seeds > 1 and second.seeds > 1
        clear = enough_seeds and lead > spread
        head = (
            f"Best: {best.loss} (mean {m} {best.mean['score']:.3f} ± {best.std['score']:.3f}); "
            f"runner-up {second.loss} ({second.mean['score']:.3f} ± {second.std['score']:.3f}). "
        )
        if not enough_seeds:
            tail = f"Lead {lead:.3f} with a single seed: no spread to compare with; run --seeds 3 or more."
        elif clear:
            tail = f"Its lead {lead:.3f} exceeds the spread across seeds ({spread:.3f}): a clear winner here."
        else:
            tail = (
                f"Its lead {lead:.3f} is within the spread across seeds ({spread:.3f}): not a clear winner; "
                "more seeds or epochs would tell them apart."
            )
        return Recommendation(
            m,
            best.loss,
            best.mean["score"],
            best.std["score"],
            second.loss,
            second.mean["score"],
            second.std["score"],
            lead,
            spread,
            clear,
            head + tail,
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per (loss, seed): loss, seed, status, seconds, then the metric columns."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["loss", "seed", "status", "seconds", *self.columns])
        for r in self.runs:
            row = self.row(r)
            writer.writerow([r.loss, r.seed, r.status, f"{r.seconds:.2f}", *(f"{row[c]:.6g}" for c in self.columns)])
        return _atomic_write(Path(path), buffer.getvalue())

    def summary_to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per loss, best first: mean and std over seeds of every column."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        cols = ["score", *self.columns]
        writer.writerow(["rank", "loss", "seeds", "failed", *(f"{c}{s}" for c in cols for s in ("", "_std"))])
        for rank, s in enumerate(self.summary(), 1):
            values = [f"{v:.6g}" for c in cols for v in (s.mean[c], s.std[c])]
            writer.writerow([rank, s.loss, s.seeds, s.failed, *values])
        return _atomic_write(Path(path), buffer.getvalue())

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-serialisable data (NaN written as null)."""
        out: dict[str, Any] = _nan_to_none(
            {
                "data": self.data,
                "description": self.description,
                "mode": self.mode,
                "class_names": self.class_names,
                "metric": self.metric,
                "config": self.config,
                "recommendation": asdict(self.recommendation()),
                "summary": [asdict(s) for s in self.summary()],
                "runs": [asdict(r) for r in self.runs],
            }
        )
        return out

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON."""
        return _atomic_write(Path(path), json.dumps(self.to_dict(), indent=2, allow_nan=False))


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """Silence NumPy's "mean of empty slice" warnings (an all-NaN column is a legitimate NaN here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def _none_to_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _none_to_nan(v) for k, v in obj.items()}
    return obj


def _atomic_write(path: Path, text: str | bytes) -> Path:
    """Write to ``path`` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def predict_logits(model: nn.Module, image: Tensor, *, depth: int, device: str) -> Tensor:
    """Logits ``(1, out_channels, *S)`` of one image ``(C, *S)``, padded to a multiple of ``2**depth`` and cropped."""
    ndim = image.dim() - 1
    x = pad_to_multiple(image[None].to(device), 2**depth, ndim=ndim)
    logits: Tensor = model(x)[(slice(None), slice(None), *(slice(0, s) for s in image.shape[1:]))]
    return logits.float().cpu()


def hard_prediction(logits: Tensor, mode: str) -> Tensor:
    """Class indices ``(*S)`` from the logits ``(1, C, *S)`` of one image (binary: logit > 0, i.e. p > 0.5)."""
    return (logits[0, 0] > 0).long() if mode == "binary" else logits[0].argmax(0)


def evaluate(
    model: nn.Module, data: SegData, *, depth: int, device: str
) -> tuple[dict[str, dict[str, float]], list[Tensor]]:
    """Validation metrics of ``model`` over every validation image, and its hard predictions.

    The numbers come from :class:`seglosses.metrics.SegmentationMetrics` (streaming over the validation images,
    ``average="none"``, ``zero_division="nan"``): the statistics of all validation pixels together. Per class:
    binary reports the foreground only; multiclass every class. ``"mean"`` is the mean over the foreground classes,
    leaving out NaN (the ``average="macro", include_background=False`` value).
    """
    from seglosses.metrics import SegmentationMetrics

    model.eval()
    accumulator = SegmentationMetrics(
        mode=data.mode, num_classes=data.out_channels, metrics=METRICS, average="none", from_logits=True
    )
    preds = []
    for image, mask in zip(data.val_images, data.val_masks, strict=True):
        logits = predict_logits(model, image, depth=depth, device=device)
        accumulator.update(logits, target_for_loss(mask[None], data.mode))
        preds.append(hard_prediction(logits, data.mode))
    values = accumulator.compute()
    shown = data.class_names[1:] if data.mode == "binary" else data.class_names
    foreground = slice(0, None) if data.mode == "binary" else slice(1, None)
    out: dict[str, dict[str, float]] = {}
    for name in METRICS:
        per_class = values[name].double().cpu().flatten()
        fg = per_class[foreground]
        fg = fg[~fg.isnan()]
        entry = {"mean": float(fg.mean()) if fg.numel() else math.nan}
        entry.update({c: float(v) for c, v in zip(shown, per_class.tolist(), strict=True)})
        out[name] = entry
    return out, preds


# --------------------------------------------------------------------------------------------------- training


def build_loss(name: str, mode: str, loss_args: Mapping[str, Any], extra: Mapping[str, LossFactory]) -> nn.Module:
    """A candidate loss module: from ``extra`` (test or notebook candidates) or ``seglosses.get_loss``."""
    if name in extra:
        return extra[name](mode)
    from seglosses.registry import get_loss

    return get_loss(name, mode=mode, **dict(loss_args))


def target_for_loss(mask: Tensor, mode: str) -> Tensor:
    """The target of the losses and metrics: ``(N, 1, *S)`` float for binary, ``(N, *S)`` indices otherwise."""
    return mask.unsqueeze(1).float() if mode == "binary" else mask


def _lr_lambda(total: int) -> Callable[[int], float]:
    warmup = max(1, total // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def train_run(
    data: SegData,
    loss_fn: nn.Module,
    *,
    seed: int,
    config: TrainConfig,
    device: str = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, dict[str, float]]], None] | None = None,
    dist_ctx: DistContext | None = None,
) -> tuple[nn.Module, list[dict[str, float]], str]:
    """Train one U-Net with ``loss_fn``: the single training loop, also the one of every DDP rank.

    The seed fixes the initial weights and the batch/augmentation sequence, independently of the loss.
    ``on_step(step, loss)`` is called after each step, ``on_epoch(epoch, metrics)`` after each validation
    (it may raise to stop the run, e.g. ``optuna.TrialPruned``). Returns the model, the per-epoch history and the
    status (``"ok"`` or ``"diverged"``).

    With ``dist_ctx`` (see :mod:`seglosses.cli.ddp`) the model is wrapped in ``DistributedDataParallel`` with its
    BatchNorm layers normalising over the global batch; every rank draws the same global batch of
    ``config.batch_size`` crops and trains on its slice; the logged loss is the mean over the ranks; validation (the
    history's ``val_dice`` and ``on_epoch``) runs on rank 0 only (NaN elsewhere). The returned model is unwrapped.
    """
    model: nn.Module = build_model(
        data.in_channels, data.out_channels, ndim=data.ndim, seed=seed, base=config.base, depth=config.depth
    ).to(device)
    net = model
    if dist_ctx is not None:
        from torch.nn.parallel import DistributedDataParallel

        from seglosses.cli.ddp import convert_batchnorm

        model = convert_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device != "cpu" else None)
    loss_fn = loss_fn.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * config.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(total))
    generator = torch.Generator().manual_seed(10_007 * seed + 1)
    history: list[dict[str, float]] = []
    status = "ok"
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            images, masks = sample_batch(data, config.batch_size, generator)
            if dist_ctx is not None:
                images, masks = dist_ctx.shard(images), dist_ctx.shard(masks)
            images, masks = images.to(device), masks.to(device)
            loss = loss_fn(net(images), target_for_loss(masks, data.mode))
            value = float(loss.detach())
            if dist_ctx is not None:  # the same value on every rank, so that every rank takes the same branch
                value = dist_ctx.mean(value)
            if not math.isfinite(value):
                status = "diverged"
                break
            optimiser.zero_grad(set_to_none=True)
            if loss.requires_grad:  # a constant candidate leaves the model at its initialisation
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()  # parameters without a gradient are skipped
            scheduler.step()
            step += 1
            losses.append(value)
            if on_step is not None:
                on_step(step, value)
        validate = dist_ctx is None or dist_ctx.is_main
        metrics = evaluate(model, data, depth=config.depth, device=device)[0] if validate else {}
        history.append(
            {
                "epoch": float(epoch),
                "train_loss": float(np.mean(losses)) if losses else math.nan,
                "val_dice": metrics["dice"]["mean"] if validate else math.nan,
            }
        )
        if on_epoch is not None and validate:
            on_epoch(epoch, metrics)
        if status != "ok":
            break
    return model, history, status


def _fingerprint(data: SegData, config: TrainConfig, loss: str, loss_args: Mapping[str, Any]) -> str:
    payload = {
        "data": data.name,
        "description": data.description,
        "config": asdict(config),
        "loss": loss,
        "loss_args": dict(sorted(loss_args.items())),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_key(loss: str, seed: int) -> str:
    return f"{loss}__seed{seed}"


def _load_run(path: Path) -> RunResult | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return RunResult(
            **{**raw, "metrics": _none_to_nan(raw["metrics"]), "history": [_none_to_nan(h) for h in raw["history"]]}
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def parse_loss_args(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse ``["tversky.alpha=0.2", "focal.gamma=1"]`` into ``{"tversky": {"alpha": 0.2}, ...}``.

    Values are read as JSON where possible (numbers, true/false, null, lists), else kept as strings.

    Examples:
        >>> parse_loss_args(["tversky.alpha=0.2", "tversky.beta=0.8", "lovasz.classes=all"])
        {'tversky': {'alpha': 0.2, 'beta': 0.8}, 'lovasz': {'classes': 'all'}}

    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        loss, dot, arg = key.partition(".")
        if not sep or not dot or not loss or not arg:
            raise ValueError(f"--loss-arg must look like LOSS.NAME=VALUE (e.g. tversky.alpha=0.2); got {item!r}")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = {"True": True, "False": False, "None": None}.get(value, value)
        out.setdefault(loss.strip(), {})[arg.strip()] = parsed
    return out


def compare(
    losses: Sequence[str] | None = None,
    *,
    data: str | SegData = "scratch-assay",
    epochs: int | None = None,
    seeds: int | Sequence[int] = 2,
    out: str | os.PathLike[str] | None = "seglosses-compare",
    device: str = "cpu",
    loss_args: Mapping[str, Mapping[str, Any]] | None = None,
    quick: bool = False,
    config: TrainConfig | None = None,
    extra_losses: Mapping[str, LossFactory] | None = None,
    progress: bool = True,
    report: bool = True,
    log: Callable[[str], None] | None = None,
    nproc: int | None = None,
) -> ResultsTable:
    """Train the same U-Net with each loss and seed, evaluate on held-out data, and return the table.

    Args:
        losses: registry names (default :data:`DEFAULT_LOSSES`), plus any key of ``extra_losses``.
        data: a dataset name or folder (see :func:`seglosses.cli.data.load_data`), or a loaded :class:`SegData`.
        epochs: overrides the preset's number of epochs.
        seeds: the number of seeds (0..n-1) or the seeds themselves; at least 2 give a spread.
        out: results folder (resumable); ``None`` keeps everything in memory.
        device: ``"cpu"`` or ``"cuda"``.
        loss_args: keyword arguments per loss, ``{"tversky": {"alpha": 0.2}}``.
        quick: the small schedule (under 2 minutes on 2 CPU cores with the defaults).
        config: a full :class:`TrainConfig`, instead of the preset chosen by ``quick`` (``epochs`` still applies).
        extra_losses: ``{name: factory(mode) -> nn.Module}`` for candidates outside the registry.
        progress: show rich progress bars.
        report: write CSV/JSON/plots/HTML into ``out`` at the end.
        log: where to send one-line messages (default: print).
        nproc: train each run with ``DistributedDataParallel`` over this many processes (gloo on CPU, nccl on
            CUDA) spawned here, the global ``batch_size`` split between them (it must be divisible by ``nproc``).
            The table equals one process's up to float rounding, except for ``lovasz`` (no global form: per-rank
            loss). Under ``torchrun`` (``WORLD_SIZE`` set) this process is one rank and ``nproc`` may be left out.
            Only rank 0 writes files and prints; every rank returns the table. ``extra_losses`` factories must be
            picklable (module-level functions) to be spawned, and they run per rank. See :mod:`seglosses.cli.ddp`.

    Returns:
        The :class:`ResultsTable` of every requested (loss, seed).

    """
    say = log if log is not None else print
    if nproc is not None and nproc < 1:
        raise ValueError(f"compare: --nproc must be >= 1; got {nproc}")
    extra = dict(extra_losses or {})
    names = list(losses) if losses else list(DEFAULT_LOSSES)
    if len(set(names)) != len(names):
        raise ValueError(f"compare: `losses` names a loss twice: {names}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError("compare: `seeds` must name at least one seed")
    all_args = {k: dict(v) for k, v in (loss_args or {}).items()}
    unknown = sorted(set(all_args) - set(names))
    if unknown:
        raise ValueError(f"compare: --loss-arg names {unknown}, which are not among the losses compared {names}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("compare: --device cuda requested but torch.cuda.is_available() is False")
    dataset = data if isinstance(data, SegData) else load_data(data)
    if config is None:
        config = TrainConfig.preset(quick=quick, ndim=dataset.ndim, epochs=epochs)
    elif epochs is not None:
        config = TrainConfig(**{**asdict(config), "epochs": epochs})
    # Build every loss once before training so that a bad name or argument fails first, not after an hour.
    for name in list(names):
        try:
            build_loss(name, dataset.mode, all_args.get(name, {}), extra)
        except Exception as exc:
            if losses or name in all_args:
                raise ValueError(f"compare: cannot build the loss {name!r}: {exc}") from exc
            say(f"skipping the default loss {name!r}: it cannot be built here ({type(exc).__name__}: {exc})")
            names.remove(name)
    world = _launched_world_size()
    if world > 1 and nproc is not None and nproc != world:
        raise ValueError(
            f"compare: --nproc {nproc} given, but this process runs under torchrun with WORLD_SIZE={world}"
        )
    nprocs = world if world > 1 else (1 if nproc is None else nproc)
    if config.batch_size % nprocs:
        raise ValueError(
            f"compare: the global batch_size {config.batch_size} must be divisible by the number of processes "
            f"{nprocs} (each process trains on batch_size / nproc crops)"
        )
    if nprocs > 1 and world == 1 and device.startswith("cuda") and nprocs > torch.cuda.device_count():
        raise ValueError(
            f"compare: --nproc {nprocs} with --device cuda needs one GPU per process; "
            f"{torch.cuda.device_count()} visible"
        )
    setting = _Setting(names, seed_list, all_args, dataset, config, out, device, extra, progress, report)
    if world > 1:  # launched by torchrun: this process is one rank
        from seglosses.cli.ddp import init_from_env

        ctx = init_from_env(device)
        return _compare_runs(setting, ctx, say if ctx.is_main else _silent)
    if nprocs > 1:
        from seglosses.cli.ddp import spawn

        folder = Path(out) if out is not None else None
        payload = (setting, torch.get_num_threads(), log if _picklable(log) else None)
        table: ResultsTable = spawn(nprocs, device, _spawned_compare, payload, folder)
        return table
    return _compare_runs(setting, None, say)


def _silent(text: str) -> None:
    """The log of ranks other than 0."""


def _launched_world_size() -> int:
    if "WORLD_SIZE" not in os.environ and not torch.distributed.is_initialized():
        return 1  # the single-process path does not import the DDP module
    from seglosses.cli.ddp import launched_world_size

    return launched_world_size()


@dataclass(frozen=True)
class _Setting:
    """Everything a comparison's runs need, checked (picklable for the spawned processes)."""

    names: list[str]
    seeds: list[int]
    loss_args: dict[str, dict[str, Any]]
    dataset: SegData
    config: TrainConfig
    out: str | os.PathLike[str] | None
    device: str
    extra: dict[str, LossFactory]
    progress: bool
    report: bool


def _picklable(obj: object) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any pickling failure means "print instead"
        return False
    return True


def _spawned_compare(ctx: DistContext, payload: tuple[_Setting, int, Callable[[str], None] | None]) -> ResultsTable:
    """The body of a process started by ``compare(..., nproc=N)``: rank 0 logs with ``log`` if it could be sent."""
    setting, threads, log = payload
    torch.set_num_threads(threads)
    return _compare_runs(setting, ctx, (log or print) if ctx.is_main else _silent)


def build_run_loss(
    name: str, mode: str, loss_args: Mapping[str, Any], extra: Mapping[str, LossFactory], ctx: DistContext | None
) -> nn.Module:
    """:func:`build_loss`, with ``sync_stats=True`` under DDP where the loss supports it (not lovasz, not extras)."""
    if ctx is not None and name not in extra and _supports_sync(name):
        return build_loss(name, mode, {**loss_args, "sync_stats": True}, extra)
    return build_loss(name, mode, loss_args, extra)


def _supports_sync(name: str) -> bool:
    import inspect

    from seglosses.registry import loss_class

    return "sync_stats" in inspect.signature(loss_class(name)).parameters


def _compare_runs(setting: _Setting, ctx: DistContext | None, say: Callable[[str], None]) -> ResultsTable:
    """Train and evaluate every (loss, seed) of a checked setting: in one process (``ctx=None``) or as one rank."""
    names, seed_list, all_args, dataset = setting.names, setting.seeds, setting.loss_args, setting.dataset
    config, out, extra = setting.config, setting.out, setting.extra
    main = ctx is None or ctx.is_main
    device = setting.device if ctx is None else ctx.device
    progress = setting.progress and main
    report = setting.report
    out_dir = Path(out) if out is not None and main else None
    runs_dir = out_dir / "runs" if out_dir is not None else None
    if runs_dir is not None and runs_dir.is_dir():
        for stale in runs_dir.glob(".*.tmp"):  # left by a run killed between write and rename
            stale.unlink(missing_ok=True)
    if out_dir is not None:
        meta = {
            "data": dataset.name,
            "description": dataset.description,
            "mode": dataset.mode,
            "class_names": dataset.class_names,
            "config": asdict(config),
            "losses": names,
            "seeds": seed_list,
            "loss_args": all_args,
        }
        _atomic_write(out_dir / "config.json", json.dumps(meta, indent=2, default=str))
    say(f"data: {dataset.description}")
    results: dict[tuple[str, int], RunResult] = {}
    todo: list[tuple[str, int]] = []
    for seed in seed_list:
        for name in names:
            fp = _fingerprint(dataset, config, name, all_args.get(name, {}))
            done = _load_run(runs_dir / f"{_run_key(name, seed)}.json") if runs_dir is not None else None
            if done is not None and done.fingerprint == fp and not done.status.startswith("error"):
                results[(name, seed)] = done
            else:
                todo.append((name, seed))
    if ctx is not None:  # rank 0 read the finished runs: every rank must run the same list
        results, todo = ctx.broadcast((results, todo))
    if results:
        say(f"resuming: {len(results)} finished run(s) skipped, {len(todo)} to run")
    total_steps = config.epochs * config.steps_per_epoch
    with _Progress(progress, len(todo), total_steps, say) as bars:
        for name, seed in todo:
            args = all_args.get(name, {})
            bars.start(f"{name} (seed {seed})")
            started = time.perf_counter()
            try:
                loss_fn = build_run_loss(name, dataset.mode, args, extra, ctx)
                model, history, status = train_run(
                    dataset,
                    loss_fn,
                    seed=seed,
                    config=config,
                    device=device,
                    on_step=bars.step,
                    on_epoch=None,
                    dist_ctx=ctx,
                )
                metrics, preds = evaluate(model, dataset, depth=config.depth, device=device) if main else ({}, [])
            except (RuntimeError, ValueError, TypeError) as exc:
                history, status, metrics, preds = [], f"error: {type(exc).__name__}: {exc}", {}, []
            result = RunResult(
                loss=name,
                seed=seed,
                metrics=metrics,
                history=history,
                status=status,
                seconds=time.perf_counter() - started,
                loss_args=dict(args),
                fingerprint=_fingerprint(dataset, config, name, args),
            )
            if ctx is not None:  # rank 0 evaluated: every rank returns its result
                result = ctx.broadcast(result)
            results[(name, seed)] = result
            if runs_dir is not None:
                if preds:
                    _save_previews(runs_dir / f"{_run_key(name, seed)}.npz", preds[:PREVIEWS])
                _atomic_write(
                    runs_dir / f"{_run_key(name, seed)}.json",
                    json.dumps(_nan_to_none(asdict(result)), indent=1, allow_nan=False),
                )
            bars.finish(f"{name} (seed {seed}): {status}, mean dice {result.score():.3f}, {result.seconds:.0f}s")
    table = ResultsTable(
        runs=[results[(n, s)] for n in names for s in seed_list],
        class_names=dataset.class_names[1:] if dataset.mode == "binary" else dataset.class_names,
        mode=dataset.mode,
        data=dataset.name,
        description=dataset.description,
        config=asdict(config),
    )
    if out_dir is not None and report:
        from seglosses.cli.report import write_report

        write_report(table, dataset, out_dir)
    return table


def _save_previews(path: Path, preds: Sequence[Tensor]) -> None:
    """Save the first validation predictions (middle slice of a volume) as uint8 arrays in ``.npz``, atomically."""
    import io

    arrays = {}
    for i, pred in enumerate(preds):
        array = pred.numpy()
        if array.ndim == 3:
            array = array[array.shape[0] // 2]
        arrays[f"pred{i}"] = array.astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    _atomic_write(path, buffer.getvalue())


class _Progress:
    """rich progress bars (overall runs + steps of the current run), or nothing with ``enabled=False``."""

    def __init__(self, enabled: bool, runs: int, steps: int, log: Callable[[str], None]) -> None:
        self.enabled = enabled and runs > 0
        self.runs, self.steps, self.log = runs, steps, log

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
            )
            self.bar.__enter__()
            self.overall = self.bar.add_task("runs", total=self.runs, info="")
            self.current = self.bar.add_task("", total=self.steps, info="", visible=False)
        return self

    def start(self, label: str) -> None:
        if self.enabled:
            self.bar.reset(self.current, total=self.steps, description=label, info="", visible=True)

    def step(self, step: int, loss: float) -> None:
        if self.enabled:
            self.bar.update(self.current, completed=step, info=f"loss {loss:.4f}")

    def finish(self, message: str) -> None:
        if self.enabled:
            self.bar.advance(self.overall)
            self.bar.console.print(message, highlight=False)
        else:
            self.log(message)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)
