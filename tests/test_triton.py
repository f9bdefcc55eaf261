"""The Triton kernels equal the PyTorch twin (values, gradients, value-check counters), under ``TRITON_INTERPRET=1``.

``TRITON_INTERPRET`` is read when a kernel is decorated, i.e. when :mod:`seglosses._triton` is imported, which the
test process has long done by the time these tests run. So the kernels run in one subprocess (this file run as a
script) that sets the variable before importing anything, evaluates every case on tiny float64 shapes (the
interpreter is slow) with tiles small enough that every shape spans several tiles, and prints one JSON line of
maximal differences; the tests below read it. Skipped where triton is not installed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import zlib
from pathlib import Path

import pytest

# cases: (name, shape (N, C, M), options); block 16 gives 3-4 tiles on M = 37..50 (every mask edge is hit)
SOFTMAX_CASES = {
    "plain": ((2, 3, 37), {}),
    "one_pixel_tile": ((1, 2, 7), {}),
    "masked": ((2, 4, 50), {"masked": True}),
    "weighted_ce": ((2, 3, 37), {"masked": True, "weighted": True, "pixel": True}),
    "focal": ((2, 3, 37), {"masked": True, "gamma": 2.0, "pixel": True}),
    "pixel_gamma": ((2, 5, 33), {"gamma_pix": True, "pixel": True}),
    "gamma_not_fp32": ((2, 3, 37), {"gamma": 0.4, "pixel": True}),
    "int32_target": ((2, 3, 37), {"int32": True, "pixel": True}),
}
SIGMOID_CASES = {
    "plain": ((2, 1, 37), {}),
    "multilabel_masked": ((2, 3, 41), {"masked": True}),
    "bce_pixel": ((2, 2, 37), {"pixel": True}),
    "focal_alpha": ((2, 2, 37), {"pixel": True, "alpha": 0.25, "gamma": 2.0, "masked": True}),
    "asymmetric": ((2, 1, 37), {"pixel": True, "alpha": 0.6, "gamma": 0.5, "pos0": True}),
    "soft_target": ((1, 2, 23), {"soft": True, "pixel": True}),
    "alpha_gamma_not_fp32": ((2, 2, 37), {"pixel": True, "alpha": 0.3, "gamma": 0.7}),
}
BLOCK = 16
#: Random edge cases run whole through the Triton operators against the readable formulas.
SWEEP = 40
#: Cases found by fuzzing the GPU path against the readable formulas (each failed before its fix): "ref" ones must
#: equal the readable formulas, "nan" ones (a bad class index or a NaN logit, no host check) must give NaN.
#: ``(1 - r)^0`` is 1 also at ``r = 1`` (the unified focal family with gamma = 1: every pixel ignored, or a perfect
#: prediction), and poisoned (NaN) statistics stay NaN through the focal power ``(1 - r)^gamma``.
FOUND_CASES = {
    "unified_gamma1_all_ignored": ("unified_focal_loss", "multiclass", "ref",
                                   {"gamma": 1.0, "delta": 0.4, "weight": 0.85, "ignore_index": 3}),
    "unified_gamma1_binary_all_ignored": ("unified_focal_loss", "binary", "ref",
                                          {"gamma": 1.0, "asymmetric": False, "ignore_index": -100,
                                           "reduction": "sum"}),
    "asym_focal_tversky_gamma1_perfect": ("asymmetric_focal_tversky_loss", "multiclass", "ref", {"gamma": 1.0}),
    "focal_tversky_bad_index": ("focal_tversky_loss", "multiclass", "nan", {"gamma": 0.5}),
    "sym_focal_tversky_nan_logit": ("symmetric_focal_tversky_loss", "multiclass", "nan", {"gamma": 0.3}),
    # a soft target's class of tiny mass: 1 / G^2 overflowed (here G = 1e-170 in float64; 5e-20 in float32) and
    # the normalised weights were inf / inf = NaN; the kernel takes (G_min / G)^2 as the readable formula does
    "gdl_tiny_class_mass": ("generalized_dice_loss", "multilabel", "ref", {}),
}  # fmt: skip
#: Losses run whole through the Triton operators (each mode with index / hard targets, with and without ignored
#: pixels); the unified focal family has no multilabel mode.
LOSS_NAMES = (
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "cross_entropy_loss",
    "focal_loss",
    "dice_ce_loss",
    "combo_loss",
    "unified_focal_loss",
)
NO_MULTILABEL = ("unified_focal_loss",)
#: Options of the losses whose whole formula runs in one operator on the GPU: every branch of the formula kernel
#: (per image or not, background left out, class weights for every or the kept classes, smooth 0, log, the focal
#: power, the sum, the pixel part alone and beside the region part, alpha).
RATIO_OPTIONS = (
    ("dice_ce_loss", "multiclass", {"per_image": True, "include_background": False, "ce_weight": 0.3}),
    ("dice_ce_loss", "multilabel", {"reduction": "sum", "log_loss": True, "dice_weight": 2.0}),
    ("focal_loss", "multiclass", {"gamma": 1.5, "alpha": [0.2, 0.5, 0.3]}),
    ("focal_loss", "binary", {"gamma": 2.0, "alpha": 0.25, "reduction": "sum"}),
    ("cross_entropy_loss", "multilabel", {"reduction": "sum"}),
    ("cross_entropy_loss", "multiclass", {"class_weights": [0.2, 1.0, 3.0]}),
    ("cross_entropy_loss", "multiclass", {"class_weights": [0.5, 2.0, 1.0], "reduction": "sum"}),
    ("dice_ce_loss", "multiclass", {"class_weights": [0.3, 1.0, 2.0], "include_background": False}),
    ("cross_entropy_loss", "multilabel", {"class_weights": [0.2, 1.0, 3.0]}),
    ("dice_ce_loss", "multilabel", {"class_weights": [0.5, 1.0, 2.0], "per_image": True}),
    ("unified_focal_loss", "multiclass", {"weight": 0.3, "delta": 0.7, "gamma": 0.4}),
    ("unified_focal_loss", "multiclass", {"asymmetric": False, "gamma": 0.0, "delta": 0.5}),
    ("asymmetric_focal_loss", "multiclass", {"delta": 0.6, "gamma": 1.5}),
    ("unified_focal_loss", "binary", {"weight": 0.4, "delta": 0.6, "gamma": 0.3}),
    ("unified_focal_loss", "binary", {"asymmetric": False, "delta": 0.7, "gamma": 0.5}),
    ("asymmetric_focal_tversky_loss", "binary", {"delta": 0.6, "gamma": 0.25}),
    ("symmetric_focal_tversky_loss", "multiclass", {"delta": 0.6, "gamma": 0.3}),
    ("generalized_dice_loss", "multiclass", {"per_image": True, "include_background": False}),
    ("generalized_dice_loss", "binary", {"smooth": 0.0}),
    ("generalized_dice_loss", "binary", {"per_image": True, "reduction": "sum", "include_background": False}),
    ("generalized_dice_loss", "multilabel", {"smooth": 0.0, "per_image": True}),
    ("dice_loss", "multiclass", {"per_image": True, "include_background": False}),
    ("dice_loss", "multiclass", {"smooth": 0.0, "log_loss": True, "class_weights": [0.2, 1.0, 2.0]}),
    ("dice_loss", "multilabel", {"reduction": "sum", "per_image": True}),
    ("jaccard_loss", "multiclass", {"include_background": False, "class_weights": [1.0, 3.0]}),
    ("jaccard_loss", "binary", {"smooth": 0.0, "per_image": True}),
    ("tversky_loss", "multilabel", {"alpha": 0.7, "beta": 0.3, "include_background": False}),
    ("focal_tversky_loss", "multiclass", {"gamma": 0.5, "per_image": True, "reduction": "sum"}),
    ("focal_tversky_loss", "binary", {"gamma": 2.0, "smooth": 0.0}),
    # the squared Dice (sums of p^2 and g^2; "_target": a soft target, where sum g^2 differs from sum g)
    ("dice_loss", "multiclass", {"squared": True, "per_image": True}),
    ("dice_loss", "binary", {"squared": True, "smooth": 0.0}),
    ("dice_loss", "multilabel", {"squared": True, "include_background": False, "_target": "soft"}),
    ("dice_ce_loss", "multiclass", {"squared": True, "class_weights": [0.3, 1.0, 2.0]}),
    ("dice_ce_loss", "multilabel", {"squared": True, "log_loss": True, "_target": "soft"}),
    # label smoothing of the cross entropy (torch's definition; with class weights, the weighted mean)
    ("cross_entropy_loss", "multiclass", {"label_smoothing": 0.1}),
    ("cross_entropy_loss", "multiclass", {"label_smoothing": 0.2, "class_weights": [0.5, 2.0, 1.0]}),
    ("cross_entropy_loss", "binary", {"label_smoothing": 0.3, "reduction": "sum"}),
    ("dice_ce_loss", "multilabel", {"label_smoothing": 0.15, "class_weights": [0.5, 1.0, 2.0]}),
    ("dice_ce_loss", "multiclass", {"label_smoothing": 0.1, "include_background": False}),
)
#: The operators whose CUDA implementation runs the Triton kernels.
CUDA_OPS = ("softmax_index_fwd", "softmax_index_bwd", "sigmoid_dense_fwd", "sigmoid_dense_bwd", "whole_loss_fwd",
            "whole_loss_bwd")  # fmt: skip
#: Launches counted for one forward + backward on (2, 4, 32, 32) multiclass logits, and their bounds.
LAUNCH_LOSSES = {
    "dice": 6,
    "jaccard": 6,
    "tversky": 6,
    "focal_tversky": 6,
    "generalized_dice": 6,
    "dice_ce": 6,
    "focal": 6,
    "cross_entropy": 6,
    "unified_focal": 6,
    "dice@float16": 6,  # half-precision logits: no extra launch (no float32 copy)
    "dice:squared": 6,
    "dice_ce@bfloat16": 6,
}
#: ATen operators that launch no kernel on CUDA.
NO_KERNEL = ("empty", "view", "reshape", "as_strided", "expand", "unsqueeze", "squeeze", "select", "slice",
             "transpose", "permute", "detach", "alias", "_reshape_alias", "_unsafe_view", "lift_fresh", "unbind",
             "split", "narrow", "new_empty", "is_same_size", "sym_", "size", "stride")  # fmt: skip
LOSS_MODES = (("binary", "hard", False), ("multiclass", "index", False), ("multiclass", "index", True),
              ("multilabel", "hard", True))  # fmt: skip
#: float16/bfloat16 logits read by the Triton kernels as they are (no float32 copy of the input), reduced in float32.
HALF_CASES = (
    ("dice_loss", "multiclass", True),
    ("dice_ce_loss", "multilabel", True),
    ("focal_loss", "binary", False),
    ("unified_focal_loss", "multiclass", False),
    ("generalized_dice_loss", "binary", True),
    ("cross_entropy_loss", "multiclass", True),
)
HALF_DTYPES = ("float16", "bfloat16")
#: Losses with ignored pixels (255, uint8 targets) on the GPU path: no per-pixel temporary (mask, cleaned target, map).
IGNORE_TEMPORARIES = (
    ("dice_loss", "multiclass", {}),
    ("dice_ce_loss", "multiclass", {"class_weights": [0.5, 1.0, 2.0]}),
    ("focal_loss", "multiclass", {"alpha": [0.2, 0.3, 0.5]}),
    ("unified_focal_loss", "multiclass", {}),
    ("dice_loss", "multilabel", {}),
    ("cross_entropy_loss", "binary", {}),
)
#: Targets in their own dtype read by the Triton kernels as they are (no int64 / float copy): (loss, mode, target
#: dtype, ignored pixels).
TARGET_DTYPE_CASES = (
    ("dice_ce_loss", "multiclass", "uint8", True),
    ("focal_loss", "multiclass", "int32", False),
    ("dice_loss", "binary", "bool", False),
    ("tversky_loss", "multilabel", "uint8", True),
    ("cross_entropy_loss", "binary", "float16", False),
    ("jaccard_loss", "multiclass", "int16", False),
)
#: Relative rounding of the gradient stored in the input's dtype (its machine epsilon).
HALF_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from seglosses import _fused, _native, _triton

    _native.set_native(False)  # the PyTorch twin is the reference
    results: dict[str, float] = {}

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        if a.shape != b.shape:
            return float("inf")
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))  # equal infinities and NaN on both sides agree
        diff = torch.where(same, torch.zeros_like(a), (a - b).abs())
        return float(torch.nan_to_num(diff, nan=float("inf")).max()) if diff.numel() else 0.0

    for name, ((n, c, m), opt) in SOFTMAX_CASES.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        x = torch.randn(n, c, m, generator=g, dtype=torch.float64) * 3
        t = torch.randint(0, c, (n, m), generator=g)
        valid = (torch.rand(n, m, generator=g) > 0.3).double() if opt.get("masked") else None
        wpix = None
        if opt.get("weighted"):
            wpix = torch.rand(n, m, generator=g, dtype=torch.float64) + 0.5
            wpix = wpix if valid is None else wpix * valid
        elif opt.get("pixel") and valid is not None:
            wpix = valid
        gamma = float(opt.get("gamma", 0.0))
        gamma_pix = torch.where(t == 0, 0.0, 0.7).double() if opt.get("gamma_pix") else None
        need_pixel = bool(opt.get("pixel"))
        t_k = t.int() if opt.get("int32") else t
        tp, ps, gs, p2, pix, kept = _triton.softmax_index_forward(
            x, t_k, valid, wpix, gamma, gamma_pix, need_pixel=need_pixel, block_m=BLOCK
        )
        xr = x.clone().requires_grad_(True)
        gam: float | torch.Tensor = gamma if gamma_pix is None else gamma_pix
        r_tp, r_ps, r_pix, r_gs = _fused.softmax_index(xr, t, valid, wpix=wpix, gamma=gam, need_pixel=need_pixel)
        prob = torch.softmax(x, 1) * (1 if valid is None else valid.unsqueeze(1))
        results[f"softmax/{name}/tp"] = err(tp, r_tp.detach())
        results[f"softmax/{name}/p"] = err(ps, r_ps.detach())
        results[f"softmax/{name}/g"] = err(gs, r_gs)
        results[f"softmax/{name}/p2"] = err(p2, (prob * torch.softmax(x, 1)).sum(-1))
        results[f"softmax/{name}/kept"] = err(kept, torch.full((n,), float(m)) if valid is None else valid.sum(-1))
        if need_pixel:
            results[f"softmax/{name}/pixel"] = err(pix, r_pix.detach())
        g_tp = torch.randn(n, c, generator=g, dtype=torch.float64)
        g_ps = torch.randn(n, c, generator=g, dtype=torch.float64)
        g_pix = torch.randn(n, generator=g, dtype=torch.float64)
        total = (r_tp * g_tp).sum() + (r_ps * g_ps).sum() + ((r_pix * g_pix).sum() if need_pixel else 0)
        (ref_grad,) = torch.autograd.grad(total, xr)
        grad = _triton.softmax_index_backward(
            x, t_k, valid, wpix, gamma, gamma_pix, g_tp, g_ps, g_pix if need_pixel else None, block_m=BLOCK
        )
        results[f"softmax/{name}/grad"] = err(grad, ref_grad)

    for name, ((n, c, m), opt) in SIGMOID_CASES.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()) + 1)
        x = torch.randn(n, c, m, generator=g, dtype=torch.float64) * 3
        if opt.get("soft"):
            tgt = torch.rand(n, c, m, generator=g, dtype=torch.float64)
        else:
            tgt = (torch.rand(n, c, m, generator=g) > 0.5).double()
        valid = (torch.rand(n, c, m, generator=g) > 0.3).double() if opt.get("masked") else None
        if valid is not None:
            tgt = tgt * valid
        alpha = opt.get("alpha")
        gamma = float(opt.get("gamma", 0.0))
        pos0 = bool(opt.get("pos0"))
        need_pixel = bool(opt.get("pixel"))
        tp, ps, gs, p2, pix, kept = _triton.sigmoid_forward(
            x, tgt, valid, alpha, gamma, need_pixel=need_pixel, pos0=pos0, block_m=BLOCK
        )
        xr = x.clone().requires_grad_(True)
        r_tp, r_ps, r_gs, r_pix = _fused.sigmoid_dense(
            xr, tgt, valid, alpha=alpha, gamma=gamma, need_pixel=need_pixel, gamma_pos0=pos0
        )
        prob = torch.sigmoid(x)
        pv = prob if valid is None else prob * valid
        results[f"sigmoid/{name}/tp"] = err(tp, r_tp.detach())
        results[f"sigmoid/{name}/p"] = err(ps, r_ps.detach())
        results[f"sigmoid/{name}/g"] = err(gs, r_gs)
        results[f"sigmoid/{name}/p2"] = err(p2, (pv * prob).sum(-1))
        ref_kept = torch.full((n,), float(c * m)) if valid is None else valid.sum((1, 2))
        results[f"sigmoid/{name}/kept"] = err(kept, ref_kept)
        if need_pixel:
            results[f"sigmoid/{name}/pixel"] = err(pix, r_pix.detach())
        g_tp = torch.randn(n, c, generator=g, dtype=torch.float64)
        g_ps = torch.randn(n, c, generator=g, dtype=torch.float64)
        g_pix = torch.randn(n, generator=g, dtype=torch.float64)
        total = (r_tp * g_tp).sum() + (r_ps * g_ps).sum() + ((r_pix * g_pix).sum() if need_pixel else 0)
        (ref_grad,) = torch.autograd.grad(total, xr)
        grad = _triton.sigmoid_backward(
            x, tgt, valid, alpha, gamma, g_tp, g_ps, g_pix if need_pixel else None, pos0=pos0, block_m=BLOCK
        )
        results[f"sigmoid/{name}/grad"] = err(grad, ref_grad)

    # value-check counters: a bad class index at a kept pixel / a NaN logit poisons that image's outputs only
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 37, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 37), generator=g)
    valid = torch.ones(2, 37, dtype=torch.float64)
    bad = t.clone()
    bad[1, 20] = 3
    tp, _, _, _, pix, _ = _triton.softmax_index_forward(x, bad, valid, None, 0.0, None, need_pixel=True, block_m=BLOCK)
    results["counter/bad_index/image1_nan"] = float(not bool(torch.isnan(tp[1]).all() and torch.isnan(pix[1])))
    results["counter/bad_index/image0_finite"] = float(not bool(torch.isfinite(tp[0]).all() and torch.isfinite(pix[0])))
    valid_ignored = valid.clone()
    valid_ignored[1, 20] = 0.0  # an out-of-range value at an ignored pixel is not counted
    tp, *_ = _triton.softmax_index_forward(x, bad, valid_ignored, None, 0.0, None, need_pixel=False, block_m=BLOCK)
    results["counter/bad_index_ignored/finite"] = float(not bool(torch.isfinite(tp).all()))
    xn = x.clone()
    xn[0, 1, 3] = float("nan")
    tp, *_ = _triton.softmax_index_forward(xn, t, None, None, 0.0, None, need_pixel=False, block_m=BLOCK)
    results["counter/nan_logit/image0_nan"] = float(not bool(torch.isnan(tp[0]).all() and torch.isfinite(tp[1]).all()))
    tgt = (torch.rand(2, 1, 37, generator=g) > 0.5).double()
    tgt[1, 0, 5] = float("nan")
    tp, *_ = _triton.sigmoid_forward(x[:, :1], tgt, None, None, 0.0, need_pixel=False, block_m=BLOCK)
    results["counter/nan_target/image1_nan"] = float(not bool(torch.isnan(tp[1]).all() and torch.isfinite(tp[0]).all()))

    # every loss through the operators with their CUDA implementation (the Triton kernels) registered for the CPU:
    # the glue of the GPU path (argument handling, output tensors, autograd registration, counters) end to end,
    # against the NumPy reference (values) and the CPU path of the same process (gradients)
    import seglosses
    import seglosses.functional as SF
    from conftest import make_case_fn
    from reference import REFERENCES
    from seglosses import _ops

    cases = []
    for name in LOSS_NAMES:
        for mode, target, ignore in LOSS_MODES:
            if mode == "multilabel" and name in NO_MULTILABEL:
                continue
            key = f"loss/{name}/{mode}-{target}{'-ignore' if ignore else ''}"
            case = make_case_fn(mode, target=target, ignore=ignore, seed=zlib.crc32(name.encode()) % 1000)
            cases.append((key, name, case, case.args()))
    for i, (name, mode, options) in enumerate(RATIO_OPTIONS):
        kw = {k: v for k, v in options.items() if k != "_target"}
        target = str(options.get("_target", "index" if mode == "multiclass" else "hard"))
        case = make_case_fn(mode, target=target, ignore=True, seed=50 + i)
        cases.append((f"options/{i}/{name}", name, case, {**case.args(), **kw}))
    references = []
    for _key, name, case, args in cases:
        xr = case.x.clone().requires_grad_(True)
        getattr(SF, name)(xr, case.t, **args).backward()  # the CPU path (C++ kernels or PyTorch)
        references.append(xr.grad)
    halves = []  # (key, name, mode, x in its dtype, target, args, value and gradient of the float32 CPU path)
    for dt_name in HALF_DTYPES:
        for name, mode, ignore in HALF_CASES:
            case = make_case_fn(mode, target="index" if mode == "multiclass" else "hard", ignore=ignore, seed=7)
            xh = case.x.to(getattr(torch, dt_name))
            xr = xh.float().requires_grad_(True)  # the same values, upcast: the float32 reference
            ref = getattr(SF, name)(xr, case.t, **case.args())
            ref.backward()
            halves.append((f"half/{dt_name}/{name}/{mode}", name, xh, case.t, case.args(), float(ref), xr.grad))
    targets = []  # (key, name, x, target in its dtype, args, value and gradient with the int64/float target)
    for name, mode, dt_name, ignore in TARGET_DTYPE_CASES:
        case = make_case_fn(mode, target="index" if mode == "multiclass" else "hard", ignore=ignore, seed=11)
        t_raw = case.t.to(getattr(torch, dt_name))
        xr = case.x.clone().requires_grad_(True)
        ref = getattr(SF, name)(xr, case.t, **case.args())
        ref.backward()
        targets.append((f"target/{dt_name}/{name}/{mode}", name, case.x, t_raw, case.args(), float(ref), xr.grad))
    sweep = _sweep_cases()
    sweep_refs = []
    from seglosses import _dispatch

    for name, mode, x, t, kw in sweep:  # the readable formulas (autograd) as the reference of the edge cases
        xr = x.clone().requires_grad_(True)
        with _dispatch.use(fused=False):
            out = getattr(SF, name)(xr, t, mode=mode, **kw)
        out.backward()
        sweep_refs.append((float(out), xr.grad))
    found = _found_cases()
    found_refs = {}
    for key, (name, mode, x, t, kw) in found.items():
        if FOUND_CASES[key][2] == "ref":
            xr = x.clone().requires_grad_(True)
            with _dispatch.use(fused=False):
                out = getattr(SF, name)(xr, t, mode=mode, **kw)
            out.backward()
            found_refs[key] = (float(out), xr.grad)
    _ops.triton_runs = lambda device: True  # type: ignore[assignment]
    for op in CUDA_OPS:
        torch.library.register_kernel(f"seglosses::{op}", "cpu", getattr(_ops, f"_{op}_cuda"))
    seglosses.set_value_checks("never")  # as on a GPU: the kernels' counters, no host check
    for (key, name, case, args), ref_grad in zip(cases, references, strict=True):
        xg = case.x.clone().requires_grad_(True)
        out = getattr(SF, name)(xg, case.t, **args)
        out.backward()
        expected = float(REFERENCES[name](case.x_np, case.t_np, **args))
        results[f"{key}/value"] = abs(float(out) - expected) / max(abs(expected), 1e-12)
        results[f"{key}/grad"] = err(xg.grad, ref_grad)
    for i, ((name, mode, x, t, kw), (ref_v, ref_g)) in enumerate(zip(sweep, sweep_refs, strict=True)):
        xg = x.clone().requires_grad_(True)
        out = getattr(SF, name)(xg, t, mode=mode, **kw)
        out.backward()
        # equal values (the same infinity: -log 0 with smooth 0) and NaN on both sides count as agreement
        same = float(out) == ref_v or (math.isnan(ref_v) and math.isnan(float(out)))
        results[f"sweep/{i}/value"] = 0.0 if same else abs(float(out) - ref_v) / max(abs(ref_v), 1e-12)
        finite = ref_g[torch.isfinite(ref_g)]
        scale = max(float(finite.abs().max()) if finite.numel() else 0.0, 1e-12)
        results[f"sweep/{i}/grad"] = err(xg.grad, ref_g) / scale
    for key, (name, mode, x, t, kw) in found.items():
        xg = x.clone().requires_grad_(True)
        out = getattr(SF, name)(xg, t, mode=mode, **kw)
        if key not in found_refs:
            results[f"found/{key}/nan"] = float(not bool(torch.isnan(out)))
            continue
        out.backward()
        ref_v, ref_g = found_refs[key]
        results[f"found/{key}/value"] = abs(float(out) - ref_v) / max(abs(ref_v), 1e-12)
        results[f"found/{key}/grad"] = err(xg.grad, ref_g)
    for key, name, xh, t, args, ref_v, ref_g in halves:
        xg = xh.clone().requires_grad_(True)
        upcasts = _copies_of(xg)
        with upcasts, torch.autocast("cpu", dtype=torch.bfloat16):  # autocast does not change the operators' dtypes
            out = getattr(SF, name)(xg, t, **args)
        with upcasts:
            out.backward()
        results[f"{key}/value"] = abs(float(out) - ref_v) / max(abs(ref_v), 1e-12)
        results[f"{key}/float32_result"] = float(out.dtype != torch.float32)
        results[f"{key}/grad_dtype"] = float(xg.grad.dtype != xh.dtype)
        results[f"{key}/grad"] = float((xg.grad.float() - ref_g).abs().max()) / max(float(ref_g.abs().max()), 1e-30)
        results[f"{key}/upcasts"] = float(upcasts.count)
        if name == "dice_loss":  # the detector's own check: the per-element path (not whole) does upcast the input
            detector = _copies_of(xg)
            with detector:
                getattr(SF, name)(xg, t, **args, reduction="none").sum().backward()
            results[f"{key}/upcasts_not_whole"] = float(detector.count)
    for key, name, x, t_raw, args, ref_v, ref_g in targets:
        xg = x.clone().requires_grad_(True)
        copies = _copies_of(t_raw)
        with copies:
            out = getattr(SF, name)(xg, t_raw, **args)
            out.backward()
        results[f"{key}/value"] = abs(float(out) - ref_v) / max(abs(ref_v), 1e-12)
        results[f"{key}/grad"] = err(xg.grad, ref_g)
        results[f"{key}/copies"] = float(copies.count)
        detector = _copies_of(t_raw)  # the detector's own check: the per-element path converts the target
        with detector:
            SF.cross_entropy_loss(xg, t_raw, **args, reduction="none").sum().backward()
        results[f"{key}/copies_not_whole"] = float(detector.count)
    results.update(_ignored_temporaries())
    results.update(_launch_counts())
    print("RESULTS " + json.dumps(results))


def _ignored_temporaries() -> dict[str, float]:  # pragma: no cover - runs in the subprocess
    """Per-pixel temporaries made outside the Triton launches for losses with ignored pixels on the GPU path.

    The kernels compare the raw target with ``ignore_index`` themselves, so no mask, cleaned target or weight map of
    a pixel per element is made: every ATen operator (views and uninitialised ``empty`` allocations aside, which
    include the gradient the kernels write) whose output has at least N x M elements is counted. Cross entropy with
    ``reduction="none"`` (the per-element path, which builds them) is counted too, as the detector's own check.
    """
    import functools

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import seglosses.functional as SF
    from helpers import TritonLaunches

    triton_launches = TritonLaunches().install()

    class Temporaries(TorchDispatchMode):
        def __init__(self, threshold: int) -> None:
            super().__init__()
            self.threshold, self.count, self.names = threshold, 0, set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            uninitialised = name.startswith(("empty", "new_empty"))
            if triton_launches.inside or func.namespace != "aten" or func.is_view or uninitialised:
                return out
            for r in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(r, torch.Tensor) and r.numel() >= self.threshold:
                    self.count += 1
                    self.names.add(name)
            return out

    results: dict[str, float] = {}
    g = torch.Generator().manual_seed(21)
    for name, mode, kw in IGNORE_TEMPORARIES:
        c = 1 if mode == "binary" else 3
        x = torch.randn(2, c, 12, 10, generator=g, dtype=torch.float64).requires_grad_(True)
        if mode == "multiclass":
            t = torch.randint(0, c, (2, 12, 10), generator=g, dtype=torch.uint8)
        else:
            t = (torch.rand(2, c, 12, 10, generator=g) > 0.5).to(torch.uint8)
        t[..., :3] = 255
        fn = getattr(SF, name)
        fn(x, t, mode=mode, ignore_index=255, **kw).backward()  # warm-up
        calls = {
            "whole": functools.partial(fn, mode=mode, ignore_index=255, **kw),
            "not_whole": functools.partial(SF.cross_entropy_loss, mode=mode, ignore_index=255, reduction="none"),
        }
        for path, call in calls.items():
            x.grad = None  # (an accumulated gradient would add one more tensor of the input's size)
            mode_ = Temporaries(threshold=2 * 12 * 10)
            with mode_:
                call(x, t).sum().backward()
            results[f"temporaries/{name}/{mode}/{path}"] = float(mode_.count)
            print(f"temporaries {name} {mode} {path}: {sorted(mode_.names)}", file=sys.stderr)
    return results


def _copies_of(x: object) -> object:  # pragma: no cover - runs in the subprocess
    """A dispatch mode counting the ATen operators that convert ``x`` (a tensor of ``x``'s dtype and size in, one of
    the same size and another dtype out, bool masks and views aside): float16 logits upcast, uint8 targets made int64
    or float.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Copies(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            if func.namespace != "aten" or func.is_view:  # the operators' own outputs; views copy nothing
                return out
            sources = [a for a in args if isinstance(a, torch.Tensor) and a.dtype == x.dtype]
            results = out if isinstance(out, (tuple, list)) else (out,)
            for r in results:
                if (
                    isinstance(r, torch.Tensor)
                    and r.dtype not in (x.dtype, torch.bool)
                    and r.numel() == x.numel()
                    and any(a.numel() == x.numel() for a in sources)
                ):
                    self.count += 1
            return out

    return Copies()


def _sweep_cases() -> list[tuple[str, str, object, object, dict[str, object]]]:  # pragma: no cover - subprocess
    """Random edge cases for the losses computed whole (seeded): one pixel per image, every pixel ignored, only the
    background present, one class, logits up to +-100 (saturated probabilities), smooth 0, every reduction."""
    import random

    import torch

    rng = random.Random(1)
    options = {
        "dice_loss": lambda: {"smooth": rng.choice([0.0, 1.0, 1e-5]), "log_loss": rng.random() < 0.3,
                              "include_background": rng.random() < 0.7, "per_image": rng.random() < 0.5,
                              "reduction": rng.choice(["mean", "sum"]), "squared": rng.random() < 0.3},
        "jaccard_loss": lambda: {"smooth": rng.choice([0.0, 1.0]), "per_image": rng.random() < 0.5},
        "tversky_loss": lambda: {"alpha": rng.random(), "beta": rng.random(), "smooth": rng.choice([0.0, 1.0])},
        "focal_tversky_loss": lambda: {"gamma": rng.choice([0.5, 1.0, 2.0]), "smooth": rng.choice([0.0, 1.0])},
        "generalized_dice_loss": lambda: {"smooth": rng.choice([0.0, 1e-5]), "per_image": rng.random() < 0.5,
                                          "include_background": rng.random() < 0.7},
        "cross_entropy_loss": lambda: {"reduction": rng.choice(["mean", "sum"]),
                                       "label_smoothing": rng.choice([0.0, 0.0, 0.1, 1.0])},
        "focal_loss": lambda: {"gamma": rng.choice([0.0, 0.5, 2.0])},
        "dice_ce_loss": lambda: {"per_image": rng.random() < 0.5, "ce_weight": rng.choice([0.5, 1.0])},
        "unified_focal_loss": lambda: {"weight": rng.random(), "delta": rng.random(), "gamma": rng.random(),
                                       "asymmetric": rng.random() < 0.5},
    }  # fmt: skip
    cases = []
    for i in range(SWEEP):
        name = rng.choice(sorted(options))
        mode = rng.choice(["binary", "multiclass", "multilabel"])
        if name == "unified_focal_loss" and mode == "multilabel":
            mode = rng.choice(["binary", "multiclass"])
        kw = options[name]()
        if mode == "binary":
            kw.pop("include_background", None)
        n = rng.choice([1, 2, 3])
        c = 1 if mode == "binary" else rng.choice([1, 2, 3]) if mode == "multilabel" else rng.choice([2, 3, 5])
        m = rng.choice([1, 7, 40])
        g = torch.Generator().manual_seed(i)
        x = torch.randn(n, c, m, generator=g, dtype=torch.float64) * rng.choice([0.5, 3.0, 30.0])
        if mode == "multiclass":
            t = torch.randint(0, c, (n, m), generator=g)
            if rng.random() < 0.2:
                t[:] = 0  # only the background present
        else:
            t = (torch.rand(n, c, m, generator=g) > rng.choice([0.1, 0.5, 0.99])).double()
        if rng.random() < 0.4:
            t = t.clone()
            t[torch.rand(t.shape, generator=g) < rng.choice([0.3, 1.0])] = 255  # some, or every, pixel ignored
            kw["ignore_index"] = 255
        cases.append((name, mode, x, t, kw))
    return cases


def _found_cases() -> dict[str, tuple[str, str, object, object, dict[str, object]]]:  # pragma: no cover
    """The inputs of :data:`FOUND_CASES` (float64, 2 images of 3 x 7 pixels; 4 classes for multiclass)."""
    import torch

    out = {}
    for i, (key, (name, mode, _expect, kw)) in enumerate(FOUND_CASES.items()):
        g = torch.Generator().manual_seed(100 + i)
        c = 4 if mode == "multiclass" else (3 if "tiny" in key else 1)
        x = torch.randn(2, c, 3, 7, generator=g, dtype=torch.float64) * 3
        if mode == "multiclass":
            t = torch.randint(0, c, (2, 3, 7), generator=g)
        elif "tiny" in key:
            t = torch.rand(2, c, 3, 7, generator=g, dtype=torch.float64)
            t[:, 2] = 1e-170
        else:
            t = (torch.rand(2, 1, 3, 7, generator=g) > 0.5).double()
        if "perfect" in key:  # saturated logits: probabilities exactly 0 and 1, every ratio exactly 1
            x = torch.nn.functional.one_hot(t, c).movedim(-1, 1).double() * 200.0 - 100.0
        if "ignore_index" in kw:
            t = torch.full_like(t, kw["ignore_index"])  # every pixel ignored
            t = t.int() if mode == "multiclass" else t
        if "bad_index" in key:
            t[1, 2, 5] = c
        if "nan_logit" in key:
            x[0, 0, 1, 1] = float("nan")
        out[key] = (name, mode, x, t, dict(kw))
    return out


def _launch_counts() -> dict[str, float]:  # pragma: no cover - runs in the subprocess
    """Kernel launches of one forward + backward on the GPU path, counted on the CPU (issue 17: at most 6 for dice).

    Every Triton program launch counts one; every ATen operator outside the Triton launches that would run a CUDA
    kernel counts one (views, ``empty`` and metadata do not), including the autograd engine's seed gradient
    (``ones_like``). Runs after the operators' CUDA implementations were registered for the CPU.
    """
    import collections
    import functools

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import seglosses.functional as SF
    from helpers import TritonLaunches

    counts: collections.Counter[str] = collections.Counter()
    triton_launches = TritonLaunches().install()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.overloadpacket.__name__
            if not triton_launches.inside and not name.startswith(NO_KERNEL) and func.namespace == "aten":
                counts[name] += 1
            return func(*args, **(kwargs or {}))

    out: dict[str, float] = {}
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 32, 32, generator=g).requires_grad_(True)
    t = torch.randint(0, 4, (2, 32, 32), generator=g)
    for name in LAUNCH_LOSSES:
        loss, _, dtype = name.partition("@")
        loss, _, flag = loss.partition(":")  # "dice:squared": dice_loss(..., squared=True)
        fn = functools.partial(getattr(SF, f"{loss}_loss"), **({flag: True} if flag else {}))
        xd = x if not dtype else x.detach().to(getattr(torch, dtype)).requires_grad_(True)
        fn(xd, t, mode="multiclass").backward()  # warm-up
        xd.grad = None
        counts.clear()
        before = triton_launches.launches
        with Count():
            fn(xd, t, mode="multiclass").backward()
        counts["triton"] = triton_launches.launches - before
        out[f"launches/{name}"] = float(sum(counts.values()))
        print(f"launches {name}: {dict(counts)}", file=sys.stderr)
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    pytest.importorskip("triton")
    from helpers import run_interpreted

    return run_interpreted(str(Path(__file__).resolve()))


