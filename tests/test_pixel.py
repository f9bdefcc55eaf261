"""Pixel-wise losses (cross entropy, focal) against the NumPy reference and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seglosses.functional as SF
from helpers import assert_close, check_reference

CASES = [
    ("binary", "hard"),
    ("binary", "soft"),
    ("multiclass", "index"),
    ("multiclass", "onehot"),
    ("multiclass", "soft"),
    ("multilabel", "hard"),
    ("multilabel", "soft"),
]
PIXEL = ["cross_entropy_loss", "focal_loss"]


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
@pytest.mark.parametrize("name", PIXEL)
def test_pixel_loss_matches_reference(make_case, name, mode, target, dims, from_logits):
    case = make_case(mode, dims=dims, target=target, from_logits=from_logits, seed=20 + dims)
    check_reference(name, case)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "soft")])
@pytest.mark.parametrize("name", PIXEL)
def test_pixel_loss_ignore_index_and_reduction_match_reference(make_case, name, mode, target, reduction):
    case = make_case(mode, target=target, ignore=True, seed=22)
    out = check_reference(name, case, reduction=reduction)
    if reduction == "none":
        # multiclass (N, *S); binary/multilabel the input's shape; ignored elements are 0
        assert tuple(out.shape) == tuple(case.t.shape)
        assert (out[case.t == 255] == 0).all()


@pytest.mark.parametrize("squeeze", [False, True])
def test_pixel_loss_reduction_none_shape_binary(make_case, squeeze):
    case = make_case("binary", squeeze=squeeze, seed=23)
    for name in PIXEL:
        assert tuple(getattr(SF, name)(case.x, case.t, mode="binary", reduction="none").shape) == tuple(case.x.shape)


# ------------------------------------------------------------------------------------------ cross entropy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("mode", "target"), CASES)
def test_cross_entropy_loss_options_match_reference(make_case, mode, target, weighted, label_smoothing, reduction):
    case = make_case(mode, target=target, seed=24)
    kw = {"label_smoothing": label_smoothing, "reduction": reduction}
    if weighted:
        if mode == "binary":
            pytest.skip("class_weights raise in binary mode (tested in test_errors)")
        kw["class_weights"] = [0.5, 2.0, 1.5]
    check_reference("cross_entropy_loss", case, **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("target", ["index", "onehot", "soft"])
def test_cross_entropy_loss_multiclass_equals_torch(make_case, target, weighted, label_smoothing, reduction):
    # multiclass follows torch.nn.functional.cross_entropy exactly
    ignore = target == "index"
    case = make_case("multiclass", target=target, ignore=ignore, dims=3, seed=25)
    w = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64) if weighted else None
    kw = {"label_smoothing": label_smoothing, "reduction": reduction}
    expected = F.cross_entropy(case.x, case.t, weight=w, ignore_index=255 if ignore else -100, **kw)
    got = SF.cross_entropy_loss(
        case.x, case.t, mode="multiclass", class_weights=w, ignore_index=255 if ignore else None, **kw
    )
    if reduction == "none" and ignore:
        expected = torch.where(case.t == 255, 0.0, expected)
    assert_close(got, expected.numpy())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_cross_entropy_loss_bce_equals_torch(make_case, mode, label_smoothing):
    # binary/multilabel: weight c multiplies channel c's BCE, then the mean over all elements (torch's
    # BCE `weight`); label smoothing g -> g (1 - ls) + ls / 2
    case = make_case(mode, target="soft", seed=26)
    kw = {}
    w = None
    if mode == "multilabel":
        kw["class_weights"] = [0.5, 2.0, 1.5]
        w = torch.tensor(kw["class_weights"], dtype=torch.float64).view(1, 3, 1, 1)
    smoothed = case.t * (1 - label_smoothing) + label_smoothing / 2
    expected = F.binary_cross_entropy_with_logits(case.x, smoothed, weight=w)
    got = SF.cross_entropy_loss(case.x, case.t, mode=mode, label_smoothing=label_smoothing, **kw)
    assert_close(got, expected.item())


def test_cross_entropy_loss_alias():
    rng = np.random.default_rng(27)
    x, t = torch.tensor(rng.normal(size=(2, 3, 4, 4))), torch.tensor(rng.integers(0, 3, size=(2, 4, 4)))
    assert_close(SF.cross_entropy(x, t, mode="multiclass"), SF.cross_entropy_loss(x, t, mode="multiclass").numpy())


def test_cross_entropy_loss_hand_derived_2x2():
    # binary probabilities p = [[.5, .25], [1, 0]], g = [[1, 0], [1, 0]]:
    # terms -log .5, -log .75, -log 1 = 0, -log 1 = 0 (0 * log 0 = 0), mean over 4 pixels
    p = torch.tensor([[[[0.5, 0.25], [1.0, 0.0]]]], dtype=torch.float64)
    g = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    expected = (math.log(2) + math.log(4 / 3)) / 4
    assert_close(SF.cross_entropy_loss(p, g, mode="binary", from_logits=False), expected, rtol=1e-12)


# ------------------------------------------------------------------------------------------------ focal


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("alpha", ["auto", None, 0.6])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("binary", "soft"), ("multilabel", "soft")])
def test_focal_loss_binary_hyperparameters_match_reference(make_case, mode, target, alpha, gamma):
    check_reference("focal_loss", make_case(mode, target=target, seed=28), alpha=alpha, gamma=gamma)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, (0.2, 0.5, 0.3), (1.0, 2.0, 3.0)])
@pytest.mark.parametrize("target", ["index", "onehot", "soft"])
def test_focal_loss_multiclass_hyperparameters_match_reference(make_case, target, alpha, gamma):
    check_reference("focal_loss", make_case("multiclass", target=target, seed=29), alpha=alpha, gamma=gamma)


def test_focal_loss_hand_derived_binary():
    # one positive pixel with p = .8 and one negative with p = .4, alpha = .25, gamma = 2:
    # [-.25 * .2^2 * log .8 - .75 * .4^2 * log .6] / 2
    p = torch.tensor([[[0.8, 0.4]]], dtype=torch.float64)
    g = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    expected = (-0.25 * 0.04 * math.log(0.8) - 0.75 * 0.16 * math.log(0.6)) / 2
    assert_close(SF.focal_loss(p, g, mode="binary", from_logits=False), expected, rtol=1e-12)


def test_focal_loss_binary_default_alpha_is_quarter(make_case):
    case = make_case("binary", target="hard", seed=30)
    default = SF.focal_loss(case.x, case.t, mode="binary")
    assert_close(default, SF.focal_loss(case.x, case.t, mode="binary", alpha=0.25).numpy(), rtol=1e-12)


def test_focal_loss_multiclass_default_alpha_is_none(make_case):
    case = make_case("multiclass", target="index", seed=31)
    default = SF.focal_loss(case.x, case.t, mode="multiclass")
    assert_close(default, SF.focal_loss(case.x, case.t, mode="multiclass", alpha=None).numpy(), rtol=1e-12)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
def test_focal_loss_gamma0_equals_cross_entropy(make_case, mode, target, dims):
    # gamma = 0 and alpha = None equal cross_entropy exactly
    ignore = target in ("index", "hard")
    case = make_case(mode, target=target, dims=dims, ignore=ignore, seed=32)
    kw = case.args()
    for reduction in ("mean", "sum", "none"):
        fl = SF.focal_loss(case.x, case.t, gamma=0.0, alpha=None, reduction=reduction, **kw)
        ce = SF.cross_entropy_loss(case.x, case.t, reduction=reduction, **kw)
        assert_close(fl, ce.numpy(), rtol=1e-10)


def test_focal_loss_soft_target_per_class_sum_differs_from_torchvision():
    # soft targets use the two-class sum form; torchvision's sigmoid_focal_loss uses
    # p_t = p g + (1 - p)(1 - g), which differs for soft g. At g = .5, p = .5 ours is
    # -[.25 * .5 * .5^2 log .5 + .75 * .5 * .5^2 log .5] = .125 log 2
    p = torch.tensor([[[0.5]]], dtype=torch.float64)
    g = torch.tensor([[[0.5]]], dtype=torch.float64)
    assert_close(SF.focal_loss(p, g, mode="binary", from_logits=False), 0.125 * math.log(2), rtol=1e-12)
