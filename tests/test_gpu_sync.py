"""Issue 17: no loss synchronises the host with the device on the GPU path, checked on the CPU.

Every loss of the registry, in each of its modes (and with ignored pixels and per-image statistics), runs with the
CUDA implementations of all ``seglosses::*`` operators registered for the CPU (the Triton kernels under
``TRITON_INTERPRET=1``, the distance maps on the device path) and value checks off, as on a GPU. A dispatch mode
records every ATen operator that synchronises on CUDA: reading a value on the host (``item``, ``bool``, ``float``:
``_local_scalar_dense``), data-dependent shapes (``nonzero``, ``masked_select``, ``unique``, ``repeat_interleave``,
indexing with a bool mask), comparisons answered on the host (``equal``, ``is_nonzero``), copies to another
device, and tensors made from host data during the call (``lift_fresh``: on a GPU they are copied to the device,
a blocking copy). The calls cover class weights and per-class focal alphas, which the loss Modules keep as buffers
(checked once when built) so that a call neither reads them on the host nor copies them there. Operators inside
the Triton launches (the interpreter's own) are not counted. The check on a GPU itself is
``tests/test_cuda.py`` under ``torch.cuda.set_sync_debug_mode("error")``; this one covers every loss wherever the
suite runs. Python-level reads (``.tolist()``, ``.numpy()``) do not pass the dispatcher and are not seen here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: Operators that synchronise on CUDA (prefixes of their ATen names).
SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "_unique", "unique", "repeat_interleave", "equal",
            "is_nonzero", "allclose")  # fmt: skip
#: The CUDA implementations registered for the CPU in the subprocess.
CUDA_OPS = ("softmax_index_fwd", "softmax_index_bwd", "sigmoid_dense_fwd", "sigmoid_dense_bwd", "whole_loss_fwd",
            "whole_loss_bwd", "lovasz_fwd", "lovasz_bwd")  # fmt: skip
MODES = ("binary", "multiclass", "multilabel")
#: Variants of each call: the defaults, ignored pixels (index 255), per-image statistics where the loss has them.
VARIANTS = ("plain", "ignore", "per_image", "weights")


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    import collections
    import inspect
    import json

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import seglosses
    from helpers import TritonLaunches
    from seglosses import _edt_device, _ops, _ops_distance, registry

    _ops.triton_runs = lambda device: True  # type: ignore[assignment]
    for op in CUDA_OPS:
        torch.library.register_kernel(f"seglosses::{op}", "cpu", getattr(_ops, f"_{op}_cuda"))
    torch.library.register_kernel("seglosses::distance_maps", "cpu", _ops_distance._distance_maps_cuda)
    _edt_device.kernel_runs = lambda device: True  # type: ignore[assignment]

    triton_launches = TritonLaunches().install()

    class Syncs(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.hits: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if not triton_launches.inside and func.namespace == "aten":
                name = func.overloadpacket.__name__
                if name == "lift_fresh":
                    self.hits["tensor from host data"] += 1
                elif name.startswith(SYNC_OPS):
                    self.hits[name] += 1
                elif (
                    name == "_to_copy"
                    and kwargs.get("device") is not None
                    and torch.device(kwargs["device"]) != args[0].device
                ):
                    self.hits["copy to another device"] += 1
                elif name.startswith("index") and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool
                    for a in args
                    if isinstance(a, (list, tuple))
                    for i in a
                ):
                    self.hits[f"{name} with a bool mask"] += 1
            return func(*args, **kwargs)

    seglosses.set_value_checks("never")  # as on a GPU
    results: dict[str, object] = {}
    g = torch.Generator().manual_seed(0)
    for name in registry.available_losses():
        cls = registry.loss_class(name)
        params = inspect.signature(cls).parameters
        for mode in MODES:
            c = 1 if mode == "binary" else 3
            for variant in VARIANTS:
                kw: dict[str, object] = {"mode": mode}
                if name == "generalized_wasserstein_dice":
                    kw["dist_matrix"] = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]])
                if variant == "ignore":
                    if "ignore_index" not in params:
                        continue
                    kw["ignore_index"] = 255
                if variant == "weights":
                    if "class_weights" in params and mode != "binary":
                        kw["class_weights"] = [0.5, 1.0, 2.0][:c]
                    elif "alpha" in params and mode == "multiclass":
                        kw["alpha"] = [0.2, 0.3, 0.5]
                    else:
                        continue
                if variant == "per_image":
                    if "per_image" not in params:
                        continue
                    kw["per_image"] = True
                try:
                    loss = registry.get_loss(name, **kw)
                except ValueError:  # a mode the loss does not have
                    continue
                x = torch.randn(2, c, 10, 9, generator=g).requires_grad_(True)
                if mode == "multiclass":
                    t = torch.randint(0, c, (2, 10, 9), generator=g)
                else:
                    t = (torch.rand(2, c, 10, 9, generator=g) > 0.5).float()
                if variant == "ignore":
                    t[:, ..., :2] = 255
                loss(x, t).backward()  # warm-up (lazy initialisation)
                mode_ = Syncs()
                with mode_:
                    loss(x, t).backward()
                results[f"{name}/{mode}/{variant}"] = dict(mode_.hits)
    # the detector itself: the host check of class indices does synchronise
    seglosses.set_value_checks("always")
    mode_ = Syncs()
    x = torch.randn(2, 3, 10, 9).requires_grad_(True)
    with mode_:
        registry.get_loss("dice", mode="multiclass")(x, torch.randint(0, 3, (2, 10, 9))).backward()
    results["detector"] = dict(mode_.hits)
    print("RESULTS " + json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> dict[str, object]:
    pytest.importorskip("triton")
    from helpers import run_interpreted

    return run_interpreted(str(Path(__file__).resolve()))


def _calls() -> list[str]:
    from seglosses import registry

    return [
        f"{name}/{mode}/{variant}" for name in registry.available_losses() for mode in MODES for variant in VARIANTS
    ]


@pytest.mark.parametrize("key", _calls())
def test_loss_on_the_gpu_path_calls_no_synchronising_operator(interpreted, key):
    name = key.split("/")[0]
    ran = [k for k in interpreted if k.startswith(f"{name}/")]
    assert ran, f"{name}: no call ran"
    if key not in interpreted:
        pytest.skip("a mode or option this loss does not have")
    assert interpreted[key] == {}, f"{key}: synchronising operators {interpreted[key]}"


def test_the_detector_sees_a_host_value_check(interpreted):
    assert interpreted["detector"].get("_local_scalar_dense", 0) >= 1, interpreted["detector"]


@pytest.mark.parametrize(
    ("name", "kw", "attr"),
    [
        ("dice", {"class_weights": [1.0, 2.0, 3.0]}, "class_weights"),
        ("focal", {"alpha": [0.2, 0.3, 0.5]}, "alpha"),
        (
            "generalized_wasserstein_dice",
            {"dist_matrix": [[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]]},
            "dist_matrix",
        ),
    ],
)
def test_modules_keep_per_class_vectors_as_buffers_that_move_with_them(name, kw, attr):
    """So that on a GPU a call finds them on the device: no host copy, no host read (see the test above)."""

    from seglosses import get_loss

    loss = get_loss(name, mode="multiclass", **kw)
    assert attr in dict(loss.named_buffers())
    assert getattr(loss.to("meta"), attr).device.type == "meta"


def test_module_checks_tensor_arguments_when_built():
    """A tensor argument's values are checked once, when the Module is built (also for a tensor on a GPU)."""
    import torch

    from seglosses import get_loss

    with pytest.raises(ValueError, match=r"`class_weights` must hold finite values >= 0; got \[1.0, -1.0, 1.0\]"):
        get_loss("dice", mode="multiclass", class_weights=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="`dist_matrix` must be symmetric"):
        get_loss("generalized_wasserstein_dice", mode="multiclass", dist_matrix=torch.tensor([[0.0, 1.0], [2.0, 0.0]]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
