"""TopK cross-entropy (Wu et al. 2016; nnU-Net's TopK10) against a NumPy float64 reference and nnU-Net's code.

The reference computes each element's (binary) cross-entropy from the formulas (torch's weighted, label-smoothed
form for multiclass), drops ignored elements, sorts, and averages the ``max(1, ceil(k n / 100))`` largest, with the
count computed in exact rationals (``fractions.Fraction``). nnU-Net's ``TopKLoss.forward`` is transcribed below
(from ``nnunet/training/loss_functions/TopK_loss.py``; the same code is JunMa11/SegLoss's ``TopKLoss``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_f
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seglosses
import seglosses.functional as SF

IGNORE = 255
SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --------------------------------------------------------------------------------------------- NumPy reference


def _log_probs(x, mode, from_logits):
    x = np.asarray(x, dtype=np.float64)
    if mode == "multiclass":
        if from_logits:
            z = x - x.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            return logp, None
        with np.errstate(divide="ignore"):
            return np.log(x), None
    if from_logits:
        return -np.logaddexp(0, -x), -np.logaddexp(0, x)
    with np.errstate(divide="ignore"):
        return np.log(x), np.log1p(-x)


def _xlogy(a, logb):
    return np.where(a == 0, 0.0, a * np.where(np.isfinite(logb), logb, -1e300))


def ref_elements(x, t, mode, *, from_logits=True, class_weights=None, label_smoothing=0.0, ignore_index=None):
    """Per-element losses ``(N, E)`` and kept mask ``(N, E)``."""
    n, c = x.shape[0], x.shape[1]
    logp, log1mp = _log_probs(x, mode, from_logits)
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, dtype=np.float64)
    wshape = (1, c) + (1,) * (x.ndim - 2)
    ls = label_smoothing
    t = np.asarray(t)
    if mode == "multiclass" and t.ndim == x.ndim - 1:
        keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
        y = np.where(keep, t, 0)
        g = np.moveaxis(np.eye(c)[y], -1, 1)
        # torch: (1 - ls) w_y (-log p_y) + ls / C sum_c w_c (-log p_c)
        ce = -(1 - ls) * (w.reshape(wshape) * g * logp).sum(1) - ls / c * (w.reshape(wshape) * logp).sum(1)
        ce = np.where(keep, ce, 0.0)
        return ce.reshape(n, -1), keep.reshape(n, -1)
    if mode == "multiclass":  # soft/one-hot target, smoothed as torch: g (1 - ls) + ls / C
        g = t.astype(np.float64) * (1 - ls) + ls / c
        ce = -(w.reshape(wshape) * _xlogy(g, logp)).sum(1)
        return ce.reshape(n, -1), np.ones(ce.shape, bool).reshape(n, -1)
    keep = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    g = np.where(keep, t, 0.0).astype(np.float64) * (1 - ls) + ls / 2
    bce = -(_xlogy(g, logp) + _xlogy(1 - g, log1mp)) * w.reshape(wshape)
    bce = np.where(keep, bce, 0.0)
    return bce.reshape(n, -1), keep.reshape(n, -1)


def ref_count(k, n):
    """``max(1, ceil(k n / 100))`` in exact rationals (0 for n = 0)."""
    return 0 if n == 0 else max(1, math.ceil(Fraction(str(k)) * n / 100))


def _top_mean(values, keep, k):
    kept = np.sort(values[keep])[::-1]
    count = ref_count(k, kept.size)
    return (kept[:count].mean() if count else 0.0), count


def ref_topk(
    x,
    t,
    *,
    mode,
    from_logits=True,
    k=10.0,
    class_weights=None,
    label_smoothing=0.0,
    ignore_index=None,
    per_image=False,
    reduction="mean",
):
    values, keep = ref_elements(
        x,
        t,
        mode,
        from_logits=from_logits,
        class_weights=class_weights,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    if not per_image:
        return np.asarray(_top_mean(values.reshape(-1), keep.reshape(-1), k)[0])
    rows = [_top_mean(values[i], keep[i], k) for i in range(values.shape[0])]
    means = np.asarray([m for m, _ in rows])
    if reduction == "none":
        return means
    if reduction == "sum":
        return np.asarray(means.sum())
    has = np.asarray([cnt > 0 for _, cnt in rows])
    return np.asarray(means.sum() / has.sum() if has.any() else 0.0)


def nnunet_topk(x, t, k=10, weight=None, ignore_index=-100):
    """nnU-Net TopKLoss.forward: CE with reduction none, topk of int(n k / 100) over the flat batch, mean."""
    res = torch_f.cross_entropy(x, t, weight=weight, ignore_index=ignore_index, reduction="none")
    num_voxels = np.prod(res.shape, dtype=np.int64)
    res, _ = torch.topk(res.view((-1,)), int(num_voxels * k / 100), sorted=False)
    return res.mean()


def numeric_grad(f, x):
    """Central differences with a step relative to each entry (small probabilities get a small step)."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        h = 1e-6 * max(abs(old), 1e-2)
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


