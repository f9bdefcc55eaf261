"""Comparisons with MONAI and torchmetrics where they compute the same quantity under mapped arguments.

Every case writes its mapping next to it. Values in float64 to 1e-6 relative (MONAI's ``FocalLoss`` casts its input to
float32 inside, so those cases use 1e-5), input gradients too where the peer is differentiable. Inputs are at most
2x3x8x8 (2D) or 2x3x4x5x6 (3D); index targets hold every class in every image unless a case says otherwise.

Mapping table (peer -> seglosses):

=========================================================  ======================================================
MONAI ``DiceLoss(sigmoid=True | softmax=True,                ``dice_loss(mode=binary | multiclass | multilabel,
to_onehot_y=<index target>, include_background=b,            include_background=b, smooth=s, per_image=not B,
smooth_nr=s, smooth_dr=s, batch=B, squared_pred=q)``         squared=q)``: exact, soft targets included
                                                             (MONAI ``soft_label=False`` is our product form).
MONAI ``DiceLoss(..., ignore_index=255)``                    ``ignore_index=255``: exact (MONAI zeroes p and g there).
MONAI ``DiceLoss(..., weight=w)``                            ``class_weights=w, reduction="sum"`` divided by the
                                                             number of kept classes (MONAI: mean of w_c L_c, not the
                                                             weighted mean sum w L / sum w); per image: also / N.
MONAI ``DiceLoss(jaccard=True, smooth_nr=s, smooth_dr=s)``   ``jaccard_loss(smooth=s / 2)``: MONAI computes
                                                             (2TP + s) / (2(TP + FP + FN) + s), as our docstring says.
MONAI ``TverskyLoss(alpha=a, beta=b, smooth_nr=s,            ``tversky_loss(alpha=a, beta=b, smooth=s,
smooth_dr=s, batch=B)``                                      per_image=not B)``: exact; MONAI's alpha weights FP and
                                                             beta FN, as ours.
MONAI ``GeneralizedDiceLoss(w_type="square", smooth 0,       ``generalized_dice_loss(smooth=0, per_image=not B)``:
batch=B)``                                                   exact when every class is present (the weight ratio
                                                             is what matters; both give an absent class the largest
                                                             present weight). With smooth s > 0: MONAI's
                                                             ``smooth_nr = smooth_dr = s * sum_c w_c`` (raw weights,
                                                             computed in the test). Binary: MONAI on the two channels
                                                             [1 - p, p] with targets [1 - g, g] (Sudre's pair).
MONAI ``FocalLoss(use_softmax=False, gamma, alpha=a|None)``  binary/multilabel ``focal_loss(alpha=a|None, gamma)``,
                                                             hard targets: exact. Soft targets differ (MONAI uses
                                                             p_t/alpha_t of the soft g; we use the per-class sum).
MONAI ``FocalLoss(use_softmax=True, to_onehot_y=True,        multiclass ``focal_loss(alpha=w|None, gamma)``:
gamma, alpha=w)``                                            MONAI averages over N*C*pixels, we sum over classes and
                                                             average over pixels: ours = C * MONAI. With
                                                             ``ignore_index`` MONAI divides by the kept pixels only,
                                                             so then ours = MONAI exactly. Soft targets: same form.
MONAI ``DiceCELoss(softmax=True | sigmoid=True,              ``dice_ce_loss(ce_weight=l_ce, dice_weight=l_d,
to_onehot_y, lambda_ce, lambda_dice, smooth 1e-5,            smooth=1e-5, per_image=not B, label_smoothing=ls)``,
batch=B, label_smoothing=ls)``                               binary and multiclass: exact. Multilabel differs (MONAI
                                                             uses softmax CE on C-channel float targets; we use BCE).
MONAI ``DiceFocalLoss(sigmoid=True, lambda_dice=1 - w,       ``hybrid_focal_loss(weight=w, focal_alpha=a|None,
lambda_focal=w, alpha=a, gamma=g, smooth 2s, batch=True)``   focal_gamma=g, tversky_alpha=tversky_beta=0.5,
                                                             tversky_gamma=1, smooth=s)``: Tversky(1/2, 1/2) with
                                                             smooth s is Dice with smooth 2s. Binary/multilabel,
                                                             hard targets.
MONAI ``AsymmetricFocalTverskyLoss(delta, gamma, epsilon)``  ``asymmetric_focal_tversky_loss(mode="binary",
on [1 - p, p]                                                from_logits=False, delta, gamma, smooth=epsilon)``: exact.
MONAI ``AsymmetricFocalLoss(delta, gamma)`` on [1 - p, p]    ``asymmetric_focal_loss(...)`` = 2 * MONAI (MONAI means
                                                             over the 2 channels too; we sum them per pixel).
MONAI ``AsymmetricUnifiedFocalLoss(weight, gamma, delta)``   ``unified_focal_loss(weight, delta, gamma,
(binary, probabilities)                                      asymmetric=True, from_logits=False)`` minus
                                                             ``weight / 2 * asymmetric_focal_loss`` (the factor above).
torchmetrics ``dice_score(average="macro",                   ``1 - dice_loss(hard one-hot probabilities,
aggregation_level="samplewise"|"global")``                   from_logits=False, smooth=0, per_image=True|False,
                                                             reduction="none")`` averaged over classes; exact when no
                                                             class is absent from both (torchmetrics: NaN, left out
                                                             of the mean; ours: 0/0 = 1).
torchmetrics ``generalized_dice_score(weight_type="square")``  ``1 - generalized_dice_loss(smooth=0, per_image=True,
                                                             reduction="none")``, hard one-hot predictions: exact with
                                                             every class present (torchmetrics' absent-class weight is
                                                             the maximum over the batch, not over the classes).
torchmetrics ``mean_iou(per_class=False)``                   ``1 - jaccard_loss(smooth=0, per_image=True,
                                                             reduction="none")`` averaged over classes, hard one-hot
                                                             predictions, every class present: exact.
=========================================================  ======================================================

MONAI has no combo, Lovasz or multilabel/multiclass unified focal loss with our definitions (its unified focal
losses use channels 0 and 1 only): not compared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import seglosses.functional as SF

monai_losses = pytest.importorskip("monai.losses")
monai_uf = pytest.importorskip("monai.losses.unified_focal_loss")  # its components are not re-exported
tm_seg = pytest.importorskip("torchmetrics.functional.segmentation")

RTOL = 1e-6
SHAPES = {2: (8, 8), 3: (4, 5, 6)}
IGNORE = 255


def make(mode: str, dims: int, *, seed: int = 0, c: int = 3, soft: bool = False, n: int = 2):
    """Logits (N, C, *S) float64 and a target: multiclass (N, *S) int64 with every class in every image (or soft
    (N, C, *S)); binary/multilabel (N, C, *S) float 0/1 (or soft)."""
    rng = np.random.default_rng(seed)
    s = SHAPES[dims]
    ch = 1 if mode == "binary" else c
    x = torch.tensor(rng.normal(size=(n, ch, *s)) * 2.0)
    if mode == "multiclass":
        if soft:
            z = torch.tensor(rng.normal(size=(n, c, *s)) * 2.0)
            return x, torch.softmax(z, 1)
        t = rng.integers(0, c, size=(n, *s))
        t.reshape(n, -1)[:, :c] = np.arange(c)
        return x, torch.tensor(t, dtype=torch.int64)
    if soft:
        return x, torch.tensor(rng.random(size=(n, ch, *s)))
    t = (rng.random(size=(n, ch, *s)) < 0.4).astype(np.float64)
    t.reshape(n, ch, -1)[:, :, :2] = [1.0, 0.0]
    return x, torch.tensor(t)


def to_monai_target(t: torch.Tensor, mode: str) -> torch.Tensor:
    """MONAI takes index targets as (N, 1, *S) with ``to_onehot_y=True``."""
    return t[:, None] if mode == "multiclass" and t.dtype == torch.int64 else t


def act(mode: str) -> dict[str, bool]:
    return {"softmax": True} if mode == "multiclass" else {"sigmoid": True}


def compare(ours_fn, peer_fn, x: torch.Tensor, *, rtol: float = RTOL, scale: float = 1.0, grad: bool = True) -> None:
    """ours(x) == scale * peer(x) in value and input gradient."""
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = ours_fn(xa), peer_fn(xb)
    b = scale * b.to(torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=1e-12)
    if grad:
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), rtol=max(rtol, 1e-6) * 10, atol=1e-10)


# ------------------------------------------------------------------------------------------------ Dice / Jaccard


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_dice_loss_equals_monai_dice(mode, squared, include_background, batch, soft, dims):
    # MONAI DiceLoss(sigmoid|softmax, to_onehot_y, include_background=b, smooth_nr=smooth_dr=s, batch=B,
    # squared_pred=q) == dice_loss(include_background=b, smooth=s, per_image=not B, squared=q)
    if mode == "binary" and not include_background:
        pytest.skip("one class: nothing left without the background")
    x, t = make(mode, dims, seed=1, soft=soft)
    s = 0.3
    peer = monai_losses.DiceLoss(
        **act(mode),
        to_onehot_y=t.dtype == torch.int64,
        include_background=include_background,
        smooth_nr=s,
        smooth_dr=s,
        batch=batch,
        squared_pred=squared,
    )
    kw = {"mode": mode, "smooth": s, "per_image": not batch, "squared": squared}
    kw["include_background"] = include_background
    compare(lambda z: SF.dice_loss(z, t, **kw), lambda z: peer(z, to_monai_target(t, mode)), x)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_dice_loss_reduction_none_equals_monai_per_image(mode):
    # MONAI DiceLoss(batch=False, reduction="none") -> (N, C, 1, 1) == dice_loss(per_image=True, reduction="none")
    x, t = make(mode, 2, seed=2)
    peer = monai_losses.DiceLoss(**act(mode), to_onehot_y=mode == "multiclass", reduction="none")
    compare(
        lambda z: SF.dice_loss(z, t, mode=mode, smooth=1e-5, per_image=True, reduction="none"),
        lambda z: peer(z, to_monai_target(t, mode))[..., 0, 0],
        x,
    )


@pytest.mark.parametrize("batch", [False, True])
def test_dice_loss_ignore_index_equals_monai(batch):
    # MONAI DiceLoss(softmax, to_onehot_y, ignore_index=255) zeroes p and g at ignored pixels == ignore_index=255
    x, t = make("multiclass", 2, seed=3)
    t = t.clone()
    t[:, 4:6, 2:7] = IGNORE
    peer = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, ignore_index=IGNORE, batch=batch)
    compare(
        lambda z: SF.dice_loss(z, t, mode="multiclass", smooth=1e-5, per_image=not batch, ignore_index=IGNORE),
        lambda z: peer(z, t[:, None]),
        x,
    )


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_loss_class_weights_vs_monai_weight(batch, include_background):
    # MONAI DiceLoss(weight=w): mean over (images x) classes of w_c L_c; ours "mean" is sum w L / sum w, so
    # MONAI == dice_loss(class_weights=w, reduction="sum") / (number of kept classes [x N when per image])
    x, t = make("multiclass", 2, seed=4)
    w = [0.5, 2.0, 1.5]
    kept = w if include_background else w[1:]
    peer = monai_losses.DiceLoss(
        softmax=True, to_onehot_y=True, weight=kept, batch=batch, include_background=include_background
    )
    count = len(kept) * (1 if batch else x.shape[0])
    compare(
        lambda z: (
            SF.dice_loss(
                z,
                t,
                mode="multiclass",
                smooth=1e-5,
                per_image=not batch,
                class_weights=kept,
                include_background=include_background,
                reduction="sum",
            )
            / count
        ),
        lambda z: peer(z, t[:, None]),
        x,
    )


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_jaccard_loss_equals_monai_dice_jaccard(mode, batch, dims):
    # MONAI DiceLoss(jaccard=True): 1 - (2TP + s) / (2(TP + FP + FN) + s) == jaccard_loss(smooth=s / 2)
    x, t = make(mode, dims, seed=5)
    s = 0.4
    peer = monai_losses.DiceLoss(
        **act(mode), to_onehot_y=mode == "multiclass", jaccard=True, smooth_nr=s, smooth_dr=s, batch=batch
    )
    compare(
        lambda z: SF.jaccard_loss(z, t, mode=mode, smooth=s / 2, per_image=not batch),
        lambda z: peer(z, to_monai_target(t, mode)),
        x,
    )


def test_jaccard_loss_docstring_monai_mapping():
    x, t = make("multilabel", 2, seed=6)
    t = t.clone()
    t[:, 1] = 0.0  # class 1 absent from the target: J = s / (FP + s) depends on s at first order
    x = x.clone()
    x[:, 1] = -12.0  # predicted with probability ~6e-6 per pixel, the scale of s
    peer = monai_losses.DiceLoss(sigmoid=True, jaccard=True)  # defaults smooth_nr = smooth_dr = 1e-5, batch=False
    # the docstring's mapping: MONAI's defaults are smooth = 1e-5 / 2, per_image=True here
    compare(lambda z: SF.jaccard_loss(z, t, mode="multilabel", smooth=5e-6, per_image=True), lambda z: peer(z, t), x)


# ------------------------------------------------------------------------------------------------ Tversky


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_tversky_loss_equals_monai_tversky(mode, include_background, batch, dims):
    # MONAI TverskyLoss(alpha=a (FP), beta=b (FN), smooth_nr=smooth_dr=s, batch=B)
    # == tversky_loss(alpha=a, beta=b, smooth=s, per_image=not B); alpha != beta shows the FP/FN convention
    if mode == "binary" and not include_background:
        pytest.skip("one class: nothing left without the background")
    x, t = make(mode, dims, seed=7, soft=mode != "multiclass")
    a, b, s = 0.2, 0.9, 0.7
    peer = monai_losses.TverskyLoss(
        **act(mode),
        to_onehot_y=mode == "multiclass",
        include_background=include_background,
        alpha=a,
        beta=b,
        smooth_nr=s,
        smooth_dr=s,
        batch=batch,
    )
    compare(
        lambda z: SF.tversky_loss(
            z, t, mode=mode, alpha=a, beta=b, smooth=s, per_image=not batch, include_background=include_background
        ),
        lambda z: peer(z, to_monai_target(t, mode)),
        x,
    )


def test_tversky_loss_reduction_none_equals_monai():
    # MONAI TverskyLoss(batch=False, reduction="none") -> (N, C) == tversky_loss(per_image=True, reduction="none")
    x, t = make("multiclass", 3, seed=8)
    peer = monai_losses.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7, reduction="none")
    compare(
        lambda z: SF.tversky_loss(z, t, mode="multiclass", smooth=1e-5, per_image=True, reduction="none"),
        lambda z: peer(z, t[:, None]),
        x,
    )


# ------------------------------------------------------------------------------------------------ generalized Dice


def _gdl_raw_weight_sum(t1h: torch.Tensor, include_background: bool) -> float:
    """sum_c 1 / G_c^2 over the kept classes, batch-wide (every class present): MONAI's unnormalised weight sum."""
    g = t1h.sum(dim=(0, *range(2, t1h.ndim)))
    g = g if include_background else g[1:]
    return float((1.0 / g**2).sum())


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_generalized_dice_loss_equals_monai_gdl(mode, include_background, batch, dims):
    # MONAI GeneralizedDiceLoss(w_type="square", smooth_nr=smooth_dr=0, batch=B)
    # == generalized_dice_loss(smooth=0, per_image=not B): our weights are normalised, the ratio is the same
    x, t = make(mode, dims, seed=9)
    peer = monai_losses.GeneralizedDiceLoss(
        **act(mode),
        to_onehot_y=mode == "multiclass",
        include_background=include_background,
        smooth_nr=0.0,
        smooth_dr=0.0,
        batch=batch,
    )
    compare(
        lambda z: SF.generalized_dice_loss(
            z, t, mode=mode, smooth=0.0, per_image=not batch, include_background=include_background
        ),
        lambda z: peer(z, to_monai_target(t, mode)),
        x,
    )


