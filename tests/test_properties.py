"""Hypothesis properties of every loss in :mod:`seglosses.functional` (STYLE.md, Tests; issue 3).

Random small shapes (2D and 3D), modes, target forms and hyperparameters; every property is checked in float64:

- range: region losses in [0, 1] (``log_loss`` excepted: >= 0), pixel and compound losses >= 0, combo >= -(1 - alpha);
- perfect prediction gives the minimum: exactly from probabilities 0/1 (``from_logits=False``), approximately from
  logits +-30;
- ignored pixels neither change the value nor receive gradient: a call with ``ignore_index`` equals the call on the
  tensor with those pixels cut out (the same number per image, spatial dims flattened), and changing the input at
  ignored elements changes nothing;
- invariance to a permutation of the pixels (the same one in input and target) and of the images;
- symmetry of Dice/Jaccard/Tversky(alpha = beta) under swapping prediction and (soft) target, and
  Tversky(alpha, beta)(p, g) == Tversky(beta, alpha)(g, p).

Data come from a NumPy generator seeded by hypothesis; hypothesis runs derandomized so CI is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seglosses.functional as SF

IGNORE = 255
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

REGION = ["dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"]
PIXEL = ["cross_entropy", "focal_loss"]
COMPOUND = ["dice_ce_loss", "combo_loss", "hybrid_focal_loss"]
UNIFIED = [
    "unified_focal_loss",
    "asymmetric_focal_loss",
    "symmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "symmetric_focal_tversky_loss",
]
ALL = [*REGION, *PIXEL, *COMPOUND, *UNIFIED, "lovasz_loss"]
UNIFIED_TVERSKY = ["unified_focal_loss", "asymmetric_focal_tversky_loss", "symmetric_focal_tversky_loss"]


def _fn(name: str) -> Any:
    return getattr(SF, name)


def _modes(name: str) -> list[str]:
    return ["binary", "multiclass"] if name in UNIFIED else ["binary", "multiclass", "multilabel"]


def _forms(name: str, mode: str) -> list[str]:
    if name == "lovasz_loss":  # hard targets only
        return ["index", "onehot"] if mode == "multiclass" else ["hard"]
    return ["index", "onehot", "soft"] if mode == "multiclass" else ["hard", "soft"]


# ------------------------------------------------------------------------------------------------ data


@dataclass
class Case:
    name: str
    mode: str
    x: torch.Tensor  # (N, C, *S) float64 logits or probabilities
    t: torch.Tensor  # target, (N, *S) int64 for index targets else (N, C, *S) float64
    from_logits: bool
    opts: dict[str, Any] = field(default_factory=dict)

    def call(self, x: torch.Tensor | None = None, t: torch.Tensor | None = None, **extra: Any) -> torch.Tensor:
        kw = {"mode": self.mode, "from_logits": self.from_logits, **self.opts, **extra}
        return _fn(self.name)(self.x if x is None else x, self.t if t is None else t, **kw)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def make_data(
    rng: np.random.Generator, mode: str, form: str, n: int, c: int, spatial: tuple[int, ...], from_logits: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    ch = 1 if mode == "binary" else c
    logits = rng.normal(size=(n, ch, *spatial)) * rng.uniform(0.5, 4.0)
    if from_logits:
        x = logits
    else:
        x = _softmax(logits) if mode == "multiclass" else _sigmoid(logits)
    if mode == "multiclass":
        idx = rng.integers(0, c, size=(n, *spatial))
        if form == "index":
            t = torch.tensor(idx, dtype=torch.int64)
        elif form == "onehot":
            t = torch.tensor(np.moveaxis(np.eye(c)[idx], -1, 1))
        else:
            t = torch.tensor(_softmax(rng.normal(size=(n, c, *spatial)) * 2))
    elif form == "hard":
        t = torch.tensor((rng.random(size=(n, ch, *spatial)) < rng.uniform(0.1, 0.9)).astype(np.float64))
    else:
        t = torch.tensor(rng.random(size=(n, ch, *spatial)))
    return torch.tensor(x, dtype=torch.float64), t


def _unit(draw: st.DrawFn, lo: float = 0.0, hi: float = 1.0) -> float:
    return draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))


def draw_options(draw: st.DrawFn, name: str, mode: str, c: int, *, perfect: bool = False) -> dict[str, Any]:
    """Hyperparameters and options accepted by ``name`` (``perfect``: none that moves the minimum off 0/1)."""
    o: dict[str, Any] = {}
    multi = mode != "binary"
    if name in [*REGION, *COMPOUND] or name == "lovasz_loss":
        o["per_image"] = draw(st.booleans())
    if name in [*REGION, *COMPOUND] and (multi or name == "generalized_dice_loss"):
        o["include_background"] = draw(st.booleans())
    if (name in REGION or name in COMPOUND or name == "cross_entropy") and name != "generalized_dice_loss" and multi:
        if draw(st.booleans()):
            o["class_weights"] = [_unit(draw, 0.1, 3.0) for _ in range(c)]
    if name in [*REGION, *COMPOUND]:
        o["smooth"] = draw(st.sampled_from([0.0, 1e-5, 1.0]))
    if name in ("dice_loss", "dice_ce_loss"):
        o["squared"] = draw(st.booleans())
        # -log(D) is +inf when D = 0 (smooth = 0, a class absent from the target but predicted): log_loss needs smooth
        o["log_loss"] = o["smooth"] > 0 and draw(st.booleans())
    if name in ("tversky_loss", "focal_tversky_loss"):
        o["alpha"], o["beta"] = _unit(draw, 0.0, 2.0), _unit(draw, 0.0, 2.0)
    if name == "focal_tversky_loss":
        o["gamma"] = _unit(draw, 0.3, 3.0)
    if name in ("cross_entropy", "dice_ce_loss") and not perfect:
        o["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
    if name in ("focal_loss", "hybrid_focal_loss"):
        key = "alpha" if name == "focal_loss" else "focal_alpha"
        if multi and mode == "multiclass":
            o[key] = draw(st.one_of(st.none(), st.lists(st.floats(0.0, 1.0), min_size=c, max_size=c)))
        else:
            o[key] = draw(st.one_of(st.none(), st.just("auto"), st.floats(0.0, 1.0)))
        o["gamma" if name == "focal_loss" else "focal_gamma"] = _unit(draw, 0.0, 3.0)
    if name == "dice_ce_loss":
        o["ce_weight"], o["dice_weight"] = _unit(draw, 0.0, 2.0), _unit(draw, 0.0, 2.0)
    if name == "combo_loss":
        o["alpha"], o["beta"] = _unit(draw), _unit(draw)
    if name == "hybrid_focal_loss":
        o["weight"] = _unit(draw)
        o["tversky_alpha"], o["tversky_beta"] = _unit(draw, 0.0, 2.0), _unit(draw, 0.0, 2.0)
        o["tversky_gamma"] = _unit(draw, 0.3, 3.0)
    if name in UNIFIED:
        o["delta"] = _unit(draw)
        # Tversky exponent 1 - gamma: gamma = 1 would make (1 - mTI)^0 a constant, so gamma <= 0.9
        o["gamma"] = _unit(draw, 0.0, 0.9) if name in UNIFIED_TVERSKY else _unit(draw, 0.0, 3.0)
    if name == "unified_focal_loss":
        o["weight"] = _unit(draw)
        o["asymmetric"] = draw(st.booleans())
    if name in UNIFIED_TVERSKY:
        o["smooth"] = draw(st.sampled_from([1e-7, 1e-3, 1.0]))
    return o


@st.composite
def cases(
    draw: st.DrawFn,
    name: str,
    *,
    forms: list[str] | None = None,
    modes: list[str] | None = None,
    from_logits: bool | None = None,
    perfect: bool = False,
    min_size: int = 1,
    ignorable: bool = False,
) -> tuple[Case, np.random.Generator]:
    """One random case; ``ignorable``: a target form that can carry ignore_index (index targets in multiclass)."""
    mode = draw(st.sampled_from(modes or _modes(name)))
    allowed = [f for f in _forms(name, mode) if forms is None or f in forms]
    if ignorable and mode == "multiclass":
        allowed = ["index"]
    form = draw(st.sampled_from(allowed))
    dims = draw(st.sampled_from([2, 3]))
    hi = 5 if dims == 2 else 3
    spatial = tuple(draw(st.integers(min_size, hi)) for _ in range(dims))
    n = draw(st.integers(1, 3))
    c = 1 if mode == "binary" else draw(st.integers(2, 4))
    fl = draw(st.booleans()) if from_logits is None else from_logits
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, t = make_data(rng, mode, form, n, c, spatial, fl)
    return Case(name, mode, x, t, fl, draw_options(draw, name, mode, c, perfect=perfect)), rng


def _finite_scalar(v: torch.Tensor) -> float:
    assert torch.isfinite(v).all(), v
    return float(v)


# ------------------------------------------------------------------------------------------------ range

RANGE_01 = ["jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"]


@pytest.mark.parametrize("name", [*RANGE_01, "dice_loss"])
@SETTINGS
@given(data=st.data())
def test_region_loss_range(name: str, data: st.DataObject) -> None:
    case, _ = data.draw(cases(name))
    reduction = data.draw(st.sampled_from(["mean", "none"]))
    if reduction == "none":  # "none" returns w_c * L_c: the range holds without weights
        case.opts.pop("class_weights", None)
    out = case.call(reduction=reduction)
    assert torch.isfinite(out).all()
    assert (out >= -1e-12).all(), out
    if not case.opts.get("log_loss", False):  # -log(D) is unbounded above
        assert (out <= 1 + 1e-12).all(), out


@pytest.mark.parametrize("name", [*PIXEL, "dice_ce_loss", "hybrid_focal_loss", *UNIFIED, "lovasz_loss"])
@SETTINGS
@given(data=st.data())
def test_loss_nonnegative(name: str, data: st.DataObject) -> None:
    case, _ = data.draw(cases(name))
    out = case.call()
    assert _finite_scalar(out) >= -1e-12
    if name in ("asymmetric_focal_tversky_loss", "symmetric_focal_tversky_loss"):
        assert float(out) <= 1 + 1e-12  # a mean of (1 - mTI)^k, mTI in [0, 1]


@pytest.mark.parametrize("name", ["combo_loss"])
@SETTINGS
@given(data=st.data())
def test_combo_loss_range(name: str, data: st.DataObject) -> None:
    # alpha * L_wce - (1 - alpha) * D with L_wce >= 0 and D in [0, 1]: the loss is >= -(1 - alpha)
    case, _ = data.draw(cases(name))
    alpha = case.opts["alpha"]
    out = _finite_scalar(case.call())
    assert out >= -(1 - alpha) - 1e-12
    # and <= alpha * L_wce (D >= 0); L_wce is the combo loss at alpha = 1
    wce = _finite_scalar(case.call(alpha=1.0))
    assert wce >= -1e-12
    assert out <= alpha * wce + 1e-12


# ------------------------------------------------------------------------------------------------ perfect prediction


def _minimum(case: Case) -> float:
    return -(1 - case.opts["alpha"]) if case.name == "combo_loss" else 0.0


def _perfect_probs(case: Case) -> torch.Tensor:
    """The target as probabilities exactly 0/1, shaped like the input."""
    if case.mode == "multiclass" and case.t.dtype == torch.int64:
        c = case.x.shape[1]
        return torch.nn.functional.one_hot(case.t, c).movedim(-1, 1).to(torch.float64)
    return case.t.clone()


PERFECT_FORMS = ["hard", "index", "onehot"]


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_perfect_probabilities_give_minimum(name: str, data: st.DataObject) -> None:
    case, _ = data.draw(cases(name, forms=PERFECT_FORMS, from_logits=False, perfect=True))
    p = _perfect_probs(case).requires_grad_(True)
    out = case.call(x=p)
    assert abs(out.item() - _minimum(case)) <= 1e-12, (out.item(), _minimum(case), case.opts)
    out.backward()
    assert torch.isfinite(p.grad).all()  # 0 * log 0 counts as 0, no NaN gradient


def _perfect_tolerance(case: Case, err: float) -> float:
    """How far from the minimum logits +-30 may land: ``err`` is the largest probability error.

    A region score of a class absent from the target is ``smooth / (smooth + errors)``, so its loss is at most
    ``sum of errors / smooth``, raised to the loss's exponent ``k`` (focal Tversky: gamma; the modified focal
    Tversky terms: 1 - gamma). With ``smooth = 1e-7`` (the unified focal reference code's epsilon) and ``k < 1`` a
    tiny probability error is magnified: the bound below is that, not a loose tolerance. Pixel losses are within
    a small multiple of ``err`` of their minimum.
    """
    smooth = case.opts.get("smooth")
    if smooth is None or case.name == "lovasz_loss":
        return 1e-8
    k = 1.0
    if case.name == "focal_tversky_loss":
        k = min(1.0, case.opts["gamma"])
    elif case.name == "hybrid_focal_loss":
        k = min(1.0, case.opts["tversky_gamma"])
    elif case.name in UNIFIED_TVERSKY:
        k = 1 - case.opts["gamma"]  # the smallest exponent (background: 1 or 1 - gamma)
    base = min(1.0, 4 * case.t.numel() * err / smooth)
    return base**k + 1e-8


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_perfect_logits_near_minimum(name: str, data: st.DataObject) -> None:
    case, _ = data.draw(cases(name, forms=PERFECT_FORMS, from_logits=True, perfect=True))
    if case.opts.get("smooth") == 0.0:
        # smooth = 0: a class absent from the target and predicted with probability 1e-13 has score 0 / 1e-13 = 0
        # exactly (the formula's discontinuity, not an approximation error); the exact case is tested above
        case.opts["smooth"] = 1e-5
    logits = (30.0 * (2 * _perfect_probs(case) - 1)).requires_grad_(True)
    out = case.call(x=logits)
    err = float(torch.sigmoid(torch.tensor(-30.0, dtype=torch.float64))) * max(1, case.x.shape[1])
    tol = _perfect_tolerance(case, err)
    assert abs(out.item() - _minimum(case)) <= tol, (out.item(), _minimum(case), tol, case.opts)
    out.backward()
    assert torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------------------------------------ ignore_index


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_ignored_pixels_equal_pixels_cut_out(name: str, data: st.DataObject) -> None:
    """The same number k of pixels ignored in every image == those pixels removed, spatial dims flattened to M - k.

    Works for per-image statistics too (unified focal, ``per_image=True``) since each image keeps its own pixels.
    The gradient is 0 at the ignored pixels and equals the cut-out call's gradient at the kept ones.
    """
    case, rng = data.draw(cases(name, ignorable=True, min_size=2))
    n, c = case.x.shape[:2]
    m = int(np.prod(case.x.shape[2:]))
    k = data.draw(st.integers(0, m - 1))
    order = np.stack([rng.permutation(m) for _ in range(n)])  # per image: first k positions ignored
    drop = torch.zeros(n, m, dtype=torch.bool)
    drop[torch.arange(n)[:, None], torch.tensor(order[:, :k], dtype=torch.int64)] = True
    keep_idx = torch.tensor(np.sort(order[:, k:], axis=1), dtype=torch.int64)  # (N, M - k), in raster order

    x_flat = case.x.reshape(n, c, m)
    if case.mode == "multiclass":
        t_flat = case.t.reshape(n, m).clone()
        t_cut = torch.gather(t_flat, 1, keep_idx)
        t_flat[drop] = IGNORE
    else:
        t_flat = case.t.reshape(n, c, m).clone()
        t_cut = torch.gather(t_flat, 2, keep_idx[:, None].expand(n, c, m - k))
        t_flat = torch.where(drop[:, None], float(IGNORE), t_flat)
    t_marked = t_flat.reshape(case.t.shape)

    xa = case.x.clone().requires_grad_(True)
    x_cut = torch.gather(x_flat, 2, keep_idx[:, None].expand(n, c, m - k)).clone().requires_grad_(True)
    masked = case.call(x=xa, t=t_marked, ignore_index=IGNORE)
    cut = case.call(x=x_cut, t=t_cut)
    np.testing.assert_allclose(masked.item(), cut.item(), rtol=1e-9, atol=1e-12)
    masked.backward()
    cut.backward()
    g = xa.grad.reshape(n, c, m)
    assert (g.permute(0, 2, 1)[drop] == 0).all()
    kept = torch.gather(g, 2, keep_idx[:, None].expand(n, c, m - k))
    np.testing.assert_allclose(kept.numpy(), x_cut.grad.numpy(), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_ignored_input_has_no_effect_and_no_gradient(name: str, data: st.DataObject) -> None:
    """Elements marked ignored (single elements for binary/multilabel, whole pixels for index targets): any input
    there gives the same value, and the gradient there is exactly 0."""
    case, rng = data.draw(cases(name, ignorable=True))
    if case.mode == "multiclass":
        mask = torch.tensor(rng.random(size=case.t.shape) < 0.3)
        t = torch.where(mask, IGNORE, case.t)
        xmask = mask[:, None].expand_as(case.x)
    else:
        mask = torch.tensor(rng.random(size=case.t.shape) < 0.3)
        t = torch.where(mask, float(IGNORE), case.t)
        xmask = mask
    n, c = case.x.shape[:2]
    form = "index" if case.mode == "multiclass" else "hard"
    other, _ = make_data(rng, case.mode, form, n, c, tuple(case.x.shape[2:]), case.from_logits)
    x2 = torch.where(xmask, other, case.x)  # whole pixels in multiclass: probabilities stay distributions
    xa = case.x.clone().requires_grad_(True)
    a = case.call(x=xa, t=t, ignore_index=IGNORE)
    b = case.call(x=x2, t=t, ignore_index=IGNORE)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-10, atol=1e-12)
    a.backward()
    assert torch.isfinite(xa.grad).all()
    assert (xa.grad[xmask] == 0).all()


# ------------------------------------------------------------------------------------------------ permutations


#: Losses with a focal Tversky term (1 - TI)^(1 - gamma), gamma < 1, whose gradient is ill-conditioned near TI = 1.
_ILL_CONDITIONED_NEAR_PERFECT = frozenset(
    {"hybrid_focal_loss", "unified_focal_loss", "asymmetric_focal_tversky_loss", "symmetric_focal_tversky_loss"}
)


def _none_ok(name: str) -> bool:
    return name in ("dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss")


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_pixel_permutation_invariance(name: str, data: st.DataObject) -> None:
    case, rng = data.draw(cases(name))
    n, c = case.x.shape[:2]
    spatial = tuple(case.x.shape[2:])
    m = int(np.prod(spatial))
    perm = torch.tensor(rng.permutation(m), dtype=torch.int64)
    xp = case.x.reshape(n, c, m)[:, :, perm].reshape(case.x.shape)
    if case.t.dtype == torch.int64:
        tp = case.t.reshape(n, m)[:, perm].reshape(case.t.shape)
    else:
        tp = case.t.reshape(n, case.t.shape[1], m)[:, :, perm].reshape(case.t.shape)
    xa, xb = case.x.clone().requires_grad_(True), xp.clone().requires_grad_(True)
    a, b = case.call(x=xa), case.call(x=xb, t=tp)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-10, atol=1e-12)
    a.backward()
    b.backward()
    ga = xa.grad.reshape(n, c, m)[:, :, perm]
    atol = 1e-12
    if name in _ILL_CONDITIONED_NEAR_PERFECT:
        # (1 - TI)^(1 - gamma) with gamma in (0, 1): near a perfect prediction the gradient carries the factor
        # (1 - TI)^-gamma, so the last-bit rounding of the sums (their order changes with the permutation, and with
        # the thread count) is amplified; seen: 1e-10 apart on gradients of 1e-6. Still a bound far below any
        # real permutation bug (which moves gradients by their own size).
        atol = 1e-3 * float(xb.grad.abs().max())
    np.testing.assert_allclose(ga.numpy(), xb.grad.reshape(n, c, m).numpy(), rtol=1e-7, atol=atol)


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=st.data())
def test_loss_batch_permutation_invariance(name: str, data: st.DataObject) -> None:
    case, rng = data.draw(cases(name))
    perm = torch.tensor(rng.permutation(case.x.shape[0]), dtype=torch.int64)
    xa, xb = case.x.clone().requires_grad_(True), case.x[perm].clone().requires_grad_(True)
    a, b = case.call(x=xa), case.call(x=xb, t=case.t[perm])
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-10, atol=1e-12)
    a.backward()
    b.backward()
    np.testing.assert_allclose(xa.grad[perm].numpy(), xb.grad.numpy(), rtol=1e-7, atol=1e-12)
    if _none_ok(name) and case.opts.get("per_image"):  # (N, C) per-image values follow the images
        ra, rb = case.call(reduction="none"), case.call(x=case.x[perm], t=case.t[perm], reduction="none")
        np.testing.assert_allclose(ra[perm].numpy(), rb.numpy(), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------ symmetry


def _swap_case(name: str, data: st.DataObject) -> Case:
    """Soft targets and probabilities of the same kind, so that swapping them is a valid call."""
    case, _ = data.draw(cases(name, forms=["soft"], from_logits=False))
    return case


@pytest.mark.parametrize("name", ["dice_loss", "jaccard_loss"])
@SETTINGS
@given(data=st.data())
def test_overlap_loss_swap_symmetry(name: str, data: st.DataObject) -> None:
    # (2TP + s) / (2TP + FP + FN + s) and (TP + s) / (TP + FP + FN + s): TP symmetric, FP <-> FN under the swap;
    # squared: sum p^2 + sum g^2 is symmetric too
    case = _swap_case(name, data)
    a = case.call(reduction="none")
    b = case.call(x=case.t, t=case.x, reduction="none")
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def _soft_confusion(case: Case) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``TP = sum p g``, ``FP = sum p (1 - g)``, ``FN = sum (1 - p) g`` over the batch, in NumPy float64
    (probabilities and dense targets of the same shape, as :func:`_swap_case` draws them)."""
    p, g = case.x.numpy(), case.t.numpy()
    axes = (0, *range(2, p.ndim))
    return (p * g).sum(axes), (p * (1 - g)).sum(axes), ((1 - p) * g).sum(axes)


def _per_class(case: Case, **kw: Any) -> np.ndarray:
    """The loss per class ``(C,)``: batch statistics, every class kept, no class weights."""
    for key in ("per_image", "include_background", "class_weights"):
        case.opts.pop(key, None)
    return case.call(reduction="none", **kw).numpy()


@pytest.mark.parametrize("name", ["tversky_loss", "focal_tversky_loss"])
@SETTINGS
@given(data=st.data())
def test_tversky_loss_swap_symmetry(name: str, data: st.DataObject) -> None:
    # swapping prediction and target exchanges FP and FN: T(alpha, beta)(p, g) == T(beta, alpha)(g, p),
    # and alpha == beta is symmetric
    case = _swap_case(name, data)
    alpha, beta = case.opts.pop("alpha"), case.opts.pop("beta")
    a = case.call(reduction="none", alpha=alpha, beta=beta)
    b = case.call(x=case.t, t=case.x, reduction="none", alpha=beta, beta=alpha)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    s = case.call(reduction="none", alpha=alpha, beta=alpha)
    s_swapped = case.call(x=case.t, t=case.x, reduction="none", alpha=alpha, beta=alpha)
    np.testing.assert_allclose(s.numpy(), s_swapped.numpy(), rtol=1e-10, atol=1e-12)
    # the identities above also hold if alpha and beta trade places inside the loss: pin which one weighs the
    # false positives (alpha) and which the false negatives (beta), with unequal weights
    beta = alpha + 0.5
    smooth, gamma = case.opts.pop("smooth"), case.opts.get("gamma", 1.0)
    tp, fp, fn = _soft_confusion(case)
    expected = (1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)) ** gamma
    got = _per_class(case, alpha=alpha, beta=beta, smooth=smooth)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["tversky_loss"])
