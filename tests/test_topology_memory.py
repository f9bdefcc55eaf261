"""The memory-lean soft skeleton: the same values and gradients as the plain autograd composition, less memory.

The plain composition is written here from Algorithm 1 of Shit et al. (CVPR 2021) with autograd's own ops: erode =
the min over the face-connected cross (one 3-wide max-pool of ``-x`` per axis, a later axis taking over only where
strictly greater, so the first axis wins a tie), dilate = the 3^d max-pool (its own tie rule), both over in-image
neighbours (the pools pad with -inf). ``soft_skeleton`` must give the same numbers and, in float64, gradients
within 1e-12; the bytes autograd keeps for the backward of ``cldice_loss`` are bounded by a small multiple of the
logits' bytes (the earlier all-autograd skeleton kept ~99x the logits at 10 steps and fails that bound).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import seglosses.functional as SF
from seglosses.functional.topology import soft_skeleton

POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _cross_max(y: torch.Tensor) -> torch.Tensor:
    """Max over the element and its 2d axis neighbours (in-image), first axis winning ties; plain autograd."""
    d = y.ndim - 2
    best = None
    for axis in range(d):
        kernel, pad = [1] * d, [0] * d
        kernel[axis], pad[axis] = 3, 1
        m = POOLS[d](y, kernel, 1, pad)
        best = m if best is None else torch.where(m > best, m, best)
    assert best is not None
    return best


def plain_erode(x: torch.Tensor) -> torch.Tensor:
    return -_cross_max(-x)


def plain_dilate(x: torch.Tensor) -> torch.Tensor:
    return POOLS[x.ndim - 2](x, 3, 1, 1)


def plain_skeleton(img: torch.Tensor, iterations: int) -> torch.Tensor:
    """Algorithm 1: ``S = relu(x - open(x))``; repeat ``x = erode(x)``, ``d = relu(x - open(x))``,
    ``S = S + relu(d - S d)``."""
    if img.ndim == 3:  # one spatial axis, as a 1 x W image (the 1-D cross and box are 3-wide windows)
        return plain_skeleton(img.unsqueeze(2), iterations).squeeze(2)
    skel = F.relu(img - plain_dilate(plain_erode(img)))
    for _ in range(iterations):
        img = plain_erode(img)
        delta = F.relu(img - plain_dilate(plain_erode(img)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


SHAPES = [(2, 3, 9), (2, 2, 7, 5), (1, 2, 5, 3, 7), (1, 1, 11, 13)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{len(s) - 2}d")
@pytest.mark.parametrize("iterations", [0, 1, 3, 10])
@pytest.mark.parametrize("ties", [False, True])
def test_lean_skeleton_equals_plain_composition(shape: tuple[int, ...], iterations: int, ties: bool) -> None:
    g = torch.Generator().manual_seed(len(shape) * 100 + iterations * 10 + ties)
    if ties:  # few distinct values: every pool and the cross see ties
        x = torch.randint(0, 4, shape, generator=g).double() / 3
    else:
        x = torch.rand(shape, generator=g, dtype=torch.float64)
    w = torch.rand(shape, generator=g, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    got = soft_skeleton(xa, iterations)
    want = plain_skeleton(xb, iterations)
    assert torch.equal(got, want)
    (got * w).sum().backward()
    (want * w).sum().backward()
    assert xa.grad is not None
    assert xb.grad is not None
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    assert xa.grad.abs().sum() > 0  # the comparison is not between two zero gradients


def test_lean_skeleton_float32_equals_plain_composition() -> None:
    x = torch.rand(2, 3, 17, 12, generator=torch.Generator().manual_seed(3))
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    got, want = soft_skeleton(xa, 10), plain_skeleton(xb, 10)
    assert torch.equal(got, want)
    got.sum().backward()
    want.sum().backward()
    assert xa.grad is not None
    assert xb.grad is not None
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "iterations"),
    [((1, 2, 7), 5), ((1, 1, 5, 4), 4), ((1, 1, 5, 4), 8), ((1, 1, 3, 4, 3), 3)],
)
def test_lean_skeleton_gradcheck(shape: tuple[int, ...], iterations: int) -> None:
    # iterations 4 and 8 run 2 and 3 checkpoint segments of the recomputing backward
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(iterations))
    assert torch.autograd.gradcheck(lambda a: soft_skeleton(a, iterations), (x.requires_grad_(True),))


def test_lean_skeleton_double_backward() -> None:
    # create_graph=True takes the plain composition inside the backward, so second derivatives exist
    x = torch.rand(1, 2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradgradcheck(lambda a: soft_skeleton(a, 2), (x.requires_grad_(True),))
    t = torch.randint(0, 2, (1, 5, 4), generator=torch.Generator().manual_seed(2))
    fn = lambda a: SF.cldice_loss(a, t, mode="multiclass", iterations=4)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x,))


def _saved_bytes(fn: object, *args: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``fn(*args)``, the inputs' excluded."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)  # type: ignore[operator]
    for a in args:
        storages.pop(a.untyped_storage().data_ptr(), None)
    return sum(storages.values())


@pytest.mark.parametrize("iterations", [0, 3, 10, 30])
def test_skeleton_saves_checkpoints_only(iterations: int) -> None:
    # saved: x and (erosion, skeleton) at every ~sqrt(steps)-th step; at most 2 sqrt(iterations + 1) tensors of x's size
    x = torch.rand(2, 3, 20, 24, requires_grad=True)
    y = x * 1  # a non-input, so that saving it counts
    saved = _saved_bytes(lambda a: soft_skeleton(a, iterations), y)
    assert saved <= 2 * math.sqrt(iterations + 1) * x.numel() * x.element_size()


@pytest.mark.parametrize(
    ("shape", "mode", "bound"),
    [
        ((4, 4, 40, 36), "multiclass", 6.0),
        ((2, 3, 12, 14, 10), "multiclass", 6.0),
        ((2, 3, 30, 30), "multilabel", 7.5),
    ],
)
def test_cldice_saved_bytes_small_multiple_of_logits(shape: tuple[int, ...], mode: str, bound: float) -> None:
    # 10 steps. Index targets: softmax's output (1x), 4 skeleton checkpoints (4x), the bool masks of the two target
    # sums (0.5x): at most 6x. Dense targets: the float target and its skeleton instead of the masks (2x): 7.5x.
    # The earlier skeleton kept every step's pools, indices and relu inputs: ~99x.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, requires_grad=True)
    if mode == "multiclass":
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    else:
        t = (torch.rand(shape, generator=g) > 0.5).float()
    saved = _saved_bytes(lambda a: SF.cldice_loss(a, t, mode=mode, iterations=10), x)
    assert saved <= bound * x.numel() * x.element_size()
