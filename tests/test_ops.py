"""The fused kernels as ``torch.library`` operators: opcheck, ``torch.compile`` without graph breaks, export.

Every loss family routes its fused pass through :mod:`seglosses._dispatch`; under ``torch.compile`` that point calls
the ``seglosses::*`` operators, so a compiled training step keeps the kernels (C++ on the CPU) in both the forward
and the backward graph. The numbers are pinned to eager mode and to a float64 NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import reference
import seglosses
import seglosses.functional as SF
from seglosses import _dispatch, _ops

# --------------------------------------------------------------------------------------------------------------
# opcheck of every operator
# --------------------------------------------------------------------------------------------------------------


def _softmax_args(masked: bool, weighted: bool, gamma: str, need_stats: bool, need_pixel: bool, dtype):
    g = torch.Generator().manual_seed(3)
    n, c, m = 2, 3, 11
    x = torch.randn(n, c, m, generator=g, dtype=dtype, requires_grad=True)
    t = torch.randint(0, c, (n, m), generator=g)
    valid = (torch.rand(n, m, generator=g) > 0.3).to(dtype) if masked else None
    wpix = None
    if weighted:
        wpix = torch.rand(n, m, generator=g, dtype=dtype) + 0.5
        if valid is not None:
            wpix = wpix * valid
    gamma_f, gamma_pix = 0.0, None
    if gamma == "float":
        gamma_f = 2.0
    elif gamma == "pixel":
        gamma_pix = torch.where(t == 0, 0.0, 0.75).to(dtype)
    return (x, t, valid, wpix, gamma_f, gamma_pix, need_stats, need_pixel)


@pytest.mark.parametrize(
    ("masked", "weighted", "gamma", "need_stats", "need_pixel", "dtype"),
    [
        (False, False, "zero", True, False, torch.float32),
        (True, False, "zero", True, True, torch.float64),
        (True, True, "float", False, True, torch.float32),
        (False, True, "pixel", True, True, torch.float64),
    ],
)
def test_opcheck_softmax_index(dtype, masked, weighted, gamma, need_stats, need_pixel):
    args = _softmax_args(masked, weighted, gamma, need_stats, need_pixel, dtype)
    torch.library.opcheck(torch.ops.seglosses.softmax_index_fwd.default, args)
    x, t, valid, wpix, gamma_f, gamma_pix, _, _ = args
    fwd = _ops.softmax_index_fwd(*args)
    n, c, _ = x.shape
    g = torch.Generator().manual_seed(5)
    g_tp = torch.randn(n, c, generator=g, dtype=dtype)
    g_psum = torch.randn(n, c, generator=g, dtype=dtype)
    g_pix = torch.randn(n, generator=g, dtype=dtype)
    saved = (fwd[4].detach(), fwd[5].detach())
    bwd_args = (x.detach(), t, valid, wpix, gamma_f, gamma_pix, *saved, g_tp, g_psum, g_pix, need_stats, need_pixel)
    torch.library.opcheck(torch.ops.seglosses.softmax_index_bwd.default, bwd_args)


@pytest.mark.parametrize(
    ("masked", "alpha", "gamma", "need_stats", "need_pixel", "pos0", "dtype"),
    [
        (False, None, 0.0, True, False, False, torch.float64),
        (True, None, 0.0, True, True, False, torch.float32),
        (True, 0.25, 2.0, False, True, False, torch.float64),
        (False, 0.6, 1.5, True, True, True, torch.float32),
    ],
)
def test_opcheck_sigmoid_dense(dtype, masked, alpha, gamma, need_stats, need_pixel, pos0):
    g = torch.Generator().manual_seed(4)
    n, c, m = 2, 2, 9
    x = torch.randn(n, c, m, generator=g, dtype=dtype, requires_grad=True)
    tgt = (torch.rand(n, c, m, generator=g) > 0.5).to(dtype)
    valid = (torch.rand(n, c, m, generator=g) > 0.3).to(dtype) if masked else None
    args = (x, tgt, valid, alpha, gamma, need_stats, need_pixel, pos0)
    torch.library.opcheck(torch.ops.seglosses.sigmoid_dense_fwd.default, args)
    g_tp, g_psum = torch.randn(n, c, generator=g, dtype=dtype), torch.randn(n, c, generator=g, dtype=dtype)
    g_pix = torch.randn(n, generator=g, dtype=dtype)
    bwd_args = (x.detach(), tgt, valid, alpha, gamma, g_tp, g_psum, g_pix, need_stats, need_pixel, pos0)
    torch.library.opcheck(torch.ops.seglosses.sigmoid_dense_bwd.default, bwd_args)


def _lovasz_args(kind: str, masked: bool, per_image: bool, dtype):
    g = torch.Generator().manual_seed(6)
    n, c, m = 2, 3, 13
    x = torch.randn(n, c, m, generator=g, dtype=dtype, requires_grad=True)
    if kind == "softmax":
        t = torch.randint(0, c, (n, m), generator=g)
        valid = (torch.rand(n, m, generator=g) > 0.3).to(dtype) if masked else None
        return (x, t, None, valid, False, per_image)
    tgt = (torch.rand(n, c, m, generator=g) > 0.5).to(dtype)
    valid = (torch.rand(n, c, m, generator=g) > 0.3).to(dtype) if masked else None
    z = x if kind == "hinge" else torch.sigmoid(x.detach()).requires_grad_(True)
    return (z, None, tgt, valid, kind == "hinge", per_image)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("kind", "masked", "per_image", "dtype"),
    [
        ("softmax", False, False, torch.float32),
        ("softmax", True, True, torch.float64),
        ("softmax", True, False, torch.float32),
        ("hinge", True, False, torch.float32),
        ("hinge", False, True, torch.float64),
        ("flat", True, True, torch.float32),
    ],
)
def test_opcheck_lovasz(kind, masked, per_image, dtype, native):
    """``seglosses::lovasz_fwd`` / ``lovasz_bwd``: schema, fake tensors, autograd registration (C++ kernel and twin)."""
    args = _lovasz_args(kind, masked, per_image, dtype)
    with _dispatch.use(native=native):
        torch.library.opcheck(torch.ops.seglosses.lovasz_fwd.default, args)
        z, t = args[0], args[1]
        _value, _pos, weights, lse = _ops.lovasz_fwd(*args)
        n, c, _m = z.shape
        rows = n * c if per_image else c
        scale = torch.randn(rows, generator=torch.Generator().manual_seed(9), dtype=dtype)
        bwd_args = (z.detach(), t, weights.detach(), lse.detach(), scale, per_image)
        torch.library.opcheck(torch.ops.seglosses.lovasz_bwd.default, bwd_args)


@pytest.mark.parametrize(
    ("kind", "per_image"), [("softmax", False), ("softmax", True), ("hinge", False), ("flat", True)]
)
def test_lovasz_op_gradcheck_float64(kind, per_image):
    """The autograd registration of ``seglosses::lovasz_fwd`` against finite differences (the PyTorch twin)."""
    z, t, tgt, valid, hinge, _ = _lovasz_args(kind, True, per_image, torch.float64)
    if kind == "flat":  # probabilities away from 0 and 1 (the flat error's kinks)
        z = (0.05 + 0.9 * z.detach()).requires_grad_(True)
    wts = torch.randn(z.shape[0] * z.shape[1] if per_image else z.shape[1], dtype=torch.float64)

    def f(a: torch.Tensor) -> torch.Tensor:
        return (_ops.lovasz_fwd(a, t, tgt, valid, hinge, per_image)[0] * wts).sum()

    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-7)


def _whole_args(kind: str, masked: bool, weights: bool, dtype):
    g = torch.Generator().manual_seed(12)
    n, c, m = 2, 3, 11
    x = torch.randn(n, c, m, generator=g, dtype=dtype, requires_grad=True)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=dtype) if weights else None
    if kind == "uf":  # the unified focal loss: per-pixel weight and exponent by background / rare class
        t = torch.randint(0, c, (n, m), generator=g)
        valid = (torch.rand(n, m, generator=g) > 0.3).to(dtype) if masked else None
        background = (t == 0).to(dtype)
        wpix = 0.4 * background + 0.6 * (1 - background)
        wpix = wpix if valid is None else wpix * valid
        return x, t, None, valid, wpix, background * 0.5, None
    if kind == "ignore":  # raw class indices with ignored pixels (255), no mask: the operators compare themselves
        t = torch.randint(0, c, (n, m), generator=g)
        t[torch.rand(n, m, generator=g) < 0.3] = 255
        return x, t, None, None, None, None, w
    if kind == "softmax":
        t = torch.randint(0, c, (n, m), generator=g)
        valid = (torch.rand(n, m, generator=g) > 0.3).to(dtype) if masked else None
        wpix = None
        if weights:  # a per-pixel weight of the pixel term (the focal loss's alpha of each pixel's class)
            wpix = w[t] if valid is None else w[t] * valid
        return x, t, None, valid, wpix, None, w
    if kind == "binary":  # one channel (the unified focal loss reads it as the pair [background, foreground])
        x = torch.randn(n, 1, m, generator=g, dtype=dtype, requires_grad=True)
        c = 1
    tgt = (torch.rand(n, c, m, generator=g) > 0.5).to(dtype)
    if kind == "soft":  # a soft dense target (the squared Dice's sum g^2 differs from sum g)
        tgt = torch.rand(n, c, m, generator=g, dtype=dtype)
    valid = (torch.rand(n, c, m, generator=g) > 0.3).to(dtype) if masked else None
    return x, None, tgt, valid, None, None, w


NAN = float("nan")
#: (kind, masked, weights, region [lambda_r, a, e, c1, c2, s, gamma, gamma_0], term, pixel [lambda_p, gamma, alpha],
#: skip, per_image, mean): Dice, Jaccard with smooth 0, log Dice + focal, focal Tversky, focal alone, BCE alone,
#: generalized Dice, the unified focal loss (class 0's own exponent, a per-pixel focal exponent); ``region[9] = 1``:
#: the squared Dice (sums of p^2 and g^2) with a cross entropy part, and on a soft target; "ignore": raw indices with
#: ignored pixels (Dice + CE; weighted CE with the weighted mean)
WHOLE_CASES = [
    ("ignore", False, True, [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], 0, [0.5, 0.0, NAN], False, True, True),
    (
        "ignore",
        False,
        False,
        [0.0] * 5 + [1.0, 1.0, 1.0],
        0,
        [1.0, 0.0, NAN, NAN, NAN, NAN, NAN, 1.0],
        False,
        False,
        True,
    ),
    # label smoothing (pixel[9]): softmax with Dice, weighted CE with ignored pixels, sigmoid (soft target)
    (
        "softmax",
        True,
        False,
        [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        0,
        [0.5, 0.0, NAN] + [NAN] * 4 + [0.0, 0.0, 0.1],
        False,
        True,
        True,
    ),
    (
        "ignore",
        False,
        False,
        [0.0] * 5 + [1.0, 1.0, 1.0],
        0,
        [1.0, 0.0, NAN] + [NAN] * 4 + [1.0, 0.0, 0.2],
        False,
        False,
        True,
    ),
    (
        "soft",
        True,
        False,
        [0.7, 2.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0],
        0,
        [0.3, 0.0, NAN] + [NAN] * 4 + [0.0, 0.0, 0.25],
        False,
        False,
        False,
    ),
    ("softmax", True, True, [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0], 1, [0.5, 0.0, NAN], True, True, True),
    ("soft", True, False, [0.7, 2.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.0, 1.0], 0, [0.3, 0.0, NAN], False, False, True),
    ("softmax", False, False, [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], 0, [0.0, 0.0, NAN], False, False, True),
    ("softmax", True, True, [1.0, 1.0, -1.0, 1.0, 1.0, 0.0, 1.0, 1.0], 0, [0.0, 0.0, NAN], True, True, True),
    ("softmax", True, True, [0.7, 2.0, 0.0, 1.0, 1.0, 0.5, 1.0, 1.0], 1, [0.4, 2.0, NAN], False, False, False),
    ("sigmoid", False, True, [1.0, 1.0, 0.0, 0.3, 0.7, 1.0, 0.75, 0.75], 2, [0.0, 0.0, NAN], True, False, True),
    ("sigmoid", True, False, [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], 0, [1.5, 0.0, NAN], False, True, True),
    ("softmax", True, False, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], 0, [1.0, 2.0, NAN], False, False, True),
    ("sigmoid", True, False, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], 0, [1.0, 1.5, 0.25], False, False, False),
    ("softmax", True, False, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0], 3, [0.0, 0.0, NAN], True, True, True),
    ("sigmoid", False, False, [1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0], 3, [0.0, 0.0, NAN], False, False, False),
    ("uf", True, True, [0.4, 1.0, 0.0, 0.4, 0.6, 1e-7, 0.5, 1.0], 2, [0.6, 0.5, NAN], False, True, True),
    (
        "softmax",
        True,
        False,
        [0.4, 1.0, 0.0, 0.4, 0.6, 1e-7, 0.5, 1.0],
        2,
        [0.6, 0.5, NAN, 0.4, 0.6, 0.5, 0.0],
        False,
        True,
        True,
    ),
    (
        "softmax",
        True,
        False,
        [0.5, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        0,
        [1.0, 0.0, NAN, NAN, NAN, NAN, NAN, 1.0],
        False,
        False,
        True,
    ),
    (
        "binary",
        True,
        False,
        [0.4, 1.0, 0.0, 0.4, 0.6, 1e-7, 0.5, 1.0, 1.0],
        2,
        [0.6, 0.5, 0.6, NAN, NAN, NAN, NAN, 0.0, 1.0],
        False,
        True,
        True,
    ),
    (
        "sigmoid",
        True,
        False,
        [0.5, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        0,
        [1.0, 0.5, 0.25, NAN, NAN, NAN, NAN, 0.0],
        False,
        True,
        True,
    ),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("kind", "masked", "weights", "region", "term", "pixel", "skip", "per_image", "mean"), WHOLE_CASES
)
def test_opcheck_whole_loss(kind, masked, weights, region, term, pixel, skip, per_image, mean, dtype):
    """``seglosses::whole_loss_fwd`` / ``whole_loss_bwd``: schema, fake tensors, autograd registration."""
    x, t, tgt, valid, wpix, gpix, w = _whole_args(kind, masked, weights, dtype)
    cw = None
    if kind in ("softmax", "sigmoid", "ignore") and len(pixel) > 7:  # a weight per class (softmax) or channel
        cw, wpix = torch.tensor([0.3, 1.0, 2.0], dtype=dtype), None
    ignore = 255 if kind == "ignore" else None
    args = (x, t, tgt, valid, wpix, gpix, cw, w, region, term, pixel, skip, per_image, mean, ignore)
    torch.library.opcheck(torch.ops.seglosses.whole_loss_fwd.default, args)
    _loss, ctp, cp, cpix = _ops.whole_loss_fwd(*args)
    scale = torch.tensor(0.7, dtype=dtype)
    squared = _ops._squared(region)
    bwd_args = (
        x.detach(),
        t,
        tgt,
        valid,
        wpix,
        gpix,
        cw,
        ctp.detach(),
        cp.detach(),
        cpix.detach(),
        pixel,
        scale,
        squared,
        ignore,
    )
    torch.library.opcheck(torch.ops.seglosses.whole_loss_bwd.default, bwd_args)


@pytest.mark.parametrize(
    ("kind", "masked", "weights", "region", "term", "pixel", "skip", "per_image", "mean"), WHOLE_CASES
)
def test_whole_loss_op_gradcheck_float64(kind, masked, weights, region, term, pixel, skip, per_image, mean):
    """The coefficients written out in the formula (and the Triton kernel) against finite differences."""
    x, t, tgt, valid, wpix, gpix, w = _whole_args(kind, masked, weights, torch.float64)
    cw = None
    if kind in ("softmax", "sigmoid", "ignore") and len(pixel) > 7:
        cw, wpix = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64), None
    ign = 255 if kind == "ignore" else None

    def f(a: torch.Tensor) -> torch.Tensor:
        args = (a, t, tgt, valid, wpix, gpix, cw, w, region, term, pixel, skip, per_image, mean, ign)
        return _ops.whole_loss_fwd(*args)[0]

    assert torch.autograd.gradcheck(f, (x,))


def test_softmax_index_op_gradcheck_float64():
    """The autograd registration against finite differences (stats and focal pixel term together)."""
    x, t, valid, wpix, gamma_f, gamma_pix, _, _ = _softmax_args(True, True, "float", True, True, torch.float64)
    g = torch.Generator().manual_seed(8)
    wts = torch.randn(2, 3, generator=g, dtype=torch.float64)

    def f(xx):
        tp, psum, pix, _ = _ops.softmax_index(xx, t, valid, wpix=wpix, gamma=gamma_f, need_pixel=True)
        return (tp * wts).sum() + (psum * wts.flip(0)).sum() + pix.sum()

    assert torch.autograd.gradcheck(f, (x,))


def test_sigmoid_dense_op_gradcheck_float64():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 2, 7, generator=g, dtype=torch.float64, requires_grad=True)
    tgt = torch.rand(2, 2, 7, generator=g, dtype=torch.float64)
    wts = torch.randn(2, 2, generator=g, dtype=torch.float64)

    def f(xx):
        tp, psum, _, pix = _ops.sigmoid_dense_fwd(xx, tgt, None, 0.3, 1.5, True, True, True)
        return (tp * wts).sum() + (psum * wts.t()).sum() + pix.sum()

    assert torch.autograd.gradcheck(f, (x,))


# --------------------------------------------------------------------------------------------------------------
# the dispatch point: every path gives the NumPy reference's statistics
# --------------------------------------------------------------------------------------------------------------


def _numpy_softmax_stats(x: np.ndarray, t: np.ndarray, valid: np.ndarray):
    """TP, P, G per image and class, float64, from the definitions."""
    e = np.exp(x - x.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    onehot = (t[:, None, :] == np.arange(x.shape[1])[None, :, None]).astype(np.float64)
    v = valid[:, None, :]
    return (p * onehot * v).sum(-1), (p * v).sum(-1), (onehot * v).sum(-1)


PATHS = [
    {"ops": True},
    {"ops": True, "native": False},
    {"ops": False},
    {"ops": False, "native": False},
    {"ops": False, "traced": True},
    {"ops": True, "native": False, "chunk_elements": 24},
    {"ops": False, "native": False, "chunk_elements": 24},
]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_softmax_index_sums_every_path_equals_numpy(path):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4, 37, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (2, 37), generator=g)
    valid = (torch.rand(2, 37, generator=g) > 0.25).to(torch.float64)
    with _dispatch.use(**path), _dispatch.record() as taken:
        sums = _dispatch.softmax_index_sums(x, t, valid)
    backend = "ops" if path["ops"] else "autograd"
    assert taken == [f"stats:softmax_index:{backend}"]
    assert isinstance(sums, _dispatch.FusedSums)
    tp, p, gs = _numpy_softmax_stats(x.numpy(), t.numpy(), valid.numpy())
    np.testing.assert_allclose(sums.tp.numpy(), tp, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sums.p_sum.numpy(), p, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sums.g_sum.numpy(), gs, rtol=0, atol=0)


def _reference_softmax_objective(x, t, valid, wpix, gamma, a, b):
    """sum a TP + sum b P + sum w f(log p_t), f(l) = -(1 - e^l)^gamma l, by plain autograd-able PyTorch formulas."""
    logp = torch.log_softmax(x, 1)
    p = logp.exp() * valid.unsqueeze(1)
    onehot = torch.nn.functional.one_hot(t, x.shape[1]).permute(0, 2, 1).to(x.dtype)
    logp_t = (logp * onehot).sum(1)
    focal = -((1 - logp_t.exp()) ** gamma) * logp_t
    return (a * (p * onehot).sum(-1)).sum() + (b * p.sum(-1)).sum() + (wpix * focal).sum()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_softmax_index_gradient_every_path_equals_reference(path):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 3, 29, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 29), generator=g)
    valid = (torch.rand(2, 29, generator=g) > 0.2).to(torch.float64)
    wpix = valid * (torch.rand(2, 29, generator=g, dtype=torch.float64) + 0.5)
    a, b = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    ref = _reference_softmax_objective(xr, t, valid, wpix, 2.0, a, b)
    (ref_grad,) = torch.autograd.grad(ref, xr)
    xk = x.clone().requires_grad_(True)
    with _dispatch.use(**path):
        sums = _dispatch.softmax_index_sums(xk, t, valid, wpix=wpix, gamma=2.0, need_pixel=True)
        out = (a * sums.tp).sum() + (b * sums.p_sum).sum() + sums.pixel.sum()
        (grad,) = torch.autograd.grad(out, xk)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_sigmoid_dense_gradient_every_path_equals_reference(path):
    g = torch.Generator().manual_seed(14)
    x = torch.randn(2, 2, 31, generator=g, dtype=torch.float64)
    tgt = torch.rand(2, 2, 31, generator=g, dtype=torch.float64)
    valid = (torch.rand(2, 2, 31, generator=g) > 0.2).to(torch.float64)
    tgt = tgt * valid
    a, b = torch.randn(2, 2, generator=g, dtype=torch.float64), torch.randn(2, 2, generator=g, dtype=torch.float64)
    alpha, gamma = 0.3, 1.5
    xr = x.clone().requires_grad_(True)
    p = torch.sigmoid(xr)
    logp, log1mp = torch.nn.functional.logsigmoid(xr), torch.nn.functional.logsigmoid(-xr)
    focal = -(alpha * tgt * (1 - p) ** gamma * logp + (1 - alpha) * (1 - tgt) * p**gamma * log1mp)
    ref = (a * (p * valid * tgt).sum(-1)).sum() + (b * (p * valid).sum(-1)).sum() + (focal * valid).sum()
    (ref_grad,) = torch.autograd.grad(ref, xr)
    xk = x.clone().requires_grad_(True)
    with _dispatch.use(**path):
        sums = _dispatch.sigmoid_dense_sums(xk, tgt, valid, alpha=alpha, gamma=gamma, need_pixel=True)
        out = (a * sums.tp).sum() + (b * sums.p_sum).sum() + sums.pixel.sum()
        (grad,) = torch.autograd.grad(out, xk)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_forced_chunks_really_split_the_pass():
    from seglosses import _fused

    with _dispatch.use(chunk_elements=24):
        assert len(_fused._chunks(2, 4, 37, torch.device("cpu"))) == 13  # 3 pixels per chunk
    assert _fused._chunks(2, 4, 37, torch.device("cpu")) == [(0, 37)]
    with pytest.raises(ValueError, match=r"use: `chunk_elements` must be a positive integer or None; got 0"):
        with _dispatch.use(chunk_elements=0):
            pass


def test_use_restores_settings_and_native_state():
    from seglosses import _native

    before = _native.status()
    with _dispatch.use(native=False, fused=False):
        assert _native.status().startswith("off")
        assert _dispatch.settings().fused is False
        with _dispatch.use(ops=True):  # nested blocks combine
            assert _dispatch.settings() == _dispatch.Settings(fused=False, ops=True, native=False)
    assert _native.status() == before
    assert _dispatch.settings() == _dispatch.Settings()


def test_generic_path_forced_gives_the_fused_numbers():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 5, 7), generator=g)
    with _dispatch.record() as taken:
        fused = SF.dice_ce_loss(x, t, mode="multiclass")
    with _dispatch.use(fused=False), _dispatch.record() as taken_generic:
        generic = SF.dice_ce_loss(x, t, mode="multiclass")
    assert taken == ["stats:softmax_index:autograd"]
    assert "stats:generic:-" in taken_generic
    assert not any("softmax_index" in p for p in taken_generic)
    torch.testing.assert_close(fused, generic, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True): no graph break, the operators in the forward and backward graphs
# --------------------------------------------------------------------------------------------------------------


def _recording_backend():
    graphs: dict[str, list[torch.fx.GraphModule]] = {"fw": [], "bw": []}

    def make(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm)
            return make_boxed_func(gm.forward)

        return compiler

    return aot_autograd(fw_compiler=make("fw"), bw_compiler=make("bw")), graphs


def _seglosses_ops(graphs: list[torch.fx.GraphModule]) -> set[str]:
    return {
        str(node.target)
        for gm in graphs
        for node in gm.graph.nodes
        if node.op == "call_function" and str(node.target).startswith("seglosses.")
    }


CASES = [  # one per family x fused kind: statistics, pixel sums, statistics + pixel sums
    ("dice", "multiclass", "softmax_index"),
    ("focal", "binary", "sigmoid_dense"),
    ("cross_entropy", "multiclass", "softmax_index"),
    ("dice_ce", "binary", "sigmoid_dense"),
    ("unified_focal", "multiclass", "softmax_index"),
]


def _case_inputs(mode: str):
    g = torch.Generator().manual_seed(21)
    if mode == "multiclass":
        return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)
    return torch.randn(2, 1, 6, 5, generator=g), (torch.rand(2, 1, 6, 5, generator=g) > 0.5).float()


@pytest.mark.parametrize(("name", "mode", "kind"), CASES)
def test_compiled_training_step_keeps_the_operators(name, mode, kind):
    torch._dynamo.reset()
    loss = seglosses.get_loss(name, mode=mode)
    x, t = _case_inputs(mode)
    backend, graphs = _recording_backend()
    step = torch.compile(loss, backend=backend, fullgraph=True)  # fullgraph: a graph break raises
    xc = x.clone().requires_grad_(True)
    out = step(xc, t)
    out.backward()
    assert _seglosses_ops(graphs["fw"]) == {f"seglosses.{kind}_fwd.default"}
    assert _seglosses_ops(graphs["bw"]) == {f"seglosses.{kind}_bwd.default"}
    xe = x.clone().requires_grad_(True)
    eager = loss(xe, t)
    eager.backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-6)


def test_no_graph_break_explain():
    torch._dynamo.reset()
    x, t = _case_inputs("multiclass")
    explanation = torch._dynamo.explain(lambda a, b: SF.dice_loss(a, b, mode="multiclass"))(x, t)
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


class _Head(torch.nn.Module):
    def __init__(self, loss: str = "dice", **kwargs: object) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)
        self.loss = seglosses.get_loss(loss, mode="multiclass", **kwargs)

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(self.conv(image), target)


@pytest.mark.parametrize(
    ("loss", "kwargs", "op"),
    [
        ("dice", {}, "seglosses.softmax_index_fwd.default"),
        ("lovasz", {"per_image": True, "ignore_index": 255}, "seglosses.lovasz_fwd.default"),
    ],
)
def test_export_of_a_module_holding_a_loss(loss, kwargs, op):
    g = torch.Generator().manual_seed(31)
    image = torch.randn(2, 2, 6, 5, generator=g)
    target = torch.randint(0, 3, (2, 6, 5), generator=g)
    model = _Head(loss, **kwargs)
    exported = torch.export.export(model, (image, target))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert op in targets
    torch.testing.assert_close(exported.module()(image, target), model(image, target), rtol=1e-6, atol=1e-7)
    other = torch.randint(0, 3, (2, 6, 5), generator=g)  # the exported program recomputes for new data
    torch.testing.assert_close(exported.module()(image, other), model(image, other), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------------------
# value checks as counters: without the host check, a bad class index makes the loss NaN (no synchronisation)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def unchecked():
    seglosses.set_value_checks("never")  # what a GPU does by default: no host-side check of the values
    yield
    seglosses.set_value_checks("cpu")


def _bad_batch():
    g = torch.Generator().manual_seed(41)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 5, 6), generator=g)
    bad = t.clone()
    bad[1, 2, 3] = 3  # outside [0, 3), in image 1
    return x, t, bad


BAD_INDEX_PATHS = [
    {},
    {"ops": True},
    {"ops": True, "native": False, "chunk_elements": 12},
    {"ops": False, "native": False},
    {"ops": False, "traced": True},
    {"fused": False},
]


@pytest.mark.usefixtures("unchecked")
@pytest.mark.parametrize("path", BAD_INDEX_PATHS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("name", ["dice", "tversky", "dice_ce", "focal", "unified_focal"])
def test_bad_class_index_without_host_check_gives_nan(name, path):
    x, t, bad = _bad_batch()
    loss = seglosses.get_loss(name, mode="multiclass")
    with _dispatch.use(**path):
        assert torch.isfinite(loss(x, t))  # in-range indices: unchanged
        xg = x.clone().requires_grad_(True)
        out = loss(xg, bad)
        assert torch.isnan(out)
        out.backward()  # the kernels never read out of bounds


@pytest.mark.usefixtures("unchecked")
def test_bad_index_counter_poisons_only_the_bad_image_and_skips_ignored_pixels():
    x, t, bad = _bad_batch()
    per_image = SF.dice_loss(x, bad, mode="multiclass", per_image=True, reduction="none")
    assert torch.isnan(per_image[1]).all()
    assert torch.isfinite(per_image[0]).all()
    torch.testing.assert_close(per_image[0], SF.dice_loss(x, t, mode="multiclass", per_image=True, reduction="none")[0])
    ignored = bad.clone()
    ignored[0, 0, 0] = 255
    ignored[1, 2, 3] = 255  # the out-of-range value is now the ignored label
    assert torch.isfinite(SF.dice_loss(x, ignored, mode="multiclass", ignore_index=255))


def test_bad_class_index_with_host_check_raises_the_named_error():
    x, _, bad = _bad_batch()
    for when in ("cpu", "always"):
        seglosses.set_value_checks(when)
        try:
            with pytest.raises(ValueError, match=r"dice_loss: `target` class indices must be in \[0, 3\).*got 3"):
                SF.dice_loss(x, bad, mode="multiclass")
        finally:
            seglosses.set_value_checks("cpu")


def test_bad_class_index_under_compile_gives_nan():
    """``torch.compile`` skips the host check (it would break the graph): the traced counter makes the loss NaN."""
    torch._dynamo.reset()
    x, _, bad = _bad_batch()
    compiled = torch.compile(lambda a, b: SF.dice_loss(a, b, mode="multiclass"), backend="aot_eager", fullgraph=True)
    assert torch.isnan(compiled(x, bad))


@pytest.mark.parametrize(
    ("name", "mode", "kw", "expected"),
    [
        ("dice_ce", "multiclass", {}, ["stats:softmax_index:autograd"]),
        ("dice_ce", "binary", {}, ["stats:sigmoid_dense:autograd"]),
        ("dice_ce", "multiclass", {"label_smoothing": 0.1}, ["stats:softmax_index:autograd"]),  # CE generic
        ("hybrid_focal", "multiclass", {}, ["stats:softmax_index:autograd"]),
        ("hybrid_focal", "binary", {}, ["stats:sigmoid_dense:autograd"]),
        ("combo", "multiclass", {}, ["stats:softmax_index:autograd"]),
        ("unified_focal", "binary", {}, ["stats:sigmoid_dense:autograd"]),
    ],
)
def test_compound_loss_takes_its_statistics_from_one_pass(name, mode, kw, expected):
    x, t = _case_inputs(mode)
    with _dispatch.record() as taken:
        out = seglosses.get_loss(name, mode=mode, **kw)(x, t)
    assert taken == expected
    assert torch.isfinite(out)


@pytest.mark.parametrize("path", BAD_INDEX_PATHS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_nan_logit_makes_every_fused_loss_nan(mode, path):
    """The NaN counter's effect on every path: one NaN logit gives a NaN loss (never a silently finite one)."""
    x, t = _case_inputs(mode)
    x = x.double()
    x[1, 0, 2, 2] = float("nan")
    with _dispatch.use(**path):
        for name in ("dice", "cross_entropy", "focal", "dice_ce"):
            assert torch.isnan(seglosses.get_loss(name, mode=mode)(x, t)), name


