"""Does ``seglosses compare``'s data loading keep the device busy? Time per training step, loader vs cached batch.

The measurement of issue 18's target "time per step with ``--num-workers 4`` within 1.2x of the same step on a
cached in-memory batch". It writes a folder of PNG pairs (random images with a rectangle mask; nothing downloaded),
loads it as ``compare`` does (``load_data``: :class:`~seglosses.cli.data.FolderPairs`, read lazily), and times the
training step of ``compare``'s loop (:func:`seglosses.cli.train.train_run`: forward under autocast, loss read back,
backward, gradient clipping at 5, AdamW, the warm-up/cosine schedule) in two ways, with the same model, loss,
optimiser and mixed precision:

(a) ``loader``: every step's batch comes through ``compare``'s DataLoader (``_loader`` over a
    :class:`~seglosses.cli.data.CropDataset` with the per-run crop sampler ``_SpecBatches``; ``--workers`` worker
    processes, pinned memory on CUDA) and is copied to the device (``non_blocking``);
(b) ``cached``: the first batch of the same sequence (read in this process), copied to the device once and re-used
    for every step.

Each is timed over ``--steps`` steps after ``--warmup`` untimed ones (which also start the loader's workers), from
the first timed step to a device synchronisation after the last. ``ratio = (a) / (b)``; the loading keeps up when
``ratio <= 1.2``. Also reported: the share of (a)'s time spent waiting for the next batch, measured as ``compare``
records it (:class:`seglosses.cli.train.StepTimes`).

Run (on a GPU; the default settings are ``compare``'s for a folder: batch 8, crop 96, the built-in U-Net)::

    PYTHONPATH=src python benchmarks/loader_keeps_up.py --device cuda --workers 4 --out /tmp/loader.json
    PYTHONPATH=src python benchmarks/loader_keeps_up.py --device cuda --workers 0,2,4,8 --out /tmp/loader-sweep.json
    PYTHONPATH=src python benchmarks/loader_keeps_up.py --device cuda --amp bf16 --workers 4 --crop 256 \
        --batch-size 16 --out /tmp/loader-256.json

A quick CPU smoke check (tens of seconds)::

    python benchmarks/loader_keeps_up.py --pairs 8 --size 128 --steps 4 --warmup 1 --workers 2 --batch-size 2 \
        --crop 64 --out /tmp/loader.json

``--workers 0,2,4,8`` measures each count in turn (a fresh loader and model each time, (b) re-measured beside it).
It prints one line per count and writes ``--out`` (a JSON list, one result per count) and the same path with ``.md``
(a markdown table, one row per count) for the README.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seglosses.cli.data import CropDataset, SegData, load_data
from seglosses.cli.train import (
    RunSetup,
    StepTimes,
    TrainConfig,
    _autocast,
    _loader,
    _lr_lambda,
    _SpecBatches,
    build_loss,
    check_amp,
    new_model,
    optimiser_step,
    target_for_loss,
)

KEEPS_UP = 1.2  # the bound on (a) / (b)
MARKDOWN_HEADER = (
    "| device | torch | amp | workers | batch | crop | loader ms/step | cached ms/step | ratio | data wait "
    "| item read ms |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def write_pairs(root: Path, *, pairs: int = 64, size: int = 512, seed: int = 0) -> Path:
    """Write ``pairs`` PNG image/mask pairs of ``size`` x ``size`` under ``root/images`` and ``root/masks``.

    Each mask (0/1, uint8) holds one rectangle at a random place; each image is ``100 * mask`` plus uniform noise in
    0..79 (uint8), written with PIL as the tests write theirs. Returns ``root``.
    """
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(pairs):
        mask = np.zeros((size, size), np.uint8)
        h, w = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        y, x = (int(v) for v in rng.integers(0, size - max(h, w), 2))
        mask[y : y + h, x : x + w] = 1
        image = (mask * 100 + rng.integers(0, 80, (size, size))).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"p{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i:04d}.png")
    return root


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class _Trainer:
    """One fresh model, loss, AdamW, schedule and (fp16) scaler; :meth:`step` is ``compare``'s training step."""

    def __init__(self, data: SegData, setup: RunSetup, config: TrainConfig, loss: str, device: str, total: int):
        self.data, self.device, self.amp = data, device, setup.amp
        self.model: nn.Module = new_model(data, setup, config, 0).to(device)
        self.model.train()
        self.loss = build_loss(loss, data.mode, {}, {}).to(device)
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, _lr_lambda(total))
        self.scaler = torch.amp.GradScaler("cuda") if setup.amp == "fp16" else None

    def step(self, images: Tensor, masks: Tensor) -> float:
        """One optimiser step on a batch already on the device; returns the loss (read back, as ``compare`` does)."""
        with _autocast(self.device, self.amp):
            loss = self.loss(self.model(images), target_for_loss(masks, self.data.mode))
        value = float(loss.detach())
        optimiser_step(loss, self.model, self.optimiser, self.scheduler, self.scaler)
        return value


