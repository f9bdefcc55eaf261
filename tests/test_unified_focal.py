"""Unified focal loss (Yeung et al. 2022) and its four components against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses.functional as SF
from helpers import assert_close, check_reference

CASES = [
    ("binary", "hard"),
    ("binary", "soft"),
    ("multiclass", "index"),
    ("multiclass", "onehot"),
    ("multiclass", "soft"),
]
COMPONENTS = [
    "asymmetric_focal_loss",
    "symmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "symmetric_focal_tversky_loss",
]
UNIFIED = ["unified_focal_loss", *COMPONENTS]


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
@pytest.mark.parametrize("name", UNIFIED)
def test_unified_focal_loss_matches_reference(make_case, name, mode, target, dims, from_logits):
    case = make_case(mode, dims=dims, target=target, from_logits=from_logits, seed=60 + dims)
    check_reference(name, case)


@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("binary", "soft"), ("multiclass", "index")])
@pytest.mark.parametrize("name", UNIFIED)
def test_unified_focal_loss_ignore_index_matches_reference(make_case, name, mode, target):
    check_reference(name, make_case(mode, target=target, ignore=True, dims=3, seed=62))


@pytest.mark.parametrize(
    "kw",
    [
        {"weight": 0.2},
        {"delta": 0.8},
        {"gamma": 0.2},
        {"asymmetric": False},
        {"asymmetric": False, "delta": 0.3, "gamma": 0.75, "weight": 0.9},
        {"smooth": 1.0},
    ],
)
@pytest.mark.parametrize(("mode", "target"), [("binary", "soft"), ("multiclass", "index")])
def test_unified_focal_loss_hyperparameters_match_reference(make_case, mode, target, kw):
    check_reference("unified_focal_loss", make_case(mode, target=target, seed=63), **kw)


@pytest.mark.parametrize("kw", [{"delta": 0.4}, {"gamma": 0.5}, {"delta": 0.9, "gamma": 3.0}])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "soft")])
@pytest.mark.parametrize("name", ["asymmetric_focal_loss", "symmetric_focal_loss"])
def test_unified_focal_loss_focal_components_hyperparameters(make_case, name, mode, target, kw):
    check_reference(name, make_case(mode, target=target, seed=64), **kw)


@pytest.mark.parametrize("kw", [{"delta": 0.4}, {"gamma": 0.5}, {"delta": 0.9, "gamma": 0.1}, {"smooth": 1.0}])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "soft")])
@pytest.mark.parametrize("name", ["asymmetric_focal_tversky_loss", "symmetric_focal_tversky_loss"])
def test_unified_focal_loss_tversky_components_hyperparameters(make_case, name, mode, target, kw):
    check_reference(name, make_case(mode, target=target, seed=65), **kw)


@pytest.mark.parametrize("asymmetric", [True, False])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index")])
def test_unified_focal_loss_equals_weighted_sum_of_components(make_case, mode, target, asymmetric):
    # L = weight * L_F + (1 - weight) * L_FT with the unified delta and gamma passed to both parts
    case = make_case(mode, target=target, ignore=True, seed=66)
    kw = case.args()
    prefix = "asymmetric" if asymmetric else "symmetric"
    out = SF.unified_focal_loss(case.x, case.t, weight=0.3, delta=0.65, gamma=0.4, asymmetric=asymmetric, **kw)
    lf = getattr(SF, f"{prefix}_focal_loss")(case.x, case.t, delta=0.65, gamma=0.4, **kw)
    lft = getattr(SF, f"{prefix}_focal_tversky_loss")(case.x, case.t, delta=0.65, gamma=0.4, smooth=1e-7, **kw)
    assert_close(out, (0.3 * lf + 0.7 * lft).numpy(), rtol=1e-12)


def test_unified_focal_loss_binary_equals_two_class_multiclass(make_case):
    # binary mode works on the two classes [1 - p, p]: the same as multiclass with probabilities [1 - p, p]
    case = make_case("binary", target="hard", from_logits=False, seed=67)
    p2 = torch.cat([1 - case.x, case.x], dim=1)
    t2 = case.t[:, 0].long()
    for name in UNIFIED:
        a = getattr(SF, name)(case.x, case.t, mode="binary", from_logits=False)
        b = getattr(SF, name)(p2, t2, mode="multiclass", from_logits=False)
        assert_close(a, b.numpy(), rtol=1e-10)


def test_unified_focal_loss_image_fully_ignored_counts_with_mti_one(make_case):
    # an image with no kept pixel counts with mTI = 1 (its L_FT terms are 0), so the
    # Tversky part is half the one of the other image alone
    case = make_case("multiclass", target="index", seed=68)
    t = case.t.clone()
    t[1] = 255
    for name in ("asymmetric_focal_tversky_loss", "symmetric_focal_tversky_loss"):
        fn = getattr(SF, name)
        x = case.xg()
        both = fn(x, t, mode="multiclass", ignore_index=255)
        alone = fn(case.x[:1], t[:1], mode="multiclass", ignore_index=255)
        assert_close(both, (alone / 2).numpy(), rtol=1e-10)
        both.backward()
        assert torch.isfinite(x.grad).all()
        assert (x.grad[1] == 0).all()


def test_unified_focal_loss_hand_derived_binary():
    # one image, two pixels, binary probabilities p = (.9, .2), g = (1, 0), defaults delta .6, gamma .5.
    # classes [bg, fg]: p_bg = (.1, .8), g_bg = (0, 1); p_fg = (.9, .2), g_fg = (1, 0)
    # L_F per pixel: pixel 1 rare term .6 * -log .9; pixel 2 background .4 * (1 - .8)^.5 * -log .8
    lf = (0.6 * -np.log(0.9) + 0.4 * 0.2**0.5 * -np.log(0.8)) / 2
    # L_FT: bg TP = .8, FN = .2 (pixel 2: 1 - .8), FP = .1; fg TP = .9, FN = .1, FP = .2
    eps = 1e-7
    mti_bg = (0.8 + eps) / (0.8 + 0.6 * 0.2 + 0.4 * 0.1 + eps)
    mti_fg = (0.9 + eps) / (0.9 + 0.6 * 0.1 + 0.4 * 0.2 + eps)
    lft = ((1 - mti_bg) + (1 - mti_fg) ** 0.5) / 2
    p = torch.tensor([[[0.9, 0.2]]], dtype=torch.float64)
    g = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    assert_close(SF.unified_focal_loss(p, g, mode="binary", from_logits=False), 0.5 * lf + 0.5 * lft, rtol=1e-10)


def test_unified_focal_loss_default_hyperparameters(make_case):
    # unified: delta .6, gamma .5, weight .5, smooth 1e-7; components: delta .7 and gamma 2 (focal) or .75
    case = make_case("multiclass", target="index", seed=69)
    x, t = case.x, case.t
    kw = {"mode": "multiclass"}
    explicit = SF.unified_focal_loss(x, t, weight=0.5, delta=0.6, gamma=0.5, asymmetric=True, smooth=1e-7, **kw)
    assert_close(SF.unified_focal_loss(x, t, **kw), explicit.numpy(), rtol=1e-12)
    for name, defaults in [
        ("asymmetric_focal_loss", {"delta": 0.7, "gamma": 2.0}),
        ("symmetric_focal_loss", {"delta": 0.7, "gamma": 2.0}),
        ("asymmetric_focal_tversky_loss", {"delta": 0.7, "gamma": 0.75, "smooth": 1e-7}),
        ("symmetric_focal_tversky_loss", {"delta": 0.7, "gamma": 0.75, "smooth": 1e-7}),
    ]:
        fn = getattr(SF, name)
        assert_close(fn(x, t, **kw), fn(x, t, **defaults, **kw).numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "name", ["symmetric_focal_tversky_loss", "asymmetric_focal_tversky_loss", "unified_focal_loss"]
)
@pytest.mark.parametrize("path", [{}, {"fused": False}, {"ops": False, "native": False}])
def test_bad_class_index_without_value_checks_gives_nan(name, path):
    # with value checks off (a GPU's default) a class index >= C poisons the statistics: the loss is NaN, not the
    # finite number that reading the NaN base of (1 - mTI)^(1 - gamma) as 0 gave
    import seglosses
    from seglosses import _dispatch

    g = torch.Generator().manual_seed(41)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 5, 6), generator=g)
    t[1, 2, 3] = 3
    seglosses.set_value_checks("never")
    try:
        with _dispatch.use(**path):
            assert torch.isnan(getattr(SF, name)(x, t, mode="multiclass"))
    finally:
        seglosses.set_value_checks("cpu")


def test_symmetric_focal_tversky_gamma_one_is_a_constant_with_a_zero_gradient():
    # gamma = 1: every class term is (1 - mTI)^0 = 1; the loss is the constant 1, still a function of the input
    # (backward runs and gives 0), as on the whole-loss path
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 5, 6))
    loss = SF.symmetric_focal_tversky_loss(x, t, mode="multiclass", gamma=1.0)
    assert loss.item() == 1.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
