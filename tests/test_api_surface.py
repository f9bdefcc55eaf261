"""The public API as a demanding user meets it: the loss Modules' buffers (copies of the user's tensors, float64
kept), ``get_loss``'s hints for unknown names, ``available_losses`` against the README and SPEC names, ``__all__``,
the Modules' repr with every default spelled out, and the typing a user's ``mypy --strict`` sees (Module calls
return Tensors, Literal options reject typos). Expected values come from NumPy float64 written here, from literals,
or from the functional API with the same arguments (a Module is one call of its function)."""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import seglosses
from seglosses import losses, registry
from seglosses.registry import _REGISTRY, available_losses, get_loss, search_space

ROOT = Path(__file__).resolve().parents[1]


def _function(name: str) -> Any:
    return _REGISTRY[name]._function  # type: ignore[attr-defined]


def _takes(name: str, arg: str) -> bool:
    return arg in inspect.signature(_REGISTRY[name].__init__).parameters


# every loss whose Module takes class_weights and supports multiclass
WEIGHTED = [n for n in available_losses() if _takes(n, "class_weights") and "multiclass" in _REGISTRY[n]._modes]  # type: ignore[attr-defined]


def _data(dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64).to(dtype)
    return x, torch.randint(0, 3, (2, 5, 4), generator=g)


# ---------------------------------------------------------------------------------------------------- buffers