def test_generalized_dice_loss_smooth_equals_monai_scaled_smooth():
    # our weights are w_c / sum_k w_k, so our smooth s is MONAI's smooth_nr = smooth_dr = s * sum_k w_k (batch=True)
    x, t = make("multiclass", 2, seed=10)
    t1h = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    s = 0.5
    ms = s * _gdl_raw_weight_sum(t1h, True)
    peer = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, smooth_nr=ms, smooth_dr=ms, batch=True)
    compare(lambda z: SF.generalized_dice_loss(z, t, mode="multiclass", smooth=s), lambda z: peer(z, t[:, None]), x)


@pytest.mark.parametrize("batch", [False, True])
def test_generalized_dice_loss_binary_equals_monai_on_pair(batch):
    # binary mode uses the two classes [1 - p, p] (Sudre): MONAI on the 2-channel probabilities and targets
    x, t = make("binary", 2, seed=11)
    peer = monai_losses.GeneralizedDiceLoss(smooth_nr=0.0, smooth_dr=0.0, batch=batch)

    def monai_pair(z):
        p = torch.sigmoid(z)
        return peer(torch.cat([1 - p, p], 1), torch.cat([1 - t, t], 1))

    compare(lambda z: SF.generalized_dice_loss(z, t, mode="binary", smooth=0.0, per_image=not batch), monai_pair, x)


