"""``sync_stats`` under ``torch.distributed`` (SPEC section 3): K gloo processes on CPU against one process.

K processes are spawned once per group (K = 2 with the uneven split (2, 3); K = 3 with (1, 1, 3), rank 1's pixels all
ignored where the target form allows it); each runs every case on its slice of one deterministic float64 batch and
saves its results, which are compared here with a single-process run on the whole batch:

- the loss value on every rank equals the single-process loss (rel 1e-10);
- gradient convention (SPEC section 3, as ``torch.distributed.nn.functional.all_reduce``): rank k's gradient w.r.t.
  its own slice is K times the single-process gradient of those pixels, so that DDP's mean over the K ranks is
  exactly the single-process gradient; a real DDP step of a tiny conv net checks the parameter gradients directly.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import seglosses
from seglosses import functional as F
from seglosses.metrics import SegmentationMetrics

IGNORE = 255
C = 3
N = 5
SPATIAL = (4, 3)
GROUPS = ((2, (2, 3), None), (3, (1, 1, 3), 1))  # (K, images per rank, rank whose pixels are all ignored)

# data forms: multiclass logits + index target (the fused path), multiclass probabilities + index target,
# multiclass logits + soft target, binary logits + 0/1/255 mask, multilabel logits + 0/1/255 masks
FORMS = ("mc_index", "mc_prob", "mc_soft", "binary", "multilabel")
REGION = ("dice", "jaccard", "tversky", "focal_tversky", "generalized_dice", "dice_ce", "combo", "hybrid_focal")
PIXEL = ("cross_entropy", "focal")
UNIFIED = (
    "unified_focal",
    "asymmetric_focal",
    "symmetric_focal",
    "asymmetric_focal_tversky",
    "symmetric_focal_tversky",
)


def _cases() -> tuple[tuple[str, str, str, dict[str, Any]], ...]:
    """``(case id, loss name, data form, extra kwargs)``."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    for form in FORMS:
        for name in REGION:
            for per_image in (False, True):
                out.append((f"{name}-{form}-per_image={per_image}", name, form, {"per_image": per_image}))
        for name in PIXEL:
            out.append((f"{name}-{form}", name, form, {}))
        if form != "multilabel":
            for name in UNIFIED:
                out.append((f"{name}-{form}", name, form, {}))
    extras: list[tuple[str, str, dict[str, Any]]] = [
        ("dice", "mc_index", {"squared": True}),
        ("dice", "mc_prob", {"squared": True, "per_image": True, "reduction": "sum"}),
        ("dice", "mc_index", {"class_weights": [1.0, 2.0, 3.0], "per_image": True}),
        ("tversky", "multilabel", {"class_weights": [1.0, 2.0, 3.0], "reduction": "sum"}),
        ("generalized_dice", "mc_index", {"per_image": True, "reduction": "sum"}),
        ("cross_entropy", "mc_index", {"class_weights": [1.0, 2.0, 0.5]}),
        ("cross_entropy", "mc_prob", {"class_weights": [1.0, 2.0, 0.5]}),
        ("cross_entropy", "mc_index", {"label_smoothing": 0.1}),
        ("cross_entropy", "multilabel", {"class_weights": [1.0, 2.0, 0.5], "reduction": "sum"}),
        ("focal", "mc_index", {"alpha": [0.2, 0.3, 0.5], "reduction": "sum"}),
        ("dice_ce", "mc_index", {"class_weights": [1.0, 2.0, 0.5], "per_image": True}),
        ("unified_focal", "mc_index", {"asymmetric": False, "reduction": "sum"}),
    ]
    for i, (name, form, kwargs) in enumerate(extras):
        out.append((f"{name}-{form}-extra{i}", name, form, kwargs))
    return tuple(out)


CASES = _cases()
CASE_IDS = tuple(c[0] for c in CASES)