@pytest.mark.parametrize("name", WEIGHTED)
def test_module_class_weights_buffer_is_a_copy_of_the_users_tensor(name):
    x, t = _data()
    w = torch.tensor([1.0, 2.0, 3.0])
    a = get_loss(name, mode="multiclass", class_weights=w)
    b = get_loss(name, mode="multiclass", class_weights=w)
    expected = b(x, t)
    a.load_state_dict({"class_weights": torch.tensor([5.0, 0.5, 0.25])})
    # loading a checkpoint into one loss reaches neither the user's tensor nor another loss built from it
    assert w.tolist() == [1.0, 2.0, 3.0]
    assert b.class_weights.tolist() == [1.0, 2.0, 3.0]
    assert a.class_weights.tolist() == [5.0, 0.5, 0.25]
    torch.testing.assert_close(
        a(x, t), _function(name)(x, t, mode="multiclass", class_weights=[5.0, 0.5, 0.25]), rtol=0, atol=0
    )
    # nor does an in-place change of the user's tensor after construction (it would skip the construction check)
    w.mul_(-1.0)
    torch.testing.assert_close(b(x, t), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", WEIGHTED)
def test_module_float64_class_weights_keep_float64(name):
    x, t = _data(torch.float64)
    w = torch.tensor([0.1, 0.7, 0.3], dtype=torch.float64)
    m = get_loss(name, mode="multiclass", class_weights=w)
    assert m.class_weights.dtype == torch.float64
    torch.testing.assert_close(m(x, t), _function(name)(x, t, mode="multiclass", class_weights=w), rtol=0, atol=0)
    # a sequence gives a buffer of the default dtype (float32), as before
    assert get_loss(name, mode="multiclass", class_weights=[0.1, 0.7, 0.3]).class_weights.dtype == torch.float32


def test_dice_module_float64_class_weights_against_numpy():
    x, t = _data(torch.float64, seed=3)
    w = np.array([0.1, 0.7, 0.3])
    # NumPy float64: softmax, TP/FP/FN over the batch, Dice per class with smooth 1, weighted mean sum w L / sum w
    z = x.numpy()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = np.stack([(t.numpy() == c) for c in range(3)], axis=1).astype(np.float64)
    tp, fp, fn = (p * g).sum((0, 2, 3)), (p * (1 - g)).sum((0, 2, 3)), ((1 - p) * g).sum((0, 2, 3))
    dice = (2 * tp + 1) / (2 * tp + fp + fn + 1)
    expected = float((w * (1 - dice)).sum() / w.sum())
    got = seglosses.DiceLoss(mode="multiclass", class_weights=torch.tensor(w))(x, t)
    # weights cut to float32 were off by ~1e-9 relative
    assert got.dtype == torch.float64
    assert abs(got.item() - expected) <= 1e-13 * abs(expected)


def test_module_state_dict_through_weights_only_load_and_containers():
    x, t = _data(seed=1)
    weighted = seglosses.DiceLoss(mode="multiclass", class_weights=[0.2, 1.0, 3.0])
    focal = seglosses.FocalLoss(mode="multiclass", alpha=[0.2, 0.3, 0.5])
    pair = torch.nn.ModuleList([weighted, focal])
    buf = io.BytesIO()
    torch.save(pair.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # a state_dict holds plain tensors only
    assert sorted(state) == ["0.class_weights", "1.alpha"]
    other = torch.nn.ModuleList(
        [
            seglosses.DiceLoss(mode="multiclass", class_weights=[1.0, 1.0, 1.0]),
            seglosses.FocalLoss(mode="multiclass", alpha=[0.6, 0.2, 0.2]),
        ]
    )
    other.load_state_dict(state)
    expected = seglosses.F.dice_loss(x, t, mode="multiclass", class_weights=[0.2, 1.0, 3.0]) + seglosses.F.focal_loss(
        x, t, mode="multiclass", alpha=torch.tensor([0.2, 0.3, 0.5])
    )
    other.eval()  # no dropout or statistics: train/eval changes nothing
    torch.testing.assert_close(other[0](x, t) + other[1](x, t), expected, rtol=0, atol=0)
    other.train()
    torch.testing.assert_close(sum(m(x, t) for m in other), expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        ("DiceLoss", "dice"),  # the class name
        ("dice_loss", "dice"),  # the function name (difflib said 'dice_ce')
        ("DICE", "dice"),  # another case (difflib found nothing)
        ("HausdorffDTLoss", "hausdorff_dt"),
        ("ClDiceLoss", "cldice"),
        ("GeneralizedWassersteinDiceLoss", "generalized_wasserstein_dice"),
        ("focal-tversky", "focal_tversky"),
        ("Focal Tversky", "focal_tversky"),
        ("bce", "cross_entropy"),
        ("IoU", "jaccard"),
        ("tverski", "tversky"),  # a typo: difflib, as before
    ],
)
def test_get_loss_unknown_name_points_to_the_registry_name(typed, hint):
    msg = rf"get_loss: `name` must be one of 'asymmetric_focal', .*; got '{typed}' \(did you mean '{hint}'\?\)$"
    with pytest.raises(ValueError, match=msg):
        get_loss(typed, mode="multiclass")
    with pytest.raises(ValueError, match=msg.replace("get_loss", "search_space")):
        search_space(typed)


def test_get_loss_unknown_name_without_a_close_one_has_no_hint():
    with pytest.raises(ValueError, match=r"; got 'hd'$"):
        get_loss("hd", mode="binary")
    with pytest.raises(ValueError, match=r"; got None$"):
        get_loss(None, mode="binary")  # type: ignore[arg-type]


def test_available_losses_are_the_readme_table_and_the_spec_names():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| name (`get_loss`) | function | paper |", 1)[1].split("\n\n", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    readme = {re.match(r"\| `(\w+)`", r).group(1) for r in rows}  # type: ignore[union-attr]
    for r in rows:  # the unified focal row names its four parts: (+ `asymmetric_focal`, ...)
        extra = re.search(r"\(\+ ([^)]*)\)", r)
        if extra:
            readme |= set(re.findall(r"`(\w+)`", extra.group(1)))
    # SPEC section 1 (seeds' examples) and section 8 (the rest of the catalogue), written out here
    spec = {"dice", "focal_tversky", "unified_focal", "boundary", "hausdorff_dt", "cldice", "dice_cldice"}
    spec |= {"log_cosh_dice", "topk", "sensitivity_specificity", "fbeta", "generalized_wasserstein_dice"}
    assert set(available_losses()) == readme
    assert spec <= set(available_losses())
    assert available_losses() == sorted(available_losses())


def test_public_modules_all_list_the_documented_names_only():
    modules = sorted(n for n in dir(losses) if n.endswith("Loss") and not n.startswith("_"))
    assert losses.__all__ == modules
    assert len(modules) == 25
    namespace: dict[str, Any] = {}
    exec("from seglosses.losses import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == modules  # not torch, np, F or the checks
    assert set(registry.__all__) >= {"get_loss", "available_losses"}
    assert all(hasattr(registry, n) and not n.startswith("_") for n in registry.__all__)
    assert set(modules) | {"get_loss", "available_losses", "F", "functional", "metrics"} <= set(seglosses.__all__)
    assert not [n for n in seglosses.__all__ if n.startswith("_") and n != "__version__"]


@pytest.mark.parametrize("name", available_losses())
def test_module_repr_with_every_default_spelled_out_shows_only_the_mode(name):
    cls = _REGISTRY[name]
    params = inspect.signature(cls.__init__).parameters
    kw = {p: v.default for p, v in params.items() if p != "self" and v.default is not inspect.Parameter.empty}
    kw["mode"] = "multiclass"
    extra = ""
    if name == "generalized_wasserstein_dice":
        kw["dist_matrix"] = [[0, 1], [1, 0]]
        extra = ", dist_matrix=[[0.0, 1.0], [1.0, 0.0]]"
    assert repr(cls(**kw)) == f"{cls.__name__}(mode='multiclass'{extra})"


# ---------------------------------------------------------------------------------------------------- typing


@pytest.mark.parametrize("name", available_losses())
def test_module_reduction_is_typed_with_its_choices(name):
    cls = _REGISTRY[name]
    annotation = inspect.signature(cls.__init__).parameters["reduction"].annotation
    literal = eval(annotation, vars(losses)) if isinstance(annotation, str) else annotation  # noqa: S307
    assert typing.get_origin(literal) is typing.Literal
    assert typing.get_args(literal) == cls._reductions  # type: ignore[attr-defined]


USER_SCRIPT = '''
"""A user's script: the API as README shows it, with the types a checker must infer, and typos it must reject."""

from __future__ import annotations

from typing import assert_type

import torch
from torch import Tensor

import seglosses
from seglosses import F, metrics
from seglosses.distance import DistanceMapTransform, signed_distance


def train_step(logits: Tensor, target: Tensor) -> Tensor:
    assert_type(F.dice_loss(logits, target, mode="multiclass"), Tensor)
    assert_type(seglosses.DiceCELoss(mode="multiclass", include_background=False)(logits, target), Tensor)
    boundary = seglosses.BoundaryLoss(mode="multiclass")
    assert_type(boundary(logits, target, signed_distance(target, mode="multiclass", num_classes=4)), Tensor)
    loss = seglosses.get_loss("focal_tversky", mode="multiclass", gamma=0.75)
    loss.to(torch.float64)
    return seglosses.TverskyLoss(mode="multiclass", alpha=0.2, beta=0.8)(logits, target)


def validate(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    assert_type(metrics.dice(logits, target, mode="multiclass", average="macro", ignore_index=255), Tensor)
    tp, fp, fn, tn = metrics.confusion(logits, target, mode="multiclass", ignore_index=255)
    assert_type(tp, Tensor)
    assert_type(metrics.hausdorff(logits, target, mode="multiclass", percentile=95), Tensor)
    m = metrics.SegmentationMetrics(mode="multiclass", num_classes=4, include_background=False)
    m.update(logits, target)
    return m.compute()


names: list[str] = seglosses.available_losses()
transform = DistanceMapTransform(mode="multiclass", num_classes=4, kind="unsigned")
x = torch.zeros(1, 2, 4, 4)
t = torch.zeros(1, 4, 4, dtype=torch.long)
F.dice_loss(x, t, mode="multiclas")  # type: ignore[arg-type]
seglosses.DiceLoss(mode="multiclas")  # type: ignore[arg-type]
seglosses.DiceLoss(mode="multiclass", reduction="avg")  # type: ignore[arg-type]
seglosses.ComboLoss(mode="multiclass", reduction="sum")  # type: ignore[arg-type]
seglosses.UnifiedFocalLoss(mode="multiclass", reduction="none")  # type: ignore[arg-type]
seglosses.LovaszLoss(mode="multiclass", classes="every")  # type: ignore[arg-type]
metrics.dice(x, t, mode="multiclass", average="mean")  # type: ignore[arg-type]
metrics.SegmentationMetrics(mode="multiclass", num_classes=2, average="mean")  # type: ignore[arg-type]
DistanceMapTransform(mode="multiclass", kind="sign")  # type: ignore[arg-type]
'''


def test_user_script_passes_mypy_strict(tmp_path):
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT), encoding="utf-8")
    # --strict warns about an unused "type: ignore": each typo above must be an arg-type error, each assert_type
    # must hold (a Module call was Any: "Returning Any from function declared to return Tensor")
    args = ["--strict", "--no-error-summary", "--python-version", "3.11", "--cache-dir", str(tmp_path / "cache")]
    out, err, status = api.run([*args, str(script)])
    assert status == 0, out + err


