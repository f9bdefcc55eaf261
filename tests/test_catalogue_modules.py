"""The catalogue losses as Modules and registry names: Module == function == ``get_loss``, checks at construction,
search spaces inside the declared bounds, distance maps passed through ``forward``, pickling, and ``sync_stats``
under ``torch.distributed`` (two gloo processes on CPU against one process) for the losses that are formulas over
sums, TopK's documented rule included.
"""

from __future__ import annotations

import math
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import seglosses
import seglosses.functional as SF
from seglosses import losses
from seglosses.distance import signed_distance, unsigned_distance
from seglosses.registry import SEARCH_SPACES, available_losses, check_search_spaces, get_loss, loss_class, search_space

IGNORE = 255
M3 = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]]

# registry name -> (Module class, function, extra arguments the loss needs)
CATALOGUE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "boundary": ("BoundaryLoss", "boundary_loss", {}),
    "hausdorff_dt": ("HausdorffDTLoss", "hausdorff_dt_loss", {}),
    "cldice": ("ClDiceLoss", "cldice_loss", {}),
    "dice_cldice": ("DiceClDiceLoss", "dice_cldice_loss", {}),
    "log_cosh_dice": ("LogCoshDiceLoss", "log_cosh_dice_loss", {}),
    "topk": ("TopKLoss", "topk_loss", {}),
    "sensitivity_specificity": ("SensitivitySpecificityLoss", "sensitivity_specificity_loss", {}),
    "fbeta": ("FBetaLoss", "fbeta_loss", {}),
    "generalized_wasserstein_dice": ("GeneralizedWassersteinDiceLoss", "generalized_wasserstein_dice_loss", {}),
}
NO_CLASS_WEIGHTS = {"generalized_wasserstein_dice"}
MULTICLASS_ONLY = {"generalized_wasserstein_dice"}


def _extra(name: str, c: int = 3) -> dict[str, Any]:
    if name == "generalized_wasserstein_dice":
        return {"dist_matrix": M3 if c == 3 else (1 - torch.eye(c)).tolist()}
    return {}


def _data(mode: str, seed: int = 0, n: int = 2, c: int = 3, s: tuple[int, ...] = (6, 7)):
    g = torch.Generator().manual_seed(seed)
    ch = 1 if mode == "binary" else c
    x = torch.randn((n, ch, *s), generator=g, dtype=torch.float64) * 2
    if mode == "multiclass":
        t = torch.randint(0, c, (n, *s), generator=g)
        t = torch.where(torch.rand((n, *s), generator=g) < 0.2, IGNORE, t)
    else:
        t = (torch.rand((n, ch, *s), generator=g) < 0.4).double()
        t = torch.where(torch.rand((n, ch, *s), generator=g) < 0.2, float(IGNORE), t)
    return x, t


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=1e-14)


# ---------------------------------------------------------------------------------------------------- registry


def test_catalogue_registry_names_and_classes():
    names = available_losses()
    for name, (cls, _, _) in CATALOGUE.items():
        assert name in names
        assert loss_class(name) is getattr(losses, cls)
        assert name in SEARCH_SPACES
    check_search_spaces(SEARCH_SPACES)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_search_space_values_build_and_run(name):
    modes = ("multiclass",) if name in MULTICLASS_ONLY else ("binary", "multiclass")
    for mode in modes:
        x, t = _data(mode, seed=1)
        space = search_space(name, mode)
        assert space, f"{name}: empty search space in mode {mode}"
        for key, param in space.items():
            values = [False, True] if param.kind == "bool" else [param.low, param.high]
            for value in values:
                if param.kind == "int":
                    value = int(value)
                loss = get_loss(name, mode=mode, ignore_index=IGNORE, **{key: value}, **_extra(name))
                assert torch.isfinite(loss(x, t)), (name, key, value)


def test_catalogue_search_spaces_outside_the_bounds_are_refused():
    from seglosses.registry import Param

    with pytest.raises(ValueError, match=r"'k' samples \[0, 50\] outside its declared bounds \(0, 100\]"):
        check_search_spaces({"topk": {"k": Param("float", 0.0, 50.0)}})
    with pytest.raises(ValueError, match=r"'r' samples \[0.5, 1.5\] outside its declared bounds \[0, 1\]"):
        check_search_spaces({"sensitivity_specificity": {"r": Param("float", 0.5, 1.5)}})


