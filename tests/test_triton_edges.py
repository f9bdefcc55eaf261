"""Edge cases of the Triton kernels that the interpreter hides or the other Triton tests do not reach.

- **Large inputs**: a spatial size ``M`` past 2^31 (one image or channel of more than 2^31 pixels) must not wrap the
  tile offsets in int32. The interpreter cannot run every program of such a launch, so the worker runs only the last
  tiles (the program id is offset in the interpreter) over tensors of more than 2^31 elements that are never
  touched outside those tiles (the pages stay unallocated).
- **Specialisation**: on a GPU the launcher passes an integer argument equal to 1 as a constexpr and one past 2^31 as
  int64; the interpreter does neither, so every kernel is compiled ahead of time for sm_90 with those types.
- **Many classes** (up to 3000: the finalize block must stay within triton's 2^20 elements per tensor), 1-pixel and
  odd images, N = 1, every integer target dtype, bool targets, a negative ``ignore_index`` with uint8 targets,
  channels_last logits, an expanded (stride-0) target, an incoming gradient other than 1, a second call.
- **Devices**: Triton launches on the current CUDA device, so the operators make the input's device current.
- **No host synchronisation** on the Triton path (``Tensor.item``/``bool``/``float``/``int`` refused during a loss).

Values are checked against the NumPy references of tests/reference.py and gradients against their central finite
differences (float64). Skipped where triton is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION:UserWarning")

#: Classes of the many-classes cases (3000: a 4096-wide class block, 8 x 4096 finalize columns).
MANY_CLASSES = (2, 3, 17, 33, 150, 256, 3000)
#: Losses through the operators' CUDA implementations: (key, loss, mode, shape, target dtype, ignore_index, options).
LOSS_CASES = (
    ("uint8_ignore", "dice_ce_loss", "multiclass", (2, 3, 3, 5), "uint8", 255, {}),
    ("int8_ignore", "dice_ce_loss", "multiclass", (2, 3, 3, 5), "int8", -1, {}),
    ("int16", "dice_ce_loss", "multiclass", (2, 3, 3, 5), "int16", 255, {"per_image": True}),
    ("int32", "focal_loss", "multiclass", (2, 3, 3, 5), "int32", None, {"gamma": 2.0}),
    ("int64", "dice_ce_loss", "multiclass", (2, 3, 3, 5), "int64", 255, {"include_background": False}),
    ("uint8_negative_ignore", "dice_ce_loss", "multiclass", (2, 3, 3, 5), "uint8", -1, {}),
    ("bool_binary_n1_dim1", "dice_ce_loss", "binary", (1, 1, 1, 7), "bool", None, {}),
    ("one_pixel", "cross_entropy_loss", "multiclass", (1, 4, 1, 1), "int64", None, {}),
    ("classes_17", "focal_loss", "multiclass", (2, 17, 3, 3), "uint8", None, {"gamma": 1.5}),
    ("classes_33", "dice_loss", "multiclass", (1, 33, 2, 3), "int64", None, {}),
    ("multilabel_uint8_ignore", "dice_ce_loss", "multilabel", (2, 3, 3, 5), "uint8", 255, {}),
    ("channels_last_expanded", "dice_loss", "multiclass", (2, 3, 4, 5), "expanded", None, {}),
    ("label_smoothing", "cross_entropy_loss", "multiclass", (2, 3, 3, 5), "int32", None, {"label_smoothing": 0.1}),
)
#: The incoming gradient of the loss in every case (not 1: the coefficients are scaled in the kernels).
GRAD_SCALE = 3.7


def _run(flag: str) -> dict[str, float]:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), flag], capture_output=True, text=True, env=env, timeout=600
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0, f"worker {flag} exited {proc.returncode}: {proc.stderr[-3000:]}"
    assert lines, proc.stdout[-3000:]
    return dict(json.loads(lines[-1][len("RESULTS ") :]))


# ------------------------------------------------------------------------------------------------------------------
# workers (subprocesses under TRITON_INTERPRET=1)
# ------------------------------------------------------------------------------------------------------------------


def _softmax_reference(x: Any, t: Any, g_tp: Any, g_ps: Any, g_pix: Any) -> tuple[Any, ...]:  # pragma: no cover
    """NumPy float64: TP, P, G, the cross-entropy sum per image, and the gradient of sum g_tp TP + g_ps P + g_pix F."""
    import numpy as np

    z = x - x.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    onehot = (np.arange(x.shape[1])[None, :, None] == t[:, None, :]).astype(np.float64)
    tp, ps, gs = (p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)
    ce = -(np.log(p) * onehot).sum((1, 2))
    a = onehot * g_tp[:, :, None] + g_ps[:, :, None]  # dL/dp through TP and P
    grad = p * (a - (p * a).sum(1, keepdims=True)) + g_pix[:, None, None] * (p - onehot)
    return tp, ps, gs, ce, grad


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    import numpy as np
    import torch

    import seglosses
    import seglosses.functional as SF
    from reference import REFERENCES, numeric_grad
    from seglosses import _ops, _triton

    results: dict[str, float] = {}

    def rel(a: Any, b: Any) -> float:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))

    # many classes: the statistics, pixel sums and gradient of the kernels against NumPy (launch sizes as on a GPU)
    for c in MANY_CLASSES:
        g = torch.Generator().manual_seed(c)
        n, m = 2, 5
        x = torch.randn(n, c, m, generator=g, dtype=torch.float64) * 2
        t = torch.randint(0, c, (n, m), generator=g)
        g_tp, g_ps, g_pix = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((n, c), (n, c), (n,)))
        ref = _softmax_reference(x.numpy(), t.numpy(), g_tp.numpy(), g_ps.numpy(), g_pix.numpy())
        try:
            tp, ps, gs, _, pix, _ = _triton.softmax_index_forward(x, t, None, None, 0.0, None, need_pixel=True)
            grad = _triton.softmax_index_backward(x, t, None, None, 0.0, None, g_tp, g_ps, g_pix)
            errs = [rel(a, b) for a, b in zip((tp, ps, gs, pix, grad), ref, strict=True)]
        except Exception as e:  # noqa: BLE001 - reported as a failure of this case
            print(f"classes {c}: {type(e).__name__}: {e}"[:500], file=sys.stderr)
            errs = [float("inf")]
        results[f"classes/{c}"] = max(errs)

    # losses through the operators' CUDA implementations (the Triton kernels), as on a GPU: no host value check
    _ops.triton_runs = lambda device: True  # type: ignore[assignment]
    for op in ("softmax_index_fwd", "softmax_index_bwd", "sigmoid_dense_fwd", "sigmoid_dense_bwd",
               "whole_loss_fwd", "whole_loss_bwd"):  # fmt: skip
        torch.library.register_kernel(f"seglosses::{op}", "cpu", getattr(_ops, f"_{op}_cuda"))
    seglosses.set_value_checks("never")
    for key, name, mode, shape, dtype, ignore, options in LOSS_CASES:
        g = torch.Generator().manual_seed(len(key) * 31 + shape[1])
        n, c, h, w = shape
        x = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        if mode == "multiclass":
            t64 = torch.randint(0, c, (n, h, w), generator=g)
        else:
            t64 = (torch.rand(*shape, generator=g) > 0.5).long()
        if ignore is not None and ignore >= 0 or dtype == "int8":
            t64[torch.rand(t64.shape, generator=g) < 0.25] = ignore
        if dtype == "expanded":  # one target for every image (stride 0), channels_last logits
            t64 = t64[:1].expand(n, h, w)
            t_in = t64
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            t_in = t64.to(getattr(torch, dtype))
        kw = dict(options, mode=mode)
        if ignore is not None:
            kw["ignore_index"] = ignore
        # the reference sees the class values as integers (a uint8 255 is 255; a uint8 target holds no -1)
        t_np = t64.numpy()

        def ref_fn(xv: Any, kw: dict[str, Any] = kw, name: str = name, t_np: Any = t_np) -> float:
            return float(REFERENCES[name](xv, t_np, **kw))

        expected = ref_fn(x.numpy())
        # a C-ordered copy: numeric_grad steps through reshape(-1), a copy (no step) for channels_last memory
        expected_grad = numeric_grad(ref_fn, np.ascontiguousarray(x.numpy())) * GRAD_SCALE
        values = []
        for _ in range(2):  # a second call reuses whatever the first left behind
            xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
            out = getattr(SF, name)(xg, t_in, **kw)
            (out * GRAD_SCALE).backward()
            values.append(float(out.detach()))
        results[f"loss/{key}/value"] = abs(values[0] - expected) / max(abs(expected), 1e-12)
        results[f"loss/{key}/second_call"] = float(values[0] != values[1])
        results[f"loss/{key}/grad"] = rel(xg.grad, expected_grad)

    # no host synchronisation: the Triton path reads no tensor value on the host
    refused: list[str] = []

    def refuse(name: str) -> Any:
        def call(self: Any, *a: Any, **k: Any) -> Any:
            refused.append(name)
            raise RuntimeError(f"host read: Tensor.{name}")

        return call

    names = ("item", "__bool__", "__float__", "__int__", "tolist")
    saved = {nm: getattr(torch.Tensor, nm) for nm in names}
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 4, 4), generator=g).to(torch.uint8)
    t[0, 0, 0] = 255
    try:
        for nm in names:
            setattr(torch.Tensor, nm, refuse(nm))
        for fn in (SF.dice_ce_loss, SF.focal_loss, SF.generalized_dice_loss):
            fn(x, t, mode="multiclass", ignore_index=255).backward()
        SF.dice_loss(x[:, :1], t[:, None] > 0, mode="binary").backward()
    except RuntimeError as e:
        print(e, file=sys.stderr)
    finally:
        for nm, fn0 in saved.items():
            setattr(torch.Tensor, nm, fn0)
    results["sync/host_reads"] = float(len(refused))
    print("RESULTS " + json.dumps(results))


def _large_worker() -> None:  # pragma: no cover - runs in the subprocess
    """The last tiles of launches over ``M > 2^31`` pixels per image / channel, against NumPy on those tiles."""
    import numpy as np
    import torch
    import triton.language as tl
    from triton.runtime import interpreter

    from seglosses import _triton, _triton_lovasz

    offset = [0]

    def program_id(self: Any, axis: int) -> Any:  # the interpreter's program id, moved to the last programs
        return interpreter.TensorHandle(
            np.array([self.grid_idx[axis] + (offset[0] if axis == 0 else 0)], dtype=np.int32), tl.int32
        )

    interpreter.InterpreterBuilder.create_get_program_id = program_id
    results: dict[str, float] = {}
    m = 2**31 + 1536  # passed as int64; the last tile starts past 2^31
    block = 1024
    tiles = -(-m // block)
    lo = (tiles - 2) * block  # the last two tiles: [lo, m)
    g = torch.Generator().manual_seed(0)
    xs = (torch.randn(2, m - lo, generator=g) * 3).to(torch.float16)
    ts = (torch.rand(m - lo, generator=g) > 0.5).to(torch.uint8)
    p_np = 1 / (1 + np.exp(-xs[0].double().numpy()))
    t_np = ts.double().numpy()
    edges = [(0, block), (block, m - lo)]  # the two tiles, relative to lo

    def err(a: Any, b: Any) -> float:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))

    # sigmoid, one channel of m elements: statistics and gradient
    x = torch.empty(m, dtype=torch.float16)  # never touched outside the last tiles
    tg = torch.empty(m, dtype=torch.uint8)
    x[lo:], tg[lo:] = xs[0], ts
    part = torch.zeros((1, tiles, 1, 8), dtype=torch.float32)
    offset[0] = tiles - 2
    args = (1, m, tiles, 1.0, 1.0, 0.0, 0.0, 0, 0.0)
    flags = {"HAS_VALID": False, "HAS_IGNORE": False, "LS": False, "HAS_CW": False, "NEED_PIXEL": True}
    try:
        _triton._sigmoid_stats_kernel[(2,)](
            x.view(1, 1, m), tg.view(1, 1, m), x, x, part, *args, **flags, SQUARED=False, ACC=tl.float32,
            BLOCK_M=block,
        )  # fmt: skip
        got = part[0, tiles - 2 :, 0, :3].double().numpy()
        want = [[(p_np * t_np)[a:b].sum(), p_np[a:b].sum(), t_np[a:b].sum()] for a, b in edges]
        results["sigmoid/stats"] = err(got, want)
        out = torch.empty(m, dtype=torch.float16)
        coef = torch.tensor([0.5], dtype=torch.float32)
        _triton._sigmoid_grad_kernel[(2,)](
            x.view(1, 1, m), tg.view(1, 1, m), x, coef, coef * -2, coef * 3, x, x, out, *args,
            HAS_VALID=False, HAS_IGNORE=False, LS=False, HAS_CW=False, NEED_STATS=True, HAS_SCALE=False,
            NEED_PIXEL=True, SQUARED=False, ACC=tl.float32, BLOCK_M=block,
        )  # fmt: skip
        want_grad = p_np * (1 - p_np) * (-1.0 + t_np * 0.5) + 1.5 * (p_np - t_np)
        results["sigmoid/grad"] = err(out[lo:].double().numpy(), want_grad)
        del out
    except Exception as e:  # noqa: BLE001
        print(f"sigmoid: {e}"[:500], file=sys.stderr)
        results["sigmoid/stats"] = results["sigmoid/grad"] = float("inf")
    del x, tg, part

    # softmax over 2 classes, one image of m pixels: statistics and gradient
    x = torch.empty((2, m), dtype=torch.float16)
    tg = torch.empty(m, dtype=torch.uint8)
    x[:, lo:], tg[lo:] = xs, ts
    z = xs.double().numpy()
    p1 = 1 / (1 + np.exp(z[0] - z[1]))  # softmax probability of class 1
    pr = np.stack([1 - p1, p1])
    oh = np.stack([1 - t_np, t_np])
    bm = _triton.softmax_block_m(2)
    tiles_s = -(-m // bm)
    lo_s = (tiles_s - 2) * bm
    assert lo_s == lo
    assert bm == block
    part = torch.zeros((1, tiles_s, 2, 8), dtype=torch.float32)
    offset[0] = tiles_s - 2
    sargs = (2, m, tiles_s, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0)
    sflags = {"HAS_VALID": False, "HAS_IGNORE": False, "HAS_W": False, "HAS_GPIX": False, "BG_SPLIT": False,
              "HAS_CW": False, "LS": False}  # fmt: skip
    try:
        _triton._softmax_index_stats_kernel[(2,)](
            x.view(1, 2, m), tg.view(1, m), x, x, x, x, part, *sargs, **sflags, KEPT_W=False, GAMMA_ZERO=True,
            NEED_PIXEL=True, SQUARED=False, ACC=tl.float32, BLOCK_M=bm, BLOCK_C=2,
        )  # fmt: skip
        got = part[0, tiles_s - 2 :, :, :3].double().numpy()
        want = [[[(pr[c] * oh[c])[a:b].sum(), pr[c][a:b].sum(), oh[c][a:b].sum()] for c in range(2)] for a, b in edges]
        results["softmax/stats"] = err(got, want)
        ce = -(np.log(pr) * oh).sum(0)
        results["softmax/pixel"] = err(part[0, tiles_s - 2 :, 0, 4].double().numpy(), [ce[a:b].sum() for a, b in edges])
        out = torch.empty((2, m), dtype=torch.float16)
        g_tp = torch.tensor([[0.3, -0.7]], dtype=torch.float32)
        g_ps = torch.tensor([[1.1, 0.4]], dtype=torch.float32)
        g_pix = torch.tensor([0.9], dtype=torch.float32)
        _triton._softmax_index_grad_kernel[(2,)](
            x.view(1, 2, m), tg.view(1, m), x, x, x, x, g_tp, g_ps, g_pix, x, out, *sargs, **sflags,
            GAMMA_ZERO=True, NEED_STATS=True, HAS_SCALE=False, NEED_PIXEL=True, SQUARED=False, ACC=tl.float32,
            BLOCK_M=bm, BLOCK_C=2,
        )  # fmt: skip
        a = oh * g_tp.double().numpy().T + g_ps.double().numpy().T
        want_grad = pr * (a - (pr * a).sum(0)) + 0.9 * (pr - oh)
        results["softmax/grad"] = err(out[:, lo:].double().numpy(), want_grad)
        del out
    except Exception as e:  # noqa: BLE001
        print(f"softmax: {e}"[:500], file=sys.stderr)
        results["softmax/stats"] = results["softmax/pixel"] = results["softmax/grad"] = float("inf")
    del x, tg, part

    # Lovász keys of a dense input (hinge): one channel of m elements
    z = torch.empty(m, dtype=torch.float16)
    tg = torch.empty(m, dtype=torch.uint8)
    z[lo:], tg[lo:] = xs[0], ts
    keys = torch.empty(m, dtype=torch.float32)
    keys[lo - 4 : lo] = 7.0  # a sentinel just before the tiles: must stay
    flag = torch.zeros((1, tiles), dtype=torch.int32)
    offset[0] = tiles - 2
    try:
        _triton_lovasz._keys_dense_kernel[(2,)](
            z.view(1, 1, m), tg.view(1, 1, m), z, keys, flag, 1, m, m, tiles,
            HAS_VALID=False, HINGE=True, PER_IMAGE=True, ACC=tl.float32, BLOCK_M=block,
        )  # fmt: skip
        want_keys = 1 - xs[0].double().numpy() * np.where(t_np > 0.5, 1.0, -1.0)
        results["lovasz/keys"] = err(keys[lo:].double().numpy(), want_keys)
        results["lovasz/sentinel"] = float(not bool((keys[lo - 4 : lo] == 7.0).all()))
    except Exception as e:  # noqa: BLE001
        print(f"lovasz: {e}"[:500], file=sys.stderr)
        results["lovasz/keys"] = results["lovasz/sentinel"] = float("inf")
    print("RESULTS " + json.dumps(results))


# ------------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    return _run("--worker")


@pytest.fixture(scope="module")
def large() -> dict[str, float]:
    return _run("--large")


@pytest.mark.parametrize("c", MANY_CLASSES)
def test_many_classes_statistics_and_gradient_match_numpy(interpreted: dict[str, float], c: int) -> None:
    """Register and finalize blocks chosen from C (up to 3000 classes: the finalize block had 2^21 elements)."""
    assert interpreted[f"classes/{c}"] < 1e-12, interpreted[f"classes/{c}"]


@pytest.mark.parametrize("key", [case[0] for case in LOSS_CASES])
def test_losses_through_the_triton_operators_match_numpy(interpreted: dict[str, float], key: str) -> None:
    """Value against the NumPy reference, gradient (of the loss times 3.7) against its finite differences."""
    assert interpreted[f"loss/{key}/value"] < 1e-10, interpreted[f"loss/{key}/value"]
    assert interpreted[f"loss/{key}/grad"] < 1e-6, interpreted[f"loss/{key}/grad"]
    assert interpreted[f"loss/{key}/second_call"] == 0.0


def test_triton_path_reads_no_tensor_on_the_host(interpreted: dict[str, float]) -> None:
    assert interpreted["sync/host_reads"] == 0.0


@pytest.mark.parametrize(
    "key", ["sigmoid/stats", "sigmoid/grad", "softmax/stats", "softmax/pixel", "softmax/grad", "lovasz/keys"]
)
def test_spatial_size_past_int32_keeps_its_offsets(large: dict[str, float], key: str) -> None:
    """The last tiles of an image of 2^31 + 1536 pixels read and write their own elements (float16 inputs)."""
    assert large[key] < 2e-3, large[key]  # float32 sums of float16 inputs; wrapped offsets give garbage or a crash


def test_spatial_size_past_int32_writes_nothing_outside_its_tiles(large: dict[str, float]) -> None:
    assert large["lovasz/sentinel"] == 0.0


def test_finalize_block_stays_small() -> None:
    """At most 8192 elements per finalize step (and within triton's 2^20 per tensor) for any class count."""
    from seglosses import _triton

    for c in (1, 2, 3, 16, 17, 150, 256, 1000, 3000, 65536):
        ck = 8 * _triton._next_pow2(c)
        bt = _triton.finalize_block_t(ck)
        assert bt >= 1
        assert bt * ck <= max(8192, ck) <= 2**20, (c, bt, ck)
    assert _triton.finalize_block_t(8 * 4) == 64  # few classes: 64 tiles per step as before


# ------------------------------------------------------------------------------------------------------------------
# ahead-of-time compilation with the launcher's specialisations (no GPU needed)
# ------------------------------------------------------------------------------------------------------------------

#: Integer scalar arguments of the kernels.
_INTS = {"C", "M", "L", "T", "N", "R0"}
#: Pointer element types by argument name (others: float32).
_POINTERS = {"t_ptr": "*u8", "idx_ptr": "*i64", "flag_ptr": "*i32", "cnt_ptr": "*i32", "before_ptr": "*i64",
             "total_ptr": "*i64"}  # fmt: skip
_BLOCKS = {"BLOCK_M": 32, "BLOCK_C": 4, "BLOCK": 64, "BLOCK_T": 8, "BLOCK_CK": 32}


def _kernels() -> dict[str, Any]:
    from seglosses import _triton, _triton_lovasz, _triton_whole

    names = {
        _triton: ("_softmax_index_stats_kernel", "_finalize_kernel", "_softmax_index_grad_kernel",
                  "_sigmoid_stats_kernel", "_sigmoid_grad_kernel"),
        _triton_lovasz: ("_keys_softmax_kernel", "_keys_dense_kernel", "_count_kernel", "_weights_kernel",
                         "_softmax_grad_kernel"),
        _triton_whole: ("_whole_kernel", "_gdl_kernel"),
    }  # fmt: skip
    return {name: getattr(module, name) for module, group in names.items() for name in group}


@pytest.mark.parametrize("ints", ["one", "int64"])
@pytest.mark.parametrize("name", sorted(_kernels()) if triton is not None else [])
def test_kernel_compiles_with_the_launchers_integer_specialisations(name: str, ints: str) -> None:
    """Every kernel compiles for sm_90 with each integer argument as the launcher types it: a 1 becomes a constexpr
    (a one-class softmax, a one-pixel image, a single tile or image), a value past 2^31 - 1 an int64; every flag set."""
    pytest.importorskip("triton.backends.nvidia")
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernels()[name]
    signature: dict[str, str] = {}
    constexprs: dict[tuple[int, ...], Any] = {}
    for i, p in enumerate(fn.params):
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            if p.name == "ACC":
                constexprs[(i,)] = tl.float32
            elif p.name in _BLOCKS:
                constexprs[(i,)] = _BLOCKS[p.name]
            elif p.name == "TERM":
                constexprs[(i,)] = 2
            else:
                constexprs[(i,)] = True
        elif p.name.endswith("_ptr"):
            signature[p.name] = _POINTERS.get(p.name, "*fp32")
        elif p.annotation_type:
            signature[p.name] = p.annotation_type
        elif p.name in _INTS and ints == "one":
            signature[p.name] = "constexpr"
            constexprs[(i,)] = 1
        elif p.name in _INTS:
            signature[p.name] = "i64"
        else:
            signature[p.name] = "fp32"
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                            target=GPUTarget("cuda", 90, 32))  # fmt: skip
    assert ".entry" in kernel.asm["ptx"]