def _keys(prefix: str, cases: dict[str, object]) -> list[str]:
    outs = ["tp", "p", "g", "p2", "kept", "grad"]
    keys = [f"{prefix}/{name}/{o}" for name in cases for o in outs]
    keys += [f"{prefix}/{name}/pixel" for name, (_, opt) in cases.items() if opt.get("pixel")]  # type: ignore[misc]
    return keys


@pytest.mark.parametrize("key", _keys("softmax", SOFTMAX_CASES) + _keys("sigmoid", SIGMOID_CASES))
def test_triton_kernel_equals_pytorch_twin_float64(interpreted, key):
    assert key in interpreted
    assert interpreted[key] < 1e-12, f"{key}: max difference {interpreted[key]:.3g}"


LOSS_KEYS = [
    f"loss/{name}/{mode}-{target}{'-ignore' if ignore else ''}"
    for name in LOSS_NAMES
    for mode, target, ignore in LOSS_MODES
    if not (mode == "multilabel" and name in NO_MULTILABEL)
]


LOSS_KEYS += [f"options/{i}/{name}" for i, (name, _, _) in enumerate(RATIO_OPTIONS)]


@pytest.mark.parametrize("i", range(SWEEP))
def test_edge_cases_through_the_triton_operators_match_the_readable_formulas(interpreted, i):
    """Single pixels, every pixel ignored, only the background, saturated logits: value 1e-9, gradient 1e-6 of its
    largest entry (cancellation near p = 0 or 1 leaves the fused passes and autograd a few ulps of that apart)."""
    assert interpreted[f"sweep/{i}/value"] < 1e-9, interpreted[f"sweep/{i}/value"]
    assert interpreted[f"sweep/{i}/grad"] < 1e-6, interpreted[f"sweep/{i}/grad"]


