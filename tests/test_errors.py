"""Bad input raises ValueError/TypeError naming the function, the argument and the received value."""

from __future__ import annotations

import re

import pytest
import torch

import seglosses
import seglosses.functional as SF

ALL = [
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "cross_entropy_loss",
    "focal_loss",
    "dice_ce_loss",
    "combo_loss",
    "hybrid_focal_loss",
    "unified_focal_loss",
    "asymmetric_focal_loss",
    "symmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "symmetric_focal_tversky_loss",
]
UNIFIED = [n for n in ALL if "symmetric" in n or n == "unified_focal_loss"]
WEIGHTED = [
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "cross_entropy_loss",
    "dice_ce_loss",
    "combo_loss",
    "hybrid_focal_loss",
]


def msg(fn: str, arg: str, *received: str) -> str:
    """``<fn>: `<arg>` ... <received> ...``, robust to the wording in between."""
    return f"{re.escape(fn)}: `{re.escape(arg)}`" + "".join(".*" + re.escape(r) for r in received)


def _mc(n=2, c=3, s=(5, 6)):
    return torch.randn(n, c, *s, dtype=torch.float64), torch.randint(0, c, (n, *s))


@pytest.mark.parametrize("name", ALL)
def test_loss_mismatched_binary_shapes_raise(name):
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 1, 5, 5)
    with pytest.raises(ValueError, match=msg(name, "target", "(2, 1, 5, 5)")):
        getattr(SF, name)(x, t, mode="binary")


@pytest.mark.parametrize("name", ALL)
def test_loss_multiclass_target_with_channel_dim_raises(name):
    x, _ = _mc()
    t = torch.zeros(2, 1, 5, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=msg(name, "target", "(2, 1, 5, 6)")):
        getattr(SF, name)(x, t, mode="multiclass")


@pytest.mark.parametrize("name", [n for n in ALL if n not in UNIFIED])
def test_loss_multilabel_shape_mismatch_raises(name):
    x = torch.randn(2, 3, 5, 6)
    t = torch.zeros(2, 3, 6, 5)
    with pytest.raises(ValueError, match=msg(name, "target", "(2, 3, 6, 5)")):
        getattr(SF, name)(x, t, mode="multilabel")


@pytest.mark.parametrize("bad", [3, 7, -1])
@pytest.mark.parametrize("name", ALL)
def test_loss_class_index_out_of_range_raises(name, bad):
    x, t = _mc()
    t[0, 0, 0] = bad
    with pytest.raises(ValueError, match=msg(name, "target", "[0, 3)", str(bad))):
        getattr(SF, name)(x, t, mode="multiclass")


@pytest.mark.parametrize("name", ["dice_loss", "cross_entropy_loss", "unified_focal_loss"])
def test_loss_class_index_out_of_range_with_ignore_index_raises(name):
    x, t = _mc()
    t[0, 0, 0] = 255  # fine: the ignore marker
    t[0, 0, 1] = 4  # not fine
    with pytest.raises(ValueError, match=msg(name, "target", "[0, 3)", "4")):
        getattr(SF, name)(x, t, mode="multiclass", ignore_index=255)


@pytest.mark.parametrize("name", ALL)
def test_loss_one_hot_channel_mismatch_raises(name):
    x, _ = _mc()
    t = torch.zeros(2, 4, 5, 6, dtype=torch.float64)
    t[:, 0] = 1
    with pytest.raises(ValueError, match=msg(name, "target", "(2, 4, 5, 6)")):
        getattr(SF, name)(x, t, mode="multiclass")


@pytest.mark.parametrize("name", ALL)
def test_loss_unknown_mode_raises_with_did_you_mean(name):
    x, t = _mc()
    with pytest.raises(ValueError, match=msg(name, "mode", "'multiclas'", "did you mean", "'multiclass'")):
        getattr(SF, name)(x, t, mode="multiclas")


@pytest.mark.parametrize("name", ALL)
def test_loss_nan_in_target_raises(name):
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 1, 5, 6)
    t[0, 0, 1, 1] = float("nan")
    t[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=msg(name, "target", "NaN")):
        getattr(SF, name)(x, t, mode="binary")


