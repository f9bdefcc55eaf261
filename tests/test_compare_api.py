"""``seglosses.compare`` on the user's own data and model: lazy Datasets, model factories, amp, whole-image validation.

Tiny schedules (a second or two per comparison). Expected values come from the definitions (the factory's weights
under ``torch.manual_seed``, a pointwise model's logits), never from compare's own output.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("rich")

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli.train import RunSetup, TrainConfig, new_model, predict_logits  # noqa: E402

TINY = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=2, base=4, depth=2)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


class LazyBlobs(torch.utils.data.Dataset):
    """Items generated from their index on every read (no tensor is held); records the indices read."""

    def __init__(self, n: int, size: tuple[int, ...], classes: int = 2, offset: int = 0) -> None:
        self.n, self.size, self.classes, self.offset = n, size, classes, offset
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads.append(int(index))
        g = torch.Generator().manual_seed(1000 * self.offset + int(index))
        mask = torch.zeros(self.size, dtype=torch.int64)
        for c in range(1, self.classes):
            corner = [int(torch.randint(0, s - 6, (1,), generator=g)) for s in self.size]
            mask[tuple(slice(k, k + 6) for k in corner)] = c
        image = 0.7 * (mask > 0).float() + 0.1 * mask.float() + 0.2 * torch.rand(self.size, generator=g)
        return image[None], mask


class SmallNet(nn.Module):
    """conv 3x3 -> ReLU -> conv 1x1 (2D); records the dtype of its hidden activations (autocast shows there)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.b = nn.Conv2d(6, out_channels, 1)
        self.dtypes: set[torch.dtype] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        self.dtypes.add(h.dtype)
        return self.b(h)


def _weights_hash(model: nn.Module) -> str:
    return hashlib.sha256(b"".join(v.detach().numpy().tobytes() for v in model.state_dict().values())).hexdigest()


