"""``sync_stats`` under ``torch.distributed`` (statistics summed over the ranks): K gloo processes on CPU vs one.

K processes are spawned once per group (K = 2 with the uneven split (2, 3); K = 3 with (1, 1, 3), rank 1's pixels all
ignored where the target form allows it); each runs every case on its slice of one deterministic float64 batch and
saves its results, which are compared here with a single-process run on the whole batch:

- the loss value on every rank equals the single-process loss (rel 1e-10);
- gradient convention (that of ``torch.distributed.nn.functional.all_reduce``): rank k's gradient w.r.t.
  its own slice is K times the single-process gradient of those pixels, so that DDP's mean over the K ranks is
  exactly the single-process gradient; a real DDP step of a tiny conv net checks the parameter gradients directly.

The catalogue losses (boundary, Hausdorff-DT, clDice, Dice + clDice, log-cosh Dice, sensitivity-specificity, F-beta,
generalised Wasserstein Dice, and TopK with ``per_image``) run in the same spawns with the same two checks. TopK
without ``per_image`` follows its own documented rule, since its selection count is not a sum: each rank selects its
own ``ceil(k n_rank / 100)`` largest values, then the sums of the selected values and the counts are summed over the
ranks; that rule is checked against a NumPy float64 reference (value, and rank k's gradient K times the gradient of
the pooled mean w.r.t. its pixels).

A rank given no image (N = 0, the other rank the whole batch) must still take part and get the same loss; a spawn of
its own per case, since a rank that raises ends the spawn. The sum over ranks is differentiable twice, as
``torch.distributed.nn.functional.all_reduce`` (a gradient penalty through ``sync_stats``, on a path that is
differentiable twice in one process).
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.multiprocessing as mp

import seglosses
from seglosses import functional as F
from seglosses.metrics import SegmentationMetrics
from seglosses.registry import default_arguments

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


#: The catalogue losses whose ``sync_stats`` sums statistics, with the data forms each accepts (the distance-map
#: losses compute their maps from a hard target; generalised Wasserstein Dice is multiclass with a hard target).
CATALOGUE: tuple[tuple[str, tuple[str, ...], dict[str, Any]], ...] = (
    ("boundary", ("mc_index", "mc_prob", "binary", "multilabel"), {}),
    ("hausdorff_dt", ("mc_index", "mc_prob", "binary", "multilabel"), {}),
    ("cldice", FORMS, {"iterations": 2}),
    ("dice_cldice", FORMS, {"iterations": 2}),
    ("log_cosh_dice", FORMS, {}),
    ("sensitivity_specificity", FORMS, {}),
    ("fbeta", FORMS, {}),
)
#: A class distance matrix with unequal off-diagonal costs (classes 1 and 2 close, both far from the background).
GWD_MATRIX = [[0.0, 1.0, 0.8], [1.0, 0.0, 0.3], [0.8, 0.3, 0.0]]
TOPK_K = 30.0  # k n / 100 is not a whole number for most shard sizes here, so the ceiling matters
TOPK_FORMS = ("mc_index", "binary", "multilabel")


def _catalogue_cases() -> tuple[tuple[str, str, str, dict[str, Any]], ...]:
    """``(case id, loss name, data form, extra kwargs)`` of the catalogue losses, checked as the older ones."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    for name, forms, base in CATALOGUE:
        for form in forms:
            for per_image in (False, True):
                out.append((f"{name}-{form}-per_image={per_image}", name, form, {**base, "per_image": per_image}))
    extras: list[tuple[str, str, dict[str, Any]]] = [
        # maps given as constants (soft targets allowed then), sliced with the batch
        ("boundary", "mc_soft", {"dist_map": "random", "include_background": True}),
        ("hausdorff_dt", "mc_soft", {"dist_map": "random", "per_image": True, "reduction": "sum"}),
        ("boundary", "mc_index", {"class_weights": [1.0, 2.0, 0.5], "spacing": (0.5, 2.0)}),
        ("hausdorff_dt", "mc_index", {"log_loss": True, "alpha": 1.0, "include_background": True}),
        ("cldice", "mc_index", {"iterations": 2, "class_weights": [1.0, 2.0, 0.5], "per_image": True}),
        ("dice_cldice", "multilabel", {"iterations": 2, "alpha": 0.3, "reduction": "sum"}),
        ("log_cosh_dice", "mc_index", {"squared": True, "class_weights": [1.0, 2.0, 0.5]}),
        ("sensitivity_specificity", "mc_prob", {"r": 0.3, "per_image": True, "reduction": "sum"}),
        ("fbeta", "multilabel", {"beta": 0.7, "include_background": False}),
        ("generalized_wasserstein_dice", "mc_index", {"dist_matrix": GWD_MATRIX}),
        ("generalized_wasserstein_dice", "mc_prob", {"dist_matrix": GWD_MATRIX, "reduction": "sum"}),
        # TopK per image: the mean over the images of every rank (exact, unlike the batch-pooled selection)
        ("topk", "mc_index", {"k": TOPK_K, "per_image": True}),
        ("topk", "binary", {"k": TOPK_K, "per_image": True, "reduction": "sum"}),
        ("topk", "multilabel", {"k": TOPK_K, "per_image": True}),
    ]
    for i, (name, form, kwargs) in enumerate(extras):
        out.append((f"{name}-{form}-catalogue{i}", name, form, kwargs))
    return tuple(out)


