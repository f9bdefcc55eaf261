"""seglosses.distance: exact signed / unsigned distance maps in physical units, and the data-loader transform.

References (tests/reference_distance.py, NumPy float64): a brute-force Euclidean distance over every pair of
pixels (tiny images), scipy's ``distance_transform_edt`` with ``binary_erosion`` (larger ones), the official
boundary-loss ``one_hot2dist`` (LIVIAETS) and MONAI's ``HausdorffDTLoss.distance_field``.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_distance import blobs, edt_brute, one_hot2dist_liviaets, signed_ref, unsigned_ref
from seglosses.distance import DistanceMapTransform, signed_distance, unsigned_distance

# ------------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize(
    ("shape", "spacing"), [((5, 7), (1.0, 1.0)), ((6, 5), (2.0, 0.7)), ((4, 5, 3), (1.5, 1.0, 0.5))]
)
def test_distance_equals_brute_force(kind: str, shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    idx = blobs(3, 3, shape, seed=1)
    got = (signed_distance if kind == "signed" else unsigned_distance)(
        torch.from_numpy(idx), mode="multiclass", num_classes=3, spacing=spacing
    )
    assert got.dtype == torch.float32
    assert got.shape == (3, 3, *shape)
    ref_fn = signed_ref if kind == "signed" else unsigned_ref
    for n in range(3):
        for c in range(3):
            ref = ref_fn(idx[n] == c, spacing, edt_brute)
            np.testing.assert_allclose(got[n, c].numpy(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("dims", [2, 3])
def test_distance_every_mode_equals_scipy_reference(kind: str, mode: str, dims: int) -> None:
    spatial = (20, 17) if dims == 2 else (9, 8, 7)
    spacing = (0.8, 1.3) if dims == 2 else (2.0, 1.0, 0.6)
    idx = blobs(2, 3, spatial, seed=dims)
    if mode == "binary":
        masks = (idx == 1)[:, None]
        target = torch.from_numpy(masks[:, 0].astype(np.float32))  # (N, *S) form
    elif mode == "multiclass":
        masks = idx[:, None] == np.arange(3).reshape((1, 3) + (1,) * dims)
        target = torch.from_numpy(idx)
    else:
        masks = np.stack([idx == 1, idx != 2, idx == 0], 1)  # overlapping labels
        target = torch.from_numpy(masks.astype(np.float32))
    fn = signed_distance if kind == "signed" else unsigned_distance
    got = fn(target, mode=mode, num_classes=3 if mode == "multiclass" else None, spacing=spacing)
    ref_fn = signed_ref if kind == "signed" else unsigned_ref
    ref = np.stack([np.stack([ref_fn(m, spacing) for m in img]) for img in masks])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-5)


def test_distance_signed_sign_convention_by_hand() -> None:
    # A 5x5 image with a 3x3 square in the middle: the square's ring is 0, its centre -1 (one pixel from the
    # ring), outside the distance to the square (corners sqrt(2)).
    m = torch.zeros(1, 5, 5)
    m[0, 1:4, 1:4] = 1
    phi = signed_distance(m, mode="binary")[0, 0]
    assert phi[2, 2].item() == -1.0
    assert phi[1, 1].item() == 0.0
    assert phi[1, 2].item() == 0.0
    assert phi[0, 2].item() == 1.0
    assert phi[0, 0].item() == pytest.approx(2**0.5)


def test_distance_mask_touching_border_has_its_ring_there() -> None:
    # The image outside is background for the signed map: a mask filling the left 3 columns of a 1x6 row has its
    # ring at column 0 (the border) and column 2.
    m = torch.tensor([[[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]])
    assert signed_distance(m, mode="binary").tolist() == [[[0.0, -1.0, 0.0, 1.0, 2.0, 3.0]]]
    # ... but not for the unsigned map (no boundary on the image border, as MONAI): pixel 0 is 3 from the
    # background.
    assert unsigned_distance(m, mode="binary").tolist() == [[[3.0, 2.0, 1.0, 1.0, 2.0, 3.0]]]


@pytest.mark.parametrize("fn", [signed_distance, unsigned_distance])
def test_distance_empty_and_full_masks_give_zero(fn: Any) -> None:  # noqa: ANN401
    t = torch.zeros(2, 4, 5, dtype=torch.long)
    t[1] = 1  # image 0: class 0 full, class 1 empty; image 1: the other way round
    out = fn(t, mode="multiclass", num_classes=2)
    assert out.abs().sum().item() == 0.0


def test_distance_ignored_pixels_are_background() -> None:
    t = torch.from_numpy(blobs(2, 3, (9, 10), seed=4))
    t_ign = t.clone()
    t_ign[:, 2:4, 3:6] = 255
    got = signed_distance(t_ign, mode="multiclass", num_classes=3, ignore_index=255)
    for n in range(2):
        for c in range(3):
            m = (t[n] == c).numpy() & (t_ign[n] != 255).numpy()
            np.testing.assert_allclose(got[n, c].numpy(), signed_ref(m, (1.0, 1.0)), rtol=1e-6, atol=1e-6)
    # binary targets with a marker value
    g = (t == 1).float()
    g[:, 0, :] = 255
    got = unsigned_distance(g, mode="binary", ignore_index=255)
    for n in range(2):
        m = (t[n] == 1).numpy()
        m[0, :] = False
        np.testing.assert_allclose(got[n, 0].numpy(), unsigned_ref(m, (1.0, 1.0)), rtol=1e-6, atol=1e-6)


def test_distance_ignore_index_outside_the_target_dtype_matches_no_value() -> None:
    """torch compares a uint8 tensor with -1 as with 255 and an int8 one with 257 as with 1: ignore_index must be
    compared as the integer it is (as the losses do), so 255 is refused and class 1 stays a class."""
    # binary uint8 [0, 1, 1, 0]: 257 matches nothing, the mask stays {1, 2}; by hand phi = [1, 0, 0, 1]
    g = torch.tensor([[[0, 1, 1, 0]]], dtype=torch.uint8)
    assert signed_distance(g, mode="binary", ignore_index=257).tolist() == [[[1.0, 0.0, 0.0, 1.0]]]
    # multiclass int8 [0, 1, 1, 2]: class 1's mask is {1, 2}; d = edt(m) + edt(~m) = [1, 1, 1, 1] by hand
    t = torch.tensor([[0, 1, 1, 2]], dtype=torch.int8)
    assert unsigned_distance(t, mode="multiclass", num_classes=3, ignore_index=257)[0, 1].tolist() == [1.0] * 4
    u = torch.tensor([[0, 1, 255]], dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 3\) or equal ignore_index=-1; got 255"):
        signed_distance(u, mode="multiclass", num_classes=3, ignore_index=-1)
    with pytest.raises(ValueError, match=r"must be hard .* e\.g\. 255"):
        signed_distance(u, mode="binary", ignore_index=-1)
    with pytest.raises(ValueError, match=r"must be hard .* e\.g\. 255"):
        DistanceMapTransform(mode="binary", ignore_index=-1).map(u)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32])
def test_distance_wide_unsigned_index_targets(dtype: torch.dtype) -> None:
    """uint16/uint32 class indices (16-bit label images) give the maps of their values (torch has no ``<`` for
    them: NotImplementedError 'lt_cpu' before)."""
    idx = blobs(2, 3, (6, 7), seed=12)
    got = signed_distance(torch.from_numpy(idx).to(dtype), mode="multiclass", num_classes=3, spacing=(1.0, 0.5))
    for n in range(2):
        for c in range(3):
            ref = signed_ref(idx[n] == c, (1.0, 0.5))
            np.testing.assert_allclose(got[n, c].numpy(), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"in \[0, 3\) or equal ignore_index=None; got 3"):
        signed_distance(torch.tensor([[0, 3]], dtype=dtype), mode="multiclass", num_classes=3)


@pytest.mark.parametrize("dtype", [torch.uint64, torch.complex64])
def test_distance_target_of_another_dtype_raises(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=rf"^signed_distance: `target` must be a bool, integer .*got {dtype}$"):
        signed_distance(torch.tensor([[0, 1, 1]]).to(dtype), mode="binary")


def test_distance_index_equals_one_hot_and_bool() -> None:
    t = torch.from_numpy(blobs(2, 4, (7, 8), seed=5))
    one_hot = torch.nn.functional.one_hot(t, 4).movedim(-1, 1)
    a = signed_distance(t, mode="multiclass", num_classes=4, spacing=(1.0, 2.0))
    b = signed_distance(one_hot.float(), mode="multiclass", spacing=(1.0, 2.0))
    c = signed_distance(one_hot.bool(), mode="multiclass", num_classes=4, spacing=(1.0, 2.0))
    assert torch.equal(a, b)
    assert torch.equal(a, c)


def test_distance_binary_shapes_agree() -> None:
    g = torch.from_numpy((blobs(2, 2, (6, 7), seed=6) == 1).astype(np.float32))
    assert torch.equal(signed_distance(g, mode="binary"), signed_distance(g[:, None], mode="binary"))


def test_distance_scalar_spacing_applies_to_every_axis() -> None:
    t = torch.from_numpy(blobs(1, 2, (6, 7), seed=7))
    a = unsigned_distance(t, mode="multiclass", num_classes=2, spacing=0.5)
    b = unsigned_distance(t, mode="multiclass", num_classes=2, spacing=(0.5, 0.5))
    assert torch.equal(a, b)
    torch.testing.assert_close(a, 0.5 * unsigned_distance(t, mode="multiclass", num_classes=2))


# ------------------------------------------------------------------------------------------------ peers


def test_distance_signed_vs_liviaets_one_hot2dist() -> None:
    """Equal at unit spacing for an axis-aligned box inside the image; elsewhere the documented differences."""
    idx = np.zeros((12, 14), dtype=np.int64)
    idx[3:9, 2:11] = 1  # a box not touching the border: the nearest outside pixel lies along a grid axis
    seg = np.stack([idx == 0, idx == 1]).astype(np.float64)
    ours = signed_distance(torch.from_numpy(idx)[None], mode="multiclass", num_classes=2)[0].double().numpy()
    theirs = one_hot2dist_liviaets(seg, (1.0, 1.0))
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6, atol=1e-6)
    # The background class touches the border: scipy does not see the image outside, so their inside distance
    # is larger there; ours counts the outside as background (the border row is on the background's ring).
    assert ours[0][0, 5] == 0.0
    assert theirs[0][0, 5] == -2.0
    # Non-unit spacing s: theirs subtracts 1 unit, ours one pixel (s units), so inside the box ours - theirs
    # = s - 1 exactly, outside they agree.
    s = 2.0
    ours_s = signed_distance(torch.from_numpy(idx)[None], mode="multiclass", num_classes=2, spacing=s)[0]
    theirs_s = one_hot2dist_liviaets(seg, (s, s))
    inside = idx == 1
    np.testing.assert_allclose(ours_s[1].double().numpy()[inside] - theirs_s[1][inside], s - 1.0, atol=1e-5)
    np.testing.assert_allclose(ours_s[1].double().numpy()[~inside], theirs_s[1][~inside], rtol=1e-6)
    # A class filling the image: theirs is minus (edt of an all-True array - 1), not a distance; ours is 0.
    full = np.ones((1, 4, 5))
    assert np.abs(one_hot2dist_liviaets(full, (1.0, 1.0))).sum() > 0
    assert signed_distance(torch.ones(1, 4, 5), mode="binary").abs().sum().item() == 0.0


def test_distance_unsigned_vs_monai_distance_field() -> None:
    hd = pytest.importorskip("monai.losses.hausdorff_loss")
    idx = blobs(3, 3, (16, 13), seed=8)
    masks = torch.from_numpy((idx[:, None] == np.arange(3).reshape(1, 3, 1, 1)).astype(np.float32))
    loss = hd.HausdorffDTLoss()
    for c in range(3):
        theirs = loss.distance_field(masks[:, c : c + 1])
        ours = unsigned_distance(masks[:, c : c + 1], mode="binary")
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ properties


@settings(deadline=None, max_examples=30)
@given(
    bits=st.lists(st.booleans(), min_size=42, max_size=42),
    flip=st.sampled_from([(1,), (2,), (1, 2)]),
    sx=st.floats(0.25, 4.0),
    sy=st.floats(0.25, 4.0),
)
def test_distance_properties(bits: list[bool], flip: tuple[int, ...], sx: float, sy: float) -> None:
    m = torch.tensor(bits, dtype=torch.float32).reshape(1, 6, 7)
    phi = signed_distance(m, mode="binary", spacing=(sx, sy))[:, 0]
    d = unsigned_distance(m, mode="binary", spacing=(sx, sy))[:, 0]
    inside = m > 0
    trivial = bool(inside.all()) or not bool(inside.any())
    # sign convention: <= 0 inside, > 0 outside; the unsigned map is > 0 everywhere (both 0 when trivial)
    if trivial:
        assert phi.abs().sum() == 0
        assert d.abs().sum() == 0
    else:
        assert bool((phi[inside] <= 0).all())
        assert bool((phi[~inside] > 0).all())
        assert bool((d > 0).all())
        # outside, both maps are the distance to the mask
        torch.testing.assert_close(phi[~inside], d[~inside])
    # equal to the brute-force definition (every pair of pixels)
    sp = (sx, sy)
    np.testing.assert_allclose(phi[0].numpy(), signed_ref(inside[0].numpy(), sp, edt_brute), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(d[0].numpy(), unsigned_ref(inside[0].numpy(), sp, edt_brute), rtol=1e-6, atol=1e-5)
    # flipping the image flips the map (the definition has no preferred direction)
    torch.testing.assert_close(signed_distance(m.flip(flip), mode="binary", spacing=(sx, sy))[:, 0], phi.flip(flip))
    # the signed map of the complement: outside it is the old inside distance + ring offset; at least its sign
    # flips wherever neither map is on a ring
    phi_c = signed_distance(1 - m, mode="binary", spacing=(sx, sy))[:, 0]
    both = (phi != 0) & (phi_c != 0)
    assert bool((torch.sign(phi[both]) == -torch.sign(phi_c[both])).all())


# ------------------------------------------------------------------------------------------------ native EDT


def _scipy_edt_stack(masks: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """scipy's exact EDT of each mask of a stack, on the whole image (no bounding box), float64."""
    from scipy import ndimage

    return np.stack([ndimage.distance_transform_edt(m, sampling=spacing) for m in masks])


