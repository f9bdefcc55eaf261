"""Fuzzing the public loss API across argument combinations (where single-argument tests are blind).

Every registry loss (:func:`seglosses.available_losses`), every mode it supports, index / one-hot / soft / float-hard
targets, 1 to 4 spatial dims (SPEC: any number >= 1), and random combinations of ``from_logits``, ``ignore_index``
(None, 255, -100, an in-range class), ``include_background``, ``class_weights`` (zeros included, both lengths with
``include_background=False``), ``per_image``, ``reduction``, ``smooth``, ``label_smoothing`` and the loss's own
hyperparameters at the edges of their declared ranges (read from the ``@hyperparameters`` declarations, so a new
loss or hyperparameter is fuzzed without editing this file); plus degenerate data (every pixel ignored, one image
ignored, empty / full masks, N = 1, a spatial dim of size 1, C = 1 multilabel, C = 2 multiclass).

For each draw:

1. either a ``ValueError``/``TypeError`` whose message names an argument in backquotes, or a finite result of the
   documented shape (SPEC 3, 4, 8 and each docstring's Shapes) and dtype (float64 for float64 input, float32 for
   float32 / bfloat16 / float16 input); never another exception type and never NaN/inf;
2. every computation path gives the same value and input gradient in float64 (rtol 1e-5): the default (C++ kernels
   through the autograd functions), the pure PyTorch path (``set_native(False)``), the generic readable formulas
   (``_dispatch.use(fused=False)``), the ``torch.library`` operators with and without the kernels, and the traced
   whole-tensor twin; the Triton interpreter on a few draws in a subprocess (``TRITON_INTERPRET=1``, see
   tests/test_triton.py for why a subprocess);
3. Module == function and ``get_loss(name, **kw)`` == Module;
4. the input gradient is finite;
5. float64 ``gradcheck`` on a tiny draw, for a sample of combinations.

Hypothesis runs derandomized (no example database), so the draws are the same on every run; a seeded exhaustive
sweep over (loss, mode, target form, degenerate pattern) adds the small product space. Expected shapes come from
SPEC, never from running the code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seglosses
from seglosses import _dispatch, _native
from seglosses._checks import ClassBalance, Flag, Interval, declared
from seglosses.registry import loss_class

NAMES = seglosses.available_losses()

#: SPEC 3 and 8: per-class values ``(K,)`` / ``(N, K)`` for "none".
PER_CLASS = {
    "dice",
    "jaccard",
    "tversky",
    "focal_tversky",
    "log_cosh_dice",
    "fbeta",
    "sensitivity_specificity",
    "cldice",
    "dice_cldice",
    "boundary",
    "hausdorff_dt",
}
#: SPEC 4: per-pixel maps for "none" (multiclass ``(N, *S)``, binary/multilabel the input's shape).
PER_PIXEL = {"cross_entropy", "focal", "asymmetric_focal", "symmetric_focal"}
#: Losses whose statistics are over region sums with ``include_background`` default False (SPEC 8).
BACKGROUND_OFF = {"boundary", "hausdorff_dt"}
#: Losses that take hard targets only (a soft target without a distance map raises).
HARD_ONLY = {"lovasz", "boundary", "hausdorff_dt", "generalized_wasserstein_dice"}
IGNORES = (None, 255, -100, 0)
NAMED = re.compile(r"`\w+`")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ------------------------------------------------------------------------------------------------ draws


@dataclass
class Draw:
    name: str
    mode: str
    form: str
    x: torch.Tensor
    t: torch.Tensor
    kw: dict[str, Any]
    pattern: str
    saturated: str = ""  # "wrong" / "perfect": probabilities exactly 0 or 1 (wrong ones may cost -log 0 = inf)
    extra: dict[str, Any] = field(default_factory=dict)  # call-time arguments (dist_map)

    def __repr__(self) -> str:
        return (
            f"Draw({self.name}, {self.mode}, form={self.form}, pattern={self.pattern}, x={tuple(self.x.shape)} "
            f"{self.x.dtype}, t={tuple(self.t.shape)} {self.t.dtype}, kw={self.kw}, saturated={self.saturated!r})"
        )


def _edge_values(rule: Any, rng: np.random.Generator) -> list[Any]:
    """Values at and inside the edges of a declared hyperparameter rule (never outside it)."""
    if isinstance(rule, Flag):
        return [False, True]
    if isinstance(rule, Interval):
        lo, hi = rule.low, rule.high
        whole = type(rule).__name__ == "_WholeInterval"
        out: list[Any] = []
        if lo is not None:
            out.append(lo + (1e-3 if rule.low_open else 0.0))
        if hi is not None:
            out.append(hi - (1e-3 if rule.high_open else 0.0))
        if lo is not None and hi is not None:
            out.append(float(rng.uniform(lo, hi)))
        elif lo is not None:
            out += [lo + 1.0, lo + float(rng.uniform(0.01, 5.0))]
        if whole:
            return sorted({int(min(v, 4)) for v in out} | {1})
        return out
    choices = getattr(rule, "choices", None)
    if choices is not None:
        return list(choices)
    raise AssertionError(f"unknown rule {rule!r}")


def _spatial(rng: np.random.Generator, name: str, pattern: str) -> tuple[int, ...]:
    dims = int(rng.choice([1, 2, 2, 3, 4])) if name not in ("cldice", "dice_cldice") else int(rng.integers(1, 4))
    hi = {1: 9, 2: 5, 3: 3, 4: 2}[dims]
    spatial = [int(rng.integers(1, hi + 1)) for _ in range(dims)]
    if pattern == "size1":
        spatial[int(rng.integers(dims))] = 1
    return tuple(spatial)


def make_draw(
    rng: np.random.Generator,
    name: str,
    *,
    mode: str | None = None,
    form: str | None = None,
    pattern: str | None = None,
    dtype: torch.dtype | None = None,
) -> Draw:
    """One random call of loss ``name``: data, target form and keyword arguments (all from ``rng``)."""
    cls = loss_class(name)
    fn = cls._function
    params = set(fn.__code__.co_varnames[: fn.__code__.co_argcount + fn.__code__.co_kwonlyargcount])
    mode = mode or str(rng.choice(cls._modes))
    forms = {"binary": ["hard", "soft", "hard"], "multilabel": ["hard", "soft", "hard"]}.get(
        mode, ["index", "index", "onehot", "soft"]
    )
    form = form or str(rng.choice(forms))
    patterns = ["random"] * 6 + ["empty", "full", "all_ignored", "image_ignored", "size1", "n1"]
    pattern = pattern or str(rng.choice(patterns))
    if dtype is None:  # mostly float64 (the paths are compared there), some float32 / bfloat16 / float16
        dtype = [torch.float64] * 6 + [torch.float32, torch.float32, torch.bfloat16, torch.float16]
        dtype = dtype[int(rng.integers(len(dtype)))]
    n = 1 if pattern == "n1" else int(rng.integers(1, 4))
    c = 1 if mode == "binary" else int(rng.choice([1, 2, 3] if mode == "multilabel" else [2, 2, 3, 4]))
    spatial = _spatial(rng, name, pattern)
    from_logits = bool(rng.random() < 0.7)
    kw: dict[str, Any] = {"mode": mode, "from_logits": from_logits}

    # input: logits of several scales (saturating ones included), or probabilities (exact 0/1 sometimes)
    logits = rng.normal(size=(n, c, *spatial)) * float(rng.choice([0.5, 3.0, 40.0] if from_logits else [0.5, 3.0]))
    saturated = ""
    if from_logits:
        x = logits
    else:
        x = _softmax(logits) if mode == "multiclass" else _sigmoid(logits)
        if rng.random() < 0.2:  # hard probabilities 0/1, random ones (SPEC 7: valid input)
            x = np.round(x) if mode != "multiclass" else np.moveaxis(np.eye(c)[x.argmax(1)], -1, 1)
            saturated = "wrong"

    # target
    if mode == "multiclass":
        idx = rng.integers(0, c, size=(n, *spatial))
        if pattern == "empty":
            idx[:] = 0  # only the background
        elif pattern == "full":
            idx[:] = c - 1
        if form == "index":
            t = torch.tensor(idx, dtype=torch.int64)
        elif form == "onehot":
            t = torch.tensor(np.moveaxis(np.eye(c)[idx], -1, 1))
        else:
            t = torch.tensor(_softmax(rng.normal(size=(n, c, *spatial)) * 2))
    else:
        if form == "hard":
            g = (rng.random(size=(n, c, *spatial)) < rng.uniform(0.1, 0.9)).astype(np.float64)
        else:
            g = rng.random(size=(n, c, *spatial))
        if pattern == "empty":
            g[:] = 0.0
        elif pattern == "full":
            g[:] = 1.0
        t = torch.tensor(g)

    if saturated and form != "soft" and rng.random() < 0.5:  # the perfect prediction (SPEC 7: no NaN, no inf)
        x = t.numpy().copy() if mode != "multiclass" or form != "index" else np.moveaxis(np.eye(c)[idx], -1, 1)
        saturated = "perfect"

    # ignore_index: the markers, or a legal value (an in-range class; 0 marks the empty pixels of a mask)
    ignore = IGNORES[int(rng.integers(len(IGNORES)))] if "ignore_index" in params else None
    if pattern in ("all_ignored", "image_ignored") and "ignore_index" in params:
        ignore = int(rng.choice([255, -100]))
    if ignore is not None:
        kw["ignore_index"] = ignore
        if ignore != 0:
            t = t.clone()
            if pattern == "all_ignored":
                t[:] = ignore
            elif pattern == "image_ignored":
                t[int(rng.integers(n))] = ignore
            else:
                drop = torch.tensor(rng.random(size=tuple(t.shape)) < rng.choice([0.0, 0.3, 0.7]))
                if mode == "multiclass" and form != "index":  # whole pixels of a dense target
                    drop = drop[:, :1].expand_as(t)
                t[drop] = ignore

    if form == "index" and rng.random() < 0.3:  # any integer dtype holding the indices and the marker
        small = ignore is None or 0 <= ignore <= 255
        t = t.to(torch.uint8 if small and rng.random() < 0.5 else torch.int32)
    elif form == "hard" and rng.random() < 0.2:  # a hard mask as integers (or bool without a marker)
        t = t.to(torch.bool if ignore in (None, 0) and rng.random() < 0.5 else torch.int64)
    if mode == "binary" and rng.random() < 0.4:  # (N, *S) instead of (N, 1, *S)
        x, t = x[:, 0], t[:, 0]
    xt = torch.tensor(x, dtype=torch.float64) if isinstance(x, np.ndarray) else x

    # the loss's own hyperparameters at their edges, then the shared options
    for key, rule in declared(fn).items():
        if rng.random() < 0.3:
            continue  # the default
        if isinstance(rule, ClassBalance):
            if mode == "multiclass":
                opts: list[Any] = [None, "auto", [float(v) for v in rng.choice([0.0, 0.5, 1.0], size=c)]]
            else:
                opts = [None, "auto", 0.0, 1.0, float(rng.uniform())]
            kw[key] = opts[int(rng.integers(len(opts)))]
        else:
            vals = _edge_values(rule, rng)
            kw[key] = vals[int(rng.integers(len(vals)))]
    if "include_background" in params and rng.random() < 0.6:
        kw["include_background"] = bool(rng.random() < 0.5)
    if "per_image" in params and rng.random() < 0.6:
        kw["per_image"] = bool(rng.random() < 0.5)
    if "reduction" in params and rng.random() < 0.7:
        kw["reduction"] = str(rng.choice(cls._reductions))
    if "class_weights" in params and mode != "binary" and rng.random() < 0.4:
        keep_bg = kw.get("include_background", name not in BACKGROUND_OFF)
        length = c if keep_bg or rng.random() < 0.5 else c - 1
        if length >= 1:
            w = rng.choice([0.0, 0.5, 1.0, 2.0], size=length)
            if w.sum() == 0 and rng.random() < 0.8:
                w[int(rng.integers(length))] = 1.0  # mostly legal: a positive sum
            kw["class_weights"] = [float(v) for v in w]
    if "spacing" in params and rng.random() < 0.3:
        kw["spacing"] = [float(v) for v in rng.choice([0.5, 1.0, 2.5], size=len(spatial))]
    if "dist_matrix" in params:
        m = rng.uniform(0.1, 2.0, size=(c, c))
        m = np.triu(m, 1) + np.triu(m, 1).T
        kw["dist_matrix"] = m.tolist()
    return Draw(name, mode, form, xt.to(dtype), t, kw, pattern, saturated)


# ------------------------------------------------------------------------------------------------ checks


def expected_shape(d: Draw) -> tuple[int, ...]:
    """The documented output shape of ``d`` (SPEC 3, 4, 7, 8 and the Shapes sections)."""
    kw = d.kw
    reduction = kw.get("reduction", "mean")
    if reduction != "none":
        return ()
    n = d.x.shape[0]
    per_image = kw.get("per_image", False)
    if d.name in PER_PIXEL:
        return tuple(d.t.shape) if d.mode != "multiclass" or d.form == "index" else (n, *d.x.shape[2:])
    if d.name in PER_CLASS:
        c = 1 if d.mode == "binary" else d.x.shape[1]
        keep_bg = kw.get("include_background", d.name not in BACKGROUND_OFF)
        k = c if d.mode == "binary" or keep_bg else c - 1
        return (n, k) if per_image else (k,)
    if d.name in ("asymmetric_focal_tversky", "symmetric_focal_tversky"):
        return (n, 2 if d.mode == "binary" else d.x.shape[1])
    if d.name in ("generalized_dice", "topk"):
        return (n,) if per_image else ()
    if d.name == "generalized_wasserstein_dice":
        return (n,)
    raise AssertionError(f"{d.name} documents no reduction='none'")


def call(d: Draw, x: torch.Tensor, how: str = "function") -> torch.Tensor:
    cls = loss_class(d.name)
    if how == "function":
        return cls._function(x, d.t, **d.kw, **d.extra)
    if how == "module":
        return cls(**d.kw)(x, d.t, **d.extra)
    return seglosses.get_loss(d.name, **d.kw)(x, d.t, **d.extra)


def value_and_grad(d: Draw, how: str = "function") -> tuple[torch.Tensor, torch.Tensor]:
    x = d.x.detach().clone().requires_grad_(True)
    out = call(d, x, how)
    # a fixed weighting of the outputs, so that a "none" output's every entry is in the gradient
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape) if out.ndim else 1.0
    (out * w).sum().backward()
    assert x.grad is not None
    return out.detach(), x.grad


def outcome(d: Draw) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Invariant 1 and 4: a named ValueError/TypeError (None), or a finite value of the documented shape and dtype."""
    error: Exception | None = None
    try:
        out, grad = value_and_grad(d)
    except (ValueError, TypeError) as err:  # any other type propagates and fails the test
        error = err
    if error is not None:
        assert NAMED.search(str(error)), f"{d!r}: {type(error).__name__} names no argument: {error}"
        return None
    want = torch.float64 if d.x.dtype == torch.float64 else torch.float32
    assert out.dtype == want, f"{d!r}: dtype {out.dtype}, expected {want}"
    assert tuple(out.shape) == expected_shape(d), f"{d!r}: shape {tuple(out.shape)}, expected {expected_shape(d)}"
    if d.saturated == "wrong":  # -log 0 = inf where a hard probability is wrong (as the formula says)
        return out, grad
    if d.kw.get("log_loss") and d.kw.get("smooth", 1.0) == 0:  # documented: -log 0 = inf for an absent class
        return out, grad
    if d.saturated == "perfect" and d.kw.get("label_smoothing", 0.0) > 0:  # smoothing moves mass onto p = 0
        assert not bool(torch.isnan(out).any()), f"{d!r}: NaN {out}"
    else:
        assert bool(torch.isfinite(out).all()), f"{d!r}: not finite {out}"
        assert bool(torch.isfinite(grad).all()), f"{d!r}: gradient not finite"
    assert grad.dtype == d.x.dtype
    return out, grad


