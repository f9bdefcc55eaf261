"""``seglosses bench``: speed and peak memory of the losses beside MONAI, smp and kornia (see cli/benchmark.py).

Registered by ``seglosses.cli.app`` with ``app.command("bench")(bench)``; the machinery lives in
:mod:`seglosses.cli.benchmark` and is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["bench"]


def bench(
    workloads: Annotated[
        str | None,
        typer.Option(
            "--workloads",
            help="Comma-separated: 3d-2x4x96, 3d-1x8x128, 2d-8x4x256, 2d-bin-8x512, 3d-2x14x128 (default: the first "
            "four; the many-class 3D one only when named; with --quick quick-3d, quick-2d, quick-bin).",
        ),
    ] = None,
    losses: Annotated[
        str | None,
        typer.Option(
            "--losses",
            help="Comma-separated: dice, jaccard, tversky, focal_tversky, generalized_dice, dice_ce, focal, "
            "unified_focal, lovasz (default: all). The references F.cross_entropy and x.sum() always run.",
        ),
    ] = None,
    peers: Annotated[
        bool, typer.Option("--peers/--no-peers", help="Also run MONAI, smp and kornia where installed.")
    ] = True,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="Timed steps per case (default 5, --quick 2).")
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", min=1, help="Untimed steps before timing.")] = 1,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch.set_num_threads in every case.")] = 2,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, or auto (cuda when available).")] = "auto",
    out: Annotated[Path, typer.Option("--out", help="Folder for results.csv, results.json, results.md.")] = Path(
        "seglosses-bench"
    ),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny workloads: a smoke test in seconds.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds allowed per case.")] = 900.0,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            min=1,
            help="Run the whole list this many times and report the median of the rounds (steadier ratios on a "
            "shared machine).",
        ),
    ] = 1,
    min_time: Annotated[
        float | None,
        typer.Option(
            "--min-time",
            min=0.0,
            help="Seconds: warm up each case for at least half of it and time steps for at least all of it (more "
            "steps for short cases; default 0.5, 0 with --quick; 0: just --warmup and --repeats).",
        ),
    ] = None,
    busy: Annotated[
        int,
        typer.Option(
            "--busy",
            min=0,
            help="Keep N processes spinning on the CPU for the whole run (killed at its end), so that every case, "
            "ours and the peers', is timed on busy cores; compare with a run without it for each loss's slowdown.",
        ),
    ] = 0,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="Comma-separated groups: losses (the table of --losses), catalogue (boundary, Hausdorff-DT and "
            "clDice losses beside MONAI), surface (HD95 and NSD beside MONAI and DeepMind on a 160^3 pair; 32^3 "
            "with --quick). Default: all; with --losses: losses and catalogue.",
        ),
    ] = None,
    isolate: Annotated[
        str,
        typer.Option(
            "--isolate",
            help="case: a fresh process per case (default); library: one per workload and library, the cases of one "
            "library one after the other in it (for a GPU machine, where a process takes seconds to start).",
        ),
    ] = "case",
) -> None:
    """Time forward + backward and measure peak extra memory of each loss, each case in a fresh process."""
    from rich.console import Console

    from seglosses.cli.benchmark import run_and_report

    console = Console(stderr=True)
    try:
        _, paths, _ = run_and_report(
            workloads=workloads,
            losses=losses,
            peers=peers,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            device=device,
            out=out,
            quick=quick,
            timeout=timeout,
            rounds=rounds,
            min_time=min_time,
            busy=busy,
            only=only,
            isolate=isolate,  # type: ignore[arg-type]  # checked by run_and_report
            log=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )
    except ValueError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err
    console.print(f"files: {', '.join(str(p) for p in paths.values())}", highlight=False)