def _timed(steps: int, warmup: int, device: str, one: Callable[[bool], None]) -> float:
    """Seconds per step of ``one(timed)`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        one(False)
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        one(True)
    _sync(device)
    return (time.perf_counter() - started) / steps


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def measure(
    folder: str | Path,
    *,
    device: str = "cpu",
    amp: str | None = None,
    steps: int = 30,
    warmup: int = 5,
    workers: int = 4,
    batch_size: int = 8,
    crop: Sequence[int] | None = None,
    loss: str = "dice",
    base: int = 8,
    depth: int = 3,
    model: Callable[..., nn.Module] | None = None,
) -> dict[str, Any]:
    """Seconds per training step through ``compare``'s loader (a) and on one cached device batch (b).

    Args:
        folder: a data folder (``images/`` and ``masks/`` paired by name), read as ``compare --data FOLDER`` does.
        device: ``"cpu"`` or ``"cuda"`` (pinned memory and ``non_blocking`` copies on CUDA, as in ``compare``).
        amp: ``None``, ``"bf16"`` or ``"fp16"`` (CUDA only).
        steps / warmup: timed and untimed steps of each of (a) and (b).
        workers: DataLoader worker processes for (a) (0: read in this process).
        batch_size: crops per step.
        crop: the training crop (default: the folder's, as ``compare`` picks it: at most 96 per axis).
        loss: the registry loss of the step.
        base / depth: the built-in U-Net's width and poolings (``compare``'s defaults 8 and 3).
        model: a model factory instead of the built-in U-Net (as ``compare(model=...)``).

    Returns:
        A dict: ``loader_s_per_step``, ``cached_s_per_step``, ``ratio`` (a / b), ``keeps_up`` (ratio <= 1.2),
        ``data_wait_share`` (the share of (a)'s timed steps spent waiting for the next batch), ``item_read_s`` (the
        seconds to read, normalise and crop one training item in this process, from the first batch: a cold read)
        and ``loader_floor_s_per_step`` (``batch_size * item_read_s / max(1, workers)``: the fastest the workers
        could deliver a batch, if they scaled perfectly), and the settings:
        ``device``, ``torch``, ``amp``, ``workers``, ``batch_size``, ``crop``, ``steps``, ``warmup``, ``pairs``,
        ``image_shape``, ``loss``, ``model``.

    """
    if steps < 1 or warmup < 1:
        raise ValueError(f"measure: `steps` and `warmup` must be >= 1; got {steps} and {warmup}")
    check_amp(amp, device, "measure")
    data = load_data(str(folder))
    if crop is not None:
        if len(crop) != data.ndim or min(crop) < 1:
            raise ValueError(f"measure: `crop` must hold {data.ndim} positive sizes; got {tuple(crop)}")
        data = dataclasses.replace(data, crop=tuple(int(c) for c in crop))
    config = TrainConfig(batch_size=batch_size, base=base, depth=depth)
    setup = RunSetup(model=model, amp=amp, num_workers=workers)
    total = warmup + steps

    def stream(processes: int) -> Iterator[Any]:
        batches = _SpecBatches(data, batch_size, total, 1, None)
        return iter(_loader(CropDataset(data.train, data.crop), device, processes, 0, batch_sampler=batches))

    # (b) the first batch of the same sequence, on the device, re-used; its read, timed in this process, tells what
    # one worker needs per training item (reading, normalising and cropping it): the loader's floor per step is
    # batch_size x that / workers
    began = time.perf_counter()
    images, masks = next(stream(0))
    item_s = (time.perf_counter() - began) / batch_size
    images, masks = images.to(device), masks.to(device)
    on_cache = _Trainer(data, setup, config, loss, device, total)

    def from_cache(timed: bool) -> None:
        on_cache.step(images, masks)

    cached = _timed(steps, warmup, device, from_cache)

    # (a) through the loader, timed as compare times its steps
    on_loader = _Trainer(data, setup, config, loss, device, total)  # the same initial weights (seed 0)
    batches = stream(workers)
    times = StepTimes()

    def from_loader(timed: bool) -> None:
        began = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        waited = time.perf_counter() - began
        on_loader.step(x, y)
        if timed:
            times.add(waited, time.perf_counter() - began)

    loaded = _timed(steps, warmup, device, from_loader)  # the workers stop when `batches` goes at the return
    shape = data.train_shapes[0] if data.train_shapes else ()
    return {
        "device": _device_name(device),
        "torch": torch.__version__,
        "amp": amp,
        "workers": workers,
        "batch_size": batch_size,
        "crop": list(data.crop or ()),
        "steps": steps,
        "warmup": warmup,
        "pairs": data.num_train + data.num_val,
        "train_pairs": data.num_train,
        "image_shape": list(shape),
        "loss": loss,
        "model": "built-in U-Net" if model is None else getattr(model, "__qualname__", repr(model)),
        "base": base if model is None else None,
        "depth": depth if model is None else None,
        "loader_s_per_step": loaded,
        "cached_s_per_step": cached,
        "ratio": loaded / cached if cached > 0 else math.nan,
        "keeps_up": bool(loaded <= KEEPS_UP * cached),
        "data_wait_share": times.share,
        "item_read_s": item_s,
        "loader_floor_s_per_step": batch_size * item_s / max(1, workers),
    }


def markdown_line(result: dict[str, Any]) -> str:
    """One markdown table row (under :data:`MARKDOWN_HEADER`) of a :func:`measure` result."""
    crop = "x".join(str(c) for c in result["crop"])
    return (
        f"| {result['device']} | {result['torch']} | {result['amp'] or 'fp32'} | {result['workers']} | "
        f"{result['batch_size']} | {crop} | {1e3 * result['loader_s_per_step']:.1f} | "
        f"{1e3 * result['cached_s_per_step']:.1f} | {result['ratio']:.2f} | {result['data_wait_share']:.0%} | "
        f"{1e3 * result['item_read_s']:.1f} |"
    )


def _describe(result: dict[str, Any]) -> str:
    verdict = "keeps up" if result["keeps_up"] else f"does NOT keep up (bound {KEEPS_UP}x)"
    return (
        f"{result['device']}, torch {result['torch']}, amp {result['amp'] or 'fp32'}, {result['workers']} workers, "
        f"batch {result['batch_size']}, crop {result['crop']}: loader {1e3 * result['loader_s_per_step']:.1f} "
        f"ms/step, cached batch {1e3 * result['cached_s_per_step']:.1f} ms/step, ratio {result['ratio']:.2f} "
        f"({verdict}); waiting for data {result['data_wait_share']:.0%} of the loader steps' time; one item read "
        f"{1e3 * result['item_read_s']:.1f} ms (workers' floor {1e3 * result['loader_floor_s_per_step']:.1f} ms/step)"
    )


def _worker_counts(text: str) -> list[int]:
    counts = [int(v) for v in text.split(",") if v.strip()]
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"worker counts >= 0, comma-separated (e.g. 4 or 0,2,4,8); got {text!r}")
    return counts


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The command line: write (or take) a folder, :func:`measure` for each worker count, print and write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="mixed precision (default: float32)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each way (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument(
        "--workers", type=_worker_counts, default=[4], help="DataLoader workers of (a), or a list: 0,2,4,8 (default 4)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step (default 8, as compare)")
    parser.add_argument("--crop", type=int, default=None, help="square crop side (default: compare's, 96)")
    parser.add_argument("--pairs", type=int, default=64, help="PNG pairs to write (default 64)")
    parser.add_argument("--size", type=int, default=512, help="their side in pixels (default 512)")
    parser.add_argument("--folder", type=Path, default=None, help="an existing data folder instead of writing one")
    parser.add_argument("--loss", default="dice", help="the loss of the step (default dice)")
    parser.add_argument("--model", default=None, help="a model factory package.module:function (default U-Net)")
    parser.add_argument("--base", type=int, default=8, help="built-in U-Net width (default 8)")
    parser.add_argument("--depth", type=int, default=3, help="built-in U-Net poolings (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads of this process")
    parser.add_argument("--out", type=Path, default=Path("loader_keeps_up.json"), help="JSON results (and .md)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    if args.amp == "fp16" and not args.device.startswith("cuda"):
        parser.error("--amp fp16 needs --device cuda (use bf16 on the CPU)")
    if args.steps < 1 or args.warmup < 1 or args.batch_size < 1 or args.pairs < 2:
        parser.error("--steps, --warmup and --batch-size must be >= 1 and --pairs >= 2")
    factory = None
    if args.model is not None:
        from seglosses.cli.model import load_factory

        factory = load_factory(args.model)
    crop = None if args.crop is None else (args.crop, args.crop)
    command = " ".join(["python", "benchmarks/loader_keeps_up.py", *(sys.argv[1:] if argv is None else argv)])
    results = []
    with contextlib.ExitStack() as stack:
        folder = args.folder
        if folder is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loader_keeps_up_")))
            started = time.perf_counter()
            folder = write_pairs(tmp / "data", pairs=args.pairs, size=args.size)
            print(f"wrote {args.pairs} PNG pairs of {args.size}x{args.size} in {time.perf_counter() - started:.1f} s")
        for workers in args.workers:
            result = measure(
                folder,
                device=args.device,
                amp=args.amp,
                steps=args.steps,
                warmup=args.warmup,
                workers=workers,
                batch_size=args.batch_size,
                crop=crop,
                loss=args.loss,
                base=args.base,
                depth=args.depth,
                model=factory,
            )
            result["command"] = command
            results.append(result)
            print(_describe(result), flush=True)
            md = _write(args.out, results)  # after every count: a run stopped early keeps what it measured
    print(f"wrote {args.out} and {md}")
    return results


def _write(out: Path, results: list[dict[str, Any]]) -> Path:
    """Write ``out`` (JSON) and its ``.md`` table; return the latter."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text("\n".join([MARKDOWN_HEADER, *map(markdown_line, results)]) + "\n", encoding="utf-8")
    return md


if __name__ == "__main__":
    main()