@pytest.mark.parametrize("bad", [float("nan"), 1.5, -0.25])
@pytest.mark.parametrize("name", [*ALL, "lovasz_loss"])
def test_loss_probabilities_outside_unit_interval_raise(name, bad):
    # from_logits=False: NaN is not a probability either (it passed the [0, 1] check, as aminmax propagates NaN, and
    # focal Tversky then returned 0)
    p = torch.full((2, 1, 5, 6), 0.5)
    p[1, 0, 2, 3] = bad
    t = torch.zeros(2, 1, 5, 6)
    received = "NaN" if bad != bad else str(bad)
    with pytest.raises(ValueError, match=msg(name, "input", "from_logits=False", "[0, 1]", received)):
        getattr(SF, name)(p, t, mode="binary", from_logits=False)


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
@pytest.mark.parametrize("name", ALL)
def test_loss_binary_target_outside_unit_interval_raises(name, mode):
    if mode == "multilabel" and name in UNIFIED:
        pytest.skip("multilabel raises for unified focal losses (tested below)")
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 5, 6)
    t = torch.zeros(2, c, 5, 6)
    t[0, 0, 0, 0] = 2.0
    t[1, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match=msg(name, "target", "[0, 1]", "-1", "2")):
        getattr(SF, name)(x, t, mode=mode)


@pytest.mark.parametrize("name", ALL)
def test_loss_marker_value_without_ignore_index_raises(name):
    # 255 is only a valid binary target value when it is the ignore_index
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 1, 5, 6)
    t[0, 0, 0, 0] = 255.0
    with pytest.raises(ValueError, match=msg(name, "target", "255")):
        getattr(SF, name)(x, t, mode="binary")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
@pytest.mark.parametrize("name", ALL)
def test_loss_non_float_input_raises_type_error(name, dtype):
    x = torch.zeros(2, 3, 5, 6, dtype=dtype)
    t = torch.randint(0, 3, (2, 5, 6))
    with pytest.raises(TypeError, match=msg(name, "input", str(dtype))):
        getattr(SF, name)(x, t, mode="multiclass")


@pytest.mark.parametrize("name", ALL)
def test_loss_float_index_target_raises_type_error(name):
    x, t = _mc()
    with pytest.raises(TypeError, match=msg(name, "target", "float")):
        getattr(SF, name)(x, t.double(), mode="multiclass")


BAD_HPARAMS = [
    ("dice_loss", "smooth", -1.0),
    ("jaccard_loss", "smooth", -0.5),
    ("tversky_loss", "alpha", -0.1),
    ("tversky_loss", "beta", -2.0),
    ("tversky_loss", "smooth", -1.0),
    ("focal_tversky_loss", "gamma", -1.0),
    ("generalized_dice_loss", "smooth", -1.0),
    ("cross_entropy_loss", "label_smoothing", -0.1),
    ("cross_entropy_loss", "label_smoothing", 1.5),
    ("focal_loss", "gamma", -1.0),
    ("focal_loss", "alpha", 1.5),
    ("focal_loss", "alpha", -0.5),
    ("dice_ce_loss", "ce_weight", -1.0),
    ("dice_ce_loss", "dice_weight", -1.0),
    ("dice_ce_loss", "smooth", -1.0),
    ("combo_loss", "alpha", 1.5),
    ("combo_loss", "beta", -0.5),
    ("hybrid_focal_loss", "weight", 1.5),
    ("hybrid_focal_loss", "focal_gamma", -1.0),
    ("hybrid_focal_loss", "tversky_alpha", -1.0),
    ("unified_focal_loss", "weight", -0.1),
    ("unified_focal_loss", "delta", 1.5),
    ("unified_focal_loss", "gamma", -0.5),
    ("asymmetric_focal_loss", "delta", -0.2),
    ("symmetric_focal_loss", "gamma", -1.0),
    ("asymmetric_focal_tversky_loss", "delta", 2.0),
    ("symmetric_focal_tversky_loss", "smooth", -1.0),
]


@pytest.mark.parametrize(("name", "key", "value"), BAD_HPARAMS)
def test_loss_bad_hyperparameter_raises(name, key, value):
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 1, 5, 6)
    with pytest.raises(ValueError, match=msg(name, key, f"{value:g}")):
        getattr(SF, name)(x, t, mode="binary", **{key: value})


@pytest.mark.parametrize("name", ["focal_loss", "hybrid_focal_loss"])
def test_focal_loss_float_alpha_in_multiclass_raises(name):
    x, t = _mc()
    key = "alpha" if name == "focal_loss" else "focal_alpha"
    with pytest.raises(ValueError, match=msg(name, key, "0.25")):
        getattr(SF, name)(x, t, mode="multiclass", **{key: 0.25})


def test_focal_loss_alpha_wrong_length_raises():
    x, t = _mc()
    with pytest.raises(ValueError, match=msg("focal_loss", "alpha", "2")):
        SF.focal_loss(x, t, mode="multiclass", alpha=[0.5, 0.5])


