"""The peers' own loss test vectors, reproduced with our functions under the mapped arguments.

Every case below copies the inputs and the expected number that a peer's test file states (the comment names the
repository, the file and the case), spells out how the peer's arguments map onto ours, and compares our value
with the peer's tolerance (or rtol 1e-4 where the peer gives fewer digits). Nothing optional is imported: the
numbers are written here. Expected values that a peer's test derives by a formula (kornia) are written as that
formula.

Peer cases that cannot map onto our arguments are left out on purpose (no test that cannot fail):

- MONAI ``soft_label=True`` (its |p| + |g| - |p - g| intersection): we use the product form for soft targets
  (SPEC 3). ``other_act=torch.tanh`` / ``log_softmax`` (values outside [0, 1]), ``smooth_nr != smooth_dr`` (two
  smoothing constants), ``GeneralizedDiceLoss(w_type="simple")``, the all-empty target of ``GeneralizedDiceLoss``
  (MONAI's weights are all 0 there, loss 0; ours are equal, so false positives count: SPEC 3).
- MONAI ``DiceCELoss`` vectors: its defaults apply no activation for the Dice term while the CE term reads the
  same tensor as logits (``from_logits`` reads it one way); the binary case uses ``pos_weight`` (not offered).
  ``DiceFocalLoss`` and ``test_ignore_index_losses`` state no numbers (random inputs).
- MONAI ``MaskedDiceLoss`` with ``sigmoid=True``: its vectors (0.500, 0.422969, 0.47033) mask the logits before the
  sigmoid (masked pixels enter as p = 0.5, g = 0); ``ignore_index`` removes them. The case without activation maps.
- MONAI ``FocalLoss(weight=...)`` (a per-channel multiplier): ``focal_loss`` has no class weights.
- segmentation_models_pytorch: Dice/Jaccard/Tversky "worst case" ``y_pred=[1, 1, 1]`` on an empty target expects 0
  (SMP zeroes the loss of a class absent from the target; we penalise those false positives, SPEC 3). ``MCCLoss``:
  not offered. The focal and class-weight tests state no numbers (orderings and random inputs).
- kornia ``dice_loss(average="micro")`` (one Dice over all classes pooled; its default) and ``tversky_loss`` (always
  pooled over classes, FP = FN): not offered. ``lovasz_softmax_loss(weight=...)``: not offered (and kornia < 0.9
  sorted with the class-index labels in place of each class's foreground mask; 0.9 uses the masks, as ours). Its
  focal tests state no numbers (shapes, random inputs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seglosses.functional as F

# ------------------------------------------------------------------------------------------------ MONAI inputs
# Project-MONAI/MONAI tests/losses/test_{dice,tversky,generalized_dice,masked_dice,hausdorff}_loss.py share these.

# (1, 1, 2, 2) logits and target
X1 = [[[[1.0, -1.0], [-1.0, 1.0]]]]
Y1 = [[[[1.0, 0.0], [1.0, 1.0]]]]
# (2, 1, 2, 2)
X2 = [[[[1.0, -1.0], [-1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]
Y2 = [[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]]
# (2, 1, 2, 2) probabilities, the target equal to them ("soft_label": False)
P3 = [[[[0.3, 0.4], [0.7, 0.9]]], [[[1.0, 0.1], [0.5, 0.3]]]]
# (2, 2, 3) logits, (2, 1, 3) index target as floats (MONAI to_onehot_y=True)
XC = [[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
YC = [[1, 0, 0], [1, 1, 0]]
# (2, 2, 3) probabilities that are one-hot, (2, 1, 3) index target
PC = [[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]
YPC = [[0, 0, 1], [0, 1, 0]]


def t64(x: object) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def idx(x: object) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.int64)


def onehot(x: object, c: int) -> torch.Tensor:
    """Index target (N, *S) -> float one-hot (N, C, *S), as MONAI's to_onehot_y with sigmoid (our multilabel)."""
    t = idx(x)
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).to(torch.float64)


def close(actual: torch.Tensor, expected: object, *, rtol: float, atol: float = 0.0) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------------ MONAI DiceLoss
# Mapping: MONAI DiceLoss(sigmoid=True | softmax=True, to_onehot_y, include_background=b, smooth_nr=smooth_dr=s,
# batch=False (default), squared_pred=q, reduction=r) == dice_loss(mode=binary (one sigmoid channel) | multiclass
# (softmax, index target) | multilabel (sigmoid on C channels, one-hot target), include_background=b, smooth=s,
# per_image=True, squared=q, reduction=r); no activation == from_logits=False. MONAI's rtol: 1e-5.

