"""One pixel-size rule (``seglosses._checks.check_spacing``) for every function and Module that takes ``spacing``.

Accepted forms give the same per-axis tuple; bad forms raise the same type with the same message (naming the
function, ``spacing`` and what was received) from the surface metrics, the distance-map functions, the boundary and
Hausdorff-DT losses and their Modules at construction; no message mentions a command-line flag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

import seglosses.functional as SF
from seglosses import distance
from seglosses._checks import check_spacing, check_spacing_form
from seglosses.losses import BoundaryLoss, HausdorffDTLoss
from seglosses.metrics import SegmentationMetrics
from seglosses.metrics.surface import asd, assd, hausdorff, masd, nsd

# ------------------------------------------------------------------------------------------ the rule itself

AXES = (0.5, 2.0, 1.25)  # exact in float32


@pytest.mark.parametrize(
    "form",
    [
        [0.5, 2, 1.25],
        (0.5, 2.0, 1.25),
        torch.tensor(AXES),
        torch.tensor(AXES, dtype=torch.float64),
        np.array(AXES),
        tuple(np.float32(v) for v in AXES),  # what nibabel's header.get_zooms() returns
        [Fraction(1, 2), np.int64(2), Fraction(5, 4)],
    ],
    ids=["list", "tuple", "tensor32", "tensor64", "ndarray", "np.float32", "fraction"],
)
def test_every_sequence_form_gives_the_same_tuple(form: Any) -> None:
    got = check_spacing("f", form, 3)
    assert got == AXES
    assert all(type(v) is float for v in got)
    assert check_spacing("f", form, None) == AXES
    assert check_spacing_form("f", form) == AXES


@pytest.mark.parametrize(
    "form",
    [2, 2.0, np.float32(2.0), np.int64(2), Fraction(2), torch.tensor(2.0), np.array(2.0)],
    ids=["int", "float", "np.float32", "np.int64", "fraction", "tensor0d", "ndarray0d"],
)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_one_number_is_the_size_along_every_axis(form: Any, ndim: int) -> None:
    assert check_spacing("f", form, ndim) == (2.0,) * ndim
    assert check_spacing("f", form, None) == (2.0,)
    form_kept = check_spacing_form("f", form)
    assert form_kept == 2.0
    assert type(form_kept) is float


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_none_is_unit_spacing(ndim: int) -> None:
    assert check_spacing("f", None, ndim) == (1.0,) * ndim
    assert check_spacing("f", None, None) == ()
    assert check_spacing_form("f", None) is None


# bad forms whose error does not depend on the number of axes: (value, exception, fragment of the message that shows
# what was received). Each is also rejected by the Modules at construction, with the same message.
BAD_VALUES: list[tuple[Any, type[Exception], str]] = [
    (True, TypeError, "bool True"),
    ("1mm", TypeError, "str '1mm'"),
    (b"\x01\x02", TypeError, "bytes b'\\x01\\x02'"),
    ({"x": 1.0}, TypeError, "dict {'x': 1.0}"),
    (object, TypeError, "type <class 'object'>"),
    ([1.0, True], TypeError, "bool True in [1.0, True]"),
    ([1.0, "2"], TypeError, "str '2' in [1.0, '2']"),
    ([1.0, None], TypeError, "NoneType None in [1.0, None]"),
    ([1.0, 1 + 0j], TypeError, "complex (1+0j)"),
    (torch.tensor([True, True]), TypeError, "bool True in tensor([True, True])"),
    (0.0, ValueError, "got 0.0"),
    (-1.0, ValueError, "got -1.0"),
    (-2, ValueError, "got -2.0"),
    (math.nan, ValueError, "got nan"),
    (math.inf, ValueError, "got inf"),
    (10**400, ValueError, "got inf"),
    ([1.0, 0.0], ValueError, "got (1.0, 0.0)"),
    ((math.nan, 1.0), ValueError, "got (nan, 1.0)"),
    (torch.tensor([1.0, -2.0]), ValueError, "got (1.0, -2.0)"),
    (np.array([1.0, math.inf]), ValueError, "got (1.0, inf)"),
    (torch.tensor(-1.0), ValueError, "got -1.0"),
    (torch.ones(2, 2), ValueError, "a Tensor of shape (2, 2)"),
    (np.ones((2, 1)), ValueError, "a ndarray of shape (2, 1)"),
]
BAD_IDS = [f"{i}-{exc.__name__}" for i, (_, exc, _) in enumerate(BAD_VALUES)]

# bad for a 2-D image only: the wrong number of values
BAD_LENGTHS: list[tuple[Any, str]] = [
    ((1.0, 2.0, 3.0), "got 3 values (1.0, 2.0, 3.0)"),
    ([1.0], "got 1 values (1.0,)"),
    ([], "got 0 values ()"),
    (torch.ones(3), "got 3 values (1.0, 1.0, 1.0)"),
]


def _message(call: Callable[[], object], exc: type[Exception]) -> str:
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    return str(info.value)


def _assert_api_message(msg: str, fn: str) -> None:
    assert msg.startswith(f"{fn}: `spacing` ")
    assert not re.search(r"--[a-z]", msg), msg  # a Python error names the argument, never a command-line flag


@pytest.mark.parametrize(("value", "exc", "received"), BAD_VALUES, ids=BAD_IDS)
@pytest.mark.parametrize("ndim", [2, None])
def test_bad_form_raises_naming_the_function_argument_and_value(
    value: Any, exc: type[Exception], received: str, ndim: int | None
) -> None:
    msg = _message(lambda: check_spacing("my_fn", value, ndim), exc)
    _assert_api_message(msg, "my_fn")
    assert received in msg
    assert _message(lambda: check_spacing_form("my_fn", value), exc) == msg


@pytest.mark.parametrize(("value", "received"), BAD_LENGTHS)
def test_wrong_length_names_the_expected_count(value: Any, received: str) -> None:
    msg = _message(lambda: check_spacing("my_fn", value, 2), ValueError)
    _assert_api_message(msg, "my_fn")
    assert msg.startswith("my_fn: `spacing` must have one value per spatial axis (2); ")
    assert received in msg


def test_empty_sequence_is_rejected_before_the_axes_are_known() -> None:
    msg = _message(lambda: check_spacing("my_fn", (), None), ValueError)
    _assert_api_message(msg, "my_fn")
    assert "got an empty tuple" in msg


# ------------------------------------------------------------------------------------------ every caller

_X = torch.tensor([[0.1, 0.9, 0.9, 0.2, 0.0], [0.0, 0.8, 0.7, 0.6, 0.1], [0.0, 0.1, 0.9, 0.3, 0.0]]).reshape(1, 1, 3, 5)
_T = (torch.rand(1, 1, 3, 5, generator=torch.Generator().manual_seed(0)) > 0.5).float()
_T[0, 0, 0, 0], _T[0, 0, 1, 1] = 1.0, 0.0  # neither empty nor full
_B = {"mode": "binary"}

# (the name in the message, a call on a 2-D binary image (1, 1, 3, 5) with the given spacing)
CALLS: dict[str, tuple[str, Callable[[Any], object]]] = {
    "hausdorff": ("hausdorff", lambda s: hausdorff(_X, _T, spacing=s, **_B)),
    "hd95": ("hausdorff", lambda s: hausdorff(_X, _T, percentile=95, spacing=s, **_B)),
    "assd": ("assd", lambda s: assd(_X, _T, spacing=s, **_B)),
    "masd": ("masd", lambda s: masd(_X, _T, spacing=s, **_B)),
    "asd": ("asd", lambda s: asd(_X, _T, spacing=s, **_B)),
    "nsd": ("nsd", lambda s: nsd(_X, _T, tolerance=1.0, spacing=s, **_B)),
    "SegmentationMetrics.update": ("SegmentationMetrics.update", lambda s: _metrics_with_spacing_at_update(s)),
    "signed_distance": ("signed_distance", lambda s: distance.signed_distance(_T, spacing=s, **_B)),
    "unsigned_distance": ("unsigned_distance", lambda s: distance.unsigned_distance(_T, spacing=s, **_B)),
    "boundary_loss": ("boundary_loss", lambda s: SF.boundary_loss(_X, _T, spacing=s, **_B)),
    "hausdorff_dt_loss": ("hausdorff_dt_loss", lambda s: SF.hausdorff_dt_loss(_X, _T, spacing=s, **_B)),
}

# (the name in the message, a construction with the given spacing): the values are checked before any input
CONSTRUCTIONS: dict[str, tuple[str, Callable[[Any], object]]] = {
    "BoundaryLoss": ("boundary_loss", lambda s: BoundaryLoss(spacing=s, **_B)),
    "HausdorffDTLoss": ("hausdorff_dt_loss", lambda s: HausdorffDTLoss(spacing=s, **_B)),
    "SegmentationMetrics": (
        "SegmentationMetrics",
        lambda s: SegmentationMetrics(num_classes=1, surface=("hd",), spacing=s, **_B),
    ),
}


def _metrics_with_spacing_at_update(spacing: Any) -> object:  # noqa: ANN401
    """A metric object whose stored spacing is only checked against the image at ``update``."""
    m = SegmentationMetrics(num_classes=1, surface=("hd",), **_B)
    m.spacing = spacing  # as if mutated after construction: update checks it again, now with the image's axes
    return m._surface_update(_X, _T)


@pytest.mark.parametrize("caller", [*CALLS, *CONSTRUCTIONS])
@pytest.mark.parametrize(("value", "exc", "received"), BAD_VALUES, ids=BAD_IDS)
def test_every_caller_rejects_a_bad_spacing_with_the_same_message(
    caller: str, value: Any, exc: type[Exception], received: str
) -> None:
    fn, call = CALLS.get(caller) or CONSTRUCTIONS[caller]
    msg = _message(lambda: call(value), exc)
    _assert_api_message(msg, fn)
    assert received in msg
    # the same text after the caller's name, wherever the rule runs (function call, update or constructor)
    assert msg == _message(lambda: check_spacing(fn, value, 2), exc)
    assert msg.partition(": ")[2] == _message(lambda: check_spacing("x", value, None), exc).partition(": ")[2]


@pytest.mark.parametrize("caller", list(CALLS))
@pytest.mark.parametrize(("value", "received"), BAD_LENGTHS)
def test_every_caller_rejects_a_wrong_length_with_the_same_message(caller: str, value: Any, received: str) -> None:
    fn, call = CALLS[caller]
    msg = _message(lambda: call(value), ValueError)
    _assert_api_message(msg, fn)
    assert f"{fn}: `spacing` must have one value per spatial axis (2); {received}" in msg


GOOD = [(0.5, 2.0), [0.5, 2], torch.tensor([0.5, 2.0]), np.array([0.5, 2.0]), (np.float32(0.5), np.float32(2.0))]


@pytest.mark.parametrize("caller", list(CALLS))
def test_every_caller_gives_the_same_result_for_every_accepted_form(caller: str) -> None:
    _, call = CALLS[caller]
    want = call((0.5, 2.0))
    for form in GOOD[1:]:
        _assert_same(call(form), want)
    _assert_same(call(2.0), call((2.0, 2.0)))  # one number: the same size along both axes


def _assert_same(got: Any, want: Any) -> None:  # noqa: ANN401
    if isinstance(want, dict):  # SegmentationMetrics' surface values of one batch, {name: (N, C)}
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("module", [BoundaryLoss, HausdorffDTLoss])
@pytest.mark.parametrize("form", GOOD, ids=["tuple", "list", "tensor", "ndarray", "np.float32"])
def test_a_module_stores_the_checked_spacing_and_equals_its_function(module: type, form: Any) -> None:
    m = module(spacing=form, **_B)
    assert m.spacing == (0.5, 2.0)
    assert all(type(v) is float for v in m.spacing)
    assert "spacing=(0.5, 2.0)" in repr(m)
    fn = SF.boundary_loss if module is BoundaryLoss else SF.hausdorff_dt_loss
    torch.testing.assert_close(m(_X, _T), fn(_X, _T, spacing=(0.5, 2.0), **_B), rtol=0, atol=0)
    assert module(spacing=2, **_B).spacing == 2.0


def test_segmentation_metrics_keeps_a_number_for_every_axis() -> None:
    m = SegmentationMetrics(num_classes=1, surface=("hd",), spacing=torch.tensor(2.0), **_B)
    assert m.spacing == 2.0
    m.update(_X, _T)
    want = hausdorff(_X, _T, spacing=(2.0, 2.0), average="none", **_B)
    torch.testing.assert_close(m.compute()["hd"], want, rtol=0, atol=0)
    m = SegmentationMetrics(num_classes=1, surface=("hd",), spacing=np.array([0.5, 2.0]), **_B)
    assert m.spacing == (0.5, 2.0)
