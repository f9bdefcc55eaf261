"""boundary_loss (Kervadec et al.), hausdorff_dt_loss (Karimi & Salcudean) and schedules.rebalance.

Expected values come from tests/reference_distance.py (NumPy float64, written from the papers' definitions with
scipy's exact EDT), from LIVIAETS boundary-loss ``SurfaceLoss`` + ``one_hot2dist`` (transcribed there), and from
MONAI's ``HausdorffDTLoss`` / ``LogHausdorffDTLoss`` with the argument mapping spelled out in each test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seglosses.functional as SF
from reference import numeric_grad
from reference_distance import (
    blobs,
    boundary_loss_ref,
    hausdorff_dt_loss_ref,
    one_hot2dist_liviaets,
    sigmoid,
    signed_ref,
    softmax,
)
from seglosses.distance import DistanceMapTransform, signed_distance, unsigned_distance
from seglosses.schedules import rebalance

IGNORE = 255
SPATIAL = {2: (6, 7), 3: (4, 5, 4)}


@dataclass
class Data:
    mode: str
    x: torch.Tensor  # float64 logits (or probabilities)
    t: torch.Tensor
    logits: np.ndarray  # (N, C, *S) as the reference sees the input
    g: np.ndarray  # (N, C, *S) float target, 0 at ignored elements
    valid: np.ndarray  # (N, C, *S) bool
    from_logits: bool
    ignore_index: int | None

    def p(self, logits: np.ndarray | None = None) -> np.ndarray:
        z = self.logits if logits is None else logits
        if not self.from_logits:
            return z
        return softmax(z) if self.mode == "multiclass" else sigmoid(z)

    def kw(self, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        out: dict[str, Any] = {"mode": self.mode, "from_logits": self.from_logits, "ignore_index": self.ignore_index}
        out.update(extra)
        return out


def make(
    mode: str,
    dims: int = 2,
    *,
    form: str = "index",
    ignore: bool = False,
    from_logits: bool = True,
    seed: int = 0,
    n: int = 2,
    c: int = 3,
    squeeze: bool = False,
) -> Data:
    """Smooth blob targets (so that the maps are not trivial) and random logits."""
    rng = np.random.default_rng(seed)
    s = SPATIAL[dims]
    idx = blobs(n, c, s, seed=seed + 100)
    ch = 1 if mode == "binary" else c
    z = rng.normal(size=(n, ch, *s)) * 2.0
    if mode == "multiclass":
        g = (idx[:, None] == np.arange(c).reshape((1, c) + (1,) * dims)).astype(np.float64)
        ign = rng.random(size=(n, *s)) < 0.2 if ignore else np.zeros((n, *s), bool)
        valid = np.broadcast_to(~ign[:, None], g.shape).copy()
        if form == "index":
            t = torch.from_numpy(np.where(ign, IGNORE, idx))
        else:
            t = torch.from_numpy(g.copy())
        g = np.where(valid, g, 0.0)
    else:
        g = (idx == 1)[:, None] if mode == "binary" else np.stack([idx == 1, idx != 2, idx == 0], 1)
        g = g.astype(np.float64)
        ign = rng.random(size=g.shape) < 0.2 if ignore else np.zeros(g.shape, bool)
        valid = ~ign
        t = torch.from_numpy(np.where(ign, IGNORE, g))
        g = np.where(valid, g, 0.0)
    p = softmax(z) if mode == "multiclass" else sigmoid(z)
    x_np = z if from_logits else p
    x = torch.from_numpy(x_np.copy())
    if squeeze:
        x, t = x[:, 0], t[:, 0]
    return Data(mode, x, t, x_np, g, valid, from_logits, IGNORE if ignore else None)


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


# ------------------------------------------------------------------------------------------------ boundary


@pytest.mark.parametrize(("mode", "dims", "form", "ignore", "from_logits"), CASES)
@pytest.mark.parametrize(
    ("per_image", "reduction", "include_background", "spacing"),
    [(False, "mean", False, None), (True, "none", True, (2.0, 0.5, 1.0)), (False, "sum", True, 0.7)],
)
def test_boundary_matches_reference(
    mode: str,
    dims: int,
    form: str,
    ignore: bool,
    from_logits: bool,
    per_image: bool,
    reduction: str,
    include_background: bool,
    spacing: Any,  # noqa: ANN401
) -> None:
    d = make(mode, dims, form=form, ignore=ignore, from_logits=from_logits)
    sp = spacing[:dims] if isinstance(spacing, tuple) else spacing
    sp_ref = (1.0,) * dims if sp is None else (sp if isinstance(sp, tuple) else (sp,) * dims)
    kw = d.kw(per_image=per_image, reduction=reduction, include_background=include_background, spacing=sp)
    got = SF.boundary_loss(d.x, d.t, **kw)
    start = _start(mode, include_background)
    ref = boundary_loss_ref(
        d.p(), d.g > 0.5, d.valid, start=start, spacing=sp_ref, per_image=per_image, reduction=reduction
    )
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("mode", "dims", "form", "ignore", "from_logits"), CASES[::2])
def test_boundary_gradient_matches_reference(mode: str, dims: int, form: str, ignore: bool, from_logits: bool) -> None:
    d = make(mode, dims, form=form, ignore=ignore, from_logits=from_logits, n=1)
    weights = None if mode == "binary" else [0.5, 2.0, 1.0]
    x = d.x.clone().requires_grad_(True)
    SF.boundary_loss(x, d.t, **d.kw(class_weights=weights)).backward()
    phi = np.stack(
        [
            np.stack([signed_ref(m & v, (1.0,) * dims) for m, v in zip(gi > 0.5, vi, strict=True)])
            for gi, vi in zip(d.g, d.valid, strict=True)
        ]
    )
    start = _start(mode, False)

    def f(z: np.ndarray) -> float:
        p = d.p(z)
        return float(boundary_loss_ref(p, d.g > 0.5, d.valid, start=start, spacing=(), weights=weights, phi=phi))

    expected = numeric_grad(f, d.logits, probabilities=not from_logits)
    np.testing.assert_allclose(x.grad.reshape(expected.shape).numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_boundary_gradcheck(mode: str) -> None:
    d = make(mode, 2, ignore=True, n=2)
    x = d.x.clone().requires_grad_(True)
    kw = d.kw(per_image=True)
    assert torch.autograd.gradcheck(lambda a: SF.boundary_loss(a, d.t, **kw), (x,), fast_mode=True)
    # ignored pixels get no gradient
    x.grad = None
    SF.boundary_loss(x, d.t, **d.kw()).backward()
    ignored = torch.from_numpy(~d.valid).expand_as(x.grad) if mode != "multiclass" else None
    if ignored is not None:
        assert x.grad[ignored].abs().max() == 0


def test_boundary_dist_map_given_equals_computed_and_is_used_as_given() -> None:
    d = make("multiclass", 2, ignore=True)
    phi = signed_distance(d.t, mode="multiclass", num_classes=3, ignore_index=IGNORE).double()
    a = SF.boundary_loss(d.x, d.t, **d.kw())
    b = SF.boundary_loss(d.x, d.t, **d.kw(dist_map=phi))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)  # the helper returns float32 maps
    # any map is used as given: twice the map, twice the loss (the loss is linear in the map)
    torch.testing.assert_close(SF.boundary_loss(d.x, d.t, **d.kw(dist_map=2 * phi)), 2 * a)
    # maps from the data-loader transform, collated
    tr = DistanceMapTransform(mode="multiclass", num_classes=3, ignore_index=IGNORE)
    maps = torch.stack([tr.map(d.t[i]) for i in range(len(d.t))])
    torch.testing.assert_close(SF.boundary_loss(d.x, d.t, **d.kw(dist_map=maps)), a, rtol=1e-6, atol=0)


def test_boundary_index_equals_one_hot_and_binary_shapes_agree() -> None:
    d = make("multiclass", 2, form="index")
    oh = torch.nn.functional.one_hot(d.t, 3).movedim(-1, 1).double()
    torch.testing.assert_close(
        SF.boundary_loss(d.x, d.t, mode="multiclass"), SF.boundary_loss(d.x, oh, mode="multiclass")
    )
    b = make("binary", 2)
    b2 = make("binary", 2, squeeze=True)
    torch.testing.assert_close(SF.boundary_loss(b.x, b.t, mode="binary"), SF.boundary_loss(b2.x, b2.t, mode="binary"))


def test_boundary_vs_liviaets_surface_loss() -> None:
    """LIVIAETS ``SurfaceLoss(idc=[1, 2])``: ``(probs[:, idc] * dist_maps[:, idc]).mean()`` on softmax outputs.

    With their ``one_hot2dist`` maps passed as ``dist_map``, ``from_logits=False`` and the default
    ``include_background=False`` (``idc`` = the classes from 1), ours is the same number.
    """
    d = make("multiclass", 2, from_logits=False, n=3)
    maps = np.stack([one_hot2dist_liviaets(gi, (1.0, 1.0)) for gi in d.g])
    theirs = (d.logits[:, 1:] * maps[:, 1:]).mean()
    ours = SF.boundary_loss(d.x, d.t, mode="multiclass", from_logits=False, dist_map=torch.from_numpy(maps))
    np.testing.assert_allclose(ours.item(), theirs, rtol=1e-12)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_boundary_properties(seed: int, mode: str) -> None:
    d = make(mode, 2, ignore=True, seed=seed, from_logits=False)
    kw = d.kw()
    loss = SF.boundary_loss(d.x, d.t, **kw)
    # the perfect prediction is the minimum (p = 1 where phi < 0, 0 where phi > 0); in multiclass mode a one-hot
    g = torch.from_numpy(d.g)
    if mode == "multiclass":
        g = torch.where(torch.from_numpy(d.valid), g, torch.full_like(g, 1 / 3))
    perfect = SF.boundary_loss(g if mode != "binary" or d.x.ndim == g.ndim else g[:, 0], d.t, **kw)
    assert perfect.item() <= loss.item() + 1e-12
    # the ignored pixels change nothing: other probabilities there give the same loss
    rng = np.random.default_rng(seed)
    other = d.x.clone()
    inv = torch.from_numpy(~d.valid[:, :1] if mode == "multiclass" else ~d.valid).expand_as(other)
    noise = torch.from_numpy(rng.random(size=other.shape))
    if mode == "multiclass":
        noise = noise / noise.sum(1, keepdim=True)
    other = torch.where(inv, noise, other)
    torch.testing.assert_close(SF.boundary_loss(other, d.t, **kw), loss, rtol=1e-12, atol=1e-14)
    # permuting the images of the batch changes nothing
    perm = torch.tensor([1, 0])
    torch.testing.assert_close(SF.boundary_loss(d.x[perm], d.t[perm], **kw), loss, rtol=1e-12, atol=1e-14)


def test_boundary_hand_example_and_sign() -> None:
    # one spatial axis of 5 pixels, mask on the middle three: phi = (1, 0, -1, 0, 1); p = g gives -1/5 (the
    # minimum), p = 1 - g gives 2/5
    g = torch.tensor([[[0.0, 1.0, 1.0, 1.0, 0.0]]])
    assert SF.boundary_loss(g, g, mode="binary", from_logits=False).item() == pytest.approx(-0.2)
    assert SF.boundary_loss(1 - g, g, mode="binary", from_logits=False).item() == pytest.approx(0.4)


def test_boundary_empty_class_and_all_ignored() -> None:
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(2, 5, 5, dtype=torch.long)  # classes 1 and 2 absent: maps 0, loss 0
    assert SF.boundary_loss(x, t, mode="multiclass").item() == 0.0
    t_all = torch.full((2, 5, 5), IGNORE)
    out = SF.boundary_loss(x, t_all, mode="multiclass", ignore_index=IGNORE, per_image=True)
    out.backward()
    assert out.item() == 0.0
    assert x.grad.abs().sum() == 0


def test_boundary_extreme_logits_and_float32() -> None:
    d = make("multiclass", 2)
    x = (d.x * 1e4).float().requires_grad_(True)
    out = SF.boundary_loss(x, d.t, mode="multiclass")
    out.backward()
    assert torch.isfinite(out)
    assert torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = SF.boundary_loss(d.x.float(), d.t, mode="multiclass")
    assert out16.dtype == torch.float32
    assert torch.isfinite(out16)


# ------------------------------------------------------------------------------------------------ Hausdorff-DT


@pytest.mark.parametrize(("mode", "dims", "form", "ignore", "from_logits"), CASES)
@pytest.mark.parametrize(
    ("per_image", "reduction", "include_background", "alpha", "log_loss"),
    [(False, "mean", False, 2.0, False), (True, "none", True, 1.0, True), (False, "sum", True, 0.5, False)],
)
def test_hausdorff_dt_matches_reference(
    mode: str,
    dims: int,
    form: str,
    ignore: bool,
    from_logits: bool,
    per_image: bool,
    reduction: str,
    include_background: bool,
    alpha: float,
    log_loss: bool,
) -> None:
    d = make(mode, dims, form=form, ignore=ignore, from_logits=from_logits)
    sp = (1.5, 0.5, 1.0)[:dims] if per_image else None
    kw = d.kw(
        per_image=per_image,
        reduction=reduction,
        include_background=include_background,
        alpha=alpha,
        log_loss=log_loss,
        spacing=sp,
    )
    got = SF.hausdorff_dt_loss(d.x, d.t, **kw)
    ref = hausdorff_dt_loss_ref(
        d.p(),
        d.g,
        d.valid,
        start=_start(mode, include_background),
        spacing=sp or (1.0,) * dims,
        alpha=alpha,
        per_image=per_image,
        reduction=reduction,
        log_loss=log_loss,
    )
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("mode", "form", "ignore"), [("binary", "hard", True), ("multiclass", "index", True)])
def test_hausdorff_dt_gradient_matches_reference(mode: str, form: str, ignore: bool) -> None:
    d = make(mode, 2, form=form, ignore=ignore, n=1)
    x = d.x.clone().requires_grad_(True)
    SF.hausdorff_dt_loss(x, d.t, **d.kw(log_loss=True)).backward()
    start = _start(mode, False)

    def f(z: np.ndarray) -> float:  # the prediction's map is recomputed at every step, as in the loss
        return float(hausdorff_dt_loss_ref(d.p(z), d.g, d.valid, start=start, spacing=(1.0, 1.0), log_loss=True))

    expected = numeric_grad(f, d.logits)
    np.testing.assert_allclose(x.grad.reshape(expected.shape).numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
def test_hausdorff_dt_gradcheck(mode: str) -> None:
    d = make(mode, 2, ignore=True, form="index" if mode == "multiclass" else "hard")
    x = d.x.clone().requires_grad_(True)
    kw = d.kw(per_image=True)
    assert torch.autograd.gradcheck(lambda a: SF.hausdorff_dt_loss(a, d.t, **kw), (x,), fast_mode=True)


def test_hausdorff_dt_soft_target_with_dist_map() -> None:
    # soft targets enter (p - g)^2; the map of the target is the caller's
    d = make("multilabel", 2)
    g_soft = torch.from_numpy(np.clip(d.g + 0.3 * np.random.default_rng(0).random(d.g.shape), 0, 1))
    dm = unsigned_distance(d.t, mode="multilabel").double()
    got = SF.hausdorff_dt_loss(d.x, g_soft, mode="multilabel", dist_map=dm)
    ref = hausdorff_dt_loss_ref(d.p(), g_soft.numpy(), d.valid, start=1, spacing=(1.0, 1.0), d_g=dm.numpy())
    np.testing.assert_allclose(got.item(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="must be hard"):
        SF.hausdorff_dt_loss(d.x, g_soft, mode="multilabel")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("per_image", [False, True])
def test_hausdorff_dt_equals_monai(dims: int, include_background: bool, per_image: bool) -> None:
    """MONAI ``HausdorffDTLoss(alpha, include_background, softmax=True, to_onehot_y=True, batch=not per_image)``.

    MONAI's mean over (images, classes) of per-image-and-class pixel means equals our per-image mean; with
    ``batch=True`` it pools the images' pixels per class, our default. ``LogHausdorffDTLoss`` is ``log_loss=True``.
    """
    hd = pytest.importorskip("monai.losses.hausdorff_loss")
    d = make("multiclass", dims, n=2, c=3)
    t1 = d.t[:, None]
    for log_loss, cls in ((False, hd.HausdorffDTLoss), (True, hd.LogHausdorffDTLoss)):
        peer = cls(
            alpha=1.5, include_background=include_background, softmax=True, to_onehot_y=True, batch=not per_image
        )
        theirs = peer(d.x, t1)
        ours = SF.hausdorff_dt_loss(
            d.x,
            d.t,
            mode="multiclass",
            alpha=1.5,
            include_background=include_background,
            per_image=per_image,
            log_loss=log_loss,
        )
        # MONAI computes its maps in float32
        torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-6, atol=1e-9)
    # binary: MONAI sigmoid=True on one channel (it ignores include_background=False there, as we do)
    b = make("binary", dims)
    peer = hd.HausdorffDTLoss(sigmoid=True, include_background=False, reduction="none")
    theirs = peer(b.x, b.t).reshape(-1)
    ours = SF.hausdorff_dt_loss(b.x, b.t, mode="binary", per_image=True, reduction="none").reshape(-1)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-6, atol=1e-9)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["binary", "multiclass", "multilabel"]))
def test_hausdorff_dt_properties(seed: int, mode: str) -> None:
    d = make(mode, 2, ignore=True, seed=seed, from_logits=False)
    kw = d.kw(include_background=True)
    loss = SF.hausdorff_dt_loss(d.x, d.t, **kw)
    assert loss.item() >= 0
    # a perfect hard prediction gives 0, the minimum
    g = torch.from_numpy(d.g)
    if mode == "multiclass":
        g = torch.where(torch.from_numpy(d.valid), g, torch.full_like(g, 1 / 3))
    assert SF.hausdorff_dt_loss(g, d.t, **kw).item() == 0.0
    # the ignored pixels change nothing (not the error term, nor the prediction's map)
    rng = np.random.default_rng(seed)
    inv = torch.from_numpy(~d.valid[:, :1] if mode == "multiclass" else ~d.valid).expand_as(d.x)
    noise = torch.from_numpy(rng.random(size=d.x.shape))
    if mode == "multiclass":
        noise = noise / noise.sum(1, keepdim=True)
    torch.testing.assert_close(SF.hausdorff_dt_loss(torch.where(inv, noise, d.x), d.t, **kw), loss, rtol=1e-12, atol=0)
    perm = torch.tensor([1, 0])
    torch.testing.assert_close(SF.hausdorff_dt_loss(d.x[perm], d.t[perm], **kw), loss, rtol=1e-12, atol=0)


def test_hausdorff_dt_hand_example() -> None:
    # 1x4 row, mask on the middle two: d(g) = (1, 1, 1, 1); p = (0, 1, 1, 1): d(q) = (1, 1, 2, 3) (the image
    # outside is not background); only the last pixel is wrong: (0 - 1)^2 (1 + 9) / 4 = 2.5
    p = torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]])
    g = torch.tensor([[[[0.0, 1.0, 1.0, 0.0]]]])
    assert SF.hausdorff_dt_loss(p, g, mode="binary", from_logits=False).item() == 2.5
    assert SF.hausdorff_dt_loss(p, g, mode="binary", from_logits=False, alpha=1.0).item() == 1.0
    assert SF.hausdorff_dt_loss(p, g, mode="binary", from_logits=False, spacing=2.0).item() == 10.0


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("fn", [SF.boundary_loss, SF.hausdorff_dt_loss])
def test_distance_losses_bad_input(fn: Any) -> None:  # noqa: ANN401
    name = fn.__name__
    d = make("multiclass", 2)
    with pytest.raises(ValueError, match=rf"{name}: `dist_map` must have shape \(N, C, \*S\)=\(2, 3, 6, 7\)"):
        fn(d.x, d.t, mode="multiclass", dist_map=torch.zeros(2, 2, 6, 7))
    with pytest.raises(TypeError, match=rf"{name}: `dist_map` must be a floating-point tensor"):
        fn(d.x, d.t, mode="multiclass", dist_map=torch.zeros(2, 3, 6, 7, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{name}: `dist_map` must be a torch.Tensor"):
        fn(d.x, d.t, mode="multiclass", dist_map=np.zeros((2, 3, 6, 7)))
    nan_map = torch.zeros(2, 3, 6, 7, dtype=torch.float64)
    nan_map[1, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=rf"{name}: `dist_map` must hold finite values.*got 1 other values"):
        fn(d.x, d.t, mode="multiclass", dist_map=nan_map)
    with pytest.raises(ValueError, match=rf"{name}: `dist_map` must hold finite values.*got 1 other values"):
        fn(d.x, d.t, mode="multiclass", dist_map=nan_map.nan_to_num(nan=float("inf")))
    with pytest.raises(ValueError, match=rf"{name}: `spacing` must have one value per spatial axis \(2"):
        fn(d.x, d.t, mode="multiclass", spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=rf"{name}: `spacing` must hold finite values > 0"):
        fn(d.x, d.t, mode="multiclass", spacing=0.0)
    soft = torch.from_numpy(softmax(np.random.default_rng(0).normal(size=(2, 3, 6, 7))))
    with pytest.raises(ValueError, match=rf"{name}: `target` must be hard"):
        fn(d.x, soft, mode="multiclass")
    b = make("binary", 2)
    with pytest.raises(ValueError, match=rf"{name}: .*class_weights"):
        fn(b.x, b.t, mode="binary", class_weights=[1.0])
    with pytest.raises(ValueError, match=rf"{name}: `reduction`"):
        fn(d.x, d.t, mode="multiclass", reduction="avg")
    with pytest.raises(ValueError, match=rf"{name}: .*include_background=False"):
        fn(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), mode="multilabel")


def test_hausdorff_dt_rejects_a_signed_dist_map() -> None:
    # the target's map of HD-DT is unsigned (>= 0): a signed map passed by mistake would be squared silently
    # (alpha = 2) or give NaN (alpha = 0.5); boundary_loss takes the signed map as it is
    d = make("multiclass", 2)
    signed = signed_distance(d.t, mode="multiclass", num_classes=3).to(torch.float64)
    assert bool((signed < 0).any())
    with pytest.raises(
        ValueError, match=r"hausdorff_dt_loss: `dist_map` must hold finite values >= 0 \(the target's unsigned"
    ):
        SF.hausdorff_dt_loss(d.x, d.t, mode="multiclass", dist_map=signed)
    assert torch.isfinite(SF.boundary_loss(d.x, d.t, mode="multiclass", dist_map=signed))


def test_hausdorff_dt_bad_alpha() -> None:
    d = make("binary", 2)
    with pytest.raises(ValueError, match="hausdorff_dt_loss: `alpha`"):
        SF.hausdorff_dt_loss(d.x, d.t, mode="binary", alpha=-1.0)
    with pytest.raises(TypeError, match="hausdorff_dt_loss: `log_loss`"):
        SF.hausdorff_dt_loss(d.x, d.t, mode="binary", log_loss=1)


# ------------------------------------------------------------------------------------------------ schedule


def test_rebalance_schedule() -> None:
    # alpha = max(0.01, 1 - 0.01 epoch): all the weight on the region loss at epoch 0, 0.01 from epoch 99 on
    assert [rebalance(e) for e in (0, 1, 50, 98, 99, 100, 1000)] == pytest.approx(
        [1, 0.99, 0.5, 0.02, 0.01, 0.01, 0.01]
    )
    assert rebalance(2.5) == pytest.approx(0.975)
    with pytest.raises(ValueError, match="rebalance: `epoch`"):
        rebalance(-1)
    with pytest.raises(TypeError, match="rebalance: `epoch`"):
        rebalance("3")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ sync_stats


@pytest.mark.parametrize("name", ["boundary_loss", "hausdorff_dt_loss", "cldice_loss", "dice_cldice_loss"])
def test_distance_losses_sync_stats_one_rank(name: str, tmp_path: Any) -> None:  # noqa: ANN401
    """On a one-rank gloo group the summed statistics are the local ones: equal values and gradients."""
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        fn = getattr(SF, name)
        d = make("multiclass", 2, ignore=True)
        for per_image in (False, True):
            xa, xb = d.x.clone().requires_grad_(True), d.x.clone().requires_grad_(True)
            a = fn(xa, d.t, **d.kw(per_image=per_image))
            b = fn(xb, d.t, **d.kw(per_image=per_image, sync_stats=True))
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
            a.backward()
            b.backward()
            torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-14)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["boundary_loss", "hausdorff_dt_loss"])
@pytest.mark.parametrize("value", [3, -1])
def test_bad_class_index_without_value_checks_poisons_its_image(name, value):
    # with value checks off (a GPU's default) a class index outside [0, C) makes its image NaN, the others keep
    # their values (equal to the same call on the good target), and nothing is read out of bounds (it raised
    # IndexError for 3 and gave a finite loss for -1)
    import seglosses

    g = torch.Generator().manual_seed(41)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 5, 6), generator=g)
    bad = t.clone()
    bad[1, 2, 3] = value
    fn = getattr(SF, name)
    good = fn(x, t, mode="multiclass", per_image=True, reduction="none")
    seglosses.set_value_checks("never")
    try:
        got = fn(x, bad, mode="multiclass", per_image=True, reduction="none")
        xg = x.clone().requires_grad_(True)
        loss = fn(xg, bad, mode="multiclass")
        loss.backward()
    finally:
        seglosses.set_value_checks("cpu")
    assert torch.isnan(got[1]).all()
    assert torch.equal(got[0], good[0])
    assert torch.isnan(loss)
