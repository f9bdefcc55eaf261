"""One training run of ``seglosses compare`` / ``tune``, and the validation of its model.

The single training loop (:func:`train_run`, also the loop of every DDP rank) and validation (:func:`validate`):
batches come through a ``torch.utils.data.DataLoader`` (``num_workers`` processes, pinned memory on CUDA) from
crop specs drawn by one generator seeded per run, so that every loss sees the same batches for a given seed; the
model comes from the built-in U-Net or a user's factory called under the run's seed; mixed precision (bf16 or fp16
autocast, a gradient scaler with fp16) covers training and validation. Validation runs every image whole (padded to
a multiple of the model's stride) or, for images larger than ``window``, by a sliding window.

Imports only torch, numpy, :mod:`seglosses.cli.data`, :mod:`seglosses.cli.model` and
:mod:`seglosses.cli.results` (never the orchestration or the rendering).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from seglosses.cli.data import CropDataset, CropSpec, SegData, draw_specs, pad_to_multiple
from seglosses.cli.model import NotAModuleError, build_model, call_factory
from seglosses.cli.results import METRICS, SURFACE_METRICS

if TYPE_CHECKING:
    from seglosses.cli.ddp import DistContext

__all__ = [
    "AMP_CHOICES",
    "NSD_TOLERANCE",
    "PREVIEWS",
    "Evaluation",
    "FactoryError",
    "ModelOutputError",
    "RunSetup",
    "StepTimes",
    "TrainConfig",
    "build_loss",
    "check_amp",
    "optimiser_step",
    "check_model",
    "crop_for_model",
    "evaluate",
    "input_dtype",
    "predict_logits",
    "surface_values",
    "target_for_loss",
    "train_run",
    "validate",
]

AMP_CHOICES: tuple[str, ...] = ("bf16", "fp16")
PREVIEWS = 2  # validation predictions kept per run (for the report's grid); nothing else per image but numbers
DEFAULT_MULTIPLE = 32  # a user model's input sizes are padded to a multiple of this (the stride of most encoders)
NSD_TOLERANCE = 1.0  # the default NSD tolerance, in the units of the spacing (one pixel at spacing 1)
LossFactory = Callable[[str], nn.Module]  # mode -> loss module, for candidates outside the registry
ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class TrainConfig:
    """The schedule shared by every loss of a comparison.

    Attributes:
        epochs: validation passes (one per epoch, for the curves).
        steps_per_epoch: optimiser steps per epoch (random crops, so an epoch is a number of steps).
        batch_size: crops per step.
        lr: peak learning rate of AdamW (linear warm-up over 5 % of the steps, then cosine to 0).
        weight_decay: AdamW weight decay.
        base: U-Net channels at the first level (the built-in model only).
        depth: U-Net poolings (the built-in model only; its inputs are padded to a multiple of ``2**depth``).

    """

    epochs: int = 12
    steps_per_epoch: int = 20
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    base: int = 8
    depth: int = 3

    @classmethod
    def preset(cls, *, quick: bool, ndim: int, epochs: int | None = None, batch_size: int | None = None) -> TrainConfig:
        """Default (``quick=False``) or ``--quick`` schedule; ``epochs``/``batch_size`` override the preset's."""
        cfg = cls(epochs=4, steps_per_epoch=10) if quick else cls()
        if ndim == 3:
            cfg = cls(**{**asdict(cfg), "batch_size": 2})
        if epochs is not None:
            cfg = cls(**{**asdict(cfg), "epochs": epochs})
        if batch_size is not None:
            cfg = cls(**{**asdict(cfg), "batch_size": batch_size})
        return cfg


@dataclass(frozen=True)
class RunSetup:
    """How a run is executed beyond its schedule: the model, mixed precision, loader workers, validation inputs.

    Attributes:
        model: a factory returning a fresh ``nn.Module`` (called with ``in_channels=``/``out_channels=`` when it
            accepts them), or ``None`` for the built-in U-Net.
        amp: ``None`` (float32), ``"bf16"`` or ``"fp16"`` (CUDA only; with a gradient scaler) autocast.
        num_workers: DataLoader worker processes (0: load in the training process).
        size_multiple: validation inputs are padded to a multiple of this; ``None``: ``2**depth`` for the built-in
            U-Net, 32 for a user model.
        window: images larger than this (per axis) are predicted by a sliding window of this size (half overlap,
            logits averaged); ``None``: every image whole.
        spacing: the pixel/voxel size per spatial axis for the surface metrics (HD95, NSD); ``None``: each
            validation item's NIfTI header where the data has one, else 1.
        nsd_tolerance: the NSD tolerance in the units of the spacing; ``None``: :data:`NSD_TOLERANCE`.
        architecture: a hash of the factory's model (its ``repr`` and parameter shapes, from :func:`check_model`),
            so that a changed model is a changed run even under the same name (a ``functools.partial``, a lambda, a
            function whose body changed); ``None`` for the built-in U-Net or before the check.

    """

    model: ModelFactory | None = None
    amp: str | None = None
    num_workers: int = 0
    size_multiple: int | None = None
    window: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    nsd_tolerance: float | None = None
    architecture: str | None = None

    def multiple(self, config: TrainConfig) -> int:
        """The padding multiple of validation inputs."""
        if self.size_multiple is not None:
            return self.size_multiple
        return 2**config.depth if self.model is None else DEFAULT_MULTIPLE

    def identity(self) -> dict[str, Any]:
        """What changes results (for the run fingerprint): the model's name and architecture, amp, padding, window."""
        name = None if self.model is None else f"{getattr(self.model, '__module__', '')}:{_qualname(self.model)}"
        out = {
            "model": name,
            "amp": self.amp,
            "size_multiple": self.size_multiple,
            "window": self.window,
            "spacing": self.spacing,
            "nsd_tolerance": self.nsd_tolerance,
        }
        if self.architecture is not None:  # only a user's model has one: the built-in U-Net's runs keep their ids
            out["architecture"] = self.architecture
        if self.window is not None:
            # since 5aed75b a validation image smaller than the window is padded to it (before: predicted whole), so
            # a results folder of an earlier version with the same window must not resume as the same runs
            out["window_pads_smaller_images"] = True
        return out