MONAI_DICE = [
    # (case, mode, input, target, from_logits, kwargs, expected)
    ("case0 sigmoid smooth 1e-6", "binary", X1, Y1, True, {"smooth": 1e-6}, 0.307576),
    ("case1 sigmoid batch of 2", "binary", X2, Y2, True, {"smooth": 1e-4}, 0.416657),
    ("case3 soft_label=False", "binary", P3, P3, False, {"smooth": 1e-4}, 0.307773),
    ("case4 to_onehot_y no bg", "multiclass", PC, YPC, False, {"smooth": 0.0, "include_background": False}, 0.0),
    ("case5 to_onehot_y sigmoid", "multilabel", XC, YC, True, {"smooth": 1e-4}, 0.435050),
    (
        "case6 sigmoid reduction none",
        "multilabel",
        XC,
        YC,
        True,
        {"smooth": 1e-4, "reduction": "none"},
        [[0.296529, 0.415136], [0.599976, 0.428559]],
    ),
    ("case7 softmax", "multiclass", XC, YC, True, {"smooth": 1e-4}, 0.383713),
    ("case8 softmax reduction sum", "multiclass", XC, YC, True, {"smooth": 1e-4, "reduction": "sum"}, 1.534853),
    ("case10 squared_pred (smooth 1e-5)", "binary", X1, Y1, True, {"smooth": 1e-5, "squared": True}, 0.178337),
]


def _monai_target(mode: str, y: object) -> torch.Tensor:
    """MONAI's target in our form: index (multiclass), one-hot of an index target (multilabel), else as given."""
    if mode == "multiclass":
        return idx(y)
    if mode == "multilabel" and np.asarray(y).dtype.kind == "i":
        return onehot(y, 2)
    return t64(y)


@pytest.mark.parametrize(
    ("mode", "x", "y", "from_logits", "kwargs", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in MONAI_DICE],
)
def test_dice_loss_monai_vectors(mode, x, y, from_logits, kwargs, expected):
    # Project-MONAI/MONAI tests/losses/test_dice_loss.py TEST_CASES (and the same rows of test_masked_dice_loss.py)
    out = F.dice_loss(t64(x), _monai_target(mode, y), mode=mode, from_logits=from_logits, per_image=True, **kwargs)
    close(out, expected, rtol=1e-5)


def test_jaccard_loss_monai_dice_jaccard_vector():
    # Project-MONAI/MONAI tests/losses/test_dice_loss.py, {"sigmoid": True, "jaccard": True} on X1/Y1 -> 0.470451.
    # MONAI's jaccard=True computes (2 TP + s) / (2 (TP + FP + FN) + s) with s = smooth_nr = smooth_dr = 1e-5
    # (default): our jaccard_loss with smooth = s / 2, per_image=True (batch=False).
    out = F.jaccard_loss(t64(X1), t64(Y1), mode="binary", smooth=5e-6, per_image=True)
    close(out, 0.470451, rtol=1e-5)


def test_dice_loss_monai_masked_dice_without_activation():
    # Project-MONAI/MONAI tests/losses/test_masked_dice_loss.py, third case: include_background=False,
    # to_onehot_y=True, smooth_nr=smooth_dr=0, no activation, mask [[1, 1, 1]], [[0, 1, 0]] -> 0.0. Without an
    # activation, multiplying p and g by the mask is removing those pixels: our ignore_index on the masked pixels.
    ign = 255
    target = idx([[0, 0, 1], [ign, 1, ign]])
    out = F.dice_loss(
        t64(PC),
        target,
        mode="multiclass",
        from_logits=False,
        smooth=0.0,
        include_background=False,
        ignore_index=ign,
        per_image=True,
    )
    close(out, 0.0, rtol=1e-5, atol=1e-12)


# ------------------------------------------------------------------------------------------------ MONAI TverskyLoss
# Mapping: MONAI TverskyLoss(alpha=a, beta=b, ...) (defaults a = b = 0.5; alpha weights FP, beta FN, as ours) ==
# tversky_loss(alpha=a, beta=b, smooth=s, per_image=not batch, ...), modes as for Dice. MONAI's rtol: 1e-4.

MONAI_TVERSKY = [
    ("case0 sigmoid", "binary", X1, Y1, True, {"smooth": 1e-6}, 0.307576),
    ("case1 sigmoid batch of 2", "binary", X2, Y2, True, {"smooth": 1e-4}, 0.416657),
    ("case3 soft_label=False", "binary", P3, P3, False, {"smooth": 1e-4}, 0.307773),
    ("case4 to_onehot_y no bg", "multiclass", PC, YPC, False, {"smooth": 0.0, "include_background": False}, 0.0),
    ("case6 to_onehot_y sigmoid", "multilabel", XC, YC, True, {"smooth": 1e-4}, 0.435050),
    ("case7 batch=True (smooth 1e-5)", "multilabel", XC, YC, True, {"smooth": 1e-5, "per_image": False}, 0.422979),
    ("case8 sigmoid reduction sum", "multilabel", XC, YC, True, {"smooth": 1e-4, "reduction": "sum"}, 1.74013),
    ("case9 softmax", "multiclass", XC, YC, True, {"smooth": 1e-4}, 0.383713),
    (
        "case10 softmax reduction none",
        "multiclass",
        XC,
        YC,
        True,
        {"smooth": 1e-4, "reduction": "none"},
        [[0.210961, 0.295339], [0.599952, 0.428547]],
    ),
    ("case11 alpha 0.3 beta 0.7", "binary", X1, Y1, True, {"smooth": 1e-6, "alpha": 0.3, "beta": 0.7}, 0.3589),
    ("case12 alpha 0.7 beta 0.3", "binary", X1, Y1, True, {"smooth": 1e-6, "alpha": 0.7, "beta": 0.3}, 0.247366),
]


