"""Log-cosh Dice, sensitivity-specificity, F-beta and generalised Wasserstein Dice against NumPy float64 references.

Every reference below is written here from the papers' formulas (one-hot targets and loops allowed, nothing from
seglosses): Jadon 2020 eq. 18 (log cosh of the Dice loss), Brosch et al. 2015 eq. 3, Hashemi et al. 2019 eq. 4,
Fidon et al. 2017 eq. 6-9. Peers: MONAI's GeneralizedWassersteinDiceLoss (mapped arguments), and NumPy transcriptions
of JunMa11/SegLoss ``SSLoss``/``AsymLoss`` and of Jadon's pooled ``log_cosh_dice_loss``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seglosses
import seglosses.functional as SF

IGNORE = 255
SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FORMS = [
    ("binary", "hard"),
    ("binary", "soft"),
    ("multiclass", "index"),
    ("multiclass", "onehot"),
    ("multiclass", "soft"),
    ("multilabel", "hard"),
    ("multilabel", "soft"),
]
LOSSES = ["log_cosh_dice_loss", "sensitivity_specificity_loss", "fbeta_loss"]


# ------------------------------------------------------------------------------------------ NumPy references


def _prepare(x, t, mode, from_logits, ignore_index):
    """``(p, g, v)``, each ``(N, C, M)`` float64: probabilities, one-hot/soft target, kept-element mask."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[0], x.shape[1]
    xf = x.reshape(n, c, -1)
    if from_logits:
        if mode == "multiclass":
            e = np.exp(xf - xf.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        else:
            p = 1.0 / (1.0 + np.exp(-xf))
    else:
        p = xf
    t = np.asarray(t)
    if mode == "multiclass" and t.ndim == x.ndim - 1:
        tf = t.reshape(n, -1)
        keep = np.ones(tf.shape, bool) if ignore_index is None else tf != ignore_index
        idx = np.where(keep, tf, 0)
        g = np.stack([(idx == k) & keep for k in range(c)], axis=1).astype(np.float64)
        v = np.repeat(keep[:, None, :], c, axis=1).astype(np.float64)
    else:
        tf = t.reshape(n, c, -1).astype(np.float64)
        keep = np.ones(tf.shape, bool) if ignore_index is None else tf != ignore_index
        g = np.where(keep, tf, 0.0)
        v = keep.astype(np.float64)
    return p, g, v


def _reduce(per_class, mode, include_background, class_weights, reduction):
    """The class reduction: drop channel 0 unless kept, weighted mean (then mean over images), sum, or none."""
    vals = per_class if mode == "binary" or include_background else per_class[..., 1:]
    w = np.ones(vals.shape[-1]) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    if w.shape[-1] != vals.shape[-1]:
        w = w[1:]
    if reduction == "mean":
        return np.mean((vals * w).sum(-1) / w.sum())
    if reduction == "sum":
        return (vals * w).sum()
    return vals * w


def _sums(a, per_image):
    return a.sum(-1) if per_image else a.sum(axis=(0, 2))


def ref_log_cosh_dice(
    x,
    t,
    *,
    mode,
    from_logits=True,
    ignore_index=None,
    smooth=1.0,
    squared=False,
    include_background=True,
    class_weights=None,
    per_image=False,
    reduction="mean",
):
    p, g, v = _prepare(x, t, mode, from_logits, ignore_index)
    tp = _sums(p * g * v, per_image)
    if squared:
        den = _sums(p * p * v, per_image) + _sums(g * g * v, per_image) + smooth
    else:
        den = _sums(p * v, per_image) + _sums(g * v, per_image) + smooth
    dice_loss = 1.0 - (2 * tp + smooth) / den
    return _reduce(np.log(np.cosh(dice_loss)), mode, include_background, class_weights, reduction)


def ref_sensitivity_specificity(
    x,
    t,
    *,
    mode,
    from_logits=True,
    ignore_index=None,
    r=0.05,
    eps=1e-5,
    include_background=True,
    class_weights=None,
    per_image=False,
    reduction="mean",
):
    p, g, v = _prepare(x, t, mode, from_logits, ignore_index)
    err = (g - p) ** 2
    sens = _sums(err * g * v, per_image) / (_sums(g * v, per_image) + eps)
    spec = _sums(err * (1 - g) * v, per_image) / (_sums((1 - g) * v, per_image) + eps)
    return _reduce(r * sens + (1 - r) * spec, mode, include_background, class_weights, reduction)


def ref_fbeta(
    x,
    t,
    *,
    mode,
    from_logits=True,
    ignore_index=None,
    beta=1.5,
    smooth=1.0,
    include_background=True,
    class_weights=None,
    per_image=False,
    reduction="mean",
):
    p, g, v = _prepare(x, t, mode, from_logits, ignore_index)
    tp = _sums(p * g * v, per_image)
    fp = _sums(p * (1 - g) * v, per_image)
    fn = _sums((1 - p) * g * v, per_image)
    b2 = beta * beta
    f = ((1 + b2) * tp + smooth) / ((1 + b2) * tp + b2 * fn + fp + smooth)
    return _reduce(1 - f, mode, include_background, class_weights, reduction)


REFS = {
    "log_cosh_dice_loss": ref_log_cosh_dice,
    "sensitivity_specificity_loss": ref_sensitivity_specificity,
    "fbeta_loss": ref_fbeta,
}


def ref_gwd(x, t, m, *, from_logits=True, ignore_index=None, smooth=1e-5, reduction="mean", alpha=None):
    """Fidon et al. 2017 by loops over images and pixels; ``alpha`` overrides alpha_l = M[l, 0] (MONAI's choice)."""
    p, _, _ = _prepare(x, np.zeros((x.shape[0], *x.shape[2:]), np.int64), "multiclass", from_logits, None)
    m = np.asarray(m, dtype=np.float64)
    m = m / m.max()
    a = m[:, 0] if alpha is None else np.asarray(alpha, dtype=np.float64)
    t = np.asarray(t)
    labels = (t if t.ndim == x.ndim - 1 else t.argmax(axis=1)).reshape(x.shape[0], -1)
    out = []
    for i in range(x.shape[0]):
        tp = wsum = 0.0
        for j in range(labels.shape[1]):
            y = int(labels[i, j])
            if ignore_index is not None and y == ignore_index:
                continue
            w = sum(m[y, col] * p[i, col, j] for col in range(m.shape[0]))
            tp += a[y] * (a[y] - w)
            wsum += w
        num, den = 2 * tp + smooth, 2 * tp + wsum + smooth
        out.append(0.0 if den == 0 else 1 - num / den)
    out = np.asarray(out)
    return out.mean() if reduction == "mean" else out.sum() if reduction == "sum" else out


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar NumPy function ``f`` at ``x`` (float64)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def _close(got, expected, rtol=1e-9, atol=1e-12):
    got = got.detach().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"shape {got.shape} != {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def _case_ids():
    out = []
    for mode, form in FORMS:
        for dims in (2, 3):
            for ignore in (False, True) if form in ("hard", "index") else (False,):
                out.append(pytest.param(mode, form, dims, ignore, id=f"{mode}-{form}-{dims}d-ignore={ignore}"))
    return out


# ------------------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "form", "dims", "ignore"), _case_ids())
@pytest.mark.parametrize("name", LOSSES)
def test_region_extra_value_and_gradient_match_reference(make_case, name, mode, form, dims, ignore, per_image):
    from_logits = (dims + int(ignore)) % 2 == 0 or form == "soft"
    case = make_case(mode, dims=dims, target=form, ignore=ignore, from_logits=from_logits, seed=dims + 10 * ignore)
    kw = case.args(per_image=per_image)
    x = case.xg()
    out = getattr(SF, name)(x, case.t, **kw)
    ref = REFS[name]
    expected = ref(case.x_np, case.t_np, **kw)
    _close(out, expected)
    out.backward()
    num = numeric_grad(lambda a: ref(a, case.t_np, **kw), case.x_np)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_region_extra_options_match_reference(make_case, name, per_image, include_background, reduction, weighted):
    case = make_case("multiclass", target="index", ignore=True, seed=5)
    kw = case.args(per_image=per_image, include_background=include_background, reduction=reduction)
    if weighted:
        kw["class_weights"] = [0.5, 2.0, 1.5]
    out = getattr(SF, name)(case.x, case.t, **kw)
    _close(out, REFS[name](case.x_np, case.t_np, **kw))
    kept = 3 if include_background else 2
    assert tuple(out.shape) == {"mean": (), "sum": (), "none": (2, kept) if per_image else (kept,)}[reduction]


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("log_cosh_dice_loss", {"smooth": 0.0}),
        ("log_cosh_dice_loss", {"smooth": 3.0, "squared": True}),
        ("sensitivity_specificity_loss", {"r": 0.0}),
        ("sensitivity_specificity_loss", {"r": 1.0, "eps": 0.5}),
        ("sensitivity_specificity_loss", {"r": 0.3, "eps": 1e-3}),
        ("fbeta_loss", {"beta": 0.0}),
        ("fbeta_loss", {"beta": 3.0, "smooth": 0.0}),
    ],
)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_region_extra_hyperparameters_match_reference(make_case, name, kw, mode):
    case = make_case(mode, target="soft", seed=7)
    out = getattr(SF, name)(case.x, case.t, **case.args(**kw))
    _close(out, REFS[name](case.x_np, case.t_np, **case.args(**kw)))
    default = getattr(SF, name)(case.x, case.t, **case.args())
    assert not torch.allclose(out, default)  # every hyperparameter changes the value