@settings(deadline=None, max_examples=40)
@given(
    shape=st.sampled_from(
        [(3, 1), (2, 13), (3, 9, 11), (2, 1, 8), (2, 8, 1), (2, 5, 6, 7), (1, 3, 1, 9), (2, 4, 4, 4)]
    ),
    density=st.floats(0.05, 0.97),
    seed=st.integers(0, 2**16),
    spacing=st.lists(st.floats(0.3, 3.0), min_size=3, max_size=3),
)
def test_native_edt_equals_scipy(shape: tuple[int, ...], density: float, seed: int, spacing: list[float]) -> None:
    """The native batched transform (one call over the stack) equals scipy's, mask by mask, to rounding."""
    from seglosses import _native
    from seglosses._ops_distance import _edt_each

    if _native.library() is None:
        pytest.skip(f"native kernels unavailable: {_native.status()}")
    rng = np.random.default_rng(seed)
    masks = rng.random(shape) < density
    masks[0].flat[0] = False  # every mask of the stack has a 0 somewhere (else scipy's transform is not a distance)
    for b in range(1, shape[0]):
        masks[b].flat[rng.integers(masks[b].size)] = False
    sp = tuple(spacing[: len(shape) - 1])
    skip = np.zeros(shape[0], dtype=bool)
    got = _edt_each(masks, sp, skip)
    np.testing.assert_allclose(got, _scipy_edt_stack(masks, sp), rtol=1e-12, atol=0)
    # a skipped mask gives zeros and leaves its neighbours alone
    skip[0] = True
    got_skip = _edt_each(masks, sp, skip)
    assert not got_skip[0].any()
    np.testing.assert_array_equal(got_skip[1:], got[1:])