CASES = _cases() + _catalogue_cases()
CASE_IDS = tuple(c[0] for c in CASES)
#: TopK without ``per_image`` (each rank's own selection, then the pooled mean), one case per form.
TOPK_SHARD_CASES: tuple[tuple[str, str, str, dict[str, Any]], ...] = tuple(
    (f"topk-shard-{form}", "topk", form, {"k": TOPK_K}) for form in TOPK_FORMS
)
TOPK_SHARD_IDS = tuple(c[0] for c in TOPK_SHARD_CASES)


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
    return _run(CASES[index], 1000 + index, ignored, lo, hi, sync)


def _run(
    case: tuple[str, str, str, dict[str, Any]], seed: int, ignored: tuple[int, ...], lo: int, hi: int, sync: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and input gradient of ``case`` on images ``lo:hi`` of the batch of ``seed``.

    ``dist_map="random"`` in the extra kwargs stands for a constant map of the whole batch (nonnegative, so that it
    is valid for both distance losses), sliced as the batch.
    """
    _, name, form, extra = case
    x, t, kw = _batch(form, seed, ignored)
    if extra.get("dist_map") == "random":
        g = torch.Generator().manual_seed(seed + 1)
        extra = {**extra, "dist_map": 3 * torch.rand(x.shape, generator=g, dtype=torch.float64)[lo:hi]}
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
        for j, case in enumerate(TOPK_SHARD_CASES):
            results[case[0]] = _run(case, 5000 + j, _ignored(case[2], all_ignored, split), lo, hi, sync=True)
        images, t = _ddp_data()
        ddp = torch.nn.parallel.DistributedDataParallel(_model())
        results["ddp"] = _step(ddp, images[lo:hi], t[lo:hi], sync=True)
        results["metrics"] = _metrics(lo, hi, sync=True)
        torch.save(results, Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:  # noqa: ANN401
    """One intra-op thread for this module's single-process references, as in the workers.

    Tiny tensors gain nothing from threads: on this loaded 2-core machine the clDice references took ~20x longer
    with two threads (0.4 s a case).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
            # the sum's backward is a sum: rank k's input gradient is K times the single-process one (DDP divides by K)
            _close(got_grad, world * grad[lo:hi])


def _topk_count(n: int) -> int:
    """``max(1, ceil(TOPK_K n / 100))`` for ``n`` kept elements (0 when none), in integers (``TOPK_K`` = 30)."""
    assert TOPK_K == 30.0
    return max(1, -(-3 * n // 10)) if n > 0 else 0


def _topk_reference(x: np.ndarray, t: np.ndarray, form: str, split: tuple[int, ...]) -> tuple[float, np.ndarray, float]:
    """NumPy float64 TopK under the sync rule: ``(value, d value / d x, top-K mean of the whole batch)``.

    Per element: multiclass CE ``logsumexp(x) - x_y`` with gradient ``softmax - onehot(y)`` (elements are pixels);
    binary/multilabel BCE ``softplus(x) - x g`` with gradient ``sigmoid(x) - g`` (elements are pixel x channel).
    Ignored elements are removed first. Rank r selects its own ``c_r`` largest values (sum ``S_r``); the value is
    ``sum_r S_r / sum_r c_r``, the gradient the sum of the selected elements' gradients over ``sum_r c_r``.
    """
    if form == "mc_index":
        kept = t != IGNORE
        y = np.where(kept, t, 0)
        top = x.max(1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(x - top).sum(1))
        values = lse - np.take_along_axis(x, y[:, None], 1)[:, 0]
        soft = np.exp(x - lse[:, None])
        elem_grad = soft - (np.arange(C)[None, :, None, None] == y[:, None]).astype(np.float64)
    else:
        kept = t != IGNORE
        g = np.where(kept, t, 0.0)
        values = np.maximum(x, 0) - x * g + np.log1p(np.exp(-np.abs(x)))
        elem_grad = 1 / (1 + np.exp(-x)) - g
    selected = np.zeros(values.shape, dtype=bool)
    total, count = 0.0, 0
    for rank in range(len(split)):
        lo, hi = sum(split[:rank]), sum(split[: rank + 1])
        idx = np.flatnonzero(kept[lo:hi])
        c = _topk_count(idx.size)
        chosen = idx[np.argsort(-values[lo:hi].reshape(-1)[idx], kind="stable")[:c]]
        shard = np.zeros(values[lo:hi].size, dtype=bool)
        shard[chosen] = True
        selected[lo:hi] = shard.reshape(values[lo:hi].shape)
        total += float(values[lo:hi].reshape(-1)[chosen].sum())
        count += c
    value = total / count
    if form == "mc_index":
        grad = elem_grad * selected[:, None] / count
    else:
        grad = elem_grad * selected / count
    pool = np.sort(values[kept])[::-1]
    whole = float(pool[: _topk_count(pool.size)].mean())
    return value, grad, whole


@pytest.mark.parametrize("case_id", TOPK_SHARD_IDS)
def test_topk_sync_stats_pools_each_ranks_selection(runs: dict[int, list[dict[str, Any]]], case_id: str) -> None:
    """TopK's documented rule under ``sync_stats``: each rank's own top k%, then the pooled mean (NumPy reference)."""
    j = TOPK_SHARD_IDS.index(case_id)
    case = TOPK_SHARD_CASES[j]
    form = case[2]
    for world, split, all_ignored in GROUPS:
        ignored = _ignored(form, all_ignored, split)
        x, t, _ = _batch(form, 5000 + j, ignored)
        value, grad, whole = _topk_reference(x.numpy(), t.numpy(), form, split)
        # the reference's whole-batch rule is the library's single-process loss, and the shard rule differs from it
        # on this data (so the comparison below tells the two rules apart)
        _close(_run(case, 5000 + j, ignored, 0, N, sync=False)[0], torch.tensor(whole, dtype=torch.float64))
        assert abs(value - whole) > 1e-6 * abs(whole)  # far beyond the comparison tolerance (rel 1e-10)
        for rank in range(world):
            lo, hi = sum(split[:rank]), sum(split[: rank + 1])
            got_value, got_grad = runs[world][rank][case_id]
            _close(got_value, torch.tensor(value, dtype=torch.float64))
            _close(got_grad, world * torch.from_numpy(grad[lo:hi]))


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


SYNC_NAMES = REGION + PIXEL + UNIFIED + tuple(c[0] for c in CATALOGUE) + ("generalized_wasserstein_dice", "topk")


def _form_and_args(name: str) -> tuple[str, dict[str, Any]]:
    """A data form the loss accepts (binary, or multiclass where binary is not) and the arguments it needs."""
    mode = "multiclass" if name == "generalized_wasserstein_dice" else "binary"
    needed = default_arguments(name, mode=mode, num_classes=C if mode == "multiclass" else 1)
    assert needed is not None
    return ("mc_index" if mode == "multiclass" else "binary"), needed


@pytest.mark.parametrize("name", SYNC_NAMES)
def test_sync_stats_without_process_group_raises(name: str) -> None:
    form, args = _form_and_args(name)
    x, t, kw = _batch(form, 0, ())
    with pytest.raises(ValueError, match=rf"^{name}_loss: `sync_stats`=True needs an initialised torch\.distributed"):
        _loss_fn(name)(x, t, **kw, **args, sync_stats=True)
    module = seglosses.get_loss(name, **kw, **args, sync_stats=True)  # checked at call time, not at construction
    with pytest.raises(ValueError, match=rf"^{name}_loss: `sync_stats`=True needs an initialised"):
        module(x, t)


@pytest.mark.parametrize("name", SYNC_NAMES)
def test_sync_stats_module_repr_pickle_and_type(name: str) -> None:
    form, needed = _form_and_args(name)
    args = {"mode": "multiclass" if form == "mc_index" else "binary", **needed}
    module = seglosses.get_loss(name, **args, sync_stats=True)
    assert module.sync_stats is True
    assert module.process_group is None
    assert "sync_stats=True" in repr(module)
    assert "process_group" not in repr(module)
    assert "sync" not in repr(seglosses.get_loss(name, **args))
    assert pickle.loads(pickle.dumps(module)).sync_stats is True
    with pytest.raises(TypeError, match=rf"^{name}_loss: `sync_stats` must be a bool; got int 1"):
        seglosses.get_loss(name, **args, sync_stats=1)


def test_sync_metrics_option_checked() -> None:
    with pytest.raises(TypeError, match=r"^SegmentationMetrics: `sync` must be a bool; got str 'yes'"):
        SegmentationMetrics(mode="binary", num_classes=1, sync="yes")  # type: ignore[arg-type]


EMPTY_RANK_CASES = (
    pytest.param("dice", {}, id="dice"),
    pytest.param("cross_entropy", {"class_weights": [1.0, 2.0, 0.5]}, id="cross_entropy"),
    pytest.param("dice", {"per_image": True}, id="dice-per_image"),  # reduce_images read values[0] (IndexError)
    pytest.param("asymmetric_focal_tversky", {}, id="asymmetric_focal_tversky"),
)


def _empty_rank_run(name: str, extra: dict[str, Any], hi: int, sync: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and input gradient on images ``0:hi`` (0: none) of a multiclass index batch with ignored pixels."""
    x, t, kw = _batch("mc_index", 4242, ())
    xs = x[:hi].clone().requires_grad_(True)
    value = _loss_fn(name)(xs, t[:hi], **kw, **extra, **({"sync_stats": True} if sync else {}))
    value.backward()
    assert xs.grad is not None
    return value.detach(), xs.grad


def _empty_rank_worker(rank: int, world: int, root: str, name: str, extra: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        torch.save(_empty_rank_run(name, extra, 0 if rank == 0 else N, sync=True), Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("name", "extra"), EMPTY_RANK_CASES)
def test_sync_stats_rank_without_images(tmp_path: Path, name: str, extra: dict[str, Any]) -> None:
    mp.spawn(_empty_rank_worker, args=(2, str(tmp_path), name, extra), nprocs=2, join=True)
    value, grad = _empty_rank_run(name, extra, N, sync=False)
    empty_value, empty_grad = torch.load(tmp_path / "rank0.pt")
    full_value, full_grad = torch.load(tmp_path / "rank1.pt")
    _close(empty_value, value)
    _close(full_value, value)
    assert empty_grad.shape == (0, C, *SPATIAL)
    _close(full_grad, 2 * grad)  # K = 2 times the single-process gradient, as every rank's


def _penalty(x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dice on probabilities (twice differentiable in one process) with ``sync_stats``: loss, gradient, and the
    gradient of the penalty ``|d loss / d x|^2`` (a second backward through the sums over the ranks)."""
    xs = x.clone().requires_grad_(True)
    loss = F.dice_loss(xs, t, mode="multiclass", from_logits=False, ignore_index=IGNORE, sync_stats=True)
    (grad,) = torch.autograd.grad(loss, xs, create_graph=True)
    (grad * grad).sum().backward()
    assert xs.grad is not None
    return {"loss": loss.detach(), "grad": grad.detach(), "penalty_grad": xs.grad}


def _double_backward_worker(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        x, t, _ = _batch("mc_prob", 99, ())
        lo, hi = (0, 2) if rank == 0 else (2, N)
        ours = _penalty(x[lo:hi], t[lo:hi])
        # the reference: the same loss with torch's own differentiable all-reduce in place of ours
        from seglosses import _distributed

        def torch_sum(tensor: torch.Tensor, sync: Any) -> torch.Tensor:  # noqa: ANN401
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # deprecated in torch 2.13, still correct
                out: torch.Tensor = dist_nn.all_reduce(tensor, group=sync.group or dist.group.WORLD)
            return out

        original = _distributed.sync_sum
        _distributed.sync_sum = torch_sum
        try:
            reference = _penalty(x[lo:hi], t[lo:hi])
        finally:
            _distributed.sync_sum = original
        # by hand: s_k = (0.5 + k, -1 + 0.3 k), S = s_0 + s_1, L = sum S^3 on each rank; rank k's gradient is
        # K = 2 times dL/dS: g_k = 6 S^2. The penalty P = sum g_k^2 = 36 sum S^4 is the same on every rank, so its
        # gradient is again K times dP/dS = 144 S^3: 288 S^3 = 8 * 36 S^3 (the backward's all-reduce differentiated)
        s = torch.tensor([0.5 + rank, -1.0 + 0.3 * rank], dtype=torch.float64, requires_grad=True)
        total = _distributed.sync_sum(s, _distributed.Sync())
        (g,) = torch.autograd.grad((total**3).sum(), s, create_graph=True)
        (g * g).sum().backward()
        cube = {"total": total.detach(), "grad": g.detach(), "penalty_grad": s.grad}
        torch.save({"ours": ours, "torch": reference, "cube": cube}, Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sync_sum_twice_differentiable_as_torch_all_reduce(tmp_path: Path) -> None:
    mp.spawn(_double_backward_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["torch"]["penalty_grad"].abs().max() > 0
        for key in ("loss", "grad", "penalty_grad"):
            _close(got["ours"][key], got["torch"][key])
        cube = got["cube"]
        total = torch.tensor([0.5 + 1.5, -1.0 - 0.7], dtype=torch.float64)
        _close(cube["total"], total)
        _close(cube["grad"], 2 * 3 * total**2)
        _close(cube["penalty_grad"], 8 * 36 * total**3)


def test_collectives_of_cpu_state_go_to_the_cuda_device_under_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    # A SegmentationMetrics that never saw a batch on a rank holds CPU state; NCCL cannot reduce CPU tensors, so the
    # collective runs on the rank's current CUDA device (gloo: where the tensor is). No NCCL here: the choice only.
    from seglosses._distributed import collective_device

    state = torch.zeros(3, dtype=torch.int64)
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert collective_device(state) == torch.device("cuda", 1)
    assert collective_device(torch.empty(2, device="meta")) == torch.device("meta")  # a device tensor stays put
    monkeypatch.setattr(torch.distributed, "get_backend", lambda group=None: "gloo")
    assert collective_device(state) == torch.device("cpu")


def _copy_worker(rank: int, world: int, root: str) -> None:
    import copy
    import pickle

    import seglosses

    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        group = dist.new_group([0])
        loss = seglosses.get_loss("dice", mode="multiclass", ignore_index=IGNORE, sync_stats=True, process_group=group)
        model = torch.nn.ModuleDict({"head": torch.nn.Conv2d(3, 3, 1), "loss": loss})
        twin = copy.deepcopy(model)  # failed: "cannot pickle 'ProcessGroup' object"
        shallow = copy.copy(loss)  # must not go through the pickling state (which refuses the group)
        x, t, _ = _batch("mc_index", 5, ())
        out: dict[str, object] = {
            "same_group": twin["loss"].process_group is group and shallow.process_group is group,
            "shallow": float(shallow(*_batch("mc_index", 5, ())[:2])) == float(loss(*_batch("mc_index", 5, ())[:2])),
            "new_head": twin["head"].weight is not model["head"].weight,
            "values": (float(twin["loss"](x, t)), float(loss(x, t))),
        }
        try:
            pickle.dumps(loss)
        except TypeError as exc:
            out["pickle"] = str(exc)
        loss.process_group = None
        out["plain"] = len(pickle.dumps(loss)) > 0
        torch.save(out, Path(root) / "copy.pt")
    finally:
        dist.destroy_process_group()


def test_loss_with_a_process_group_deep_copies_and_refuses_pickling_clearly(tmp_path: Path) -> None:
    mp.spawn(_copy_worker, args=(1, str(tmp_path)), nprocs=1, join=True)
    out = torch.load(tmp_path / "copy.pt")
    assert out["same_group"]
    assert out["shallow"]
    assert out["new_head"]
    assert out["values"][0] == out["values"][1]
    assert out["pickle"].startswith("DiceLoss: a loss with process_group set cannot be pickled or saved whole")
    assert out["plain"]