@pytest.mark.parametrize(
    ("name", "mode", "form"),
    [
        ("log_cosh_dice_loss", "multiclass", "index"),
        ("sensitivity_specificity_loss", "multiclass", "index"),
        ("fbeta_loss", "multilabel", "hard"),
        ("sensitivity_specificity_loss", "binary", "hard"),
    ],
)
def test_region_extra_gradcheck_float64_with_ignored_pixels(make_case, name, mode, form):
    case = make_case(mode, target=form, ignore=True, spatial=(2, 3), seed=11)
    kw = case.args(per_image=mode == "multilabel")
    assert torch.autograd.gradcheck(lambda a: getattr(SF, name)(a, case.t, **kw), (case.xg(),))


# ----------------------------------------------------------------------------------- equalities and peers


def test_fbeta_loss_equals_tversky_mapping(make_case):
    # F_beta = ((1+b^2) TP + s) / ((1+b^2) TP + b^2 FN + FP + s): divide by (1 + b^2)
    case = make_case("multiclass", target="soft", seed=21)
    for b, s in ((1.5, 1.0), (0.5, 0.2), (2.0, 0.0)):
        got = SF.fbeta_loss(case.x, case.t, mode="multiclass", beta=b, smooth=s, per_image=True)
        tv = SF.tversky_loss(
            case.x,
            case.t,
            mode="multiclass",
            alpha=1 / (1 + b * b),
            beta=b * b / (1 + b * b),
            smooth=s / (1 + b * b),
            per_image=True,
        )
        _close(got, tv.numpy(), rtol=1e-12)
    dice = SF.dice_loss(case.x, case.t, mode="multiclass", smooth=1.0)
    _close(SF.fbeta_loss(case.x, case.t, mode="multiclass", beta=1.0, smooth=1.0), dice.numpy(), rtol=1e-12)