class RecordingFactory:
    """A factory with ``in_channels``/``out_channels`` that records the arguments and the hash of fresh weights."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []
        self.models: list[SmallNet] = []

    def __call__(self, in_channels: int, out_channels: int) -> nn.Module:
        model = SmallNet(in_channels, out_channels)
        self.calls.append((in_channels, out_channels, _weights_hash(model)))
        self.models.append(model)
        return model


def _lazy_pair(classes: int = 2, size: tuple[int, ...] = (32, 32)) -> tuple[LazyBlobs, LazyBlobs]:
    return LazyBlobs(6, size, classes), LazyBlobs(3, size, classes, offset=1)


def _quiet(**kwargs):
    return {"out": None, "progress": False, "log": lambda _: None, **kwargs}


# ------------------------------------------------------------------------------------------------ datasets


def test_datasets_are_read_lazily_and_every_loss_sees_the_same_batches():
    train, val = _lazy_pair()
    table = seglosses.compare(
        ["dice", "focal"], data=(train, val), num_classes=2, seeds=2, config=TINY, crop=(24, 24), **_quiet()
    )
    assert [(r.loss, r.seed, r.status) for r in table.runs] == [
        ("dice", 0, "ok"),
        ("dice", 1, "ok"),
        ("focal", 0, "ok"),
        ("focal", 1, "ok"),
    ]
    per_run = TINY.epochs * TINY.steps_per_epoch * TINY.batch_size
    assert len(train.reads) == 4 * per_run  # every item read when a batch needs it, never cached
    # runs go seed by seed, loss by loss: (dice, 0), (focal, 0), (dice, 1), (focal, 1)
    chunks = [train.reads[k * per_run : (k + 1) * per_run] for k in range(4)]
    assert chunks[0] == chunks[1]
    assert chunks[2] == chunks[3]
    assert chunks[0] != chunks[2]
    # validation: one item read to learn the shapes, then every item once per epoch of every run
    assert len(val.reads) == 1 + 4 * TINY.epochs * len(val)
    assert all(len(r.per_image["dice"]) == len(val) for r in table.runs)


def test_loader_workers_give_the_same_numbers():
    numbers = []
    for workers in (0, 2):
        train, val = _lazy_pair()
        table = seglosses.compare(
            ["dice"], data=(train, val), num_classes=2, seeds=1, config=TINY, crop=(24, 24), num_workers=workers,
            **_quiet(),
        )  # fmt: skip
        run = table.runs[0]
        numbers.append(json.dumps([run.metrics, run.per_image, run.history]))  # NaN written as NaN: comparable
    assert numbers[0] == numbers[1]


def test_training_crops_pad_small_items_and_validation_windows_large_ones():
    train = LazyBlobs(4, (20, 20))  # smaller than the crop: padded
    val = LazyBlobs(2, (40, 56), offset=1)  # larger than the window: predicted by windows
    table = seglosses.compare(
        ["dice"], data=(train, val), num_classes=2, seeds=1, config=TINY, crop=(24, 24), window=(16, 16), **_quiet()
    )
    run = table.runs[0]
    assert run.status == "ok"
    assert len(run.per_image["dice"]) == 2
    assert all(0.0 <= v <= 1.0 for v in run.per_image["dice"])


def test_data_pairs_need_num_classes_and_well_formed_items():
    train, val = _lazy_pair()
    with pytest.raises(ValueError, match=r"data=\(train, val\) needs `num_classes`"):
        seglosses.compare(["dice"], data=(train, val), **_quiet())
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        seglosses.compare(["dice"], data=(train, val), num_classes=1, **_quiet())

    class FloatMasks(LazyBlobs):
        def __getitem__(self, index):
            image, mask = super().__getitem__(index)
            return image, mask.float()

    with pytest.raises(ValueError, match=r"mask \(\*S\) integer class indices"):
        seglosses.compare(["dice"], data=(FloatMasks(2, (8, 8)),) * 2, num_classes=2, **_quiet())
    with pytest.raises(ValueError, match="`crop` must hold 2 positive sizes"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, crop=(8, 8, 8), **_quiet())
    # LazyBlobs(classes=3) draws class indices 0..2: too many for a binary task, said before any training
    three = LazyBlobs(2, (16, 16), classes=3)
    message = r"mask must hold class indices in \[0, 2\) for num_classes=2; val\[0\] holds values in \[0, 2\]"
    with pytest.raises(ValueError, match=message):
        seglosses.compare(["dice"], data=(three, three), num_classes=2, **_quiet())


def test_float64_and_float16_items_train_like_float32():
    # "image (C, *S) float": any float dtype is cast to float32 when batched (the model's weights are float32);
    # the values of these items are float32 numbers, exact in float64, so the numbers are the same to the bit

    class Cast(LazyBlobs):
        dtype = torch.float32

        def __getitem__(self, index):
            image, mask = super().__getitem__(index)
            return image.to(self.dtype), mask

    results = {}
    for dtype in (torch.float32, torch.float64):
        train, val = Cast(4, (16, 16)), Cast(2, (16, 16), offset=1)
        train.dtype = val.dtype = dtype
        table = seglosses.compare(["dice"], data=(train, val), num_classes=2, seeds=1, config=TINY, **_quiet())
        assert table.runs[0].status == "ok", table.runs[0].status
        results[dtype] = json.dumps([table.runs[0].per_image, table.runs[0].history])
    assert results[torch.float64] == results[torch.float32]
    train, val = Cast(4, (16, 16)), Cast(2, (16, 16), offset=1)
    train.dtype = val.dtype = torch.float16
    table = seglosses.compare(["dice"], data=(train, val), num_classes=2, seeds=1, config=TINY, **_quiet())
    assert table.runs[0].status == "ok", table.runs[0].status


# ------------------------------------------------------------------------------------------------ model factories


def test_factory_runs_under_the_seed_and_gets_the_channels(monkeypatch):
    factory = RecordingFactory()
    train, val = _lazy_pair(classes=3)
    table = seglosses.compare(
        ["dice", "focal"], data=(train, val), num_classes=3, model=factory, seeds=2, config=TINY, crop=(24, 24),
        **_quiet(),
    )  # fmt: skip
    assert all(r.status == "ok" for r in table.runs)
    # one check before the runs (under the first seed), then one call per run: (dice,0), (focal,0), (dice,1), (focal,1)
    assert [c[:2] for c in factory.calls] == [(1, 3)] * 5
    hashes = [c[2] for c in factory.calls]
    reference = {}
    for seed in (0, 1):  # the weights the factory makes under torch.manual_seed(seed), built here independently
        torch.manual_seed(seed)
        reference[seed] = _weights_hash(SmallNet(1, 3))
    assert hashes == [reference[0], reference[0], reference[0], reference[1], reference[1]]
    assert reference[0] != reference[1]


def test_binary_task_gets_one_output_channel_and_a_bare_factory_is_called_bare():
    calls = []

    def bare() -> nn.Module:
        calls.append(1)
        return SmallNet(1, 1)

    train, val = _lazy_pair()
    table = seglosses.compare(["dice"], data=(train, val), num_classes=2, model=bare, seeds=1, config=TINY, **_quiet())
    assert table.runs[0].status == "ok"
    assert len(calls) == 2  # the check, then the run

    seen = []

    def keywords(**kwargs) -> nn.Module:
        seen.append(kwargs)
        return SmallNet(kwargs["in_channels"], kwargs["out_channels"])

    seglosses.compare(["dice"], data=(train, val), num_classes=2, model=keywords, seeds=1, config=TINY, **_quiet())
    assert seen[0] == {"in_channels": 1, "out_channels": 1}


def _positional_only(in_channels: int, out_channels: int, /) -> nn.Module:
    return SmallNet(in_channels, out_channels)


def _with_width(in_channels: int, out_channels: int, width: int) -> nn.Module:
    assert width == 6
    return SmallNet(in_channels, out_channels)


@pytest.mark.parametrize(
    "factory",
    [_positional_only, SmallNet, functools.partial(_with_width, width=6)],
    ids=["positional-only", "module-class", "partial"],
)
def test_factory_signatures_that_name_both_channels_get_them(factory):
    # a positional-only signature has both parameters (called f(C, K')); a class and a partial are inspected too
    train, val = _lazy_pair(classes=3)
    table = seglosses.compare(["dice"], data=(train, val), num_classes=3, model=factory, seeds=1, config=TINY,
                              crop=(24, 24), **_quiet())  # fmt: skip
    assert table.runs[0].status == "ok"
    torch.manual_seed(0)
    reference = SmallNet(1, 3)  # the weights of the run's model: built under the seed with C=1, K'=3
    data = compare_module.resolve_data((train, val), num_classes=3, crop=None, caller="test")
    model = new_model(data, RunSetup(model=factory), TINY, seed=0)
    assert _weights_hash(model) == _weights_hash(reference)


def test_factory_naming_one_channel_is_called_bare_and_the_error_says_why():
    def out_only(out_channels: int) -> nn.Module:
        return SmallNet(1, out_channels)

    train, val = _lazy_pair()
    message = r"raised TypeError: .*'out_channels' \(its signature names `out_channels` but not both"
    with pytest.raises(ValueError, match=message):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, model=out_only, seeds=1, config=TINY, **_quiet())


def test_factory_raising_in_a_later_run_stops_without_recording_it(tmp_path):
    calls = []

    def flaky(in_channels: int, out_channels: int) -> nn.Module:
        calls.append(1)
        if len(calls) == 3:  # the check, the run (dice, 0), then (focal, 0) fails
            raise RuntimeError("out of memory while building")
        return SmallNet(in_channels, out_channels)

    train, val = _lazy_pair()
    out = tmp_path / "out"
    message = r"compare: the model factory raised RuntimeError: out of memory while building \(run 'focal', seed 0\)"
    with pytest.raises(ValueError, match=message):
        seglosses.compare(["dice", "focal"], data=(train, val), num_classes=2, model=flaky, seeds=1, config=TINY,
                          out=out, progress=False, log=lambda _: None)  # fmt: skip
    # the finished run is kept; the failed one is not recorded as a run (no "error: ..." status on disk)
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["dice__seed0.json"]


class _Wide(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, width, 3, padding=1)
        self.b = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_resuming_tells_models_of_the_same_name_apart(tmp_path):
    # two partials of one function have the same name ("functools:partial"): a changed width is a new run, not a
    # finished one; the same partial again is resumed (the factory is then called only for the up-front check)
    calls = []

    def wide(in_channels: int, out_channels: int, width: int) -> nn.Module:
        calls.append(width)
        return _Wide(in_channels, out_channels, width)

    train, val = _lazy_pair()
    kw = {"data": (train, val), "num_classes": 2, "seeds": 1, "config": TINY, "out": tmp_path, "progress": False}
    first = seglosses.compare(["dice"], model=functools.partial(wide, width=4), log=lambda _: None, **kw)
    assert calls == [4, 4]
    messages: list[str] = []
    second = seglosses.compare(["dice"], model=functools.partial(wide, width=8), log=messages.append, **kw)
    assert calls == [4, 4, 8, 8]  # trained again
    assert not any("resuming" in m for m in messages)
    assert first.runs[0].fingerprint != second.runs[0].fingerprint
    third = seglosses.compare(["dice"], model=functools.partial(wide, width=8), log=messages.append, **kw)
    assert calls == [4, 4, 8, 8, 8]  # the check only: the run was resumed
    assert third.runs[0].per_image == second.runs[0].per_image


class Stride32Net(SmallNet):
    """Like an encoder with five poolings: refuses inputs whose sizes are not multiples of 32; records the shapes."""

    shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 32 for s in x.shape[2:]):
            raise RuntimeError(f"input size {tuple(x.shape[2:])} is not divisible by 32")
        Stride32Net.shapes.append(tuple(x.shape))
        return super().forward(x)


def test_folder_crops_fit_a_user_model_with_stride_32(tmp_path):
    # a folder of 40 x 40 images gets the crop 40 (a multiple of 8); a model needing multiples of 32 trains on
    # crops of 64 (the 40 x 40 items padded), validates on whole images padded to 64
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        mask = np.zeros((40, 40), np.uint8)
        mask[5 + i : 20 + i, 8:24] = 1
        Image.fromarray((mask * 150 + rng.integers(0, 60, (40, 40))).astype(np.uint8)).save(
            tmp_path / "images" / f"{i}.png"
        )
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    Stride32Net.shapes = []
    table = seglosses.compare(["dice"], data=str(tmp_path), model=Stride32Net, seeds=1, config=TINY, **_quiet())
    assert table.runs[0].status == "ok", table.runs[0].status
    batch = (TINY.batch_size, 1, 64, 64)
    assert batch in Stride32Net.shapes
    assert set(Stride32Net.shapes) <= {batch, (1, 1, 64, 64)}


def _wrong_channels(in_channels: int, out_channels: int) -> nn.Module:
    return SmallNet(in_channels, 3)


def _one_channel(in_channels: int, out_channels: int) -> nn.Module:
    return SmallNet(in_channels, 1)


def _raising(in_channels: int, out_channels: int) -> nn.Module:
    raise RuntimeError("no such backbone")


def _not_a_module(in_channels: int, out_channels: int) -> nn.Module:
    return "a string"  # type: ignore[return-value]


class _TupleOut(SmallNet):
    def forward(self, x):  # type: ignore[override]
        return (super().forward(x),)


def _tuple_output(in_channels: int, out_channels: int) -> nn.Module:
    return _TupleOut(in_channels, out_channels)


def _shrinking(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3)  # no padding: loses a border


BAD_FACTORIES = [
    ("binary-3", _wrong_channels, 2, r"must output 1 channel\(s\) for a binary task .*; it outputs 3"),
    ("multiclass-1", _one_channel, 4, r"must output 4 channel\(s\) for 4 classes; it outputs 1"),
    ("raising", _raising, 2, "the model factory raised RuntimeError: no such backbone"),
    ("not-a-module", _not_a_module, 2, "must return a torch.nn.Module; it returned str"),
    ("tuple", _tuple_output, 2, "must return a tensor"),
    ("shrinking", _shrinking, 2, r"keep the input's spatial size \(32, 32\)"),
]


@pytest.mark.parametrize(("kind", "factory", "classes", "message"), BAD_FACTORIES, ids=[b[0] for b in BAD_FACTORIES])
def test_bad_factory_fails_before_any_step_or_file(tmp_path, monkeypatch, kind, factory, classes, message):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare_module, "train_run", no_training)
    train, val = _lazy_pair(classes=classes)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        seglosses.compare(
            ["dice"], data=(train, val), num_classes=classes, model=factory, seeds=1, config=TINY, out=out,
            progress=False, log=lambda _: None,
        )  # fmt: skip
    assert not out.exists()  # no run file, not even the settings


# ------------------------------------------------------------------------------------------------ mixed precision


def test_amp_choices_on_cpu():
    train, val = _lazy_pair()
    with pytest.raises(ValueError, match=r"`amp`='fp16' needs a CUDA device; got device='cpu'"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, amp="fp16", **_quiet())
    with pytest.raises(ValueError, match="`amp` must be None, 'bf16' or 'fp16'; got 'fp32'"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, amp="fp32", **_quiet())


def test_bf16_trains_and_validates_on_cpu():
    factory = RecordingFactory()
    train, val = _lazy_pair()
    table = seglosses.compare(
        ["dice"], data=(train, val), num_classes=2, model=factory, amp="bf16", seeds=1, config=TINY, **_quiet()
    )
    run = table.runs[0]
    assert run.status == "ok"
    assert all(math.isfinite(v) for v in run.per_image["dice"])
    assert math.isfinite(run.metrics["dice"]["mean"])
    assert factory.models[-1].dtypes == {torch.bfloat16}  # autocast was on in training and validation


# ------------------------------------------------------------------------------------------------ whole images


class _Pointwise(nn.Module):
    """A 1x1 convolution: each output pixel depends on its input pixel only, so windows must reproduce the whole."""

    def __init__(self, ndim: int, multiple: int, window: tuple[int, ...] | None) -> None:
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        torch.manual_seed(0)
        self.conv = conv(2, 3, 1)
        self.multiple, self.window = multiple, window
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        assert all(s % self.multiple == 0 for s in x.shape[2:])
        return self.conv(x)


@pytest.mark.parametrize(
    ("shape", "window", "multiple"),
    [((50, 70), (16, 24), 8), ((13, 9), None, 8), ((20, 18, 22), (8, 8, 12), 4), ((7, 9, 5), None, 4)],
)
def test_predict_logits_whole_or_by_windows_equals_the_pointwise_model(shape, window, multiple):
    ndim = len(shape)
    model = _Pointwise(ndim, multiple, window)
    image = torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = predict_logits(model, image, multiple=multiple, window=window)
        expected = model.conv(image)
    assert got.shape == (1, 3, *shape)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if window is None:
        assert model.shapes == [tuple(-(-s // multiple) * multiple for s in shape)]
    else:
        assert len(model.shapes) > 1
        assert set(model.shapes) == {tuple(window)}


def test_window_averages_overlapping_logits():
    # A model whose output is its input's mean over the window: at a pixel covered by k windows the result is the
    # mean of those k window means, computed here by brute force.
    class WindowMean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x)

    image = torch.arange(12 * 20, dtype=torch.float32).reshape(1, 1, 12, 20)
    got = predict_logits(WindowMean(), image, multiple=4, window=(8, 8))
    starts_y, starts_x = [0, 4], [0, 4, 8, 12]  # half-window steps, the last flush with the end
    expected = np.zeros((12, 20))
    count = np.zeros((12, 20))
    for y in starts_y:
        for x in starts_x:
            expected[y : y + 8, x : x + 8] += image[0, 0, y : y + 8, x : x + 8].mean().item()
            count[y : y + 8, x : x + 8] += 1
    np.testing.assert_allclose(got[0, 0].numpy(), expected / count, rtol=1e-6)


def test_window_must_match_the_data():
    train, val = _lazy_pair()
    with pytest.raises(ValueError, match="`window` must hold 2 positive sizes"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, window=(8, 8, 8), **_quiet())


def test_spacing_and_nsd_tolerance_are_checked():
    train, val = _lazy_pair()
    with pytest.raises(ValueError, match=r"`spacing` must hold 2 positive sizes; got \(1.0, 0.0\)"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, spacing=(1.0, 0.0), **_quiet())
    with pytest.raises(ValueError, match="`nsd_tolerance` must be a finite number >= 0; got -1"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, nsd_tolerance=-1, **_quiet())


def test_cli_model_amp_spacing_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from seglosses.cli.app import app

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare_module, "train_run", no_training)
    base = ["compare", "--data", "synthetic:binary", "--out", str(tmp_path), "--no-progress"]
    cases = [
        (["--model", "no_such_module_xyz:make"], "cannot import 'no_such_module_xyz'"),
        (["--model", "seglosses"], "--model must look like package.module:function"),
        (["--amp", "fp16"], "`amp`='fp16' needs a CUDA device"),
        (["--amp", "int8"], "--amp must be bf16 or fp16"),
        (["--spacing", "1,x"], "--spacing must be comma-separated numbers"),
        (["--window", "8,8,8"], "`window` must hold 2 positive sizes"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, [*base, *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)
    help_text = " ".join(CliRunner().invoke(app, ["compare", "--help"]).output.split())
    for option in ("--model", "--amp", "--num-workers", "--batch-size", "--window", "--spacing", "--nsd-tolerance"):
        assert option in help_text


def test_all_losses_get_the_task_arguments_and_skip_unsupported_modes(monkeypatch):
    from seglosses.registry import available_losses

    built: list[str] = []
    monkeypatch.setattr(compare_module, "train_run", lambda data, loss_fn, **kw: (built.append(1), [], "ok"))
    messages: list[str] = []
    binary = seglosses.compare(["all"], data="synthetic:binary", seeds=1, out=None, progress=False, log=messages.append)
    assert "generalized_wasserstein_dice" not in binary.losses
    assert any("skipping the loss 'generalized_wasserstein_dice'" in m for m in messages)
    assert set(binary.losses) == set(available_losses()) - {"generalized_wasserstein_dice"}
    multi = seglosses.compare(["all"], data="synthetic", seeds=1, out=None, progress=False, log=messages.append)
    run = next(r for r in multi.runs if r.loss == "generalized_wasserstein_dice")
    assert run.loss_args == {"dist_matrix": (1.0 - np.eye(3)).tolist()}  # every confusion costs the same
    with pytest.raises(ValueError, match="the loss 'generalized_wasserstein_dice' does not support binary tasks"):
        seglosses.compare(["generalized_wasserstein_dice"], data="synthetic:binary", seeds=1, out=None, progress=False)


# ------------------------------------------------------------------------------------------------ folders: memory

_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    torch.set_num_threads(1)
    import seglosses
    from seglosses.cli.train import TrainConfig
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2, base=4, depth=2)
    peaks = []
    for folder in sys.argv[1:]:  # the peak after the small folder, then after the large one
        table = seglosses.compare(["dice"], data=folder, seeds=1, config=cfg, out=None, progress=False,
                                  log=lambda _: None)
        assert table.runs[0].status == "ok", table.runs[0].status
        peaks.append((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(table.runs[0].per_image["dice"])))
    print(json.dumps(peaks))
    """
)


