"""``torch.compile`` of the catalogue losses (boundary, Hausdorff-DT, clDice, TopK, the extra region losses).

Each loss Module is compiled with ``backend="aot_eager"`` (Dynamo + AOTAutograd, where graph breaks and tracing
failures show; no C++ toolchain needed) and called on two batches of the same shapes: both values and input gradients
must equal eager (the second batch catches anything data-dependent that tracing froze into the graph, such as a
distance map). Every case is ``fullgraph=True``: the distance maps a loss computes itself (the boundary loss without
``dist_map``, the Hausdorff-DT loss's prediction map and, without ``dist_map``, its target's) are one call of the
operator ``seglosses::distance_maps``, opaque to the tracer, whose kernel runs on the real masks of each call.
A ``torch.export`` of a module holding the boundary loss keeps that operator in its graph and gives the eager value.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import torch

import seglosses
from seglosses.distance import signed_distance, unsigned_distance
from seglosses.registry import default_arguments

IGNORE = 255
#: Unequal confusion costs (classes 1 and 2 close, both far from the background).
GWD_MATRIX = [[0.0, 1.0, 0.8], [1.0, 0.0, 0.3], [0.8, 0.3, 0.0]]

# (case id, registry name, mode, Module kwargs, target map given to the call ("signed"/"unsigned") or None, fullgraph)
_CASES: list[Any] = [
    ("boundary-dist_map", "boundary", "multiclass", {"ignore_index": IGNORE}, "signed", True),
    ("boundary-binary-dist_map", "boundary", "binary", {"per_image": True}, "signed", True),
    ("boundary-map_inside", "boundary", "multiclass", {"ignore_index": IGNORE}, None, True),
    # the prediction's map is computed in every call (the operator), with or without the target's map
    (
        "hausdorff_dt-dist_map",
        "hausdorff_dt",
        "multiclass",
        {"ignore_index": IGNORE, "per_image": True},
        "unsigned",
        True,
    ),
    ("hausdorff_dt-maps_inside", "hausdorff_dt", "multiclass", {"ignore_index": IGNORE, "alpha": 1.5}, None, True),
    ("hausdorff_dt-binary-maps_inside", "hausdorff_dt", "binary", {"log_loss": True}, None, True),
    ("cldice", "cldice", "multiclass", {"iterations": 2, "ignore_index": IGNORE}, None, True),
    ("dice_cldice", "dice_cldice", "multilabel", {"iterations": 2, "per_image": True}, None, True),
    ("topk", "topk", "multiclass", {"k": 30.0, "ignore_index": IGNORE}, None, True),
    ("topk-per_image", "topk", "multilabel", {"k": 30.0, "per_image": True, "reduction": "sum"}, None, True),
    ("log_cosh_dice", "log_cosh_dice", "multiclass", {"ignore_index": IGNORE}, None, True),
    ("sensitivity_specificity", "sensitivity_specificity", "multilabel", {"per_image": True}, None, True),
    ("fbeta", "fbeta", "multiclass", {"ignore_index": IGNORE, "beta": 0.7}, None, True),
    (
        "generalized_wasserstein_dice",
        "generalized_wasserstein_dice",
        "multiclass",
        {"dist_matrix": GWD_MATRIX, "ignore_index": IGNORE},
        None,
        True,
    ),
]
CASES = [pytest.param(*case[1:], id=case[0]) for case in _CASES]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:  # noqa: ANN401
    """One intra-op thread for these tiny tensors (threads only cost there; restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(mode: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and a hard target (multiclass: a few ignored pixels) of shape ``(2, C, 6, 5)``."""
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        t = torch.randint(0, 3, (2, 6, 5), generator=g)
        t[torch.rand(t.shape, generator=g) < 0.15] = IGNORE
        return torch.randn(2, 3, 6, 5, generator=g), t
    channels = 1 if mode == "binary" else 2
    return torch.randn(2, channels, 6, 5, generator=g), (torch.rand(2, channels, 6, 5, generator=g) > 0.5).float()


def _dist_map(kind: str | None, t: torch.Tensor, mode: str, kwargs: dict[str, Any]) -> torch.Tensor | None:
    if kind is None:
        return None
    fn = signed_distance if kind == "signed" else unsigned_distance
    return fn(t, mode=mode, num_classes=3 if mode == "multiclass" else None, ignore_index=kwargs.get("ignore_index"))


@pytest.mark.parametrize(("name", "mode", "kwargs", "map_kind", "fullgraph"), CASES)
def test_catalogue_loss_compiled_equals_eager(
    name: str, mode: str, kwargs: dict[str, Any], map_kind: str | None, fullgraph: bool
) -> None:
    num_classes = 3 if mode == "multiclass" else 1
    needed = default_arguments(name, mode=mode, num_classes=num_classes)
    assert needed is not None
    torch._dynamo.reset()
    loss = seglosses.get_loss(name, mode=mode, **{**needed, **kwargs})
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=fullgraph)
    for seed in (0, 1):  # the second batch reuses the compiled graph(s): nothing data-dependent may be frozen in
        x, t = _inputs(mode, seed)
        dist_map = _dist_map(map_kind, t, mode, kwargs)
        call: dict[str, Any] = {} if dist_map is None else {"dist_map": dist_map}
        xe = x.clone().requires_grad_(True)
        eager = loss(xe, t, **call)
        eager.backward()
        xc = x.clone().requires_grad_(True)
        out = compiled(xc, t, **call)
        out.backward()
        torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-6)


class _BoundaryHead(torch.nn.Module):
    """A 1x1 convolution and the boundary loss computing the target's signed maps inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)
        self.loss = seglosses.losses.BoundaryLoss(mode="multiclass", ignore_index=IGNORE, spacing=(0.5, 2.0))

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(self.conv(image), target)


def test_export_of_a_module_holding_the_boundary_loss_with_maps_inside() -> None:
    torch.manual_seed(0)
    model = _BoundaryHead()
    g = torch.Generator().manual_seed(5)
    image = torch.randn(2, 2, 6, 5, generator=g)
    _, target = _inputs("multiclass", 3)
    exported = torch.export.export(model, (image, target))
    ops = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert ops.count("seglosses.distance_maps.default") == 1
    eager = model(image, target)
    torch.testing.assert_close(exported.module()(image, target), eager, rtol=1e-6, atol=1e-7)
    _, other = _inputs("multiclass", 4)  # other masks: the maps are computed in the call, not frozen in the graph
    torch.testing.assert_close(exported.module()(image, other), model(image, other), rtol=1e-6, atol=1e-7)
    assert not torch.equal(model(image, other), eager)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="Inductor's CPU backend needs a C++ compiler"
)
def test_cldice_compiles_with_inductor_on_the_cpu() -> None:
    """Inductor's own CPU code (C++), not only the traced graph: the hard skeleton of index targets used bool masks,
    whose edge loads Inductor (torch 2.13) emitted as a ternary of two mask types that does not compile; it now works
    in uint8. The compiled loss and gradient equal eager."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 12, 10, generator=g)
    t = torch.randint(0, 3, (2, 12, 10), generator=g)
    loss = seglosses.get_loss("cldice", mode="multiclass", iterations=2)
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = loss(xe, t)
    eager.backward()
    compiled = torch.compile(loss, fullgraph=True)(xc, t)
    compiled.backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


class _Head(torch.nn.Module):
    """A 1x1 convolution and a loss: what a user exports for a training step."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1).double()
        self.loss = loss

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(self.conv(image), target)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("dice", {}), ("dice_ce", {}), ("boundary", {}), ("focal", {"ignore_index": IGNORE}), ("tversky", {})],
)
def test_export_with_dynamic_sizes_runs_at_other_sizes(name: str, kwargs: dict[str, Any]) -> None:
    # The pixel count entered the graph as float(m) (Prepared.count, the boundary loss's class means): export with
    # dynamic H and W then required H * W to equal the traced size and refused any other input
    torch.manual_seed(0)
    model = _Head(seglosses.get_loss(name, mode="multiclass", **kwargs))
    g = torch.Generator().manual_seed(9)
    image = torch.randn(2, 2, 6, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 6, 5), generator=g)
    h, w = torch.export.Dim("h", min=2, max=64), torch.export.Dim("w", min=2, max=64)
    exported = torch.export.export(
        model, (image, target), dynamic_shapes=({2: h, 3: w}, {1: h, 2: w}), strict=False
    ).module()
    for shape in ((6, 5), (9, 7), (4, 11)):
        image = torch.randn(2, 2, *shape, generator=g, dtype=torch.float64)
        target = torch.randint(0, 3, (2, *shape), generator=g)
        if "ignore_index" in kwargs:
            target[0, 0, :2] = IGNORE
        torch.testing.assert_close(exported(image, target), model(image, target), rtol=1e-12, atol=1e-12)


