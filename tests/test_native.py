"""The native CPU kernels (``_native.cpp``) and the pure-PyTorch fallback compute the same numbers.

The rest of the suite runs with the native kernels where they build (the default); these tests pin the
fallback to them output by output and gradient by gradient, so both paths are checked against the references.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import seglosses
from seglosses import _fused, _native

MULTILABEL_UNSUPPORTED = (
    "unified_focal",
    "asymmetric_focal",
    "symmetric_focal",
    "asymmetric_focal_tversky",
    "symmetric_focal_tversky",
)
MULTICLASS_ONLY = ("generalized_wasserstein_dice",)
needs_native = pytest.mark.skipif(_native.library() is None, reason=f"native kernels: {_native.status()}")


@pytest.fixture
def restore_native():
    yield
    _native.set_native(True)


def _both(fn, *tensors):
    """Run fn on fresh leaf copies of ``tensors`` with and without the native kernels: (outputs, grads) each."""
    results = []
    for enabled in (True, False):
        _native.set_native(enabled)
        leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
        outs = fn(*leaves)
        outs = outs if isinstance(outs, tuple) else (outs,)
        g = torch.Generator().manual_seed(7)
        total = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs if o.requires_grad)
        total.backward()
        results.append(([o.detach() for o in outs], [leaf.grad for leaf in leaves]))
    _native.set_native(True)
    return results


def _close(a, b, dtype):
    tol = {"rtol": 1e-11, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    torch.testing.assert_close(a, b, **tol)


def test_native_builds_where_a_compiler_exists():
    """A machine with a C++ compiler uses the kernels: a broken build must not fall back silently in CI."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler: the PyTorch path is the only one")
    assert _native.status() == "on", _native.status()


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("parts", ["stats", "pixel", "both"])
@pytest.mark.parametrize("shape", [(1, 2, 7), (3, 5, 1000), (2, 4, 513)])
def test_softmax_index_native_equals_torch(dtype, masked, parts, shape):
    n, c, m = shape
    g = torch.Generator().manual_seed(n * 100 + c * 10 + m)
    x = torch.randn(shape, generator=g, dtype=dtype) * 5
    t = torch.randint(0, c, (n, m), generator=g)
    valid = (torch.rand((n, m), generator=g) > 0.3).to(dtype) if masked else None
    need_stats, need_pixel = parts in ("stats", "both"), parts in ("pixel", "both")
    wpix = torch.rand((n, m), generator=g, dtype=dtype) if need_pixel else None
    gamma = torch.rand((n, m), generator=g, dtype=dtype) * 3 if parts == "both" else 2.0

    def run(xx):
        return _fused.softmax_index(xx, t, valid, wpix=wpix, gamma=gamma, need_stats=need_stats, need_pixel=need_pixel)

    (out_n, grad_n), (out_t, grad_t) = _both(run, x)
    for a, b in zip(out_n, out_t, strict=True):
        _close(a, b, dtype)
    _close(grad_n[0], grad_t[0], dtype)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "pixel",
    [None, (None, 0.0), (0.25, 2.0), (0.7, 0.5), (None, 3.0), (0.5, 1.0), (0.6, 0.5, True), (0.4, 2.0, True)],
)
@pytest.mark.parametrize("shape", [(1, 1, 5), (2, 3, 1000), (4, 1, 300)])
def test_sigmoid_dense_native_equals_torch(dtype, masked, pixel, shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g, dtype=dtype) * 6
    target = torch.rand(shape, generator=g, dtype=dtype)
    valid = (torch.rand(shape, generator=g) > 0.3).to(dtype) if masked else None
    alpha, gamma, pos0 = (*pixel, False)[:3] if pixel is not None else (None, 0.0, False)

    def run(xx):
        return _fused.sigmoid_dense(
            xx, target, valid, alpha=alpha, gamma=gamma, need_pixel=pixel is not None, gamma_pos0=pos0
        )

    (out_n, grad_n), (out_t, grad_t) = _both(run, x)
    for a, b in zip(out_n, out_t, strict=True):
        _close(a, b, dtype)
    _close(grad_n[0], grad_t[0], dtype)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("focal", [(None, 0.0), (0.25, 2.0), (0.6, 0.5), (None, 3.0), (0.4, 1.5)])