FORMS = [
    ("binary", "hard"),
    ("binary", "soft"),
    ("multiclass", "index"),
    ("multiclass", "onehot"),
    ("multiclass", "soft"),
    ("multilabel", "hard"),
    ("multilabel", "soft"),
]


def _cases():
    for mode, form in FORMS:
        for dims in (2, 3):
            for ignore in (False, True) if form in ("hard", "index") else (False,):
                yield pytest.param(mode, form, dims, ignore, id=f"{mode}-{form}-{dims}d-ignore={ignore}")


# ------------------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "form", "dims", "ignore"), list(_cases()))
def test_topk_loss_value_and_gradient_match_reference(make_case, mode, form, dims, ignore, per_image):
    from_logits = form != "soft" or dims == 2
    case = make_case(mode, dims=dims, target=form, ignore=ignore, from_logits=from_logits, seed=dims + 3 * ignore)
    kw = case.args(per_image=per_image, k=20.0)
    x = case.xg()
    out = SF.topk_loss(x, case.t, **kw)
    expected = ref_topk(case.x_np, case.t_np, **kw)
    _close(out, expected)
    out.backward()
    num = numeric_grad(lambda a: float(ref_topk(a, case.t_np, **kw)), case.x_np)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(
    ("mode", "form", "kw"),
    [
        ("multiclass", "index", {"class_weights": [0.5, 2.0, 1.5]}),
        ("multiclass", "index", {"label_smoothing": 0.2, "class_weights": [0.5, 2.0, 1.5]}),
        ("multiclass", "soft", {"label_smoothing": 0.1}),
        ("multilabel", "hard", {"class_weights": [0.5, 2.0, 1.5], "label_smoothing": 0.3}),
        ("binary", "hard", {"label_smoothing": 0.1, "k": 3.0}),
        ("multiclass", "index", {"k": 100.0}),
        ("multiclass", "index", {"k": 1.1}),
    ],
)
def test_topk_loss_options_match_reference(make_case, mode, form, kw):
    case = make_case(mode, target=form, ignore=form in ("index", "hard"), seed=17)
    args = case.args(**kw)
    out = SF.topk_loss(case.x, case.t, **args)
    _close(out, ref_topk(case.x_np, case.t_np, **args))
    assert not torch.allclose(out, SF.topk_loss(case.x, case.t, **case.args()))  # each option changes the value


def test_topk_loss_per_image_reductions_and_an_image_with_no_kept_pixel(make_case):
    case = make_case("multiclass", target="index", ignore=True, n=3, seed=19)
    t = case.t.clone()
    t[1] = IGNORE  # image 1 has no kept pixel
    t_np = t.numpy()
    for reduction in ("mean", "sum", "none"):
        args = case.args(per_image=True, reduction=reduction)
        out = SF.topk_loss(case.x, t, **args)
        _close(out, ref_topk(case.x_np, t_np, **args))
    none = SF.topk_loss(case.x, t, **case.args(per_image=True, reduction="none"))
    assert none.shape == (3,)
    assert float(none[1]) == 0.0
    mean = SF.topk_loss(case.x, t, **case.args(per_image=True))
    _close(mean, ((none[0] + none[2]) / 2).numpy(), rtol=1e-14)  # the empty image is left out of the mean
    # without per_image there is one value over the batch: every reduction returns it
    one = [SF.topk_loss(case.x, t, **case.args(reduction=r)) for r in ("mean", "sum", "none")]
    assert one[0].shape == ()
    assert torch.equal(one[0], one[1])
    assert torch.equal(one[0], one[2])