def test_lovasz_with_one_hot_targets_compiles_with_fullgraph() -> None:
    # the one-hot check of a dense multiclass target ran unguarded: a data-dependent branch under fullgraph=True
    # (a host sync on a GPU), and set_value_checks("never") did not skip it
    loss = seglosses.get_loss("lovasz", mode="multiclass")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 5, 6), generator=g), 3).movedim(-1, 1).double()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    xc, xe = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    compiled(xc, onehot).backward()
    eager = loss(xe, onehot)
    eager.backward()
    torch.testing.assert_close(compiled(x, onehot), eager.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-12, atol=1e-12)
    multi_hot = onehot.clone()
    multi_hot[:, 0] = 1.0  # hard values, but two classes at some pixels
    with pytest.raises(ValueError, match=r"lovasz_loss: .*one-hot"):
        loss(x, multi_hot)  # eager, checks on: still refused
    seglosses.set_value_checks("never")
    try:
        loss(x, multi_hot)  # no check: no error (and no host sync)
    finally:
        seglosses.set_value_checks("cpu")


@pytest.mark.parametrize(("name", "kwargs"), [("dice", {"from_logits": False}), ("lovasz", {}), ("focal", {})])
def test_fake_tensor_mode_with_value_checks_on(name: str, kwargs: dict[str, Any]) -> None:
    # with the default checks (on for CPU tensors) a check read a fake tensor's values: DataDependentOutputException
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    loss = seglosses.get_loss(name, mode="multiclass", **kwargs)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 4, 5))
    with FakeTensorMode() as fake_mode:
        fx = fake_mode.from_tensor(x).requires_grad_(True)
        out = loss(fx, fake_mode.from_tensor(t))
        out.backward()
    assert isinstance(out, FakeTensor)
    assert fx.grad is not None
    assert fx.grad.shape == x.shape


