"""The loss Modules as nn.Modules: copies, state_dict, dtype/device conversion of the buffers, repr, mutation,
containers and hooks, TorchScript, and ``get_loss``'s errors. The reference for a Module's value is the functional
API with the same arguments (the Module is one call of it)."""

from __future__ import annotations

import copy
import inspect
import io
import pickle
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import seglosses.functional as SF
from seglosses.registry import _REGISTRY, available_losses, get_loss

M3 = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]]


def _data(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ch = 1 if mode == "binary" else 3
    x = torch.randn(2, ch, 6, 7, generator=g)
    if mode == "multiclass":
        return x, torch.randint(0, 3, (2, 6, 7), generator=g)
    return x, (torch.rand(2, ch, 6, 7, generator=g) < 0.4).float()


def _configs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every registry loss in every mode it supports, plain and with each buffer it can hold."""
    for name in available_losses():
        cls = _REGISTRY[name]
        params = inspect.signature(cls.__init__).parameters
        for mode in cls._modes:  # type: ignore[attr-defined]
            base: dict[str, Any] = {"mode": mode}
            if name == "generalized_wasserstein_dice":
                base["dist_matrix"] = M3
            yield name, base
            if mode != "binary" and "class_weights" in params:
                yield name, {**base, "class_weights": [0.1, 2.0, 0.7]}
            if mode == "multiclass" and name == "focal":
                yield name, {**base, "alpha": [0.2, 0.3, 0.5]}
            if mode == "multiclass" and name == "hybrid_focal":
                yield name, {**base, "focal_alpha": [0.2, 0.3, 0.5]}


CONFIGS = list(_configs())
IDS = [f"{n}-{'-'.join(f'{k}' for k in kw if k != 'mode')}-{kw['mode']}".replace("--", "-") for n, kw in CONFIGS]


def _function(name: str) -> Any:
    return _REGISTRY[name]._function  # type: ignore[attr-defined]


def _torch_save_load(m: torch.nn.Module) -> torch.nn.Module:
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_module_copies_state_dict_and_dtypes_keep_the_value(name, kw):
    x, t = _data(kw["mode"])
    expected = _function(name)(x, t, **kw)
    m = get_loss(name, **kw)
    torch.testing.assert_close(m(x, t), expected, rtol=0, atol=0)
    # pickle (DataLoader workers, spawn), deepcopy, torch.save: equal values and repr
    for copied in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m), _torch_save_load(m)):
        assert repr(copied) == repr(m)
        torch.testing.assert_close(copied(x, t), expected, rtol=0, atol=0)
    # state_dict round trip into a fresh Module with the same arguments
    fresh = get_loss(name, **kw)
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(fresh(x, t), expected, rtol=0, atol=0)
    # .double() keeps the buffers' values; a float32 input still gives a float32 loss
    d = copy.deepcopy(m).double()
    assert all(b.dtype == torch.float64 for b in d.buffers())
    out = d(x, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    # .half(): the buffers are rounded to float16 (documented), the loss is the function's with those weights
    h = copy.deepcopy(m).half()
    rounded = dict(kw)
    for key in ("class_weights", "alpha", "focal_alpha", "dist_matrix"):
        if key in kw:
            rounded[key] = torch.tensor(kw[key]).half().float()
            assert getattr(h, key).dtype == torch.float16
    out = h(x, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _function(name)(x, t, **rounded), rtol=1e-6, atol=1e-7)
    # meta device: the shape of the loss, and a repr that does not read the buffers' data
    meta = copy.deepcopy(m).to("meta")
    assert meta(x.to("meta"), t.to("meta")).shape == expected.shape
    assert repr(meta).startswith(type(m).__name__ + "(")
    # hooks and containers
    seen: list[torch.Tensor] = []
    handle = m.register_forward_hook(lambda mod, args, out: seen.append(out))
    torch.nn.ModuleDict({"loss": m})["loss"](x, t)
    handle.remove()
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("key", ["class_weights", "alpha"])
def test_module_state_dict_with_and_without_buffers_is_a_clear_error(key):
    kw: dict[str, Any] = {"mode": "multiclass", key: [0.2, 0.3, 0.5]}
    name = "focal" if key == "alpha" else "dice"
    weighted, plain = get_loss(name, **kw), get_loss(name, mode="multiclass")
    assert list(weighted.state_dict()) == [key]
    assert list(plain.state_dict()) == []
    with pytest.raises(RuntimeError, match=rf'Unexpected key\(s\) in state_dict: "{key}"'):
        plain.load_state_dict(weighted.state_dict())
    with pytest.raises(RuntimeError, match=rf'Missing key\(s\) in state_dict: "{key}"'):
        weighted.load_state_dict(plain.state_dict())


def test_module_repr_shows_float32_buffers_as_written_and_meta_buffers_without_data():
    m = get_loss("dice", mode="multiclass", class_weights=[0.1, 0.3, 0.7])
    # float32 0.1 is 0.100000001490116...: shown as the shortest decimal that gives it back
    assert repr(m) == "DiceLoss(mode='multiclass', class_weights=[0.1, 0.3, 0.7])"
    f = get_loss("focal", mode="multiclass", alpha=[0.2, 0.3, 0.5], gamma=1.0)
    assert repr(f) == "FocalLoss(mode='multiclass', alpha=[0.2, 0.3, 0.5], gamma=1.0)"
    # bfloat16 0.2 is 0.2001953125 exactly (8 significant bits: 0.2 * 2**10 = 204.8 -> 205 / 1024)
    assert (
        repr(copy.deepcopy(f).bfloat16())
        == "FocalLoss(mode='multiclass', alpha=[0.20019531, 0.30078125, 0.5], gamma=1.0)"
    )
    assert repr(m.to("meta")) == "DiceLoss(mode='multiclass', class_weights=<torch.float32 (3,) on meta>)"
    g = get_loss("generalized_wasserstein_dice", mode="multiclass", dist_matrix=[[0.0, 0.1], [0.1, 0.0]])
    assert repr(g) == "GeneralizedWassersteinDiceLoss(mode='multiclass', dist_matrix=[[0.0, 0.1], [0.1, 0.0]])"


@pytest.mark.parametrize(
    ("name", "attr", "value", "exc", "msg"),
    [
        ("tversky", "alpha", -0.5, ValueError, r"tversky_loss: `alpha` must be >= 0; got -0.5"),
        ("dice", "reduction", "bogus", ValueError, r"dice_loss: `reduction` must be one of 'mean', 'sum', 'none'"),
        ("combo", "reduction", "sum", ValueError, r"combo_loss: `reduction` must be one of 'mean'; got 'sum'"),
        ("dice", "mode", "multilable", ValueError, r"dice_loss: `mode` must be one of .*did you mean 'multilabel'"),
        ("unified_focal", "mode", "multilabel", ValueError, r"unified_focal_loss: `mode` must be one of 'binary', "),
        ("dice", "smooth", float("nan"), ValueError, r"dice_loss: `smooth` must be finite; got nan"),
        ("focal", "gamma", -2.0, ValueError, r"focal_loss: `gamma` must be >= 0; got -2"),
        ("dice", "per_image", 1, TypeError, r"dice_loss: `per_image` must be a bool; got int 1"),
        ("dice", "ignore_index", 1.5, TypeError, r"dice_loss: `ignore_index` must be an int or None; got float"),
        ("lovasz", "classes", "bogus", ValueError, r"lovasz_loss: `classes` must be one of 'present', 'all'"),
        ("topk", "k", 0.0, ValueError, r"topk_loss: `k` must be > 0; got 0"),
        (
            "dice",
            "class_weights",
            torch.tensor([-1.0, 1.0, 1.0]),
            ValueError,
            r"dice_loss: `class_weights` must hold finite values >= 0; got \[-1.0, 1.0, 1.0\]",
        ),
        ("boundary", "spacing", (1.0, 2.0, 3.0), ValueError, r"boundary_loss: `spacing` must have one value per"),
    ],
)
def test_module_attribute_set_after_construction_is_checked_at_call_time(name, attr, value, exc, msg):
    x, t = _data("multiclass")
    m = get_loss(name, mode="multiclass")
    setattr(m, attr, value)
    with pytest.raises(exc, match=msg):
        m(x, t)


def test_module_attribute_set_after_construction_is_used():
    x, t = _data("multiclass", seed=1)
    m = get_loss("tversky", mode="multiclass")
    m.alpha, m.beta = 0.6, 0.2
    expected = SF.tversky_loss(x, t, mode="multiclass", alpha=0.6, beta=0.2)
    torch.testing.assert_close(m(x, t), expected, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_module_torch_jit_script_is_refused_by_name():
    m = get_loss("dice", mode="binary")
    msg = r"DiceLoss: torch.jit.script is not supported by the seglosses losses"
    with pytest.raises(NotImplementedError, match=msg):
        torch.jit.script(m)
    with pytest.raises(NotImplementedError, match=msg):  # inside a container too
        torch.jit.script(torch.nn.Sequential(torch.nn.Identity(), m))


@pytest.mark.parametrize(
    ("name", "key", "msg"),
    [
        (
            "tversky",
            "alpah",
            r"get_loss: TverskyLoss \('tversky'\) takes no argument 'alpah' \(did you mean 'alpha'\?\)",
        ),
        (
            "dice",
            "weight",
            r"takes no argument 'weight' \(did you mean 'class_weights'\?\); it takes mode, from_logits",
        ),
        ("tversky", "gama", r"TverskyLoss \('tversky'\) takes no argument 'gama'; it takes mode, from_logits, alpha"),
    ],
)
def test_get_loss_unknown_keyword_names_it_with_a_hint(name, key, msg):
    with pytest.raises(TypeError, match=msg):
        get_loss(name, mode="binary", **{key: 0.3})


def test_get_loss_unknown_name_and_unsupported_mode():
    with pytest.raises(ValueError, match=r"get_loss: `name` must be one of .*got 'Dice' \(did you mean 'dice'\?\)"):
        get_loss("Dice", mode="binary")
    with pytest.raises(ValueError, match=r"unified_focal_loss: `mode` must be one of 'binary', 'multiclass' for this"):
        get_loss("unified_focal", mode="multilabel")
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'mode'"):
        get_loss("dice")