def test_topk_loss_gradcheck_float64_with_ignored_pixels(make_case):
    case = make_case("multiclass", target="index", ignore=True, spatial=(2, 3), seed=23)
    kw = case.args(k=30.0, class_weights=[0.5, 2.0, 1.5])
    assert torch.autograd.gradcheck(lambda a: SF.topk_loss(a, case.t, **kw), (case.xg(),))
    ml = make_case("multilabel", target="hard", ignore=True, spatial=(2, 3), seed=23)
    kw = ml.args(k=40.0, per_image=True)
    assert torch.autograd.gradcheck(lambda a: SF.topk_loss(a, ml.t, **kw), (ml.xg(),))


def test_topk_loss_count_is_exact():
    # 1.1 * 3000 / 100 is 33.00000000000001 in floating point: a float ceil would select 34 values
    assert math.ceil(1.1 * 3000 / 100) == 34
    assert ref_count(1.1, 3000) == 33
    x = torch.linspace(-3, 3, 3000, dtype=torch.float64).reshape(1, 1, 3000)
    g = torch.zeros(1, 1, 3000, dtype=torch.float64)
    bce = torch_f.binary_cross_entropy_with_logits(x, g, reduction="none").flatten()
    expected = bce.sort(descending=True).values[:33].mean()
    _close(SF.topk_loss(x, g, mode="binary", k=1.1), expected.numpy(), rtol=1e-14)
    # at least one value, however small k is
    _close(SF.topk_loss(x, g, mode="binary", k=1e-9), bce.max().numpy(), rtol=1e-14)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_topk_loss_k100_is_the_unweighted_cross_entropy(make_case, mode):
    case = make_case(mode, target="index" if mode == "multiclass" else "hard", seed=29)
    out = SF.topk_loss(case.x, case.t, mode=mode, k=100.0)
    if mode == "multiclass":
        expected = torch_f.cross_entropy(case.x, case.t)
    else:
        expected = torch_f.binary_cross_entropy_with_logits(case.x, case.t)
    _close(out, expected.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------- nnU-Net's TopKLoss


def test_topk_loss_equals_nnunet_when_the_count_is_whole(make_case):
    case = make_case("multiclass", target="index", n=2, spatial=(5, 6), seed=31)  # 60 pixels: k = 10 gives 6
    weight = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    _close(SF.topk_loss(case.x, case.t, mode="multiclass"), nnunet_topk(case.x, case.t).numpy(), rtol=1e-12)
    ours = SF.topk_loss(case.x, case.t, mode="multiclass", class_weights=weight, k=25.0)
    _close(ours, nnunet_topk(case.x, case.t, k=25.0, weight=weight).numpy(), rtol=1e-12)


def test_topk_loss_fixes_nnunet_selecting_ignored_pixels(make_case):
    case = make_case("multiclass", target="index", n=2, spatial=(5, 6), seed=37)
    t = case.t.clone()
    t.view(-1)[3:] = IGNORE  # 3 kept pixels out of 60
    kept_ce = torch_f.cross_entropy(case.x, t, ignore_index=IGNORE, reduction="none").flatten()[:3]
    theirs = nnunet_topk(case.x, t, ignore_index=IGNORE)
    # nnU-Net takes int(60 * 10 / 100) = 6 values from a pool where the 57 ignored pixels count 0: 3 of them
    _close(theirs, (kept_ce.sum() / 6).numpy(), rtol=1e-12)
    ours = SF.topk_loss(case.x, t, mode="multiclass", ignore_index=IGNORE)
    _close(ours, kept_ce.max().numpy(), rtol=1e-12)  # ceil(10 * 3 / 100) = 1 value, from the kept pixels only
    # ours equals nnU-Net run on the kept pixels alone when the count is whole there
    t2 = case.t.clone()
    t2.view(-1)[30:] = IGNORE  # 30 kept pixels: 3 values
    kept_x = case.x.movedim(1, -1).reshape(-1, 3)[:30].T.reshape(1, 3, 30)
    kept_t = case.t.reshape(1, -1)[:, :30]
    _close(
        SF.topk_loss(case.x, t2, mode="multiclass", ignore_index=IGNORE),
        nnunet_topk(kept_x, kept_t).numpy(),
        rtol=1e-12,
    )


def test_topk_loss_fixes_nnunet_nan_on_tiny_inputs():
    x = torch.tensor([[[0.3, -1.0, 2.0, 0.1, 0.7], [0.0, 0.5, -0.5, 1.0, 0.2]]], dtype=torch.float64)
    t = torch.tensor([[1, 0, 0, 1, 1]])
    assert torch.isnan(nnunet_topk(x, t))  # int(5 * 10 / 100) = 0 values: the mean of nothing
    ours = SF.topk_loss(x, t, mode="multiclass")
    _close(ours, torch_f.cross_entropy(x, t, reduction="none").max().numpy(), rtol=1e-14)


def test_topk_loss_every_pixel_ignored_gives_zero_and_zero_gradient():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.full((2, 4, 4), IGNORE)
    for per_image in (False, True):
        out = SF.topk_loss(x, t, mode="multiclass", ignore_index=IGNORE, per_image=per_image)
        (grad,) = torch.autograd.grad(out, x)
        assert float(out.detach()) == 0.0
        assert torch.all(grad == 0)
    empty = torch.zeros(2, 3, 0, dtype=torch.float64)
    assert float(SF.topk_loss(empty, torch.zeros(2, 0, dtype=torch.long), mode="multiclass")) == 0.0


# ------------------------------------------------------------------------------------------------- properties


def _random(seed, mode, ignore, n=2, c=3, s=20):
    rng = np.random.default_rng(seed)
    ch = 1 if mode == "binary" else c
    x = torch.tensor(rng.normal(size=(n, ch, s)) * 2)
    if mode == "multiclass":
        t = torch.tensor(rng.integers(0, c, size=(n, s)))
        mask = torch.tensor(rng.random((n, s)) < 0.3)
    else:
        t = torch.tensor((rng.random((n, ch, s)) < 0.4).astype(np.float64))
        mask = torch.tensor(rng.random((n, ch, s)) < 0.3)
    if ignore:
        t = torch.where(mask, IGNORE, t) if mode == "multiclass" else torch.where(mask, float(IGNORE), t)
    return x, t


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_topk_loss_ignored_pixels_change_nothing(seed, mode):
    x, t = _random(seed, mode, ignore=True)
    ignored = (t == IGNORE).unsqueeze(1) if mode == "multiclass" else t == IGNORE
    x1 = x.clone().requires_grad_(True)
    out = SF.topk_loss(x1, t, mode=mode, ignore_index=IGNORE, k=30.0)
    out.backward()
    # ignored pixels get the largest logits of the wrong sign: nnU-Net's pool would not change, ours must not either
    x2 = torch.where(ignored, -50.0 * torch.sign(x) - 50.0, x)
    again = SF.topk_loss(x2, t, mode=mode, ignore_index=IGNORE, k=30.0)
    assert float(again) == pytest.approx(float(out.detach()), rel=1e-13)
    assert torch.all(x1.grad.masked_select(ignored.expand_as(x1)) == 0)


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_topk_loss_invariant_to_pixel_permutation(seed, mode):
    x, t = _random(seed, mode, ignore=True)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(seed))
    for per_image in (False, True):
        a = SF.topk_loss(x, t, mode=mode, ignore_index=IGNORE, per_image=per_image)
        b = SF.topk_loss(x[..., perm], t[..., perm], mode=mode, ignore_index=IGNORE, per_image=per_image)
        assert float(b) == pytest.approx(float(a), rel=1e-13)


