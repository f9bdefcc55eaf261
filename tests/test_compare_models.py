"""``seglosses.compare(model=factory)`` with the models users bring: MONAI networks, odd outputs, dtypes, sizes.

Each model either trains and validates, with numbers checked against values computed here with NumPy from the
Dataset's own items (a frozen-by-``lr=0`` thresholding model), or is refused before any training step and any file
with a message that says what is wrong and what to do. Tiny models, one seed, a few steps.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("rich")

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli.model import load_factory  # noqa: E402
from seglosses.cli.train import TrainConfig  # noqa: E402

TINY = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2)
FROZEN = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, lr=0.0)  # AdamW with lr 0: the weights stay put


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


class Blobs(torch.utils.data.Dataset):
    """Squares of class c on a noisy background: image = 0.7 + 0.1 c + 0.2 u inside, 0.2 u outside (u uniform)."""

    def __init__(self, n: int, size: tuple[int, ...], classes: int = 2, offset: int = 0) -> None:
        self.n, self.size, self.classes, self.offset = n, size, classes, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 * self.offset + int(index))
        mask = torch.zeros(self.size, dtype=torch.int64)
        for c in range(1, self.classes):
            corner = [int(torch.randint(0, s - 6, (1,), generator=g)) for s in self.size]
            mask[tuple(slice(k, k + 6) for k in corner)] = c
        image = 0.7 * (mask > 0).float() + 0.1 * mask.float() + 0.2 * torch.rand(self.size, generator=g)
        return image[None], mask


def _compare(factory, *, classes=2, train_size=(32, 32), val_size=(37, 45), config=TINY, losses=("dice",), **kw):
    train, val = Blobs(4, train_size, classes), Blobs(2, val_size, classes, offset=1)
    kw = {"out": None, **kw}
    return seglosses.compare(
        list(losses), data=(train, val), num_classes=classes, model=factory, seeds=1, config=config,
        progress=False, log=lambda _: None, **kw,
    )  # fmt: skip


def _refused(monkeypatch, tmp_path, factory, message, **kw):
    """``compare`` raises ValueError matching ``message`` before any training step and before any file."""

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare_module, "train_run", no_training)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        _compare(factory, out=out, **kw)
    assert not out.exists()


def _ok(table, n_val=2):
    for run in table.runs:
        assert run.status == "ok", run.status
        assert len(run.per_image["dice"]) == n_val
        assert all(0.0 <= v <= 1.0 for v in run.per_image["dice"])
        assert 0.0 <= run.metrics["dice"]["mean"] <= 1.0


# ------------------------------------------------------------------------------------------------ MONAI networks

monai_nets = pytest.importorskip("monai.networks.nets")
P = functools.partial
CUBE, ODD_CUBE = (16, 16, 16), (20, 13, 22)  # validation volumes of no stride's multiple, larger and smaller

MONAI = {
    "UNet-2d": (P(monai_nets.UNet, spatial_dims=2, channels=(4, 8, 16), strides=(2, 2)), {}),
    "UNet-3d-3class": (
        P(monai_nets.UNet, spatial_dims=3, channels=(4, 8, 16), strides=(2, 2)),
        {"classes": 3, "train_size": CUBE, "val_size": ODD_CUBE},
    ),
    "BasicUNet-3d": (
        P(monai_nets.BasicUNet, spatial_dims=3, features=(4, 4, 8, 8, 8, 4)),
        {"train_size": (32, 32, 32), "val_size": ODD_CUBE, "crop": (32, 32, 32), "batch_size": 1},
    ),
    "AttentionUnet-2d": (P(monai_nets.AttentionUnet, spatial_dims=2, channels=(4, 8, 16), strides=(2, 2)), {}),
    "SegResNet-3d": (
        P(
            monai_nets.SegResNet,
            spatial_dims=3,
            init_filters=4,
            blocks_down=(1, 1, 1),
            blocks_up=(1, 1),
            norm=("GROUP", {"num_groups": 2}),
        ),
        {"train_size": CUBE, "val_size": ODD_CUBE},
    ),  # fmt: skip
    "DynUNet-2d": (
        P(
            monai_nets.DynUNet,
            spatial_dims=2,
            kernel_size=[3, 3, 3],
            strides=[1, 2, 2],
            upsample_kernel_size=[2, 2],
            filters=[4, 8, 16],
        ),
        {"classes": 3},
    ),  # fmt: skip
    "VNet-2d": (P(monai_nets.VNet, spatial_dims=2), {"crop": (32, 32), "val_size": (20, 50)}),
}


@pytest.mark.parametrize("name", list(MONAI))
def test_monai_networks_train_and_validate(name):
    factory, kw = MONAI[name]
    kw = dict(kw)
    config = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=kw.pop("batch_size", 2))
    _ok(_compare(factory, config=config, losses=("dice",), **kw))


class WeightLog:
    """Wraps a factory; records a hash of each model's initial weights."""

    def __init__(self, factory) -> None:
        self.factory, self.hashes = factory, []

    def __call__(self, in_channels: int, out_channels: int) -> nn.Module:
        model = self.factory(in_channels=in_channels, out_channels=out_channels)
        self.hashes.append(_hash(model))
        return model


