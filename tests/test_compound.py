"""Compound losses (Dice + CE, Combo, hybrid focal) against the reference and against their parts."""

from __future__ import annotations

import math

import pytest

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
COMPOUND = ["dice_ce_loss", "combo_loss", "hybrid_focal_loss"]


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
@pytest.mark.parametrize("name", COMPOUND)
def test_compound_loss_matches_reference(make_case, name, mode, target, dims, from_logits):
    case = make_case(mode, dims=dims, target=target, from_logits=from_logits, seed=40 + dims)
    check_reference(name, case)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "target"), [("multiclass", "index"), ("multilabel", "soft")])
@pytest.mark.parametrize("name", COMPOUND)
def test_compound_loss_options_match_reference(make_case, name, mode, target, per_image, include_background, weighted):
    case = make_case(mode, target=target, ignore=target == "index", seed=42)
    kw = {"per_image": per_image, "include_background": include_background}
    if weighted:
        kw["class_weights"] = [0.5, 2.0, 1.5]
    check_reference(name, case, **kw)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("name", COMPOUND)
def test_compound_loss_binary_ignore_matches_reference(make_case, name, per_image):
    check_reference(name, make_case("binary", target="hard", ignore=True, dims=3, seed=43), per_image=per_image)


# ---------------------------------------------------------------------------------------------- Dice + CE


@pytest.mark.parametrize(
    "kw",
    [
        {"ce_weight": 0.5, "dice_weight": 0.5},
        {"ce_weight": 0.0, "dice_weight": 2.0},
        {"ce_weight": 1.5, "dice_weight": 0.0},
        {"smooth": 0.5, "squared": True},
        {"log_loss": True},
        {"label_smoothing": 0.2},
    ],
)
@pytest.mark.parametrize(("mode", "target"), [("binary", "soft"), ("multiclass", "index"), ("multilabel", "hard")])
def test_dice_ce_loss_hyperparameters_match_reference(make_case, mode, target, kw):
    check_reference("dice_ce_loss", make_case(mode, target=target, seed=44), **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "soft")])
def test_dice_ce_loss_equals_weighted_sum_of_parts(make_case, mode, target, per_image, reduction):
    # ce_weight * cross_entropy + dice_weight * dice_loss; class weights go to both
    # terms; with per_image only the Dice term is per image
    case = make_case(mode, target=target, ignore=True, seed=45)
    kw = case.args(reduction=reduction)
    cw = {"class_weights": [0.5, 2.0, 1.5]} if mode != "binary" else {}
    out = SF.dice_ce_loss(
        case.x, case.t, ce_weight=0.7, dice_weight=1.3, smooth=0.5, label_smoothing=0.1, per_image=per_image, **cw, **kw
    )
    ce = SF.cross_entropy_loss(case.x, case.t, label_smoothing=0.1, **cw, **kw)
    dice = SF.dice_loss(case.x, case.t, smooth=0.5, per_image=per_image, **cw, **kw)
    assert_close(out, (0.7 * ce + 1.3 * dice).numpy(), rtol=1e-12)


# ------------------------------------------------------------------------------------------------- Combo


@pytest.mark.parametrize("kw", [{"alpha": 0.3}, {"beta": 0.8}, {"alpha": 0.9, "beta": 0.2, "smooth": 0.1}])
@pytest.mark.parametrize(("mode", "target"), [("binary", "soft"), ("multiclass", "index"), ("multilabel", "hard")])
def test_combo_loss_hyperparameters_match_reference(make_case, mode, target, kw):
    check_reference("combo_loss", make_case(mode, target=target, seed=46), **kw)


