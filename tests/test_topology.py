"""cldice_loss and dice_cldice_loss (Shit et al., CVPR 2021) and the soft skeleton.

Expected values come from tests/reference_distance.py (NumPy float64: Algorithm 1 of the paper written literally,
with min/max over in-image neighbours), from the official clDice PyTorch code (transcribed there) and from MONAI's
``SoftclDiceLoss`` / ``SoftDiceclDiceLoss`` with the argument mapping spelled out in each test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seglosses.functional as SF
from reference import numeric_grad
from reference_distance import (
    cldice_loss_ref,
    cldice_official_ref,
    cldice_sums_ref,
    harmonic_ref,
    soft_skel_ref,
)
from seglosses.functional.topology import hard_skeleton, soft_skeleton
from test_boundary import IGNORE, make

CASES = [
    # (mode, dims, form, ignore, from_logits)
    ("binary", 2, "hard", False, True),
    ("binary", 3, "hard", True, False),
    ("multiclass", 2, "index", True, True),
    ("multiclass", 3, "index", False, False),
    ("multiclass", 2, "onehot", False, True),
    ("multilabel", 2, "hard", True, True),
    ("multilabel", 3, "hard", False, True),
]


def _start(mode: str, include_background: bool) -> int:
    return 0 if mode == "binary" or include_background else 1


# ------------------------------------------------------------------------------------------------ skeleton


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("iterations", [0, 1, 4])
def test_soft_skeleton_matches_algorithm_1(dims: int, iterations: int) -> None:
    rng = np.random.default_rng(dims * 10 + iterations)
    x = rng.random(size=(1, 2, *(6, 5, 4)[:dims]))
    got = soft_skeleton(torch.from_numpy(x), iterations)
    np.testing.assert_allclose(got.numpy(), soft_skel_ref(x, iterations), rtol=1e-12, atol=0)
    # gradient: central differences of the reference (a weighted sum of the skeleton)
    w = rng.random(size=x.shape)
    xt = torch.from_numpy(x).requires_grad_(True)
    (soft_skeleton(xt, iterations) * torch.from_numpy(w)).sum().backward()
    if dims <= 2:
        expected = numeric_grad(lambda a: float((soft_skel_ref(a, iterations) * w).sum()), x)
        np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-6, atol=1e-8)


def test_soft_skeleton_gradcheck() -> None:
    x = torch.rand(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: soft_skeleton(a, 3), (x,), fast_mode=True)
    x3 = torch.rand(1, 1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: soft_skeleton(a, 2), (x3,), fast_mode=True)


@settings(deadline=None, max_examples=25)
@given(
    bits=st.lists(st.booleans(), min_size=60, max_size=60),
    dims=st.sampled_from([2, 3]),
    iterations=st.integers(0, 6),
)
def test_soft_skeleton_of_hard_mask_is_within_it(bits: list[bool], dims: int, iterations: int) -> None:
    shape = (1, 1, 6, 10) if dims == 2 else (1, 1, 3, 4, 5)
    m = torch.tensor(bits).reshape(shape)
    soft = soft_skeleton(m.double(), iterations)
    hard = hard_skeleton(m, iterations)
    assert torch.equal(soft, hard.double())  # 0/1 values, and the bool path is the same skeleton
    assert not bool((hard & ~m).any())  # within the mask
    np.testing.assert_array_equal(soft.numpy(), soft_skel_ref(m.double().numpy(), iterations))


# ------------------------------------------------------------------------------------------------ clDice


@pytest.mark.parametrize(("mode", "dims", "form", "ignore", "from_logits"), CASES)
@pytest.mark.parametrize(
    ("per_image", "reduction", "include_background", "iterations", "smooth"),
    [(False, "mean", True, 10, 1.0), (True, "none", False, 2, 0.5), (False, "sum", False, 0, 0.0)],
)
def test_cldice_matches_reference(
    mode: str,
    dims: int,
    form: str,
    ignore: bool,
    from_logits: bool,
    per_image: bool,
    reduction: str,
    include_background: bool,
    iterations: int,
    smooth: float,
) -> None:
    d = make(mode, dims, form=form, ignore=ignore, from_logits=from_logits)
    kw = d.kw(
        per_image=per_image,
        reduction=reduction,
        include_background=include_background,
        iterations=iterations,
        smooth=smooth,
    )
    got = SF.cldice_loss(d.x, d.t, **kw)
    start = _start(mode, include_background)
    p = d.p()
    ref = cldice_loss_ref(
        p[:, start:],
        d.g[:, start:],
        d.valid[:, start:],
        start=0,
        iterations=iterations,
        smooth=smooth,
        per_image=per_image,
        reduction=reduction,
    )
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    ("mode", "form", "weights"),
    [("binary", "hard", None), ("multiclass", "index", [1.0, 2.0, 0.5]), ("multilabel", "hard", [0.2, 1.0, 1.0])],
)
def test_cldice_gradient_matches_reference(mode: str, form: str, weights: list[float] | None) -> None:
    d = make(mode, 2, form=form, ignore=True, n=1)
    x = d.x.clone().requires_grad_(True)
    SF.cldice_loss(x, d.t, **d.kw(iterations=3, class_weights=weights)).backward()

    def f(z: np.ndarray) -> float:
        return float(cldice_loss_ref(d.p(z), d.g, d.valid, start=0, iterations=3, weights=weights))

    expected = numeric_grad(f, d.logits)
    np.testing.assert_allclose(x.grad.reshape(expected.shape).numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_cldice_gradcheck(mode: str) -> None:
    d = make(mode, 2, ignore=True, n=2)
    x = d.x.clone().requires_grad_(True)
    kw = d.kw(per_image=True, iterations=3)
    assert torch.autograd.gradcheck(lambda a: SF.cldice_loss(a, d.t, **kw), (x,), fast_mode=True)


def test_cldice_soft_targets_and_index_equals_one_hot() -> None:
    d = make("multiclass", 2, form="index")
    oh = torch.nn.functional.one_hot(d.t, 3).movedim(-1, 1).double()
    torch.testing.assert_close(SF.cldice_loss(d.x, d.t, mode="multiclass"), SF.cldice_loss(d.x, oh, mode="multiclass"))
    soft = torch.softmax(torch.randn(2, 3, 6, 7, dtype=torch.float64), 1)
    got = SF.cldice_loss(d.x, soft, mode="multiclass", iterations=4)
    ref = cldice_loss_ref(d.p(), soft.numpy(), np.ones(soft.shape, bool), start=0, iterations=4)
    np.testing.assert_allclose(got.item(), float(ref), rtol=1e-6)


def test_cldice_one_spatial_axis() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 1, 15))
    g = (rng.random(size=(2, 1, 15)) < 0.5).astype(np.float64)
    got = SF.cldice_loss(torch.from_numpy(z), torch.from_numpy(g), mode="binary", iterations=2)
    ref = cldice_loss_ref(1 / (1 + np.exp(-z)), g, np.ones(g.shape, bool), start=0, iterations=2)
    np.testing.assert_allclose(got.item(), float(ref), rtol=1e-6)


def test_cldice_hand_example() -> None:
    # A 3x3 image whose middle row is the target, predicted exactly: both skeletons are the row (every pixel is on
    # the boundary), Tprec = Tsens = (3 + 1) / (3 + 1) = 1, loss 0. Predicting nothing: S(p) = 0, Tprec = 1/1,
    # Tsens = (0 + 1) / (3 + 1) = 1/4, clDice = 2 * 1/4 / (5/4) = 0.4, loss 0.6.
    g = torch.tensor([[[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]])
    assert SF.cldice_loss(g, g, mode="binary", from_logits=False).item() == 0.0
    assert SF.cldice_loss(torch.zeros_like(g), g, mode="binary", from_logits=False).item() == pytest.approx(0.6)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_cldice_properties(seed: int, mode: str) -> None:
    d = make(mode, 2, ignore=True, seed=seed, from_logits=False)
    kw = d.kw(iterations=3)
    loss = SF.cldice_loss(d.x, d.t, **kw)
    assert 0.0 <= loss.item() <= 1.0
    # a perfect hard prediction gives 0, the minimum: S(g) lies within g, so both ratios are 1
    g = torch.from_numpy(d.g)
    if mode == "multiclass":  # ignored pixels: any distribution (they only enter S(p), never a sum's g)
        g = torch.where(torch.from_numpy(d.valid), g, torch.full_like(g, 1 / 3))
    assert SF.cldice_loss(g, d.t, **kw).item() == pytest.approx(0.0, abs=1e-12)
    # batch order and (multilabel) class order change nothing
    perm = torch.tensor([1, 0])
    torch.testing.assert_close(SF.cldice_loss(d.x[perm], d.t[perm], **kw), loss, rtol=1e-12, atol=1e-14)
    if mode == "multilabel":
        cp = torch.tensor([2, 0, 1])
        torch.testing.assert_close(SF.cldice_loss(d.x[:, cp], d.t[:, cp], **kw), loss, rtol=1e-12, atol=1e-14)
    # the target's value at an ignored pixel changes nothing (it is background in S(g) and out of every sum)
    if mode != "multiclass":
        t2 = torch.where(torch.from_numpy(d.valid), d.t, torch.full_like(d.t, IGNORE))
        torch.testing.assert_close(SF.cldice_loss(d.x, t2, **kw), loss, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ peers


def test_cldice_vs_official_code() -> None:
    """Official ``soft_cldice(iter_=3)``: always 10 skeleton steps, every channel and image pooled.

    Binary mode (one channel), ``from_logits=False``, ``iterations=10``: equal. Its ``iter_=3`` is not ours
    ``iterations=3``. With 3 classes it pools the classes into one ratio; ours is each class's ratio, then the mean:
    the difference is exactly that pooling.
    """
    b = make("binary", 2, from_logits=False, n=2)
    official = cldice_official_ref(b.g, b.logits)
    ours10 = SF.cldice_loss(b.x, b.t, mode="binary", from_logits=False, iterations=10).item()
    ours3 = SF.cldice_loss(b.x, b.t, mode="binary", from_logits=False, iterations=3).item()
    np.testing.assert_allclose(ours10, official, rtol=1e-12)
    assert abs(ours3 - official) > 1e-6
    m = make("multiclass", 2, form="onehot", from_logits=False, n=2)
    official = cldice_official_ref(m.g[:, 1:], m.logits[:, 1:])  # exclude_background=True
    a, bb, c, e = (v.sum(0) for v in cldice_sums_ref(m.logits[:, 1:], m.g[:, 1:], m.valid[:, 1:], 10))
    pooled = 1 - harmonic_ref((a.sum() + 1) / (bb.sum() + 1), (c.sum() + 1) / (e.sum() + 1))
    np.testing.assert_allclose(official, pooled, rtol=1e-12)
    per_class = 1 - harmonic_ref((a + 1) / (bb + 1), (c + 1) / (e + 1))
    ours = SF.cldice_loss(m.x, m.t, mode="multiclass", from_logits=False, include_background=False)
    np.testing.assert_allclose(ours.item(), per_class.mean(), rtol=1e-12)
    assert abs(ours.item() - official) > 1e-6


@pytest.mark.parametrize("dims", [2, 3])
def test_cldice_equals_monai(dims: int) -> None:
    """MONAI ``SoftclDiceLoss(iter_=k, smooth_nr=s, smooth_dr=s, smooth=eps)`` per image, classes pooled.

    With one kept class (binary, or multiclass C=2 with ``include_background=False``) it is ours with
    ``iterations=k, smooth=s, per_image=True``, except for ``eps`` in the harmonic mean's denominator: with
    eps = 1e-300 (float64) the numbers are equal, values and gradients; with its default 1e-4 the difference is
    exactly ``2 T_p T_s / (T_p + T_s) - 2 T_p T_s / (T_p + T_s + 1e-4)`` per image.
    """
    cl = pytest.importorskip("monai.losses.cldice")
    b = make("binary", dims, n=3)
    xa, xb = b.x.clone().requires_grad_(True), b.x.clone().requires_grad_(True)
    peer = cl.SoftclDiceLoss(iter_=3, smooth=1e-300, sigmoid=True, reduction="none")
    theirs = peer(xa, b.t)
    ours = SF.cldice_loss(xb, b.t, mode="binary", iterations=3, per_image=True, reduction="none")[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    theirs.sum().backward()
    ours.sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-10, atol=1e-14)
    # the default eps = 1e-4: exactly the documented term
    theirs4 = cl.SoftclDiceLoss(iter_=3, sigmoid=True, reduction="none")(b.x, b.t)
    a, bb, c, e = (v[:, 0] for v in cldice_sums_ref(b.p(), b.g, b.valid, 3))
    tp, ts = (a + 1) / (bb + 1), (c + 1) / (e + 1)
    np.testing.assert_allclose(
        (theirs4 - ours.detach()).numpy(), 2 * tp * ts / (tp + ts) - 2 * tp * ts / (tp + ts + 1e-4), rtol=1e-8
    )
    # multiclass, two classes, background dropped
    m = make("multiclass", dims, n=2, c=2)
    peer = cl.SoftclDiceLoss(iter_=2, smooth=1e-300, softmax=True, to_onehot_y=True, include_background=False)
    ours = SF.cldice_loss(m.x, m.t, mode="multiclass", iterations=2, per_image=True, include_background=False)
    torch.testing.assert_close(ours, peer(m.x, m.t[:, None]), rtol=1e-12, atol=1e-14)


def test_dice_cldice_equals_monai_and_its_parts() -> None:
    cl = pytest.importorskip("monai.losses.cldice")
    b = make("binary", 2, n=3)
    peer = cl.SoftDiceclDiceLoss(iter_=3, alpha=0.3, smooth_nr=1.0, smooth_dr=1.0, smooth=1e-300, sigmoid=True)
    ours = SF.dice_cldice_loss(b.x, b.t, mode="binary", alpha=0.3, iterations=3, per_image=True)
    torch.testing.assert_close(ours, peer(b.x, b.t), rtol=1e-12, atol=1e-14)
    d = make("multiclass", 3, ignore=True)
    kw = d.kw(per_image=True, include_background=False, reduction="none", smooth=0.5)
    parts = 0.75 * SF.dice_loss(d.x, d.t, **kw) + 0.25 * SF.cldice_loss(d.x, d.t, iterations=4, **kw)
    torch.testing.assert_close(SF.dice_cldice_loss(d.x, d.t, alpha=0.25, iterations=4, **kw), parts)
    ref = 0.25 * cldice_loss_ref(
        d.p()[:, 1:], d.g[:, 1:], d.valid[:, 1:], start=0, iterations=4, smooth=0.5, per_image=True, reduction="none"
    )
    torch.testing.assert_close(0.25 * SF.cldice_loss(d.x, d.t, iterations=4, **kw), torch.from_numpy(ref))


# ------------------------------------------------------------------------------------------------ numerics, errors


def test_cldice_extreme_logits_empty_masks_and_autocast() -> None:
    d = make("multiclass", 2)
    x = (d.x * 1e4).float().requires_grad_(True)
    out = SF.cldice_loss(x, d.t, mode="multiclass")
    out.backward()
    assert torch.isfinite(out)
    assert torch.isfinite(x.grad).all()
    empty = torch.zeros(2, 1, 5, 5)
    for smooth in (1.0, 0.0):
        z = torch.full((2, 1, 5, 5), -30.0, requires_grad=True)
        out = SF.cldice_loss(z, empty, mode="binary", smooth=smooth)
        out.backward()
        assert torch.isfinite(out)
        assert torch.isfinite(z.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = SF.cldice_loss(d.x.float(), d.t, mode="multiclass")
    assert out16.dtype == torch.float32


@pytest.mark.parametrize("fn", [SF.cldice_loss, SF.dice_cldice_loss])
def test_cldice_bad_input(fn: Any) -> None:  # noqa: ANN401
    name = fn.__name__
    d = make("multiclass", 2)
    with pytest.raises(ValueError, match=rf"{name}: `iterations` must be >= 0; got -1"):
        fn(d.x, d.t, mode="multiclass", iterations=-1)
    with pytest.raises(TypeError, match=rf"{name}: `iterations` must be an int; got float 2.0"):
        fn(d.x, d.t, mode="multiclass", iterations=2.0)
    with pytest.raises(TypeError, match=rf"{name}: `iterations` must be an int; got bool"):
        fn(d.x, d.t, mode="multiclass", iterations=True)
    with pytest.raises(ValueError, match=rf"{name}: `smooth`"):
        fn(d.x, d.t, mode="multiclass", smooth=-1.0)
    with pytest.raises(ValueError, match=rf"{name}: .*1 to 3 spatial dims"):
        fn(torch.zeros(1, 1, 3, 3, 3, 3), torch.zeros(1, 1, 3, 3, 3, 3), mode="binary")
    b = make("binary", 2)
    with pytest.raises(ValueError, match=rf"{name}: .*class_weights"):
        fn(b.x, b.t, mode="binary", class_weights=[1.0])
    with pytest.raises(ValueError, match=rf"{name}: `reduction`"):
        fn(d.x, d.t, mode="multiclass", reduction="avg")


def test_dice_cldice_bad_alpha() -> None:
    d = make("binary", 2)
    with pytest.raises(ValueError, match=r"dice_cldice_loss: `alpha` must be <= 1; got 1.5"):
        SF.dice_cldice_loss(d.x, d.t, mode="binary", alpha=1.5)