def test_sigmoid_focal_native_equals_torch(dtype, masked, focal):
    g = torch.Generator().manual_seed(11)
    x = torch.randn((3, 2, 700), generator=g, dtype=dtype) * 8
    target = (torch.rand((3, 2, 700), generator=g) > 0.5).to(dtype)
    valid = (torch.rand((3, 2, 700), generator=g) > 0.3).to(dtype) if masked else None
    alpha, gamma = focal
    (out_n, grad_n), (out_t, grad_t) = _both(
        lambda xx: _fused.sigmoid_focal(xx, target, valid, alpha=alpha, gamma=gamma), x
    )
    _close(out_n[0], out_t[0], dtype)
    _close(grad_n[0], grad_t[0], dtype)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("name", seglosses.available_losses())
def test_every_loss_native_equals_torch(name, mode):
    if mode == "multilabel" and name in MULTILABEL_UNSUPPORTED:
        pytest.skip("multilabel raises for the unified focal family")
    if mode != "multiclass" and name in MULTICLASS_ONLY:
        pytest.skip(f"{name} takes multiclass input only")
    g = torch.Generator().manual_seed(3)
    c = {"multiclass": 4, "binary": 1, "multilabel": 3}[mode]
    x = torch.randn((2, c, 9, 31), generator=g) * 3
    if mode == "multiclass":
        t = torch.randint(0, c, (2, 9, 31), generator=g)
        t[0, :2] = -100  # ignored pixels
        kwargs = {"ignore_index": -100} if name != "lovasz" else {}
        if name == "lovasz":
            t[0, :2] = 0
    else:
        t = (torch.rand((2, c, 9, 31), generator=g) > 0.6).float()
        kwargs = {}
    if name == "generalized_wasserstein_dice":  # a required argument: the classes' distances (here all 1)
        kwargs["dist_matrix"] = 1.0 - torch.eye(c, dtype=torch.float64)
    loss = seglosses.get_loss(name, mode=mode, **kwargs)
    (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: loss(xx, t), x)
    _close(out_n[0], out_t[0], torch.float32)
    _close(grad_n[0], grad_t[0], torch.float32)


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_extreme_logits_same_on_both_paths():
    """|logit| up to 1e4, exp underflow and the sigmoid's two sides: the kernel's exp matches PyTorch's."""
    x = torch.tensor([[[-1e4, -120.0, -88.0, -87.5, -30.0, -1e-6, 0.0, 1e-6, 30.0, 87.5, 120.0, 1e4]]])
    x = torch.cat([x, x.flip(-1), x * 0.5], dim=1)  # (1, 3, 12)
    t = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]])
    (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: _fused.softmax_index(xx, t, None, need_pixel=True), x)
    for a, b in zip(out_n, out_t, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-30)
    torch.testing.assert_close(grad_n[0], grad_t[0], rtol=2e-6, atol=1e-6)  # gradients of order 1: float eps
    assert torch.isfinite(grad_n[0]).all()
    target = (torch.arange(36).view(1, 3, 12) % 2).float()
    (out_n, grad_n), (out_t, grad_t) = _both(
        lambda xx: _fused.sigmoid_dense(xx, target, None, alpha=0.25, gamma=2.0, need_pixel=True), x
    )
    for a, b in zip(out_n, out_t, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-30)
    torch.testing.assert_close(grad_n[0], grad_t[0], rtol=2e-6, atol=1e-6)


