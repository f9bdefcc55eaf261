"""Train the same model with each candidate loss and compare them on held-out data: the orchestration.

Python API: :func:`compare` returns a :class:`~seglosses.cli.results.ResultsTable`. The command line
(``seglosses compare``) is a thin wrapper around it. Fairness by construction: for a given seed every loss gets the
same initial weights (the model factory runs under the seed), the same sequence of training batches and
augmentations (one ``torch.Generator`` seeded per run), the same optimiser (AdamW), schedule (linear warm-up then
cosine decay) and number of steps; the validation data are never trained on. Metrics are those of the final weights
(choosing the best epoch on the validation data would leak it into the comparison).

Results are written as each (loss, seed) run finishes (``OUT/runs/<loss>__seed<k>.json``, written to a temporary
file then renamed, so Ctrl-C never leaves half a file); running again with the same ``out`` skips the runs already
finished with the same settings. A comparison holds ``OUT/.seglosses.lock`` (an ``flock``, released by the kernel
however the process ends) while it writes, so that a second one started on the same folder stops with a message
instead of training everything again and removing the first one's temporary files.

Modules, imports one way: :mod:`.train` (one run and its validation) and :mod:`.results` (table, statistics,
recommendation) know nothing of this module; :mod:`.report` renders a table; this module uses all three.
Only torch, numpy and the standard library are imported at module level; rich and matplotlib are imported inside
the functions that draw.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from seglosses.cli.data import SegData, check_class_names, check_ignore_index, from_datasets, load_data
from seglosses.cli.results import (
    METRICS,
    LossSummary,
    PairedComparison,
    Recommendation,
    ResultsTable,
    RunResult,
    atomic_write,
    nan_to_none,
    none_to_nan,
)
from seglosses.cli.train import (
    PREVIEWS,
    Evaluation,
    FactoryError,
    LossFactory,
    ModelFactory,
    RunSetup,
    StepTimes,
    TrainConfig,
    build_loss,
    check_amp,
    check_model,
    crop_for_model,
    evaluate,
    fingerprint,
    predict_logits,
    train_run,
)

if TYPE_CHECKING:
    from seglosses.cli.ddp import DistContext

__all__ = [
    "DEFAULT_LOSSES",
    "METRICS",
    "LossSummary",
    "PairedComparison",
    "Recommendation",
    "ResultsTable",
    "RunResult",
    "RunSetup",
    "TrainConfig",
    "build_loss",
    "compare",
    "evaluate",
    "parse_loss_args",
    "predict_logits",
    "train_run",
]

#: The losses :func:`seglosses.compare` trains when ``losses`` is not given.
DEFAULT_LOSSES: tuple[str, ...] = ("dice", "dice_ce", "focal", "tversky", "focal_tversky", "lovasz", "unified_focal")

# Names kept for the modules that imported them from here before the split.
_atomic_write = atomic_write
_nan_to_none = nan_to_none
_fingerprint = fingerprint


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


DataArg = str | SegData | tuple[Dataset[Any], Dataset[Any]]

#: A folder with at least this many pairs shows a progress bar while each pair is read and checked.
CHECK_BAR_FILES = 50


class _CheckBar:
    """A transient rich bar over the pairs of a folder being checked, shown from :data:`CHECK_BAR_FILES` pairs."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _CheckBar:
        return self

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total < CHECK_BAR_FILES:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("checking the data folder"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("check", total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def resolve_data(
    data: DataArg,
    *,
    num_classes: int | None,
    crop: Sequence[int] | None,
    caller: str,
    ignore_index: int | None = None,
    progress: bool = False,
    class_names: Sequence[str] | None = None,
) -> SegData:
    """A :class:`SegData` from a dataset name or folder, a loaded one, or a ``(train, val)`` pair of Datasets.

    ``ignore_index`` (the mask value of pixels neither trained on nor scored) is checked and set on the result; a
    loaded :class:`SegData` keeps its own when ``ignore_index`` is ``None``. ``progress``: a transient progress bar
    while a folder of at least :data:`CHECK_BAR_FILES` pairs is checked (on rank 0 only under ``torchrun``).
    ``class_names`` (one per class, the background first) replace the data's names.
    """
    dataset = _resolve(data, num_classes, crop, caller, ignore_index, progress)
    if class_names is None:
        return dataset
    names = check_class_names(class_names, dataset.num_classes, f"{caller}: `class_names`")
    if names == dataset.class_names:
        return dataset
    # in the description, hence in every run's fingerprint: the per-class results are keyed by name, so a results
    # folder resumed under other names must not mix the runs of both
    return replace(dataset, class_names=names, description=f"{dataset.description}; classes: {', '.join(names)}")


def _resolve(
    data: DataArg,
    num_classes: int | None,
    crop: Sequence[int] | None,
    caller: str,
    ignore_index: int | None,
    progress: bool,
) -> SegData:
    if isinstance(data, SegData):
        if ignore_index is None or ignore_index == data.ignore_index:
            return data
        check_ignore_index(ignore_index, data.num_classes, caller)
        return replace(data, ignore_index=int(ignore_index))
    if isinstance(data, str | os.PathLike):
        with _CheckBar(progress and int(os.environ.get("RANK", "0")) == 0) as bar:
            dataset = load_data(str(data), ignore_index=ignore_index, on_file=bar.update)
        if num_classes is not None and num_classes != dataset.num_classes:
            raise ValueError(
                f"{caller}: `num_classes`={num_classes} does not match the data {dataset.name!r} "
                f"({dataset.num_classes} classes); leave it out for a named dataset or folder"
            )
        return dataset if crop is None else _with_crop(dataset, crop, caller)
    if isinstance(data, tuple | list) and len(data) == 2:
        if num_classes is None:
            raise ValueError(f"{caller}: data=(train, val) needs `num_classes` (2 for a binary task)")
        return from_datasets(
            data[0], data[1], num_classes=num_classes, crop=crop, caller=caller, ignore_index=ignore_index
        )
    raise TypeError(
        f"{caller}: `data` must be a dataset name, a folder path or a (train, val) pair of Datasets; "
        f"got {type(data).__name__}"
    )


def _with_crop(dataset: SegData, crop: Sequence[int], caller: str) -> SegData:
    """A named dataset or folder trained on random crops of the size given (used as it is, padded where smaller).

    The crop enters the description, hence every run's fingerprint: a results folder resumed with another crop
    trains again instead of mixing runs of both.
    """
    integers = all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in crop)
    if isinstance(crop, str | bytes) or not integers:
        raise ValueError(f"{caller}: `crop` must hold {dataset.ndim} positive integer sizes; got {crop!r}")
    sizes = tuple(int(c) for c in crop)
    if len(sizes) != dataset.ndim or min(sizes) < 1:
        raise ValueError(
            f"{caller}: `crop` must hold {dataset.ndim} positive sizes for the {dataset.ndim}D data "
            f"{dataset.name!r}; got {sizes}"
        )
    if sizes == dataset.crop:
        return dataset
    return replace(dataset, crop=sizes, description=f"{dataset.description}; crop {'x'.join(map(str, sizes))}")


def compare(
    losses: Sequence[str] | None = None,
    *,
    data: DataArg = "scratch-assay",
    num_classes: int | None = None,
    model: ModelFactory | None = None,
    seeds: int | Sequence[int] = 2,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    amp: str | None = None,
    num_workers: int = 0,
    crop: Sequence[int] | None = None,
    window: Sequence[int] | None = None,
    size_multiple: int | None = None,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float | None = None,
    ignore_index: int | None = None,
    class_names: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = "seglosses-compare",
    loss_args: Mapping[str, Mapping[str, Any]] | None = None,
    quick: bool = False,
    config: TrainConfig | None = None,
    extra_losses: Mapping[str, LossFactory] | None = None,
    progress: bool = True,
    report: bool = True,
    log: Callable[[str], None] | None = None,
    nproc: int | None = None,
) -> ResultsTable:
    """Train the same model with each loss and seed, evaluate on held-out data, and return the table.

    Every (loss, seed) run starts from the same weights for a given seed (the model factory is called with torch's
    RNG seeded from it), sees the same batches (a crop sampler seeded from it), and trains with the same optimiser
    and schedule. The recommendation compares the best loss with each other by paired differences over
    (validation image, seed) pairs with a 95 % percentile bootstrap interval of their mean (10,000 resamples of the
    pairs, NumPy generator seed 0: :data:`~seglosses.cli.results.BOOTSTRAP_RESAMPLES`, :mod:`seglosses.cli.results`);
    the best loss is a clear winner only when the interval against the runner-up is above 0.

    Each validation image is scored by the mean over the foreground classes of its own Dice (IoU, precision,
    recall). A class absent from both the image's mask and the prediction scores 1 (nothing to find, nothing
    found). So an image with no foreground scores 1 when the prediction has none either; each foreground class
    predicted there scores Dice, IoU and precision 0 and recall 1 (0/0), and the image is the mean over the classes.

    Args:
        losses: registry names (default :data:`~seglosses.cli.compare.DEFAULT_LOSSES`; ``["all"]``: every registry loss
            that supports the task), plus any key of ``extra_losses``. A loss with an argument that has no default gets
            the task's neutral one (:func:`seglosses.registry.default_arguments`) unless ``loss_args`` gives it.
        data: a dataset name or folder (see :func:`seglosses.cli.data.load_data`; folders are read lazily), a
            loaded :class:`~seglosses.cli.data.SegData`, or ``(train, val)``: two map-style
            ``torch.utils.data.Dataset`` objects of ``(image (C, *S) float, mask (*S) int64)``, read item by item
            through a ``DataLoader`` (nothing needs to fit in memory).
        num_classes: K, the number of classes with the background (2 for a binary task); required with
            ``data=(train, val)``, else taken from the data.
        model: a factory returning a fresh ``nn.Module`` that maps ``(N, C, *S)`` to ``(N, K', *S)`` logits, with
            ``K' = 1`` for a binary task and ``K`` otherwise. It is called as
            ``model(in_channels=C, out_channels=K')`` when its signature has both parameters (or ``**kwargs``;
            positional-only ones get them by position), else ``model()``, once per run with torch's RNG seeded from
            the run's seed, and once more before the first run to check its output. A factory that raises stops the
            comparison with a ``ValueError`` (never recorded as a run; the runs finished before it are kept).
            The check (:func:`seglosses.cli.train.check_model`) runs the first validation image in evaluation mode
            and the first training batch in training mode: the model must return one tensor at its input's size
            both times; a dict, tuple or list, stacked deep-supervision heads, lower-resolution logits,
            half-precision or mixed-dtype parameters, no trainable parameter, or an exception refuse it with a
            ``ValueError`` saying how to adapt it. A float64 model gets float64 images.
            Default ``None``: the built-in U-Net (:class:`seglosses.cli.model.UNet`).
        seeds: the number of seeds (0..n-1) or the seeds themselves; at least 2 give a spread.
        epochs: overrides the preset's number of epochs (12; ``quick``: 4).
        steps_per_epoch: overrides the preset's optimiser steps per epoch (20; ``quick``: 10).
        batch_size: overrides the preset's training crops per step (8 in 2D, 2 in 3D).
        device: ``"cpu"`` or ``"cuda"`` (training, validation and metrics on it).
        amp: mixed precision: ``None`` (float32, default: the numbers of earlier versions), ``"bf16"`` (CPU or
            CUDA) or ``"fp16"`` (CUDA only, with a gradient scaler).
        num_workers: DataLoader worker processes reading and cropping (default 0: in this process; memory is
            pinned on CUDA). The batches are the same for any number of workers.
        crop: train on random crops of this spatial size (padded where an item is smaller, with random flips).
            With ``data=(train, val)`` the default is the items whole (batched as they are); named datasets and
            folders choose a crop themselves (and round it up to ``size_multiple`` for a ``model`` factory), which
            this replaces, used as it is (``--crop``: a model that takes one input size, with ``window``).
        window: predict validation images larger than this spatial size by a sliding window (half overlap, logits
            averaged) and pad smaller ones to it, so that the model sees inputs of this size only (rounded up to
            ``size_multiple``); default ``None``: every validation image whole.
        size_multiple: validation inputs are padded at the end to a multiple of this (then cropped back); default:
            ``2**depth`` for the built-in U-Net, 32 for a ``model`` factory (the stride of most encoders). With a
            ``model`` factory the training crop of a named dataset or folder is rounded up to a multiple of it too
            (items smaller than the crop are padded); a ``crop`` you give is used as it is.
        spacing: the pixel/voxel size per spatial axis for the HD95 and NSD columns (physical units); default
            ``None``: each validation image's NIfTI header for a NIfTI folder, else 1.
        nsd_tolerance: the NSD tolerance in the units of ``spacing`` (default 1.0:
            :data:`seglosses.cli.train.NSD_TOLERANCE`).
        ignore_index: the mask value of pixels that are neither trained on nor scored, such as the 255 'void'
            border of Pascal VOC or Cityscapes masks; it must lie outside the class indices ``[0, K)``. Every
            registry loss gets it as its ``ignore_index``, an ``extra_losses`` factory as
            ``factory(mode, ignore_index=...)`` (one that takes no such keyword is refused); the validation metrics
            and surface distances leave those pixels out, training crops are padded with it, and a folder's class
            count and class fractions leave it out. Default ``None``: every mask value is a class index.
        class_names: one name per class, the background first, for the tables, plots and CSV columns (default: the
            data's own: a folder's ``classes.txt``, else ``background``, ``class 1``, ...).
        out: results folder (resumable); ``None`` keeps everything in memory.
        loss_args: keyword arguments per loss, ``{"tversky": {"alpha": 0.2}}``.
        quick: the small schedule (under 2 minutes on 2 CPU cores with the defaults).
        config: a full :class:`~seglosses.cli.train.TrainConfig`, instead of the preset chosen by ``quick`` (``epochs``,
            ``steps_per_epoch`` and ``batch_size`` still apply).
        extra_losses: ``{name: factory(mode) -> nn.Module}`` for candidates outside the registry.
        progress: show rich progress bars.
        report: write CSV/JSON/plots/HTML into ``out`` at the end.
        log: where to send one-line messages (default: print).
        nproc: train each run with ``DistributedDataParallel`` over this many processes (gloo on CPU, nccl on
            CUDA) spawned here, the global ``batch_size`` split between them (it must be divisible by ``nproc``).
            The table equals one process's up to float rounding, except for ``lovasz`` (no global form: per-rank
            loss). Under ``torchrun`` (``WORLD_SIZE`` set) this process is one rank and ``nproc`` may be left out.
            Only rank 0 writes files and prints; every rank returns the table. ``extra_losses`` and ``model``
            factories must be picklable (module-level functions) to be spawned. See ``seglosses.cli.ddp``.

    Returns:
        The :class:`~seglosses.cli.results.ResultsTable` of every requested (loss, seed), with per-image validation
        values and each run's ``data_wait_s`` and ``train_s``: the seconds its training steps waited for their batch
        and took in all (:meth:`~seglosses.cli.results.ResultsTable.data_loading` sums them; a share of the wait
        above a fifth means the loader, not the model, set the pace: more ``num_workers`` would help).

    Raises:
        ValueError: a bad loss name or argument, bad data, ``amp="fp16"`` off CUDA, or a ``model`` whose output
            has the wrong number of channels (raised before any training and before any file is written); an ``out``
            that cannot be written or that another comparison is writing to (before any training); a result or
            report file that cannot be written (a full disk: the runs finished before it are kept).
        TypeError: ``data`` of an unknown kind.

    Examples:
        A seconds-long comparison on generated data, without files:

        >>> import seglosses
        >>> from seglosses.cli.compare import TrainConfig
        >>> tiny = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=2)
        >>> table = seglosses.compare(["dice", "focal"], data="synthetic:binary", seeds=1, config=tiny, out=None,
        ...                           progress=False, log=lambda _: None)
        >>> [(r.loss, r.seed, r.status) for r in table.runs]
        [('dice', 0, 'ok'), ('focal', 0, 'ok')]
        >>> rec = table.recommendation()
        >>> rec.clear == (rec.ci_low > 0)
        True

        Your own network and data (not run here: it needs ``segmentation_models_pytorch``, which seglosses does not
        depend on, and Datasets of ``(image (C, H, W) float, mask (H, W) int64)``):

        >>> import segmentation_models_pytorch as smp  # doctest: +SKIP
        >>> def unet(in_channels, out_channels):  # called under each run's seed  # doctest: +SKIP
        ...     return smp.Unet("resnet18", encoder_weights=None, in_channels=in_channels, classes=out_channels)
        >>> table = seglosses.compare(  # doctest: +SKIP
        ...     ["dice", "dice_ce", "focal"], data=(train_ds, val_ds), num_classes=4, model=unet, seeds=3,
        ...     device="cuda", amp="bf16", num_workers=4, batch_size=16, window=(512, 512), out="my-comparison")
        >>> print(table.recommendation().text)  # doctest: +SKIP

    """
    say = log if log is not None else print
    if nproc is not None and nproc < 1:
        raise ValueError(f"compare: `nproc` must be >= 1; got {nproc}")
    if num_workers < 0:
        raise ValueError(f"compare: `num_workers` must be >= 0; got {num_workers}")
    for label, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"compare: `{label}` must be >= 1; got {value}")
    if size_multiple is not None and size_multiple < 1:
        raise ValueError(f"compare: `size_multiple` must be >= 1; got {size_multiple}")
    check_amp(amp, device, "compare")
    if nsd_tolerance is not None and not (math.isfinite(nsd_tolerance) and nsd_tolerance >= 0):
        raise ValueError(f"compare: `nsd_tolerance` must be a finite number >= 0; got {nsd_tolerance}")
    extra = dict(extra_losses or {})
    every = losses is not None and list(losses) == ["all"]
    if every:
        from seglosses.registry import available_losses

        names = available_losses()
    else:
        names = list(losses) if losses else list(DEFAULT_LOSSES)
    if len(set(names)) != len(names):
        raise ValueError(f"compare: `losses` names a loss twice: {names}")
    for name in names if out is not None else ():  # each run is saved as OUT/runs/<name>__seed<k>.json
        if not isinstance(name, str) or not name or name.startswith(".") or any(c in name for c in "/\\\0"):
            raise ValueError(
                f"compare: the loss name {name!r} cannot name its result files (runs/<name>__seed<k>.json): use a "
                "non-empty name without '/', '\\' or a leading '.'"
            )
    seed_list = _seed_list(seeds)
    if not seed_list:
        raise ValueError("compare: `seeds` must name at least one seed")
    if len(set(seed_list)) != len(seed_list):
        raise ValueError(f"compare: `seeds` names a seed twice: {seed_list}")
    all_args = {k: dict(v) for k, v in (loss_args or {}).items()}
    unknown = sorted(set(all_args) - set(names))
    if unknown:
        raise ValueError(f"compare: `loss_args` names {unknown}, which are not among the losses compared {names}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("compare: device='cuda' requested but torch.cuda.is_available() is False")
    dataset = resolve_data(
        data,
        num_classes=num_classes,
        crop=crop,
        caller="compare",
        ignore_index=ignore_index,
        progress=progress,
        class_names=class_names,
    )
    if window is not None and (len(window) != dataset.ndim or min(window) < 1):
        raise ValueError(f"compare: `window` must hold {dataset.ndim} positive sizes; got {tuple(window)}")
    if spacing is not None and (
        len(spacing) != dataset.ndim or not all(math.isfinite(v) and v > 0 for v in map(float, spacing))
    ):
        raise ValueError(f"compare: `spacing` must hold {dataset.ndim} positive sizes; got {tuple(spacing)}")
    if config is None:
        config = TrainConfig.preset(quick=quick, ndim=dataset.ndim, epochs=epochs)
    elif epochs is not None:
        config = TrainConfig(**{**asdict(config), "epochs": epochs})
    overrides = {"steps_per_epoch": steps_per_epoch, "batch_size": batch_size}
    config = TrainConfig(**{**asdict(config), **{k: v for k, v in overrides.items() if v is not None}})
    setup = RunSetup(
        model=model,
        amp=amp,
        num_workers=num_workers,
        size_multiple=size_multiple,
        window=None if window is None else tuple(int(w) for w in window),
        spacing=None if spacing is None else tuple(float(v) for v in spacing),
        nsd_tolerance=None if nsd_tolerance is None else float(nsd_tolerance),
    )
    if isinstance(data, str | os.PathLike) and crop is None:  # a crop chosen by load_data: one the model accepts
        dataset = crop_for_model(dataset, setup, config)
    # The arguments without a default that a registry loss needs for this task (the generalised Wasserstein Dice
    # loss's dist_matrix = 1 - eye(K)); the user's own arguments take precedence. A loss that does not support the
    # task's mode is an error when named, and skipped (with a message) among the defaults or "all".
    for name in list(names):
        needed = _task_arguments(name, dataset, extra)
        if needed is None:
            if losses and not every:
                raise ValueError(f"compare: the loss {name!r} does not support {dataset.mode} tasks")
            say(f"skipping the loss {name!r}: it does not support {dataset.mode} tasks")
            names.remove(name)
        elif needed:
            all_args[name] = {**needed, **all_args.get(name, {})}
    # Build every loss once before training so that a bad name or argument fails first, not after an hour.
    for name in list(names):
        try:
            build_loss(name, dataset.mode, all_args.get(name, {}), extra, dataset.ignore_index)
        except Exception as exc:
            if (losses and not every) or name in all_args:
                raise ValueError(f"compare: cannot build the loss {name!r}: {exc}") from exc
            say(f"skipping the default loss {name!r}: it cannot be built here ({type(exc).__name__}: {exc})")
            names.remove(name)
    world = _launched_world_size()
    if world > 1 and nproc is not None and nproc != world:
        raise ValueError(
            f"compare: `nproc`={nproc} given, but this process runs under torchrun with WORLD_SIZE={world}"
        )
    nprocs = world if world > 1 else (1 if nproc is None else nproc)
    if config.batch_size % nprocs:
        raise ValueError(
            f"compare: the global batch_size {config.batch_size} must be divisible by the number of processes "
            f"{nprocs} (each process trains on batch_size / nproc crops)"
        )
    if nprocs > 1 and world == 1 and device.startswith("cuda") and nprocs > torch.cuda.device_count():
        raise ValueError(
            f"compare: `nproc`={nprocs} with device='cuda' needs one GPU per process; "
            f"{torch.cuda.device_count()} visible"
        )
    if model is not None:  # the output channels, before any run and any file
        architecture = check_model(dataset, setup, config, seed=seed_list[0], device=device, caller="compare")
        setup = replace(setup, architecture=architecture)
    setting = _Setting(names, seed_list, all_args, dataset, config, out, device, extra, progress, report, setup)
    with _folder_lock(out, "compare"):  # rank 0 (or the process that spawns the ranks) holds it
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


#: The lock file of a results folder (see :func:`_folder_lock`).
LOCK_FILE = ".seglosses.lock"


@contextlib.contextmanager
def _folder_lock(out: str | os.PathLike[str] | None, caller: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``OUT/.seglosses.lock`` (holding the pid) while a comparison writes to ``out``.

    A second comparison on the same folder raises ``ValueError`` naming the first one's pid. The kernel releases the
    lock when the process ends, however it ends (SIGKILL included), so a killed comparison never leaves the folder
    locked. A folder that cannot be written raises ``ValueError`` here, before any training. Only rank 0 of a
    ``torchrun`` launch locks; without ``fcntl`` (Windows) or on a file system without locks nothing is locked.
    """
    if out is None or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{caller}: cannot write the results folder {folder}: {_reason(exc)}") from exc
    with handle:
        _lock(handle, folder, caller)
        yield


def _lock(handle: Any, folder: Path, caller: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        raise ValueError(
            f"{caller}: the results folder {folder} is in use by another process (pid {owner}); wait for it to "
            "finish, or give another `out`"
        ) from None
    except OSError:  # a file system without locks (some network mounts): go on unlocked
        return
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()


def _reason(exc: OSError) -> str:
    """``exc`` in a few words: ``"No space left on device"`` rather than its repr."""
    return exc.strerror or str(exc) or type(exc).__name__


def _remove_leftovers(folder: Path) -> None:
    """Remove the temporary files (``.*.tmp``) a killed comparison left in ``folder`` and ``folder/runs``.

    Called under the folder's lock, so none of them belongs to a live comparison: a result file's
    ``.<name>.<pid>.tmp`` (:func:`~seglosses.cli.results.atomic_write`) and the report's ``.report-*.tmp`` folder of
    plots.
    """
    for where in (folder, folder / "runs"):
        if not where.is_dir():
            continue
        for stale in where.glob(".*.tmp"):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as Python ints: ``N`` (any integer type, NumPy's too) means ``0..N-1``, else the seeds given."""
    import operator

    if isinstance(seeds, bool):
        raise TypeError(f"compare: `seeds` must be a number of seeds or a sequence of seeds; got {seeds!r}")
    try:
        return list(range(operator.index(seeds)))  # type: ignore[arg-type]
    except TypeError:
        pass
    try:
        return [operator.index(s) for s in seeds]  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(
            f"compare: `seeds` must be a number of seeds or a sequence of integer seeds; got {seeds!r}"
        ) from None


def _task_arguments(name: str, dataset: SegData, extra: Mapping[str, LossFactory]) -> dict[str, Any] | None:
    """:func:`seglosses.registry.default_arguments` for a registry loss on this data; ``{}`` for other names."""
    if name in extra:
        return {}
    from seglosses.registry import available_losses, default_arguments

    if name not in available_losses():
        return {}  # an unknown name: building it raises the registry's error with a did-you-mean hint
    return default_arguments(name, mode=dataset.mode, num_classes=dataset.out_channels)


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
    setup: RunSetup


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
    name: str,
    mode: str,
    loss_args: Mapping[str, Any],
    extra: Mapping[str, LossFactory],
    ctx: DistContext | None,
    ignore_index: int | None = None,
) -> nn.Module:
    """:func:`build_loss`, with ``sync_stats=True`` under DDP where the loss supports it (not lovasz, not extras)."""
    if ctx is not None and name not in extra and _supports_sync(name):
        return build_loss(name, mode, {**loss_args, "sync_stats": True}, extra, ignore_index)
    return build_loss(name, mode, loss_args, extra, ignore_index)


def _supports_sync(name: str) -> bool:
    import inspect

    from seglosses.registry import loss_class

    return "sync_stats" in inspect.signature(loss_class(name)).parameters


def _run_key(loss: str, seed: int) -> str:
    return f"{loss}__seed{seed}"


def _load_run(path: Path) -> RunResult | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return RunResult(
            **{
                **raw,
                "metrics": none_to_nan(raw["metrics"]),
                "history": [none_to_nan(h) for h in raw["history"]],
                "per_image": none_to_nan(raw.get("per_image", {})),
                # absent from the runs of older versions (NaN: unknown); null in JSON where not finite
                "data_wait_s": none_to_nan(raw.get("data_wait_s")),
                "train_s": none_to_nan(raw.get("train_s")),
            }
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _compare_runs(setting: _Setting, ctx: DistContext | None, say: Callable[[str], None]) -> ResultsTable:
    """Train and evaluate every (loss, seed) of a checked setting: in one process (``ctx=None``) or as one rank."""
    names, seed_list, all_args, dataset = setting.names, setting.seeds, setting.loss_args, setting.dataset
    config, out, extra, setup = setting.config, setting.out, setting.extra, setting.setup
    main = ctx is None or ctx.is_main
    device = setting.device if ctx is None else ctx.device
    progress = setting.progress and main
    report = setting.report
    out_dir = Path(out) if out is not None and main else None
    runs_dir = out_dir / "runs" if out_dir is not None else None
    if out_dir is not None:
        _remove_leftovers(out_dir)  # of a comparison killed while writing (the folder is locked: none is live)
        meta = {
            "data": dataset.name,
            "description": dataset.description,
            "mode": dataset.mode,
            "class_names": dataset.class_names,
            "config": asdict(config),
            "setup": setup.identity() | {"num_workers": setup.num_workers},
            "losses": names,
            "seeds": seed_list,
            "loss_args": all_args,
        }
        _write(out_dir / "config.json", json.dumps(meta, indent=2, default=str), out_dir)
    say(f"data: {dataset.description}")
    results: dict[tuple[str, int], RunResult] = {}
    todo: list[tuple[str, int]] = []
    unusable: dict[str, list[str]] = {}  # why -> the run files found but not taken as finished runs
    for seed in seed_list:
        for name in names:
            fp = fingerprint(dataset, config, name, all_args.get(name, {}), setup)
            path = runs_dir / f"{_run_key(name, seed)}.json" if runs_dir is not None else None
            done = _load_run(path) if path is not None else None
            if done is None:  # none yet, or one cut short or edited by hand into something else
                why = "cannot be read" if path is not None and path.exists() else ""
            elif done.fingerprint != fp:
                why = "were made with other settings"
            elif (done.loss, done.seed) != (name, seed):  # copied or renamed by hand: never read as this run
                why = "hold the result of another (loss, seed)"
            elif done.status.startswith("error"):
                why = "hold failed runs"
            else:
                results[(name, seed)] = done
                continue
            if why:
                unusable.setdefault(why, []).append(f"runs/{_run_key(name, seed)}.json")
            todo.append((name, seed))
    if ctx is not None:  # rank 0 read the finished runs: every rank must run the same list
        results, todo = ctx.broadcast((results, todo))
    if results:
        say(f"resuming: {len(results)} finished run(s) skipped, {len(todo)} to run")
    for why, files in unusable.items():
        listed = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        say(f"{len(files)} result file(s) {why}, so those runs run again: {listed}")
    total_steps = config.epochs * config.steps_per_epoch
    with _Progress(progress, len(todo), total_steps, say) as bars:
        for name, seed in todo:
            args = all_args.get(name, {})
            bars.start(f"{name} (seed {seed})")
            started = time.perf_counter()
            evaluation: list[Evaluation] = []
            times = StepTimes()
            try:
                loss_fn = build_run_loss(name, dataset.mode, args, extra, ctx, dataset.ignore_index)
                _, history, status = train_run(
                    dataset,
                    loss_fn,
                    seed=seed,
                    config=config,
                    device=device,
                    on_step=bars.step,
                    on_epoch=None,
                    dist_ctx=ctx,
                    setup=setup,
                    evaluation=evaluation,
                    times=times,
                )
            except FactoryError as exc:  # the model, not the loss: stop here, record nothing for this run
                raise ValueError(
                    f"compare: {exc} (run {name!r}, seed {seed}); the runs finished before it are kept"
                    + (f" in {out}" if out is not None else "")
                ) from exc.__cause__
            except (RuntimeError, ValueError, TypeError) as exc:
                history, status, evaluation = [], f"error: {type(exc).__name__}: {exc}", []
            final = evaluation[-1] if evaluation else Evaluation({})
            result = RunResult(
                loss=name,
                seed=seed,
                metrics=final.metrics,
                history=history,
                status=status,
                seconds=time.perf_counter() - started,
                loss_args=dict(args),
                fingerprint=fingerprint(dataset, config, name, args, setup),
                per_image=final.per_image,
                data_wait_s=times.data_wait_s if times.steps else math.nan,
                train_s=times.train_s if times.steps else math.nan,
            )
            if ctx is not None:  # rank 0 evaluated: every rank returns its result
                result = ctx.broadcast(result)
            results[(name, seed)] = result
            if runs_dir is not None and out_dir is not None:
                if final.previews:
                    previews = _previews_npz(final.previews[:PREVIEWS], result.fingerprint)
                    _write(runs_dir / f"{_run_key(name, seed)}.npz", previews, out_dir)
                record = json.dumps(nan_to_none(asdict(result)), indent=1, allow_nan=False)
                _write(runs_dir / f"{_run_key(name, seed)}.json", record, out_dir)
            loading = f", data loading {result.loading_share:.0%} of the training steps' time" if times.steps else ""
            bars.finish(
                f"{name} (seed {seed}): {status}, mean dice {result.score():.3f}, {result.seconds:.0f}s{loading}"
            )
    table = ResultsTable(
        runs=[results[(n, s)] for n in names for s in seed_list],
        class_names=dataset.class_names[1:] if dataset.mode == "binary" else dataset.class_names,
        mode=dataset.mode,
        data=dataset.name,
        description=dataset.description,
        config=asdict(config) | {"setup": setup.identity()},
        val_images=dataset.num_val,
    )
    if out_dir is not None and report:
        from seglosses.cli.report import write_report

        try:
            write_report(table, dataset, out_dir)
        except OSError as exc:  # a full disk, a folder made read-only: the runs are kept, the report can follow
            raise ValueError(
                f"compare: cannot write the report in {out_dir}: {_reason(exc)}; the runs are kept in {runs_dir}: "
                "run the same command again to write it"
            ) from exc
    return table


def _write(path: Path, content: str | bytes, out_dir: Path) -> None:
    """:func:`atomic_write`; a write that fails (a full disk, a read-only folder) raises ``ValueError`` saying so."""
    try:
        atomic_write(path, content)
    except OSError as exc:
        raise ValueError(
            f"compare: cannot write {path}: {_reason(exc)}; the runs finished before it are kept in {out_dir}: free "
            "some space (or make the folder writable) and run the same command again"
        ) from exc


def _previews_npz(preds: Sequence[Tensor], run_fingerprint: str) -> bytes:
    """The first validation predictions (middle slice of a volume) as uint8 arrays, in ``.npz`` bytes.

    The file also holds the run's ``fingerprint``: the report shows a prediction only next to the run that made it
    (a comparison killed between writing a run's ``.npz`` and its ``.json`` leaves the new predictions beside the
    old settings' run).
    """
    import io

    arrays = {}
    for i, pred in enumerate(preds):
        array = pred.numpy()
        if array.ndim == 3:
            array = array[array.shape[0] // 2]
        arrays[f"pred{i}"] = array.astype(np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, fingerprint=np.array(run_fingerprint), **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


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
            self.bar.console.print(message, highlight=False, markup=False)
        else:
            self.log(message)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)
