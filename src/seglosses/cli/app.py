"""The ``seglosses`` command line (typer): ``compare``, ``tune`` and ``bench``.

Each command imports its machinery when it runs, so ``seglosses --help`` is fast. Errors in the user's input
(bad data, an unknown loss, a malformed ``--loss-arg``) and operating-system errors (an unwritable or full results
folder) print one line and exit with status 2; Ctrl-C exits with status 130, and SIGTERM (a scheduler ending the job)
with 143, after saying what is kept and how to resume.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="seglosses",
    help="Choose a segmentation loss on your data: compare candidates, tune one, benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataOption = Annotated[
    str,
    typer.Option(
        "--data",
        help="scratch-assay (default, real microscopy), scratch-assay:3class, cells3d (3D), synthetic[:binary][:3d], "
        "or a folder with images/ and masks/ (PNG/TIFF/NIfTI paired by name; the last 20% by name validate) or with "
        "train/ and val/ that each hold them; FOLDER:classes=N to fix the class count.",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, or auto (cuda when available).")]
CropOption = Annotated[
    str | None,
    typer.Option(
        "--crop",
        help="Train on random crops of this size, e.g. 64,64 (2D) or 32,32,32 (3D), used as given (padded where an "
        "image is smaller); default: the data's own crop (96 per axis at most in 2D, 32 in 3D), rounded up to "
        "--size-multiple with --model. With --window, for a model that takes one input size.",
    ),
]


def _sizes(text: str | None, option: str) -> list[int] | None:
    """``"64,64"`` -> ``[64, 64]``; a one-line error for anything else."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        _fail(f"{option} must be comma-separated integers such as 256,256; got {text!r}")


IgnoreOption = Annotated[
    int | None,
    typer.Option(
        "--ignore-index",
        help="A mask value whose pixels are neither trained on nor scored, e.g. 255 (the void border of Pascal "
        "VOC masks); it must not be a class index. Default: every mask value is a class.",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads", min=1, help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)."
    ),
]