# --------------------------------------------------------------------------------------------------------------
# other tracers: make_fx and FakeTensorMode see the operators, never a ctypes kernel call
# --------------------------------------------------------------------------------------------------------------

#: (registry name, mode, the operator the trace must hold, NumPy reference of tests/reference.py)
TRACER_CASES = [
    ("dice", "multiclass", "seglosses.softmax_index_fwd.default", "dice_loss"),
    ("dice", "binary", "seglosses.sigmoid_dense_fwd.default", "dice_loss"),
    ("focal", "multiclass", "seglosses.softmax_index_fwd.default", "focal_loss"),
    ("cross_entropy", "binary", "seglosses.sigmoid_dense_fwd.default", "cross_entropy_loss"),
]


def _tracer_inputs(mode: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        return torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (2, 6, 5), generator=g)
    x = torch.randn(2, 1, 6, 5, generator=g, dtype=torch.float64)
    return x, (torch.rand(2, 1, 6, 5, generator=g) > 0.5).double()


@pytest.mark.parametrize("tracing_mode", ["real", "fake", "symbolic"])
@pytest.mark.parametrize(("name", "mode", "op", "ref"), TRACER_CASES)
def test_make_fx_trace_holds_the_operator_and_gives_the_reference(name, mode, op, ref, tracing_mode):
    """``make_fx`` (the tracer under AOTAutograd) records the operators and the graph computes the loss.

    The eager CPU path called the C++ kernels through ctypes, which ``make_fx`` cannot see: the real-tensor trace
    held the loss as a constant 0 and the fake/symbolic traces failed on the fake tensors' data pointers.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    loss = seglosses.get_loss(name, mode=mode)
    x, t = _tracer_inputs(mode, 0)
    seglosses.set_value_checks("never")  # a host check reads values: fake tensors have none
    try:
        gm = make_fx(loss, tracing_mode=tracing_mode)(x, t)
    finally:
        seglosses.set_value_checks("cpu")
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert op in targets
    for seed in (0, 1):  # the graph computes from its inputs (nothing of the traced batch frozen in)
        x, t = _tracer_inputs(mode, seed)
        expected = getattr(reference, ref)(x.numpy(), t.numpy(), mode=mode)
        np.testing.assert_allclose(gm(x, t).numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("unchecked")
@pytest.mark.parametrize(("name", "mode", "op", "ref"), TRACER_CASES)
def test_fake_tensor_mode_gives_shapes_without_running_a_kernel(name, mode, op, ref):
    """Under ``FakeTensorMode`` (eager, no compile) the loss and its gradient come back as fake tensors of the real
    shapes and dtypes; the C++ kernels were called with the fake tensors' null data pointers (a segfault)."""
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    loss = seglosses.get_loss(name, mode=mode)
    x, t = _tracer_inputs(mode, 0)
    with FakeTensorMode() as fake_mode, _dispatch.record() as taken:
        fx = fake_mode.from_tensor(x).requires_grad_(True)
        out = loss(fx, fake_mode.from_tensor(t))
        out.backward()
    assert isinstance(out, FakeTensor)
    assert (out.shape, out.dtype) == ((), torch.float64)
    assert (fx.grad.shape, fx.grad.dtype) == (x.shape, torch.float64)
    assert taken[0].endswith(":ops")  # the operators' fake registrations answered


def test_native_kernels_refuse_intercepted_tensors():
    """``_native.usable`` (the gate of every ctypes call) is None for fake tensors and while ``make_fx`` records;
    a dispatch mode that only watches (a flop counter) keeps the kernels."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.utils.flop_counter import FlopCounterMode

    from seglosses import _native

    if _native.library() is None:
        pytest.skip("native kernels not built")
    x = torch.ones(2, 3)
    assert _native.usable(x) is not None
    with FakeTensorMode() as fake_mode:
        fx = fake_mode.from_tensor(x)
        assert _native.usable(fx) is None
    assert _native.usable(fx) is None  # a fake tensor outside its mode still has no data
    seen: list[bool] = []

    def f(a: torch.Tensor) -> torch.Tensor:
        seen.append(_native.usable(a) is None)
        return a * 2

    make_fx(f, tracing_mode="real")(x)
    assert seen == [True]
    with FlopCounterMode(display=False):
        assert _native.usable(x) is not None