def test_combo_loss_is_alpha_wce_minus_dice_score(make_case):
    # Taghanaki et al. 2019: alpha * L_wce - (1 - alpha) * D with D the mean Dice score; at beta = .5
    # L_wce is half the BCE on the probabilities
    case = make_case("binary", target="hard", seed=47)
    out = SF.combo_loss(case.x, case.t, mode="binary", alpha=0.4, beta=0.5)
    bce = SF.cross_entropy_loss(case.x, case.t, mode="binary")
    dice = SF.dice_loss(case.x, case.t, mode="binary")
    assert_close(out, (0.4 * 0.5 * bce - 0.6 * (1 - dice)).numpy(), rtol=1e-12)


def test_combo_loss_can_be_negative(make_case):
    # the paper's definition: near-perfect predictions give -(1 - alpha) * D < 0
    case = make_case("binary", target="hard", seed=48)
    x = (case.t * 2 - 1) * 20.0
    out = SF.combo_loss(x, case.t, mode="binary")
    assert out < 0
    assert_close(out, -0.5, rtol=1e-6)


# ------------------------------------------------------------------------------------------ hybrid focal


@pytest.mark.parametrize(
    "kw",
    [
        {"weight": 0.2},
        {"focal_alpha": None, "focal_gamma": 1.0},
        {"tversky_alpha": 0.6, "tversky_beta": 0.4, "tversky_gamma": 2.0},
        {"smooth": 0.2},
    ],
)
@pytest.mark.parametrize(("mode", "target"), [("binary", "soft"), ("multiclass", "index"), ("multilabel", "hard")])
def test_hybrid_focal_loss_hyperparameters_match_reference(make_case, mode, target, kw):
    if mode == "multiclass" and kw.get("focal_alpha", "auto") is None:
        kw = {**kw, "focal_alpha": (0.2, 0.3, 0.5)}
    check_reference("hybrid_focal_loss", make_case(mode, target=target, seed=49), **kw)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "soft")])
def test_hybrid_focal_loss_equals_weighted_sum_of_parts(make_case, mode, target, per_image):
    case = make_case(mode, target=target, ignore=True, seed=50)
    kw = case.args()
    cw = {"class_weights": [0.5, 2.0, 1.5]} if mode != "binary" else {}
    out = SF.hybrid_focal_loss(
        case.x,
        case.t,
        weight=0.3,
        focal_gamma=1.5,
        tversky_alpha=0.4,
        tversky_beta=0.6,
        tversky_gamma=1.2,
        smooth=0.5,
        per_image=per_image,
        **cw,
        **kw,
    )
    fl = SF.focal_loss(case.x, case.t, gamma=1.5, **kw)
    ftl = SF.focal_tversky_loss(
        case.x, case.t, alpha=0.4, beta=0.6, gamma=1.2, smooth=0.5, per_image=per_image, **cw, **kw
    )
    assert_close(out, (0.3 * fl + 0.7 * ftl).numpy(), rtol=1e-12)


@pytest.mark.parametrize("value", [3, -1])
def test_combo_bad_class_index_without_value_checks_gives_nan(value):
    # with value checks off (a GPU's default) a class index outside [0, C) makes the loss NaN; it raised 'index out
    # of bounds' from the scatter of the class terms (a device assert on a GPU)
    import torch

    import seglosses

    g = torch.Generator().manual_seed(41)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 5, 6), generator=g)
    t[1, 2, 3] = value
    seglosses.set_value_checks("never")
    try:
        loss = SF.combo_loss(x, t, mode="multiclass")
        loss.backward()
    finally:
        seglosses.set_value_checks("cpu")
    assert torch.isnan(loss)


# ---------------------------------------------------------------------------------------------------------------------
# a weight of exactly 0 leaves its term out: 0 * inf would be NaN (an exactly wrong probability, from_logits=False)
# ---------------------------------------------------------------------------------------------------------------------


def _wrong_binary_probabilities():
    import torch

    # pixel 0 is foreground predicted with probability exactly 0: -log 0 = inf in every cross-entropy-like term
    p = torch.tensor([[[[0.0, 0.3, 0.8, 0.1]]]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]], dtype=torch.float64)
    return p, g