def test_generalized_dice_loss_absent_class_weight_equals_monai():
    # a class absent from one image's target: both give it the largest weight of that image's present classes
    x, t = make("multiclass", 2, seed=12)
    t = t.clone()
    t[0][t[0] == 2] = 1  # class 2 absent from image 0
    peer = monai_losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, smooth_nr=0.0, smooth_dr=0.0)
    compare(
        lambda z: SF.generalized_dice_loss(z, t, mode="multiclass", smooth=0.0, per_image=True),
        lambda z: peer(z, t[:, None]),
        x,
    )


# ------------------------------------------------------------------------------------------------ focal


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_focal_loss_equals_monai_sigmoid_focal(mode, gamma, alpha, dims):
    # MONAI FocalLoss(use_softmax=False, gamma=g, alpha=a) == focal_loss(alpha=a, gamma=g), hard targets;
    # MONAI casts to float32 inside: rtol 1e-5
    x, t = make(mode, dims, seed=13)
    peer = monai_losses.FocalLoss(gamma=gamma, alpha=alpha)
    compare(lambda z: SF.focal_loss(z, t, mode=mode, alpha=alpha, gamma=gamma), lambda z: peer(z, t), x, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("alpha", [None, [0.2, 0.5, 0.3]])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_loss_multiclass_equals_c_times_monai_softmax_focal(soft, gamma, alpha, dims):
    # MONAI FocalLoss(use_softmax=True, to_onehot_y, gamma, alpha=[a_c]) means over N*C*pixels; ours sums over the
    # classes and means over pixels: focal_loss(alpha=[a_c], gamma) == C * MONAI
    x, t = make("multiclass", dims, seed=14, soft=soft)
    peer = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=not soft, gamma=gamma, alpha=alpha)
    compare(
        lambda z: SF.focal_loss(z, t, mode="multiclass", alpha=alpha, gamma=gamma),
        lambda z: peer(z, to_monai_target(t, "multiclass")),
        x,
        rtol=1e-5,
        scale=3.0,
    )


