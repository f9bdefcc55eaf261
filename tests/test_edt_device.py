"""Distance maps on the masks' device (:mod:`seglosses._edt_device`, CUDA's path of ``seglosses::distance_maps``).

The PyTorch twin of the min-plus passes against a brute-force NumPy float64 reference written here (the minimum of
the spacing-weighted Euclidean distance over every element of the other side), against the CPU transform of the
operator, on 1D/2D/3D masks with anisotropic spacing, empty, full, single-element and border masks, and axes of 1
or 2 elements. The Triton pass runs in a subprocess under ``TRITON_INTERPRET=1`` (see tests/test_triton.py): equal
to the twin to the bit, and through the operator's CUDA implementation registered for the CPU, the boundary and
Hausdorff-DT losses with their maps computed inside equal the CPU path without the host transform being called.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seglosses import _edt_device
from seglosses._ops_distance import distance_maps


def _edt_ref(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """For every True element the distance to the nearest False element (spacing-weighted); 0 on False."""
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(-1, mask.ndim)
    flat = mask.reshape(-1)
    out = np.zeros(flat.shape, dtype=np.float64)
    other = coords[~flat] * np.asarray(spacing)
    if len(other):
        for i in np.flatnonzero(flat):
            out[i] = np.sqrt(((other - coords[i] * np.asarray(spacing)) ** 2).sum(-1).min())
    return out.reshape(mask.shape)


def _erode_ref(mask: np.ndarray) -> np.ndarray:
    """Erosion with the face-connected cross; outside the image is background."""
    padded = np.pad(mask, 1, constant_values=False)
    out = padded.copy()
    for axis in range(mask.ndim):
        out &= np.roll(padded, 1, axis) & np.roll(padded, -1, axis)
    return out[tuple(slice(1, -1) for _ in range(mask.ndim))]


def _map_ref(mask: np.ndarray, spacing: tuple[float, ...], kind: str) -> np.ndarray:
    if not mask.any() or mask.all():
        return np.zeros(mask.shape)
    if kind == "unsigned":
        return _edt_ref(mask, spacing) + _edt_ref(~mask, spacing)
    return _edt_ref(~mask, spacing) - _edt_ref(_erode_ref(mask), spacing)


SHAPES = {
    "1d": ((3, 29), (1.5,)),
    "2d": ((3, 13, 17), (1.0, 1.0)),
    "2d_aniso": ((2, 11, 9), (0.7, 2.5)),
    "3d_aniso": ((2, 7, 9, 6), (2.0, 0.8, 0.8)),
    "thin_axes": ((2, 1, 2, 9), (1.0, 1.0, 1.0)),
}
FILLS = ("random", "empty", "full", "one_element", "border")


def _masks(shape: tuple[int, ...], fill: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) > 0.55
    if fill == "empty":
        m[0] = False
    elif fill == "full":
        m[0] = True
    elif fill == "one_element":
        m[0] = False
        m[(0,) + tuple(n // 2 for n in shape[1:])] = True
    elif fill == "border":  # the mask touches every edge of the image
        m[0] = False
        for axis in range(1, len(shape)):
            m[0].narrow(axis - 1, 0, 1).fill_(True)
    return m


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_device_maps_match_brute_force_reference_and_cpu_transform(name, fill, kind):
    shape, spacing = SHAPES[name]
    masks = _masks(shape, fill, seed=len(name) + FILLS.index(fill))
    got = _edt_device.maps_on_device(masks, spacing, kind, torch.float64, twin=True)
    ref = np.stack([_map_ref(m, spacing, kind) for m in masks.numpy()])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)
    cpu = distance_maps(masks, spacing, kind, torch.float64)  # the CPU transform (native or scipy)
    np.testing.assert_allclose(got.numpy(), cpu.numpy(), rtol=1e-12, atol=1e-12)


def test_device_maps_keep_the_requested_dtype():
    masks = _masks((2, 8, 8), "random", 3)
    out = _edt_device.maps_on_device(masks, (1.0, 1.0), "signed", torch.float32, twin=True)
    assert out.dtype == torch.float32
    assert out.shape == masks.shape


@pytest.mark.parametrize(("n", "s2"), [(1, 1.0), (7, 0.25), (64, 1.0), (65, 6.25), (130, 0.64)])
def test_min_plus_twin_is_the_definition(n, s2):
    g = torch.Generator().manual_seed(n)
    f = torch.rand(3, n, generator=g, dtype=torch.float64) * 40
    f[f > 25] = float("inf")
    out = _edt_device.min_plus_lines_twin(f, s2)
    i = np.arange(n)
    ref = (f.numpy()[:, None, :] + s2 * (i[:, None] - i[None, :]) ** 2).min(-1)
    np.testing.assert_array_equal(out.numpy(), ref)


# ---- the Triton pass, in a subprocess under the interpreter --------------------------------------------------


def _worker() -> None:  # pragma: no cover - runs in the subprocess
    import json

    import seglosses
    import seglosses.functional as SF
    from seglosses import _ops_distance

    results: dict[str, float] = {}
    for n, s2 in [(1, 1.0), (63, 0.64), (64, 1.0), (65, 2.25), (130, 4.0)]:
        g = torch.Generator().manual_seed(n)
        f = torch.rand(4, n, generator=g, dtype=torch.float64) * 50
        f[f > 30] = float("inf")
        same = torch.equal(_edt_device._min_plus_launch(f, s2), _edt_device.min_plus_lines_twin(f, s2))
        results[f"lines/{n}"] = 0.0 if same else 1.0
    _edt_device.kernel_runs = lambda device: True  # the Triton pass for CPU lines too
    for (name, (shape, spacing)), kind in itertools.product(sorted(SHAPES.items()), ("signed", "unsigned")):
        masks = _masks(shape, "random", 5)
        got = _edt_device.maps_on_device(masks, spacing, kind, torch.float64)
        ref = distance_maps(masks, spacing, kind, torch.float64)
        results[f"maps/{name}/{kind}"] = float((got - ref).abs().max())
    # the losses with their maps computed inside, through the operator's CUDA implementation
    refs = {}
    g = torch.Generator().manual_seed(9)
    inputs = {
        "binary": (torch.randn(2, 1, 12, 10, generator=g, dtype=torch.float64),
                   (torch.rand(2, 1, 12, 10, generator=g) > 0.6).double()),
        "multiclass": (torch.randn(2, 3, 6, 7, 5, generator=g, dtype=torch.float64),
                       torch.randint(0, 3, (2, 6, 7, 5), generator=g)),
    }  # fmt: skip
    cases = [(name, mode) for name in ("boundary_loss", "hausdorff_dt_loss") for mode in inputs]
    for name, mode in cases:
        x, t = inputs[mode]
        xr = x.clone().requires_grad_(True)
        out = getattr(SF, name)(xr, t, mode=mode)
        out.backward()
        refs[(name, mode)] = (float(out), xr.grad)
    torch.library.register_kernel("seglosses::distance_maps", "cpu", _ops_distance._distance_maps_cuda)

    def no_host(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the host transform ran")

    _ops_distance.maps_from_masks = no_host  # type: ignore[assignment]
    seglosses.set_value_checks("never")  # as on a GPU
    for name, mode in cases:
        x, t = inputs[mode]
        xr = x.clone().requires_grad_(True)
        out = getattr(SF, name)(xr, t, mode=mode)
        out.backward()
        ref_v, ref_g = refs[(name, mode)]
        results[f"loss/{name}/{mode}/value"] = abs(float(out) - ref_v) / max(abs(ref_v), 1e-12)
        results[f"loss/{name}/{mode}/grad"] = float((xr.grad - ref_g).abs().max())
    print("RESULTS " + json.dumps(results))


@pytest.fixture(scope="module")
def interpreted() -> dict[str, float]:
    pytest.importorskip("triton")
    from helpers import run_interpreted

    return run_interpreted(str(Path(__file__).resolve()))


@pytest.mark.parametrize("n", [1, 63, 64, 65, 130])
def test_triton_min_plus_pass_equals_twin_to_the_bit(interpreted, n):
    assert interpreted[f"lines/{n}"] == 0.0


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_triton_maps_equal_cpu_transform(interpreted, name, kind):
    assert interpreted[f"maps/{name}/{kind}"] < 1e-12, interpreted[f"maps/{name}/{kind}"]


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("name", ["boundary_loss", "hausdorff_dt_loss"])
def test_losses_with_maps_on_the_device_equal_cpu_path(interpreted, name, mode):
    """No host transform (it is replaced by an error in the subprocess), the same loss and gradient."""
    assert interpreted[f"loss/{name}/{mode}/value"] < 1e-12, interpreted[f"loss/{name}/{mode}/value"]
    assert interpreted[f"loss/{name}/{mode}/grad"] < 1e-12, interpreted[f"loss/{name}/{mode}/grad"]


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