@SETTINGS
@given(seed=st.integers(0, 10_000), k1=st.floats(0.5, 100.0), k2=st.floats(0.5, 100.0))
def test_topk_loss_decreases_with_k_and_is_at_most_the_largest_value(seed, k1, k2):
    x, t = _random(seed, "multiclass", ignore=True)
    lo, hi = sorted((k1, k2))
    a = SF.topk_loss(x, t, mode="multiclass", ignore_index=IGNORE, k=lo)
    b = SF.topk_loss(x, t, mode="multiclass", ignore_index=IGNORE, k=hi)
    ce = torch_f.cross_entropy(x, t, ignore_index=IGNORE, reduction="none")
    assert float(b) <= float(a) + 1e-12
    assert float(a) <= float(ce.max()) + 1e-12


@SETTINGS
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_topk_loss_perfect_prediction_gives_zero(seed, mode):
    _, t = _random(seed, mode, ignore=False)
    p = torch_f.one_hot(t, 3).movedim(-1, 1).double() if mode == "multiclass" else t.clone()
    p.requires_grad_(True)
    out = SF.topk_loss(p, t, mode=mode, from_logits=False)
    out.backward()
    assert float(out.detach()) == 0.0
    assert torch.isfinite(p.grad).all()


def test_topk_loss_extreme_logits_and_autocast_stay_finite():
    x = torch.tensor([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, 1e4, -1e4]]).reshape(1, 2, 2, 2).requires_grad_(True)
    t = torch.tensor([[[0, 0], [1, 1]]])
    out = SF.topk_loss(x, t, mode="multiclass")
    out.backward()
    assert torch.isfinite(out)
    assert torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(SF.topk_loss(x.detach().bfloat16(), t, mode="multiclass"))