PATHS = {
    "pytorch": {"native": False},
    "generic": {"fused": False},
    "ops": {"ops": True},
    "ops_pytorch": {"ops": True, "native": False},
    "traced": {"ops": False, "traced": True},
    "chunked": {"native": False, "chunk_elements": 7},
}


def _close(a: torch.Tensor, b: torch.Tensor, what: str, d: Draw, rtol: float = 1e-5) -> None:
    finite = b[torch.isfinite(b)]
    scale = max(float(finite.abs().max()) if finite.numel() else 0.0, 1.0)
    ok = torch.allclose(a, b, rtol=rtol, atol=1e-9 * scale, equal_nan=True)
    assert ok, f"{d!r}: {what}: max diff {(a - b).abs().max():.3g}"


def check_paths(d: Draw, ref: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Invariant 2: every CPU path equal to the default's value and gradient (float64)."""
    for path, options in PATHS.items():
        with _dispatch.use(**options):
            out, grad = value_and_grad(d)
        _close(out, ref[0], f"{path} value", d)
        _close(grad, ref[1], f"{path} gradient", d)
    native_before = bool(_native._state["enabled"])
    _native.set_native(False)  # the user-facing switch (SEGLOSSES_NATIVE=0 sets the same state)
    try:
        out, grad = value_and_grad(d)
    finally:
        _native.set_native(native_before)
    _close(out, ref[0], "set_native(False) value", d)
    _close(grad, ref[1], "set_native(False) gradient", d)


def check_module(d: Draw, ref: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Invariant 3: Module == function and get_loss == Module."""
    for how in ("module", "registry"):
        out, grad = value_and_grad(d, how)
        assert torch.allclose(out, ref[0], rtol=1e-12, atol=0, equal_nan=True), f"{d!r}: {how} value"
        assert torch.allclose(grad, ref[1], rtol=1e-12, atol=1e-300, equal_nan=True), f"{d!r}: {how} gradient"


def check_layout(d: Draw, ref: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Non-contiguous input and target (strided views of the same values) give the same value and gradient."""
    xs = torch.empty(d.x.shape[::-1], dtype=d.x.dtype).permute(*range(d.x.ndim - 1, -1, -1))
    xs.copy_(d.x)
    ts = torch.empty(d.t.shape[::-1], dtype=d.t.dtype).permute(*range(d.t.ndim - 1, -1, -1))
    ts.copy_(d.t)
    strided = Draw(d.name, d.mode, d.form, xs, ts, d.kw, d.pattern, d.saturated)
    out, grad = value_and_grad(strided)
    _close(out, ref[0], "non-contiguous value", d)
    _close(grad, ref[1], "non-contiguous gradient", d)


def check_images(d: Draw, ref: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Per-image outputs ("none" with ``per_image``, or always per image) equal one call per image."""
    shape = expected_shape(d)
    n = d.x.shape[0]
    if n == 1 or not (d.kw.get("per_image") or d.name == "generalized_wasserstein_dice") or not shape:
        return
    if d.name in ("asymmetric_focal_tversky", "symmetric_focal_tversky"):
        return  # their per-image rows are already single-image formulas; covered through the other losses
    for i in range(n):
        one = Draw(d.name, d.mode, d.form, d.x[i : i + 1], d.t[i : i + 1], d.kw, d.pattern, d.saturated)
        out = call(one, one.x)
        _close(out.reshape(-1), ref[0][i].reshape(-1), f"image {i} alone", d)


def check_draw(d: Draw, *, paths: bool = True) -> bool:
    """Every invariant of one draw; True when the call was valid (not a named error)."""
    ref = outcome(d)
    if ref is None:
        with pytest.raises((ValueError, TypeError)):  # the Module raises too (at construction or call)
            value_and_grad(d, "module")
        return False
    check_module(d, ref)
    if paths and d.x.dtype == torch.float64:
        check_paths(d, ref)
        check_layout(d, ref)
        check_images(d, ref)
    return True


# ------------------------------------------------------------------------------------------------ tests

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32 - 1))
def test_fuzz_every_loss_random_combinations(name: str, seed: int) -> None:
    check_draw(make_draw(np.random.default_rng(seed), name))


def _forms(mode: str) -> list[str]:
    return ["index", "onehot", "soft"] if mode == "multiclass" else ["hard", "soft"]


EXHAUSTIVE = [
    (name, mode, form, pattern)
    for name in NAMES
    for mode in loss_class(name)._modes
    for form in _forms(mode)
    for pattern in ("random", "empty", "full", "all_ignored", "image_ignored", "size1")
]


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_every_mode_form_and_degenerate_pattern(name: str) -> None:
    """Seeded and exhaustive over (mode, target form, degenerate pattern) of one loss; the rest drawn at random."""
    cases = [c for c in EXHAUSTIVE if c[0] == name]
    for i, (_, mode, form, pattern) in enumerate(cases):
        rng = np.random.default_rng([NAMES.index(name), i])
        check_draw(make_draw(rng, name, mode=mode, form=form, pattern=pattern, dtype=torch.float64), paths=i % 2 == 0)


#: Losses whose value has kinks where gradcheck's finite differences may cross one (sorting, thresholds, min/max
#: pools, top-k selection): gradcheck runs on them too, but on a draw with well-separated values.
GRADCHECK_SEEDS = 3


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_gradcheck_float64_tiny(name: str) -> None:
    """Invariant 5: float64 gradcheck on tiny random combinations (logits of moderate size, no hard probabilities)."""
    done = 0
    for seed in range(40):
        if done == GRADCHECK_SEEDS:
            break
        rng = np.random.default_rng([99, NAMES.index(name), seed])
        d = make_draw(rng, name, pattern=str(rng.choice(["random", "image_ignored", "n1"])), dtype=torch.float64)
        if d.saturated or d.x.numel() > 40 or d.x.abs().max() > 10:
            continue
        try:
            value_and_grad(d)
        except (ValueError, TypeError):
            continue
        if name == "lovasz" or name == "topk" or name == "hausdorff_dt":  # kinks: ties of sorted errors, p = 0.5
            x = d.x.detach()
            if x.numel() > 1 and float(torch.diff(x.flatten().sort().values).min()) < 1e-3:
                continue
            if name == "hausdorff_dt" and float((torch.sigmoid(x) - 0.5).abs().min()) < 1e-3:
                continue
        x = d.x.detach().clone().requires_grad_(True)

        def f(x: torch.Tensor, d: Draw = d) -> torch.Tensor:
            return call(d, x)

        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6, rtol=1e-4), d
        done += 1
    assert done > 0


INTERPRETED = 12  # Triton-interpreted draws (slow): a few float64 draws of the losses the GPU computes whole


def _interpreted_draws() -> list[Draw]:  # pragma: no cover - also run in the subprocess
    names = ["dice", "tversky", "focal_tversky", "generalized_dice", "cross_entropy", "focal", "dice_ce",
             "unified_focal", "jaccard", "asymmetric_focal_tversky", "combo", "lovasz"]  # fmt: skip
    out = []
    for i in range(INTERPRETED):
        name = names[i % len(names)]
        rng = np.random.default_rng([7, i])
        for _ in range(50):  # the first valid, unsaturated float64 draw
            d = make_draw(rng, name, dtype=torch.float64)
            if d.saturated:
                continue
            try:
                value_and_grad(d)
            except (ValueError, TypeError):
                continue
            out.append(d)
            break
    return out


def _worker() -> None:  # pragma: no cover - runs under TRITON_INTERPRET=1 (see tests/test_triton.py)
    import json

    from seglosses import _ops

    results: dict[str, float] = {}
    draws = _interpreted_draws()
    refs = [value_and_grad(d) for d in draws]
    _ops.triton_runs = lambda device: True  # type: ignore[assignment]
    for op in ("softmax_index_fwd", "softmax_index_bwd", "sigmoid_dense_fwd", "sigmoid_dense_bwd", "whole_loss_fwd",
               "whole_loss_bwd"):  # fmt: skip
        torch.library.register_kernel(f"seglosses::{op}", "cpu", getattr(_ops, f"_{op}_cuda"))
    seglosses.set_value_checks("never")
    for i, (d, (v, g)) in enumerate(zip(draws, refs, strict=True)):
        out, grad = value_and_grad(d)
        finite = g[torch.isfinite(g)]
        scale = max(float(finite.abs().max()) if finite.numel() else 0.0, 1.0)
        results[f"{i}/{d.name}/value"] = float(((out - v).abs() / v.abs().clamp_min(1e-12)).max()) if v.numel() else 0.0
        results[f"{i}/{d.name}/grad"] = float((grad - g).abs().max()) / scale
    print("RESULTS " + json.dumps(results))


def test_fuzz_triton_interpreter_equals_cpu_path() -> None:
    """Invariant 2 on the GPU kernels: a few fuzzed draws through the Triton operators under the interpreter."""
    pytest.importorskip("triton")
    from helpers import run_interpreted

    results = run_interpreted(str(Path(__file__).resolve()))
    assert len(results) == 2 * INTERPRETED, sorted(results)
    bad = {k: v for k, v in results.items() if not v < 1e-5}
    assert not bad, bad


if __name__ == "__main__" and "--worker" in sys.argv:  # pragma: no cover
    _worker()


# ------------------------------------------------------------------------------------------------ regressions


def test_asymmetric_focal_tversky_binary_smooth0_absent_background_keeps_gradient() -> None:
    """Found by the fuzzer (binary, ``smooth=0``, ``delta=1``, ``gamma=0``, ``ignore_index=0``): an image whose kept
    pixels are all foreground has TP_0 = FN_0 = 0, so its background ratio is 0/0 := 1. TP_0 was formed as
    ``count - P - G + TP``, a rounding residual of -1.1e-16 here: the ratio of two residuals, whose ~1e16 gradient
    (cancelling) erased the image's foreground gradient. Expected gradient by hand: with delta = 1 the foreground
    term of image n is ``1 - TP_n / G_n`` (``G_n`` kept pixels), so under the mean over the 2 x 2 terms
    ``dL/dx_i = -p_i (1 - p_i) / (4 G_n)`` on kept pixels, 0 elsewhere."""
    x_np = np.array(
        [[-2.1249, 0.0964, -0.1282, -5.6986, 1.1771, 2.9208], [-2.5265, -2.8811, -6.5811, 1.7986, -4.7527, 2.9128]]
    )
    t_np = np.array([[0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 1, 0]], dtype=np.float64)
    p = _sigmoid(x_np)
    keep = t_np > 0
    expected = np.where(keep, -p * (1 - p) / (4 * keep.sum(1, keepdims=True)), 0.0)
    for options in ({}, {"fused": False}, {"native": False}):
        x = torch.tensor(x_np, requires_grad=True)
        with _dispatch.use(**options):
            out = seglosses.F.asymmetric_focal_tversky_loss(
                x, torch.tensor(t_np), mode="binary", delta=1.0, gamma=0.0, smooth=0.0, ignore_index=0
            )
        out.backward()
        np.testing.assert_allclose(float(out.detach()), (1 - (p * keep).sum(1) / keep.sum(1)).sum() / 4, rtol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-9, atol=1e-15)