def test_focal_loss_multiclass_ignore_index_equals_monai():
    # with ignore_index MONAI divides the sum by the kept pixels (not N*C*pixels): then ours == MONAI exactly
    x, t = make("multiclass", 2, seed=15)
    t = t.clone()
    t[:, 5:, :3] = IGNORE
    peer = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0, ignore_index=IGNORE)
    compare(
        lambda z: SF.focal_loss(z, t, mode="multiclass", gamma=2.0, ignore_index=IGNORE),
        lambda z: peer(z, t[:, None]),
        x,
        rtol=1e-5,
    )


# ------------------------------------------------------------------------------------------------ compound


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize(("lambda_dice", "lambda_ce"), [(1.0, 1.0), (0.3, 1.7)])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_dice_ce_loss_equals_monai_dice_ce(mode, lambda_dice, lambda_ce, batch, dims):
    # MONAI DiceCELoss(sigmoid|softmax, to_onehot_y, lambda_dice, lambda_ce, batch=B) (smooth 1e-5)
    # == dice_ce_loss(dice_weight=lambda_dice, ce_weight=lambda_ce, smooth=1e-5, per_image=not B)
    # (binary: MONAI's BCEWithLogits on one channel; multiclass: nn.CrossEntropyLoss on the index target)
    x, t = make(mode, dims, seed=16)
    peer = monai_losses.DiceCELoss(
        **act(mode), to_onehot_y=mode == "multiclass", lambda_dice=lambda_dice, lambda_ce=lambda_ce, batch=batch
    )
    compare(
        lambda z: SF.dice_ce_loss(
            z, t, mode=mode, dice_weight=lambda_dice, ce_weight=lambda_ce, smooth=1e-5, per_image=not batch
        ),
        lambda z: peer(z, to_monai_target(t, mode)),
        x,
    )