def _junma_ss_loss(p, g, *, r=0.1, smooth=1.0, batch_dice=False, do_bg=True):
    """JunMa11/SegLoss SSLoss.forward on softmax outputs and a one-hot target, transcribed to NumPy."""
    axes = (0, 2, 3) if batch_dice else (2, 3)
    bg = 1 - g
    err = (g - p) ** 2
    specificity_part = (err * g).sum(axis=axes) / (g.sum(axis=axes) + smooth)
    sensitivity_part = (err * bg).sum(axis=axes) / (bg.sum(axis=axes) + smooth)
    ss = r * specificity_part + (1 - r) * sensitivity_part
    if not do_bg:
        ss = ss[1:] if batch_dice else ss[:, 1:]
    return ss.mean()


def _junma_asym_loss(p, g, *, beta=1.5, smooth=1.0, batch_dice=False, do_bg=True):
    """JunMa11/SegLoss AsymLoss.forward (returns -asym), transcribed to NumPy."""
    axes = (0, 2, 3) if batch_dice else (2, 3)
    tp, fp, fn = (p * g).sum(axis=axes), (p * (1 - g)).sum(axis=axes), ((1 - p) * g).sum(axis=axes)
    weight = beta**2 / (1 + beta**2)
    asym = (tp + smooth) / (tp + weight * fn + (1 - weight) * fp + smooth)
    if not do_bg:
        asym = asym[1:] if batch_dice else asym[:, 1:]
    return -asym.mean()


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("do_bg", [True, False])
def test_sensitivity_specificity_and_fbeta_equal_junma11_segloss(make_case, batch_dice, do_bg):
    case = make_case("multiclass", target="index", seed=23)
    c = case.x_np.shape[1]
    e = np.exp(case.x_np - case.x_np.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    g = np.moveaxis(np.eye(c)[case.t_np], -1, 1)
    kw = {"mode": "multiclass", "per_image": not batch_dice, "include_background": do_bg}
    ss = SF.sensitivity_specificity_loss(case.x, case.t, r=0.1, eps=1.0, **kw)
    _close(ss, _junma_ss_loss(p, g, batch_dice=batch_dice, do_bg=do_bg))
    b, s = 1.5, 1.0
    asym = SF.fbeta_loss(case.x, case.t, beta=b, smooth=s * (1 + b * b), **kw) - 1
    _close(asym, _junma_asym_loss(p, g, batch_dice=batch_dice, do_bg=do_bg))


def _jadon_log_cosh_dice(p, g, smooth=1.0):
    """Jadon's SemSegLoss log_cosh_dice_loss: one Dice over every element pooled, then log(cosh(1 - D))."""
    intersection = (g * p).sum()
    d = (2.0 * intersection + smooth) / (g.sum() + p.sum() + smooth)
    x = 1 - d
    return np.log((np.exp(x) + np.exp(-x)) / 2.0)


def test_log_cosh_dice_equals_jadon_in_binary_mode_and_differs_with_classes(make_case):
    case = make_case("binary", target="hard", seed=25)
    p = 1 / (1 + np.exp(-case.x_np))
    _close(SF.log_cosh_dice_loss(case.x, case.t, mode="binary"), _jadon_log_cosh_dice(p, case.t_np))
    ml = make_case("multilabel", target="hard", seed=25)
    pm = 1 / (1 + np.exp(-ml.x_np))
    ours = SF.log_cosh_dice_loss(ml.x, ml.t, mode="multilabel")
    # ours is the mean of per-class values; Jadon pools every class into one Dice
    _close(ours, ref_log_cosh_dice(ml.x_np, ml.t_np, mode="multilabel"))
    assert abs(float(ours) - _jadon_log_cosh_dice(pm, ml.t_np)) > 1e-4


def test_log_cosh_dice_is_stable_and_close_to_half_square():
    # x + softplus(-2x) - log 2 == log cosh x; near 0 it is x^2 / 2
    x = torch.zeros(1, 1, 64, dtype=torch.float64)
    g = torch.zeros(1, 1, 64, dtype=torch.float64)
    g[..., :32] = 1
    p = g * 0.999 + (1 - g) * 0.001
    out = SF.log_cosh_dice_loss(p, g, mode="binary", from_logits=False)
    d = (2 * 32 * 0.999 + 1) / (32 * 0.999 + 32 * 0.001 + 32 + 1)
    assert float(out) == pytest.approx(math.log(math.cosh(1 - d)), rel=1e-12)
    assert float(out) == pytest.approx((1 - d) ** 2 / 2, rel=1e-5)
    big = SF.log_cosh_dice_loss(x + 1e4, g, mode="binary")
    assert torch.isfinite(big)


# ------------------------------------------------------------------------------ generalised Wasserstein Dice

M_BRATS = [[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.6, 0.5], [1.0, 0.6, 0.0, 0.7], [1.0, 0.5, 0.7, 0.0]]
M_UNEVEN = [[0.0, 2.0, 1.0], [2.0, 0.0, 1.5], [1.0, 1.5, 0.0]]  # class 2 is closer to the background


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("form", "ignore"), [("index", False), ("index", True), ("onehot", False)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_generalized_wasserstein_dice_matches_reference(make_case, dims, form, ignore, reduction):
    from_logits = dims == 2
    case = make_case("multiclass", dims=dims, target=form, c=3, ignore=ignore, from_logits=from_logits, seed=dims)
    kw = case.args(dist_matrix=M_UNEVEN, reduction=reduction)
    x = case.xg()
    out = SF.generalized_wasserstein_dice_loss(x, case.t, **kw)
    rkw = {k: v for k, v in kw.items() if k not in ("mode", "dist_matrix")}
    expected = ref_gwd(case.x_np, case.t_np, M_UNEVEN, **rkw)
    _close(out, expected)
    assert tuple(out.shape) == ((2,) if reduction == "none" else ())
    if reduction != "mean":
        return
    out.backward()
    num = numeric_grad(lambda a: np.sum(ref_gwd(a, case.t_np, M_UNEVEN, **rkw)), case.x_np)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-8)


def test_generalized_wasserstein_dice_gradcheck_and_smooth(make_case):
    case = make_case("multiclass", target="index", c=3, ignore=True, spatial=(3, 4), seed=31)
    f = lambda a: SF.generalized_wasserstein_dice_loss(  # noqa: E731
        a, case.t, mode="multiclass", dist_matrix=M_UNEVEN, ignore_index=IGNORE, smooth=0.1
    )
    assert torch.autograd.gradcheck(f, (case.xg(),))
    _close(f(case.x), ref_gwd(case.x_np, case.t_np, M_UNEVEN, ignore_index=IGNORE, smooth=0.1))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dims", [2, 3])
def test_generalized_wasserstein_dice_equals_monai(make_case, reduction, dims):
    monai_losses = pytest.importorskip("monai.losses")
    case = make_case("multiclass", dims=dims, target="index", c=4, n=3, seed=41)
    # MONAI (weighting_mode="default") takes alpha_l = 1 for l > 0: the paper's M[l, 0] when every class is at the
    # largest distance from the background, as in M_BRATS. Its two smoothing terms are our one `smooth`.
    peer = monai_losses.GeneralizedWassersteinDiceLoss(
        dist_matrix=torch.tensor(M_BRATS, dtype=torch.float64),
        weighting_mode="default",
        reduction=reduction,
        smooth_nr=1e-3,
        smooth_dr=1e-3,
    )
    ours = SF.generalized_wasserstein_dice_loss(
        case.x, case.t, mode="multiclass", dist_matrix=M_BRATS, smooth=1e-3, reduction=reduction
    )
    _close(ours, peer(case.x, case.t).numpy(), rtol=1e-10)
    if reduction == "none":  # MONAI 1.6 is per image (fixed after issue 4650): each row alone gives the same value
        single = peer(case.x[1:2], case.t[1:2])
        _close(ours[1:2], single.numpy(), rtol=1e-10)


def test_generalized_wasserstein_dice_differs_from_monai_exactly_by_alpha(make_case):
    monai_losses = pytest.importorskip("monai.losses")
    case = make_case("multiclass", target="index", c=3, seed=43)
    peer = monai_losses.GeneralizedWassersteinDiceLoss(dist_matrix=torch.tensor(M_UNEVEN, dtype=torch.float64))
    ours = SF.generalized_wasserstein_dice_loss(case.x, case.t, mode="multiclass", dist_matrix=M_UNEVEN)
    _close(ours, ref_gwd(case.x_np, case.t_np, M_UNEVEN))  # alpha_l = M[l, 0] / max M = (0, 1, 0.5)
    _close(peer(case.x, case.t).numpy(), ref_gwd(case.x_np, case.t_np, M_UNEVEN, alpha=[0.0, 1.0, 1.0]))
    assert abs(float(ours) - float(peer(case.x, case.t))) > 1e-3


def test_generalized_wasserstein_dice_scale_invariant_and_onehot_equals_index(make_case):
    case = make_case("multiclass", target="index", c=3, seed=45)
    a = SF.generalized_wasserstein_dice_loss(case.x, case.t, mode="multiclass", dist_matrix=M_UNEVEN)
    b = SF.generalized_wasserstein_dice_loss(
        case.x, case.t, mode="multiclass", dist_matrix=torch.tensor(M_UNEVEN) * 7.0
    )
    onehot = torch.nn.functional.one_hot(case.t, 3).movedim(-1, 1).double()
    c = SF.generalized_wasserstein_dice_loss(case.x, onehot, mode="multiclass", dist_matrix=M_UNEVEN)
    _close(a, b.numpy(), rtol=1e-12)
    _close(a, c.numpy(), rtol=1e-12)


# ------------------------------------------------------------------------------------------------- properties


def _random_case(seed, mode, n, c, s, ignore):
    rng = np.random.default_rng(seed)
    ch = 1 if mode == "binary" else c
    x = torch.tensor(rng.normal(size=(n, ch, s)) * 2)
    if mode == "multiclass":
        t = torch.tensor(rng.integers(0, c, size=(n, s)))
        if ignore:
            t = torch.where(torch.tensor(rng.random((n, s)) < 0.3), IGNORE, t)
    else:
        t = torch.tensor((rng.random((n, ch, s)) < 0.4).astype(np.float64))
        if ignore:
            t = torch.where(torch.tensor(rng.random((n, ch, s)) < 0.3), float(IGNORE), t)
    return x, t


def _call(name, x, t, mode, **kw):
    if name == "generalized_wasserstein_dice_loss":
        c = x.shape[1]
        kw["dist_matrix"] = (1 - torch.eye(c)).tolist()
    return getattr(SF, name)(x, t, mode=mode, **kw)


ALL = [*LOSSES, "generalized_wasserstein_dice_loss"]


@SETTINGS
@given(seed=st.integers(0, 10_000), name=st.sampled_from(ALL), mode=st.sampled_from(["binary", "multiclass"]))
def test_region_extra_perfect_prediction_gives_zero(seed, name, mode):
    if name == "generalized_wasserstein_dice_loss":
        mode = "multiclass"
    x, t = _random_case(seed, mode, 2, 3, 12, ignore=False)
    if mode == "multiclass":
        p = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    else:
        p = t.clone()
    p.requires_grad_(True)
    out = _call(name, p, t, mode, from_logits=False)
    assert float(out.detach()) == pytest.approx(0.0, abs=1e-12)
    out.backward()
    assert torch.isfinite(p.grad).all()
    worse = _call(name, (p.detach() * 0.8 + 0.1).requires_grad_(False), t, mode, from_logits=False)
    assert float(worse) > 0.0


@SETTINGS
@given(seed=st.integers(0, 10_000), name=st.sampled_from(ALL), mode=st.sampled_from(["binary", "multiclass"]))
def test_region_extra_ignored_pixels_change_nothing(seed, name, mode):
    if name == "generalized_wasserstein_dice_loss":
        mode = "multiclass"
    x, t = _random_case(seed, mode, 2, 3, 14, ignore=True)
    ignored = (t == IGNORE).unsqueeze(1) if mode == "multiclass" else t == IGNORE
    x1 = x.clone().requires_grad_(True)
    out = (
        _call(name, x1, t, mode, ignore_index=IGNORE, per_image=True)
        if name != ALL[-1]
        else _call(name, x1, t, mode, ignore_index=IGNORE)
    )
    out.backward()
    x2 = torch.where(ignored, x * -3.0 + 5.0, x)
    again = (
        _call(name, x2, t, mode, ignore_index=IGNORE)
        if name == ALL[-1]
        else _call(name, x2, t, mode, ignore_index=IGNORE, per_image=True)
    )
    assert float(again) == pytest.approx(float(out.detach()), rel=1e-12, abs=1e-14)
    assert torch.all(x1.grad.masked_select(ignored.expand_as(x1)) == 0)


@SETTINGS
@given(seed=st.integers(0, 10_000), name=st.sampled_from(ALL), mode=st.sampled_from(["multiclass", "multilabel"]))
def test_region_extra_invariant_to_pixel_permutation(seed, name, mode):
    if name == "generalized_wasserstein_dice_loss":
        mode = "multiclass"
    x, t = _random_case(seed, mode, 2, 3, 15, ignore=mode == "multiclass")
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(seed))
    kw = {"ignore_index": IGNORE} if mode == "multiclass" else {}
    a = _call(name, x, t, mode, **kw)
    b = _call(name, x[..., perm], t[..., perm], mode, **kw)
    assert float(b) == pytest.approx(float(a), rel=1e-12, abs=1e-15)


