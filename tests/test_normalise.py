"""compare's image normalisation: histogram percentiles of uint8/uint16 images equal ``np.percentile`` bitwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglosses.cli.data import _percentiles, normalise


def _reference(image: np.ndarray) -> np.ndarray:
    """The definition: each channel as float32, scaled by its 1st and 99.8th percentiles (NumPy, linear)."""
    image = image.astype(np.float32)
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        lo, hi = np.percentile(image[c], [1.0, 99.8])
        out[c] = (image[c] - lo) / max(float(hi - lo), 1e-6)
    return out


@settings(deadline=None, max_examples=200)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16]),
    n=st.integers(1, 3000),
    top=st.integers(1, 65535),
    constant=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_histogram_percentiles_equal_numpy(dtype: type, n: int, top: int, constant: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hi = min(top, int(np.iinfo(dtype).max))
    x = rng.integers(0, hi + 1, n).astype(dtype)
    if constant:
        x[:] = x[0]
    lo_ref, hi_ref = np.percentile(x.astype(np.float32), [1.0, 99.8])
    lo, hi_got = _percentiles(x)
    assert (lo, hi_got) == (lo_ref, hi_ref)
    assert type(lo) is type(lo_ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64, np.bool_])
def test_normalise_equals_the_definition(dtype: type) -> None:
    rng = np.random.default_rng(3)
    scale = 1 if dtype is np.bool_ else 250
    image = (rng.random((3, 41, 29)) * scale * (1 + np.arange(3)[:, None, None])).astype(dtype)
    got = normalise(image)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _reference(image))