@pytest.mark.parametrize("key", sorted(FOUND_CASES))
def test_fuzz_found_cases_through_the_triton_operators(interpreted, key):
    """Found by fuzzing: the exponent 0 of the focal power at ``r = 1`` (1, as the readable formulas), and NaN
    statistics kept NaN by the power (a bad class index or a NaN logit made the whole-loss formula finite)."""
    if FOUND_CASES[key][2] == "nan":
        assert interpreted[f"found/{key}/nan"] == 0.0, "the loss is not NaN"
        return
    assert interpreted[f"found/{key}/value"] < 1e-12, interpreted[f"found/{key}/value"]
    assert interpreted[f"found/{key}/grad"] < 1e-12, interpreted[f"found/{key}/grad"]


@pytest.mark.parametrize("name", sorted(LAUNCH_LOSSES))
def test_launches_of_one_forward_and_backward_on_the_gpu_path(interpreted, name):
    """Issue 17: at most 6 kernel launches for dice (and every loss computed whole on the GPU) forward + backward."""
    assert interpreted[f"launches/{name}"] <= LAUNCH_LOSSES[name], interpreted[f"launches/{name}"]


HALF_KEYS = [f"half/{dt}/{name}/{mode}" for dt in HALF_DTYPES for name, mode, _ in HALF_CASES]


