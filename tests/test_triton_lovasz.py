"""The Lovász Triton kernels equal the operator's PyTorch twin, under ``TRITON_INTERPRET=1``.

As in tests/test_triton.py, the kernels run in one subprocess (this file run as a script) that sets
``TRITON_INTERPRET`` before importing anything, evaluates every case on tiny shapes with tiles of 16 elements (every
row spans several tiles, so the prefix sums across tiles and every mask edge are used), and prints one JSON line of
maximal differences. The twin (:func:`seglosses.functional.lovasz.lovasz_rows_twin`) is itself pinned to the NumPy
reference by tests/test_lovasz.py. Skipped where triton is not installed.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

import pytest

# (name, shape (N, C, M), options): kind softmax (class indices), hinge (logits, 0/1 target) or flat (probabilities)
CASES = {
    "softmax": ((2, 3, 37), {"kind": "softmax"}),
    "softmax_masked": ((2, 3, 37), {"kind": "softmax", "masked": True}),
    "softmax_c5_int32": ((2, 5, 23), {"kind": "softmax", "masked": True, "int32": True}),
    "softmax_float32": ((2, 3, 37), {"kind": "softmax", "masked": True, "float32": True}),
    "hinge": ((2, 2, 37), {"kind": "hinge"}),
    "hinge_masked": ((2, 3, 29), {"kind": "hinge", "masked": True}),
    "flat_masked": ((2, 2, 37), {"kind": "flat", "masked": True}),
    "no_positive_row": ((2, 2, 19), {"kind": "hinge", "empty_channel": True}),
    "binary_one_tile": ((2, 1, 9), {"kind": "hinge", "masked": True}),
}
OUTPUTS = ("value", "positives", "W", "grad")
BLOCK = 16


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from seglosses import _native, _ops, _triton_lovasz
    from seglosses.functional.lovasz import lovasz_rows_twin

    _native.set_native(False)  # the PyTorch twin is the reference
    results: dict[str, float] = {}

    def err(a: torch.Tensor, b: torch.Tensor) -> float:
        if a.shape != b.shape:
            return float("inf")
        a, b = a.double(), b.double()
        both_nan = torch.isnan(a) & torch.isnan(b)
        diff = torch.where(both_nan, torch.zeros_like(a), (a - b).abs())
        return float(torch.nan_to_num(diff, nan=float("inf")).max()) if diff.numel() else 0.0

    for name, ((n, c, m), opt) in CASES.items():
        for per_image in (False, True):
            key = f"{name}/{'per_image' if per_image else 'batch'}"
            g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            dtype = torch.float32 if opt.get("float32") else torch.float64
            x = (torch.randn(n, c, m, generator=g, dtype=torch.float64) * 2).to(dtype)
            t = tgt = valid = None
            if opt["kind"] == "softmax":
                t = torch.randint(0, c, (n, m), generator=g)
                if opt.get("masked"):
                    valid = (torch.rand(n, m, generator=g) > 0.3).to(dtype)
                z = x
            else:
                tgt = (torch.rand(n, c, m, generator=g) > 0.5).to(dtype)
                if opt.get("empty_channel"):
                    tgt[:, 1] = 0.0
                if opt.get("masked"):
                    valid = (torch.rand(n, c, m, generator=g) > 0.3).to(dtype)
                z = x if opt["kind"] == "hinge" else torch.sigmoid(x)
            hinge = opt["kind"] == "hinge"
            t_k = t.int() if (t is not None and opt.get("int32")) else t
            value, positives, weights = _triton_lovasz.lovasz_forward(
                z, t_k, tgt, valid, hinge=hinge, per_image=per_image, block_m=BLOCK, block_l=BLOCK, chunk_elements=1
            )  # chunk_elements=1: the rows are sorted one at a time
            r_value, r_pos, r_w_ncm, r_lse = lovasz_rows_twin(z, t, tgt, valid, hinge=hinge, per_image=per_image)
            r_w = r_w_ncm.reshape(-1) if per_image else r_w_ncm.transpose(0, 1).reshape(-1)  # the rows' layout
            scale = torch.randn(r_value.shape, generator=g, dtype=torch.float64).to(dtype)
            grad = _triton_lovasz.lovasz_backward(z, t_k, weights, scale, per_image=per_image, block_m=BLOCK)
            r_grad = _ops._lovasz_bwd_twin(z, t, r_w_ncm, r_lse, scale, per_image)
            for out, a, b in zip(
                OUTPUTS, (value, positives, weights, grad), (r_value, r_pos, r_w, r_grad), strict=True
            ):
                results[f"{key}/{out}"] = err(a, b)
                results[f"{key}/{out}/dtype"] = float(a.dtype != b.dtype)

    # ties (every error equal: all-0.5 probabilities): the weights follow the position order, as the twin's stable
    # sort and Berman et al.'s reference
    zt = torch.full((2, 1, 8), 0.5, dtype=torch.float64)
    gt = torch.tensor([[0, 1, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 1, 1, 0]], dtype=torch.float64).view(2, 1, 8)
    seen: list[object] = []  # the Triton path asks torch.sort for a stable sort (the CPU's is stable anyway)
    real_sort = torch.sort

    def recording_sort(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("stable"))
        return real_sort(*args, **kwargs)  # type: ignore[call-overload]

    for per_image in (False, True):
        torch.sort = recording_sort  # type: ignore[assignment]
        try:
            _, _, w_t = _triton_lovasz.lovasz_forward(
                zt, None, gt, None, hinge=False, per_image=per_image, block_m=BLOCK, block_l=BLOCK
            )
        finally:
            torch.sort = real_sort  # type: ignore[assignment]
        _, _, w_r, _ = lovasz_rows_twin(zt, None, gt, None, hinge=False, per_image=per_image)
        results[f"ties/{per_image}"] = err(w_t, w_r.reshape(-1) if per_image else w_r.transpose(0, 1).reshape(-1))
    results["ties/stable_flag"] = float(not seen or not all(v is True for v in seen))

    # value-check counters: a NaN logit or a bad class index at a kept pixel poisons the rows that hold it only
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 37, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 37), generator=g)
    valid = torch.ones(2, 37, dtype=torch.float64)
    bad = t.clone()
    bad[1, 20] = 3

    def rows(tt: torch.Tensor, vv: torch.Tensor | None, xx: torch.Tensor, per_image: bool) -> torch.Tensor:
        value, _, _ = _triton_lovasz.lovasz_forward(
            xx, tt, None, vv, hinge=False, per_image=per_image, block_m=BLOCK, block_l=BLOCK
        )
        return value

    v = rows(bad, valid, x, True).view(2, 3)
    results["counter/bad_index/per_image"] = float(
        not (bool(torch.isnan(v[1]).all()) and bool(torch.isfinite(v[0]).all()))
    )
    results["counter/bad_index/batch"] = float(not bool(torch.isnan(rows(bad, valid, x, False)).all()))
    ignored = valid.clone()
    ignored[1, 20] = 0.0  # an out-of-range value at an ignored pixel is not counted
    results["counter/bad_index_ignored"] = float(not bool(torch.isfinite(rows(bad, ignored, x, True)).all()))
    xn = x.clone()
    xn[0, 1, 3] = float("nan")
    v = rows(t, None, xn, True).view(2, 3)
    results["counter/nan_logit"] = float(not (bool(torch.isnan(v[0]).all()) and bool(torch.isfinite(v[1]).all())))

    # the whole loss through the operator with its CUDA implementation (the Triton kernels) registered for the CPU:
    # the dispatch, guards and glue of the GPU path against the NumPy reference (values and finite differences)
    import numpy as np

    import seglosses.functional as SF
    from reference_lovasz import lovasz_loss as ref_lovasz
    from test_lovasz import IGNORE, MODES_FROM_LOGITS, make_lovasz_case

    _ops.triton_runs = lambda device: True  # type: ignore[assignment]
    torch.library.register_kernel("seglosses::lovasz_fwd", "cpu", _ops._lovasz_fwd_cuda)
    torch.library.register_kernel("seglosses::lovasz_bwd", "cpu", _ops._lovasz_bwd_cuda)
    for mode, from_logits in MODES_FROM_LOGITS:
        for per_image in (False, True):
            key = f"loss/{mode}/{'logits' if from_logits else 'probabilities'}/{'per_image' if per_image else 'batch'}"
            x, t, x_np, t_np = make_lovasz_case(mode, from_logits=from_logits, ignore=True, absent=True, seed=15)
            kw = {"mode": mode, "from_logits": from_logits, "per_image": per_image, "ignore_index": IGNORE}
            xg = x.clone().requires_grad_(True)
            out = SF.lovasz_loss(xg, t, **kw)
            out.backward()
            expected = ref_lovasz(x_np, t_np, **kw)
            # two directional derivatives of the reference (central differences; the loss is piecewise linear)
            rng = np.random.default_rng(len(key))
            slopes = []
            for _ in range(2):
                v = rng.normal(size=x_np.shape)
                h = 1e-6
                fd = (ref_lovasz(x_np + h * v, t_np, **kw) - ref_lovasz(x_np - h * v, t_np, **kw)) / (2 * h)
                slopes.append(abs(float((xg.grad.numpy() * v).sum()) - fd))
            results[f"{key}/value"] = abs(float(out) - expected) / max(abs(expected), 1e-12)
            results[f"{key}/grad"] = max(slopes)
    # found by fuzzing: a bad class index at the only kept pixel (no class present otherwise) left the loss finite,
    # its NaN rows dropped as absent classes; it reads as class 0 (present), as the guarded indices of the other paths
    import seglosses

    seglosses.set_value_checks("never")  # as on a GPU: the kernels' counters, no host check
    for per_image in (False, True):
        for bad_value in (3, 200):
            t = torch.zeros(2, 5, 7, dtype=torch.uint8)  # every pixel ignored (ignore_index=0, a class index)...
            t[1, 2, 3] = bad_value  # ...but this one, outside [0, C)
            out = SF.lovasz_loss(x.new_zeros(2, 3, 5, 7).normal_(), t, mode="multiclass", ignore_index=0,
                                 per_image=per_image)  # fmt: skip
            results[f"counter/bad_only_kept/{per_image}/{bad_value}"] = float(not bool(torch.isnan(out)))
    seglosses.set_value_checks("cpu")
    print("RESULTS " + json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    pytest.importorskip("triton")
    from helpers import run_interpreted

    return run_interpreted(str(Path(__file__).resolve()))


KEYS = [f"{name}/{layout}/{out}" for name in CASES for layout in ("batch", "per_image") for out in OUTPUTS]


@pytest.mark.parametrize("key", KEYS)
def test_triton_lovasz_equals_pytorch_twin(interpreted, key):
    name = key.split("/")[0]
    tol = 1e-5 if CASES[name][1].get("float32") else 1e-12
    assert key in interpreted
    assert interpreted[f"{key}/dtype"] == 0.0, f"{key}: dtype differs from the twin's"
    assert interpreted[key] < tol, f"{key}: max difference {interpreted[key]:.3g}"


LOSS_KEYS = [
    f"loss/{mode}/{kind}/{layout}"
    for mode in ("binary", "multiclass", "multilabel")
    for kind in ("logits", "probabilities")
    for layout in ("batch", "per_image")
]


@pytest.mark.parametrize("key", LOSS_KEYS)
def test_lovasz_loss_through_the_triton_operator_matches_reference(interpreted, key):
    """Value (1e-9 relative) and gradient (two directional finite differences of the NumPy reference, 1e-6)."""
    assert interpreted[f"{key}/value"] < 1e-9, interpreted[f"{key}/value"]
    assert interpreted[f"{key}/grad"] < 1e-6, interpreted[f"{key}/grad"]


@pytest.mark.parametrize(
    "key",
    [
        "counter/bad_index/per_image",
        "counter/bad_index/batch",
        "counter/bad_index_ignored",
        "counter/nan_logit",
        *[f"counter/bad_only_kept/{p}/{b}" for p in (False, True) for b in (3, 200)],
    ],
)
def test_triton_lovasz_value_check_counters(interpreted, key):
    assert interpreted[key] == 0.0, key


@pytest.mark.parametrize("per_image", [False, True])
def test_triton_lovasz_ties_follow_position_order(interpreted, per_image):
    assert interpreted[f"ties/{per_image}"] < 1e-12
    assert interpreted["ties/stable_flag"] == 0.0, "the Triton Lovasz path must ask torch.sort for stable=True"


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
