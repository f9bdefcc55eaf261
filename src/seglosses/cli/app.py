"""The ``seglosses`` command line (typer): ``compare``, ``tune`` and ``bench``.

Each command imports its machinery when it runs, so ``seglosses --help`` is fast. Errors in the user's input
(bad data, an unknown loss, a malformed ``--loss-arg``) print one line and exit with status 2; Ctrl-C exits with
status 130 after saying how to resume.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

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
        "or a folder with images/ and masks/ (PNG/TIFF/NIfTI paired by name; FOLDER:classes=N to fix the class count).",
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, or auto (cuda when available).")]
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


def _fail(message: str) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _interrupted(out: Path, command: str) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(
        f"\n[yellow]interrupted.[/] Finished work is saved in {out}; run the same command again to resume ({command}).",
        highlight=False,
    )
    raise typer.Exit(130)


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
) -> None:
    """Train the same U-Net with each loss (same data, weights, batches, schedule) and compare them on held-out data."""
    import os

    from rich.console import Console

    from seglosses.cli.compare import compare as run_compare
    from seglosses.cli.compare import parse_loss_args
    from seglosses.cli.data import DataError
    from seglosses.cli.report import rich_table
    from seglosses.registry import available_losses

    console = Console()
    names = None if losses is None else [n.strip() for n in losses.split(",") if n.strip()]
    if names == ["all"]:
        names = available_losses()
    try:
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
            log=lambda text: console.print(text, highlight=False, soft_wrap=True),
            nproc=nproc,
        )
    except KeyboardInterrupt:
        _interrupted(out, "seglosses " + " ".join(sys.argv[1:]))
    except (DataError, ValueError, TypeError) as exc:
        _fail(str(exc))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 prints
        return
    console.print(rich_table(table))
    console.print(table.recommendation().text, highlight=False)
    console.print(
        f"report: {out / 'report.html'} (also results.csv, summary.csv, results.json, *.png)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def tune(
    loss: Annotated[str, typer.Option("--loss", help="The loss to tune (a registry name, e.g. tversky).")],
    trials: Annotated[
        int,
        typer.Option("--trials", min=1, help="Finished trials wanted in the study, in total (shared by every worker)."),
    ] = 20,
    metric: Annotated[str, typer.Option("--metric", help="Objective: dice, iou, precision or recall.")] = "dice",
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
        typer.Option("--study-name", help="Study name (default: derived from the loss, metric, data and schedule)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per trial (default 4).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A very small schedule per trial.")] = False,
    device: DeviceOption = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Search one loss's hyperparameters with Optuna (resumable SQLite study); writes best_params.json and plots."""
    from rich.console import Console

    from seglosses.cli.data import DataError
    from seglosses.cli.tune import rich_trials_table
    from seglosses.cli.tune import tune as run_tune

    console = Console()
    try:
        result = run_tune(
            loss,
            trials=trials,
            metric=metric,
            data=data,
            out=out,
            storage=storage,
            study_name=study_name,
            epochs=epochs,
            quick=quick,
            device=_device(device, threads),
            progress=not no_progress,
            log=lambda text: console.print(text, highlight=False, soft_wrap=True),
        )
    except KeyboardInterrupt:
        _interrupted(out, "seglosses " + " ".join(sys.argv[1:]))
    except (DataError, ValueError, TypeError) as exc:
        _fail(str(exc))
    console.print(rich_trials_table(result))
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    console.print(
        f"best {result.metric} {result.best_value:.4f} with {params or '(no finished trial)'}"
        + (f" (defaults: {result.default_value:.4f})" if result.default_value == result.default_value else ""),
        highlight=False,
    )
    console.print(f"files: {', '.join(sorted(result.files))} in {out}", highlight=False, soft_wrap=True)


try:  # `bench` lives in its own file, written separately; the app works without it.
    from seglosses.cli.bench import bench
except ImportError:  # pragma: no cover - depends on whether bench.py exists
    pass
else:
    app.command("bench")(bench)


def main() -> None:
    """Entry point of the ``seglosses`` script and of ``python -m seglosses``."""
    app()