@pytest.mark.parametrize(
    ("name", "kwargs", "alone"),
    [
        ("dice_ce_loss", {"ce_weight": 0.0, "dice_weight": 0.7}, lambda p, g: 0.7 * SF.dice_loss(p, g, **_PROB)),
        ("combo_loss", {"alpha": 0.0}, lambda p, g: SF.dice_loss(p, g, **_PROB) - 1),
        ("hybrid_focal_loss", {"weight": 0.0}, lambda p, g: SF.focal_tversky_loss(p, g, **_PROB)),
        (
            "unified_focal_loss",
            {"weight": 0.0},
            lambda p, g: SF.asymmetric_focal_tversky_loss(p, g, delta=0.6, gamma=0.5, smooth=1e-7, **_PROB),
        ),
    ],
)
def test_a_zero_weight_leaves_an_infinite_term_out(name, kwargs, alone):
    import torch

    p, g = _wrong_binary_probabilities()
    inf_part = {"dice_ce_loss": SF.cross_entropy_loss, "combo_loss": SF.cross_entropy_loss,
                "hybrid_focal_loss": SF.focal_loss, "unified_focal_loss": SF.asymmetric_focal_loss}[name]  # fmt: skip
    assert torch.isinf(inf_part(p, g, **_PROB)), "the case must make the left-out term infinite"
    got = getattr(SF, name)(p, g, **_PROB, **kwargs)
    want = alone(p, g)
    assert torch.isfinite(got)
    assert_close(got, want.detach())
    (grad,) = torch.autograd.grad(got, p)
    (want_grad,) = torch.autograd.grad(want, p)
    assert torch.isfinite(grad).all()
    assert_close(grad, want_grad)


def test_dice_ce_zero_dice_weight_leaves_an_infinite_log_dice_out():
    import torch

    p, g = _wrong_binary_probabilities()
    p0 = torch.zeros_like(p, requires_grad=True)  # predicts nothing: Dice 0, -log 0 = inf with smooth = 0
    assert torch.isinf(SF.dice_loss(p0, g, smooth=0.0, log_loss=True, **_PROB))
    got = SF.dice_ce_loss(p0 + 0.25, g, smooth=0.0, log_loss=True, dice_weight=0.0, **_PROB)
    assert_close(got, SF.cross_entropy_loss(p0 + 0.25, g, **_PROB).detach())
    got = SF.dice_ce_loss(p0, g, smooth=0.0, log_loss=True, ce_weight=1.0, dice_weight=0.0, **_PROB)
    assert torch.isinf(got)  # the CE of an exactly-0 prediction is inf itself: nothing is hidden
    # an infinite log Dice beside a finite CE: no foreground, p = 0.25 everywhere, so with smooth = 0 Dice is
    # 0 / (sum p) = 0 and -log 0 = inf, while CE = -log(1 - 0.25) at each of the 4 pixels, d/dp = 1 / (4 * 0.75)
    q = torch.full((1, 1, 1, 4), 0.25, dtype=torch.float64, requires_grad=True)
    empty = torch.zeros(1, 1, 1, 4, dtype=torch.float64)
    assert torch.isinf(SF.dice_loss(q, empty, smooth=0.0, log_loss=True, **_PROB))
    got = SF.dice_ce_loss(q, empty, smooth=0.0, log_loss=True, dice_weight=0.0, **_PROB)
    assert_close(got, -math.log(0.75))
    (grad,) = torch.autograd.grad(got, q)
    assert_close(grad, [[[[1 / 3] * 4]]])


def test_every_weight_zero_keeps_the_graph():
    p, g = _wrong_binary_probabilities()
    loss = SF.hybrid_focal_loss(p.detach().clamp(0.2, 0.8).requires_grad_(), g, weight=0.0, **_PROB) * 0
    loss.backward()  # still part of the graph


_PROB = {"mode": "binary", "from_logits": False}