@pytest.mark.parametrize("name", WEIGHTED)
def test_loss_class_weights_wrong_length_raises(name):
    x, t = _mc()
    with pytest.raises(ValueError, match=msg(name, "class_weights", "4")):
        getattr(SF, name)(x, t, mode="multiclass", class_weights=[1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("name", WEIGHTED)
def test_loss_class_weights_negative_raises(name):
    x, t = _mc()
    with pytest.raises(ValueError, match=msg(name, "class_weights", "-1")):
        getattr(SF, name)(x, t, mode="multiclass", class_weights=[1.0, -1.0, 1.0])


@pytest.mark.parametrize("name", [n for n in WEIGHTED if n != "cross_entropy_loss"])  # CE keeps every class
@pytest.mark.parametrize("tensor", [False, True])
def test_loss_class_weights_zero_on_kept_classes_raises(name, tensor):
    # the vector's sum is positive, but include_background=False keeps classes 1 and 2, whose weights are 0:
    # the weighted mean would be 0/0 (NaN)
    x, t = _mc()
    w = torch.tensor([1.0, 0.0, 0.0]) if tensor else [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=msg(name, "class_weights", "kept classes")):
        getattr(SF, name)(x, t, mode="multiclass", include_background=False, class_weights=w)
    kept = getattr(SF, name)(x, t, mode="multiclass", include_background=False, class_weights=[1.0, 0.0, 2.0])
    assert torch.isfinite(kept)


@pytest.mark.parametrize("name", WEIGHTED)
def test_loss_class_weights_in_binary_mode_raises(name):
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 1, 5, 6)
    with pytest.raises(ValueError, match=msg(name, "class_weights", "binary")):
        getattr(SF, name)(x, t, mode="binary", class_weights=[2.0])


@pytest.mark.parametrize("name", ALL)
def test_loss_ignore_index_with_soft_multiclass_target_raises(name):
    x, _ = _mc()
    t = torch.softmax(torch.randn(2, 3, 5, 6, dtype=torch.float64), 1)
    with pytest.raises(ValueError, match=msg(name, "ignore_index")):
        getattr(SF, name)(x, t, mode="multiclass", ignore_index=255)


@pytest.mark.parametrize("name", ["dice_ce_loss", "combo_loss", "hybrid_focal_loss", "unified_focal_loss"])
def test_loss_compound_reduction_none_raises(name):
    x, t = _mc()
    with pytest.raises(ValueError, match=msg(name, "reduction", "'none'")):
        getattr(SF, name)(x, t, mode="multiclass", reduction="none")


@pytest.mark.parametrize("name", ALL)
def test_loss_unknown_reduction_raises(name):
    x, t = _mc()
    with pytest.raises(ValueError, match=msg(name, "reduction", "'avg'")):
        getattr(SF, name)(x, t, mode="multiclass", reduction="avg")


@pytest.mark.parametrize("name", UNIFIED)
def test_unified_focal_loss_multilabel_raises(name):
    x = torch.randn(2, 3, 5, 6)
    t = torch.zeros(2, 3, 5, 6)
    with pytest.raises(ValueError, match=msg(name, "mode", "'multilabel'")):
        getattr(SF, name)(x, t, mode="multilabel")


def test_get_loss_unknown_name_raises_with_did_you_mean():
    with pytest.raises(ValueError, match=r"get_loss.*'dicee'.*did you mean.*'dice'"):
        seglosses.get_loss("dicee", mode="binary")


@pytest.mark.parametrize(
    ("cls", "fn", "kw"),
    [
        ("DiceLoss", "dice_loss", {"smooth": -1.0}),
        ("TverskyLoss", "tversky_loss", {"alpha": -1.0}),
        ("FocalLoss", "focal_loss", {"gamma": -1.0}),
        ("UnifiedFocalLoss", "unified_focal_loss", {"delta": 1.5}),
        ("ComboLoss", "combo_loss", {"alpha": 1.5}),
    ],
)
def test_loss_module_bad_hyperparameter_raises_at_construction(cls, fn, kw):
    ((key, value),) = kw.items()
    with pytest.raises(ValueError, match=msg(fn, key, f"{value:g}")):
        getattr(seglosses, cls)(mode="binary", **kw)


def test_loss_module_unknown_mode_raises_at_construction():
    with pytest.raises(ValueError, match=msg("dice_loss", "mode", "'binry'", "did you mean", "'binary'")):
        seglosses.DiceLoss(mode="binry")


@pytest.mark.parametrize("name", ["dice_loss", "focal_loss", "unified_focal_loss"])
def test_loss_input_without_spatial_dims_raises(name):
    # *S needs at least one spatial dim: (N, C) is not a segmentation input
    x = torch.randn(2, 3)
    t = torch.randint(0, 3, (2,))
    with pytest.raises(ValueError, match=msg(name, "input", "(2, 3)")):
        getattr(SF, name)(x, t, mode="multiclass")


def test_loss_multiclass_single_channel_raises():
    # multiclass needs C >= 2
    x = torch.randn(2, 1, 5, 6)
    t = torch.zeros(2, 5, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=msg("dice_loss", "input", "(2, 1, 5, 6)")):
        SF.dice_loss(x, t, mode="multiclass")


@pytest.mark.parametrize("name", ["dice_loss", "cross_entropy_loss", "focal_loss", "lovasz_loss", "dice_ce_loss"])
@pytest.mark.parametrize(("dtype", "ignore", "value"), [(torch.uint8, -1, 255), (torch.int8, 255, -1)])
def test_ignore_index_outside_the_target_dtype_does_not_wrap(name, dtype, ignore, value):
    # torch compares a uint8 target with -1 as with 255 (int8 with 255: -1): such a value is a class index out of
    # range, to be refused, not an ignored pixel (an ignore_index the dtype cannot hold ignores nothing)
    x, t = _mc()
    t = t.to(dtype)
    t[0, 0, 0] = value
    with pytest.raises(ValueError, match=msg(name, "target", "[0, 3)", f"got {value}")):
        getattr(SF, name)(x, t, mode="multiclass", ignore_index=ignore)
    t[0, 0, 0] = 0
    got = getattr(SF, name)(x, t, mode="multiclass", ignore_index=ignore)
    assert torch.equal(got, getattr(SF, name)(x, t.long(), mode="multiclass"))


def test_binary_ignore_index_outside_the_target_dtype_does_not_wrap():
    x = torch.randn(2, 1, 5, 6, dtype=torch.float64)
    t = torch.zeros(2, 1, 5, 6, dtype=torch.uint8)
    t[0, 0, 0, 0] = 255
    with pytest.raises(ValueError, match=msg("dice_loss", "target", "[0, 1]", "max=255")):
        SF.dice_loss(x, t, mode="binary", ignore_index=-1)


def test_ignore_index_beyond_int64_raises():
    x, t = _mc()
    with pytest.raises(ValueError, match=msg("dice_loss", "ignore_index", "int64", str(2**70))):
        SF.dice_loss(x, t, mode="multiclass", ignore_index=2**70)


def test_numpy_scalars_are_numbers():
    # hyperparameters read from a config or a NumPy computation (np.float32(0.3), np.int64(2)) are the numbers
    # they hold; a NumPy bool is not a number
    import numpy as np

    from seglosses import metrics as SM

    x, t = _mc()
    pairs = [
        (SF.tversky_loss, {"alpha": 0.25, "beta": 0.75}),
        (SF.focal_loss, {"gamma": 3}),
        (SF.cldice_loss, {"iterations": 2}),
        (SM.dice, {"zero_division": 0, "num_classes": 3}),
        (SM.hausdorff, {"percentile": 90}),
    ]
    for fn, kw in pairs:
        as_numpy = {k: (np.float32(v) if isinstance(v, float) else np.int64(v)) for k, v in kw.items()}
        assert torch.equal(fn(x, t, mode="multiclass", **as_numpy), fn(x, t, mode="multiclass", **kw)), fn.__name__
    module = seglosses.TverskyLoss(mode="multiclass", alpha=np.float32(0.25))
    assert type(module.alpha) is float
    assert module.alpha == 0.25
    with pytest.raises(TypeError, match=msg("tversky_loss", "alpha", "bool")):
        SF.tversky_loss(x, t, mode="multiclass", alpha=np.bool_(True))


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_dice_ce_kept_class_weights_say_why(mode):
    x, t = _mc()
    if mode == "multilabel":
        t = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    with pytest.raises(ValueError, match=msg("dice_ce_loss", "class_weights", "C=3", "every class", "got 2")):
        SF.dice_ce_loss(x, t, mode=mode, include_background=False, class_weights=[1.0, 2.0])


def test_ignore_index_the_target_dtype_cannot_hold_makes_no_copy():
    # nothing of a uint8 target can equal -1: nothing is ignored, and the target is read as given (no int64 copy)
    from seglosses._prepare import prepare

    x, t = _mc()
    prep = prepare("dice_loss", x, t.to(torch.uint8), mode="multiclass", from_logits=True, ignore_index=-1)
    assert prep.target_raw.dtype == torch.uint8
    assert prep.ignore_index is None
    prep = prepare("dice_loss", x, t.to(torch.uint8), mode="multiclass", from_logits=True, ignore_index=255)
    assert prep.ignore_index == 255