# ---------------------------------------------------------------------------------------------------- metrics


def test_segmentation_metrics_repr_shows_every_non_default_argument():
    from seglosses.metrics import SegmentationMetrics

    assert (
        repr(SegmentationMetrics(mode="multiclass", num_classes=3))
        == "SegmentationMetrics(mode='multiclass', num_classes=3)"
    )
    m = SegmentationMetrics(
        mode="multiclass", num_classes=3, metrics=("dice",), ignore_index=255, include_background=False, zero_division=0
    )
    # ignore_index, include_background and zero_division change the numbers: they were missing from the repr
    assert repr(m) == (
        "SegmentationMetrics(mode='multiclass', num_classes=3, metrics=('dice',), ignore_index=255, "
        "include_background=False, zero_division=0)"
    )
    b = SegmentationMetrics(mode="binary", num_classes=1, threshold=0.3, from_logits=True, surface=("hd95",))
    assert repr(b) == (
        "SegmentationMetrics(mode='binary', num_classes=1, threshold=0.3, from_logits=True, surface=('hd95',))"
    )


def test_class_weights_from_numpy_as_sklearn_gives_them() -> None:
    """sklearn's ``compute_class_weight`` returns a NumPy array: accepted as the same list (function and Module)."""
    from seglosses import F

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    w = np.array([0.5, 2.0, 1.5])
    want = F.dice_loss(x, t, mode="multiclass", class_weights=[0.5, 2.0, 1.5])
    assert torch.equal(F.dice_loss(x, t, mode="multiclass", class_weights=w), want)
    assert torch.equal(F.dice_loss(x, t, mode="multiclass", class_weights=np.array([1, 4, 3])),
                       F.dice_loss(x, t, mode="multiclass", class_weights=[1.0, 4.0, 3.0]))  # fmt: skip
    module = seglosses.DiceLoss(mode="multiclass", class_weights=w)
    torch.testing.assert_close(module(x.float(), t), want.float())
    with pytest.raises(TypeError, match=r"`class_weights` must be a sequence of numbers, a 1-D tensor or a NumPy arr"):
        F.dice_loss(x, t, mode="multiclass", class_weights=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"`class_weights` must hold finite values >= 0; got \[1.0, -1.0, 1.0\]"):
        F.dice_loss(x, t, mode="multiclass", class_weights=np.array([1.0, -1.0, 1.0]))


def test_tune_and_compare_hint_the_registry_name_of_a_class_or_function_name() -> None:
    pytest.importorskip("optuna")
    from seglosses.cli.tune import tune

    with pytest.raises(ValueError, match=r"got 'DiceLoss' \(did you mean 'dice'\?\)"):
        tune("DiceLoss", progress=False)
    with pytest.raises(ValueError, match=r"got 'focal-tversky' \(did you mean 'focal_tversky'\?\)"):
        tune("focal-tversky", progress=False)
    with pytest.raises(ValueError, match=r"got 'HausdorffDTLoss' \(did you mean 'hausdorff_dt'\?\)"):
        seglosses.compare(["HausdorffDTLoss"], data="synthetic:binary", out=None, progress=False, log=lambda _: None)