# ------------------------------------------------------------------------------------------------------------------
# the input's CUDA device is current during the launches
# ------------------------------------------------------------------------------------------------------------------

_CUDA_IMPLS = ("softmax_index_fwd", "softmax_index_bwd", "sigmoid_dense_fwd", "sigmoid_dense_bwd", "lovasz_fwd",
               "lovasz_bwd", "whole_loss_fwd", "whole_loss_bwd")  # fmt: skip


class _Launched(Exception):
    pass


class _DeviceSpy:
    """``torch.cuda.device`` replaced by a context that records the devices entered; ``launcher`` records whether a
    launch ran inside one (then raises :class:`_Launched`); ``on_cuda1`` makes a CPU tensor that reports cuda:1."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch

        self.entered: list[Any] = []
        self.seen: list[int] = []
        active = [0]
        spy = self

        class FakeDevice:
            def __init__(self, device: Any) -> None:
                self.device = torch.device(device)

            def __enter__(self) -> None:
                spy.entered.append(self.device)
                active[0] += 1

            def __exit__(self, *exc: object) -> None:
                active[0] -= 1

        def launcher(*args: Any, **kwargs: Any) -> Any:
            spy.seen.append(active[0])
            raise _Launched

        class OnCuda1(torch.Tensor):
            """A CPU tensor that reports cuda:1 as its device (no CUDA needed)."""

            @property
            def device(self) -> torch.device:  # type: ignore[override]
                return torch.device("cuda", 1)

        self.launcher = launcher
        self.on_cuda1 = lambda t: t.as_subclass(OnCuda1)
        monkeypatch.setattr(torch.cuda, "device", FakeDevice)

    def check(self) -> None:
        import torch

        assert self.entered == [torch.device("cuda", 1)], self.entered
        assert self.seen == [1], "the launch ran outside the device context"


@pytest.mark.parametrize("op", _CUDA_IMPLS)
def test_cuda_implementations_make_the_inputs_device_current(monkeypatch: pytest.MonkeyPatch, op: str) -> None:
    """Triton launches on the current device: each operator's CUDA implementation enters ``torch.cuda.device`` of its
    input (a tensor on cuda:1 while cuda:0 is current) before it reaches a Triton launcher."""
    import torch

    from seglosses import _ops, _triton, _triton_lovasz, _triton_whole

    spy = _DeviceSpy(monkeypatch)
    monkeypatch.setattr(_ops, "triton_runs", lambda device: True)
    for module, fn in ((_triton, "softmax_index_forward"), (_triton, "softmax_index_backward"),
                       (_triton, "sigmoid_forward"), (_triton, "sigmoid_backward"),
                       (_triton_lovasz, "lovasz_forward"), (_triton_lovasz, "lovasz_backward"),
                       (_triton_whole, "whole_loss")):  # fmt: skip
        monkeypatch.setattr(module, fn, spy.launcher)
    x = spy.on_cuda1(torch.zeros(1, 2, 3))
    t = torch.zeros(1, 3, dtype=torch.long)
    z2 = torch.zeros(1, 2)
    z1 = torch.zeros(1)
    region = [1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    pixel = [1.0, 0.0, float("nan")] + [float("nan")] * 4 + [0.0, 0.0, 0.0]
    calls = {
        "softmax_index_fwd": (x, t, None, None, 0.0, None, True, True),
        "softmax_index_bwd": (x, t, None, None, 0.0, None, z2, z2, z2, z2, z1, True, True),
        "sigmoid_dense_fwd": (x, x, None, None, 0.0, True, True, False),
        "sigmoid_dense_bwd": (x, x, None, None, 0.0, z2, z2, z1, True, True, False),
        "lovasz_fwd": (x, t, None, None, False, True),
        "lovasz_bwd": (x, t, z1, z1, z2, True),
        "whole_loss_fwd": (x, t, None, None, None, None, None, None, region, 0, pixel, False, False, True, None),
        "whole_loss_bwd": (x, t, None, None, None, None, None, z2, z2, z1, pixel, z1, False, None),
    }
    with pytest.raises(_Launched):
        getattr(_ops, f"_{op}_cuda")(*calls[op])
    spy.check()


def test_distance_maps_cuda_implementation_makes_the_inputs_device_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """The distance-map operator's CUDA implementation (Triton passes) also runs with its input's device current."""
    import torch

    from seglosses import _edt_device, _ops_distance

    spy = _DeviceSpy(monkeypatch)
    monkeypatch.setattr(_edt_device, "maps_on_device", spy.launcher)
    masks = spy.on_cuda1(torch.zeros(2, 3, 4, dtype=torch.bool))
    with pytest.raises(_Launched):
        _ops_distance._distance_maps_cuda(masks, [1.0, 1.0], "signed", torch.float32)
    spy.check()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if sys.argv[1:] == ["--worker"]:
        _worker()
    elif sys.argv[1:] == ["--large"]:
        _large_worker()
