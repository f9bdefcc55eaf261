"""Region losses (dice, jaccard, tversky, focal Tversky, generalized Dice) against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses.functional as SF
from helpers import assert_close, check_reference
from reference import generalized_dice_loss as ref_gdl
from reference import sudre_weights

CASES = [
    ("binary", "hard"),
    ("binary", "soft"),
    ("multiclass", "index"),
    ("multiclass", "onehot"),
    ("multiclass", "soft"),
    ("multilabel", "hard"),
    ("multilabel", "soft"),
]
REGION = ["dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"]
WEIGHTED = ["dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss"]  # accept class_weights


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
@pytest.mark.parametrize("name", REGION)
def test_region_loss_matches_reference(make_case, name, mode, target, dims, from_logits):
    case = make_case(mode, dims=dims, target=target, from_logits=from_logits, seed=dims)
    check_reference(name, case)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@pytest.mark.parametrize("name", WEIGHTED)
def test_region_loss_options_match_reference(make_case, name, mode, per_image, include_background, reduction, weighted):
    case = make_case(mode, target="index" if mode == "multiclass" else "soft", seed=3)
    kw = {"per_image": per_image, "include_background": include_background, "reduction": reduction}
    if weighted:
        kw["class_weights"] = [0.5, 2.0, 1.5]
    out = check_reference(name, case, **kw)
    n_kept = 3 if include_background else 2
    expected_shape = {"mean": (), "sum": (), "none": (2, n_kept) if per_image else (n_kept,)}[reduction]
    assert tuple(out.shape) == expected_shape


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("name", WEIGHTED)
def test_region_loss_binary_options_match_reference(make_case, name, per_image, reduction):
    case = make_case("binary", target="soft", seed=4)
    out = check_reference(name, case, per_image=per_image, reduction=reduction)
    assert tuple(out.shape) == {"mean": (), "sum": (), "none": (2, 1) if per_image else (1,)}[reduction]


@pytest.mark.parametrize("name", WEIGHTED)
def test_region_loss_class_weights_of_kept_classes(make_case, name):
    # class_weights may have length C or the number of kept classes
    case = make_case("multiclass", target="index", seed=5)
    full = getattr(SF, name)(case.x, case.t, mode="multiclass", include_background=False, class_weights=[9.0, 2, 1])
    kept = getattr(SF, name)(case.x, case.t, mode="multiclass", include_background=False, class_weights=[2.0, 1])
    assert_close(kept, full.detach().numpy(), rtol=1e-12)
    check_reference(name, case, include_background=False, class_weights=[2.0, 1.0])


@pytest.mark.parametrize("from_logits", [True, False])  # probabilities take the generic (non-fused) statistics
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "soft")])
@pytest.mark.parametrize("name", REGION)
def test_region_loss_ignore_index_matches_reference(make_case, name, mode, target, per_image, from_logits):
    case = make_case(mode, target=target, ignore=True, dims=3, seed=6, from_logits=from_logits)
    check_reference(name, case, per_image=per_image)


@pytest.mark.parametrize(
    "kw",
    [
        {"smooth": 0.0},
        {"smooth": 0.1},
        {"squared": True},
        {"log_loss": True},
        {"squared": True, "log_loss": True, "smooth": 2.0},
    ],
)
@pytest.mark.parametrize(("mode", "target"), [("binary", "soft"), ("multiclass", "index"), ("multilabel", "hard")])
def test_dice_loss_hyperparameters_match_reference(make_case, mode, target, kw):
    check_reference("dice_loss", make_case(mode, target=target, seed=7), **kw)


@pytest.mark.parametrize("kw", [{"smooth": 0.0}, {"smooth": 3.0}])
def test_jaccard_loss_smooth_matches_reference(make_case, kw):
    check_reference("jaccard_loss", make_case("multiclass", target="soft", seed=8), **kw)


@pytest.mark.parametrize(
    "kw",
    [{"alpha": 0.5, "beta": 0.5}, {"alpha": 0.9, "beta": 0.1}, {"alpha": 1.0, "beta": 1.0, "smooth": 0.5}],
)
@pytest.mark.parametrize("name", ["tversky_loss", "focal_tversky_loss"])
def test_tversky_loss_hyperparameters_match_reference(make_case, name, kw):
    check_reference(name, make_case("multiclass", target="index", seed=9), **kw)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 4.0 / 3.0, 2.0])
def test_focal_tversky_loss_gamma_matches_reference(make_case, gamma):
    check_reference("focal_tversky_loss", make_case("multilabel", target="soft", seed=10), gamma=gamma)


def test_tversky_loss_alpha_weights_false_positives():
    # one image, binary: p = 1 everywhere on a target with one positive pixel out of four.
    # TP = 1, FP = 3, FN = 0; smooth = 0: T = 1 / (1 + alpha * 3)
    p = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    g = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    out = SF.tversky_loss(p, g, mode="binary", from_logits=False, alpha=0.2, beta=0.9, smooth=0.0)
    assert_close(out, 1 - 1 / (1 + 0.2 * 3), rtol=1e-12)


def test_dice_loss_hand_derived_2x2():
    # p = [[1, 0], [.5, .5]], g = [[1, 0], [1, 0]]: TP = 1.5, FP = .5, FN = .5;
    # D = (3 + 1) / (3 + 1 + 1) = 0.8 with smooth = 1; squared: (3 + 1) / (sum p^2 = 1.5 + sum g^2 = 2 + 1)
    p = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]], dtype=torch.float64)
    g = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    assert_close(SF.dice_loss(p, g, mode="binary", from_logits=False), 0.2, rtol=1e-12)
    assert_close(SF.dice_loss(p, g, mode="binary", from_logits=False, squared=True), 1 - 4 / 4.5, rtol=1e-12)
    assert_close(SF.dice_loss(p, g, mode="binary", from_logits=False, log_loss=True), -np.log(0.8), rtol=1e-12)
    # jaccard: (1.5 + 1) / (1.5 + .5 + .5 + 1)
    assert_close(SF.jaccard_loss(p, g, mode="binary", from_logits=False), 1 - 2.5 / 3.5, rtol=1e-12)


def test_dice_loss_empty_target_still_penalises_false_positives():
    # never zero the loss of a class absent from the target.
    g = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    p = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    # TP = 0, FP = 1, FN = 0: D = 1 / 2
    assert_close(SF.dice_loss(p, g, mode="binary", from_logits=False), 0.5, rtol=1e-12)
    # empty predicted empty: D = 1, loss 0
    assert_close(SF.dice_loss(torch.zeros_like(p), g, mode="binary", from_logits=False), 0.0)


# ----------------------------------------------------------------------------------- generalized Dice


def test_generalized_dice_loss_binary_hand_derived_2x2():
    # binary as [1 - p, p]: p = [1, 0, .5, .5], g = [1, 0, 1, 0]; both classes have G = 2, so the
    # normalised weights are 1/2 each; TP_bg = 1 + .5 = 1.5, TP_fg = 1.5; P + G = 4 for each class:
    # 1 - (2 * 1.5 + 1) / (4 + 1) = 0.2
    p = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]], dtype=torch.float64)
    g = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=torch.float64)
    assert_close(SF.generalized_dice_loss(p, g, mode="binary", from_logits=False), 0.2, rtol=1e-12)


def test_generalized_dice_loss_sudre_weights_reference():
    # the reference's weight rule, by hand: G = (1, 2, 0) -> raw (1, 1/4, absent -> max = 1), sum 1
    np.testing.assert_allclose(sudre_weights(np.array([1.0, 2.0, 0.0])), [4 / 9, 1 / 9, 4 / 9])
    np.testing.assert_allclose(sudre_weights(np.zeros(3)), [1 / 3] * 3)


@pytest.mark.parametrize("per_image", [False, True])
def test_generalized_dice_loss_absent_class_takes_largest_weight(make_case, per_image):
    case = make_case("multiclass", target="index", seed=11)
    t = case.t.clone()
    t[t == 2] = 1  # class 2 absent from every image
    t[0][t[0] == 1] = 0  # image 0: only class 0 present
    x = case.xg()
    out = SF.generalized_dice_loss(x, t, mode="multiclass", per_image=per_image)
    assert_close(out, ref_gdl(case.x_np, t.numpy(), mode="multiclass", per_image=per_image))
    out.backward()
    assert torch.isfinite(x.grad).all()
    # the absent class's false positives are penalised: raising its logit raises the loss
    x2 = case.x.clone()
    x2[:, 2] += 2.0
    assert SF.generalized_dice_loss(x2, t, mode="multiclass", per_image=per_image) > out


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_generalized_dice_loss_no_class_present_equal_weights(mode):
    # a target with no class present: equal weights, so the loss is the plain two-class formula
    # 1 - (2 sum TP + s) / (sum (P + G) + s) with TP = G = 0 in every kept class
    rng = np.random.default_rng(12)
    c = {"binary": 1, "multiclass": 3, "multilabel": 3}[mode]
    x = torch.tensor(rng.normal(size=(2, c, 4, 5)))
    t = torch.zeros(2, c, 4, 5, dtype=torch.float64)
    if mode == "binary":
        # [1 - g, g] with g = 0 everywhere has the background present: use include_background=False
        out = SF.generalized_dice_loss(x, t, mode=mode, include_background=False)
        psum = torch.sigmoid(x).sum().item()
    elif mode == "multiclass":
        out = SF.generalized_dice_loss(x, t, mode=mode)  # one-hot with no class: an all-zero soft target
        psum = torch.softmax(x, 1).sum().item()
    else:
        out = SF.generalized_dice_loss(x, t, mode=mode)
        psum = torch.sigmoid(x).sum().item()
    w = 1.0 / (1 if mode == "binary" else 3)
    assert_close(out, 1 - 1 / (w * psum + 1))


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_generalized_dice_loss_binary_foreground_only_equals_dice(make_case, target, per_image):
    # include_background=False in binary mode keeps only the foreground of the pair;
    # with one class the normalised weight is 1, which is the Dice loss with the same smooth
    case = make_case("binary", target=target, seed=13)
    kw = {"mode": "binary", "per_image": per_image}
    gdl = SF.generalized_dice_loss(case.x, case.t, include_background=False, **kw)
    dice = SF.dice_loss(case.x, case.t, **kw)
    assert_close(gdl, dice.numpy(), rtol=1e-12)
    check_reference("generalized_dice_loss", case, include_background=False, per_image=per_image)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "soft")])
def test_generalized_dice_loss_reduction_matches_reference(
    make_case, mode, target, include_background, per_image, reduction
):
    case = make_case(mode, target=target, seed=14)
    out = check_reference(
        "generalized_dice_loss",
        case,
        include_background=include_background,
        per_image=per_image,
        reduction=reduction,
    )
    # reduction="none" is (N,) with per_image, else a scalar
    assert tuple(out.shape) == ((2,) if per_image and reduction == "none" else ())


def test_generalized_dice_loss_weights_are_normalised():
    # normalising the weights to sum 1 makes smooth comparable to Dice's: with a single class present
    # in multilabel mode per class... check directly that scaling the counts (more pixels with the same
    # proportions) changes the loss only through smooth, as a normalised weight implies
    rng = np.random.default_rng(15)
    x = rng.normal(size=(1, 3, 4, 4))
    t = rng.integers(0, 3, size=(1, 4, 4))
    t.reshape(-1)[:3] = [0, 1, 2]
    x2, t2 = np.tile(x, (1, 1, 2, 1)), np.tile(t, (1, 2, 1))
    for xa, ta in ((x, t), (x2, t2)):
        out = SF.generalized_dice_loss(torch.tensor(xa), torch.tensor(ta), mode="multiclass", smooth=1.0)
        assert_close(out, ref_gdl(xa, ta, mode="multiclass", smooth=1.0))