@pytest.mark.parametrize("key", HALF_KEYS)
def test_half_precision_logits_reach_the_triton_kernels_without_a_float32_copy(interpreted, key):
    """Issue 17: float16/bfloat16 logits (also under autocast) give a float32 result equal to the float32 path on the
    same values, the gradient in the input's dtype within its rounding, and no float32 copy of the input (the
    whole-loss operators read it as it is)."""
    eps = HALF_EPS[key.split("/")[1]]
    assert interpreted[f"{key}/float32_result"] == 0.0
    assert interpreted[f"{key}/grad_dtype"] == 0.0
    assert interpreted[f"{key}/value"] < 1e-5, interpreted[f"{key}/value"]
    assert interpreted[f"{key}/grad"] <= eps, interpreted[f"{key}/grad"]
    assert interpreted[f"{key}/upcasts"] == 0.0, interpreted[f"{key}/upcasts"]
    if f"{key}/upcasts_not_whole" in interpreted:  # the detector sees the copy where one is made
        assert interpreted[f"{key}/upcasts_not_whole"] >= 1.0


@pytest.mark.parametrize("key", [f"target/{dt}/{name}/{mode}" for name, mode, dt, _ in TARGET_DTYPE_CASES])
def test_targets_reach_the_triton_kernels_in_their_own_dtype(interpreted, key):
    """uint8/int16/int32 class indices and bool/uint8/float16 dense targets: the same loss and gradient as with int64
    / float targets, and no converted copy of the target on the GPU path (the kernels read any dtype)."""
    assert interpreted[f"{key}/value"] < 1e-9, interpreted[f"{key}/value"]
    assert interpreted[f"{key}/grad"] < 1e-10, interpreted[f"{key}/grad"]
    assert interpreted[f"{key}/copies"] == 0.0, interpreted[f"{key}/copies"]
    assert interpreted[f"{key}/copies_not_whole"] >= 1.0  # the detector sees the copy where one is made