def _hash(model: nn.Module) -> str:
    return hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in model.state_dict().values())).hexdigest()


def test_monai_unet_starts_from_the_seeds_weights_for_every_loss():
    unet = P(monai_nets.UNet, spatial_dims=2, channels=(4, 8), strides=(2,), dropout=0.1)
    log = WeightLog(unet)
    train, val = Blobs(4, (32, 32)), Blobs(2, (37, 45), offset=1)
    seglosses.compare(
        ["dice", "focal"], data=(train, val), num_classes=2, model=log, seeds=[3, 4], config=TINY, out=None,
        progress=False, log=lambda _: None,
    )  # fmt: skip
    expected = {}
    for seed in (3, 4):  # the definition: the factory under torch.manual_seed(seed)
        torch.manual_seed(seed)
        expected[seed] = _hash(unet(in_channels=1, out_channels=1))
    assert expected[3] != expected[4]
    # the check before the runs (seed 3), then seed 3: dice, focal; seed 4: dice, focal
    assert log.hashes == [expected[3], expected[3], expected[3], expected[4], expected[4]]


def test_deep_supervision_heads_are_refused_before_training(monkeypatch, tmp_path):
    # MONAI's DynUNet returns (N, heads, K, *S) in training mode only, its plain logits in evaluation mode
    dyn = P(
        monai_nets.DynUNet, spatial_dims=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
        filters=[4, 8, 16], deep_supervision=True, deep_supr_num=1,
    )  # fmt: skip
    message = (
        r"in training mode the model returns \(2, 2, 3, 32, 32\) for an input \(2, 1, 32, 32\).*2 deep-supervision "
        r"heads.*deep_supervision=False.*out\[:, 0\]"
    )
    _refused(monkeypatch, tmp_path, dyn, message, classes=3)


# ------------------------------------------------------------------------------------------------ scored right


class Threshold(nn.Module):
    """A 1x1 convolution with logit ``100 x - 10``: foreground where the image exceeds 0.1 (no channel arguments)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(100.0)
            self.conv.bias.fill_(-10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _expected_dice(val: Blobs) -> list[float]:
    """Per-image Dice of ``image > 0.1`` against the mask, in NumPy float64 (no pixel within 1e-6 of 0.1)."""
    out = []
    for i in range(len(val)):
        image, mask = (t.numpy() for t in val[i])
        assert np.abs(image.astype(np.float64) - 0.1).min() > 1e-6  # logit 100 x - 10 is >= 1e-4 from 0:
        pred, true = image[0] > 0.1, mask > 0  # float32 rounding (about 1e-6) cannot flip a pixel
        tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
        out.append(2 * tp / (2 * tp + fp + fn))
    return out


@pytest.mark.parametrize(
    ("val_size", "window", "dtype"),
    [((37, 45), None, torch.float32), ((37, 45), (16, 16), torch.float32), ((12, 9), (16, 16), torch.float32),
     ((37, 45), None, torch.float64)],
    ids=["whole", "windows", "smaller-than-window", "float64-model"],
)  # fmt: skip
def test_validation_scores_the_models_prediction_against_the_full_mask(val_size, window, dtype):
    val = Blobs(2, val_size, offset=1)
    table = _compare(
        lambda: Threshold().to(dtype), val_size=val_size, config=FROZEN, window=window, size_multiple=8,
        losses=("dice",),
    )  # fmt: skip
    _ok(table)
    np.testing.assert_allclose(table.runs[0].per_image["dice"], _expected_dice(val), rtol=1e-12)


# ------------------------------------------------------------------------------------------------ outputs refused


class Net(nn.Module):
    """conv 3x3 -> ReLU -> conv 1x1, optionally with batch norm; ``kind`` picks an odd output."""

    def __init__(self, in_channels: int, out_channels: int, kind: str = "plain") -> None:
        super().__init__()
        self.kind = kind
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(4, out_channels, 1)

    def forward(self, x: torch.Tensor):
        y = self.b(torch.relu(self.a(x)))
        if self.kind == "dict":
            return {"out": y, "aux": y}
        if self.kind == "list":
            return [y]
        if self.kind == "tuple-in-training":
            return (y, y.mean()) if self.training else y
        if self.kind == "low-res":
            return y[..., ::4, ::4]
        if self.kind == "low-res-in-training":
            return y[..., ::2, ::2] if self.training else y
        if self.kind == "raises-in-training" and self.training:
            raise RuntimeError("the auxiliary head is not built")
        return y


REFUSED = [
    ("dict", r"in evaluation mode it returned a dict with keys \['out', 'aux'\].*returns model\(x\)\['out'\]"),
    ("list", r"must return a tensor of logits .*it returned a list of 1 \(\(1, 1, 64, 64\)\); wrap the model"),
    ("tuple-in-training", r"in training mode it returned a tuple of 2 \(\(2, 1, 32, 32\), \(\)\); wrap the model"),
    ("low-res", r"keep the input's spatial size \(64, 64\); in evaluation mode it returns \(1, 1, 16, 16\).*upsample"),
    ("low-res-in-training", r"spatial size \(32, 32\); in training mode it returns \(2, 1, 16, 16\).*interpolate"),
    ("raises-in-training", r"failed for the first training batch \(2, 1, 32, 32\).*in training mode: RuntimeError: "),
]


@pytest.mark.parametrize(("kind", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_outputs_that_are_not_full_size_logits_are_refused_before_training(monkeypatch, tmp_path, kind, message):
    _refused(monkeypatch, tmp_path, P(Net, kind=kind), message)


class Bottleneck(nn.Module):
    """Batch norm over a globally pooled feature: one value per channel with a batch of 1."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(h + self.norm(nn.functional.adaptive_avg_pool2d(h, 1)))