# -------------------------------------------------------------------------------------- Module == function


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_catalogue_module_equals_function_equals_registry(name, mode):
    if name in MULTICLASS_ONLY and mode != "multiclass":
        with pytest.raises(ValueError, match=r"`mode` must be one of 'multiclass' for this loss"):
            get_loss(name, mode=mode, **_extra(name))
        return
    cls, fn, _ = CATALOGUE[name]
    x, t = _data(mode, seed=2)
    kw: dict[str, Any] = {"mode": mode, "ignore_index": IGNORE, **_extra(name)}
    if mode != "binary" and name not in NO_CLASS_WEIGHTS:
        kw["class_weights"] = [0.5, 2.0, 1.5]
    expected = getattr(SF, fn)(x, t, **kw)
    module = getattr(losses, cls)(**kw)
    assert isinstance(module, torch.nn.Module)
    assert type(get_loss(name, **kw)) is type(module)
    _close(module(x, t), expected)
    _close(get_loss(name, **kw)(x, t), expected)
    _close(module(x, t), expected)  # forward never mutates the Module
    assert getattr(seglosses.F, fn) is getattr(SF, fn)
    if "class_weights" in kw:
        assert "class_weights" in dict(module.named_buffers())


@pytest.mark.parametrize(
    ("name", "kw", "shown"),
    [
        ("topk", {"k": 5.0, "per_image": True}, "TopKLoss(mode='multiclass', k=5.0, per_image=True)"),
        ("fbeta", {"beta": 2.0}, "FBetaLoss(mode='multiclass', beta=2.0)"),
        ("sensitivity_specificity", {"r": 0.1}, "SensitivitySpecificityLoss(mode='multiclass', r=0.1)"),
        ("log_cosh_dice", {"squared": True}, "LogCoshDiceLoss(mode='multiclass', squared=True)"),
        ("boundary", {"spacing": [2.0, 1.0]}, "BoundaryLoss(mode='multiclass', spacing=(2.0, 1.0))"),
        ("hausdorff_dt", {"alpha": 1.0}, "HausdorffDTLoss(mode='multiclass', alpha=1.0)"),
        ("cldice", {"iterations": 3}, "ClDiceLoss(mode='multiclass', iterations=3)"),
        ("dice_cldice", {"alpha": 0.3}, "DiceClDiceLoss(mode='multiclass', alpha=0.3)"),
        (
            "generalized_wasserstein_dice",
            {"dist_matrix": torch.tensor([[0.0, 2.0], [2.0, 0.0]])},
            "GeneralizedWassersteinDiceLoss(mode='multiclass', dist_matrix=[[0.0, 2.0], [2.0, 0.0]])",
        ),
    ],
)
def test_catalogue_module_repr_shows_the_non_defaults_and_pickles(name, kw, shown):
    module = get_loss(name, mode="multiclass", **kw)
    assert repr(module) == shown
    for key, value in kw.items():
        stored = getattr(module, key)
        if key == "dist_matrix":
            # a float64 buffer that follows .to(device): on a GPU a call neither copies it from the host nor reads it
            assert stored.dtype == torch.float64
            assert stored.tolist() == value.tolist()
            assert "dist_matrix" in dict(module.named_buffers())
        elif key == "spacing":
            assert stored == tuple(value)
        else:
            assert stored == value
    again = pickle.loads(pickle.dumps(module))
    assert repr(again) == shown
    c = 2 if name == "generalized_wasserstein_dice" else 3
    x, t = _data("multiclass", seed=3, c=c)
    t = torch.where(t == IGNORE, 0, t)
    _close(again(x, t), module(x, t))


