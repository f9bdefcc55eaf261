"""Metamorphic relations shared by every loss (STYLE.md, Tests): target forms, binary shapes,
ignore_index == removing the pixels, Module == function == registry, every keyword matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seglosses
import seglosses.functional as SF
from helpers import assert_close

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
PER_IMAGE = {
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "dice_ce_loss",
    "combo_loss",
    "hybrid_focal_loss",
}
WEIGHTED = {
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "cross_entropy_loss",
    "dice_ce_loss",
    "combo_loss",
    "hybrid_focal_loss",
}
MODULES = {
    "dice_loss": ("DiceLoss", "dice"),
    "jaccard_loss": ("JaccardLoss", "jaccard"),
    "tversky_loss": ("TverskyLoss", "tversky"),
    "focal_tversky_loss": ("FocalTverskyLoss", "focal_tversky"),
    "generalized_dice_loss": ("GeneralizedDiceLoss", "generalized_dice"),
    "cross_entropy_loss": ("CrossEntropyLoss", "cross_entropy"),
    "focal_loss": ("FocalLoss", "focal"),
    "dice_ce_loss": ("DiceCELoss", "dice_ce"),
    "combo_loss": ("ComboLoss", "combo"),
    "hybrid_focal_loss": ("HybridFocalLoss", "hybrid_focal"),
    "unified_focal_loss": ("UnifiedFocalLoss", "unified_focal"),
    "asymmetric_focal_loss": ("AsymmetricFocalLoss", "asymmetric_focal"),
    "symmetric_focal_loss": ("SymmetricFocalLoss", "symmetric_focal"),
    "asymmetric_focal_tversky_loss": ("AsymmetricFocalTverskyLoss", "asymmetric_focal_tversky"),
    "symmetric_focal_tversky_loss": ("SymmetricFocalTverskyLoss", "symmetric_focal_tversky"),
}


def _modes(name):
    return ("binary", "multiclass") if name in UNIFIED else ("binary", "multiclass", "multilabel")


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ALL)
def test_loss_index_target_equals_onehot(make_case, name, dims):
    idx = make_case("multiclass", target="index", dims=dims, seed=70)
    onehot = make_case("multiclass", target="onehot", dims=dims, seed=70)
    assert (onehot.t.argmax(1) == idx.t).all()
    kws = [{}]
    if name in PER_IMAGE:
        kws.append({"per_image": True, "include_background": False})
    if name in WEIGHTED and name not in ("cross_entropy_loss", "dice_ce_loss"):
        # torch's cross_entropy normalises weighted index targets by sum w_{y_i} but probability
        # targets by the pixel count, so weighted CE is not compared across target forms
        kws.append({"class_weights": [0.5, 2.0, 1.5]})
    fn = getattr(SF, name)
    for kw in kws:
        xa, xb = idx.xg(), idx.xg()
        a = fn(xa, idx.t, mode="multiclass", **kw)
        b = fn(xb, onehot.t, mode="multiclass", **kw)
        assert_close(a, b.detach().numpy(), rtol=1e-10)
        a.backward()
        b.backward()
        assert_close(xa.grad, xb.grad.numpy(), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("target", ["hard", "soft"])
@pytest.mark.parametrize("name", ALL)
def test_loss_binary_squeezed_equals_channel(make_case, name, target):
    full = make_case("binary", target=target, ignore=target == "hard", seed=71)
    squeezed = make_case("binary", target=target, ignore=target == "hard", seed=71, squeeze=True)
    kw = full.args()
    fn = getattr(SF, name)
    xa, xb = full.xg(), squeezed.xg()
    a = fn(xa, full.t, **kw)
    b = fn(xb, squeezed.t, **kw)
    assert_close(a, b.detach().numpy(), rtol=1e-12)
    a.backward()
    b.backward()
    assert_close(xa.grad[:, 0], xb.grad.numpy(), rtol=1e-12, atol=1e-15)
    if name in ("cross_entropy_loss", "focal_loss"):
        a = fn(full.x, full.t, reduction="none", **kw)
        b = fn(squeezed.x, squeezed.t, reduction="none", **kw)
        assert_close(a[:, 0], b.numpy(), rtol=1e-12)


def _kept_pixels(x, t, mode, ignore):
    """Gather the kept pixels of every image into one image (1, C, K) / (1, K) (mask == slicing)."""
    if mode == "multiclass":
        keep = (t != ignore).reshape(-1)
        c = x.shape[1]
        xs = x.movedim(1, 0).reshape(c, -1)[:, keep][None]
        return xs, t.reshape(-1)[keep][None]
    keep = (t != ignore).all(1).reshape(-1)  # whole pixels ignored in every channel
    c = x.shape[1]
    xs = x.movedim(1, 0).reshape(c, -1)[:, keep][None]
    ts = t.movedim(1, 0).reshape(c, -1)[:, keep][None]
    return xs, ts


@pytest.mark.parametrize("n_images", [1, 2])
@pytest.mark.parametrize("name", ALL)
def test_loss_ignore_index_equals_pixels_removed(name, n_images):
    if n_images == 2 and name in UNIFIED:
        pytest.skip("statistics per image: an image's kept pixels cannot be pooled with another's")
    rng = np.random.default_rng(72)
    fn = getattr(SF, name)
    for mode in _modes(name):
        c = {"binary": 1, "multiclass": 3, "multilabel": 3}[mode]
        x = torch.tensor(rng.normal(size=(n_images, c, 4, 5)) * 2)
        drop = torch.tensor(rng.random(size=(n_images, 4, 5)) < 0.3)
        drop[:, 0, :3] = False
        if mode == "multiclass":
            t = torch.tensor(rng.integers(0, 3, size=(n_images, 4, 5)))
            t[:, 0, :3] = torch.arange(3)
            t[drop] = 255
        else:
            t = torch.tensor((rng.random(size=(n_images, c, 4, 5)) < 0.5).astype(np.float64))
            t[:, :, 0, 0], t[:, :, 0, 1] = 1.0, 0.0
            t = torch.where(drop[:, None], 255.0, t)
        xs, ts = _kept_pixels(x, t, mode, 255)
        masked = fn(x, t, mode=mode, ignore_index=255)
        removed = fn(xs, ts, mode=mode)
        assert_close(masked, removed.numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "name", ["dice_loss", "jaccard_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"]
)
def test_loss_per_image_equals_mean_over_single_images(make_case, name):
    case = make_case("multiclass", target="index", ignore=True, seed=73)
    fn = getattr(SF, name)
    both = fn(case.x, case.t, mode="multiclass", ignore_index=255, per_image=True)
    singles = [fn(case.x[i : i + 1], case.t[i : i + 1], mode="multiclass", ignore_index=255) for i in range(2)]
    assert_close(both, torch.stack(singles).mean().numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_loss_module_equals_function_equals_registry(make_case, name):
    cls_name, key = MODULES[name]
    case = make_case("multiclass", target="index", ignore=True, seed=74)
    kw = {"mode": "multiclass", "ignore_index": 255}
    if name in WEIGHTED:
        kw["class_weights"] = [0.5, 2.0, 1.5]
    fn_out = getattr(SF, name)(case.x, case.t, **kw)
    module = getattr(seglosses, cls_name)(**kw)
    assert isinstance(module, torch.nn.Module)
    assert module.mode == "multiclass"
    assert module.ignore_index == 255
    reg = seglosses.get_loss(key, **kw)
    assert type(reg) is type(module)
    assert_close(module(case.x, case.t), fn_out.numpy(), rtol=1e-12)
    assert_close(reg(case.x, case.t), fn_out.numpy(), rtol=1e-12)
    assert key in seglosses.available_losses()


def test_loss_functional_alias():
    assert seglosses.F is seglosses.functional


def test_loss_module_class_weights_is_buffer():
    m = seglosses.DiceLoss(mode="multiclass", class_weights=[1.0, 2.0, 3.0])
    buffers = dict(m.named_buffers())
    assert list(buffers) == ["class_weights"]
    assert buffers["class_weights"].tolist() == [1.0, 2.0, 3.0]
    assert list(m.state_dict()) == ["class_weights"]  # saved with the model
    assert m.double().class_weights.dtype == torch.float64  # follows the Module's dtype (and device)
    assert repr(m) == "DiceLoss(mode='multiclass', class_weights=[1.0, 2.0, 3.0])"
    assert repr(seglosses.DiceLoss(mode="multiclass")) == "DiceLoss(mode='multiclass')"


# ------------------------------------------------------------------------- every keyword changes the output

# (loss, mode, target, keyword, non-default value); each must change the default output
CHANGES = [
    *[(n, "multiclass", "index", "from_logits", False) for n in ALL],
    *[(n, "multiclass", "index", "ignore_index", 0) for n in ALL],
    *[(n, "multiclass", "index", "reduction", "sum") for n in ALL if n != "combo_loss"],  # combo: mean only
    *[(n, "multiclass", "index", "include_background", False) for n in sorted(PER_IMAGE)],
    *[(n, "multiclass", "index", "per_image", True) for n in sorted(PER_IMAGE)],
    *[(n, "multiclass", "index", "class_weights", [0.5, 2.0, 1.5]) for n in sorted(WEIGHTED)],
    *[(n, "multiclass", "index", "smooth", 0.3) for n in sorted(PER_IMAGE) if n != "cross_entropy_loss"],
    ("dice_loss", "multiclass", "index", "squared", True),
    ("dice_loss", "multiclass", "index", "log_loss", True),
    ("tversky_loss", "multiclass", "index", "alpha", 0.5),
    ("tversky_loss", "multiclass", "index", "beta", 0.4),
    ("focal_tversky_loss", "multiclass", "index", "alpha", 0.5),
    ("focal_tversky_loss", "multiclass", "index", "beta", 0.4),
    ("focal_tversky_loss", "multiclass", "index", "gamma", 2.0),
    ("cross_entropy_loss", "multiclass", "index", "label_smoothing", 0.1),
    ("cross_entropy_loss", "multilabel", "soft", "label_smoothing", 0.1),
    ("cross_entropy_loss", "multiclass", "index", "reduction", "none"),
    ("focal_loss", "binary", "hard", "alpha", 0.7),
    ("focal_loss", "multiclass", "index", "alpha", [0.2, 0.3, 0.5]),
    ("focal_loss", "multiclass", "index", "gamma", 1.0),
    ("focal_loss", "multiclass", "index", "reduction", "none"),
    ("dice_ce_loss", "multiclass", "index", "ce_weight", 0.5),
    ("dice_ce_loss", "multiclass", "index", "dice_weight", 0.5),
    ("dice_ce_loss", "multiclass", "index", "squared", True),
    ("dice_ce_loss", "multiclass", "index", "log_loss", True),
    ("dice_ce_loss", "multiclass", "index", "label_smoothing", 0.1),
    ("combo_loss", "multiclass", "index", "alpha", 0.3),
    ("combo_loss", "multiclass", "index", "beta", 0.7),
    ("hybrid_focal_loss", "multiclass", "index", "weight", 0.3),
    ("hybrid_focal_loss", "binary", "hard", "focal_alpha", 0.7),
    ("hybrid_focal_loss", "multiclass", "index", "focal_gamma", 1.0),
    ("hybrid_focal_loss", "multiclass", "index", "tversky_alpha", 0.5),
    ("hybrid_focal_loss", "multiclass", "index", "tversky_beta", 0.4),
    ("hybrid_focal_loss", "multiclass", "index", "tversky_gamma", 2.0),
    *[(n, "multiclass", "index", "delta", 0.4) for n in sorted(UNIFIED)],
    *[(n, "multiclass", "index", "gamma", 0.3) for n in sorted(UNIFIED)],
    *[(n, "multiclass", "index", "smooth", 1.0) for n in sorted(UNIFIED) if "focal_loss" not in n or "tversky" in n],
    ("unified_focal_loss", "multiclass", "index", "smooth", 1.0),
    ("unified_focal_loss", "multiclass", "index", "weight", 0.2),
    ("unified_focal_loss", "multiclass", "index", "asymmetric", False),
    ("generalized_dice_loss", "binary", "hard", "include_background", False),
    ("generalized_dice_loss", "multiclass", "index", "reduction", "none"),
    *[(n, "multiclass", "index", "mode", "multilabel") for n in ALL if n not in UNIFIED],
]


@pytest.mark.parametrize(
    ("name", "mode", "target", "key", "value"), CHANGES, ids=[f"{c[0]}-{c[3]}-{c[1]}" for c in CHANGES]
)
def test_loss_keyword_changes_output(make_case, name, mode, target, key, value):
    fn = getattr(SF, name)
    if key == "mode":
        # the same logits as multilabel (sigmoid per channel) against the one-hot target
        case = make_case("multiclass", target="onehot", seed=75)
        default = fn(case.x, case.t, mode="multiclass")
        changed = fn(case.x, case.t, mode="multilabel")
        assert not torch.allclose(default, changed)
        return
    case = make_case(mode, target=target, seed=75)
    x = case.x
    default_kw = {"mode": mode}
    if name == "generalized_dice_loss" and key == "reduction":
        default_kw["per_image"] = True  # without per_image the reduction is a documented no-op (below)
    if key == "from_logits":
        x = torch.softmax(case.x, 1) if mode == "multiclass" else torch.sigmoid(case.x)
        # probabilities read as probabilities vs read as logits
        default = fn(x, case.t, **default_kw)
        changed = fn(x, case.t, from_logits=False, **default_kw)
    else:
        default = fn(x, case.t, **default_kw)
        changed = fn(x, case.t, **{key: value}, **default_kw)
    assert default.shape != changed.shape or not torch.allclose(default, changed, rtol=1e-9, atol=0)


def test_generalized_dice_loss_reduction_without_per_image_is_documented_noop(make_case):
    # reduction="none" returns (N,) with per_image=True, else a scalar
    case = make_case("multiclass", target="index", seed=76)
    outs = [SF.generalized_dice_loss(case.x, case.t, mode="multiclass", reduction=r) for r in ("mean", "sum", "none")]
    for out in outs:
        assert out.shape == ()
        assert_close(out, outs[0].numpy(), rtol=1e-12)