@pytest.mark.parametrize(
    ("mode", "x", "y", "from_logits", "kwargs", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in MONAI_TVERSKY],
)
def test_tversky_loss_monai_vectors(mode, x, y, from_logits, kwargs, expected):
    # Project-MONAI/MONAI tests/losses/test_tversky_loss.py TEST_CASES
    kw = {"alpha": 0.5, "beta": 0.5, "per_image": True, **kwargs}
    out = F.tversky_loss(t64(x), _monai_target(mode, y), mode=mode, from_logits=from_logits, **kw)
    close(out, expected, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ MONAI GDL
# Mapping: MONAI GeneralizedDiceLoss(w_type="square", smooth_nr=smooth_dr=s, batch=False) uses the raw weights
# w_c = 1 / G_c^2 (an absent class: the largest present weight); ours normalises them to sum 1, which is the same
# score once the smoothing is rescaled: MONAI's s == our smooth = s / W with W = sum_c w_c of that image. W depends
# on the image, so each image is one call with its own smooth; the mean/sum/none over images follows MONAI's
# reduction. MONAI's single sigmoid channel is one class: our binary mode with include_background=False (the
# foreground of the pair). MONAI's rtol: 1e-5.


def _gdl_per_image(x, y, mode, w_sums, s, *, from_logits=True, include_background=True):
    vals = [
        F.generalized_dice_loss(
            x[i : i + 1],
            y[i : i + 1],
            mode=mode,
            from_logits=from_logits,
            smooth=s / w_sums[i],
            include_background=include_background,
        )
        for i in range(x.shape[0])
    ]
    return torch.stack(vals)


def test_generalized_dice_loss_monai_binary_vectors():
    # Project-MONAI/MONAI tests/losses/test_generalized_dice_loss.py
    # case0: sigmoid, s = 1e-6, X1/Y1 -> 0.307576; G = 3, W = 1/9
    out = _gdl_per_image(t64(X1), t64(Y1), "binary", [1 / 9], 1e-6, include_background=False)
    close(out.mean(), 0.307576, rtol=1e-5)
    # case1: sigmoid, s = 1e-4, X2/Y2 -> 0.416597; G = 4 and 2, W = 1/16 and 1/4
    out = _gdl_per_image(t64(X2), t64(Y2), "binary", [1 / 16, 1 / 4], 1e-4, include_background=False)
    close(out.mean(), 0.416597, rtol=1e-5)
    # case3: soft_label=False, no activation, s = 1e-4, P3/P3 -> 0.307748; G = 2.3 and 1.9
    w = [1 / 2.3**2, 1 / 1.9**2]
    out = _gdl_per_image(t64(P3), t64(P3), "binary", w, 1e-4, from_logits=False, include_background=False)
    close(out.mean(), 0.307748, rtol=1e-5)


def test_generalized_dice_loss_monai_multichannel_vectors():
    # Project-MONAI/MONAI tests/losses/test_generalized_dice_loss.py
    # case4: include_background=False, to_onehot_y, no activation, s = 0 -> 0.0 (one kept class)
    out = F.generalized_dice_loss(
        t64(PC), idx(YPC), mode="multiclass", from_logits=False, smooth=0.0, include_background=False, per_image=True
    )
    close(out, 0.0, rtol=1e-5, atol=1e-12)
    # XC/YC: image 0 has G = (2, 1), image 1 G = (1, 2): W = 1/4 + 1 = 1.25 in both, so one call with
    # smooth = 1e-4 / 1.25 and per_image=True is the per-image mapping.
    s = 1e-4 / 1.25
    # case5: to_onehot_y + sigmoid (our multilabel on the one-hot target) -> 0.469964
    out = F.generalized_dice_loss(t64(XC), onehot(YC, 2), mode="multilabel", smooth=s, per_image=True)
    close(out, 0.469964, rtol=1e-5)
    # case6: softmax -> 0.414507; case7: reduction sum -> 0.829015; case8: reduction none -> [0.273476, 0.555539]
    out = F.generalized_dice_loss(t64(XC), idx(YC), mode="multiclass", smooth=s, per_image=True)
    close(out, 0.414507, rtol=1e-5)
    out = F.generalized_dice_loss(t64(XC), idx(YC), mode="multiclass", smooth=s, per_image=True, reduction="sum")
    close(out, 0.829015, rtol=1e-5)
    out = F.generalized_dice_loss(t64(XC), idx(YC), mode="multiclass", smooth=s, per_image=True, reduction="none")
    close(out, [0.273476, 0.555539], rtol=1e-5)


# ------------------------------------------------------------------------------------------------ MONAI FocalLoss
# Project-MONAI/MONAI tests/losses/test_focal_loss.py: input (1, 3, 2, 2) logits, target [[0, 1], [2, 0]].
# Mapping: MONAI FocalLoss(gamma=2, use_softmax=False) with to_onehot_y (or a one-hot target) and alpha=a|None ==
# focal_loss(mode="multilabel", alpha=a|None) on the one-hot target (both: the mean over N*C*pixels).
# MONAI FocalLoss(use_softmax=True) averages over N*C*pixels too, while ours sums the classes of a pixel and
# averages over pixels: ours == C * MONAI. Its scalar alpha there weighs the background 1 - a and the other classes
# a: ours alpha=(1 - a, a, a). MONAI's tolerance: atol = rtol = 1e-4 (scaled by C where we multiply).

FX = [[[[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]]]]
FY = [[[0, 1], [2, 0]]]


def test_focal_loss_monai_sigmoid_vectors():
    x, g = t64(FX), onehot(FY, 3)
    # {"to_onehot_y": True} and {"to_onehot_y": False} with the one-hot target -> 0.34959
    close(F.focal_loss(x, g, mode="multilabel", alpha=None), 0.34959, rtol=1e-4, atol=1e-4)
    # {"to_onehot_y": True, "alpha": 0.8} -> 0.08423
    close(F.focal_loss(x, g, mode="multilabel", alpha=0.8), 0.08423, rtol=1e-4, atol=1e-4)
    # {"to_onehot_y": True, "include_background": False} -> 0.36498: MONAI drops channel 0 before the loss; our
    # focal_loss (a per-pixel loss) has no include_background, so the same channels are passed.
    close(F.focal_loss(x[:, 1:], g[:, 1:], mode="multilabel", alpha=None), 0.36498, rtol=1e-4, atol=1e-4)
    # {"to_onehot_y": True, "reduction": "none"}: the per-element values
    expected = [
        [
            [[0.02266, 0.70187], [0.37741, 0.17329]],
            [[0.70187, 0.02266], [0.37741, 0.17329]],
            [[0.70187, 0.70187], [0.06757, 0.17329]],
        ]
    ]
    close(F.focal_loss(x, g, mode="multilabel", alpha=None, reduction="none"), expected, rtol=1e-4, atol=1e-4)


def test_focal_loss_monai_softmax_vectors():
    x, t = t64(FX), idx(FY)
    # {"to_onehot_y": True, "use_softmax": True} -> 0.16276; ours = 3 * MONAI
    close(F.focal_loss(x, t, mode="multiclass", alpha=None), 3 * 0.16276, rtol=1e-4, atol=3e-4)
    # {"to_onehot_y": True, "alpha": 0.8, "use_softmax": True} -> 0.08138; ours alpha=(0.2, 0.8, 0.8), = 3 * MONAI
    close(F.focal_loss(x, t, mode="multiclass", alpha=(0.2, 0.8, 0.8)), 3 * 0.08138, rtol=1e-4, atol=3e-4)


def test_focal_loss_monai_foreground_vector():
    # test_focal_loss.py test_foreground: logits channel 0 = 1, channel 1 = 0 on a 5x5 image; the target is that
    # input with pixel (2, 2) switched to channel 1. MONAI (sigmoid, alpha None) -> 0.1116 with the background and
    # 0.1733 without it (assertAlmostEqual places=3: |diff| < 5e-4).
    x = torch.cat([torch.ones(1, 1, 5, 5), torch.zeros(1, 1, 5, 5)], 1).to(torch.float64)
    g = x.clone()
    g[:, 0, 2, 2], g[:, 1, 2, 2] = 0.0, 1.0
    close(F.focal_loss(x, g, mode="multilabel", alpha=None), 0.1116, rtol=0, atol=5e-4)
    close(F.focal_loss(x[:, 1:], g[:, 1:], mode="multilabel", alpha=None), 0.1733, rtol=0, atol=5e-4)


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_focal_loss_monai_very_good_prediction(alpha):
    # test_focal_loss.py test_multi_class_seg_2d: 6 classes, logits 1000 * one_hot - 500 -> 0 (places=3), sigmoid
    # (our multilabel on the one-hot target) and softmax (our multiclass; MONAI's scalar alpha a: (1 - a, a, ...)).
    t = idx([[[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]]])
    g = torch.nn.functional.one_hot(t, 6).movedim(-1, 1).to(torch.float64)
    x = 1000 * g - 500
    close(F.focal_loss(x, g, mode="multilabel", alpha=alpha), 0.0, rtol=0, atol=5e-4)
    a_mc = None if alpha is None else (1 - alpha,) + (alpha,) * 5
    close(F.focal_loss(x, t, mode="multiclass", alpha=a_mc), 0.0, rtol=0, atol=5e-4)


# ------------------------------------------------------------------------------------------------ MONAI HD-DT
# Project-MONAI/MONAI tests/losses/test_hausdorff_loss.py (rtol 1e-5), and LogHausdorffDTLoss on the same cases
# (expected log(1 + value), elementwise for reduction none).
# Mapping (our hausdorff_dt_loss docstring): HausdorffDTLoss(alpha=2, include_background=b, batch=False,
# sigmoid=True | softmax=True + to_onehot_y, reduction=r) == hausdorff_dt_loss(alpha=2, include_background=b,
# per_image=True, reduction=r), binary for one sigmoid channel, multilabel for several (to_onehot_y: one-hot
# target), multiclass for softmax; LogHausdorffDTLoss == log_loss=True.

HX3 = [[[[[1.0, -1.0], [1.0, -1.0]], [[-1.0, 1.0], [-1.0, 1.0]]]]]
HY3 = [[[[[1.0, 0.0], [1.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]]]
HX2C = [[[[1.0, -1.0], [-1.0, 1.0]], [[1.0, -1.0], [-1.0, 1.0]]]]
HY2C = [[[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]]
HXC = [[[[-1.0], [0.0], [1.0]], [[1.0], [0.0], [-1.0]]], [[[0.0], [0.0], [0.0]], [[0.0], [0.0], [0.0]]]]
HYC = [[[1], [0], [0]], [[1], [1], [0]]]

MONAI_HD = [
    ("case0 sigmoid 2D", "binary", X1, Y1, {}, 0.509329),
    ("case1 sigmoid 3D (1, 2, 2)", "binary", [X1], [Y1], {}, 0.509329),
    ("case2 sigmoid 3D (2, 2, 2)", "binary", HX3, HY3, {}, 0.375718),
    ("case3 two sigmoid channels", "multilabel", HX2C, HY2C, {"include_background": True}, 0.326994),
    ("case4 batch of 2 (a full mask)", "binary", X2, Y2, {}, 0.455082),
    ("case5 no background", "multilabel", HX2C, HY2C, {"include_background": False}, 0.144659),
    (
        "case6 to_onehot_y sigmoid none",
        "multilabel",
        HXC,
        HYC,
        {"include_background": True, "reduction": "none"},
        [[0.407765, 0.407765], [0.5, 0.5]],
    ),
    ("case7 softmax", "multiclass", HXC, HYC, {"include_background": True}, 0.357016),
    ("case8 softmax sum", "multiclass", HXC, HYC, {"include_background": True, "reduction": "sum"}, 1.428062),
]


@pytest.mark.parametrize("log_loss", [False, True])
@pytest.mark.parametrize(
    ("mode", "x", "y", "kwargs", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in MONAI_HD],
)
def test_hausdorff_dt_loss_monai_vectors(mode, x, y, kwargs, expected, log_loss):
    out = F.hausdorff_dt_loss(t64(x), _monai_target(mode, y), mode=mode, per_image=True, log_loss=log_loss, **kwargs)
    want = np.log1p(np.asarray(expected)) if log_loss else expected
    close(out, want, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ MONAI others


@pytest.mark.parametrize("shape", [(7, 3, 11, 10), (2, 3, 13, 14, 5)])
def test_cldice_losses_monai_all_ones(shape):
    # Project-MONAI/MONAI tests/losses/test_cldice_loss.py: SoftclDiceLoss() and SoftDiceclDiceLoss() on all-ones
    # probabilities and targets -> 0.0 (atol = rtol = 1e-4). Mapping (our cldice_loss docstring): no activation ==
    # from_logits=False, iter_=3 == iterations=3, smooth 1, per image; the channels as multilabel classes.
    ones = torch.ones(shape, dtype=torch.float64)
    kw = {"mode": "multilabel", "from_logits": False, "iterations": 3, "per_image": True}
    close(F.cldice_loss(ones, ones, **kw), 0.0, rtol=1e-4, atol=1e-4)
    close(F.dice_cldice_loss(ones, ones, **kw), 0.0, rtol=1e-4, atol=1e-4)


def test_unified_focal_loss_monai_perfect_prediction():
    # Project-MONAI/MONAI tests/losses/test_unified_focal_loss.py: AsymmetricUnifiedFocalLoss() on probabilities
    # equal to the binary target [[1, 0], [0, 1]] (two images) -> 0.0 (atol = rtol = 1e-4). MONAI works on the pair
    # [1 - p, p] of one channel: our binary mode with from_logits=False (weight 0.5, delta 0.6, gamma 0.5 both).
    p = t64([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [0.0, 1.0]]]])
    close(F.unified_focal_loss(p, p, mode="binary", from_logits=False), 0.0, rtol=1e-4, atol=1e-4)


IGNORE_LOSSES = {
    "dice": F.dice_loss,
    "tversky": F.tversky_loss,
    "focal": F.focal_loss,
    "unified_focal": F.unified_focal_loss,
}


@pytest.mark.parametrize("name", sorted(IGNORE_LOSSES))
def test_ignore_index_monai_invariance(name):
    # Project-MONAI/MONAI tests/losses/test_ignore_index_losses.py (no numbers: invariances on random inputs).
    # test_loss_ignore_consistency: binary, target rows 2-3 = 255 (ignored), logits there moved by +5: same loss.
    # test_loss_ignore_class_index: softmax with to_onehot_y, ignore_index = a class (0 or 1) whose rows hold that
    # class, the ignored channel's logits there moved by +5: same loss. Mapping: ignore_index=255 / 0 / 1.
    fn = IGNORE_LOSSES[name]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    moved = x.clone()
    moved[0, 0, 2:, :] += 5.0
    t = t64([[[[1, 0, 1, 0], [0, 1, 0, 1], [255] * 4, [255] * 4]]])
    a, b = fn(x, t, mode="binary", ignore_index=255), fn(moved, t, mode="binary", ignore_index=255)
    close(b, a.item(), rtol=1e-12)
    t = torch.zeros(1, 4, 4, dtype=torch.int64)
    t[:, 2:, :] = 1
    for ign, rows in ((0, slice(0, 2)), (1, slice(2, 4))):
        x = torch.randn(1, 2, 4, 4, generator=gen, dtype=torch.float64)
        moved = x.clone()
        moved[:, ign, rows, :] += 5.0
        a, b = fn(x, t, mode="multiclass", ignore_index=ign), fn(moved, t, mode="multiclass", ignore_index=ign)
        close(b, a.item(), rtol=1e-12)


def _gwdl_onehot(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(t, 2).movedim(-1, 1).to(torch.float64)


@pytest.mark.parametrize("dims", [2, 3])
def test_generalized_wasserstein_dice_loss_monai_vectors(dims):
    # Project-MONAI/MONAI tests/losses/test_generalized_wasserstein_dice_loss.py test_bin_seg_2d / _3d and
    # test_empty_class_2d: dist_matrix [[0, 1], [1, 0]], weighting_mode="default" (ours), logits 1000 * one_hot of
    # the target (-> 0) and of 1 - target (-> 1), places=3 (|diff| < 5e-4). Index targets.
    square = [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    t = idx([square]) if dims == 2 else idx([[square, square, square]])
    m = [[0.0, 1.0], [1.0, 0.0]]
    for target in (t, torch.zeros_like(t)):
        good, poor = 1000 * _gwdl_onehot(target), 1000 * _gwdl_onehot(1 - target)
        close(
            F.generalized_wasserstein_dice_loss(good, target, mode="multiclass", dist_matrix=m), 0.0, rtol=0, atol=5e-4
        )
        close(
            F.generalized_wasserstein_dice_loss(poor, target, mode="multiclass", dist_matrix=m), 1.0, rtol=0, atol=5e-4
        )


# ------------------------------------------------------------------------------------------------ SMP
# qubvel-org/segmentation_models.pytorch tests/test_losses.py. SMP's scores use smooth = 0 (eps only clamps the
# denominator): ours smooth=0.0 (where SMP's eps would give 0/eps we define 0/0 = 1; SMP masks those classes).
# SMP's tensors are flat vectors: ours (N=1, *S) binary, or per row (dims=[1]) as two images with per_image=True.


@pytest.mark.parametrize(
    ("y_true", "y_pred", "dice", "jaccard"),
    [
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0, 1.0),
        ([0, 1, 1, 0], [0, 1, 1, 0], 1.0, 1.0),
        ([1, 1, 1, 1], [1, 1, 0, 0], 2.0 / 3.0, 0.5),
    ],
)
def test_region_losses_smp_score_vectors(y_true, y_pred, dice, jaccard):
    # test_soft_dice_score, test_soft_jaccard_score, test_soft_tversky_score (alpha = beta = 0.5, the Dice value);
    # SMP's tolerance pytest.approx(expected, 1e-5) (relative). Our loss = 1 - SMP's score.
    g, p = t64([y_true]), t64([y_pred])
    kw = {"mode": "binary", "from_logits": False, "smooth": 0.0}
    close(1 - F.dice_loss(p, g, **kw), dice, rtol=1e-5)
    close(1 - F.jaccard_loss(p, g, **kw), jaccard, rtol=1e-5)
    close(1 - F.tversky_loss(p, g, alpha=0.5, beta=0.5, **kw), dice, rtol=1e-5)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([[1, 1, 0, 0], [0, 0, 1, 1]], [[1, 1, 0, 0], [0, 0, 1, 1]], 1.0),
        ([[1, 1, 0, 0], [0, 0, 1, 1]], [[0, 0, 1, 0], [0, 1, 0, 0]], 0.0),
        ([[1, 1, 0, 0], [0, 0, 0, 1]], [[1, 1, 0, 0], [0, 0, 0, 0]], 0.5),
    ],
)
def test_jaccard_loss_smp_rowwise_vectors(y_true, y_pred, expected):
    # test_soft_jaccard_score_2: soft_jaccard_score(dims=[1]) per row, then the mean: rows as images, per_image=True.
    out = F.jaccard_loss(t64(y_pred), t64(y_true), mode="binary", from_logits=False, smooth=0.0, per_image=True)
    close(1 - out, expected, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("loss", ["dice", "jaccard", "tversky"])
@pytest.mark.parametrize(
    ("y_pred", "y_true", "expected"),
    [
        ([1.0, 1.0, 1.0], [1, 1, 1], 0.0),
        ([1.0, 0.0, 1.0], [1, 0, 1], 0.0),
        ([0.0, 0.0, 0.0], [0, 0, 0], 0.0),
        ([1.0, 0.0, 1.0], [0, 1, 0], 1.0),
        ([0.0, 0.0, 0.0], [1, 1, 1], 1.0),
    ],
)
def test_region_losses_smp_binary_vectors(loss, y_pred, y_true, expected):
    # test_dice_loss_binary, test_tversky_loss_binary (alpha = beta = 0.5), test_binary_jaccard_loss:
    # DiceLoss / JaccardLoss / TverskyLoss(mode="binary", from_logits=False) on (1, 1, 1, 3); abs tolerance 1e-5.
    # ([1, 1, 1] on an empty target: SMP expects 0, see the module docstring; ours is 1.)
    fn = {"dice": F.dice_loss, "jaccard": F.jaccard_loss, "tversky": F.tversky_loss}[loss]
    kw = {"alpha": 0.5, "beta": 0.5} if loss == "tversky" else {}
    p, g = t64(y_pred).view(1, 1, 1, -1), t64(y_true).view(1, 1, 1, -1)
    close(fn(p, g, mode="binary", from_logits=False, smooth=0.0, **kw), expected, rtol=0, atol=1e-5)


def test_jaccard_loss_smp_multiclass_multilabel_vectors():
    # test_multiclass_jaccard_loss / test_multilabel_jaccard_loss: JaccardLoss(from_logits=False); every class is
    # present in each target, so SMP's masking of absent classes plays no part. abs tolerance 1e-5.
    kw = {"from_logits": False, "smooth": 0.0}
    p = t64([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    close(F.jaccard_loss(p, idx([[0, 0, 1, 1]]), mode="multiclass", **kw), 0.0, rtol=0, atol=1e-5)
    close(F.jaccard_loss(p, idx([[1, 1, 0, 0]]), mode="multiclass", **kw), 1.0, rtol=0, atol=1e-5)
    p2 = t64([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])
    close(F.jaccard_loss(p2, idx([[1, 1, 0, 0]]), mode="multiclass", **kw), 1 - 1 / 3, rtol=0, atol=1e-5)
    close(F.jaccard_loss(p, p.clone(), mode="multilabel", **kw), 0.0, rtol=0, atol=1e-5)
    close(F.jaccard_loss(p, 1 - p, mode="multilabel", **kw), 1.0, rtol=0, atol=1e-5)
    p3 = t64([[[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    g3 = t64([[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]])
    close(F.jaccard_loss(p3, g3, mode="multilabel", **kw), 1 - 1 / 3, rtol=0, atol=1e-5)


def test_focal_loss_smp_multiclass_is_c_times_multilabel():
    # Our focal_loss docstring: segmentation_models_pytorch 0.5.0 FocalLoss(mode="multiclass") sums, over the C
    # classes, the mean sigmoid focal loss of logit x_c against [y == c] (segmentation_models_pytorch/losses/focal.py
    # at v0.5.0); ours, mode="multilabel" on the one-hot target, is the mean over classes and pixels: C times less.
    # SMP's value is written here from that definition (alpha None, gamma 2) on MONAI's focal input above.
    x = np.asarray(FX, dtype=np.float64)[0]  # (C, 2, 2)
    y = np.asarray(FY)[0]
    smp = 0.0
    for c in range(3):
        g = (y == c).astype(np.float64)
        p = 1 / (1 + np.exp(-x[c]))
        fl = -(g * (1 - p) ** 2 * np.log(p) + (1 - g) * p**2 * np.log(1 - p))
        smp += fl.mean()
    out = F.focal_loss(t64(FX), onehot(FY, 3), mode="multilabel", alpha=None)
    close(out, smp / 3, rtol=1e-10)
    # the same number is MONAI's 0.34959 (test_focal_loss.py, sigmoid): SMP 0.5.0 would give 3 * 0.34959
    close(torch.tensor(smp), 3 * 0.34959, rtol=1e-4, atol=3e-4)


def test_cross_entropy_smp_soft_ce_vector():
    # test_soft_ce_loss: SoftCrossEntropyLoss(smooth_factor=0.1, ignore_index=-100) on logits +-9 (4 classes, each
    # pixel's own class +9), target [0, 1, -100, 3] -> 1.0125 (abs 1e-4). SMP's smoothing is torch's
    # label_smoothing (1 - e) * nll + e / C * sum_c(-log p_c): ours label_smoothing=0.1. SMP's mean runs over all 4
    # pixels, the ignored one counting 0; ours (as torch) over the 3 kept: ours = 1.0125 * 4 / 3.
    x = t64([[9, -9, -9, -9], [-9, 9, -9, -9], [-9, -9, 9, -9], [-9, -9, -9, 9]]).T[None]  # (1, C=4, S=4)
    t = idx([[0, 1, -100, 3]])
    out = F.cross_entropy_loss(x, t, mode="multiclass", label_smoothing=0.1, ignore_index=-100)
    close(out, 1.0125 * 4 / 3, rtol=0, atol=1e-4 * 4 / 3)


def test_cross_entropy_smp_soft_bce_vector():
    # test_soft_bce_loss: SoftBCEWithLogitsLoss(smooth_factor=0.1, ignore_index=-100), logits [-9, 9, 1, 9, -9],
    # target [0, 1, -100, 1, 0] -> 0.7201 (abs 1e-4). SMP smooths g -> g (1 - s) + (1 - g) s (0.1 / 0.9), which is
    # our g (1 - ls) + ls / 2 with ls = 2 s = 0.2. SMP's mean runs over all 5 elements, the ignored one counting 0;
    # ours over the 4 kept: ours = 0.7201 * 5 / 4.
    x = t64([[-9, 9, 1, 9, -9]])
    t = t64([[0, 1, -100, 1, 0]])
    out = F.cross_entropy_loss(x, t, mode="binary", label_smoothing=0.2, ignore_index=-100)
    close(out, 0.7201 * 5 / 4, rtol=0, atol=1e-4 * 5 / 4)


# ------------------------------------------------------------------------------------------------ kornia
# kornia/kornia tests/losses/. kornia's tolerance in these tests: rtol = atol = 1e-3 unless stated.
# Mapping: kornia dice_loss(pred, target, average="macro", eps=e, weight=w) == dice_loss(mode="multiclass",
# smooth=0.0, per_image=True, class_weights=w) (e only in kornia's denominator: 1e-8 here, below the tolerance;
# kornia's weighted macro mean sum w L / sum w is our class_weights).


def test_dice_loss_kornia_macro_vector():
    # test_dice.py test_averaging_macro: logits (1, 2, 1, 4), class 0 = 10 on pixels 0-2 and 1 on pixel 3, class
    # 1 the reverse; labels all 0 given as (2, 1, 4), which kornia broadcasts against the one logit image: we pass
    # the logits twice (the same two images).
    x = torch.zeros(1, 2, 1, 4, dtype=torch.float64)
    x[:, 0, :, 0:3], x[:, 0, :, 3:4], x[:, 1, :, 0:3], x[:, 1, :, 3:4] = 10.0, 1.0, 1.0, 10.0
    x = x.expand(2, -1, -1, -1)
    t = torch.zeros(2, 1, 4, dtype=torch.int64)
    e1, e10 = math.exp(1.0), math.exp(10.0)
    inter_1 = (3.0 * e10 + e1) / (e1 + e10)
    card_1 = 4.0 + inter_1
    card_2 = (e10 + 3.0 * e1) / (e1 + e10)
    eps = 1e-8
    expected = ((1.0 - 2.0 * inter_1 / (card_1 + eps)) + (1.0 - 0.0 / (card_2 + eps))) / 2.0
    close(F.dice_loss(x, t, mode="multiclass", smooth=0.0, per_image=True), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("weight", "expected"),
    [((1.0, 0.0, 0.0), 0.0), ((0.0, 1.0, 0.0), 1.0), ((0.0, 0.0, 1.0), 1.0 / 5.0), ((0.3, 0.7, 0.0), 0.7)],
)
def test_dice_loss_kornia_macro_weight_vectors(weight, expected):
    # test_dice.py test_weight (avg="macro"): 4 images (1, 4), logits class 0 = 100 at pixel 0, class 2 = 100 at
    # pixels 1-3 (0 elsewhere), labels [0, 1, 2, 2]: class 0 right (0), class 1 missed (1), class 2 2 of 3 (1/5);
    # 0.3/0.7 on classes 0/1 -> 0.7.
    x = torch.zeros(4, 3, 1, 4, dtype=torch.float64)
    x[:, 0, :, 0] = 100.0
    x[:, 2, :, 1:] = 100.0
    t = idx([0, 1, 2, 2]).expand(4, 1, -1)
    out = F.dice_loss(x, t, mode="multiclass", smooth=0.0, per_image=True, class_weights=weight)
    close(out, expected, rtol=1e-3, atol=1e-3)
    # "ignore class 3": a fourth class of logit 0 with weight 0 == the unweighted 3-class loss, kornia's
    # dice_loss(logits, labels, average="macro") = (0 + 1 + 1/5) / 3.
    x4 = torch.cat([x, x.new_zeros(4, 1, 1, 4)], 1)
    out = F.dice_loss(x4, t, mode="multiclass", smooth=0.0, per_image=True, class_weights=(1.0, 1.0, 1.0, 0.0))
    close(out, (0.0 + 1.0 + 0.2) / 3, rtol=1e-3, atol=1e-3)


def test_focal_loss_kornia_numeric_stability_vector():
    # test_focal_loss.py TestBinaryFocalLossWithLogits.test_numeric_stability: logits [[100, -100]], labels
    # [[1, 0]], alpha 0.25, gamma 2, reduction "none" -> [[0, 0]] (kornia's assert_close: float32 defaults, atol
    # 1e-5). binary_focal_loss_with_logits(alpha=a, gamma=g) == focal_loss(mode="binary", alpha=a, gamma=g).
    out = F.focal_loss(t64([[100.0, -100.0]]), t64([[1.0, 0.0]]), mode="binary", alpha=0.25, reduction="none")
    close(out, [[0.0, 0.0]], rtol=1.3e-6, atol=1e-5)


def test_lovasz_loss_kornia_perfect_prediction_vectors():
    # test_lovaz_hinge.py test_perfect_prediction: logits 1 on labels 1, (2, 1, 1, 2) -> 0; our docstring's
    # mapping lovasz_hinge_loss == mode="binary", per_image=True.
    x = torch.ones(2, 1, 1, 2, dtype=torch.float64)
    close(F.lovasz_loss(x, torch.ones_like(x), mode="binary", per_image=True), 0.0, rtol=1e-3, atol=1e-3)
    # test_lovaz_softmax.py test_all_ones: class 1 logit 100 on labels 1 -> 0; lovasz_softmax_loss ==
    # mode="multiclass", per_image=True, classes="all".
    x = torch.zeros(2, 2, 1, 2, dtype=torch.float64)
    x[:, 1] = 100.0
    t = torch.ones(2, 1, 2, dtype=torch.int64)
    close(F.lovasz_loss(x, t, mode="multiclass", per_image=True, classes="all"), 0.0, rtol=1e-3, atol=1e-3)
