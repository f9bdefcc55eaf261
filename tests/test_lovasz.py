"""Lovász hinge / Lovász-softmax loss against the NumPy reference (tests/reference_lovasz.py) and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses
import seglosses.functional as SF
from helpers import assert_close, to_np
from reference import numeric_grad
from reference_lovasz import jaccard_set_loss, lovasz_extension, lovasz_extension_brute
from reference_lovasz import lovasz_loss as ref_lovasz

IGNORE = 255
SPATIAL = {2: (4, 5), 3: (2, 3, 4)}


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_lovasz_case(mode, *, dims=2, from_logits=True, ignore=False, absent=False, onehot=False, seed=0, n=2, c=3):
    """Random (input, target) as float64 torch tensors and NumPy arrays.

    ``absent=True`` removes class 2 (multiclass) from image 0, or empties channel 1 (multilabel) / image 0 (binary),
    so that ``classes="present"`` and ``"all"`` differ. ``ignore=True`` marks about a fifth of the target IGNORE.
    """
    rng = np.random.default_rng(seed)
    s = SPATIAL[dims]
    ch = 1 if mode == "binary" else c
    logits = rng.normal(size=(n, ch, *s)) * 2.0
    x = logits if from_logits else (_softmax(logits) if mode == "multiclass" else _sigmoid(logits))
    if mode == "multiclass":
        t = rng.integers(0, c, size=(n, *s))
        t.reshape(n, -1)[:, :c] = np.arange(c)
        if absent:
            t[0][t[0] == 2] = 0
        if ignore:
            mask = rng.random(size=t.shape) < 0.2
            mask.reshape(n, -1)[:, :c] = False
            t = np.where(mask, IGNORE, t)
        if onehot:
            t = np.moveaxis(np.eye(c)[t], -1, 1)
    else:
        t = (rng.random(size=(n, ch, *s)) < 0.4).astype(np.float64)
        t.reshape(n, ch, -1)[:, :, 0] = 1.0
        t.reshape(n, ch, -1)[:, :, 1] = 0.0
        if absent:
            if mode == "binary":
                t[0] = 0.0
            else:
                t[:, 1] = 0.0
        if ignore:
            mask = rng.random(size=t.shape) < 0.2
            mask.reshape(n, ch, -1)[:, :, :2] = False
            t = np.where(mask, float(IGNORE), t)
    return torch.tensor(x, dtype=torch.float64), torch.tensor(t), x, t


def check_against_reference(mode, x, t, x_np, t_np, *, grad=True, **kw):
    xg = x.detach().clone().requires_grad_(True)
    out = SF.lovasz_loss(xg, t, mode=mode, **kw)
    assert out.shape == ()
    assert out.dtype == torch.float64
    expected = ref_lovasz(x_np, t_np, mode=mode, **kw)
    assert_close(out, expected, rtol=1e-6, atol=1e-12)
    if grad:
        out.backward()
        # the loss has no log: a plain central difference (the inputs keep away from the kinks at 0 and 1)
        num = numeric_grad(lambda a: ref_lovasz(a, t_np, mode=mode, **kw), x_np)
        np.testing.assert_allclose(to_np(xg.grad), num, rtol=1e-6, atol=1e-9)
    return out


MODES_FROM_LOGITS = [
    ("binary", True),
    ("binary", False),
    ("multiclass", True),
    ("multiclass", False),
    ("multilabel", True),
    ("multilabel", False),
]


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_matches_reference(mode, from_logits, dims, per_image):
    x, t, x_np, t_np = make_lovasz_case(mode, dims=dims, from_logits=from_logits, seed=dims)
    check_against_reference(mode, x, t, x_np, t_np, from_logits=from_logits, per_image=per_image)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("classes", ["present", "all"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_options_match_reference(mode, from_logits, per_image, classes, reduction):
    x, t, x_np, t_np = make_lovasz_case(mode, from_logits=from_logits, ignore=True, absent=True, seed=11)
    kw = {"from_logits": from_logits, "per_image": per_image, "classes": classes, "reduction": reduction}
    check_against_reference(mode, x, t, x_np, t_np, ignore_index=IGNORE, **kw)


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_classes_present_differs_from_all(per_image):
    x, t, _, _ = make_lovasz_case("multiclass", absent=True, seed=5)
    present = SF.lovasz_loss(x, t, mode="multiclass", classes="present", per_image=per_image)
    every = SF.lovasz_loss(x, t, mode="multiclass", classes="all", per_image=per_image)
    if per_image:  # class 2 is absent from image 0 only
        assert not torch.isclose(present, every)
    else:  # every class is present in the batch
        assert_close(present, to_np(every), rtol=1e-12)


def test_lovasz_onehot_target_equals_index_target():
    x, t, _, _ = make_lovasz_case("multiclass", dims=3, seed=6)
    oh = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double()
    for kw in ({}, {"per_image": True, "classes": "all"}):
        assert_close(
            SF.lovasz_loss(x, oh, mode="multiclass", **kw), to_np(SF.lovasz_loss(x, t, mode="multiclass", **kw))
        )


def test_lovasz_binary_without_channel_dim_equals_with():
    x, t, _, _ = make_lovasz_case("binary", seed=7, ignore=True)
    for kw in ({}, {"per_image": True}, {"from_logits": False}):
        xin = x if kw.get("from_logits", True) else torch.sigmoid(x)
        a = SF.lovasz_loss(xin, t, mode="binary", ignore_index=IGNORE, **kw)
        b = SF.lovasz_loss(xin[:, 0], t[:, 0], mode="binary", ignore_index=IGNORE, **kw)
        assert_close(a, to_np(b), rtol=1e-12)


# ----------------------------------------------------------------------------- the Lovász extension itself


def test_lovasz_extension_reference_matches_brute_force_definition():
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 5, 8):
        for _ in range(20):
            gt = (rng.random(size) < 0.5).astype(np.float64)
            errors = rng.integers(0, 4, size=size) / 3.0  # ties and zeros on purpose
            assert lovasz_extension(errors, gt) == pytest.approx(lovasz_extension_brute(errors, gt), abs=1e-12)
    # on 0/1 error vectors the extension equals the set function (paper: it is an extension)
    gt = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    for bits in range(32):
        miss = np.array([(bits >> i) & 1 for i in range(5)], dtype=np.float64)
        expected = jaccard_set_loss({i for i in range(5) if miss[i]}, {0, 1, 4})
        assert lovasz_extension(miss, gt) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("hinge", [True, False])
def test_lovasz_binary_rows_match_brute_force(hinge):
    # the torch implementation against the plain-Python level-set definition, on tiny vectors with ties
    rng = np.random.default_rng(1)
    for size in (1, 2, 4, 7):
        for _ in range(10):
            g = (rng.random((2, 1, size)) < 0.5).astype(np.float64)
            if hinge:
                x = rng.integers(-2, 3, size=(2, 1, size)) / 2.0
                errors = np.maximum(0.0, 1.0 - x * (2 * g - 1))
            else:
                x = rng.integers(0, 5, size=(2, 1, size)) / 4.0
                errors = np.abs(g - x)
            got = SF.lovasz_loss(torch.tensor(x), torch.tensor(g), mode="binary", from_logits=hinge, per_image=True)
            expected = np.mean([lovasz_extension_brute(errors[i, 0], g[i, 0]) for i in range(2)])
            assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_lovasz_multiclass_brute_force_tiny():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 3, 2, 3))
    t = np.array([[[0, 1, 1], [2, 0, 0]]])
    p = _softmax(x.reshape(1, 3, -1))[0]
    expected = np.mean(
        [lovasz_extension_brute(np.abs((t.reshape(-1) == k) - p[k]), t.reshape(-1) == k) for k in range(3)]
    )
    assert_close(SF.lovasz_loss(torch.tensor(x), torch.tensor(t), mode="multiclass"), expected, rtol=1e-12)
    assert_close(ref_lovasz(x, t, mode="multiclass", extension=lovasz_extension_brute), expected, rtol=1e-12)


def test_lovasz_hand_derived_2x2():
    # one missed positive at error 0.5: Delta_J({3}) = |M| / |G u M| = 1/2, loss 0.5 * 1/2
    p = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]], dtype=torch.float64)
    g = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    assert_close(SF.lovasz_loss(p, g, mode="binary", from_logits=False), 0.25, rtol=1e-12)
    # hinge errors relu(1 - x s) = [0, 0.5, 1.5, 0]: sorted 1.5 (pixel 2, a negative), 0.5 (pixel 1, a positive)
    # Delta({2}) = 1/3 (|G u M| = 3), Delta({1, 2}) = 2/3: loss = 1.5/3 + 0.5 * (2/3 - 1/3) = 2/3
    x = torch.tensor([[[2.0, 0.5], [0.5, -1.0]]], dtype=torch.float64)
    g = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]], dtype=torch.float64)
    assert_close(SF.lovasz_loss(x, g, mode="binary"), 2.0 / 3.0, rtol=1e-12)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("binary", {"ignore_index": IGNORE}),
        ("binary", {"from_logits": False, "per_image": True}),
        ("multiclass", {"ignore_index": IGNORE, "per_image": True}),
        ("multiclass", {"from_logits": False, "classes": "all"}),
        ("multilabel", {"ignore_index": IGNORE}),
        ("multilabel", {"from_logits": False, "per_image": True, "reduction": "sum"}),
    ],
)
def test_lovasz_gradcheck(mode, kw):
    from_logits = kw.get("from_logits", True)
    x, t, _, _ = make_lovasz_case(mode, from_logits=from_logits, ignore="ignore_index" in kw, seed=3)
    x = 0.05 + 0.9 * x if not from_logits else x  # stay inside [0, 1] under the finite differences, without ties
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: SF.lovasz_loss(a, t, mode=mode, **kw), (x,), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- ignore_index


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_ignored_pixels_change_nothing_and_get_no_gradient(mode, from_logits, per_image):
    x, t, _, _ = make_lovasz_case(mode, from_logits=from_logits, ignore=True, dims=3, seed=4)
    ignored = (t == IGNORE).unsqueeze(1).expand_as(x) if mode == "multiclass" else t == IGNORE
    kw = {"mode": mode, "from_logits": from_logits, "ignore_index": IGNORE, "per_image": per_image}
    xg = x.clone().requires_grad_(True)
    out = SF.lovasz_loss(xg, t, **kw)
    out.backward()
    assert torch.all(xg.grad[ignored] == 0)
    assert torch.any(xg.grad[~ignored] != 0)
    # any value at the ignored pixels gives the same loss
    other = torch.where(ignored, torch.rand_like(x) if not from_logits else 100 * torch.randn_like(x), x)
    assert_close(SF.lovasz_loss(other, t, **kw), to_np(out), rtol=1e-12)


def test_lovasz_ignore_equals_pixels_removed():
    x, t, _, _ = make_lovasz_case("multiclass", ignore=True, seed=8)
    kept = t != IGNORE
    # batch mode pools every kept pixel of the batch into one set per class
    xs = x.movedim(1, -1)[kept].T.unsqueeze(0)  # (1, C, K)
    ts = t[kept].unsqueeze(0)
    full = SF.lovasz_loss(x, t, mode="multiclass", ignore_index=IGNORE)
    assert_close(full, to_np(SF.lovasz_loss(xs, ts, mode="multiclass")), rtol=1e-12)
    # binary, per image: each image's kept pixels alone
    xb, tb, _, _ = make_lovasz_case("binary", ignore=True, seed=9)
    per = SF.lovasz_loss(xb, tb, mode="binary", ignore_index=IGNORE, per_image=True)
    parts = [
        SF.lovasz_loss(xb[i][tb[i] != IGNORE].view(1, -1), tb[i][tb[i] != IGNORE].view(1, -1), mode="binary")
        for i in range(2)
    ]
    assert_close(per, to_np(sum(parts) / 2), rtol=1e-12)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_lovasz_image_fully_ignored_is_left_out(mode):
    x, t, _, _ = make_lovasz_case(mode, ignore=True, seed=10)
    t = t.clone()
    t[1] = IGNORE
    both = SF.lovasz_loss(x, t, mode=mode, ignore_index=IGNORE, per_image=True)
    first = SF.lovasz_loss(x[:1], t[:1], mode=mode, ignore_index=IGNORE, per_image=True)
    assert_close(both, to_np(first), rtol=1e-12)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_every_pixel_ignored_gives_zero_and_zero_gradient(mode, from_logits, per_image):
    x, t, _, _ = make_lovasz_case(mode, from_logits=from_logits, seed=12)
    t = torch.full_like(t, IGNORE)
    xg = x.clone().requires_grad_(True)
    out = SF.lovasz_loss(xg, t, mode=mode, from_logits=from_logits, ignore_index=IGNORE, per_image=per_image)
    out.backward()
    assert out.item() == 0.0
    assert torch.all(xg.grad == 0)


# ----------------------------------------------------------------------------- numerics and edge cases


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_lovasz_perfect_prediction_gives_zero(mode, per_image):
    _, t, _, _ = make_lovasz_case(mode, seed=13)
    g = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double() if mode == "multiclass" else t
    for from_logits in (True, False):
        x = (2 * g - 1) * 50 if from_logits else g  # hinge margin >= 1; softmax errors ~ exp(-100)
        out = SF.lovasz_loss(x, t, mode=mode, from_logits=from_logits, per_image=per_image)
        assert_close(out, 0.0, atol=1e-30)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_lovasz_empty_masks_finite(mode):
    x, t, _, _ = make_lovasz_case(mode, seed=14)
    t = torch.zeros_like(t)
    for kw in ({}, {"per_image": True}, {"classes": "all"}):
        xg = x.float().requires_grad_(True)
        out = SF.lovasz_loss(xg, t, mode=mode, **kw)
        out.backward()
        assert torch.isfinite(out)
        assert torch.isfinite(xg.grad).all()
        assert out.item() > 0  # false positives on an empty target are penalised
    # binary hinge on an empty target: Delta_J(M) = 1 for any M, so the loss is the largest error max(0, 1 + x)
    if mode == "binary":
        assert_close(SF.lovasz_loss(x, t, mode=mode), to_np((1 + x).clamp_min(0).max()), rtol=1e-12)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_lovasz_large_logits_finite(mode):
    x, t, _, _ = make_lovasz_case(mode, seed=15)
    xg = (torch.sign(x) * 1e4).float().requires_grad_(True)
    for per_image in (False, True):
        out = SF.lovasz_loss(xg, t, mode=mode, per_image=per_image)
        (g,) = torch.autograd.grad(out, xg)
        assert torch.isfinite(out)
        assert torch.isfinite(g).all()


def test_lovasz_float32_and_bfloat16_close_to_float64():
    x, t, _, _ = make_lovasz_case("multiclass", dims=3, seed=16)
    ref = SF.lovasz_loss(x, t, mode="multiclass")
    out32 = SF.lovasz_loss(x.float(), t, mode="multiclass")
    assert out32.dtype == torch.float32
    assert_close(out32, to_np(ref), rtol=1e-5)
    out16 = SF.lovasz_loss(x.bfloat16(), t, mode="multiclass")
    assert out16.dtype == torch.float32
    assert torch.isfinite(out16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(SF.lovasz_loss(x.float(), t, mode="multiclass"))


# ----------------------------------------------------------------------------- bad input


def test_lovasz_soft_target_raises():
    x, t, _, _ = make_lovasz_case("binary", seed=17)
    with pytest.raises(ValueError, match=r"lovasz_loss: `target` must be hard \(values 0 or 1\)"):
        SF.lovasz_loss(x, t * 0.7, mode="binary")
    xm, tm, _, _ = make_lovasz_case("multiclass", seed=17, onehot=True)
    with pytest.raises(ValueError, match=r"lovasz_loss: `target` must be hard \(values 0 or 1\)"):
        SF.lovasz_loss(xm, torch.softmax(tm * 2, dim=1), mode="multiclass")


def test_lovasz_non_onehot_target_raises():
    xm, tm, _, _ = make_lovasz_case("multiclass", seed=18, onehot=True)
    tm = tm.clone()
    tm[0, :, 0, 0] = 0.0
    with pytest.raises(
        ValueError,
        match=r"lovasz_loss: `target` of shape \(N, C, \*S\) for mode='multiclass' must be one-hot .*got 1 pixels",
    ):
        SF.lovasz_loss(xm, tm, mode="multiclass")


def test_lovasz_bad_classes_raises():
    x, t, _, _ = make_lovasz_case("multiclass", seed=19)
    with pytest.raises(
        ValueError,
        match=r"lovasz_loss: `classes` must be one of 'present', 'all'; got 'presnt' \(did you mean 'present'\?\)",
    ):
        SF.lovasz_loss(x, t, mode="multiclass", classes="presnt")
    with pytest.raises(ValueError, match=r"lovasz_loss: `classes` must be one of 'present', 'all'; got \[1, 2\]"):
        SF.lovasz_loss(x, t, mode="multiclass", classes=[1, 2])
    with pytest.raises(ValueError, match=r"lovasz_loss: `classes`"):
        seglosses.LovaszLoss(mode="multiclass", classes="every")


def test_lovasz_reduction_none_raises():
    x, t, _, _ = make_lovasz_case("binary", seed=20)
    with pytest.raises(ValueError, match=r"lovasz_loss: `reduction` must be one of 'mean', 'sum'; got 'none'"):
        SF.lovasz_loss(x, t, mode="binary", reduction="none")
    with pytest.raises(ValueError, match=r"lovasz_loss: `reduction`"):
        seglosses.LovaszLoss(mode="binary", reduction="none")


def test_lovasz_bad_per_image_and_mode_raise():
    x, t, _, _ = make_lovasz_case("binary", seed=21)
    with pytest.raises(TypeError, match=r"lovasz_loss: `per_image` must be a bool"):
        SF.lovasz_loss(x, t, mode="binary", per_image=1)
    with pytest.raises(ValueError, match=r"lovasz_loss: `mode` must be one of"):
        SF.lovasz_loss(x, t, mode="binay")


# ----------------------------------------------------------------------------- Module and registry


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("binary", {}),
        ("multiclass", {"classes": "all", "per_image": True, "ignore_index": IGNORE}),
        ("multilabel", {"from_logits": False, "reduction": "sum"}),
    ],
)
def test_lovasz_module_equals_function_equals_registry(mode, kw):
    from_logits = kw.get("from_logits", True)
    x, t, _, _ = make_lovasz_case(mode, from_logits=from_logits, ignore="ignore_index" in kw, seed=22)
    expected = SF.lovasz_loss(x, t, mode=mode, **kw)
    module = seglosses.LovaszLoss(mode=mode, **kw)
    assert_close(module(x, t), to_np(expected), rtol=0, atol=0)
    assert_close(seglosses.get_loss("lovasz", mode=mode, **kw)(x, t), to_np(expected), rtol=0, atol=0)
    for name, value in kw.items():
        assert getattr(module, name) == value


@pytest.mark.parametrize("native", [False, True])
def test_lovasz_float32_gradient_accurate_on_long_rows(native):
    """Weights of size 1/L on a row of 262K elements: float32 gradients within 1e-4 of float64 (both paths).

    The weight J_k - J_{k-1} taken as a difference of two float32 ratios near 1 is off by several percent at this
    length; the closed form is not. The float64 run takes the PyTorch path (the native kernels are float32 only).
    """
    from seglosses import _native

    g = torch.Generator().manual_seed(21)
    x = torch.randn((1, 2, 512, 512), generator=g) * 2
    t = torch.randint(0, 2, (1, 512, 512), generator=g)
    grads = {}
    try:
        _native.set_native(native)
        for dtype in (torch.float32, torch.float64):
            leaf = x.to(dtype).clone().requires_grad_(True)
            SF.lovasz_loss(leaf, t, mode="multiclass").backward()
            grads[dtype] = leaf.grad.double()
    finally:
        _native.set_native(True)
    ref = grads[torch.float64]
    assert ((grads[torch.float32] - ref).abs().max() / ref.abs().max()).item() < 1e-4


# ----------------------------------------------------------------------------- computation paths

#: The readable PyTorch path (autograd through the errors) and the ``seglosses::lovasz_fwd`` operator's PyTorch
#: twin (sort and weights without autograd, the gradient from its backward operator).
PATHS = {"readable": {"ops": False}, "operator": {"ops": True, "native": False}}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_every_path_matches_reference(path, mode, from_logits, per_image):
    from seglosses import _dispatch

    x, t, x_np, t_np = make_lovasz_case(mode, from_logits=from_logits, ignore=True, absent=True, dims=3, seed=12)
    kw = {"from_logits": from_logits, "per_image": per_image, "ignore_index": IGNORE, "classes": "all"}
    with _dispatch.use(**PATHS[path]), _dispatch.record() as taken:
        check_against_reference(mode, x, t, x_np, t_np, **kw)
    # the operator serves every form but probabilities with class indices (no fused softmax there)
    expect_op = path == "operator" and not (mode == "multiclass" and not from_logits)
    assert any(entry.startswith("lovasz:") for entry in taken) == expect_op, taken


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(("mode", "from_logits"), MODES_FROM_LOGITS)
def test_lovasz_float32_operator_matches_float64_reference(mode, from_logits, per_image):
    """float32 on the CPU (the C++ kernel when it is built): value and gradient close to the float64 reference."""
    x, t, x_np, t_np = make_lovasz_case(mode, from_logits=from_logits, ignore=True, dims=3, seed=13)
    kw = {"mode": mode, "from_logits": from_logits, "per_image": per_image, "ignore_index": IGNORE}
    x32 = x.float().requires_grad_(True)
    out = SF.lovasz_loss(x32, t, **kw)
    out.backward()
    assert out.dtype == torch.float32
    assert_close(out, ref_lovasz(x_np, t_np, **kw), rtol=1e-5, atol=1e-7)
    x64 = x.clone().requires_grad_(True)
    SF.lovasz_loss(x64, t, **kw).backward()
    np.testing.assert_allclose(to_np(x32.grad).astype(np.float64), to_np(x64.grad), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_bad_index_without_value_checks_gives_nan_not_a_crash(per_image, native):
    """With the host-side check off (as on a GPU), a class index outside [0, C) at a kept pixel makes the loss NaN.

    The operator guards the indices (no out-of-bounds read in the kernel) and poisons the rows that hold one; an
    index outside the range at an ignored pixel changes nothing.
    """
    from seglosses import _dispatch

    x, t, _, _ = make_lovasz_case("multiclass", ignore=True, seed=14)
    x = x.float()
    good = SF.lovasz_loss(x, t, mode="multiclass", ignore_index=IGNORE, per_image=per_image)
    bad = t.clone()
    bad[1, 0, 0] = 7
    seglosses.set_value_checks("never")
    try:
        with _dispatch.use(ops=True, native=native):
            out = SF.lovasz_loss(x, bad, mode="multiclass", ignore_index=IGNORE, per_image=per_image)
            assert torch.isnan(out)
            fine = SF.lovasz_loss(x, t, mode="multiclass", ignore_index=IGNORE, per_image=per_image)
    finally:
        seglosses.set_value_checks("cpu")
    assert_close(fine, to_np(good), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"lovasz_loss: .*class ind"):
        SF.lovasz_loss(x, bad, mode="multiclass", ignore_index=IGNORE, per_image=per_image)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("path", [{"native": False}, {"ops": True, "native": False}, {"fused": False}])
def test_lovasz_loss_ties_keep_position_order(path, per_image):
    # Equal errors (a perfect or all-0.5 prediction, zero logits) give the same value in any order, but the gradient
    # is the weight of each rank: the PyTorch paths sort stably, so tied pixels keep their position order (image by
    # image in batch mode), as Berman et al.'s reference (torch.sort on the CPU). Expected: Alg. 1 with NumPy's stable
    # argsort, written here; the float32 C++ kernel too (its bucket words hold the reversed local index).
    from seglosses import _dispatch

    g = np.array([[0, 1, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 1, 1, 0]], dtype=np.float64)

    def weights(gt):  # Berman et al. Alg. 1 on rows already in sorted order
        inter = gt.sum() - np.cumsum(gt)
        union = gt.sum() + np.cumsum(1 - gt)
        jac = 1 - inter / union
        return np.diff(jac, prepend=0.0)

    rows = [g[0], g[1]] if per_image else [g.reshape(-1)]
    grad = []
    for row in rows:
        order = np.argsort(-np.full(row.shape, 0.5), kind="stable")  # all errors equal: position order
        w = np.empty_like(row)
        w[order] = weights(row[order])
        grad.append(w * (1 - 2 * row) / len(rows))  # d|g - p|/dp = 1 - 2g; mean over images
    expected = np.concatenate(grad).reshape(2, 1, 8)
    for dtype in (torch.float64, torch.float32):  # float32 on the default path: the C++ kernel where it builds
        for p0 in (0.5, None):  # all-0.5 probabilities, and the perfect prediction (every error 0)
            p = torch.tensor(g.reshape(2, 1, 8) if p0 is None else np.full((2, 1, 8), p0), dtype=dtype)
            p.requires_grad_(True)
            with _dispatch.use(**(path if dtype == torch.float64 else {})):
                SF.lovasz_loss(
                    p, torch.tensor(g.reshape(2, 1, 8), dtype=dtype), mode="binary", from_logits=False,
                    per_image=per_image,
                ).backward()  # fmt: skip
            tol = 1e-12 if dtype == torch.float64 else 1e-6
            assert_close(p.grad, expected, rtol=tol, atol=tol)