@SETTINGS
@given(data=st.data())
def test_tversky_loss_equal_weights_half_is_dice(name: str, data: st.DataObject) -> None:
    # alpha = beta = 1/2: TP + (FP + FN)/2 = (2TP + FP + FN)/2, so T with smooth s/2 equals D with smooth s
    case, _ = data.draw(cases(name))
    case.opts.pop("alpha"), case.opts.pop("beta")
    smooth = case.opts.pop("smooth")
    t = case.call(alpha=0.5, beta=0.5, smooth=smooth / 2, reduction="none")
    case.name = "dice_loss"
    d = case.call(smooth=smooth, reduction="none")
    np.testing.assert_allclose(t.numpy(), d.numpy(), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(data=st.data(), b2=st.sampled_from([0.25, 4.0]))
def test_tversky_loss_unequal_weights_are_fbeta(data: st.DataObject, b2: float) -> None:
    # alpha = 1/(1 + b2), beta = b2/(1 + b2) (unequal: a swap of alpha and beta changes the value):
    # T = (1 + b2) TP / ((1 + b2) TP + FP + b2 FN), the F-beta score with beta^2 = b2, which weighs recall
    # (false negatives) b2 times as much as precision
    case = _swap_case("tversky_loss", data)
    case.opts.pop("alpha"), case.opts.pop("beta"), case.opts.pop("smooth")
    tp, fp, fn = _soft_confusion(case)
    fbeta = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)
    got = _per_class(case, alpha=1 / (1 + b2), beta=b2 / (1 + b2), smooth=0.0)
    np.testing.assert_allclose(got, 1 - fbeta, rtol=1e-10, atol=1e-12)