@pytest.mark.parametrize(("name", "mode"), [(name, mode) for name, mode, _ in IGNORE_TEMPORARIES])
def test_ignored_pixels_make_no_per_pixel_temporary_on_the_gpu_path(interpreted, name, mode):
    """The kernels compare the raw target with ignore_index: no mask, cleaned target or weight map per pixel."""
    assert interpreted[f"temporaries/{name}/{mode}/whole"] == 0.0, interpreted[f"temporaries/{name}/{mode}/whole"]
    assert interpreted[f"temporaries/{name}/{mode}/not_whole"] >= 1.0  # the detector sees them where they are made


@pytest.mark.parametrize("key", LOSS_KEYS)
def test_loss_through_the_triton_operators_matches_reference(interpreted, key):
    """The whole loss on the GPU path's operators: value vs the NumPy reference, gradient vs the CPU path."""
    assert interpreted[f"{key}/value"] < 1e-9, interpreted[f"{key}/value"]
    assert interpreted[f"{key}/grad"] < 1e-10, interpreted[f"{key}/grad"]


@pytest.mark.parametrize(
    "key",
    [
        "counter/bad_index/image1_nan",
        "counter/bad_index/image0_finite",
        "counter/bad_index_ignored/finite",
        "counter/nan_logit/image0_nan",
        "counter/nan_target/image1_nan",
    ],
)
def test_triton_value_check_counters_poison_only_the_bad_image(interpreted, key):
    assert interpreted[key] == 0.0, key


