"""Every loss and metric on a CUDA device: the NumPy float64 reference, the CPU gradient, no host-device
synchronisation inside a loss, autocast, and ``torch.compile`` with Inductor (Triton kernels).

Skipped where no CUDA device is present (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
On CUDA the native C++ kernels never run: by default the fused passes run the Triton kernels through the
``seglosses::*`` operators; ``seglosses._dispatch.use`` forces the chunked PyTorch twin, its traced form and the
generic formulas, each on images over 256x256 so that the chunked GPU path runs several chunks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses
import seglosses.functional as SF
import seglosses.metrics.functional as MF
from conftest import TARGET_FORMS, make_case_fn
from helpers import assert_close, to_np
from reference import REFERENCES
from reference_lovasz import lovasz_loss as ref_lovasz
from seglosses import _dispatch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

UNIFIED = (
    "unified_focal_loss",
    "asymmetric_focal_loss",
    "symmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "symmetric_focal_tversky_loss",
)
NAMES = sorted(REFERENCES)
CASES = [(mode, form) for mode in ("binary", "multiclass", "multilabel") for form in TARGET_FORMS[mode]]


def _supported(name: str, mode: str) -> bool:
    return not (mode == "multilabel" and name in UNIFIED)


def _value_and_grad(fn, x: torch.Tensor, t: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.detach().clone().requires_grad_(True)
    out = fn(xg, t, **kw)
    out.backward()
    assert xg.grad is not None
    return out.detach(), xg.grad


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), CASES)
@pytest.mark.parametrize("name", NAMES)
def test_loss_on_cuda_matches_reference_and_cpu_gradient(name, mode, target, dims, ignore):
    if not _supported(name, mode):
        pytest.skip("multilabel raises for the unified focal family")
    if ignore and mode == "multiclass" and target != "index":
        pytest.skip("ignore_index needs index targets in multiclass mode")
    case = make_case_fn(mode, dims=dims, target=target, ignore=ignore, seed=dims + 10 * ignore)
    args = case.args()
    fn = getattr(SF, name)
    out, grad = _value_and_grad(fn, case.x.cuda(), case.t.cuda(), **args)
    assert out.device.type == "cuda"
    assert grad.device.type == "cuda"
    assert_close(out, REFERENCES[name](case.x_np, case.t_np, **args))
    # the CPU gradient is checked against finite differences of the reference in the CPU suite
    _, grad_cpu = _value_and_grad(fn, case.x, case.t, **args)
    assert_close(grad, to_np(grad_cpu), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("mode", "target"), [("binary", "hard"), ("multiclass", "index"), ("multilabel", "hard")])
def test_lovasz_on_cuda_matches_reference_and_cpu_gradient(mode, target, dims, ignore, per_image):
    case = make_case_fn(mode, dims=dims, target=target, ignore=ignore, seed=20 + dims)
    args = case.args(per_image=per_image)
    out, grad = _value_and_grad(SF.lovasz_loss, case.x.cuda(), case.t.cuda(), **args)
    assert_close(out, ref_lovasz(case.x_np, case.t_np, **args))
    _, grad_cpu = _value_and_grad(SF.lovasz_loss, case.x, case.t, **args)
    assert_close(grad, to_np(grad_cpu), rtol=1e-9, atol=1e-12)


def _big_inputs(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        x = 3 * torch.randn(2, 4, 24, 20, 16, generator=g, dtype=torch.float64)
        return x, torch.randint(0, 4, (2, 24, 20, 16), generator=g)
    c = 1 if mode == "binary" else 3
    x = 3 * torch.randn(2, c, 24, 20, 16, generator=g, dtype=torch.float64)
    return x, (torch.rand(2, c, 24, 20, 16, generator=g, dtype=torch.float64) > 0.6).double()


ALL = [*NAMES, "lovasz_loss"]
PARAMS = [(n, m) for n in ALL for m in ("binary", "multiclass", "multilabel") if _supported(n, m)]
IDS = [f"{n}-{m}" for n, m in PARAMS]


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_float32_on_cuda_agrees_with_float64_on_cpu(name, mode):
    # larger inputs than the reference tests: the device reductions' order and float32 rounding
    x64, t = _big_inputs(mode)
    fn = getattr(SF, name)
    v64, g64 = _value_and_grad(fn, x64, t, mode=mode)
    t32 = t.float().cuda() if t.is_floating_point() else t.cuda()
    v32, g32 = _value_and_grad(fn, x64.float().cuda(), t32, mode=mode)
    assert v32.dtype == torch.float32
    assert_close(v32, to_np(v64), rtol=1e-5, atol=1e-7)
    assert_close(g32, to_np(g64), rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_on_cuda_never_synchronises_with_the_host(name, mode):
    # issue 17: no `.item()`, no data-dependent shapes inside a loss (value checks are skipped on a GPU by
    # default); CUDA's sync debug mode turns any synchronising call into an error
    x, t = _big_inputs(mode, seed=1)
    x = x.float().cuda().requires_grad_(True)
    t = t.float().cuda() if t.is_floating_point() else t.cuda()
    fn = getattr(SF, name)
    fn(x, t, mode=mode).backward()  # warm-up: lazy initialisation may synchronise once
    torch.cuda.synchronize()
    x.grad = None
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fn(x, t, mode=mode)
        out.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "mode"), PARAMS, ids=IDS)
def test_loss_under_cuda_autocast_reduces_in_float32(name, mode, dtype):
    x64, t = _big_inputs(mode, seed=2)
    x = x64.float().cuda().requires_grad_(True)
    tc = t.float().cuda() if t.is_floating_point() else t.cuda()
    fn = getattr(SF, name)
    with torch.autocast("cuda", dtype=dtype):
        out = fn(x, tc, mode=mode)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    out.backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    expected = fn(x64, t, mode=mode)
    assert_close(out, to_np(expected), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("dice", "binary"),
        ("focal", "binary"),
        ("dice_ce", "multiclass"),
        ("focal", "multiclass"),
        ("tversky", "multiclass"),
        ("generalized_dice", "multilabel"),
        ("lovasz", "multiclass"),
        ("lovasz", "multilabel"),
    ],
)
def test_loss_compiled_with_inductor_on_cuda_equals_eager(name, mode):
    # Inductor generates Triton kernels on CUDA (the CPU suite compiles with aot_eager only)
    torch._dynamo.reset()
    loss = seglosses.get_loss(name, mode=mode)
    x, t = _big_inputs(mode, seed=3)
    x = x.float().cuda()
    t = t.float().cuda() if t.is_floating_point() else t.cuda()
    xe = x.clone().requires_grad_(True)
    eager = loss(xe, t)
    eager.backward()
    compiled = torch.compile(loss, fullgraph=True)
    xc = x.clone().requires_grad_(True)
    out = compiled(xc, t)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-7)


METRICS = ["dice", "iou", "precision", "recall", "specificity", "accuracy"]


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("metric", METRICS)
def test_metric_on_cuda_equals_cpu(metric, mode, per_image):
    x, t = _big_inputs(mode, seed=4)
    x = x.float()
    t = t.clone()
    if mode == "multiclass":
        t.view(-1)[::7] = 255
    else:
        t.view(-1)[::7] = 255.0
    kw = {"mode": mode, "per_image": per_image, "ignore_index": 255, "from_logits": True}
    fn = getattr(MF, metric)
    cpu = fn(x, t, **kw)
    gpu = fn(x.cuda(), t.cuda(), **kw)
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(to_np(gpu), to_np(cpu), rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# every computation path on large images (several chunks of the chunked GPU path, many Triton tiles)
# --------------------------------------------------------------------------------------------------------------

GPU_PATHS = [{}, {"ops": False}, {"ops": False, "traced": True}, {"fused": False}]
GPU_PATH_IDS = ["default", "autograd-chunked", "traced", "generic"]
FUSED_CASES = [
    ("dice_loss", "multiclass"),
    ("dice_loss", "binary"),
    ("tversky_loss", "multilabel"),
    ("dice_ce_loss", "multiclass"),
    ("dice_ce_loss", "multilabel"),
    ("cross_entropy_loss", "multiclass"),
    ("cross_entropy_loss", "binary"),
    ("focal_loss", "multiclass"),
    ("focal_loss", "binary"),
    ("unified_focal_loss", "multiclass"),
    ("unified_focal_loss", "binary"),
]


def _large_inputs(mode: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """300 x 280 images (84,000 pixels > 65,536: the chunked GPU path runs two chunks), float64 on the CPU."""
    g = torch.Generator().manual_seed(seed)
    c = {"binary": 1, "multiclass": 3, "multilabel": 2}[mode]
    x = 3 * torch.randn(2, c, 300, 280, generator=g, dtype=torch.float64)
    if mode == "multiclass":
        return x, torch.randint(0, c, (2, 300, 280), generator=g)
    return x, (torch.rand(2, c, 300, 280, generator=g, dtype=torch.float64) > 0.6).double()


@pytest.mark.parametrize("path", GPU_PATHS, ids=GPU_PATH_IDS)
@pytest.mark.parametrize(("name", "mode"), FUSED_CASES)
def test_large_images_every_path_on_cuda_equals_cpu_float64(name, mode, path):
    x64, t = _large_inputs(mode, seed=len(name))
    fn = getattr(SF, name)
    kw = {"mode": mode}
    v_cpu, g_cpu = _value_and_grad(fn, x64, t, **kw)
    with _dispatch.use(**path):
        v64, g64 = _value_and_grad(fn, x64.cuda(), t.cuda(), **kw)
        v32, g32 = _value_and_grad(
            fn, x64.float().cuda(), t.float().cuda() if t.is_floating_point() else t.cuda(), **kw
        )
    assert_close(v64, to_np(v_cpu), rtol=1e-10, atol=1e-12)
    assert_close(g64, to_np(g_cpu), rtol=1e-9, atol=1e-13)
    assert_close(v32, to_np(v_cpu), rtol=1e-4, atol=1e-6)
    assert_close(g32, to_np(g_cpu), rtol=1e-3, atol=1e-8)


@pytest.mark.parametrize(("name", "mode"), [("dice_loss", "multiclass"), ("focal_loss", "binary")])
def test_large_images_with_ignored_pixels_on_cuda(name, mode):
    x64, t = _large_inputs(mode, seed=5)
    t = t.clone()
    t.view(-1)[::11] = 255
    fn = getattr(SF, name)
    kw = {"mode": mode, "ignore_index": 255}
    v_cpu, g_cpu = _value_and_grad(fn, x64, t, **kw)
    v, g = _value_and_grad(fn, x64.cuda(), t.cuda(), **kw)
    assert_close(v, to_np(v_cpu), rtol=1e-10, atol=1e-12)
    assert_close(g, to_np(g_cpu), rtol=1e-9, atol=1e-13)


def test_bad_class_index_on_cuda_gives_nan_without_synchronising():
    """By default a GPU skips the host-side value check; the statistics kernel's counter makes the loss NaN."""
    x64, t = _large_inputs("multiclass", seed=6)
    x = x64.float().cuda().requires_grad_(True)
    bad = t.cuda()
    bad[1, 100, 100] = 3
    SF.dice_loss(x, t.cuda(), mode="multiclass").backward()  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = SF.dice_loss(x, bad, mode="multiclass")
        per_image = SF.dice_loss(x, bad, mode="multiclass", per_image=True, reduction="none")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isnan(out).item()
    assert torch.isnan(per_image[1]).all().item()
    assert torch.isfinite(per_image[0]).all().item()
    torch.cuda.set_sync_debug_mode("error")
    try:  # the Lovasz keys kernel counts them too
        lovasz = SF.lovasz_loss(x, bad, mode="multiclass")
        lovasz_per_image = SF.lovasz_loss(x, bad, mode="multiclass", per_image=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isnan(lovasz).item()
    assert torch.isnan(lovasz_per_image).item()
    seglosses.set_value_checks("always")
    try:
        with pytest.raises(ValueError, match=r"dice_loss: `target` class indices must be in \[0, 3\).*got 3"):
            SF.dice_loss(x, bad, mode="multiclass")
    finally:
        seglosses.set_value_checks("cpu")


@pytest.mark.parametrize(
    ("name", "mode"),
    [("dice_loss", "multiclass"), ("dice_ce_loss", "binary"), ("lovasz_loss", "multiclass"), ("lovasz_loss", "binary")],
)
def test_cuda_graph_capture_replays_forward_and_backward(name, mode):
    x64, t = _large_inputs(mode, seed=7)
    fn = getattr(SF, name)
    static_x = x64.float().cuda().requires_grad_(True)
    static_t = t.float().cuda() if t.is_floating_point() else t.cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the capture (lazy initialisation, autotuning)
        for _ in range(2):
            torch.autograd.grad(fn(static_x, static_t, mode=mode), static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_x, static_t, mode=mode)
        (static_grad,) = torch.autograd.grad(static_out, static_x)
    x_new, _ = _large_inputs(mode, seed=8)
    with torch.no_grad():
        static_x.copy_(x_new.float().cuda())
    graph.replay()
    torch.cuda.synchronize()
    eager_out, eager_grad = _value_and_grad(fn, x_new.float().cuda(), static_t, mode=mode)
    torch.testing.assert_close(static_out, eager_out, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(static_grad, eager_grad, rtol=1e-6, atol=1e-9)


def _sync_free(fn, *args, **kw) -> torch.Tensor:
    """One forward + backward of ``fn`` after a warm-up, under sync debug mode "error"; the loss."""
    fn(*args, **kw).backward()  # warm-up: lazy initialisation may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fn(*args, **kw)
        out.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return out.detach()


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("boundary", {"mode": "binary"}),
        ("boundary", {"mode": "multiclass"}),
        ("hausdorff_dt", {"mode": "multilabel"}),
        ("dice", {"mode": "multiclass", "class_weights": [0.5, 1.0, 2.0, 1.0]}),
        ("dice_ce", {"mode": "multiclass", "class_weights": [0.5, 1.0, 2.0, 1.0]}),
        ("focal", {"mode": "multiclass", "alpha": [0.1, 0.2, 0.3, 0.4]}),
        ("generalized_wasserstein_dice", {"mode": "multiclass", "dist_matrix": 1 - torch.eye(4)}),
    ],
)
def test_catalogue_modules_on_cuda_never_synchronise(name, kw):
    """Maps computed on the device, per-class vectors kept as buffers (checked once when the Module was built)."""
    mode = kw["mode"]
    x64, t = _big_inputs(mode, seed=4)
    if mode == "multiclass":  # 4 classes
        x = x64.float().cuda().requires_grad_(True)
    else:
        x = x64[:, :1].float().cuda().requires_grad_(True) if mode == "binary" else x64.float().cuda()
        x.requires_grad_(True)
        t = t[:, : x.shape[1]]
    tc = t.float().cuda() if t.is_floating_point() else t.cuda()
    loss = seglosses.get_loss(name, **kw).cuda()
    out = _sync_free(loss, x, tc)
    expected = seglosses.get_loss(name, **kw)(x.detach().double().cpu(), t)
    assert_close(out, to_np(expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("shape", [(3, 64, 48), (2, 24, 20, 16)])
def test_distance_maps_on_cuda_equal_cpu(shape, kind):
    from seglosses._ops_distance import distance_maps

    g = torch.Generator().manual_seed(len(shape))
    masks = torch.rand(shape, generator=g) > 0.7
    masks[0] = False  # an empty mask: 0
    spacing = [1.0 + 0.5 * i for i in range(len(shape) - 1)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = distance_maps(masks.cuda(), spacing, kind, torch.float64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert got.device.type == "cuda"
    expected = distance_maps(masks, spacing, kind, torch.float64)
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-12)


def test_boundary_loss_with_maps_inside_is_captured_in_a_cuda_graph():
    x64, t = _big_inputs("multiclass", seed=9)
    static_x = x64.float().cuda().requires_grad_(True)
    static_t = t.cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            torch.autograd.grad(SF.boundary_loss(static_x, static_t, mode="multiclass"), static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = SF.boundary_loss(static_x, static_t, mode="multiclass")
        (static_grad,) = torch.autograd.grad(static_out, static_x)
    _, t_new = _big_inputs("multiclass", seed=10)
    static_t.copy_(t_new.cuda())  # new targets: the maps are recomputed inside the replay
    graph.replay()
    torch.cuda.synchronize()
    eager_out, eager_grad = _value_and_grad(SF.boundary_loss, static_x.detach(), static_t, mode="multiclass")
    torch.testing.assert_close(static_out, eager_out, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(static_grad, eager_grad, rtol=1e-6, atol=1e-9)