@dataclass
class StepTimes:
    """Where the wall time of a run's training steps went (host clock, :func:`time.perf_counter`).

    Filled by :func:`train_run` when passed as ``times``; validation is not counted. ``data_wait_s <= train_s``
    always (the wait is part of each step).

    Attributes:
        data_wait_s: the sum over the steps of the time from asking the loader for the next batch to having issued
            its host-to-device copies (``next`` on the loader's iterator plus the ``.to(device)`` calls): the time
            the training process waited for data. With pinned memory and ``non_blocking`` copies the copy itself
            overlaps the computation and is not in this number. On CUDA the wait can overlap the previous step's
            queued device work, so it bounds from above the time the device sat idle for lack of data.
        train_s: the sum over the steps of the whole step: the wait above, forward, loss, backward and optimiser
            step. A step reads its loss back (``float(loss)``) after the forward pass; on CUDA its backward pass and
            optimiser step are queued and finish while the next step waits for data or reads its loss, so the sum
            counts all the device's work but the last step's queued tail.
        steps: the steps timed (a step that diverges counts, its time up to the divergence check; a step that
            raises does not).

    """

    data_wait_s: float = 0.0
    train_s: float = 0.0
    steps: int = 0

    def add(self, wait: float, step: float) -> None:
        """Count one finished step: ``wait`` seconds waiting for its batch within ``step`` seconds in all."""
        self.data_wait_s += wait
        self.train_s += step
        self.steps += 1

    @property
    def share(self) -> float:
        """``data_wait_s / train_s``: the fraction of the training time spent waiting for data (NaN before a step)."""
        return self.data_wait_s / self.train_s if self.train_s > 0 else math.nan