def test_native_edt_masks_do_not_see_each_other() -> None:
    """A mask's distances come from its own zeros: a lone zero in the next mask of the stack is not nearer."""
    from seglosses import _native
    from seglosses._ops_distance import _edt_each

    if _native.library() is None:
        pytest.skip(f"native kernels unavailable: {_native.status()}")
    masks = np.ones((2, 6, 9, 5), dtype=bool)
    masks[0, 5, 8, 4] = False  # the far corner of mask 0
    masks[1, 0, 0, 0] = False  # the near corner of mask 1, one step away from mask 0's origin along the stack
    got = _edt_each(masks, (1.0, 2.0, 0.5), np.zeros(2, dtype=bool))
    assert got[0, 0, 0, 0] == pytest.approx(float(np.sqrt(5.0**2 + 16.0**2 + 2.0**2)), rel=1e-15)
    assert got[1, 0, 0, 0] == 0.0


def test_native_edt_same_bits_for_any_thread_count_and_equal_to_the_scipy_path() -> None:
    from seglosses import _native

    if _native.library() is None:
        pytest.skip(f"native kernels unavailable: {_native.status()}")
    idx = torch.from_numpy(blobs(4, 3, (40, 33), seed=7))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = signed_distance(idx, mode="multiclass", num_classes=3, spacing=(0.7, 1.9))
        torch.set_num_threads(2)
        two = signed_distance(idx, mode="multiclass", num_classes=3, spacing=(0.7, 1.9))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    _native.set_native(False)
    try:
        scipy_path = signed_distance(idx, mode="multiclass", num_classes=3, spacing=(0.7, 1.9))
        scipy_unsigned = unsigned_distance(idx, mode="multiclass", num_classes=3, spacing=(0.7, 1.9))
    finally:
        _native.set_native(True)
    torch.testing.assert_close(one, scipy_path, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(
        unsigned_distance(idx, mode="multiclass", num_classes=3, spacing=(0.7, 1.9)),
        scipy_unsigned,
        rtol=1e-6,
        atol=1e-6,
    )


# ------------------------------------------------------------------------------------------------ transform


def test_distance_transform_dict_tuple_and_collate() -> None:
    idx = torch.from_numpy(blobs(3, 3, (8, 9), seed=9))
    t = DistanceMapTransform(mode="multiclass", num_classes=3, spacing=(1.0, 0.5))
    t = pickle.loads(pickle.dumps(t))  # picklable, for DataLoader workers
    samples = [{"image": torch.zeros(1, 8, 9), "mask": idx[i]} for i in range(3)]
    out = [t(s) for s in samples]
    assert "dist_map" not in samples[0]  # the input is not modified
    batch = torch.utils.data.default_collate(out)
    expected = signed_distance(idx, mode="multiclass", num_classes=3, spacing=(1.0, 0.5))
    assert torch.equal(batch["dist_map"], expected)
    tup = t((torch.zeros(1, 8, 9), idx[0]))
    assert len(tup) == 3
    assert torch.equal(tup[2], expected[0])
    u = DistanceMapTransform(mode="binary", kind="unsigned", key="d", mask_key="m")
    g = (idx[0] == 1).float()
    ref = unsigned_distance(g[None], mode="binary")[0]
    assert torch.equal(u({"m": g})["d"], ref)
    assert torch.equal(u({"m": g[None]})["d"], ref)
    assert "kind='unsigned'" in repr(u)


def test_distance_transform_numpy_mask_with_negative_strides() -> None:
    """A flipped NumPy mask (a view with negative strides, as flip augmentations give) is taken as its values
    (torch.as_tensor refused it before)."""
    idx = blobs(1, 3, (7, 8), seed=13)[0]
    flipped = np.flip(idx, (0, 1))
    assert flipped.strides[0] < 0
    for kind, ref_fn in (("signed", signed_ref), ("unsigned", unsigned_ref)):
        t = DistanceMapTransform(mode="multiclass", kind=kind, num_classes=3, spacing=(2.0, 0.5))
        got = t({"mask": flipped})["dist_map"]
        assert got.dtype == torch.float32
        assert got.shape == (3, 7, 8)
        for c in range(3):
            np.testing.assert_allclose(got[c].numpy(), ref_fn(flipped == c, (2.0, 0.5)), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "target", "exc", "match"),
    [
        ({"mode": "binary"}, torch.full((1, 3, 3), 0.5), ValueError, "must be hard"),
        ({"mode": "multiclass"}, torch.zeros(1, 3, 3, dtype=torch.long), TypeError, "num_classes"),
        ({"mode": "multiclass", "num_classes": 2}, torch.full((1, 3, 3), 2), ValueError, r"in \[0, 2\).*got 2"),
        ({"mode": "multiclass"}, torch.ones(1, 2, 3, 3), ValueError, "must be one-hot"),
        ({"mode": "binary", "spacing": (1.0, 2.0, 3.0)}, torch.zeros(1, 3, 3), ValueError, r"one value per spatial"),
        ({"mode": "binary", "spacing": -1.0}, torch.zeros(1, 3, 3), ValueError, "finite values > 0"),
        ({"mode": "binary", "spacing": "1"}, torch.zeros(1, 3, 3), TypeError, "`spacing` must be None"),
        ({"mode": "binary"}, np.zeros((1, 3, 3)), TypeError, "must be a torch.Tensor"),
        ({"mode": "binary"}, torch.tensor([1.0, float("nan")]).reshape(1, 2), ValueError, "NaN"),
        ({"mode": "multilabel", "num_classes": 3}, torch.zeros(1, 2, 3, 3), ValueError, "num_classes=3"),
        ({"mode": "multiclas"}, torch.zeros(1, 3, 3), ValueError, "did you mean"),
    ],
)
def test_distance_bad_input(kwargs: dict[str, Any], target: Any, exc: type, match: str) -> None:  # noqa: ANN401
    with pytest.raises(exc, match=match):
        signed_distance(target, **kwargs)