def test_batch_norm_with_batch_size_one(monkeypatch, tmp_path):
    one = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=1)
    _ok(_compare(Bottleneck, config=TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2)))
    message = r"first training batch \(1, 1, 32, 32\).*Expected more than 1 value per channel.*batch_size"
    _refused(monkeypatch, tmp_path, Bottleneck, message, config=one)


class FixedSize(Net):
    """A model that takes one input size only (as a transformer with a fixed ``img_size``)."""

    def forward(self, x: torch.Tensor):
        if tuple(x.shape[2:]) != (24, 24):
            raise ValueError(f"expected a 24x24 input; got {tuple(x.shape[2:])}")
        return super().forward(x)


def test_a_fixed_size_model_validates_by_windows_of_its_size(monkeypatch, tmp_path):
    # validation images larger (37, 45) and smaller (12, 9) than the window: the model sees 24x24 inputs only
    for val_size in ((37, 45), (12, 9)):
        _ok(_compare(FixedSize, crop=(24, 24), window=(24, 24), size_multiple=8, val_size=val_size))
    message = r"failed for the first validation image \(1, 1, 37, 45\), padded to a multiple of 32.*window"
    _refused(monkeypatch, tmp_path, FixedSize, message, crop=(24, 24))


# ------------------------------------------------------------------------------------------------ factories, dtypes


def _kwargs_factory(**kwargs) -> nn.Module:
    return Net(kwargs["in_channels"], kwargs["out_channels"])


def test_factories_with_kwargs_or_without_channel_parameters():
    _ok(_compare(_kwargs_factory, classes=3))
    _ok(_compare(lambda: Net(1, 1)))


def _half(in_channels, out_channels):
    return Net(in_channels, out_channels).to(torch.bfloat16)


def _mixed(in_channels, out_channels):
    model = Net(in_channels, out_channels)
    model.b.double()
    return model


def _frozen(in_channels, out_channels):
    return Net(in_channels, out_channels).requires_grad_(False)


FACTORIES = [
    ("bf16", _half, r"parameters are bfloat16.*build the model in float32 and pass amp='bf16'"),
    ("mixed", _mixed, r"parameters mix the dtypes \['float32', 'float64'\]"),
    ("frozen", _frozen, "no trainable parameter"),
    ("class", lambda: Net, r"it returned the class Net itself \(return an instance: Net\(\.\.\.\)\)"),
    ("none", lambda: None, "must return a torch.nn.Module; it returned NoneType"),
]


@pytest.mark.parametrize(("kind", "factory", "message"), FACTORIES, ids=[f[0] for f in FACTORIES])
def test_bad_models_are_refused_before_training(monkeypatch, tmp_path, kind, factory, message):
    _refused(monkeypatch, tmp_path, factory, message)


def test_a_float64_model_trains_in_float64():
    seen = set()

    class Recording(Net):
        def forward(self, x):
            seen.add(x.dtype)
            return super().forward(x)

    _ok(_compare(lambda in_channels, out_channels: Recording(in_channels, out_channels).double()))
    assert seen == {torch.float64}


# ------------------------------------------------------------------------------------------------ --model


def test_model_option_imports_a_module_from_the_working_directory(tmp_path, monkeypatch):
    # the `seglosses` console script does not put the working directory on sys.path (python -m does)
    (tmp_path / "nets_from_cwd_4711.py").write_text("def make(in_channels, out_channels):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or os.curdir) != str(tmp_path)])
    try:
        assert load_factory("nets_from_cwd_4711:make").__name__ == "make"
    finally:
        sys.modules.pop("nets_from_cwd_4711", None)
    with pytest.raises(ValueError, match=r"cannot import 'no_such_mod_4711'.*run the command from the folder"):
        load_factory("no_such_mod_4711:make")
