r"""Benchmark rows of the surface metrics for ``seglosses bench``: ours against MONAI and DeepMind's surface-distance.

Contract (for :mod:`seglosses.cli.benchmark`): :func:`surface_rows` returns a list of dicts whose keys are the fields
of ``seglosses.cli.benchmark.Result`` (``Result(**row)`` rebuilds the row), one per case, in :data:`CASES` order:

- ``workload`` ``"surface 3D"``; ``shape`` the mask shape and spacing; ``case`` ``"<library>:<quantity>"``;
  ``library`` ``"seglosses"``, ``"monai"`` or ``"deepmind"``; ``quantity`` ``"hd95_voxel"`` (HD95, voxel
  boundaries, linear percentile: MONAI's definition), ``"hd95"`` (canonical surfel HD95) or ``"nsd"`` (canonical
  surface Dice at 1.0 physical unit); ``call`` the call timed; ``note``; ``status`` ``"ok"`` or ``"unavailable"``
  (a peer that is not installed, with ``error``);
- ``ms``: the median over ``repeats`` calls, ``ms_all`` every call; ``value``: the metric's value (the mapped peers
  give the same number, to about 1e-7 for MONAI's float32 distances); ``peak_mib``, ``x_ce``, ``x_logits`` and
  ``x_leanest_peer`` NaN (not measured: there is no step and no logits); ``method`` says how it was timed;
- ``peer_speedup``: the peer's median over ours for the same quantity (> 1: ours faster), filled in here for every
  ``seglosses`` row that has a peer (``benchmark.derive`` recomputes it where the peer is in its
  ``PEER_LIBRARIES``; DeepMind's rows are not, so their ratio is the one set here).

Unlike the loss rows (one subprocess per case), every case here runs in this process on the same pair of masks, and
the cases are interleaved (ours, theirs, ours, theirs, ...): on a shared machine a slow spell then lands on both
alike. One warm-up call of each case comes first (it builds our neighbour-code tables once and imports the peers).
The pair: a 160^3 ellipsoid and a smoothly perturbed, shifted copy, spacing (2.0, 0.8, 0.8), as bool arrays for the
peers and ``(1, 1, *S)`` bool tensors for us (MONAI gets its float32 ``(1, 1, *S)`` tensors, prepared once).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["CASES", "SPACING", "make_pair", "surface_rows"]

SPACING: tuple[float, float, float] = (2.0, 0.8, 0.8)
TOLERANCE = 1.0
WORKLOAD = "surface 3D"


@dataclass(frozen=True)
class _Case:
    library: str
    quantity: str
    call: str
    note: str


CASES: tuple[_Case, ...] = (
    _Case("seglosses", "hd95_voxel", "hausdorff(percentile=95, boundary='voxel', quantile='linear')", "CPU, bbox"),
    _Case("monai", "hd95_voxel", "monai.metrics.compute_hausdorff_distance(percentile=95)", "KD-tree on CPU"),
    _Case("seglosses", "hd95", "hausdorff(percentile=95)", "canonical surfel HD95"),
    _Case("deepmind", "hd95", "compute_robust_hausdorff(compute_surface_distances(...), 95)", "EDT of the bbox"),
    _Case("seglosses", "nsd", f"nsd(tolerance={TOLERANCE})", "canonical surfel NSD"),
    _Case("deepmind", "nsd", f"compute_surface_dice_at_tolerance(compute_surface_distances(...), {TOLERANCE})", ""),
)


def make_pair(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, gt)`` bool ``(size,) * 3``: an ellipsoid and a smoothly perturbed, shifted one (deterministic)."""
    c = (size - 1) / 2
    z, y, x = np.ogrid[:size, :size, :size]
    zn, yn, xn = (z - c) / size, (y - c) / size, (x - c) / size
    gt = (zn / 0.2) ** 2 + (yn / 0.32) ** 2 + (xn / 0.3) ** 2 <= 1
    wobble = 0.08 * np.sin(9 * yn + 1.0) * np.cos(7 * xn) + 0.05 * np.sin(11 * zn)
    pred = ((zn - 0.01) / 0.21) ** 2 + ((yn + 0.01) / 0.31) ** 2 + (xn / 0.3) ** 2 <= 1 + wobble
    return pred, gt