def test_dice_ce_loss_label_smoothing_equals_monai():
    # MONAI DiceCELoss(label_smoothing=ls) passes it to nn.CrossEntropyLoss; ours follows torch's CE exactly
    x, t = make("multiclass", 2, seed=17)
    peer = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, label_smoothing=0.2)
    compare(
        lambda z: SF.dice_ce_loss(z, t, mode="multiclass", smooth=1e-5, per_image=True, label_smoothing=0.2),
        lambda z: peer(z, t[:, None]),
        x,
    )


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("weight", [0.5, 0.2])
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_hybrid_focal_loss_equals_monai_dice_focal(mode, weight, alpha):
    # MONAI DiceFocalLoss(sigmoid, lambda_dice=1 - w, lambda_focal=w, alpha=a, gamma=g, smooth 2s, batch=True)
    # == hybrid_focal_loss(weight=w, focal_alpha=a, focal_gamma=g, tversky_alpha=tversky_beta=0.5,
    #    tversky_gamma=1, smooth=s): (TP + s) / (TP + FP/2 + FN/2 + s) = (2TP + 2s) / (2TP + FP + FN + 2s)
    x, t = make(mode, 2, seed=18)
    s, g = 0.25, 1.5
    peer = monai_losses.DiceFocalLoss(
        sigmoid=True,
        lambda_dice=1 - weight,
        lambda_focal=weight,
        alpha=alpha,
        gamma=g,
        smooth_nr=2 * s,
        smooth_dr=2 * s,
        batch=True,
    )
    compare(
        lambda z: SF.hybrid_focal_loss(
            z,
            t,
            mode=mode,
            weight=weight,
            focal_alpha=alpha,
            focal_gamma=g,
            tversky_alpha=0.5,
            tversky_beta=0.5,
            tversky_gamma=1.0,
            smooth=s,
        ),
        lambda z: peer(z, t),
        x,
        rtol=1e-5,
    )


