"""The operator ``seglosses::distance_maps``: opcheck, values against SciPy, errors, one graph under compile.

Reference (written here, NumPy float64 from the definitions): for a mask ``m`` and scipy's exact
``distance_transform_edt`` with ``sampling=spacing`` on the whole image, the signed map
``edt(~m) (~m) - edt(erode(m)) m`` (``erode`` with the face-connected cross, the image outside as background) and
the unsigned map ``edt(m) + edt(~m)``; both 0 for an empty or a full mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage

from seglosses import _native
from seglosses._ops_distance import distance_maps

OP = torch.ops.seglosses.distance_maps.default


def _edt(a: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    return np.asarray(ndimage.distance_transform_edt(a, sampling=spacing), dtype=np.float64)


def _ref(masks: np.ndarray, spacing: tuple[float, ...], kind: str) -> np.ndarray:
    """The maps of each mask of a stack ``(B, *S)``, float64."""
    out = np.zeros(masks.shape)
    for b, m in enumerate(masks):
        if not m.any() or m.all():
            continue
        if kind == "signed":
            cross = ndimage.generate_binary_structure(m.ndim, 1)
            core = ndimage.binary_erosion(m, structure=cross, border_value=0)
            out[b] = _edt(~m, spacing) * ~m - _edt(core, spacing) * m
        else:
            out[b] = _edt(m, spacing) + _edt(~m, spacing)
    return out


def _masks(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random blob masks ``(B, *S)``; mask 0 empty and mask 1 full when there are at least 4."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.uniform_filter(rng.normal(size=shape), size=(1,) + (3,) * (len(shape) - 1))
    masks = smooth > 0
    if shape[0] >= 4:
        masks[0] = False
        masks[1] = True
    return torch.from_numpy(masks)


# (shape (B, *S), spacing): 1-D to 3-D, anisotropic, with singleton axes
SHAPES = [
    ((4, 17), (0.7,)),
    ((5, 9, 7), (1.0, 1.0)),
    ((4, 8, 1), (2.0, 0.5)),
    ((4, 5, 6, 4), (1.5, 1.0, 0.4)),
    ((2, 1, 7, 3), (0.3, 2.5, 1.0)),
]


@pytest.mark.parametrize(("shape", "spacing"), SHAPES)
@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_distance_maps_equal_scipy_reference(
    shape: tuple[int, ...], spacing: tuple[float, ...], kind: str, dtype: torch.dtype
) -> None:
    masks = _masks(shape, seed=len(shape) + shape[-1])
    got = distance_maps(masks, spacing, kind, dtype)
    assert got.dtype == dtype
    assert got.shape == masks.shape
    ref = _ref(masks.numpy(), spacing, kind)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(got.numpy(), ref, rtol=tol, atol=tol)
    if shape[0] >= 4:
        assert not got[:2].any()  # the empty and the full mask


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
def test_distance_maps_scipy_path_equals_reference(kind: str) -> None:
    """Without the native kernels the operator runs scipy per mask (on the bounding box): the same maps."""
    masks = _masks((4, 9, 8, 5), seed=3)
    spacing = (1.2, 0.6, 2.0)
    _native.set_native(False)
    try:
        got = distance_maps(masks, spacing, kind, torch.float64)
    finally:
        _native.set_native(True)
    np.testing.assert_allclose(got.numpy(), _ref(masks.numpy(), spacing, kind), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "spacing", "kind", "dtype"),
    [
        ((4, 11), (0.5,), "signed", torch.float32),
        ((4, 6, 5), (1.0, 2.0), "unsigned", torch.float64),
        ((4, 6, 5), (1.0, 2.0), "signed", torch.float64),
        ((4, 3, 4, 5), (0.5, 1.0, 1.5), "unsigned", torch.float32),
        ((4, 3, 4, 5), (0.5, 1.0, 1.5), "signed", torch.float32),
        ((0, 4, 3), (1.0, 1.0), "signed", torch.float32),
    ],
)
def test_opcheck_distance_maps(shape: tuple[int, ...], spacing: tuple[float, ...], kind: str, dtype: Any) -> None:  # noqa: ANN401
    """Schema, fake registration, (absent) autograd and AOT dispatch with dynamic shapes; masks 0/1 empty/full."""
    masks = _masks(shape, seed=7) if shape[0] else torch.zeros(shape, dtype=torch.bool)
    torch.library.opcheck(OP, (masks, list(spacing), kind, dtype))


def test_distance_maps_one_graph_under_compile_and_not_frozen() -> None:
    """``fullgraph=True``: the operator is one node; a second call with other masks of the same shape recomputes."""
    seen: list[list[str]] = []

    def backend(gm: torch.fx.GraphModule, example: Any) -> Any:  # noqa: ANN401
        seen.append([str(n.target) for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    def f(x: torch.Tensor) -> torch.Tensor:
        return distance_maps(x > 0.5, [1.0, 2.0], "signed", torch.float32) * x

    torch._dynamo.reset()
    compiled = torch.compile(f, backend=backend, fullgraph=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = torch.rand(3, 7, 6, generator=g)
        torch.testing.assert_close(compiled(x), f(x), rtol=0, atol=0)
    assert len(seen) == 1
    assert sum("distance_maps" in t for t in seen[0]) == 1


def test_distance_maps_fake_tensor_gives_shape_and_dtype() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        masks = mode.from_tensor(torch.zeros(2, 5, 3, dtype=torch.bool))
        out = distance_maps(masks, [1.0, 1.0], "unsigned", torch.float64)
    assert out.shape == (2, 5, 3)
    assert out.dtype == torch.float64


@pytest.mark.parametrize(
    ("masks", "spacing", "kind", "dtype", "exc", "match"),
    [
        (torch.zeros(2, 4), [1.0], "signed", torch.float32, TypeError, "must be a bool tensor; got torch.float32"),
        (torch.zeros(4, dtype=torch.bool), [], "signed", torch.float32, ValueError, r"shape \(B, \*S\)"),
        (torch.zeros(2, 4, dtype=torch.bool), [1.0, 1.0], "signed", torch.float32, ValueError, r"per spatial axis"),
        (torch.zeros(2, 4, dtype=torch.bool), [0.0], "signed", torch.float32, ValueError, "finite values > 0"),
        (torch.zeros(2, 4, dtype=torch.bool), [1.0], "euclid", torch.float32, ValueError, "`kind` must be one of"),
        (torch.zeros(2, 4, dtype=torch.bool), [1.0], "signed", torch.float16, TypeError, "float32 or torch.float64"),
        # finite but huge: the squared distances overflowed float64 and the maps held NaN and inf
        (torch.eye(3, dtype=torch.bool)[None], [1e160, 1.0], "signed", torch.float64, ValueError, r"<= 1e\+150"),
        (torch.eye(3, dtype=torch.bool)[None], [1.0, 1e160], "unsigned", torch.float32, ValueError, "image size"),
    ],
)
def test_distance_maps_bad_input(
    masks: torch.Tensor, spacing: list[float], kind: str, dtype: torch.dtype, exc: type, match: str
) -> None:
    with pytest.raises(exc, match=match):
        distance_maps(masks, spacing, kind, dtype)
