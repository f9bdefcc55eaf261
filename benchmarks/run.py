"""Regenerate benchmarks/RESULTS.md (or RESULTS_cuda.md with --device cuda): one command, `make bench`.

Runs every workload of issue 5 with our losses, the references and every installed peer (MONAI,
segmentation_models_pytorch's losses, kornia), each case in a fresh subprocess, and writes the machine
description and the full table. The raw rows go to benchmarks/results-<device>/results.{csv,json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from seglosses.cli.benchmark import Result, derive, resolve_device, run_and_report, to_markdown

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per case (issue 5 uses 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="run the whole list this many times (median)")
    parser.add_argument(
        "--min-time", type=float, default=None, help="seconds timed per case, half as much warm-up (default 0.5)"
    )
    parser.add_argument("--workloads", default=None, help="comma-separated (default: the four of the issue)")
    parser.add_argument("--losses", default=None, help="comma-separated (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny workloads (smoke test of this script)")
    parser.add_argument("--busy", type=int, default=0, help="processes kept spinning for the whole run (default 0)")
    parser.add_argument("--only", default=None, help="comma-separated groups: losses, catalogue, surface (default all)")
    parser.add_argument("--md", type=Path, default=None, help="output (default RESULTS.md / RESULTS_cuda.md)")
    parser.add_argument(
        "--raw", type=Path, default=None, help="folder of the raw rows (default benchmarks/results-<device>)"
    )
    parser.add_argument(
        "--from-json", type=Path, nargs="+", default=None, help="re-render (and merge) saved results.json files"
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        return _rerender(args.from_json, args.md or HERE / "RESULTS.md", command)
    device = resolve_device(args.device)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    md = args.md or HERE / ("RESULTS_cuda.md" if kind == "cuda" else "RESULTS.md")
    results, _, meta = run_and_report(
        workloads=args.workloads,
        losses=args.losses,
        repeats=args.repeats,
        warmup=args.warmup,
        rounds=args.rounds,
        min_time=args.min_time,
        threads=args.threads,
        device=device,
        out=args.raw or HERE / f"results-{kind}",
        quick=args.quick,
        busy=args.busy,
        only=args.only,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    md.write_text(to_markdown(results, meta, command=command.strip()))
    print(f"wrote {md}", file=sys.stderr)
    return 0


def _rerender(paths: list[Path], md: Path, command: str) -> int:
    """Rebuild the Markdown from saved results.json files (the meta of the first; rows of all, in order)."""
    loaded = [json.loads(p.read_text()) for p in paths]
    names = {f.name for f in fields(Result)}
    results = [
        Result(**{k: (math.nan if v is None else v) for k, v in row.items() if k in names})
        for data in loaded
        for row in data["results"]
    ]
    derive(results)
    md.write_text(to_markdown(results, loaded[0]["meta"], command=command.strip()))
    print(f"wrote {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
