r"""Speed and peak memory of the losses, side by side with MONAI, segmentation_models_pytorch and kornia.

Each (workload, case) pair runs in a fresh Python subprocess (``python -m seglosses.cli.benchmark --worker ...``) so
that no case inherits another's allocator state, thread pool or import side effects (``isolate="library"``,
``--isolate library``: the cases of one library on one workload share a process, one after the other, for a GPU
machine whose per-process start-up would otherwise take most of its time; see :func:`run_benchmark`). A worker sets
``torch.set_num_threads(threads)``, makes float32 logits and the target of the workload, runs ``warmup`` forward +
backward steps (w.r.t. the logits) and then ``repeats`` timed ones, and reports the median; with ``min_time`` > 0 it
also warms up for at least ``min_time / 2`` seconds and times steps for at least ``min_time`` seconds (at most 1000),
so that a short step is timed in the allocator's steady state and a long one is not repeated needlessly. One further
step measures the peak of extra tensor memory. Only the first step's loss value is read back (``value``): the timed
steps end with ``torch.cuda.synchronize()`` on CUDA and never copy the loss to the host.

Peak of extra tensor memory:

- CPU: the step runs under ``torch.profiler.profile(profile_memory=True)``; every allocation and free that the CPU
  allocator reports to the profiler is collected from the profiler's event tree, sorted by time and integrated; the
  peak of that running sum is the peak of tensor bytes allocated during the step and still alive at once (the
  gradient of the logits included, so ``x.sum()`` reads 1.0x the logits). The logits and the target exist before the
  step and are not counted.
- CUDA: ``torch.cuda.max_memory_allocated()`` minus ``torch.cuda.memory_allocated()`` just before the step.

Columns: ``ms`` (median step), ``peak MiB``, ``x CE`` (time over ``F.cross_entropy`` fwd+bwd on the same input; for
the binary workload ``F.binary_cross_entropy_with_logits``), ``x logits`` (peak over the logits' size),
``peer speed-up`` (fastest peer's ms of the same quantity over this row's ms: > 1 means faster than every peer) and
``x leanest peer`` (peak over the leanest peer's peak of the same quantity). ``value`` is the loss value of the
first step, so that the argument mapping of the peers can be checked by eye (peers that differ by a documented
convention, e.g. a per-image mean, show a slightly different value).

Groups (``only``, ``--only``): ``losses`` (the quantities of :data:`QUANTITIES`, the table above), ``catalogue``
(the distance-map and topology losses beside MONAI's, from :mod:`seglosses.cli.bench_catalogue`) and ``surface``
(HD95 and NSD beside MONAI and DeepMind's surface-distance, from :mod:`seglosses.cli.bench_surface`); all three by
default, the two loss groups where losses are named (``--losses``). A group whose module is missing is left out
(the surface group with a note in the log).

Load (``busy``, ``--busy N``): N processes spinning in a pure-Python loop run for the whole benchmark (started
before the first case, killed when the run ends, also on an exception or Ctrl-C; each also stops by itself once
its parent is gone), so that every case, ours and the peers', is timed on cores that other work keeps busy, as
DataLoader workers or another job would; the meta records N (``busy``). A run without and one with ``--busy``
give each loss's slowdown under load beside MONAI's.

Interface of an extra group (for the modules that provide one; nothing else is assumed):

- a loss group: a module ``seglosses.cli.bench_<name>`` with ``<name>_cases() -> tuple[Case, ...]`` (this module's
  :class:`Case`: ``id`` unique, ``library`` ``"seglosses"`` or one of :data:`PEER_LIBRARIES`, ``quantity`` shared
  by ours and the peers' rows of the same loss, ``build(mode)`` returning ``loss(x, t)``) and a tuple
  ``<NAME>_QUANTITIES`` of their quantities. The cases run like the built-in ones (one worker subprocess per
  case and workload, which finds a case by its id in the group's cases), on the selected workloads.
- a row group: a module with a function that times its cases itself and returns a list of dicts whose keys are
  the fields of :class:`Result` (``Result(**row)`` must work); ``workload`` names the group's own workload (not one
  of :data:`WORKLOADS`), ``status`` is ``"ok"`` or another word with ``error`` set, and the ratios it cannot
  measure are NaN. :mod:`seglosses.cli.bench_surface` (``surface_rows(repeats=, warmup=, threads=, size=)``) is the
  one wired here: size 160 (32 with ``quick``), its default repeats (2 with ``quick``).

Run ``python -m seglosses.cli.benchmark --help`` (or ``seglosses bench``) for the options. The library part
(:func:`run_benchmark`, :func:`derive`, :func:`write_outputs`, :func:`to_markdown`) never imports rich or typer.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal, cast

import torch

__all__ = [
    "CASES",
    "GROUPS",
    "PEER_LIBRARIES",
    "QUANTITIES",
    "REFERENCES",
    "WORKLOADS",
    "Case",
    "Result",
    "Unavailable",
    "Workload",
    "busy_processes",
    "derive",
    "describe_machine",
    "main",
    "measure",
    "merge_rounds",
    "render_rich",
    "resolve_device",
    "run_and_report",
    "run_benchmark",
    "select_cases",
    "select_workloads",
    "to_markdown",
    "value_mismatches",
    "write_outputs",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BenchMode = Literal["binary", "multiclass"]
#: How a case wants the target. ``natural``: multiclass ``(N, *S)`` int64 indices, binary ``(N, 1, *S)`` float;
#: ``channel``: ``(N, 1, *S)`` (MONAI's layout; int64 indices or float); ``flat``: ``(N, *S)`` (binary float).
TargetForm = Literal["natural", "channel", "flat"]

_RESULT_MARK = "@@SEGLOSSES-BENCH-RESULT "


# --------------------------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    """One input shape: float32 logits ``shape`` with multiclass index targets or binary float targets."""

    name: str
    shape: tuple[int, ...]
    mode: BenchMode
    quick: bool = False
    #: in the default list (the many-class 3D workload is named explicitly: 235 MB of logits, minutes per case on
    #: a 2-core CPU)
    default: bool = True

    @property
    def dims(self) -> int:
        """Number of spatial dims (2 or 3)."""
        return len(self.shape) - 2

    @property
    def logits_bytes(self) -> int:
        """Size of the float32 logits in bytes."""
        return math.prod(self.shape) * 4

    def describe(self) -> str:
        """A short label such as ``3D (2, 4, 96, 96, 96) multiclass``."""
        return f"{self.dims}D {self.shape} {self.mode}"


#: The workloads of issue 5's table, then tiny ones for ``--quick`` (tests and smoke runs).
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("3d-2x4x96", (2, 4, 96, 96, 96), "multiclass"),
        Workload("3d-1x8x128", (1, 8, 128, 128, 128), "multiclass"),
        Workload("2d-8x4x256", (8, 4, 256, 256), "multiclass"),
        Workload("2d-bin-8x512", (8, 1, 512, 512), "binary"),
        Workload("3d-2x14x128", (2, 14, 128, 128, 128), "multiclass", default=False),
        Workload("quick-3d", (1, 3, 6, 6, 6), "multiclass", quick=True),
        Workload("quick-2d", (2, 3, 12, 12), "multiclass", quick=True),
        Workload("quick-bin", (2, 1, 16, 16), "binary", quick=True),
    )
}


# ------------------------------------------------------------------------------------------------------------- cases
class Unavailable(RuntimeError):
    """A case cannot run here (peer library not installed, or the loss not written yet)."""


@dataclass(frozen=True)
class Case:
    """One loss implementation measured on a workload.

    ``quantity`` groups the cases that compute the same loss (ours and the peers' with mapped arguments); ``note``
    states that mapping, and any convention in which the peer still differs.
    """

    id: str
    library: str
    quantity: str
    call: str
    note: str
    build: Callable[[BenchMode], LossFn] = field(repr=False, compare=False)
    modes: frozenset[str] = frozenset({"binary", "multiclass"})
    dims: frozenset[int] = frozenset({2, 3})
    target: TargetForm = "natural"
    #: the modes in which the peer computes our default loss's value (to float32 rounding): checked by
    #: :func:`value_mismatches` on every run
    exact: frozenset[str] = frozenset()

    def applies(self, workload: Workload) -> bool:
        """Whether the case can run on ``workload`` (mode and number of spatial dims)."""
        return workload.mode in self.modes and workload.dims in self.dims


#: Our losses measured by ``seglosses bench`` (all with default arguments), then the references.
QUANTITIES: tuple[str, ...] = (
    "dice",
    "jaccard",
    "tversky",
    "focal_tversky",
    "generalized_dice",
    "dice_ce",
    "focal",
    "unified_focal",
    "lovasz",
)
REFERENCES: tuple[str, ...] = ("ce", "sum")
PEER_LIBRARIES: tuple[str, ...] = ("monai", "smp", "kornia")


def _ours(quantity: str) -> Callable[[BenchMode], LossFn]:
    def build(mode: BenchMode) -> LossFn:
        import seglosses.functional as sf

        fn = getattr(sf, f"{quantity}_loss", None)
        if fn is None:
            raise Unavailable(f"seglosses.functional has no {quantity}_loss (not written yet)")

        def loss(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = fn(x, t, mode=mode)
            return out

        return loss

    return build


def _ce(mode: BenchMode) -> LossFn:
    if mode == "binary":
        return torch.nn.functional.binary_cross_entropy_with_logits
    return torch.nn.functional.cross_entropy


def _sum(mode: BenchMode) -> LossFn:
    return lambda x, t: x.sum()


def _monai(name: str, **kwargs: Any) -> Callable[[BenchMode], LossFn]:  # noqa: ANN401
    def build(mode: BenchMode) -> LossFn:
        try:
            import monai.losses as ml
        except ImportError as err:
            raise Unavailable(f"MONAI is not installed ({err})") from err
        act: dict[str, Any]
        if name == "FocalLoss":
            # alpha: none for the multiclass softmax focal, 0.25 for positives in binary mode (as ours)
            act = {"use_softmax": True, "to_onehot_y": True} if mode == "multiclass" else {"alpha": 0.25}
        else:
            act = {"softmax": True, "to_onehot_y": True} if mode == "multiclass" else {"sigmoid": True}
        module: LossFn = getattr(ml, name)(**act, **kwargs)
        return module

    return build


def _smp_losses() -> types.ModuleType:
    """``segmentation_models_pytorch.losses`` without the package ``__init__``.

    smp's ``__init__`` imports its encoders, hence timm and torchvision (a torchvision wheel would replace the
    installed torch). The losses need only torch and numpy, so the package is registered as an empty namespace
    (its ``__path__`` only) and ``segmentation_models_pytorch.losses`` is imported from it.
    """
    name = "segmentation_models_pytorch"
    if f"{name}.losses" in sys.modules:
        return sys.modules[f"{name}.losses"]
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("segmentation_models_pytorch is not installed")
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = package
    return importlib.import_module(f"{name}.losses")


def _smp(name: str, **kwargs: Any) -> Callable[[BenchMode], LossFn]:  # noqa: ANN401
    def build(mode: BenchMode) -> LossFn:
        module: LossFn = getattr(_smp_losses(), name)(mode=mode, **kwargs)
        return module

    return build


def _kornia(name: str, **kwargs: Any) -> Callable[[BenchMode], LossFn]:  # noqa: ANN401
    def build(mode: BenchMode) -> LossFn:
        try:
            import kornia.losses as kl
        except ImportError as err:
            raise Unavailable(f"kornia is not installed ({err})") from err
        fn = getattr(kl, name)

        def loss(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = fn(x, t, **kwargs)
            return out

        return loss

    return build


_MC = frozenset({"multiclass"})
_BIN = frozenset({"binary"})
_BOTH = frozenset({"binary", "multiclass"})
_2D = frozenset({2})

#: Every case. The note says how the peer's arguments map to our default loss (its documented defaults) and what
#: convention still differs; the value column of the output shows the effect.
CASES: tuple[Case, ...] = (
    Case(
        "ref:ce",
        "reference",
        "ce",
        "F.cross_entropy(x, t)",
        "multiclass: F.cross_entropy; binary: F.binary_cross_entropy_with_logits (the x CE baseline)",
        _ce,
    ),
    Case("ref:sum", "reference", "sum", "x.sum()", "one read of the logits, one write of the gradient", _sum),
    *(
        Case(f"seglosses:{q}", "seglosses", q, f"{q}_loss(x, t, mode=mode)", "default arguments", _ours(q))
        for q in QUANTITIES
    ),
    # ---- dice: 1 - (2TP + 1) / (2TP + FP + FN + 1) per class, stats summed over batch and space, mean over classes
    Case(
        "monai:DiceLoss",
        "monai",
        "dice",
        "DiceLoss(softmax|sigmoid, to_onehot_y, batch=True)",
        "smooth_nr=smooth_dr=1e-5 by default -> pass 1.0: same quantity; batch=True sums the stats over the batch",
        _monai("DiceLoss", batch=True, smooth_nr=1.0, smooth_dr=1.0),
        target="channel",
        exact=_BOTH,
    ),
    Case(
        "smp:DiceLoss",
        "smp",
        "dice",
        "DiceLoss(mode, smooth=0.5)",
        "smp 0.6 scores (TP + s) / (TP + (FP + FN) / 2 + s): s = 0.5 gives ours exactly (its smooth=1.0 is our "
        "smooth=2); smp zeroes the loss of a class absent from the target (ours keeps its FP term)",
        _smp("DiceLoss", smooth=0.5),
        exact=_BOTH,
    ),
    Case(
        "kornia:dice_loss",
        "kornia",
        "dice",
        "dice_loss(x, t, average='macro')",
        "per-image Dice (ours: per_image=True), mean over the classes present in each image, eps=1e-8 in the "
        "denominator only; 2D only, multiclass only (one channel gives a constant)",
        _kornia("dice_loss", average="macro"),
        modes=_MC,
        dims=_2D,
    ),
    # ---- jaccard: 1 - (TP + 1) / (TP + FP + FN + 1)
    Case(
        "monai:DiceLoss(jaccard)",
        "monai",
        "jaccard",
        "DiceLoss(..., jaccard=True, batch=True)",
        "MONAI's jaccard is 1 - (2TP + s) / (2(TP + FP + FN) + s): s = 2 gives ours exactly",
        _monai("DiceLoss", jaccard=True, batch=True, smooth_nr=2.0, smooth_dr=2.0),
        target="channel",
        exact=_BOTH,
    ),
    Case(
        "smp:JaccardLoss",
        "smp",
        "jaccard",
        "JaccardLoss(mode, smooth=1.0)",
        "same sums and smooth; absent classes zeroed (as smp Dice)",
        _smp("JaccardLoss", smooth=1.0),
        exact=_BOTH,
    ),
    # ---- tversky: alpha = 0.3 weights FP, beta = 0.7 weights FN in all three libraries
    Case(
        "monai:TverskyLoss",
        "monai",
        "tversky",
        "TverskyLoss(..., alpha=0.3, beta=0.7, batch=True)",
        "MONAI's alpha weights FP, beta FN (as ours); smooth 1.0 in numerator and denominator: same quantity",
        _monai("TverskyLoss", alpha=0.3, beta=0.7, batch=True, smooth_nr=1.0, smooth_dr=1.0),
        target="channel",
        exact=_BOTH,
    ),
    Case(
        "smp:TverskyLoss",
        "smp",
        "tversky",
        "TverskyLoss(mode, alpha=0.3, beta=0.7, smooth=1.0)",
        "alpha FP, beta FN; absent classes zeroed",
        _smp("TverskyLoss", alpha=0.3, beta=0.7, smooth=1.0),
        exact=_BOTH,
    ),
    Case(
        "kornia:tversky_loss",
        "kornia",
        "tversky",
        "tversky_loss(x, t, alpha=0.3, beta=0.7)",
        "per image, mean over present classes, eps=1e-8 (no smooth); 2D multiclass only",
        _kornia("tversky_loss", alpha=0.3, beta=0.7),
        modes=_MC,
        dims=_2D,
    ),
    # ---- focal tversky: (1 - T)^0.75
    Case(
        "smp:TverskyLoss(gamma)",
        "smp",
        "focal_tversky",
        "TverskyLoss(mode, alpha=0.3, beta=0.7, smooth=1.0, gamma=0.75)",
        "smp raises the class MEAN of 1 - T to gamma (ours: the mean of (1 - T_c)^gamma)",
        _smp("TverskyLoss", alpha=0.3, beta=0.7, smooth=1.0, gamma=0.75),
    ),
    # ---- generalized dice (Sudre et al.)
    Case(
        "monai:GeneralizedDiceLoss",
        "monai",
        "generalized_dice",
        "GeneralizedDiceLoss(..., batch=True)",
        "w_c = 1/(sum g_c)^2 (MONAI: absent class -> max weight, as ours); binary: MONAI uses the one channel, "
        "ours the pair [1 - p, p]; MONAI does not normalise the weights, so its default smooth 1e-5 is kept (with "
        "smooth 1.0 its loss is ~0 at these sizes)",
        _monai("GeneralizedDiceLoss", batch=True),
        target="channel",
    ),
    # ---- dice + CE, both weights 1
    Case(
        "monai:DiceCELoss",
        "monai",
        "dice_ce",
        "DiceCELoss(..., batch=True, smooth 1.0)",
        "lambda_dice = lambda_ce = 1 (as ours); binary: BCE-with-logits + Dice",
        _monai("DiceCELoss", batch=True, smooth_nr=1.0, smooth_dr=1.0),
        target="channel",
        exact=_BOTH,
    ),
    # ---- focal (softmax focal, gamma 2, no alpha for multiclass; binary alpha 0.25)
    Case(
        "monai:FocalLoss",
        "monai",
        "focal",
        "FocalLoss(use_softmax|sigmoid, gamma=2, alpha=None|0.25)",
        "multiclass: MONAI averages over N*C*S elements (ours over N*S: a factor C); binary: alpha=0.25 as ours",
        _monai("FocalLoss", gamma=2.0),
        target="channel",
        exact=_BIN,
    ),
    Case(
        "kornia:focal_loss",
        "kornia",
        "focal",
        "focal_loss(x, t, alpha=None, gamma=2, reduction='mean')",
        "softmax focal with alpha=None; like MONAI it averages over N*C*S elements (ours over N*S: a factor C)",
        _kornia("focal_loss", alpha=None, gamma=2.0, reduction="mean"),
        modes=_MC,
    ),
    Case(
        "kornia:binary_focal_loss_with_logits",
        "kornia",
        "focal",
        "binary_focal_loss_with_logits(x, t, alpha=0.25, gamma=2, reduction='mean')",
        "same quantity",
        _kornia("binary_focal_loss_with_logits", alpha=0.25, gamma=2.0, reduction="mean"),
        modes=_BIN,
        exact=_BIN,
    ),
    Case(
        "smp:FocalLoss",
        "smp",
        "focal",
        "FocalLoss('binary', alpha=0.25, gamma=2)",
        "binary only: smp's multiclass focal is one-vs-rest sigmoid, another quantity",
        _smp("FocalLoss", alpha=0.25),
        modes=_BIN,
        exact=_BIN,
    ),
    # ---- lovasz
    Case(
        "smp:LovaszLoss",
        "smp",
        "lovasz",
        "LovaszLoss(mode, per_image=False)",
        "multiclass: Lovasz-softmax over present classes of the whole batch; binary: Lovasz hinge of the batch",
        _smp("LovaszLoss", per_image=False),
        exact=_BOTH,
    ),
    Case(
        "kornia:lovasz_softmax_loss",
        "kornia",
        "lovasz",
        "lovasz_softmax_loss(x, t)",
        "per image (ours: per_image=True) and over ALL classes (ours: classes='all'); 2D only",
        _kornia("lovasz_softmax_loss"),
        modes=_MC,
        dims=_2D,
    ),
    Case(
        "kornia:lovasz_hinge_loss",
        "kornia",
        "lovasz",
        "lovasz_hinge_loss(x, t)",
        "binary hinge per image, then mean (ours: per_image=True); 2D only, target (N, H, W)",
        _kornia("lovasz_hinge_loss"),
        modes=_BIN,
        dims=_2D,
        target="flat",
    ),
)

_CASES_BY_ID = {c.id: c for c in CASES}

#: The groups of ``--only``: the built-in losses, the catalogue losses and the surface metrics.
GROUPS: tuple[str, ...] = ("losses", "catalogue", "surface")


def _catalogue() -> tuple[tuple[Case, ...], tuple[str, ...]]:
    """The catalogue group's cases and quantities, or two empty tuples where its module is missing or broken."""
    try:
        from seglosses.cli import bench_catalogue
    except ImportError:
        return (), ()
    return tuple(bench_catalogue.catalogue_cases()), tuple(bench_catalogue.CATALOGUE_QUANTITIES)