def _callables(pred: np.ndarray, gt: np.ndarray) -> dict[tuple[str, str], Callable[[], float] | Exception]:
    """Each case's zero-argument call returning its value, or the import error of a missing peer."""
    from seglosses.metrics import hausdorff, nsd

    tp, tg = torch.from_numpy(pred)[None, None], torch.from_numpy(gt)[None, None]
    out: dict[tuple[str, str], Callable[[], float] | Exception] = {
        ("seglosses", "hd95_voxel"): lambda: float(
            hausdorff(tp, tg, mode="binary", percentile=95, spacing=SPACING, boundary="voxel", quantile="linear")
        ),
        ("seglosses", "hd95"): lambda: float(hausdorff(tp, tg, mode="binary", percentile=95, spacing=SPACING)),
        ("seglosses", "nsd"): lambda: float(nsd(tp, tg, mode="binary", tolerance=TOLERANCE, spacing=SPACING)),
    }
    try:
        from monai.metrics.hausdorff_distance import compute_hausdorff_distance

        fp, fg = tp.float(), tg.float()

        def monai_hd95() -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(compute_hausdorff_distance(fp, fg, include_background=True, percentile=95,
                                                        spacing=list(SPACING)))  # fmt: skip

        out[("monai", "hd95_voxel")] = monai_hd95
    except ImportError as err:
        out[("monai", "hd95_voxel")] = err
    try:
        import surface_distance as sd

        out[("deepmind", "hd95")] = lambda: float(
            sd.compute_robust_hausdorff(sd.compute_surface_distances(gt, pred, SPACING), 95)
        )
        out[("deepmind", "nsd")] = lambda: float(
            sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(gt, pred, SPACING), TOLERANCE)
        )
    except ImportError as err:
        out[("deepmind", "hd95")] = err
        out[("deepmind", "nsd")] = err
    return out


def surface_rows(*, repeats: int = 7, warmup: int = 1, threads: int = 1, size: int = 160) -> list[dict[str, Any]]:
    """Time every case of :data:`CASES` on :func:`make_pair` (``size``) in this process, interleaved; see the module.

    Args:
        repeats: timed calls per case (the median is reported), >= 1. Default 7.
        warmup: untimed calls per case first, >= 1. Default 1.
        threads: ``torch.set_num_threads`` for the duration (restored after). Default 1.
        size: the masks' side (160 for the published rows; smaller for a quick run).

    Returns:
        One dict per case with the keys of ``seglosses.cli.benchmark.Result``.

    Raises:
        ValueError: ``repeats``, ``warmup``, ``threads`` below 1 or ``size`` below 8.

    """
    if repeats < 1 or warmup < 1 or threads < 1 or size < 8:
        raise ValueError(
            f"repeats, warmup and threads must be >= 1 and size >= 8; got {repeats}, {warmup}, {threads}, {size}"
        )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pred, gt = make_pair(size)
        calls = _callables(pred, gt)
        keys = [(c.library, c.quantity) for c in CASES]
        values: dict[tuple[str, str], float] = {}
        times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
        runnable = [k for k in keys if not isinstance(calls[k], Exception)]
        for _ in range(warmup):
            for k in runnable:
                values[k] = calls[k]()  # type: ignore[operator]
        for _ in range(repeats):
            for k in runnable:
                t0 = time.perf_counter()
                calls[k]()  # type: ignore[operator]
                times[k].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(previous)
    shape = f"{(size,) * 3} spacing {SPACING}"
    rows: list[dict[str, Any]] = []
    for case in CASES:
        k = (case.library, case.quantity)
        err = calls[k]
        row: dict[str, Any] = {
            "workload": WORKLOAD,
            "shape": shape,
            "case": f"{case.library}:{case.quantity}",
            "library": case.library,
            "quantity": case.quantity,
            "call": case.call,
            "note": case.note,
            "status": "ok",
            "error": "",
            "ms": math.nan,
            "ms_all": [],
            "peak_mib": math.nan,
            "value": math.nan,
            "method": f"in-process, interleaved with the peers, median of {repeats} after {warmup} warm-up",
            "x_ce": math.nan,
            "x_logits": math.nan,
            "peer_speedup": math.nan,
            "x_leanest_peer": math.nan,
        }
        if isinstance(err, Exception):
            row.update(status="unavailable", error=f"{type(err).__name__}: {err}")
        else:
            row.update(ms=statistics.median(times[k]), ms_all=times[k], value=values[k])
        rows.append(row)
    for row in rows:
        peers = [r for r in rows if r["quantity"] == row["quantity"] and r["library"] != "seglosses"]
        peers = [r for r in peers if r["status"] == "ok"]
        if row["library"] == "seglosses" and row["status"] == "ok" and peers:
            row["peer_speedup"] = min(r["ms"] for r in peers) / row["ms"]
    return rows


if __name__ == "__main__":  # pragma: no cover - a manual run: python -m seglosses.cli.bench_surface
    for r in surface_rows():
        print(f"{r['case']:22s} {r['ms']:9.1f} ms  value {r['value']:.6f}  speed-up {r['peer_speedup']:.2f}")