def test_distance_transform_bad_input() -> None:
    with pytest.raises(ValueError, match="kind"):
        DistanceMapTransform(mode="binary", kind="sign")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a dict with key 'mask'"):
        DistanceMapTransform(mode="binary")(torch.zeros(3, 3))
    # the pixel size is checked when the transform is built (not at the first sample, in a loader worker)
    with pytest.raises(ValueError, match=r"^DistanceMapTransform: `spacing` must hold finite values > 0"):
        DistanceMapTransform(mode="binary", spacing=(1.0, -2.0))
    with pytest.raises(TypeError, match=r"^DistanceMapTransform: `spacing`"):
        DistanceMapTransform(mode="binary", spacing="1,1")  # type: ignore[arg-type]
    # a tensor spacing is kept as floats; its length is checked against each mask
    t = DistanceMapTransform(mode="binary", spacing=torch.tensor([2.0, 0.5]))
    assert t.spacing == (2.0, 0.5)
    with pytest.raises(ValueError, match=r"one value per spatial axis \(3\); got 2"):
        t.map(torch.zeros(1, 4, 4, 4))


def test_distance_public_maps_under_compile_equal_eager() -> None:
    """Under ``torch.compile`` the transform runs in the operator's kernel on the real masks (the value checks of
    the target break the graph there); two targets of the same shape give their own maps."""

    def maps(t: torch.Tensor) -> torch.Tensor:
        signed = signed_distance(t, mode="multiclass", num_classes=3, spacing=(1.0, 2.0))
        return signed + unsigned_distance((t == 1).float(), mode="binary", spacing=0.5)

    torch._dynamo.reset()
    compiled = torch.compile(maps, backend="aot_eager")
    for seed in (0, 1):
        t = torch.from_numpy(blobs(2, 3, (7, 6), seed=seed))
        ref = np.stack([[signed_ref(t[n].numpy() == c, (1.0, 2.0)) for c in range(3)] for n in range(2)])
        ref += np.stack([unsigned_ref(t[n].numpy() == 1, (0.5, 0.5)) for n in range(2)])[:, None]
        np.testing.assert_allclose(compiled(t).numpy(), ref, rtol=1e-6, atol=1e-6)


def test_num_classes_required_for_index_targets_says_so():
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"signed_distance: `num_classes` is required here .* got None"):
        signed_distance(t, mode="multiclass")