@pytest.mark.parametrize(
    ("name", "kw", "exc", "msg"),
    [
        ("topk", {"k": 0.0}, ValueError, r"topk_loss: `k` must be > 0; got 0"),
        ("topk", {"label_smoothing": 1.5}, ValueError, r"topk_loss: `label_smoothing` must be <= 1"),
        ("fbeta", {"beta": -1.0}, ValueError, r"fbeta_loss: `beta` must be >= 0"),
        ("sensitivity_specificity", {"eps": 0.0}, ValueError, r"sensitivity_specificity_loss: `eps` must be > 0"),
        ("log_cosh_dice", {"squared": 1}, TypeError, r"log_cosh_dice_loss: `squared` must be a bool"),
        ("boundary", {"spacing": -1.0}, ValueError, r"boundary_loss: `spacing` must hold finite values > 0"),
        ("hausdorff_dt", {"spacing": "1mm"}, TypeError, r"hausdorff_dt_loss: `spacing` must be None, a number"),
        ("hausdorff_dt", {"alpha": -0.5}, ValueError, r"hausdorff_dt_loss: `alpha` must be >= 0"),
        ("cldice", {"iterations": 2.5}, TypeError, r"cldice_loss: `iterations` must be an int"),
        ("dice_cldice", {"iterations": -1}, ValueError, r"dice_cldice_loss: `iterations` must be >= 0"),
        ("dice_cldice", {"alpha": 1.5}, ValueError, r"dice_cldice_loss: `alpha` must be <= 1"),
        (
            "generalized_wasserstein_dice",
            {"dist_matrix": [[0.0, 1.0], [2.0, 0.0]]},
            ValueError,
            r"generalized_wasserstein_dice_loss: `dist_matrix` must be symmetric",
        ),
        ("fbeta", {"reduction": "mean_batch"}, ValueError, r"fbeta_loss: `reduction` must be one of"),
        ("topk", {"mode": "multiclas"}, ValueError, r"topk_loss: `mode` must be one of .*did you mean 'multiclass'"),
    ],
)
def test_catalogue_module_checks_arguments_at_construction(name, kw, exc, msg):
    args = {"mode": "multiclass", **_extra(name), **kw}
    with pytest.raises(exc, match=msg):
        get_loss(name, **args)


def test_catalogue_generalized_wasserstein_dice_needs_its_matrix():
    with pytest.raises(TypeError, match="dist_matrix"):
        get_loss("generalized_wasserstein_dice", mode="multiclass")


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("name", "maps"), [("boundary", signed_distance), ("hausdorff_dt", unsigned_distance)])
def test_catalogue_distance_modules_take_a_precomputed_map(name, maps, per_image):
    x, t = _data("multiclass", seed=4)
    t = torch.where(t == IGNORE, 0, t)
    module = get_loss(name, mode="multiclass", per_image=per_image, spacing=(1.5, 1.0))
    dist_map = maps(t, mode="multiclass", num_classes=3, spacing=(1.5, 1.0)).to(torch.float64)
    computed = module(x, t)
    _close(module(x, t, dist_map), computed, rtol=1e-7)  # the public maps are float32, the loss's own float64
    fn = CATALOGUE[name][1]
    _close(
        module(x, t, dist_map=dist_map),
        getattr(SF, fn)(x, t, mode="multiclass", per_image=per_image, dist_map=dist_map, spacing=(1.5, 1.0)),
    )
    # the map is what the loss reads: a different map gives a different value
    assert not torch.allclose(module(x, t, dist_map * 2 + 1), computed)


# ---------------------------------------------------------------------------- sync_stats: two gloo processes

SPLIT = (2, 3)
N = sum(SPLIT)
SYNC_CASES: list[tuple[str, str, str, dict[str, Any]]] = []
for _name in ("log_cosh_dice_loss", "sensitivity_specificity_loss", "fbeta_loss"):
    for _mode in ("multiclass", "multilabel"):
        for _per_image in (False, True):
            SYNC_CASES.append((f"{_name}-{_mode}-{_per_image}", _name, _mode, {"per_image": _per_image}))
SYNC_CASES += [
    (
        "log_cosh_dice_loss-squared-weights",
        "log_cosh_dice_loss",
        "multiclass",
        {"squared": True, "class_weights": [1.0, 2.0, 0.5], "reduction": "sum"},
    ),
    ("gwd-mean", "generalized_wasserstein_dice_loss", "multiclass", {"dist_matrix": M3}),
    ("gwd-sum", "generalized_wasserstein_dice_loss", "multiclass", {"dist_matrix": M3, "reduction": "sum"}),
    ("topk-per_image", "topk_loss", "multiclass", {"per_image": True, "k": 20.0}),
    ("topk-per_image-sum", "topk_loss", "binary", {"per_image": True, "k": 20.0, "reduction": "sum"}),
    ("topk-batch", "topk_loss", "multiclass", {"k": 20.0}),
]