def test_topk_loss_binary_squeezed_and_onehot_equal(make_case):
    case = make_case("binary", target="hard", seed=41)
    a = SF.topk_loss(case.x, case.t, mode="binary")
    _close(SF.topk_loss(case.x[:, 0], case.t[:, 0], mode="binary"), a.numpy(), rtol=1e-14)
    mc = make_case("multiclass", target="index", seed=41)
    onehot = torch_f.one_hot(mc.t, 3).movedim(-1, 1).double()
    _close(
        SF.topk_loss(mc.x, onehot, mode="multiclass"), SF.topk_loss(mc.x, mc.t, mode="multiclass").numpy(), rtol=1e-14
    )


# -------------------------------------------------------------------------------------- bounds and bad input

X = torch.tensor([[[0.5, -1.0, 2.0, 0.0]]])
G = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])


@pytest.mark.parametrize(
    ("key", "inside", "outside", "msg"),
    [
        ("k", 5e-324, 0.0, r"`k` must be > 0; got 0"),
        ("k", 100.0, math.nextafter(100.0, 200.0), r"`k` must be <= 100"),
        ("label_smoothing", 0.0, -5e-324, r"`label_smoothing` must be >= 0"),
        ("label_smoothing", 1.0, math.nextafter(1.0, 2.0), r"`label_smoothing` must be <= 1"),
    ],
)
def test_topk_loss_bound_inside_passes_outside_raises(key, inside, outside, msg):
    assert torch.isfinite(SF.topk_loss(X, G, mode="binary", **{key: inside}))
    assert torch.isfinite(seglosses.get_loss("topk", mode="binary", **{key: inside})(X, G))
    with pytest.raises(ValueError, match=rf"topk_loss: {msg}"):
        SF.topk_loss(X, G, mode="binary", **{key: outside})
    with pytest.raises(ValueError, match=rf"topk_loss: {msg}"):
        seglosses.get_loss("topk", mode="binary", **{key: outside})


def test_topk_loss_declared_bounds():
    from seglosses._checks import declared

    assert {k: str(v) for k, v in declared("topk_loss").items()} == {"k": "(0, 100]", "label_smoothing": "[0, 1]"}


@pytest.mark.parametrize(
    ("kw", "exc", "msg"),
    [
        ({"k": "10"}, TypeError, r"topk_loss: `k` must be a real number; got str '10'"),
        ({"k": float("nan")}, ValueError, r"topk_loss: `k` must be finite"),
        ({"mode": "binar"}, ValueError, r"topk_loss: `mode` must be one of .*did you mean 'binary'"),
        ({"class_weights": [1.0]}, ValueError, r"topk_loss: `class_weights` is not defined in mode='binary'"),
        ({"per_image": "yes"}, TypeError, r"topk_loss: `per_image` must be a bool"),
        ({"reduction": "avg"}, ValueError, r"topk_loss: `reduction` must be one of 'mean', 'sum', 'none'"),
        ({"ignore_index": 1.5}, TypeError, r"topk_loss: `ignore_index` must be an int or None"),
        ({"sync_stats": True}, ValueError, r"topk_loss: `sync_stats`=True needs an initialised torch.distributed"),
    ],
)
def test_topk_loss_bad_arguments_raise(kw, exc, msg):
    args = {"mode": "binary", **kw}
    with pytest.raises(exc, match=msg):
        SF.topk_loss(X, G, **args)


def test_topk_loss_bad_input_raises():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"topk_loss: `target` class indices must be in \[0, 3\)"):
        SF.topk_loss(x, torch.full((2, 4, 4), 3), mode="multiclass")
    with pytest.raises(ValueError, match=r"topk_loss: `target` for mode='multiclass' must have shape"):
        SF.topk_loss(x, torch.zeros(2, 1, 4, 4, dtype=torch.long), mode="multiclass")
    with pytest.raises(TypeError, match=r"topk_loss: `input` must be a floating-point tensor"):
        SF.topk_loss(x.long(), torch.zeros(2, 4, 4, dtype=torch.long), mode="multiclass")
