"""Numerical robustness: saturated logits, empty masks, everything ignored, exact 0/1 probabilities,
low-precision inputs and autocast, float32 vs float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses.functional as SF
from helpers import assert_close
from reference import REFERENCES

ALL = [
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "cross_entropy_loss",
    "focal_loss",
    "dice_ce_loss",
    "combo_loss",
    "hybrid_focal_loss",
    "unified_focal_loss",
    "asymmetric_focal_loss",
    "symmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "symmetric_focal_tversky_loss",
]
UNIFIED = [n for n in ALL if "symmetric" in n or n == "unified_focal_loss"]
PARAMS = [
    (n, m) for n in ALL for m in ("binary", "multiclass", "multilabel") if not (n in UNIFIED and m == "multilabel")
]
IDS = [f"{n}-{m}" for n, m in PARAMS]


def _target(mode, rng, n=2, c=3, s=(5, 6), dtype=torch.float32):
    if mode == "multiclass":
        return torch.tensor(rng.integers(0, c, size=(n, *s)))
    ch = 1 if mode == "binary" else c
    return torch.tensor((rng.random(size=(n, ch, *s)) < 0.4).astype(np.float64), dtype=dtype)


def _input(mode, rng, n=2, c=3, s=(5, 6), scale=1.0, dtype=torch.float32):
    ch = 1 if mode == "binary" else c
    return torch.tensor(rng.normal(size=(n, ch, *s)) * scale, dtype=dtype)


def _value_and_grad(name, x, t, **kw):
    x = x.detach().clone().requires_grad_(True)
    out = getattr(SF, name)(x, t, **kw)
    out.backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_finite_at_saturated_logits(name, mode, dtype):
    rng = np.random.default_rng(80)
    t = _target(mode, rng, dtype=dtype)
    x = torch.tensor(np.sign(rng.normal(size=_input(mode, rng).shape)) * 1e4, dtype=dtype)
    for sign in (1.0, -1.0):  # mostly right and mostly wrong predictions
        out, grad = _value_and_grad(name, sign * x, t, mode=mode)
        assert torch.isfinite(out), out
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_focal_loss_gamma_below_one_finite_gradient_at_saturation(gamma):
    # (1 - p)^gamma as exp(gamma * log1p(-p)): no NaN gradient when p saturates at 1
    x = torch.tensor([[[1e4, -1e4, 50.0, -50.0]]], dtype=torch.float64)
    t = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]], dtype=torch.float64)
    out, grad = _value_and_grad("focal_loss", x, t, mode="binary", gamma=gamma)
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()
    x = torch.tensor([[[1e4], [0.0], [-1e4]]], dtype=torch.float64)
    out, grad = _value_and_grad("focal_loss", x, torch.tensor([[0]]), mode="multiclass", gamma=gamma)
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("logit_scale", [1.0, 1e4])
@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_finite_on_empty_masks(name, mode, logit_scale):
    # every target empty (binary/multilabel) or all background (multiclass)
    rng = np.random.default_rng(81)
    x = _input(mode, rng, scale=logit_scale)
    if mode == "multiclass":
        t = torch.zeros(2, 5, 6, dtype=torch.long)
    else:
        t = torch.zeros(x.shape)
    out, grad = _value_and_grad(name, x, t, mode=mode)
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()
    out, grad = _value_and_grad(name, -(x.abs()) * 10, t, mode=mode)  # and predicted empty
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_all_pixels_ignored_is_zero_with_zero_grad(name, mode):
    # every pixel ignored: every loss returns 0 with a zero gradient
    rng = np.random.default_rng(82)
    x = _input(mode, rng, dtype=torch.float64)
    t = torch.full((2, 5, 6), 255, dtype=torch.long) if mode == "multiclass" else torch.full(x.shape, 255.0)
    kws = [{}]
    if name not in UNIFIED and name not in ("cross_entropy_loss", "focal_loss"):
        kws.append({"per_image": True})
    for kw in kws:
        out, grad = _value_and_grad(name, x, t, mode=mode, ignore_index=255, **kw)
        assert out.item() == 0.0
        assert (grad == 0).all()


def _hard_probs(mode, t):
    if mode == "multiclass":
        return torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    return t.double().clone()


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_exact_probabilities_perfect_prediction_no_nan(name, mode):
    # with from_logits=False, 0 * log 0 = 0: a perfect hard prediction gives the
    # minimum (0; combo: -(1 - alpha) * D = -0.5) and no NaN, in value and gradient
    rng = np.random.default_rng(83)
    t = _target(mode, rng, dtype=torch.float64)
    p = _hard_probs(mode, t)
    out, grad = _value_and_grad(name, p, t, mode=mode, from_logits=False)
    expected = -0.5 if name == "combo_loss" else 0.0
    assert_close(out, expected, atol=1e-12)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_exact_probabilities_zero_where_target_zero(name, mode):
    # exact 0/1 probabilities only where they are right (p = 0 on g = 0, p = 1 on g = 1), soft elsewhere:
    # the value equals the reference (which uses 0 * log 0 = 0) and the gradient is finite
    rng = np.random.default_rng(84)
    t = _target(mode, rng, dtype=torch.float64)
    hard = _hard_probs(mode, t)
    if mode == "multiclass":
        soft = torch.softmax(
            torch.randn(hard.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), 1
        )
        mask = torch.tensor(rng.random(size=(2, 1, 5, 6)) < 0.5)
    else:
        soft = torch.tensor(rng.uniform(0.05, 0.95, size=hard.shape))
        mask = torch.tensor(rng.random(size=hard.shape) < 0.5)
    p = torch.where(mask, hard, soft)
    out, grad = _value_and_grad(name, p, t, mode=mode, from_logits=False)
    expected = REFERENCES[name](p.numpy(), t.numpy(), mode=mode, from_logits=False)
    assert_close(out, expected)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        p
        for p in PARAMS
        if p[0] in ("dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss")
    ],
)
def test_loss_region_exact_wrong_probabilities_finite(name, mode):
    # region losses are bounded: wrong hard probabilities give a finite value and gradient
    rng = np.random.default_rng(85)
    t = _target(mode, rng, dtype=torch.float64)
    p = _hard_probs(mode, _target(mode, np.random.default_rng(86), dtype=torch.float64))
    out, grad = _value_and_grad(name, p, t, mode=mode, from_logits=False)
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()
    assert_close(out, REFERENCES[name](p.numpy(), t.numpy(), mode=mode, from_logits=False))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_low_precision_input_reduces_in_float32(name, mode, dtype):
    rng = np.random.default_rng(87)
    x64 = _input(mode, rng, scale=3.0, dtype=torch.float64)
    t = _target(mode, rng, dtype=torch.float64)
    x = x64.to(dtype).requires_grad_(True)
    out = getattr(SF, name)(x, t.to(dtype) if t.is_floating_point() else t, mode=mode)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(x.grad).all()
    # the same (rounded) input in float64: low precision costs at most ~1% here
    expected = getattr(SF, name)(x.detach().double(), t, mode=mode)
    assert_close(out, expected.numpy(), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_bfloat16_autocast_on_cpu(name, mode):
    rng = np.random.default_rng(88)
    x = _input(mode, rng, scale=3.0).requires_grad_(True)
    t = _target(mode, rng)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = getattr(SF, name)(x, t, mode=mode)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    out.backward()
    assert torch.isfinite(x.grad).all()
    expected = getattr(SF, name)(x.detach().double(), t.double() if t.is_floating_point() else t, mode=mode)
    assert_close(out, expected.numpy(), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_float32_agrees_with_float64(name, mode):
    rng = np.random.default_rng(89)
    x64 = _input(mode, rng, scale=3.0, dtype=torch.float64)
    t = _target(mode, rng, dtype=torch.float64)
    v64, g64 = _value_and_grad(name, x64, t, mode=mode)
    v32, g32 = _value_and_grad(name, x64.float(), t.float() if t.is_floating_point() else t, mode=mode)
    assert v32.dtype == torch.float32
    assert_close(v32, v64.numpy(), rtol=1e-5, atol=1e-7)
    assert_close(g32, g64.numpy(), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_gradcheck_float64_with_ignored_pixels(name, mode):
    rng = np.random.default_rng(90)
    x = _input(mode, rng, n=2, s=(3, 4), dtype=torch.float64).requires_grad_(True)
    t = _target(mode, rng, s=(3, 4), dtype=torch.float64)
    drop = torch.tensor(rng.random(size=t.shape) < 0.25)
    t = torch.where(drop, 255, t) if mode == "multiclass" else torch.where(drop, 255.0, t)
    fn = getattr(SF, name)
    assert torch.autograd.gradcheck(lambda a: fn(a, t, mode=mode, ignore_index=255), (x,), eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------------------
# NaN and bad class indices reach the loss (no silent 0, no crash) on the PyTorch paths
# --------------------------------------------------------------------------------------------------------------

# every path but the whole-loss operator (use(ops=True)), whose focal Tversky power is in seglosses._ops
NAN_PATHS = [{}, {"native": False, "chunk_elements": 48}, {"traced": True, "ops": False}, {"fused": False}]


@pytest.mark.parametrize("path", NAN_PATHS, ids=lambda p: ",".join(p) or "default")
@pytest.mark.parametrize("gamma", [0.75, 2.0])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_focal_tversky_loss_nan_logits_give_nan(mode, gamma, path):
    # (1 - T)^gamma was computed by a power that reads a NaN base as 0: NaN logits gave the loss 0 (and a zero
    # gradient), where every other region loss gives NaN
    from seglosses import _dispatch

    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 4, 5, generator=torch.Generator().manual_seed(3))
    x[1, 0, 2, 2] = float("nan")
    t = torch.randint(0, 3, (2, 4, 5)) if mode == "multiclass" else (torch.rand(2, c, 4, 5) > 0.5).float()
    with _dispatch.use(**path):
        assert torch.isnan(SF.focal_tversky_loss(x, t, mode=mode, gamma=gamma))
        per_class = SF.focal_tversky_loss(x, t, mode=mode, gamma=gamma, per_image=True, reduction="none")
    assert torch.isfinite(per_class[0]).all()  # image 0 is finite: only the NaN image's terms are NaN
    assert torch.isnan(per_class[1]).any()


BAD_INDEX_CASES = [
    ("cross_entropy_loss", {"from_logits": False}),
    ("cross_entropy_loss", {"label_smoothing": 0.1}),
    ("cross_entropy_loss", {"class_weights": [1.0, 2.0, 0.5]}),
    ("cross_entropy_loss", {"from_logits": False, "ignore_index": 255}),
    ("focal_loss", {"from_logits": False}),
    ("focal_loss", {"alpha": [0.2, 0.3, 0.5]}),
    ("dice_ce_loss", {"from_logits": False}),
    ("dice_ce_loss", {"class_weights": [1.0, 2.0, 0.5]}),
    ("lovasz_loss", {}),
    ("lovasz_loss", {"from_logits": False, "per_image": True}),
]


@pytest.mark.parametrize("path", [{}, {"native": False}, {"fused": False}], ids=["default", "native-off", "generic"])
@pytest.mark.parametrize(
    ("name", "kw"), BAD_INDEX_CASES, ids=[f"{n}-{'-'.join(k) or 'logits'}" for n, k in BAD_INDEX_CASES]
)
def test_loss_bad_class_index_without_host_check_gives_nan(name, kw, path):
    # with the value check off (a GPU's default) the PyTorch paths indexed with the raw target: an index >= C raised
    # an IndexError/RuntimeError on the CPU (a device-side assert on CUDA), and Lovasz's own path ignored it
    # (a finite loss); the contract is the fused passes': the loss is NaN, no synchronisation
    import seglosses
    from seglosses import _dispatch

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    if kw.get("from_logits") is False:
        x = x.softmax(1)
    t = torch.randint(0, 3, (2, 4, 5), generator=g)
    t[1, 1, 1] = 3
    seglosses.set_value_checks("never")
    try:
        with _dispatch.use(**path):
            xg = x.clone().requires_grad_(True)
            out = getattr(SF, name)(xg, t, mode="multiclass", **kw)
            assert torch.isnan(out)
            out.backward()
            t[1, 1, 1] = 2
            assert torch.isfinite(getattr(SF, name)(x, t, mode="multiclass", **kw))
    finally:
        seglosses.set_value_checks("cpu")


EMPTY_LOSSES = ["dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"]
EMPTY_LOSSES += ["cross_entropy_loss", "focal_loss", "dice_ce_loss", "lovasz_loss"]


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0)], ids=["no-image", "no-pixel"])
@pytest.mark.parametrize("name", EMPTY_LOSSES)
def test_loss_input_without_pixels_gives_zero(name, shape, mode):
    # an empty batch (N = 0) raised reshape's "cannot reshape tensor of 0 elements"; an input with no pixel gave NaN
    # for the pixel losses (a mean over 0 elements) and so did per_image region losses with N = 0. Now 0 with a zero
    # gradient, the rule for a batch whose pixels are all ignored.
    n, *s = shape
    c = 1 if mode == "binary" else 3
    x = torch.randn(n, c, *s, requires_grad=True)
    t = torch.zeros(n, *s, dtype=torch.long) if mode == "multiclass" else torch.zeros(n, c, *s)
    options = [{}] if name in ("cross_entropy_loss", "focal_loss") else [{}, {"per_image": True}]
    for kw in options:
        out = getattr(SF, name)(x, t, mode=mode, **kw)
        out.backward()
        assert out.item() == 0.0
        assert x.grad is not None
        assert (x.grad == 0).all()


# --------------------------------------------------------------------------------------------------------------
# float32 accuracy where the sums or the formula lost it (found by the numerics audit)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dice_loss", "sensitivity_specificity_loss"])
def test_loss_index_target_class_beyond_2_24_pixels_of_one_image(name):
    # the generic path summed each class's values by scatter_add, one accumulator per class: in float32 a count
    # stops at 2^24 = 16777216 (adding 1 is lost) and a sum of 0.75s or 0.0625s stalls even earlier, so a class
    # covering more than 2^24 pixels of one image (a 3D volume's background) got a wrong G, TP and loss.
    # Probabilities [0.75, 0.25] everywhere (a stride-0 view, no memory), the first K pixels of class 1.
    m, k = 2**24 + 2**22, 1000
    x = torch.tensor([0.75, 0.25]).view(1, 2, 1).expand(1, 2, m)
    t = torch.zeros(1, m, dtype=torch.uint8)
    t[0, :k] = 1
    out = getattr(SF, name)(x, t, mode="multiclass", from_logits=False, reduction="none")
    n0, n1 = float(m - k), float(k)  # pixels of class 0 and 1
    if name == "dice_loss":  # TP_c = p_c G_c, P_c = p_c M, smooth 1
        tp = np.array([0.75 * n0, 0.25 * n1])
        p_sum = np.array([0.75 * m, 0.25 * m])
        g_sum = np.array([n0, n1])
        expected = 1 - (2 * tp + 1) / (p_sum + g_sum + 1)
    else:  # r = 0.05, eps = 1e-5: sum (1 - p_c)^2 over class c, sum p_c^2 over the others
        pos = np.array([0.25**2 * n0, 0.75**2 * n1])
        neg = np.array([0.75**2 * n1, 0.25**2 * n0])
        g_sum, g_neg = np.array([n0, n1]), np.array([n1, n0])
        expected = 0.05 * pos / (g_sum + 1e-5) + 0.95 * neg / (g_neg + 1e-5)
    assert_close(out, expected, rtol=1e-5)


def test_sensitivity_specificity_loss_index_target_near_perfect_is_not_negative():
    # sum_{t != c} p_c^2 was sum p_c^2 - sum_{t = c} p_c^2: two sums near the class's pixel count whose difference
    # lost the small off-class terms of a good prediction and came out negative (-4.8e-7 here, the true loss 6.8e-13)
    rng = np.random.default_rng(91)
    t = rng.integers(0, 3, size=(2, 64, 64))
    onehot = np.moveaxis(np.eye(3)[t], -1, 1)
    x = (onehot * 16 - 8 + rng.normal(size=onehot.shape)).astype(np.float32)
    z = x.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pos = ((onehot - p) ** 2 * onehot).sum((0, 2, 3))
    neg = ((onehot - p) ** 2 * (1 - onehot)).sum((0, 2, 3))
    g_sum = onehot.sum((0, 2, 3))
    expected = 0.05 * pos / (g_sum + 1e-5) + 0.95 * neg / (t.size - g_sum + 1e-5)
    out = SF.sensitivity_specificity_loss(torch.tensor(x), torch.tensor(t), mode="multiclass", reduction="none")
    assert (out > 0).all()
    assert_close(out, expected, rtol=1e-3, atol=0)


@pytest.mark.parametrize("delta", [1e-2, 1e-3, 1e-4])
def test_log_cosh_dice_loss_float32_near_perfect_prediction(delta):
    # log cosh L was L + softplus(-2L) - log 2: terms near log 2 cancelling to L^2 / 2, all of it rounding in float32
    # (0.0 for L = 1.7e-4, 0.9% off for L = 1.7e-3); the expected value is log(cosh(L)) in float64
    rng = np.random.default_rng(92)
    g = (rng.random((1, 1, 64, 64)) < 0.3).astype(np.float32)
    p = np.where(g > 0, np.float32(1 - delta), np.float32(delta)).astype(np.float32)
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    dice = (2 * (p64 * g64).sum() + 1) / (p64.sum() + g64.sum() + 1)
    expected = np.log(np.cosh(1 - dice))
    xg = torch.tensor(p).requires_grad_(True)
    out = SF.log_cosh_dice_loss(xg, torch.tensor(g), mode="binary", from_logits=False)
    assert out.dtype == torch.float32
    assert_close(out, expected, rtol=2e-3, atol=0)  # what is left: 1 - D rounded in float32
    out.backward()
    assert torch.isfinite(xg.grad).all()


@pytest.mark.parametrize(
    ("dtype", "mass"), [(torch.float32, 1e-25), (torch.float64, 1e-170)], ids=["float32", "float64"]
)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_generalized_dice_loss_soft_target_class_of_tiny_mass_is_finite(mode, dtype, mass):
    # w_c = 1 / G_c^2 overflowed to inf for a soft target's class of tiny total mass (G < 5e-20 in float32), and the
    # normalisation gave inf / inf = NaN: the loss and its gradient were NaN. The expected value is the weights of
    # Sudre et al. normalised in log space in float64 (w_c ~ exp(-2 log G_c), no overflow)
    g = torch.Generator().manual_seed(93)
    x = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    t = torch.rand(2, 3, 6, 7, generator=g, dtype=torch.float64)
    if mode == "multiclass":
        t = t / t.sum(1, keepdim=True)
        t[:, 0] += t[:, 2] - mass
    t[:, 2] = mass
    xn, tn = x.to(dtype).double().numpy(), t.to(dtype).double().numpy()
    if mode == "multiclass":
        p = np.exp(xn - xn.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
    else:
        p = 1 / (1 + np.exp(-xn))
    tp, p_sum, g_sum = (p * tn).sum((0, 2, 3)), p.sum((0, 2, 3)), tn.sum((0, 2, 3))
    log_w = -2 * np.log(g_sum)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    expected = 1 - (2 * (w * tp).sum() + 1) / ((w * (p_sum + g_sum)).sum() + 1)
    for path in ({}, {"fused": False}, {"ops": True}):  # ops: the whole-loss operator's twin (the GPU's formula)
        from seglosses import _dispatch

        xg = x.to(dtype).requires_grad_(True)
        with _dispatch.use(**path):
            out = SF.generalized_dice_loss(xg, t.to(dtype), mode=mode)
        out.backward()
        assert_close(out, expected, rtol=1e-5 if dtype == torch.float32 else 1e-10)
        assert torch.isfinite(xg.grad).all()


def test_squared_dice_on_the_operator_path_counts_past_2_24_pixels():
    # _ops._squares counted sum g^2 of index targets with one float32 scatter_add accumulator per class: the
    # background's count (2^24 + 2^22 - 1000 pixels in one image) stopped at 2^24 on the whole-loss operator's CPU path
    # (use(ops=True)). Reference: the closed form in NumPy float64
    from seglosses import _dispatch

    m = 2**24 + 2**22
    x = torch.randn(1, 2, m, generator=torch.Generator().manual_seed(3)) * 0.1
    t = torch.zeros(1, m, dtype=torch.long)
    t[0, :1000] = 1
    with _dispatch.use(ops=True):
        out = SF.dice_loss(x, t, mode="multiclass", squared=True)
    xn = x.double().numpy()[0]
    p = np.exp(xn - xn.max(0))
    p /= p.sum(0)
    g = np.stack([t.numpy()[0] == 0, t.numpy()[0] == 1]).astype(np.float64)
    dice = (2 * (p * g).sum(1) + 1) / ((p * p).sum(1) + (g * g).sum(1) + 1)
    assert_close(out, 1 - dice.mean(), rtol=1e-5)