def _focal_reference(logp: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(l) = -(1 - e^l)^gamma l`` and ``f'(l) = -q^gamma + gamma l e^l q^(gamma - 1)`` in float64 (q = 1 - e^l)."""
    lv = logp.double()
    q = -torch.expm1(lv)
    f = -(q**gamma) * lv
    if gamma == 0:
        return f, torch.full_like(lv, -1.0)
    return f, -(q**gamma) + gamma * lv * torch.exp(lv) * q ** (gamma - 1)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_terms_native_and_torch_match_the_formula(dtype, gamma, weighted):
    """The focal term of ``log p_t`` from near 0 (``1 - p_t`` tiny: the series branch) to -90: the kernel and the
    PyTorch fallback both give the float64 formula, value summed per image and derivative per pixel."""
    mags = torch.cat([10.0 ** torch.linspace(-7, 0.3, 3000), torch.linspace(2.0, 90.0, 1000)])
    logp = (-mags).to(dtype).view(2, -1)
    w = torch.rand(logp.shape, generator=torch.Generator().manual_seed(1), dtype=dtype) if weighted else None
    f_ref, d_ref = _focal_reference(logp, gamma)
    if w is not None:
        f_ref, d_ref = f_ref * w.double(), d_ref * w.double()
    pix_n, d_n = _fused._focal_terms_native(logp.clone(), w, gamma)
    f_t, d_t = _fused._focal_terms(logp.clone(), gamma)
    if w is not None:
        f_t, d_t = f_t * w, d_t * w
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    for d in (d_n, d_t):
        torch.testing.assert_close(d.double(), d_ref, rtol=rtol * 5, atol=1e-30 if dtype == torch.float64 else 1e-12)
    for pix in (pix_n, f_t.sum(-1)):
        torch.testing.assert_close(pix.double(), f_ref.sum(-1), rtol=rtol * 5, atol=0)


@needs_native
def test_focal_terms_native_nan_stays_nan():
    """A NaN log-probability makes its image's value NaN, and its derivative NaN where the fallback's is."""
    logp = torch.tensor([[-0.5, float("nan"), -1e-9, -3.0], [-0.5, -1.0, -1e-9, -3.0]])
    for gamma in (0.0, 2.0, 1.5):
        pix, d = _fused._focal_terms_native(logp.clone(), None, gamma)
        f_t, d_t = _fused._focal_terms(logp.clone(), gamma)
        assert torch.isnan(pix).tolist() == [True, False]
        assert torch.equal(torch.isnan(d), torch.isnan(d_t))
        assert torch.isnan(d[0, 1]) == (gamma != 0)  # gamma 0: f'(l) = -1 everywhere


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_native_sigmoid_accurate_over_the_float_range():
    """The kernel's exp (through the sigmoid statistics of single pixels) is within 2 ulp-ish of PyTorch's."""
    x = torch.linspace(-80.0, 80.0, 200_001).view(1, -1, 1)  # one pixel per row: P_c = sigmoid(x_c)
    ones = torch.ones_like(x)
    _native.set_native(True)
    _, p_native, _, _ = _fused.sigmoid_dense(x, ones, None)
    expected = torch.sigmoid(x.double()).view(1, -1)
    rel = ((p_native.double() - expected).abs() / expected).max()
    assert rel < 5e-7, float(rel)


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_out_of_range_index_with_checks_off_does_not_touch_memory_outside():
    """With value checks off, a bad index makes the kernel hand over to the PyTorch path (no out-of-bounds read)."""
    x = torch.randn(1, 3, 50)
    t = torch.randint(0, 3, (1, 50))
    t[0, 10] = 7
    tp_n, p_n, _, g_n = _fused.softmax_index(x, t, None)
    _native.set_native(False)
    tp_t, p_t, _, g_t = _fused.softmax_index(x, t, None)
    torch.testing.assert_close((tp_n, p_n, g_n), (tp_t, p_t, g_t))


def test_env_switch_turns_native_off():
    code = "from seglosses import _native; print(_native.status())"
    env = {**os.environ, "SEGLOSSES_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "off (PyTorch path)"


@pytest.mark.usefixtures("restore_native")
def test_set_native_false_takes_the_torch_path(monkeypatch):
    _native.set_native(False)
    monkeypatch.setattr(_native, "library", lambda: pytest.fail("library() called while native is off"))
    x = torch.randn(2, 3, 20, requires_grad=True)
    t = torch.randint(0, 3, (2, 20))
    tp, p, _, _ = _fused.softmax_index(x, t, None)
    (tp.sum() + p.sum()).backward()
    assert x.grad is not None


def test_native_failure_falls_back(monkeypatch, tmp_path):
    """A compiler that fails leaves the PyTorch path in place and says why."""
    code = (
        "import torch, seglosses; from seglosses import _native; "
        "x = torch.randn(1, 3, 8); t = torch.randint(0, 3, (1, 8)); "
        "print(float(seglosses.F.dice_loss(x, t, mode='multiclass'))); print(_native.status())"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "SEGLOSSES_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    value, status = out.stdout.strip().splitlines()
    assert 0.0 < float(value) < 1.0
    assert status.startswith("unavailable (PyTorch path)")


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize(
    "case",
    [
        "multiclass-index",
        "multiclass-index-ignore",
        "multiclass-onehot",
        "multiclass-probs-onehot",
        "binary-hinge",
        "binary-hinge-ignore",
        "binary-probs",
        "multilabel-hinge-ignore",
        "multilabel-probs",
    ],
)
def test_lovasz_native_equals_torch(case, per_image):
    """The native Lovász (radix sort, weights, softmax backward) against the PyTorch path, option by option."""
    g = torch.Generator().manual_seed(5)
    mode, form = case.split("-")[:2]
    c = {"multiclass": 4, "binary": 1, "multilabel": 3}[mode]
    x = torch.randn((3, c, 17, 23), generator=g) * 2
    kwargs: dict = {"mode": mode, "per_image": per_image}
    if mode == "multiclass":
        t = torch.randint(0, c, (3, 17, 23), generator=g)
        if "ignore" in case:
            t[1, :5] = 255
            t[2] = 255  # an image with every pixel ignored
            kwargs["ignore_index"] = 255
        if form in ("onehot", "probs"):
            t = torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()
        if form == "probs":
            x = x.softmax(1)
            kwargs["from_logits"] = False
        kwargs["classes"] = "all" if per_image else "present"
    else:
        t = (torch.rand((3, c, 17, 23), generator=g) > 0.6).float()
        if "ignore" in case:
            t[0, :, :4] = 255
            kwargs["ignore_index"] = 255
        if form == "probs":
            x = x.sigmoid()
            kwargs["from_logits"] = False
    (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: seglosses.F.lovasz_loss(xx, t, **kwargs), x)
    _close(out_n[0], out_t[0], torch.float32)
    _close(grad_n[0], grad_t[0], torch.float32)


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_lovasz_native_long_rows_and_row_parallel_agree():
    """Rows sorted by all threads (long rows) and rows spread over threads (short rows) give the torch numbers."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn((2, 3, 700, 800), generator=g)  # batch rows of 1.12M elements: the long-row path
    t = torch.randint(0, 3, (2, 700, 800), generator=g)
    for per_image in (False, True):
        (out_n, grad_n), (out_t, grad_t) = _both(
            lambda xx, p=per_image: seglosses.F.lovasz_loss(xx, t, mode="multiclass", per_image=p), x
        )
        _close(out_n[0], out_t[0], torch.float32)
        _close(grad_n[0], grad_t[0], torch.float32)


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_lovasz_native_binary_long_row_with_gaps_agrees():
    """One long row (binary, batch): the compact sort over all threads, with inactive and ignored elements."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn((2, 1, 800, 700), generator=g) * 2  # a row of 1.12M elements, about half of them inactive
    t = (torch.rand((2, 1, 800, 700), generator=g) > 0.7).float()
    t[1, :, :300] = 255  # ignored: a gap in the second thread's chunk
    for per_image in (False, True):
        (out_n, grad_n), (out_t, grad_t) = _both(
            lambda xx, p=per_image: seglosses.F.lovasz_loss(xx, t, mode="binary", ignore_index=255, per_image=p), x
        )
        _close(out_n[0], out_t[0], torch.float32)
        _close(grad_n[0], grad_t[0], torch.float32)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ignore", [None, 255])
def test_native_hard_target_count_equals_torch(dtype, ignore):
    """The one-pass check of a hard 0/1 target counts what the PyTorch expression counts (NaN included)."""
    lib = _native.library()
    g = torch.Generator().manual_seed(3)
    t = (torch.rand((3, 1, 300, 301), generator=g) > 0.5).to(dtype)  # 270,900 values: several chunks
    t.view(-1)[::997] = 255.0
    t.view(-1)[5::4001] = 0.5
    t.view(-1)[7::50021] = float("nan")
    t.view(-1)[11::70001] = -1.0
    kept = t if ignore is None else t[t != ignore]
    expected = int(((kept != 0) & (kept != 1)).sum())
    count = getattr(lib, f"sl_count_not_binary{_native.suffix(dtype)}")
    got = count(t.data_ptr(), t.numel(), int(ignore is not None), float(ignore or 0), 2)
    assert got == expected > 0


@needs_native
def test_native_hard_target_check_passes_and_still_names_the_problem():
    x = torch.randn(2, 1, 8, 8)
    t = (torch.rand(2, 1, 8, 8) > 0.5).float()
    t[0, 0, 0, 0] = 255
    seglosses.F.lovasz_loss(x, t, mode="binary", ignore_index=255)  # 0, 1 and ignore_index: accepted
    t[1, 0, 0, 0] = 0.5
    with pytest.raises(ValueError, match="must be hard"):
        seglosses.F.lovasz_loss(x, t, mode="binary", ignore_index=255)
    t[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        seglosses.F.lovasz_loss(x, t, mode="binary", ignore_index=255)


@needs_native
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_native_binary_peak_memory_at_most_4x_logits(per_image):
    """The one-row sort keeps its weights in a sort buffer: forward + backward peak at most 4x the logits."""
    from seglosses.cli import benchmark as bm

    g = torch.Generator().manual_seed(17)
    x = torch.randn((4, 1, 256, 256), generator=g).requires_grad_(True)
    t = (torch.rand((4, 1, 256, 256), generator=g) > 0.6).float()

    def step():
        x.grad = None
        seglosses.F.lovasz_loss(x, t, mode="binary", per_image=per_image).backward()

    step()
    peak = bm._profiled_cpu_peak(step)
    assert peak <= 4.0 * x.numel() * 4 * 1.01  # the gradient included; 1% for the O(rows) small tensors


def _close_scaled(a, b):
    """Close relative to the largest magnitude (Lovász gradients are of size 1/L: an absolute floor says nothing)."""
    scale = b.abs().max().clamp_min(1e-30)
    torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=2e-5)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", ["multiclass-narrow", "binary-hinge-narrow", "multilabel-probs"])
def test_lovasz_native_buckets_and_thread_counts_agree(case, threads):
    """Errors crowded into a few top-digit buckets (buckets past the 32-bit in-cache sort), rows of 360K elements
    split over 1, 2 or 3 threads: value and gradient as the PyTorch path, relative to the gradient's size.

    Ties between a positive and a negative error would let the two paths give them each other's weights (both
    valid subgradients), so the inputs avoid them: the multiclass errors of the two kinds sit near 1/3 and 2/3,
    the hinge errors are distinct by construction."""
    g = torch.Generator().manual_seed(23)
    mode = case.split("-")[0]
    c = {"multiclass": 3, "binary": 1, "multilabel": 2}[mode]
    x = torch.randn((4, c, 300, 300), generator=g)
    kwargs: dict = {"mode": mode}
    if mode == "multiclass":
        x = x * 1e-3  # p = 1/3 +- 1e-3: every error in two or three buckets of 2^-7 relative width
        t = torch.randint(0, c, (4, 300, 300), generator=g)
    else:
        t = (torch.rand((4, c, 300, 300), generator=g) > 0.5).float()
        if case.endswith("narrow"):  # hinge errors 0.65 + k 2^-23, distinct (no ties): 6 buckets of up to 2^16
            k = torch.randperm(x.numel(), generator=g).view(x.shape).double()
            x = ((1 - (0.65 + k * 2.0**-23)) * (2 * t.double() - 1)).float()
        else:
            x = x.sigmoid()
            kwargs["from_logits"] = False
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: seglosses.F.lovasz_loss(xx, t, **kwargs), x)
    finally:
        torch.set_num_threads(before)
    _close(out_n[0], out_t[0], torch.float32)
    _close_scaled(grad_n[0], grad_t[0])


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_lovasz_native_exact_ties_give_the_torch_value():
    """All errors equal (zero logits): any order of the ties gives the same value, and the weights of one class's
    tied elements sum to the same total on both paths."""
    x = torch.zeros((2, 3, 64, 64))
    t = torch.randint(0, 3, (2, 64, 64), generator=torch.Generator().manual_seed(3))
    (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: seglosses.F.lovasz_loss(xx, t, mode="multiclass"), x)
    _close(out_n[0], out_t[0], torch.float32)
    _close(grad_n[0].sum((0, 2, 3)), grad_t[0].sum((0, 2, 3)), torch.float32)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("case", ["multiclass-logits", "multilabel-probs", "multilabel-hinge"])
def test_lovasz_native_nan_input_gives_nan_like_torch(case):
    """A NaN in the input makes the loss NaN on both paths (the native sort key clamps it; the value must not)."""
    g = torch.Generator().manual_seed(4)
    mode = case.split("-")[0]
    x = torch.randn((2, 3, 40, 40), generator=g)
    if mode == "multiclass":
        t = torch.randint(0, 3, (2, 40, 40), generator=g)
        kwargs: dict = {"mode": mode}
    else:
        t = (torch.rand((2, 3, 40, 40), generator=g) > 0.5).float()
        hinge = case.endswith("hinge")
        x = x if hinge else x.sigmoid()
        kwargs = {"mode": mode, "from_logits": hinge}
    x[1, 0, 5, 7] = float("nan")
    # probabilities with a NaN are refused by the value check; without it the NaN reaches the kernels
    seglosses.set_value_checks("never")
    try:
        for enabled in (True, False):
            _native.set_native(enabled)
            assert torch.isnan(seglosses.F.lovasz_loss(x, t, **kwargs)), f"native={enabled}"
    finally:
        seglosses.set_value_checks("cpu")
    if kwargs.get("from_logits") is False:
        with pytest.raises(ValueError, match=r"lovasz_loss: `input` .* NaN"):
            seglosses.F.lovasz_loss(x, t, **kwargs)


@needs_native
@pytest.mark.usefixtures("restore_native")
def test_lovasz_native_negative_zero_probability_is_a_zero_error():
    """A probability of -0.0 is an error of 0 (sorted last), not the float bits of -0 (sorted first, as NaN was)."""
    g = torch.Generator().manual_seed(8)
    p = torch.rand((2, 2, 16, 16), generator=g)
    t = (torch.rand((2, 2, 16, 16), generator=g) > 0.5).float()
    negatives = (t == 0).nonzero()[:20]
    p[tuple(negatives.T)] = -0.0  # a zero probability on a negative: no error, but the sign bit set
    kwargs = {"mode": "multilabel", "from_logits": False}
    (out_n, grad_n), (out_t, grad_t) = _both(lambda xx: seglosses.F.lovasz_loss(xx, t, **kwargs), p)
    _close(out_n[0], out_t[0], torch.float32)
    _close(grad_n[0], grad_t[0], torch.float32)


@needs_native
@pytest.mark.usefixtures("restore_native")
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_lovasz_native_gradient_is_exactly_zero_outside_the_sort(mode):
    """Ignored pixels, and for the hinge inactive ones (1 - x s <= 0), get a gradient of exactly 0 on both paths."""
    g = torch.Generator().manual_seed(12)
    if mode == "binary":
        x = torch.randn((2, 1, 30, 30), generator=g) * 2
        t = (torch.rand((2, 1, 30, 30), generator=g) > 0.5).float()
        t[0, 0, :7] = 255
        ignored = t == 255
        outside = ignored | ((1 - x * (2 * t - 1)) <= 0)
    else:
        x = torch.randn((2, 3, 30, 30), generator=g)
        t = torch.randint(0, 3, (2, 30, 30), generator=g)
        t[1, :9] = 255
        outside = (t == 255).unsqueeze(1).expand_as(x)
    for _out, grad in _both(lambda xx: seglosses.F.lovasz_loss(xx, t, mode=mode, ignore_index=255), x):
        assert outside.any()
        assert (grad[0][outside] == 0).all()
        assert (grad[0][~outside] != 0).any()


@pytest.fixture
def restore_threading():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    _native.set_threading("adaptive")


def _loss_and_grad(name, mode, x, t, **kwargs):
    leaf = x.detach().clone().requires_grad_(True)
    value = getattr(seglosses.functional, f"{name}_loss")(leaf, t, mode=mode, **kwargs)
    value.backward()
    return value.detach(), leaf.grad


@needs_native
@pytest.mark.usefixtures("restore_threading")
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize(
    ("name", "mode", "kwargs"),
    [
        ("dice", "binary", {}),  # sigmoid statistics
        ("dice_ce", "binary", {}),  # sigmoid statistics with the BCE pixel term
        ("focal", "binary", {}),  # sigmoid focal
        ("dice", "multiclass", {}),  # softmax statistics, index targets
        ("dice_ce", "multiclass", {"ignore_index": 2}),  # softmax with the CE pixel term and a mask
        ("focal", "multiclass", {}),  # focal terms
        ("lovasz", "binary", {}),  # hinge rows over several threads
        ("lovasz", "multiclass", {}),  # softmax key words, rows over several threads, the softmax backward
        ("lovasz", "multiclass", {"per_image": True}),  # short rows spread over the threads
    ],
)
def test_native_threading_modes_give_identical_bits(name, mode, kwargs, threads):
    """A call's result depends on the thread count only: its ranges on a team of threads, handed out one at a
    time, or one after the other on the calling thread (the contended fallback) give the same bits."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(11)
    if mode == "binary":
        x = torch.randn((2, 1, 300, 300), generator=g)
        t = (torch.rand((2, 1, 300, 300), generator=g) < 0.3).float()
    else:
        x = torch.randn((2, 3, 200, 200), generator=g)
        t = torch.randint(0, 3, (2, 200, 200), generator=g)
    results = {}
    for how in ("serial", "threads", "adaptive"):
        _native.set_threading(how)
        results[how] = _loss_and_grad(name, mode, x, t, **kwargs)
    assert torch.isfinite(results["serial"][0])
    for how in ("threads", "adaptive"):
        assert torch.equal(results[how][0], results["serial"][0]), how
        assert torch.equal(results[how][1], results["serial"][1]), how
    _native.set_native(False)
    try:
        reference = _loss_and_grad(name, mode, x, t, **kwargs)
    finally:
        _native.set_native(True)
    torch.testing.assert_close(results["serial"][0], reference[0], rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(results["serial"][1], reference[1], rtol=2e-5, atol=2e-6)


@needs_native
@pytest.mark.usefixtures("restore_threading")
def test_native_threading_state_and_bad_mode():
    _native.set_threading("serial")
    state = _native.threading_state()
    assert state["mode"] == "serial"
    assert isinstance(state["contended_calls"], int)
    assert state["contended_calls"] >= 0
    _native.set_threading("adaptive")
    assert _native.threading_state()["mode"] == "adaptive"
    with pytest.raises(
        ValueError, match=r"set_threading: mode must be one of 'adaptive', 'threads', 'serial'; got 'fast'"
    ):
        _native.set_threading("fast")