def test_topk_with_a_symbolic_k_compiles_with_fullgraph() -> None:
    # Fraction(repr(k)) could not be traced once Dynamo made k symbolic: dynamic=True, or a second TopKLoss with
    # another k compiled in one process (what a hyperparameter sweep does) failed under fullgraph=True
    import seglosses.functional as SF

    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 7, 9), generator=g)
    for k in (10.0, 5.0, 0.1, 37.5):
        loss = seglosses.get_loss("topk", mode="multiclass", k=k)
        compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x, t), loss(x, t), rtol=1e-12, atol=1e-12)

    def call(x: torch.Tensor, t: torch.Tensor, k: float) -> torch.Tensor:
        return SF.topk_loss(x, t, mode="multiclass", k=k, per_image=True)

    dynamic = torch.compile(call, backend="aot_eager", fullgraph=True, dynamic=True)
    for k in (7.0, 12.5):
        torch.testing.assert_close(dynamic(x, t, k), call(x, t, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["cldice", "dice_cldice"])
def test_export_of_cldice_trains_through_the_exported_program(name: str) -> None:
    # the soft skeleton's autograd Functions ran in-place steps (and where(out=...)) that torch.export recorded as
    # plain operators: the exported program's forward was right but its backward failed ("modified by an inplace
    # operation"); exporting now records the plain composition
    torch.manual_seed(0)
    model = _Head(seglosses.get_loss(name, mode="multiclass"))
    g = torch.Generator().manual_seed(12)
    image = torch.randn(2, 2, 12, 11, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 12, 11), generator=g)
    exported = torch.export.export(model, (image, target), strict=False).module()
    for _ in range(2):  # a second batch: nothing of the first frozen in the graph
        out = exported(image, target)
        out.backward()
        ours = exported.get_submodule("conv").weight.grad
        model.zero_grad()
        eager = model(image, target)
        eager.backward()
        torch.testing.assert_close(out.detach(), eager.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ours, model.conv.weight.grad, rtol=1e-10, atol=1e-12)
        exported.get_submodule("conv").weight.grad = None
        image = torch.randn(2, 2, 12, 11, generator=g, dtype=torch.float64)
        target = torch.randint(0, 3, (2, 12, 11), generator=g)


def test_cldice_runs_where_torch_compiler_has_no_is_exporting(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.compiler.is_exporting exists from torch 2.6; the skeleton asks it on every call (torch>=2.3 supported)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 8, 9, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 8, 9), generator=g)
    expected = seglosses.get_loss("cldice", mode="multiclass")(x, t)
    monkeypatch.delattr(torch.compiler, "is_exporting")
    out = seglosses.get_loss("cldice", mode="multiclass")(x, t)
    out.backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