# ------------------------------------------------------------------------------------------------ unified focal


def _pair(p: torch.Tensor) -> torch.Tensor:
    return torch.cat([1 - p, p], 1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("delta", "gamma"), [(0.7, 0.75), (0.4, 0.2)])
def test_asymmetric_focal_tversky_loss_equals_monai(delta, gamma, dims):
    # MONAI AsymmetricFocalTverskyLoss(delta, gamma, epsilon) on [1 - p, p] / [1 - g, g]
    # == asymmetric_focal_tversky_loss(mode="binary", from_logits=False, delta, gamma, smooth=epsilon)
    x, t = make("binary", dims, seed=19)
    p = torch.sigmoid(x)  # within [eps, 1 - eps]: MONAI's clamp is inactive
    peer = monai_uf.AsymmetricFocalTverskyLoss(delta=delta, gamma=gamma, epsilon=1e-7)
    compare(
        lambda z: SF.asymmetric_focal_tversky_loss(
            z, t, mode="binary", from_logits=False, delta=delta, gamma=gamma, smooth=1e-7
        ),
        lambda z: peer(_pair(z), _pair(t)),
        p,
    )


@pytest.mark.parametrize(("delta", "gamma"), [(0.7, 2.0), (0.4, 0.5)])
def test_asymmetric_focal_loss_equals_twice_monai(delta, gamma):
    # MONAI AsymmetricFocalLoss means over the two channels as well: ours == 2 * MONAI
    x, t = make("binary", 3, seed=20)
    p = torch.sigmoid(x)
    peer = monai_uf.AsymmetricFocalLoss(delta=delta, gamma=gamma)
    compare(
        lambda z: SF.asymmetric_focal_loss(z, t, mode="binary", from_logits=False, delta=delta, gamma=gamma),
        lambda z: peer(_pair(z), _pair(t)),
        p,
        scale=2.0,
    )