def _batch(form: str, seed: int, ignored: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The whole batch ``(input, target, base kwargs)`` of a form, float64, the same in every process."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((N, C, *SPATIAL), generator=g, dtype=torch.float64) * 2
    holes = torch.rand((N, *SPATIAL), generator=g) < 0.25
    holes[list(ignored)] = True
    if form in ("mc_index", "mc_prob"):
        t = torch.randint(0, C, (N, *SPATIAL), generator=g)
        t[holes] = IGNORE
        kw: dict[str, Any] = {"mode": "multiclass", "ignore_index": IGNORE}
        if form == "mc_index":
            return logits, t, kw
        return torch.softmax(logits, 1), t, {**kw, "from_logits": False}
    if form == "mc_soft":
        return (
            logits,
            torch.softmax(torch.randn(logits.shape, generator=g, dtype=torch.float64), 1),
            {"mode": "multiclass"},
        )
    channels = 1 if form == "binary" else C
    t = (torch.rand((N, channels, *SPATIAL), generator=g) < 0.4).double()
    t[holes.unsqueeze(1).expand_as(t)] = float(IGNORE)
    mode = "binary" if form == "binary" else "multilabel"
    return logits[:, :channels].contiguous(), t, {"mode": mode, "ignore_index": IGNORE}


def _loss_fn(name: str) -> Callable[..., torch.Tensor]:
    fn: Callable[..., torch.Tensor] = getattr(F, f"{name}_loss")
    return fn


def _run_case(index: int, ignored: tuple[int, ...], lo: int, hi: int, sync: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and input gradient of case ``index`` on images ``lo:hi`` (the whole batch for the reference)."""
    _, name, form, extra = CASES[index]
    x, t, kw = _batch(form, 1000 + index, ignored)
    xs = x[lo:hi].clone().requires_grad_(True)
    sync_kw = {"sync_stats": True} if sync else {}
    value = _loss_fn(name)(xs, t[lo:hi], **kw, **extra, **sync_kw)
    value.backward()
    assert xs.grad is not None
    return value.detach(), xs.grad


def _ignored(form: str, rank_all_ignored: int | None, split: tuple[int, ...]) -> tuple[int, ...]:
    """Images whose pixels are all ignored: those of ``rank_all_ignored`` (forms with an ignore_index only)."""
    if rank_all_ignored is None or form == "mc_soft":
        return ()
    lo = sum(split[:rank_all_ignored])
    return tuple(range(lo, lo + split[rank_all_ignored]))


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, C, 1)).double()


def _ddp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    images = torch.randn((N, 2, *SPATIAL), generator=g, dtype=torch.float64)
    t = torch.randint(0, C, (N, *SPATIAL), generator=g)
    t[torch.rand((N, *SPATIAL), generator=g) < 0.2] = IGNORE
    return images, t


def _ddp_loss(out: torch.Tensor, t: torch.Tensor, sync: bool) -> torch.Tensor:
    kw: dict[str, Any] = {"mode": "multiclass", "ignore_index": IGNORE, "sync_stats": sync}
    return F.dice_ce_loss(out, t, per_image=True, **kw) + F.tversky_loss(out, t, **kw)


def _step(model: torch.nn.Module, images: torch.Tensor, t: torch.Tensor, sync: bool) -> dict[str, torch.Tensor]:
    """One SGD step: ``{"loss", "grad<i>", "param<i>"}``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    loss = _ddp_loss(model(images), t, sync)
    loss.backward()
    out = {"loss": loss.detach()}
    for i, p in enumerate(model.parameters()):
        assert p.grad is not None
        out[f"grad{i}"] = p.grad.clone()
    opt.step()
    for i, p in enumerate(model.parameters()):
        out[f"param{i}"] = p.detach().clone()
    return out


def _metrics(lo: int, hi: int, sync: bool) -> dict[str, torch.Tensor]:
    """Metrics of images ``lo:hi`` of one batch fed in two parts, without and with ``per_image``."""
    out: dict[str, torch.Tensor] = {}
    _, t = _ddp_data()
    scores = torch.randn((N, C, *SPATIAL), generator=torch.Generator().manual_seed(8))[lo:hi]
    t = t[lo:hi]
    for per_image in (False, True):
        m = SegmentationMetrics(mode="multiclass", num_classes=C, ignore_index=IGNORE, per_image=per_image, sync=sync)
        half = max(1, scores.shape[0] // 2)
        m.update(scores[:half], t[:half])
        if scores.shape[0] > half:
            m.update(scores[half:], t[half:])
        out.update({f"{k}-per_image={per_image}": v for k, v in m.compute().items()})
    return out


def _worker(rank: int, world: int, split: tuple[int, ...], all_ignored: int | None, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        lo, hi = sum(split[:rank]), sum(split[: rank + 1])
        results: dict[str, Any] = {}
        for i, (case_id, _, form, _) in enumerate(CASES):
            results[case_id] = _run_case(i, _ignored(form, all_ignored, split), lo, hi, sync=True)
        images, t = _ddp_data()
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        results["ddp"] = _step(ddp, images[lo:hi], t[lo:hi], sync=True)
        results["metrics"] = _metrics(lo, hi, sync=True)
        torch.save(results, Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[dict[str, Any]]]:
    """Per group K: the saved results of each rank (one spawn per group, every case inside it)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for world, split, all_ignored in GROUPS:
        root = tmp_path_factory.mktemp(f"dist{world}")
        mp.spawn(_worker, args=(world, split, all_ignored, str(root)), nprocs=world, join=True)
        out[world] = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(world)]
    return out


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-13, equal_nan=True)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_sync_stats_equals_single_process(runs: dict[int, list[dict[str, Any]]], case_id: str) -> None:
    index = CASE_IDS.index(case_id)
    form = CASES[index][2]
    for world, split, all_ignored in GROUPS:
        ignored = _ignored(form, all_ignored, split)
        value, grad = _run_case(index, ignored, 0, N, sync=False)
        for rank in range(world):
            lo, hi = sum(split[:rank]), sum(split[: rank + 1])
            got_value, got_grad = runs[world][rank][case_id]
            _close(got_value, value)
            # SPEC section 3: rank k's input gradient is K times the single-process one (DDP then divides by K)
            _close(got_grad, world * grad[lo:hi])


def test_sync_stats_ddp_step_equals_single_process(runs: dict[int, list[dict[str, Any]]]) -> None:
    images, t = _ddp_data()
    expected = _step(_model(), images, t, sync=False)
    for world, _, _ in GROUPS:
        for rank in range(world):
            got = runs[world][rank]["ddp"]
            assert set(got) == set(expected)
            for key, value in expected.items():
                _close(got[key], value)


def test_sync_metrics_equals_single_process(runs: dict[int, list[dict[str, Any]]]) -> None:
    expected = _metrics(0, N, sync=False)
    for world, _, _ in GROUPS:
        for rank in range(world):
            got = runs[world][rank]["metrics"]
            assert set(got) == set(expected)
            for key, value in expected.items():
                torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", REGION + PIXEL + UNIFIED)
def test_sync_stats_without_process_group_raises(name: str) -> None:
    form = "binary"
    x, t, kw = _batch(form, 0, ())
    with pytest.raises(ValueError, match=rf"^{name}_loss: `sync_stats`=True needs an initialised torch\.distributed"):
        _loss_fn(name)(x, t, **kw, sync_stats=True)
    module = seglosses.get_loss(name, **kw, sync_stats=True)  # checked at call time, not at construction
    with pytest.raises(ValueError, match=rf"^{name}_loss: `sync_stats`=True needs an initialised"):
        module(x, t)


@pytest.mark.parametrize("name", REGION + PIXEL + UNIFIED)
def test_sync_stats_module_repr_pickle_and_type(name: str) -> None:
    module = seglosses.get_loss(name, mode="binary", sync_stats=True)
    assert module.sync_stats is True
    assert module.process_group is None
    assert "sync_stats=True" in repr(module)
    assert "process_group" not in repr(module)
    assert "sync" not in repr(seglosses.get_loss(name, mode="binary"))
    assert pickle.loads(pickle.dumps(module)).sync_stats is True
    with pytest.raises(TypeError, match=rf"^{name}_loss: `sync_stats` must be a bool; got int 1"):
        seglosses.get_loss(name, mode="binary", sync_stats=1)


def test_sync_metrics_option_checked() -> None:
    with pytest.raises(TypeError, match=r"^SegmentationMetrics: `sync` must be a bool; got str 'yes'"):
        SegmentationMetrics(mode="binary", num_classes=1, sync="yes")  # type: ignore[arg-type]