def _case(case_id: str) -> Case:
    """A case by its id: the built-in ones, then the catalogue group's."""
    if case_id in _CASES_BY_ID:
        return _CASES_BY_ID[case_id]
    return {c.id: c for c in _catalogue()[0]}[case_id]


def _hint(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def select_groups(names: Iterable[str] | None = None) -> list[str]:
    """The groups named (default: all of :data:`GROUPS`), in :data:`GROUPS` order.

    Raises:
        ValueError: an unknown group name.

    """
    if names is None:
        return list(GROUPS)
    wanted = list(names)
    unknown = [g for g in wanted if g not in GROUPS]
    if unknown or not wanted:
        what = f"unknown group {unknown[0]!r}{_hint(unknown[0], GROUPS)}" if unknown else "no group given"
        raise ValueError(f"{what}; choose from {', '.join(GROUPS)}")
    return [g for g in GROUPS if g in wanted]


def select_cases(
    losses: Iterable[str] | None = None, *, peers: bool = True, groups: Iterable[str] = ("losses",)
) -> list[Case]:
    """The cases for the quantities ``losses`` (default: all of the groups), ours and the peers', and references.

    ``groups``: ``"losses"`` (:data:`QUANTITIES`) and/or ``"catalogue"`` (the quantities of
    :mod:`seglosses.cli.bench_catalogue`, where it exists); a name of ``losses`` outside these groups is an error.
    With ``peers=False`` only our rows and the references.

    Raises:
        ValueError: an unknown loss name.

    """
    chosen = set(groups)
    cat_cases, cat_quantities = _catalogue() if "catalogue" in chosen else ((), ())
    known = (QUANTITIES if "losses" in chosen else ()) + cat_quantities
    wanted = list(known) if losses is None else list(losses)
    unknown = [q for q in wanted if q not in known and q not in REFERENCES]
    if unknown or (not wanted and losses is not None):
        what = f"unknown loss {unknown[0]!r}{_hint(unknown[0], known)}" if unknown else "no loss given"
        raise ValueError(f"{what}; choose from {', '.join(known + REFERENCES)}")
    keep = set(wanted) | set(REFERENCES)
    every = CASES + tuple(c for c in cat_cases if c.id not in _CASES_BY_ID)
    return [c for c in every if c.quantity in keep and (peers or c.library in ("seglosses", "reference"))]


def select_workloads(names: Iterable[str] | None = None, *, quick: bool = False) -> list[Workload]:
    """The workloads named (default: the issue's table without ``3d-2x14x128``, or the tiny ones with ``quick``).

    Raises:
        ValueError: an unknown workload name.

    """
    if names is None:
        return [w for w in WORKLOADS.values() if w.quick == quick and w.default]
    out = []
    for name in names:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}{_hint(name, WORKLOADS)}; choose from {', '.join(WORKLOADS)}")
        out.append(WORKLOADS[name])
    if not out:
        raise ValueError(f"no workload given; choose from {', '.join(WORKLOADS)}")
    return out


