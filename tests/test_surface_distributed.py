"""``SegmentationMetrics(surface=..., sync=True)`` under ``torch.distributed``: 2 gloo processes against one process.

The two ranks hold an uneven split (2 and 3 images) of one deterministic batch and feed it in several updates; with
``sync=True`` every rank's ``compute()`` must equal one process's ``compute()`` on the whole batch (the per-image
surface values gathered in rank order, so the means are the same numbers), with and without ``per_image``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglosses.metrics import SegmentationMetrics

C = 3
SPLIT = (2, 3)
OPTIONS = (
    {"per_image": False, "average": "none"},
    {"per_image": True, "average": "none"},
    {"per_image": True, "average": "macro"},
)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    scores = torch.rand((sum(SPLIT), C, 6, 5, 4), generator=g, dtype=torch.float64)
    target = torch.randint(0, C, (sum(SPLIT), 6, 5, 4), generator=g)
    target[1][target[1] == 2] = 1  # a missing class: inf values travel through the gather
    target[4, :2] = 255
    return scores, target


def _compute(lo: int, hi: int, sync: bool) -> dict[str, torch.Tensor]:
    scores, target = _data()
    out: dict[str, torch.Tensor] = {}
    for i, opts in enumerate(OPTIONS):
        m = SegmentationMetrics(
            mode="multiclass",
            num_classes=C,
            ignore_index=255,
            metrics=("dice",),
            surface=("hd95", "nsd", "masd"),
            spacing=(2.0, 0.8, 0.8),
            tolerance=1.0,
            sync=sync,
            **opts,  # type: ignore[arg-type]
        )
        for j in range(lo, hi):  # one image per update
            m.update(scores[j : j + 1], target[j : j + 1])
        out.update({f"{k}-{i}": v for k, v in m.compute().items()})
    return out


def _worker(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        lo, hi = sum(SPLIT[:rank]), sum(SPLIT[: rank + 1])
        torch.save(_compute(lo, hi, sync=True), Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("surface_dist")
    mp.spawn(_worker, args=(len(SPLIT), str(root)), nprocs=len(SPLIT), join=True)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(len(SPLIT))]


def test_sync_gathers_surface_values(runs: list[dict[str, Any]]) -> None:
    expected = _compute(0, sum(SPLIT), sync=False)
    assert expected["hd95-1"].shape == (sum(SPLIT), C)  # per image, per class (class 0 kept: include_background)
    assert expected["hd95-0"].isinf().any()
    for got in runs:
        assert list(got) == list(expected)
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)


def test_without_sync_each_rank_keeps_its_own_images() -> None:
    # no process group: sync=True computes the local numbers
    local = _compute(0, 2, sync=True)
    assert local["hd95-1"].shape == (2, C)
    torch.testing.assert_close(local["nsd-1"], _compute(0, 2, sync=False)["nsd-1"], rtol=0, atol=0, equal_nan=True)