def _device(name: str, threads: int | None = None) -> str:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        _fail(f"--device {name}: CUDA is not available here (torch.cuda.is_available() is False); use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        _fail(f"--device must be cpu, cuda or auto; got {name!r}")
    return name


def _console() -> Any:
    """The console for results: the terminal's width, or 200 columns when the output is not a terminal.

    Written to a log file or a CI log, rich would otherwise squeeze the results table into 80 columns and cut every
    number to its first digits.
    """
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _fail(message: str) -> NoReturn:
    from rich.console import Console
    from rich.markup import escape

    # escaped: a message such as "values in [nan, nan]" or a path with brackets is text, not rich markup
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it stops through the same path as Ctrl-C (files kept)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler's or ``kill``'s default) raises :class:`Terminated` in the main thread.

    Without it the process ends at once with status 143 and says nothing; with it, what is finished is kept (every
    result file is written atomically), the half-done run is abandoned, and the message says how to resume.
    """

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding application): leave its handling alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _has_results(out: Path) -> bool:
    """Whether ``out`` holds anything a rerun resumes from (finished compare runs, or a tune study or trial)."""
    try:
        return any((out / "runs").glob("*.json")) or any(out.glob("*.db")) or any(out.glob("trials*"))
    except OSError:
        return False


def _interrupted(out: Path, command: str, exc: KeyboardInterrupt, *, study: bool = False) -> NoReturn:
    """Say what is kept and how to resume, then exit 130 (Ctrl-C) or 143 (SIGTERM).

    ``study``: the finished trials live in the study of ``tune --storage`` (a database elsewhere), not in ``out``.
    """
    from rich.console import Console
    from rich.markup import escape

    what, code = ("terminated (SIGTERM).", 143) if isinstance(exc, Terminated) else ("interrupted.", 130)
    if study:
        kept = "Finished trials are kept in the study of --storage; run the same command again to resume"
    elif _has_results(out):
        kept = f"Finished work is saved in {escape(str(out))}; run the same command again to resume"
    else:
        kept = "Nothing was finished yet; run the same command again to start"
    Console(stderr=True).print(f"\n[yellow]{what}[/] {kept} ({escape(command)}).", highlight=False)
    raise typer.Exit(code)


@app.command()
def compare(
    losses: Annotated[
        str | None,
        typer.Option(
            "--losses",
            help="Comma-separated registry names (default: dice, dice_ce, focal, tversky, focal_tversky, lovasz, "
            "unified_focal). `all` compares every loss.",
        ),
    ] = None,
    data: DataOption = "scratch-assay",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (default: 12, --quick 4).")] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per loss (0..N-1); >= 2 give a spread.")] = 2,
    out: Annotated[Path, typer.Option("--out", help="Results folder; re-running resumes it.")] = Path(
        "seglosses-compare"
    ),
    device: DeviceOption = "auto",
    loss_arg: Annotated[
        list[str] | None,
        typer.Option("--loss-arg", help="A loss hyperparameter, LOSS.NAME=VALUE (repeatable): tversky.alpha=0.2"),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small schedule (under 2 minutes on 2 CPU cores).")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
    threads: ThreadsOption = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Train each run with DistributedDataParallel over N processes on this machine (gloo on CPU, nccl "
            "with --device cuda), the global batch split between them. Not needed under torchrun.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Your model: package.module:function returning a fresh torch.nn.Module, called with in_channels= "
            "and out_channels= when it accepts them (1 output channel for 2 classes, else one per class), under "
            "each run's seed; run once on a validation image and a training batch before any training, to check "
            "its output. Default: the built-in U-Net.",
        ),
    ] = None,
    amp: Annotated[
        str | None, typer.Option("--amp", help="Mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA only).")
    ] = None,
    num_workers: Annotated[
        int,
        typer.Option(
            "--num-workers", min=0, help="DataLoader worker processes reading and cropping (0: in the main process)."
        ),
    ] = 0,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Training crops per step (default 8 in 2D, 2 in 3D).")
    ] = None,
    steps_per_epoch: Annotated[
        int | None, typer.Option("--steps-per-epoch", min=1, help="Optimiser steps per epoch (default 20, --quick 10).")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Predict validation images larger than this size by a sliding window (half overlap) and pad smaller "
            "ones to it, e.g. 256,256 (2D) or 96,96,96 (3D); default: every image whole.",
        ),
    ] = None,
    size_multiple: Annotated[
        int | None,
        typer.Option(
            "--size-multiple",
            min=1,
            help="Pad validation inputs to a multiple of this (default: 8 for the built-in U-Net, 32 with --model); "
            "with --model the training crop is rounded up to a multiple of it too.",
        ),
    ] = None,
    spacing: Annotated[
        str | None,
        typer.Option(
            "--spacing",
            help="Pixel/voxel size per axis for the HD95 and NSD columns, e.g. 0.8,0.8,2.0 (default: the NIfTI "
            "headers of a NIfTI folder, else 1).",
        ),
    ] = None,
    nsd_tolerance: Annotated[
        float | None,
        typer.Option("--nsd-tolerance", min=0.0, help="NSD tolerance in the units of the spacing (default 1)."),
    ] = None,
    ignore_index: IgnoreOption = None,
    crop: CropOption = None,
) -> None:
    """Train the same model with each loss (same data, weights, batches, schedule) and compare them on held-out data.

    The verdict is paired: each loss against the best on the same validation images and seeds, with a 95% bootstrap
    interval; "no clear winner" unless the interval excludes 0.
    """
    import os

    from seglosses.cli.compare import compare as run_compare
    from seglosses.cli.compare import parse_loss_args
    from seglosses.cli.data import DataError
    from seglosses.cli.model import load_factory
    from seglosses.cli.report import rich_table

    console = _console()
    names = None if losses is None else [n.strip() for n in losses.split(",") if n.strip()]
    if nproc is not None and nproc < 1:
        _fail(f"--nproc must be >= 1; got {nproc}")
    if amp is not None and amp not in ("bf16", "fp16"):
        _fail(f"--amp must be bf16 or fp16; got {amp!r}")
    sizes = _sizes(window, "--window")
    crop_sizes = _sizes(crop, "--crop")
    try:
        steps = None if spacing is None else [float(v) for v in spacing.split(",")]
    except ValueError:
        _fail(f"--spacing must be comma-separated numbers such as 0.8,0.8,2.0; got {spacing!r}")
    with _sigterm_as_interrupt():
        try:
            factory = None if model is None else load_factory(model)
            table = run_compare(
                names,
                data=data,
                epochs=epochs,
                seeds=seeds,
                out=out,
                device=_device(device, threads),
                loss_args=parse_loss_args(loss_arg or []),
                quick=quick,
                progress=not no_progress,
                log=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True),
                nproc=nproc,
                model=factory,
                amp=amp,
                num_workers=num_workers,
                batch_size=batch_size,
                steps_per_epoch=steps_per_epoch,
                window=sizes,
                crop=crop_sizes,
                size_multiple=size_multiple,
                spacing=steps,
                nsd_tolerance=nsd_tolerance,
                ignore_index=ignore_index,
            )
        except KeyboardInterrupt as exc:
            _interrupted(out, "seglosses " + " ".join(sys.argv[1:]), exc)
        except (DataError, ValueError, TypeError, OSError) as exc:
            _fail(str(exc))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 prints
        return
    console.print(rich_table(table))
    console.print(table.recommendation().text, highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"report: {out / 'report.html'} (also results.csv, summary.csv, results.json, *.png)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@app.command()
def tune(
    loss: Annotated[str, typer.Option("--loss", help="The loss to tune (a registry name, e.g. tversky).")],
    trials: Annotated[
        int,
        typer.Option("--trials", min=1, help="Finished trials wanted in the study, in total (shared by every worker)."),
    ] = 20,
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="Objective on the validation data: dice, iou, precision, recall, nsd (maximised) or hd95 (minimised).",
        ),
    ] = "dice",
    data: DataOption = "scratch-assay",
    out: Annotated[Path, typer.Option("--out", help="Results folder (holds the SQLite study).")] = Path(
        "seglosses-tune"
    ),
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL (default: sqlite:///OUT/study.db). Workers given the same URL share one study: "
            "sqlite:///path/study.db on one machine, postgresql://user:pass@host/db across machines.",
        ),
    ] = None,
    study_name: Annotated[
        str | None,
        typer.Option(
            "--study-name", help="Study name (default: derived from the loss, metric, data, schedule and model)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per trial (default 4).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A very small schedule per trial.")] = False,
    confirm_seeds: Annotated[
        int,
        typer.Option(
            "--confirm-seeds",
            min=0,
            help="After the search, train the best arguments and the defaults on this many fresh seeds and report "
            "the paired difference with a bootstrap interval (0: skip).",
        ),
    ] = 3,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="NSD tolerance in pixels (or the data's spacing units).")
    ] = 1.0,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Your model: package.module:function returning a fresh torch.nn.Module, called with in_channels= "
            "and out_channels= when it accepts them (default: the built-in U-Net).",
        ),
    ] = None,
    heartbeat: Annotated[
        float,
        typer.Option(
            "--heartbeat",
            min=0.001,
            help="Seconds between a running trial's heartbeats (default 60). A trial silent for twice that long "
            "belongs to a dead worker: it is marked FAIL and its parameters are run again.",
        ),
    ] = 60.0,
    ignore_index: IgnoreOption = None,
    crop: CropOption = None,
    device: DeviceOption = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Search one loss's hyperparameters with Optuna (resumable SQLite study), then confirm the best on fresh seeds."""
    from seglosses.cli.data import DataError
    from seglosses.cli.model import load_factory
    from seglosses.cli.tune import rich_trials_table
    from seglosses.cli.tune import tune as run_tune

    console = _console()
    with _sigterm_as_interrupt():
        try:
            result = run_tune(
                loss,
                model=None if model is None else load_factory(model),
                trials=trials,
                metric=metric,
                data=data,
                out=out,
                storage=storage,
                study_name=study_name,
                epochs=epochs,
                quick=quick,
                confirm_seeds=confirm_seeds,
                tolerance=tolerance,
                ignore_index=ignore_index,
                crop=_sizes(crop, "--crop"),
                heartbeat=heartbeat,
                device=_device(device, threads),
                progress=not no_progress,
                log=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True),
            )
        except KeyboardInterrupt as exc:
            _interrupted(out, "seglosses " + " ".join(sys.argv[1:]), exc, study=storage is not None)
        except (DataError, ValueError, TypeError, OSError) as exc:
            _fail(str(exc))
    console.print(rich_trials_table(result))
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    console.print(
        f"best {result.metric} {result.best_value:.4f} with {params or '(no finished trial)'}"
        + (f" (defaults: {result.default_value:.4f})" if result.default_value == result.default_value else ""),
        highlight=False,
    )
    # the confirmation's sentence was printed by tune itself (its log) when the confirmation ended
    console.print(f"files: {', '.join(sorted(result.files))} in {out}", highlight=False, markup=False, soft_wrap=True)


try:  # `bench` lives in its own file, written separately; the app works without it.
    from seglosses.cli.bench import bench
except ImportError:  # pragma: no cover - depends on whether bench.py exists
    pass
else:
    app.command("bench")(bench)


def main() -> None:
    """Entry point of the ``seglosses`` script and of ``python -m seglosses``."""
    app()