def test_region_extra_index_target_builds_no_one_hot_of_the_input_size(make_case):
    # same numbers from the index path and from an explicit one-hot (the index path gathers and scatters)
    case = make_case("multiclass", target="index", seed=51)
    onehot = torch.nn.functional.one_hot(case.t, 3).movedim(-1, 1).double()
    for name in LOSSES:
        a = getattr(SF, name)(case.x, case.t, mode="multiclass", per_image=True, reduction="none")
        b = getattr(SF, name)(case.x, onehot, mode="multiclass", per_image=True, reduction="none")
        _close(a, b.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_region_extra_binary_squeezed_equals_channel(make_case, name):
    case = make_case("binary", target="soft", seed=53)
    a = getattr(SF, name)(case.x, case.t, mode="binary")
    b = getattr(SF, name)(case.x[:, 0], case.t[:, 0], mode="binary")
    _close(a, b.numpy(), rtol=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_region_extra_extreme_logits_and_empty_masks_stay_finite(name):
    x = torch.tensor([[[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, -1e4, 1e4]]]).reshape(1, 2, 2, 2)
    t = torch.zeros(1, 2, 2, dtype=torch.long)  # class 1 empty
    x.requires_grad_(True)
    out = _call(name, x, t, "multiclass")
    out.backward()
    assert torch.isfinite(out)
    assert torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(_call(name, x.detach().bfloat16(), t, "multiclass"))


# -------------------------------------------------------------------------------------- bounds and bad input

BOUNDS = [
    # (loss, hyperparameter, just inside, just outside, message)
    ("log_cosh_dice_loss", "smooth", 0.0, -5e-324, r"`smooth` must be >= 0"),
    ("sensitivity_specificity_loss", "r", 0.0, -5e-324, r"`r` must be >= 0"),
    ("sensitivity_specificity_loss", "r", 1.0, math.nextafter(1.0, 2.0), r"`r` must be <= 1"),
    ("sensitivity_specificity_loss", "eps", 5e-324, 0.0, r"`eps` must be > 0"),
    ("fbeta_loss", "beta", 0.0, -5e-324, r"`beta` must be >= 0"),
    ("fbeta_loss", "smooth", 0.0, -5e-324, r"`smooth` must be >= 0"),
    ("generalized_wasserstein_dice_loss", "smooth", 0.0, -5e-324, r"`smooth` must be >= 0"),
]
MODULES = {
    "log_cosh_dice_loss": "LogCoshDiceLoss",
    "sensitivity_specificity_loss": "SensitivitySpecificityLoss",
    "fbeta_loss": "FBetaLoss",
    "generalized_wasserstein_dice_loss": "GeneralizedWassersteinDiceLoss",
}


@pytest.mark.parametrize(("name", "key", "inside", "outside", "msg"), BOUNDS)
def test_region_extra_bound_inside_passes_outside_raises(name, key, inside, outside, msg):
    from seglosses import losses

    x = torch.tensor([[[[0.5, -1.0], [2.0, 0.0]], [[0.1, 0.3], [-0.2, 0.4]]]])
    t = torch.tensor([[[1, 0], [1, 0]]])
    assert torch.isfinite(_call(name, x, t, "multiclass", **{key: inside}))
    with pytest.raises(ValueError, match=rf"{name}: {msg}"):
        _call(name, x, t, "multiclass", **{key: outside})
    extra = {"dist_matrix": [[0, 1], [1, 0]]} if name == "generalized_wasserstein_dice_loss" else {}
    module_cls = getattr(losses, MODULES[name])
    assert torch.isfinite(module_cls(mode="multiclass", **{key: inside}, **extra)(x, t))
    with pytest.raises(ValueError, match=rf"{name}: {msg}"):
        module_cls(mode="multiclass", **{key: outside}, **extra)


def test_region_extra_declared_bounds():
    from seglosses._checks import declared

    got = {n: {k: str(v) for k, v in declared(n).items()} for n in ALL}
    assert got == {
        "log_cosh_dice_loss": {"smooth": "[0, inf)", "squared": "Flag()"},
        "sensitivity_specificity_loss": {"r": "[0, 1]", "eps": "(0, inf)"},
        "fbeta_loss": {"beta": "[0, inf)", "smooth": "[0, inf)"},
        "generalized_wasserstein_dice_loss": {"smooth": "[0, inf)"},
    }


@pytest.mark.parametrize(
    ("kw", "exc", "msg"),
    [
        ({"mode": "binary"}, ValueError, r"`mode` must be one of 'multiclass' for this loss; got 'binary'"),
        ({"dist_matrix": [[0, 1, 1], [1, 0, 1]]}, ValueError, r"`dist_matrix` must have shape \(C, C\) with C >= 2"),
        ({"dist_matrix": [[0, 1], [1, 0]]}, ValueError, r"`dist_matrix` must have shape \(C, C\)=\(3, 3\)"),
        ({"dist_matrix": [[0, 1, 2], [1, 0, 1], [1, 1, 0]]}, ValueError, r"`dist_matrix` must be symmetric"),
        ({"dist_matrix": [[1, 1, 1], [1, 0, 1], [1, 1, 0]]}, ValueError, r"`dist_matrix` must have a zero diagonal"),
        (
            {"dist_matrix": [[0, -1, 1], [-1, 0, 1], [1, 1, 0]]},
            ValueError,
            r"`dist_matrix` must hold finite values >= 0",
        ),
        ({"dist_matrix": [[0, 0, 0], [0, 0, 0], [0, 0, 0]]}, ValueError, r"`dist_matrix` must have a positive entry"),
        ({"dist_matrix": "uniform"}, TypeError, r"`dist_matrix` must be a \(C, C\) tensor or nested sequence"),
        ({"reduction": "avg"}, ValueError, r"`reduction` must be one of 'mean', 'sum', 'none'"),
    ],
)
def test_generalized_wasserstein_dice_bad_input_raises(kw, exc, msg):
    x = torch.zeros(2, 3, 4, 4)
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    args = {"mode": "multiclass", "dist_matrix": (1 - torch.eye(3)).tolist(), **kw}
    with pytest.raises(exc, match=rf"generalized_wasserstein_dice_loss: {msg}"):
        SF.generalized_wasserstein_dice_loss(x, t, **args)


def test_generalized_wasserstein_dice_target_rules():
    x = torch.zeros(1, 3, 2, 2)
    m = (1 - torch.eye(3)).tolist()
    soft = torch.full((1, 3, 2, 2), 1 / 3)
    with pytest.raises(ValueError, match=r"generalized_wasserstein_dice_loss: `target` must be hard"):
        SF.generalized_wasserstein_dice_loss(x, soft, mode="multiclass", dist_matrix=m)
    multi = torch.ones(1, 3, 2, 2)
    with pytest.raises(ValueError, match=r"must be one-hot \(exactly one 1 per pixel\)"):
        SF.generalized_wasserstein_dice_loss(x, multi, mode="multiclass", dist_matrix=m)
    onehot = torch.nn.functional.one_hot(torch.zeros(1, 2, 2, dtype=torch.long), 3).movedim(-1, 1).float()
    with pytest.raises(ValueError, match=r"`ignore_index` applies to index targets"):
        SF.generalized_wasserstein_dice_loss(x, onehot, mode="multiclass", dist_matrix=m, ignore_index=255)


@pytest.mark.parametrize("name", LOSSES)
def test_region_extra_bad_input_raises(name):
    x = torch.zeros(2, 3, 4, 4)
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    fn = getattr(SF, name)
    with pytest.raises(ValueError, match=rf"{name}: `mode` must be one of"):
        fn(x, t, mode="multi")
    with pytest.raises(ValueError, match=rf"{name}: `class_weights` is not defined in mode='binary'"):
        fn(x[:, :1], t.unsqueeze(1).float(), mode="binary", class_weights=[1.0])
    with pytest.raises(ValueError, match=rf"{name}: `class_weights` must have length C=3"):
        fn(x, t, mode="multiclass", class_weights=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=rf"{name}: `target` class indices must be in \[0, 3\)"):
        fn(x, t + 3, mode="multiclass")
    with pytest.raises(ValueError, match=rf"{name}: `include_background`=False drops channel 0"):
        fn(x[:, :1], t.unsqueeze(1).float(), mode="multilabel", include_background=False)
    with pytest.raises(TypeError, match=rf"{name}: `per_image` must be a bool"):
        fn(x, t, mode="multiclass", per_image=1)


def test_region_extra_modules_and_registry():
    for name, cls in MODULES.items():
        extra = {"dist_matrix": [[0, 1, 1], [1, 0, 1], [1, 1, 0]]} if name == ALL[-1] else {}
        module = getattr(seglosses.losses, cls)(mode="multiclass", **extra)
        x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
        t = torch.randint(0, 3, (2, 4, 4))
        _close(module(x, t), getattr(SF, name)(x, t, mode="multiclass", **extra).numpy(), rtol=1e-14)


def test_generalized_wasserstein_dice_image_with_no_kept_pixel_scores_zero(make_case):
    case = make_case("multiclass", target="index", c=3, ignore=True, seed=47)
    t = case.t.clone()
    t[0] = IGNORE
    for smooth in (0.0, 1e-5):
        out = SF.generalized_wasserstein_dice_loss(
            case.x, t, mode="multiclass", dist_matrix=M_UNEVEN, ignore_index=IGNORE, smooth=smooth, reduction="none"
        )
        assert float(out[0]) == 0.0
        _close(out, ref_gwd(case.x_np, t.numpy(), M_UNEVEN, ignore_index=IGNORE, smooth=smooth, reduction="none"))