def optimiser_step(
    loss: Tensor,
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """The backward pass and update of one training step: gradients clipped to norm 5, then AdamW and the schedule.

    With ``scaler`` (fp16) the backward is scaled and the clipping sees unscaled gradients. A loss without a
    gradient (a constant candidate) leaves the model at its initialisation (the optimiser skips parameters without
    a gradient); the schedule still advances.
    """
    optimiser.zero_grad(set_to_none=True)
    if loss.requires_grad and scaler is not None:
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(optimiser)
        scaler.update()
    else:
        if loss.requires_grad:
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
    scheduler.step()


def _qualname(obj: object) -> str:
    return str(getattr(obj, "__qualname__", type(obj).__qualname__))


def check_amp(amp: str | None, device: str, caller: str) -> None:
    """Raise ``ValueError`` for an unknown ``amp`` or ``amp="fp16"`` off CUDA (CPU autocast has no fp16 scaler)."""
    if amp is not None and amp not in AMP_CHOICES:
        raise ValueError(f"{caller}: `amp` must be None, 'bf16' or 'fp16'; got {amp!r}")
    if amp == "fp16" and not device.startswith("cuda"):
        raise ValueError(f"{caller}: `amp`='fp16' needs a CUDA device; got device={device!r} (use 'bf16' on the CPU)")


def _autocast(device: str, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    if amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def build_loss(
    name: str,
    mode: str,
    loss_args: Mapping[str, Any],
    extra: Mapping[str, LossFactory],
    ignore_index: int | None = None,
) -> nn.Module:
    """A candidate loss module: from ``extra`` (test or notebook candidates) or ``seglosses.get_loss``.

    With an ``ignore_index`` (the data's ignore label) a registry loss gets it as its ``ignore_index`` argument, and
    an ``extra`` factory is called as ``factory(mode, ignore_index=...)``: one whose signature takes no
    ``ignore_index`` (or ``**kwargs``) raises ``ValueError``, since it would train on the ignored pixels as a class.
    """
    if name in extra:
        if ignore_index is None:
            return extra[name](mode)
        if not _accepts(extra[name], "ignore_index"):
            raise ValueError(
                f"the extra loss {name!r}: the data has the ignore label {ignore_index}, but its factory takes no "
                "`ignore_index` keyword: define it as factory(mode, ignore_index) and leave those pixels out"
            )
        return extra[name](mode, ignore_index=ignore_index)  # type: ignore[call-arg]
    from seglosses.registry import get_loss

    if ignore_index is not None:
        if "ignore_index" in loss_args and loss_args["ignore_index"] != ignore_index:
            raise ValueError(
                f"the loss {name!r}: its argument ignore_index={loss_args['ignore_index']!r} differs from the data's "
                f"ignore label {ignore_index}"
            )
        loss_args = {**loss_args, "ignore_index": ignore_index}
    return get_loss(name, mode=mode, **dict(loss_args))


def _accepts(factory: Callable[..., Any], keyword: str) -> bool:
    """Whether ``factory`` can be called with ``keyword=`` (a parameter of that name, or ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in params
    )


def target_for_loss(mask: Tensor, mode: str) -> Tensor:
    """The target of the losses and metrics: ``(N, 1, *S)`` float for binary, ``(N, *S)`` indices otherwise."""
    return mask.unsqueeze(1).float() if mode == "binary" else mask


def crop_for_model(data: SegData, setup: RunSetup, config: TrainConfig) -> SegData:
    """``data`` with its training crop rounded up to the model's size multiple, for a user's model factory.

    The crop of a named dataset or a folder is chosen by :func:`~seglosses.cli.data.load_data` (a multiple of 8, at
    most 96 in 2D); a model whose encoder needs sizes divisible by 32 (``setup.multiple``) would fail on a 48-pixel
    crop at the first training step. The crop is padded where an item is smaller, as before. Nothing changes for the
    built-in U-Net (its crops are already multiples of ``2**depth``) or for a crop given by the user (``crop=``).
    """
    if setup.model is None or data.crop is None:
        return data
    multiple = setup.multiple(config)
    crop = tuple(-(-c // multiple) * multiple for c in data.crop)
    return data if crop == data.crop else replace(data, crop=crop)


class FactoryError(Exception):
    """The user's model factory raised (or returned no ``nn.Module``): the whole comparison or search stops.

    Not a ``ValueError``/``RuntimeError``, so that a run never records it as its status (and Optuna never counts it
    as one failed trial); :func:`check_model` and the callers of :func:`train_run` turn it into a ``ValueError``.
    """


_CHANNELS = ("in_channels", "out_channels")


def _positional_channels(factory: ModelFactory) -> list[str] | None:
    """The channel names to pass by position when the factory's signature has them positional-only, else ``None``.

    ``def f(in_channels, out_channels, /)`` has both parameters but takes no keyword: it is called
    ``f(C, K')``. Any other positional-only parameter before them (a value we cannot know) gives ``None``.
    """
    import inspect

    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = {p.name: p.kind for p in params}
    if not set(_CHANNELS) <= kinds.keys() or all(kinds[n] is not inspect.Parameter.POSITIONAL_ONLY for n in _CHANNELS):
        return None
    order: list[str] = []
    for p in params:
        if p.kind is not inspect.Parameter.POSITIONAL_ONLY:
            break
        if p.name not in _CHANNELS:
            return None
        order.append(p.name)
    return order


def _bind_channels(factory: ModelFactory, in_channels: int, out_channels: int) -> ModelFactory:
    """``factory`` as :func:`~seglosses.cli.model.call_factory` calls it; positional-only channels bound by position."""
    order = _positional_channels(factory)
    if order is None:
        return factory
    values = {"in_channels": in_channels, "out_channels": out_channels}
    args = [values.pop(name) for name in order]
    return lambda: factory(*args, **values)


def _one_channel_name(factory: ModelFactory) -> str | None:
    """The one of ``in_channels``/``out_channels`` that the signature names when it names only one (else ``None``)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    named = [n for n in _CHANNELS if n in params]
    return named[0] if len(named) == 1 else None


def new_model(data: SegData, setup: RunSetup, config: TrainConfig, seed: int) -> nn.Module:
    """A fresh model whose initial weights depend only on ``seed`` (and the factory).

    Raises:
        FactoryError: the factory raised, or returned something other than an ``nn.Module``.

    """
    if setup.model is None:
        return build_model(
            data.in_channels, data.out_channels, ndim=data.ndim, seed=seed, base=config.base, depth=config.depth
        )
    factory = _bind_channels(setup.model, data.in_channels, data.out_channels)
    try:
        return call_factory(factory, in_channels=data.in_channels, out_channels=data.out_channels, seed=seed)
    except NotAModuleError as exc:
        raise FactoryError(str(exc)) from exc
    except Exception as exc:
        hint = ""
        one = _one_channel_name(setup.model)
        if one is not None:
            hint = (
                f" (its signature names `{one}` but not both `in_channels` and `out_channels`, so it is called with "
                "no argument: give it both parameters, **kwargs, or neither)"
            )
        raise FactoryError(f"the model factory raised {type(exc).__name__}: {exc}{hint}") from exc


class ModelOutputError(ValueError):
    """The model's output is not logits ``(N, K', *S)`` of its input's spatial size (the message says what to do)."""


def _forward(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)``, checked: one tensor with the input's number of dims and spatial size (any channel count).

    Nothing else is accepted, in training or in evaluation mode: a dict (torchvision's ``{"out": ..., "aux": ...}``),
    a tuple or list (auxiliary heads, a VAE's extra loss), a stack of deep-supervision heads (MONAI's ``DynUNet``
    in training mode: ``(N, heads, K', *S)``) or logits at a lower resolution would each need a rule of its own
    (which output to train, how to weight the heads, how to upsample), and any such rule changes what is compared.
    The message says how to adapt the model instead.

    Raises:
        ModelOutputError: the output is not such a tensor.

    """
    out = model(x)
    mode = "training" if model.training else "evaluation"
    wrap = (
        "; wrap the model in an nn.Module whose forward returns only the segmentation logits "
        "(N, out_channels, *S) at the input's size"
    )
    if isinstance(out, Mapping):
        raise ModelOutputError(
            f"the model must return a tensor of logits (N, out_channels, *S); in {mode} mode it returned a "
            f"{type(out).__name__} with keys {list(out)} (as torchvision's segmentation models do); wrap the model "
            "in an nn.Module whose forward returns model(x)['out'] (its other outputs, such as 'aux', are then "
            "not trained on)"
        )
    if isinstance(out, tuple | list):
        kinds = ", ".join(str(tuple(o.shape)) if isinstance(o, Tensor) else type(o).__name__ for o in list(out)[:4]) + (
            ", ..." if len(out) > 4 else ""
        )
        raise ModelOutputError(
            f"the model must return a tensor of logits (N, out_channels, *S); in {mode} mode it returned a "
            f"{type(out).__name__} of {len(out)} ({kinds}){wrap}"
        )
    if not isinstance(out, Tensor):
        raise ModelOutputError(
            f"the model must return a tensor of logits (N, out_channels, *S); in {mode} mode it returned "
            f"{type(out).__name__}{wrap}"
        )
    if out.dim() == x.dim() + 1 and out.shape[0] == x.shape[0] and out.shape[3:] == x.shape[2:]:
        raise ModelOutputError(
            f"in {mode} mode the model returns {tuple(out.shape)} for an input {tuple(x.shape)}: one more dimension "
            f"than (N, out_channels, *S), a stack of {out.shape[1]} deep-supervision heads (as MONAI's DynUNet with "
            "deep_supervision=True in training mode). Every loss is compared on one output: build the model "
            "without deep supervision (DynUNet(..., deep_supervision=False)), or wrap it so that forward returns "
            "the full-resolution head only (out[:, 0])"
        )
    if out.dim() != x.dim():
        raise ModelOutputError(
            f"the model must return logits (N, out_channels, *S) with the input's {x.dim()} dims; in {mode} mode "
            f"it returns {tuple(out.shape)} for an input {tuple(x.shape)}"
        )
    if out.shape[0] != x.shape[0]:
        raise ModelOutputError(
            f"the model's output must keep the input's batch size {x.shape[0]}; in {mode} mode it returns "
            f"{tuple(out.shape)} for an input {tuple(x.shape)}"
        )
    if out.shape[2:] != x.shape[2:]:
        raise ModelOutputError(
            f"the model's output must keep the input's spatial size {tuple(x.shape[2:])}; in {mode} mode "
            f"it returns {tuple(out.shape)} for an input {tuple(x.shape)}. Logits at another resolution are never "
            "resized here: upsample them to the input's size inside the model (torch.nn.functional.interpolate, "
            "as torchvision's segmentation models do) or pad its convolutions"
        )
    return out


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype images are cast to for ``model``: that of its floating-point parameters (float32 without any).

    A model built in float64 (``.double()``) trains and predicts in float64; half-precision parameters are refused
    (AdamW's small updates would be lost in them: train a float32 model under ``amp`` instead).

    Raises:
        ValueError: parameters of several floating-point dtypes, or float16/bfloat16 ones.

    """
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if not dtypes:
        return torch.float32
    if len(dtypes) > 1:
        names = sorted(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(
            f"the model's parameters mix the dtypes {names}: its input can only be one of them; build it in one "
            "dtype (float32, or float64 with .double())"
        )
    (dtype,) = dtypes
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"the model's parameters are {str(dtype).removeprefix('torch.')}: half-precision weights lose AdamW's "
            "small updates; build the model in float32 and pass amp='bf16' or 'fp16' (--amp) for mixed precision"
        )
    return dtype


_SIZE_HINT = (
    "If the model takes only some input sizes, set size_multiple (--size-multiple) to its total stride, or window "
    "(--window) and crop (--crop) to the one size it takes"
)


def check_model(data: SegData, setup: RunSetup, config: TrainConfig, *, seed: int, device: str, caller: str) -> str:
    """Build the model once and run it as the runs will, before any training: evaluation, then training mode.

    First the first validation image through :func:`predict_logits` (padded to the size multiple, or by windows
    with ``setup.window``), in evaluation mode; then the first training batch of the first seed (``batch_size``
    crops, or whole items), in training mode without gradients (normalisation layers see the real batch). The output
    must be logits with the task's channels at the input's size both times (:func:`_forward`), so that a model that
    only misbehaves in training mode (deep-supervision heads, a tuple of auxiliary outputs, a normalisation over a
    single value) stops here, not in every run. The check's model is discarded and the caller's RNG state kept.

    Returns:
        The model's architecture hash (:attr:`RunSetup.architecture`): its ``repr`` and parameter names and shapes.

    Raises:
        ValueError: the factory raised or returned no ``nn.Module``; the model's parameters are half precision or
            of mixed dtypes, or none is trainable; the model raised on either input; or its output is not a tensor
            with the right number of channels (1 for a binary task, C for C classes, naming both counts) at the
            input's size.

    """
    try:
        model = new_model(data, setup, config, seed)
    except FactoryError as exc:
        raise ValueError(f"{caller}: {exc}") from exc.__cause__
    described = repr(model) + repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()])
    architecture = hashlib.sha256(described.encode()).hexdigest()[:16]
    try:
        dtype = input_dtype(model)
    except ValueError as exc:
        raise ValueError(f"{caller}: {exc}") from None
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"{caller}: the model has no trainable parameter (none with requires_grad=True): every loss would leave "
            "it as it is; unfreeze at least part of it"
        )
    model = model.to(device)
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):  # dropout in training mode: the caller's RNG stays as it was
        torch.manual_seed(seed)
        _check_evaluation(model, data, setup, config, device, dtype, caller)
        _check_training(model, data, setup, config, seed, device, dtype, caller)
    return architecture


def _check_channels(out: Tensor, data: SegData, caller: str, where: str) -> None:
    expected = data.out_channels
    if out.shape[1] != expected:
        task = "a binary task (one logit channel)" if data.mode == "binary" else f"{data.num_classes} classes"
        raise ValueError(
            f"{caller}: the model must output {expected} channel(s) for {task}; it outputs {out.shape[1]} "
            f"(output shape {tuple(out.shape)} {where})"
        )


def _check_evaluation(
    model: nn.Module, data: SegData, setup: RunSetup, config: TrainConfig, device: str, dtype: torch.dtype, caller: str
) -> None:
    image, _ = data.val[0]
    x = image[None].to(device, dtype)
    multiple = setup.multiple(config)
    how = f"by windows of {setup.window}" if setup.window is not None else f"padded to a multiple of {multiple}"
    where = f"for the first validation image {tuple(x.shape)}, {how}, in evaluation mode"
    model.eval()
    try:
        with torch.no_grad():
            out = predict_logits(model, x, multiple=multiple, window=setup.window, amp=setup.amp)
    except ModelOutputError as exc:
        raise ValueError(f"{caller}: {exc} ({where})") from None
    except Exception as exc:
        raise ValueError(f"{caller}: the model failed {where}: {type(exc).__name__}: {exc}. {_SIZE_HINT}") from exc
    _check_channels(out, data, caller, where)


def _check_training(
    model: nn.Module,
    data: SegData,
    setup: RunSetup,
    config: TrainConfig,
    seed: int,
    device: str,
    dtype: torch.dtype,
    caller: str,
) -> None:
    pad_label = 0 if data.ignore_index is None else data.ignore_index
    batches = _SpecBatches(data, config.batch_size, 1, 10_007 * seed + 1, None)  # the first run's first batch
    loader = _loader(CropDataset(data.train, data.crop, pad_label), "cpu", 0, seed, batch_sampler=batches)
    try:
        images, _ = next(iter(loader))
    except RuntimeError as exc:
        if "equal size" in str(exc):
            raise ValueError(f"{caller}: {_collate_error(exc)}") from exc
        raise
    x = images.to(device, dtype)
    crop = "the training crop" if data.crop is not None else "whole training items"
    where = f"for the first training batch {tuple(x.shape)} (batch_size x {crop}), in training mode"
    model.train()
    try:
        with torch.no_grad(), _autocast(device, setup.amp):
            out = _forward(model, x)
    except ModelOutputError as exc:
        raise ValueError(f"{caller}: {exc} ({where})") from None
    except Exception as exc:
        raise ValueError(
            f"{caller}: the model failed {where}: {type(exc).__name__}: {exc}. A crop too small for the model's "
            "down-samplings, or a normalisation layer over a single value, fails here: use a larger crop or "
            f"batch_size, or a model with fewer down-samplings. {_SIZE_HINT}"
        ) from exc
    _check_channels(out, data, caller, where)


def _lr_lambda(total: int) -> Callable[[int], float]:
    warmup = max(1, total // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


# --------------------------------------------------------------------------------------------------- loading


class _SpecBatches(Sampler[list[CropSpec]]):
    """The batches of one run: ``steps`` lists of crop specs drawn from a generator seeded with ``seed``.

    Under DDP every rank draws the same global batch and keeps its contiguous slice.
    """

    def __init__(self, data: SegData, batch_size: int, steps: int, seed: int, ctx: DistContext | None) -> None:
        self.data, self.batch_size, self.steps, self.seed, self.ctx = data, batch_size, steps, seed, ctx

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[CropSpec]]:
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            specs = draw_specs(self.data, self.batch_size, generator)
            if self.ctx is not None:
                per = self.batch_size // self.ctx.world_size
                specs = specs[self.ctx.rank * per : (self.ctx.rank + 1) * per]
            yield specs


def _worker_init(worker_id: int) -> None:
    """A loader worker reads and crops: one intra-op thread each (the training process keeps the others)."""
    torch.set_num_threads(1)


def _loader(dataset: Any, device: str, num_workers: int, seed: int, **kwargs: Any) -> DataLoader[Any]:
    return DataLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=device.startswith("cuda"),
        worker_init_fn=_worker_init if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def _collate_error(exc: RuntimeError) -> RuntimeError:
    return RuntimeError(f"training items could not be batched ({exc}); items of different sizes need a crop (crop=...)")


# --------------------------------------------------------------------------------------------------- validation


@dataclass
class Evaluation:
    """Validation of one model.

    Attributes:
        metrics: ``{metric: {"mean": v, "<class>": v}}`` from the counts of all validation pixels together
            (``average="none"``, ``zero_division="nan"``); ``"mean"`` is over the foreground classes, NaN left out.
        per_image: ``{metric: [v_i]}``: each image's mean over its foreground classes, a class absent from both the
            image's mask and its prediction scoring 1 (a ratio 0/0 scores 1: nothing to find and nothing found).
        previews: the hard predictions ``(*S)`` of the first :data:`PREVIEWS` images (CPU, int64).

    """

    metrics: dict[str, dict[str, float]]
    per_image: dict[str, list[float]] = field(default_factory=dict)
    previews: list[Tensor] = field(default_factory=list)


def predict_logits(
    model: nn.Module, image: Tensor, *, multiple: int, window: Sequence[int] | None = None, amp: str | None = None
) -> Tensor:
    """Float32 logits ``(1, K, *S)`` of one image ``(1, C, *S)`` (on the model's device), whole or by windows.

    Whole (``window=None``): padded at the end to a multiple of ``multiple`` and cropped back. With ``window``:
    every input the model sees has the window's size (rounded up to ``multiple``), so that a model that takes one
    input size only (a transformer with a fixed ``img_size``) works: an image no larger than it is padded at the
    end to it; a larger one is covered by windows at half-window steps, the last one flush with the (padded) end,
    every window's logits averaged where they overlap. The image is cast to the dtype of ``model``'s parameters
    (:func:`input_dtype`) and the logits returned in float32.
    """
    ndim = image.dim() - 2
    spatial = tuple(int(s) for s in image.shape[2:])
    keep = (slice(None), slice(None), *(slice(0, s) for s in spatial))
    device = str(image.device)
    image = image.to(input_dtype(model))
    if window is None:
        x = pad_to_multiple(image, multiple, ndim=ndim)
        with _autocast(device, amp):
            return _forward(model, x)[keep].float()
    win = tuple(-(-w // multiple) * multiple for w in window)
    pad: list[int] = []
    for s, w in zip(reversed(spatial), reversed(win), strict=True):
        pad += [0, max(0, w - s) + (-max(s, w)) % multiple]
    x = torch.nn.functional.pad(image, pad) if any(pad) else image
    size = x.shape[2:]
    starts = [sorted({*range(0, max(1, n - w + 1), max(1, w // 2)), n - w}) for n, w in zip(size, win, strict=True)]
    total: Tensor | None = None
    count = torch.zeros((1, 1, *size), device=image.device)
    for corner in itertools.product(*starts):
        box = tuple(slice(c, c + w) for c, w in zip(corner, win, strict=True))
        with _autocast(device, amp):
            logits = _forward(model, x[(slice(None), slice(None), *box)]).float()
        if total is None:
            total = torch.zeros((1, logits.shape[1], *size), device=image.device)
        total[(slice(None), slice(None), *box)] += logits
        count[(slice(None), slice(None), *box)] += 1
    if total is None:  # unreachable: at least one window
        raise RuntimeError("predict_logits: no window")
    return (total / count)[keep]


def hard_prediction(logits: Tensor, mode: str) -> Tensor:
    """Class indices ``(*S)`` from the logits ``(1, C, *S)`` of one image (binary: logit > 0, i.e. p > 0.5)."""
    return (logits[0, 0] > 0).long() if mode == "binary" else logits[0].argmax(0)


def per_image_values(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, foreground: slice) -> dict[str, float]:
    """Each metric of one image from its per-class counts ``(C,)``: mean over ``foreground`` classes, 0/0 = 1.

    Examples:
        >>> v = per_image_values(np.array([3, 0]), np.array([1, 0]), np.array([0, 0]), foreground=slice(0, None))
        >>> {k: round(x, 4) for k, x in v.items()}  # class 0: dice 6/7; class 1 absent everywhere: 1
        {'dice': 0.9286, 'iou': 0.875, 'precision': 0.875, 'recall': 1.0}

    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64)[foreground] for a in (tp, fp, fn))
    pairs = {"dice": (2 * tp, 2 * tp + fp + fn), "iou": (tp, tp + fp + fn), "precision": (tp, tp + fp)}
    pairs["recall"] = (tp, tp + fn)
    out = {}
    for name in METRICS:
        num, den = pairs[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
        out[name] = float(ratio.mean()) if ratio.size else math.nan
    return out


def surface_values(
    logits: Tensor,
    target: Tensor,
    *,
    mode: str,
    spacing: Sequence[float] | None,
    tolerance: float,
    ignore_index: int | None = None,
) -> dict[str, float]:
    """HD95 and NSD of one image ``(1, C, *S)`` logits against its target: each the mean over the foreground classes.

    Surface-element distances in physical units (:func:`seglosses.metrics.hausdorff` with ``percentile=95`` and
    :func:`seglosses.metrics.nsd` at ``tolerance``; ``spacing`` per spatial axis, default 1), on the hard
    prediction (binary: logit > 0; multiclass: argmax). Per class, so that every image gets a finite number: a class
    absent from both the mask and the prediction scores HD95 0 and NSD 1 (nothing to find, nothing found); a class
    present in only one of them scores NSD 0 and, for HD95, the image's diagonal in physical units (the largest
    distance the image allows), rather than infinity. Pixels labelled ``ignore_index`` in ``target`` are left out
    of both masks (:func:`seglosses.metrics.hausdorff`'s ``ignore_index``).
    """
    from seglosses.metrics.surface import hausdorff, nsd

    shape = logits.shape[2:]
    step = [1.0] * len(shape) if spacing is None else [float(v) for v in spacing]
    diagonal = math.sqrt(sum(((n - 1) * h) ** 2 for n, h in zip(shape, step, strict=True)))
    common: dict[str, Any] = {
        "mode": mode,
        "spacing": step,
        "from_logits": True,
        "per_image": True,
        "average": "none",
        "ignore_index": ignore_index,
    }
    if mode != "binary":
        common["num_classes"] = int(logits.shape[1])
    hd = hausdorff(logits, target, percentile=95.0, empty_both=0.0, empty_one=diagonal, **common)
    sd = nsd(logits, target, tolerance=tolerance, empty_both=1.0, empty_one=0.0, **common)
    return {"hd95": float(hd.double().mean()), "nsd": float(sd.double().mean())}


@torch.no_grad()
def validate(
    model: nn.Module,
    data: SegData,
    *,
    multiple: int,
    device: str,
    setup: RunSetup | None = None,
    previews: int = PREVIEWS,
    surface: bool = False,
) -> Evaluation:
    """Validation metrics of ``model`` over every validation image (pooled and per image), and a few predictions.

    The pooled numbers come from :class:`seglosses.metrics.SegmentationMetrics` (streaming over the validation
    images, ``average="none"``, ``zero_division="nan"``): the statistics of all validation pixels together. Per
    class: binary reports the foreground only; multiclass every class. ``"mean"`` is the mean over the foreground
    classes (background excluded), leaving out NaN (the ``average="macro", include_background=False`` value).
    The per-image values are each image's mean over its foreground classes (:func:`per_image_values`).

    With ``surface=True`` also each image's HD95 and NSD (:func:`surface_values`), and their means over the images
    as ``metrics["hd95"]["mean"]`` and ``metrics["nsd"]["mean"]``. Pixels labelled with the data's ignore label
    (``data.ignore_index``) count in none of the metrics.
    """
    from seglosses.metrics import SegmentationMetrics, confusion

    setup = setup or RunSetup()
    model.eval()
    ignore = data.ignore_index
    accumulator = SegmentationMetrics(
        mode=data.mode,
        num_classes=data.out_channels,
        metrics=METRICS,
        average="none",
        from_logits=True,
        ignore_index=ignore,
    )
    foreground = slice(0, None) if data.mode == "binary" else slice(1, None)
    names = METRICS + (SURFACE_METRICS if surface else ())
    per_image: dict[str, list[float]] = {m: [] for m in names}
    kept: list[Tensor] = []
    loader = _loader(data.val, device, setup.num_workers, 0, batch_size=1, shuffle=False)
    for index, (image, mask) in enumerate(loader):
        image = image.to(device, non_blocking=True)  # cast to the model's dtype by predict_logits
        target = target_for_loss(mask.to(device, non_blocking=True), data.mode)
        logits = predict_logits(model, image, multiple=multiple, window=setup.window, amp=setup.amp)
        accumulator.update(logits, target)
        tp, fp, fn, _ = confusion(logits, target, mode=data.mode, from_logits=True, per_image=True, ignore_index=ignore)
        values = per_image_values(tp[0].cpu().numpy(), fp[0].cpu().numpy(), fn[0].cpu().numpy(), foreground=foreground)
        if surface:
            spacing = setup.spacing or (data.val_spacing[index] if data.val_spacing else None) or data.spacing
            tolerance = NSD_TOLERANCE if setup.nsd_tolerance is None else setup.nsd_tolerance
            values |= surface_values(
                logits, target, mode=data.mode, spacing=spacing, tolerance=tolerance, ignore_index=ignore
            )
        for name in names:
            per_image[name].append(values[name])
        if len(kept) < previews:
            kept.append(hard_prediction(logits, data.mode).cpu())
    values_all = accumulator.compute()
    shown = data.class_names[1:] if data.mode == "binary" else data.class_names
    out: dict[str, dict[str, float]] = {}
    for name in METRICS:
        per_class = values_all[name].double().cpu().flatten()
        fg = per_class[foreground]
        fg = fg[~fg.isnan()]
        entry = {"mean": float(fg.mean()) if fg.numel() else math.nan}
        entry.update({c: float(v) for c, v in zip(shown, per_class.tolist(), strict=True)})
        out[name] = entry
    for name in SURFACE_METRICS if surface else ():
        out[name] = {"mean": float(np.mean(per_image[name])) if per_image[name] else math.nan}
    return Evaluation(out, per_image, kept)


def evaluate(
    model: nn.Module, data: SegData, *, depth: int, device: str, setup: RunSetup | None = None
) -> tuple[dict[str, dict[str, float]], list[Tensor]]:
    """:func:`validate` with the built-in U-Net's padding (``2**depth``): the pooled metrics and the previews."""
    setup = setup or RunSetup()
    multiple = setup.size_multiple or (2**depth if setup.model is None else DEFAULT_MULTIPLE)
    result = validate(model, data, multiple=multiple, device=device, setup=setup)
    return result.metrics, result.previews


# --------------------------------------------------------------------------------------------------- training


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
    setup: RunSetup | None = None,
    evaluation: list[Evaluation] | None = None,
    times: StepTimes | None = None,
) -> tuple[nn.Module, list[dict[str, float]], str]:
    """Train one model with ``loss_fn``: the single training loop, also the one of every DDP rank.

    The seed fixes the initial weights (the factory runs with torch's RNG seeded from it), the batch/augmentation
    sequence, and torch's global RNG during training (dropout), independently of the loss. ``on_step(step, loss)``
    is called after each step, ``on_epoch(epoch, metrics)`` after each validation (it may raise to stop the run,
    e.g. ``optuna.TrialPruned``). Returns the model, the per-epoch history and the status (``"ok"`` or
    ``"diverged"``); with ``evaluation`` (a list) the last validation (of the returned weights) is appended to it.

    With ``dist_ctx`` (see :mod:`seglosses.cli.ddp`) the model is wrapped in ``DistributedDataParallel`` with its
    BatchNorm layers normalising over the global batch; every rank draws the same global batch of
    ``config.batch_size`` crops and trains on its slice; the logged loss is the mean over the ranks; validation (the
    history's ``val_dice`` and ``on_epoch``) runs on rank 0 only (NaN elsewhere). The returned model is unwrapped.

    With ``times`` (a :class:`StepTimes`) the wall time of the training steps and the part of it spent waiting for
    the next batch are added to it (host clock only: no extra device synchronisation, nothing trained changes).
    """
    setup = setup or RunSetup()
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        clock = times if times is not None else StepTimes()
        return _train(data, loss_fn, seed, config, device, on_step, on_epoch, dist_ctx, setup, evaluation, clock)


def _train(
    data: SegData,
    loss_fn: nn.Module,
    seed: int,
    config: TrainConfig,
    device: str,
    on_step: Callable[[int, float], None] | None,
    on_epoch: Callable[[int, dict[str, dict[str, float]]], None] | None,
    dist_ctx: DistContext | None,
    setup: RunSetup,
    evaluation: list[Evaluation] | None,
    times: StepTimes,
) -> tuple[nn.Module, list[dict[str, float]], str]:
    model: nn.Module = new_model(data, setup, config, seed).to(device)
    net = model
    if dist_ctx is not None:
        from torch.nn.parallel import DistributedDataParallel

        from seglosses.cli.ddp import convert_batchnorm

        model = convert_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device != "cpu" else None)
    loss_fn = loss_fn.to(device)
    dtype = input_dtype(model)  # float32, or float64 for a model built in it (checked by check_model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * config.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _lr_lambda(total))
    scaler = torch.amp.GradScaler("cuda") if setup.amp == "fp16" else None
    batches = _SpecBatches(data, config.batch_size, total, 10_007 * seed + 1, dist_ctx)
    pad_label = 0 if data.ignore_index is None else data.ignore_index
    crops = CropDataset(data.train, data.crop, pad_label)
    loader = _loader(crops, device, setup.num_workers, seed, batch_sampler=batches)
    stream = iter(loader)
    multiple = setup.multiple(config)
    history: list[dict[str, float]] = []
    status = "ok"
    step = 0
    last: Evaluation | None = None
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            losses = []
            for _ in range(config.steps_per_epoch):
                began = time.perf_counter()
                try:
                    images, masks = next(stream)
                except RuntimeError as exc:
                    if "equal size" in str(exc):
                        raise _collate_error(exc) from exc
                    raise
                images = images.to(device, dtype, non_blocking=True)  # float64/float16 items too
                masks = masks.to(device, non_blocking=True)
                waited = time.perf_counter() - began
                with _autocast(device, setup.amp):
                    loss = loss_fn(_forward(net, images), target_for_loss(masks, data.mode))
                value = float(loss.detach())
                if dist_ctx is not None:  # the same value on every rank, so that every rank takes the same branch
                    value = dist_ctx.mean(value)
                if not math.isfinite(value):
                    status = "diverged"
                    times.add(waited, time.perf_counter() - began)
                    break
                optimiser_step(loss, model, optimiser, scheduler, scaler)
                times.add(waited, time.perf_counter() - began)
                step += 1
                losses.append(value)
                if on_step is not None:
                    on_step(step, value)
            validating = dist_ctx is None or dist_ctx.is_main
            final = epoch == config.epochs or status != "ok"  # the surface metrics of the returned weights only
            last = (
                validate(model, data, multiple=multiple, device=device, setup=setup, surface=final)
                if validating
                else None
            )
            history.append(
                {
                    "epoch": float(epoch),
                    "train_loss": float(np.mean(losses)) if losses else math.nan,
                    "val_dice": last.metrics["dice"]["mean"] if last is not None else math.nan,
                }
            )
            if on_epoch is not None and last is not None:
                on_epoch(epoch, last.metrics)
            if status != "ok":
                break
    finally:
        del stream  # stops the loader's workers
    if evaluation is not None and last is not None:
        evaluation.append(last)
    return model, history, status


def fingerprint(
    data: SegData,
    config: TrainConfig,
    loss: str,
    loss_args: Mapping[str, Any],
    setup: RunSetup | None = None,
) -> str:
    """A hash of everything that defines a run (data, schedule, model, loss and its arguments)."""
    payload: dict[str, Any] = {
        "data": data.name,
        "description": data.description,
        "config": asdict(config),
        "loss": loss,
        "loss_args": dict(sorted(loss_args.items())),
    }
    if setup is not None and any(v is not None for v in setup.identity().values()):
        payload["setup"] = setup.identity()  # absent for the defaults: earlier results stay resumable
    if data.ignore_index is not None:  # likewise absent without an ignore label
        payload["ignore_index"] = data.ignore_index
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