@pytest.mark.parametrize(("weight", "delta", "gamma"), [(0.5, 0.6, 0.5), (0.3, 0.7, 0.2)])
def test_unified_focal_loss_vs_monai_asymmetric_unified(weight, delta, gamma):
    # MONAI AsymmetricUnifiedFocalLoss(weight, gamma, delta) on (N, 1, *S) probabilities
    # == unified_focal_loss(weight, delta, gamma, asymmetric=True) - weight / 2 * asymmetric_focal_loss(delta, gamma)
    # (MONAI's focal term is half ours, see above)
    x, t = make("binary", 2, seed=21)
    p = torch.sigmoid(x)
    peer = monai_losses.AsymmetricUnifiedFocalLoss(weight=weight, gamma=gamma, delta=delta)
    kw = {"mode": "binary", "from_logits": False, "delta": delta, "gamma": gamma}

    def ours(z):
        uf = SF.unified_focal_loss(z, t, weight=weight, asymmetric=True, **kw)
        return uf - weight / 2 * SF.asymmetric_focal_loss(z, t, **kw)

    compare(ours, lambda z: peer(z, t), p)


# ------------------------------------------------------------------------------------------------ torchmetrics


def _hard(x: torch.Tensor, c: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(x.argmax(1), c).movedim(-1, 1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("per_image", [True, False])
def test_dice_loss_equals_one_minus_torchmetrics_dice_score(per_image, include_background, dims):
    # torchmetrics dice_score(average="macro", aggregation_level="samplewise"|"global", input_format="one-hot")
    # == 1 - mean_c dice_loss(hard one-hot probabilities, from_logits=False, smooth=0, per_image, reduction="none")
    x, t = make("multiclass", dims, seed=22)
    pred = _hard(x, 3)
    t1h = torch.nn.functional.one_hot(t, 3).movedim(-1, 1)
    assert (pred.sum(dim=tuple(range(2, pred.ndim))) > 0).all()  # no class absent from both: no NaN on their side
    peer = tm_seg.dice_score(
        pred,
        t1h,
        num_classes=3,
        include_background=include_background,
        average="macro",
        aggregation_level="samplewise" if per_image else "global",
    )
    ours = SF.dice_loss(
        pred.double(),
        t,
        mode="multiclass",
        from_logits=False,
        smooth=0.0,
        per_image=per_image,
        include_background=include_background,
        reduction="none",
    )
    ours_score = 1 - (ours.mean(-1) if per_image else ours.mean()[None])
    np.testing.assert_allclose(ours_score.numpy(), peer.double().numpy(), rtol=RTOL)


@pytest.mark.parametrize("include_background", [True, False])
def test_generalized_dice_loss_equals_one_minus_torchmetrics_gds(include_background):
    # torchmetrics generalized_dice_score(weight_type="square", per_class=False) -> (N,) per image
    # == 1 - generalized_dice_loss(hard one-hot probabilities, smooth=0, per_image=True, reduction="none")
    x, t = make("multiclass", 2, seed=23)
    pred = _hard(x, 3)
    t1h = torch.nn.functional.one_hot(t, 3).movedim(-1, 1)
    peer = tm_seg.generalized_dice_score(pred, t1h, num_classes=3, include_background=include_background)
    ours = SF.generalized_dice_loss(
        pred.double(),
        t,
        mode="multiclass",
        from_logits=False,
        smooth=0.0,
        per_image=True,
        include_background=include_background,
        reduction="none",
    )
    np.testing.assert_allclose((1 - ours).numpy(), peer.double().numpy(), rtol=RTOL)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
def test_jaccard_loss_equals_one_minus_torchmetrics_mean_iou(include_background, dims):
    # torchmetrics mean_iou(per_class=False, input_format="one-hot") -> (N,) per image
    # == 1 - mean_c jaccard_loss(hard one-hot probabilities, smooth=0, per_image=True, reduction="none")
    x, t = make("multiclass", dims, seed=24)
    pred = _hard(x, 3)
    t1h = torch.nn.functional.one_hot(t, 3).movedim(-1, 1)
    peer = tm_seg.mean_iou(pred, t1h, num_classes=3, include_background=include_background)
    ours = SF.jaccard_loss(
        pred.double(),
        t,
        mode="multiclass",
        from_logits=False,
        smooth=0.0,
        per_image=True,
        include_background=include_background,
        reduction="none",
    )
    np.testing.assert_allclose((1 - ours.mean(-1)).numpy(), peer.double().numpy(), rtol=RTOL)
