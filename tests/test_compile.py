"""``torch.compile`` traces every loss and gives the eager numbers; value checks follow ``set_value_checks``."""

from __future__ import annotations

import pytest
import torch

import seglosses
import seglosses.functional as SF

#: The region, pixel, compound, unified focal and Lovasz families (the losses built on the statistics and pixel-sum
#: passes); the distance-map, topology and extra region losses carry their own compile tests.
NAMES = [
    "asymmetric_focal",
    "asymmetric_focal_tversky",
    "combo",
    "cross_entropy",
    "dice",
    "dice_ce",
    "focal",
    "focal_tversky",
    "generalized_dice",
    "hybrid_focal",
    "jaccard",
    "lovasz",
    "symmetric_focal",
    "symmetric_focal_tversky",
    "tversky",
    "unified_focal",
]
#: Losses compiled with graph breaks (none: Lovasz's sort and weights are the ``seglosses::lovasz_fwd`` operator).
GRAPH_BREAKS: tuple[str, ...] = ()
MULTILABEL_UNSUPPORTED = (
    "unified_focal",
    "asymmetric_focal",
    "symmetric_focal",
    "asymmetric_focal_tversky",
    "symmetric_focal_tversky",
)


def _inputs(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if mode == "multiclass":
        return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)
    return torch.randn(2, 2, 6, 5, generator=g), (torch.rand(2, 2, 6, 5, generator=g) > 0.5).float()


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@pytest.mark.parametrize("name", NAMES)
def test_loss_compiled_equals_eager(name, mode):
    if mode == "multilabel" and name in MULTILABEL_UNSUPPORTED:
        pytest.skip("multilabel raises for the unified focal family")
    torch._dynamo.reset()
    loss = seglosses.get_loss(name, mode=mode)
    x, t = _inputs(mode)
    xe = x.clone().requires_grad_(True)
    eager = loss(xe, t)
    eager.backward()
    # aot_eager: Dynamo + AOTAutograd (where graph breaks and tracing failures show), no C++ toolchain needed
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=name not in GRAPH_BREAKS)
    xc = x.clone().requires_grad_(True)
    out = compiled(xc, t)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-6)


def test_set_value_checks_never_skips_the_range_check_and_restores():
    x, t = _inputs("multiclass")
    bad = t.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"dice_loss: `target` class indices must be in \[0, 3\).*got 7"):
        SF.dice_loss(x, bad, mode="multiclass")
    try:
        seglosses.set_value_checks("never")
        SF.dice_loss(x, t, mode="multiclass")  # still works on valid data
        with pytest.raises(ValueError, match="multiclass"):  # shapes are always checked
            SF.dice_loss(x, t[:, :3], mode="multiclass")
    finally:
        seglosses.set_value_checks("cpu")
    with pytest.raises(ValueError, match=r"set_value_checks: `when` must be one of 'cpu', 'always', 'never'"):
        seglosses.set_value_checks("sometimes")


def test_every_loss_class_compiles_in_one_process_with_fullgraph():
    """Each loss class has its own ``forward`` code object, so compiling all of them in one process stays under
    Dynamo's recompile limit (8 per code object; with one shared ``forward`` the ninth class failed under
    ``fullgraph=True``), and a second Module of one class with another float hyperparameter compiles too (Dynamo
    makes that float symbolic; it is not range-checked while tracing), and so do Modules with class weights and
    per-class alphas (buffers: a call does not read them on the host)."""
    from seglosses import available_losses, get_loss, registry

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (2, 8, 8), generator=g)
    modules = []
    for name in available_losses():
        kw = registry.default_arguments(name, mode="multiclass", num_classes=3) or {}
        modules.append((name, get_loss(name, mode="multiclass", **kw)))
    assert len({id(type(m).forward.__code__) for _, m in modules}) == len(modules)  # (equal, not shared)
    modules += [("dice smooth=1e-3", get_loss("dice", mode="multiclass", smooth=1e-3))]
    modules += [("focal gamma=0.5", get_loss("focal", mode="multiclass", gamma=0.5))]
    # per-class vectors are buffers, not read on the host in a call (a traced call could not)
    modules += [("dice class_weights", get_loss("dice", mode="multiclass", class_weights=[0.5, 1.0, 2.0]))]
    modules += [("focal alpha", get_loss("focal", mode="multiclass", alpha=[0.2, 0.3, 0.5]))]
    for name, module in modules:
        compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x, t), module(x, t), rtol=1e-9, atol=1e-12, msg=name)
    torch._dynamo.reset()