def _png_pairs(root: Path, n: int, size: int = 128) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[10 + i % 50 : 40 + i % 50, 20:60] = 1
        image = (mask * 100 + rng.integers(0, 80, (size, size))).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"p{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i:04d}.png")
    return root


def test_folder_peak_memory_does_not_grow_with_the_number_of_files(tmp_path):
    # Peak RSS (ru_maxrss, never decreases) of one process after comparing on 40 pairs, then on 400 pairs of
    # 128x128: held in memory, the 400 pairs alone would take 400 x 128 x 128 x (4 + 8) bytes = 79 MB.
    folders = [str(_png_pairs(tmp_path / f"d{n}", n)) for n in (40, 400)]
    done = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, *folders], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (small, val_small), (large, val_large) = json.loads(done.stdout.strip().splitlines()[-1])
    assert (val_small, val_large) == (8, 80)  # the last 20 % of the pairs validate, every one of them read
    assert (large - small) / 1024 < 16, (small, large)


def test_seeds_of_numpy_integer_types():
    # seeds=N of any integer type means 0..N-1; a sequence of NumPy integers is the same as Python ints
    train, val = _lazy_pair()
    table = seglosses.compare(["dice"], data=(train, val), num_classes=2, seeds=np.int64(1), config=TINY, **_quiet())
    assert [(r.seed, type(r.seed), r.status) for r in table.runs] == [(0, int, "ok")]
    table = seglosses.compare(["dice"], data=(train, val), num_classes=2, seeds=[np.int32(3)], config=TINY, **_quiet())
    assert [(r.seed, type(r.seed), r.status) for r in table.runs] == [(3, int, "ok")]
    with pytest.raises(TypeError, match="`seeds` must be a number of seeds or a sequence of integer seeds; got 1.5"):
        seglosses.compare(["dice"], data=(train, val), num_classes=2, seeds=1.5, **_quiet())


def test_run_identity_has_no_architecture_for_the_builtin_unet():
    # runs finished before architecture hashes existed (40e31fb) keep their fingerprints: the key appears only for a
    # user's model, whose runs it tells apart
    from seglosses.cli.train import RunSetup

    assert "architecture" not in RunSetup(amp="bf16").identity()
    assert RunSetup(amp="bf16").identity() == {
        "model": None, "amp": "bf16", "size_multiple": None, "window": None, "spacing": None, "nsd_tolerance": None,
    }  # fmt: skip
    assert RunSetup(architecture="abc").identity()["architecture"] == "abc"