#: Launches whose grids must fit CUDA's limits (x up to 2^31 - 1 programs, y and z up to 65535; the interpreter
#: enforces neither): the issue's workloads and two larger ones, where the tiles of one image or Lovász row pass 65535
#: (a 256^3 volume at C = 14: 65536 softmax tiles; 64 binary 1024^2 images: one Lovász row of 65536 tiles).
GRID_SHAPES = (
    (8, 1, 512, 512),
    (8, 4, 256, 256),
    (2, 4, 96, 96, 96),
    (1, 8, 128, 128, 128),
    (2, 14, 128, 128, 128),
    (2, 14, 256, 256, 256),
    (64, 1, 1024, 1024),
)


@pytest.mark.parametrize("shape", GRID_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_triton_launch_grid_fits_cuda_limits(monkeypatch, shape):
    """Every kernel launched for a forward + backward (statistics, finalize, formula, gradient; Lovász keys, counts,
    weights, gradient; the distance maps' min-plus passes) on meta tensors of the workload's shape (nothing is
    allocated; the kernels are replaced by recorders of their grids)."""
    pytest.importorskip("triton")
    import torch

    from seglosses import _edt_device, _triton, _triton_lovasz, _triton_whole

    grids: list[tuple[str, tuple[int, ...]]] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid: tuple[int, ...]) -> object:
            grids.append((self.name, tuple(int(g) for g in grid)))
            return lambda *args, **kwargs: None

    for module in (_triton, _triton_whole, _triton_lovasz, _edt_device):
        for name in dir(module):
            if name.endswith("_kernel"):
                monkeypatch.setattr(module, name, Recorder(f"{module.__name__}.{name}"))
    monkeypatch.setattr(_edt_device, "kernel_runs", lambda device: True)
    n, c, *spatial = shape
    m = math.prod(spatial)
    x = torch.empty((n, c, m), device="meta")
    t = torch.empty((n, m), dtype=torch.int64, device="meta")
    g = torch.empty((n, c, m), device="meta")
    stats = torch.empty((n, c), device="meta")
    pix = torch.empty((n,), device="meta")
    scale = torch.empty((1,), device="meta")
    _triton.softmax_index_forward(x, t, None, None, 0.0, None, need_pixel=True, ignore=255)
    _triton.softmax_index_backward(x, t, None, None, 0.0, None, stats, stats, pix, scale=scale, ignore=255)
    _triton.sigmoid_forward(x, g, None, None, 0.0, need_pixel=True)
    _triton.sigmoid_backward(x, g, None, None, 0.0, stats, stats, pix, scale=scale)
    _triton_whole.whole_loss(stats, stats, stats, pix, pix, None, (1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0), 0, 1.0,
                             skip_first=False, per_image=False, mean=True)  # fmt: skip
    _triton_whole.whole_loss(stats, stats, stats, pix, pix, None, (1.0, 0, 0, 0, 0, 1.0, 1.0, 1.0), 3, 0.0,
                             skip_first=False, per_image=True, mean=True)  # fmt: skip
    for per_image in (False, True):
        rows = torch.empty((n * c,) if per_image else (c,), device="meta")
        _, _, w = _triton_lovasz.lovasz_forward(x, t, None, None, hinge=False, per_image=per_image)
        _triton_lovasz.lovasz_backward(x, t, w, rows, per_image=per_image)
        _triton_lovasz.lovasz_forward(x, None, g, None, hinge=True, per_image=per_image)
    masks = torch.empty((n * c, *spatial), dtype=torch.bool, device="meta")
    _edt_device.maps_on_device(masks, [1.0] * len(spatial), "signed", torch.float32)
    launched = {name for name, _ in grids}
    assert len(launched) == 13, sorted(launched)  # every kernel of the four modules was launched
    for name, grid in grids:
        assert 1 <= len(grid) <= 3, (name, grid)
        assert min(grid) >= 1, (name, grid)
        assert grid[0] <= 2**31 - 1, (name, grid)
        assert all(v <= 65535 for v in grid[1:]), (name, grid)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