# ----------------------------------------------------------------------------------------------------------- worker
def _inputs(workload: Workload, form: TargetForm, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(workload.shape, generator=gen).to(device).requires_grad_(True)
    n, c, *spatial = workload.shape
    if workload.mode == "multiclass":
        target = torch.randint(0, c, (n, *spatial), generator=gen).to(device)
        return x, target.unsqueeze(1) if form == "channel" else target
    target = (torch.rand((n, 1, *spatial), generator=gen) < 0.3).float().to(device)
    return x, target.squeeze(1) if form == "flat" else target


def _profiled_cpu_peak(step: Callable[[], object]) -> int:
    """Peak of live tensor bytes allocated during ``step()`` on the CPU (see the module docstring)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    events.sort()
    current = peak = 0
    for _, size in events:
        current += size
        peak = max(peak, current)
    return peak


#: How the cases share worker processes (see :func:`run_benchmark`).
Isolate = Literal["case", "library"]
ISOLATE: tuple[str, ...] = ("case", "library")

#: Most warm-up (and most timed) steps of one case when ``min_time`` asks for more than ``repeats``.
_MAX_STEPS = 1000
#: Seconds of timed steps per case by default (plus half as much warm-up): short steps are then timed in the
#: allocator's steady state, not in a fresh process's first-touch page faults.
DEFAULT_MIN_TIME = 0.5


def measure(
    workload: Workload,
    case: Case,
    *,
    repeats: int = 5,
    warmup: int = 1,
    threads: int = 2,
    device: str = "cpu",
    loss_fn: LossFn | None = None,
    min_time: float = 0.0,
) -> dict[str, Any]:
    """Time and measure one case in this process (the worker's body; ``loss_fn`` overrides ``case.build``)."""
    torch.set_num_threads(threads)
    fn = loss_fn if loss_fn is not None else case.build(workload.mode)
    x, target = _inputs(workload, case.target, device)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def step() -> torch.Tensor:
        x.grad = None
        loss = fn(x, target)
        torch.autograd.backward(loss)
        return loss.detach()

    began = time.perf_counter()
    value = float(step())  # the first step's value only: a read in the timed steps would add a device-to-host copy
    done = 1
    while done < warmup or (time.perf_counter() - began < min_time / 2 and done < _MAX_STEPS):
        step()
        sync()  # the warm-up's clock counts finished GPU work, not kernels queued ahead of it (not timed)
        done += 1
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time * 1e3 and len(times) < _MAX_STEPS):
        sync()
        start = time.perf_counter()
        step()
        sync()  # on CUDA the step's kernels have finished (on the CPU they run inside the call)
        times.append((time.perf_counter() - start) * 1e3)
    x.grad = None
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        sync()
        peak = torch.cuda.max_memory_allocated(device) - base
        method = "cuda.max_memory_allocated"
    else:
        peak = _profiled_cpu_peak(step)
        method = "profiler allocation events"
    return {"ms": statistics.median(times), "ms_all": times, "peak_bytes": peak, "value": value, "method": method}


def _worker(args: argparse.Namespace) -> int:
    """Measure the cases ``args.worker[1:]`` on the workload ``args.worker[0]``, one after the other; one line each."""
    workload = WORKLOADS[args.worker[0]]
    for case_id in args.worker[1:]:
        try:
            out: dict[str, Any] = {
                "status": "ok",
                **measure(
                    workload,
                    _case(case_id),
                    repeats=args.repeats,
                    warmup=args.warmup,
                    threads=args.threads,
                    device=args.device,
                    min_time=args.min_time or 0.0,
                ),
            }
        except Unavailable as err:
            out = {"status": "unavailable", "error": str(err)}
        except Exception as err:  # reported in the table, never fatal for the run  # noqa: BLE001
            out = {"status": "error", "error": f"{type(err).__name__}: {err}"[:300]}
        print(_RESULT_MARK + json.dumps({"case": case_id, **out}), flush=True)
        # the next case of a shared process starts with nothing of this one's: no tensors, no cached CUDA blocks
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return 0


# ----------------------------------------------------------------------------------------------------------- driver
@dataclass
class Result:
    """One row: a case on a workload, with the derived ratios filled in by :func:`derive`."""

    workload: str
    shape: str
    case: str
    library: str
    quantity: str
    call: str
    note: str
    status: str
    error: str = ""
    ms: float = math.nan
    ms_all: list[float] = field(default_factory=list)
    peak_mib: float = math.nan
    value: float = math.nan
    method: str = ""
    x_ce: float = math.nan
    x_logits: float = math.nan
    peer_speedup: float = math.nan
    x_leanest_peer: float = math.nan


def _run_one(
    workload: Workload,
    case: Case,
    *,
    repeats: int,
    warmup: int,
    threads: int,
    device: str,
    timeout: float,
    min_time: float = 0.0,
) -> Result:
    """One case in a fresh worker process (see :func:`_run_group`)."""
    return _run_group(
        workload,
        [case],
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        device=device,
        timeout=timeout,
        min_time=min_time,
    )[0]


def _run_group(
    workload: Workload,
    cases: Sequence[Case],
    *,
    repeats: int,
    warmup: int,
    threads: int,
    device: str,
    timeout: float,
    min_time: float = 0.0,
) -> list[Result]:
    """Measure ``cases`` on ``workload`` in one fresh worker process, one after the other; one row per case.

    ``timeout`` applies to each case (from the previous case's result, or the start). A case that times out or takes
    its process down (a crash, an abort) gets a ``timeout`` / ``error`` row, and the cases after it run in a new
    process.
    """
    rows: dict[str, Result] = {}
    pending: list[Case] = []
    for case in cases:
        row = Result(
            workload.name, str(workload.shape), case.id, case.library, case.quantity, case.call, case.note, "ok"
        )
        rows[case.id] = row
        if case.applies(workload):
            pending.append(case)
        else:
            row.status, row.error = "n/a", f"{case.id} does not take {workload.dims}D {workload.mode} input"
    while pending:
        reported, failure = _spawn(
            workload,
            [c.id for c in pending],
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            device=device,
            timeout=timeout,
            min_time=min_time,
        )
        for data in reported:
            row = rows[data["case"]]
            row.status, row.error = data["status"], data.get("error", "")
            if row.status == "ok":
                row.ms, row.ms_all, row.value, row.method = data["ms"], data["ms_all"], data["value"], data["method"]
                row.peak_mib = data["peak_bytes"] / 2**20
                row.x_logits = data["peak_bytes"] / workload.logits_bytes
        pending = pending[len(reported) :]
        if pending:  # the process ended (or was stopped) during the first case still pending
            rows[pending[0].id].status, rows[pending[0].id].error = failure
            pending = pending[1:]
    return [rows[c.id] for c in cases]


def _spawn(
    workload: Workload,
    case_ids: Sequence[str],
    *,
    repeats: int,
    warmup: int,
    threads: int,
    device: str,
    timeout: float,
    min_time: float,
) -> tuple[list[dict[str, Any]], tuple[str, str]]:
    """Run one worker process over ``case_ids``; its results in order, and why it stopped early (if it did)."""
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "seglosses.cli.benchmark", "--worker", workload.name, *case_ids]
    command += ["--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    command += ["--device", device, "--min-time", repr(min_time)]
    reported: list[dict[str, Any]] = []
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        stdout = cast("IO[bytes]", proc.stdout)
        timed_out, pending = False, b""
        try:
            # raw reads of the pipe (a buffered readline could hold a result that select() no longer sees)
            with selectors.DefaultSelector() as selector:
                selector.register(stdout, selectors.EVENT_READ)
                deadline = time.monotonic() + timeout
                while len(reported) < len(case_ids):
                    if not selector.select(max(0.0, deadline - time.monotonic())):
                        timed_out = True
                        break
                    chunk = os.read(stdout.fileno(), 1 << 16)
                    if not chunk:  # the process has ended
                        break
                    *lines, pending = (pending + chunk).split(b"\n")
                    for raw in lines:
                        line = raw.decode(errors="replace")
                        if line.startswith(_RESULT_MARK):
                            reported.append(json.loads(line[len(_RESULT_MARK) :]))
                            deadline = time.monotonic() + timeout
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            stdout.close()
        if timed_out:
            return reported, ("timeout", f"over {timeout:.0f} s")
        stderr.seek(0)
        tail = (stderr.read().strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return reported, ("error", tail[:300])


def derive(results: Sequence[Result]) -> None:
    """Fill ``x_ce``, ``peer_speedup`` and ``x_leanest_peer`` from the rows of the same workload (in place)."""
    for row in results:
        same = [r for r in results if r.workload == row.workload and r.status == "ok"]
        ce = [r.ms for r in same if r.case == "ref:ce"]
        if row.status == "ok" and ce:
            row.x_ce = row.ms / ce[0]
        peers = [r for r in same if r.quantity == row.quantity and r.library in PEER_LIBRARIES]
        if row.status == "ok" and peers and row.library != "reference":
            row.peer_speedup = min(r.ms for r in peers) / row.ms
            leanest = min(r.peak_mib for r in peers)
            row.x_leanest_peer = row.peak_mib / leanest if leanest > 0 else math.nan


#: Relative difference allowed between a peer marked ``exact`` and our value (float32 sums in another order).
VALUE_RTOL = 1e-4


def value_mismatches(results: Sequence[Result]) -> list[str]:
    """The peer rows whose case is marked ``exact`` for the workload's mode but whose value is not ours.

    Each is described in one line (workload, case, its value and ours); [] when every such peer agrees to
    :data:`VALUE_RTOL`. Rows whose case, workload or our row is unknown or did not run are not checked.
    """
    out = []
    for row in results:
        workload = WORKLOADS.get(row.workload)
        case = _CASES_BY_ID.get(row.case)
        if row.status != "ok" or workload is None or case is None or workload.mode not in case.exact:
            continue
        ours = [
            r.value
            for r in results
            if r.workload == row.workload and r.case == f"seglosses:{row.quantity}" and r.status == "ok"
        ]
        if ours and not math.isclose(row.value, ours[0], rel_tol=VALUE_RTOL, abs_tol=1e-6):
            out.append(f"{row.workload} {row.case}: {row.value:.7g}, ours {ours[0]:.7g}")
    return out


def run_benchmark(
    workloads: Sequence[Workload],
    cases: Sequence[Case],
    *,
    repeats: int = 5,
    warmup: int = 1,
    threads: int = 2,
    device: str = "cpu",
    timeout: float = 900.0,
    rounds: int = 1,
    progress: Callable[[Result], None] | None = None,
    min_time: float = 0.0,
    isolate: Isolate = "case",
) -> list[Result]:
    """Run every case that applies to each workload in fresh subprocesses; rows in workload, case order.

    ``isolate``: ``"case"`` (default) runs each case in its own process; ``"library"`` runs the cases of one library
    (ours, the references, MONAI, smp, kornia) on one workload in one process, one after the other (the CUDA cache
    emptied between them): libraries still never share a process, and the start-up (imports, CUDA context, kernel
    loading), seconds per process on a GPU machine, is paid some 5 times per workload instead of 20-30.

    With ``rounds > 1`` the whole list runs ``rounds`` times, one round after the other, and each row reports the
    median of its rounds' medians: a slow spell of a shared machine then lands on every case alike instead of on
    the few that happened to run during it (the ratios of one run are what the table is for).

    Raises:
        ValueError: ``repeats``, ``warmup``, ``threads`` or ``rounds`` below 1, a negative ``min_time`` or an
            unknown ``isolate``.

    """
    if repeats < 1 or warmup < 1 or threads < 1 or rounds < 1:
        raise ValueError(
            f"repeats, warmup, threads and rounds must be >= 1; got {repeats}, {warmup}, {threads}, {rounds}"
        )
    if not min_time >= 0:
        raise ValueError(f"min_time must be >= 0 seconds; got {min_time}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds; got {timeout}")
    if isolate not in ISOLATE:
        raise ValueError(f"isolate must be one of {', '.join(ISOLATE)}; got {isolate!r}")
    pairs = [(w, c) for w in workloads for c in cases if c.applies(w)]
    runs: list[list[Result]] = [[] for _ in pairs]
    # the batches of one process: each pair alone, or the pairs of one (workload, library) in table order
    batches: dict[tuple[str, str], list[int]] = {}
    for i, (workload, case) in enumerate(pairs):
        batches.setdefault((workload.name, case.library if isolate == "library" else case.id), []).append(i)
    for _ in range(rounds):
        for batch in batches.values():
            workload = pairs[batch[0]][0]
            kwargs: dict[str, Any] = {
                "repeats": repeats,
                "warmup": warmup,
                "threads": threads,
                "device": device,
                "timeout": timeout,
                "min_time": min_time,
            }
            if isolate == "case":
                got = [_run_one(workload, pairs[batch[0]][1], **kwargs)]
            else:
                got = _run_group(workload, [pairs[i][1] for i in batch], **kwargs)
            for i, row in zip(batch, got, strict=True):
                runs[i].append(row)
                if progress is not None:
                    progress(row)
    results = [merge_rounds(seen) for seen in runs]
    derive(results)
    return results


def merge_rounds(rows: Sequence[Result]) -> Result:
    """One row from the rounds of one case: the median of the rounds' medians, every timed step kept in ``ms_all``.

    A round that failed makes the row fail (its status and error): a case is reported only if it ran every time.
    """
    first = rows[0]
    failed = [r for r in rows if r.status != "ok"]
    if len(rows) == 1 or failed:
        return failed[0] if failed else first
    merged = Result(**{f.name: getattr(first, f.name) for f in fields(Result)})
    merged.ms = statistics.median(r.ms for r in rows)
    merged.ms_all = [t for r in rows for t in r.ms_all]
    merged.peak_mib = max(r.peak_mib for r in rows)
    merged.x_logits = max(r.x_logits for r in rows)
    return merged


# ------------------------------------------------------------------------------------------------------------- load
#: The body of a busy process: a pure-Python loop that checks every million turns (some 20-50 ms) whether its parent
#: (the process id given as its argument) is still there, and stops once it is not.
_SPIN = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    for _ in range(1000000): pass\n"


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Keep ``n`` processes spinning on the CPU while the block runs; yields their :class:`subprocess.Popen` objects.

    Each is ``python -c`` a pure-Python loop (one core's worth of load, like a DataLoader worker or another job). They
    are killed and reaped when the block ends, however it ends (an exception or ``KeyboardInterrupt`` included);
    should this process die without that, each stops by itself within a fraction of a second once its parent is
    gone. ``n = 0``: nothing is started.

    Raises:
        ValueError: ``n`` is negative.

    """
    if n < 0:
        raise ValueError(f"busy must be >= 0 processes; got {n}")
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            spinners.append(
                subprocess.Popen(
                    [sys.executable, "-S", "-c", _SPIN, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield spinners
    finally:
        for proc in spinners:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in spinners:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _surface_results(*, quick: bool, threads: int, repeats: int | None, warmup: int, peers: bool) -> list[Result]:
    """The surface group's rows (see the module docstring), as :class:`Result`; [] where its module is missing."""
    try:
        from seglosses.cli import bench_surface
    except ImportError:
        return []
    kwargs: dict[str, Any] = {"threads": threads, "warmup": warmup, "size": 32 if quick else 160}
    if repeats is not None or quick:
        kwargs["repeats"] = repeats if repeats is not None else 2
    names = {f.name for f in fields(Result)}
    rows = [Result(**{k: v for k, v in row.items() if k in names}) for row in bench_surface.surface_rows(**kwargs)]
    if not peers:
        rows = [r for r in rows if r.library == "seglosses"]
        for row in rows:
            row.peer_speedup = math.nan  # its peers were timed but are not shown
    return rows


# ---------------------------------------------------------------------------------------------------------- outputs
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_machine(device: str = "cpu", threads: int = 2) -> dict[str, Any]:
    """CPU model, cores, threads, GPU, and the versions of torch and the peers."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "threads": threads,
        "device": device,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "seglosses": _version("seglosses"),
        "monai": _version("monai"),
        "segmentation_models_pytorch": _version("segmentation-models-pytorch")
        or _version("segmentation_models_pytorch"),
        "kornia": _version("kornia"),
    }
    if not device.startswith("cuda"):
        from seglosses import _native

        info["native kernels"] = _native.status()
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


_COLUMNS = (
    "workload",
    "quantity",
    "library",
    "case",
    "ms",
    "peak_mib",
    "x_ce",
    "x_logits",
    "peer_speedup",
    "x_leanest_peer",
    "value",
    "status",
    "error",
    "shape",
    "call",
    "note",
    "method",
    "ms_all",
)


def write_outputs(results: Sequence[Result], out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` (rows and ``meta``) under ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "json": out / "results.json"}
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_COLUMNS)
        writer.writeheader()
        for row in results:
            record = asdict(row)
            record["ms_all"] = " ".join(f"{t:.3f}" for t in row.ms_all)
            writer.writerow({k: record[k] for k in _COLUMNS})
    rows = [{f.name: _json_safe(getattr(r, f.name)) for f in fields(Result)} for r in results]
    paths["json"].write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    return paths


def _json_safe(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _fmt(value: float, digits: int = 2) -> str:
    return "" if not math.isfinite(value) else f"{value:.{digits}f}"


def _cells(row: Result) -> list[str]:
    if row.status != "ok":
        return [row.quantity, row.library, row.case, row.status, "", "", "", "", "", row.error]
    return [
        row.quantity,
        row.library,
        row.case,
        _fmt(row.ms, 2 if row.ms < 10 else 1),
        _fmt(row.peak_mib, 1),
        _fmt(row.x_ce),
        _fmt(row.x_logits),
        _fmt(row.peer_speedup),
        _fmt(row.x_leanest_peer),
        f"{row.value:.5g}",
    ]


_HEADERS = ("loss", "library", "case", "ms", "peak MiB", "x CE", "x logits", "peer speed-up", "x leanest peer", "value")


def to_markdown(results: Sequence[Result], meta: dict[str, Any], *, command: str = "") -> str:
    """The results as Markdown: the machine, one table per workload, and the argument mapping of each case."""
    lines = ["# seglosses benchmark", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in meta.items() if v is not None] + [""]
    fresh = (
        "the cases of one library on one workload in one fresh subprocess, one after the other (CUDA cache emptied "
        "between them; libraries never share a process)"
        if meta.get("isolate") == "library"
        else "each case in a fresh subprocess"
    )
    lines += [
        f"Forward + backward w.r.t. float32 logits, median of the timed steps after warm-up, {fresh} "
        "(with `rounds` > 1: the whole list run that many times, one round after the other, and the "
        "median of the rounds' medians). `x CE`: time over `F.cross_entropy` (binary: BCE with logits) on the "
        "same input; `x logits`: "
        "peak extra tensor memory over the logits' size (the logits' gradient counts: 1.0 is the minimum); "
        "`peer speed-up`: fastest peer's time for the same loss over this row's (> 1: faster than every peer); "
        "`x leanest peer`: peak over the leanest peer's. `value`: the loss value, to check the argument mapping.",
        "",
    ]
    order = list(dict.fromkeys(r.workload for r in results))
    for name in order:
        workload = WORKLOADS.get(name)
        title = workload.describe() if workload else name
        lines += [f"## {name}: {title}", "", "| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
        lines += [
            "| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in results if r.workload == name
        ]
        lines.append("")
    checked = [r for r in results if r.status == "ok" and r.case in _CASES_BY_ID and r.workload in WORKLOADS]
    checked = [r for r in checked if WORKLOADS[r.workload].mode in _CASES_BY_ID[r.case].exact]
    if checked:
        wrong = value_mismatches(results)
        lines += [
            "## Value check",
            "",
            f"Peers whose mapping gives our default loss exactly: {len(checked) - len(wrong)} of {len(checked)} rows "
            f"equal ours (relative difference <= {VALUE_RTOL:g}).",
        ]
        lines += ["", "Different (the mapping is wrong: do not read these rows' ratios):", ""] if wrong else []
        lines += [f"- {w}" for w in wrong]
        lines.append("")
    lines += [
        "## Cases: the call and the argument mapping to the same quantity",
        "",
        "| case | call | mapping |",
        "|---|---|---|",
    ]
    first = {r.case: r for r in reversed(results)}  # the first row of each case
    for case_id in dict.fromkeys(r.case for r in results):
        row = first[case_id]
        if row.call:
            lines.append(f"| {case_id} | `{row.call.replace('|', '/')}` | {row.note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def render_rich(results: Sequence[Result], title: str = "seglosses bench") -> None:
    """Print the results as rich tables, one per workload (needs rich, the ``cli`` extra)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name in dict.fromkeys(r.workload for r in results):
        workload = WORKLOADS.get(name)
        table = Table(title=f"{title}: {name} {workload.describe() if workload else ''}", title_justify="left")
        for i, header in enumerate(_HEADERS):
            table.add_column(header, justify="right" if 3 <= i <= 8 else "left", overflow="fold")
        for row in results:
            if row.workload == name:
                style = "bold" if row.library == "seglosses" else ("dim" if row.library == "reference" else None)
                table.add_row(*_cells(row), style=style)
        console.print(table)


# -------------------------------------------------------------------------------------------------------------- CLI
def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; a CUDA device without CUDA raises ``ValueError``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be cpu, cuda or auto; got {name!r}")
    return name


def run_and_report(
    *,
    workloads: str | None = None,
    losses: str | None = None,
    peers: bool = True,
    repeats: int | None = None,
    warmup: int = 1,
    threads: int = 2,
    device: str = "auto",
    out: Path = Path("seglosses-bench"),
    quick: bool = False,
    timeout: float = 900.0,
    rounds: int = 1,
    rich: bool = True,
    log: Callable[[str], None] | None = None,
    min_time: float | None = None,
    busy: int = 0,
    only: str | None = None,
    isolate: Isolate = "case",
) -> tuple[list[Result], dict[str, Path], dict[str, Any]]:
    """Select, run, print and write: the body of ``seglosses bench`` and ``python -m seglosses.cli.benchmark``.

    ``min_time`` (seconds of timed steps per case, half as much warm-up; see :func:`measure`) defaults to
    :data:`DEFAULT_MIN_TIME`, or 0 with ``quick``. ``busy``: processes kept spinning for the whole run (see
    :func:`busy_processes`; recorded in the meta as ``busy``). ``only``: comma-separated groups of :data:`GROUPS`
    (default all, or the two loss groups when ``losses`` is given); ``losses`` picks among the quantities of the
    loss groups chosen. ``isolate``: one process per case (default) or per workload and library (see
    :func:`run_benchmark`; recorded in the meta as ``isolate``).

    Raises:
        ValueError: an unknown workload, loss, group, device or ``isolate``, or a negative ``busy``.

    """
    chosen_device = resolve_device(device)
    if only is None and losses is not None:
        groups = [g for g in GROUPS if g != "surface"]  # named losses: the loss groups only
    else:
        groups = select_groups(_split(only))
    chosen_workloads = select_workloads(_split(workloads), quick=quick)
    loss_groups = [g for g in groups if g != "surface"]
    cases = select_cases(_split(losses), peers=peers, groups=loss_groups) if loss_groups else []
    if busy < 0:
        raise ValueError(f"busy must be >= 0 processes; got {busy}")
    if isolate not in ISOLATE:
        raise ValueError(f"isolate must be one of {', '.join(ISOLATE)}; got {isolate!r}")
    n_repeats = repeats if repeats is not None else (2 if quick else 5)
    if min_time is None:
        min_time = 0.0 if quick else DEFAULT_MIN_TIME

    meta = describe_machine(chosen_device, threads) | {"repeats": n_repeats, "warmup": warmup, "rounds": rounds}
    if min_time > 0:
        meta["min_time_s"] = min_time
    meta["busy"] = busy
    meta["groups"] = ",".join(groups)
    meta["isolate"] = isolate
    done: dict[tuple[str, str], list[Result]] = {}

    def progress(row: Result) -> None:
        seen = done.setdefault((row.workload, row.case), [])
        seen.append(row)
        # a long run interrupted keeps what it measured (rounds merged so far)
        write_outputs([merge_rounds(rows) for rows in done.values()], out, meta | {"partial": True})
        if log is not None:
            what = f"{row.ms:9.1f} ms {row.peak_mib:9.1f} MiB" if row.status == "ok" else f"{row.status}: {row.error}"
            label = f" [{len(seen)}/{rounds}]" if rounds > 1 else ""
            log(f"{row.workload:14s} {row.case:38s} {what}{label}")

    with busy_processes(busy) as spinners:
        if spinners and log is not None:
            log(f"busy: {len(spinners)} spinning processes (pids {', '.join(str(p.pid) for p in spinners)})")
        results = run_benchmark(
            chosen_workloads,
            cases,
            repeats=n_repeats,
            warmup=warmup,
            threads=threads,
            device=chosen_device,
            timeout=timeout,
            rounds=rounds,
            progress=progress,
            min_time=min_time,
            isolate=isolate,
        )
        if "surface" in groups:
            rounds_rows: list[list[Result]] = []
            for _ in range(rounds):
                got = _surface_results(quick=quick, threads=threads, repeats=repeats, warmup=warmup, peers=peers)
                if not got:
                    if log is not None:
                        log("surface: seglosses.cli.bench_surface is not available; group left out")
                    break
                rounds_rows.append(got)
                for row in got:
                    progress(row)
            if rounds_rows:
                surface = [merge_rounds(list(rows)) for rows in zip(*rounds_rows, strict=True)]
                results = [*results, *surface]
                derive(results)
    if log is not None:
        for line in value_mismatches(results):
            log(f"value check: a peer mapped to our loss gives another value: {line}")
    paths = write_outputs(results, out, meta)
    markdown = out / "results.md"
    markdown.write_text(to_markdown(results, meta))
    paths["md"] = markdown
    if rich:
        render_rich(results)
    return results, paths, meta


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m seglosses.cli.benchmark``: the same options as ``seglosses bench``."""
    parser = argparse.ArgumentParser(prog="python -m seglosses.cli.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    parser.add_argument("--losses", help=f"comma-separated, from: {', '.join(QUANTITIES)} (default all)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 5, --quick 2)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--out", type=Path, default=Path("seglosses-bench"))
    parser.add_argument("--quick", action="store_true", help="tiny workloads (smoke test)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the whole list this many times; report the median of the rounds"
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=None,
        help=f"seconds: warm up for at least half of it and time steps for at least all of it (default "
        f"{DEFAULT_MIN_TIME}, 0 with --quick; 0: --warmup and --repeats only)",
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="processes kept spinning on the CPU for the whole run (default 0)"
    )
    parser.add_argument("--only", help=f"comma-separated groups, from: {', '.join(GROUPS)} (default all)")
    parser.add_argument(
        "--isolate",
        choices=ISOLATE,
        default="case",
        help="a fresh process per case (default) or per workload and library (the cases of one library share it)",
    )
    parser.add_argument("--no-rich", dest="rich", action="store_false", help="no terminal table")
    parser.add_argument("--worker", nargs="+", metavar="WORKLOAD CASE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.device = resolve_device(args.device)
        return _worker(args)
    try:
        _, paths, _ = run_and_report(
            workloads=args.workloads,
            losses=args.losses,
            peers=args.peers,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            device=args.device,
            out=args.out,
            quick=args.quick,
            timeout=args.timeout,
            rounds=args.rounds,
            rich=args.rich,
            min_time=args.min_time,
            busy=args.busy,
            only=args.only,
            isolate=args.isolate,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