def _sync_batch(mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = _data(mode, seed=9, n=N, s=(4, 5))
    if mode == "multiclass":
        t[3] = IGNORE  # an image of rank 1 with no kept pixel
    return x, t


def _sync_inputs(index: int) -> tuple[torch.Tensor, torch.Tensor]:
    case_id, _, mode, _ = SYNC_CASES[index]
    x, t = _sync_batch(mode)
    if case_id == "topk-batch":  # rank 1's pixels are harder: the ranks' selections differ from the batch's top K
        x[SPLIT[0] :] *= 4
    return x, t


def _sync_run(index: int, lo: int, hi: int, sync: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _, fn, mode, kw = SYNC_CASES[index]
    x, t = _sync_inputs(index)
    xs = x[lo:hi].clone().requires_grad_(True)
    args = {"mode": mode, "ignore_index": IGNORE, **kw}
    if sync:
        args["sync_stats"] = True
    out = getattr(SF, fn)(xs, t[lo:hi], **args)
    out.backward()
    return out.detach(), xs.grad


def _sync_worker(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        lo, hi = sum(SPLIT[:rank]), sum(SPLIT[: rank + 1])
        results = {case[0]: _sync_run(i, lo, hi, sync=True) for i, case in enumerate(SYNC_CASES)}
        torch.save(results, Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def sync_runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("catalogue_sync")
    mp.spawn(_sync_worker, args=(len(SPLIT), str(root)), nprocs=len(SPLIT), join=True)
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(len(SPLIT))]


@pytest.mark.parametrize("case_id", [c[0] for c in SYNC_CASES if c[0] != "topk-batch"])
def test_catalogue_sync_stats_equals_single_process(sync_runs, case_id):
    index = [c[0] for c in SYNC_CASES].index(case_id)
    value, grad = _sync_run(index, 0, N, sync=False)
    world = len(SPLIT)
    for rank in range(world):
        lo, hi = sum(SPLIT[:rank]), sum(SPLIT[: rank + 1])
        got_value, got_grad = sync_runs[rank][case_id]
        torch.testing.assert_close(got_value, value, rtol=1e-10, atol=1e-13)
        # the gradient convention of all_reduce: K times the single-process gradient of the rank's pixels
        torch.testing.assert_close(got_grad, world * grad[lo:hi], rtol=1e-9, atol=1e-12)


def test_catalogue_sync_stats_topk_over_the_batch_is_the_mean_of_the_ranks_selections(sync_runs):
    # TopK's count is not a sum: each rank selects ceil(k n_rank / 100) of its own values, then the selected sums
    # and counts are summed over the ranks
    index = [c[0] for c in SYNC_CASES].index("topk-batch")
    x, t = _sync_inputs(index)
    total, count = 0.0, 0
    for rank in range(len(SPLIT)):
        lo, hi = sum(SPLIT[:rank]), sum(SPLIT[: rank + 1])
        ce = torch.nn.functional.cross_entropy(x[lo:hi], t[lo:hi], ignore_index=IGNORE, reduction="none")
        kept = ce[t[lo:hi] != IGNORE]
        k = max(1, math.ceil(20 * kept.numel() / 100))
        total += float(kept.sort(descending=True).values[:k].sum())
        count += k
    for rank in range(len(SPLIT)):
        got, _ = sync_runs[rank]["topk-batch"]
        assert float(got) == pytest.approx(total / count, rel=1e-12)
    single, _ = _sync_run(index, 0, N, sync=False)
    assert abs(float(single) - total / count) > 1e-3  # differs from the top K of the whole batch


@pytest.mark.parametrize("name", ["topk", "log_cosh_dice", "sensitivity_specificity", "fbeta"])
def test_catalogue_sync_stats_without_process_group_raises(name):
    x, t = _data("multiclass", seed=5)
    with pytest.raises(ValueError, match=r"`sync_stats`=True needs an initialised torch.distributed process group"):
        get_loss(name, mode="multiclass", sync_stats=True, ignore_index=IGNORE)(x, t)


def test_catalogue_gwd_sync_requires_process_group():
    x, t = _data("multiclass", seed=5)
    with pytest.raises(ValueError, match=r"generalized_wasserstein_dice_loss: `sync_stats`=True needs"):
        SF.generalized_wasserstein_dice_loss(
            x, t, mode="multiclass", dist_matrix=M3, ignore_index=IGNORE, sync_stats=True
        )
    assert np.isfinite(
        float(SF.generalized_wasserstein_dice_loss(x, t, mode="multiclass", dist_matrix=M3, ignore_index=IGNORE))
    )


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_catalogue_default_arguments_build_every_loss_that_supports_the_mode(mode):
    from seglosses.registry import default_arguments

    c = 1 if mode == "binary" else 3
    x, t = _data(mode, seed=6, c=c)
    skipped = []
    for name in available_losses():
        args = default_arguments(name, mode=mode, num_classes=c)
        if args is None:
            skipped.append(name)
            with pytest.raises(ValueError, match=r"`mode` must be one of"):
                get_loss(name, mode=mode, **_extra(name))
            continue
        assert torch.isfinite(get_loss(name, mode=mode, ignore_index=IGNORE, **args)(x, t))
    expected = {"binary": ["generalized_wasserstein_dice"], "multiclass": []}.get(mode)
    if expected is not None:
        assert skipped == expected
    else:  # multilabel: the unified focal family and GWD
        assert "generalized_wasserstein_dice" in skipped
        assert "unified_focal" in skipped


@pytest.mark.parametrize("options", [{}, {"per_image": True}, {"ignore_index": 255}], ids=["batch", "image", "ignore"])
@pytest.mark.parametrize("value", [3, -1])
@pytest.mark.parametrize("name", available_losses())
def test_every_loss_is_nan_for_a_bad_class_index_without_value_checks(name, value, options):
    # with value checks off (a GPU's default) a class index outside [0, C) at a kept pixel makes the loss NaN on
    # every loss, never an exception (a device assert on a GPU) nor a finite number computed around it
    g = torch.Generator().manual_seed(41)
    x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 6, 6), generator=g)
    t[1, 2, 3] = value
    if "ignore_index" in options:
        t[0, 0, 0] = 255
    extra = {"dist_matrix": 1 - torch.eye(3)} if name == "generalized_wasserstein_dice" else {}
    try:
        loss = get_loss(name, mode="multiclass", **extra, **options)
    except (TypeError, ValueError):
        pytest.skip(f"{name} has no {options} in mode='multiclass'")
    seglosses.set_value_checks("never")
    try:
        out = loss(x, t)
        out.backward()
    finally:
        seglosses.set_value_checks("cpu")
    assert torch.isnan(out)


@pytest.mark.parametrize("shape", [(0, 6, 6), (2, 0, 6), (1, 4, 0, 3)], ids=["no-image", "empty-axis", "empty-3d"])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", available_losses())
def test_every_loss_is_zero_on_an_input_without_pixels(name, mode, shape):
    # SPEC section 7: a loss over no kept pixel is 0 with a zero gradient. An empty batch (N = 0, e.g. a DDP rank
    # left without images) and a zero-length spatial axis are that case; they raised in the boundary, Hausdorff-DT,
    # TopK, clDice and combo losses (reshape(-1) of 0 elements, pools of empty planes, amax of nothing) and combo
    # returned -(1 - alpha)
    from seglosses.registry import default_arguments

    c = 1 if mode == "binary" else 3
    args = default_arguments(name, mode=mode, num_classes=c)
    if args is None:
        pytest.skip(f"{name} does not support mode={mode!r}")
    n, *spatial = shape
    for options in ({}, {"per_image": True}, {"ignore_index": 255}):
        try:
            loss = get_loss(name, mode=mode, **args, **options)
        except (TypeError, ValueError):
            continue  # no such option for this loss
        x = torch.zeros(n, c, *spatial, dtype=torch.float64, requires_grad=True)
        t = torch.zeros(n, *spatial, dtype=torch.long) if mode == "multiclass" else torch.zeros(n, c, *spatial)
        out = loss(x, t)
        out.backward()
        assert float(out.detach()) == 0.0, options
        assert x.grad is not None
        assert x.grad.shape == x.shape
