"""``crop=`` / ``--crop`` for named datasets and folders: a model that takes one input size, from the command line too.

Before, a named dataset or folder always trained on the crop the data chose (rounded up to ``--size-multiple`` with
``--model``), so a model that takes only inputs smaller than that crop could not be compared from the command line.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("rich")

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli.train import TrainConfig  # noqa: E402

TINY = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2)
SIZE = 32  # the one input size of the model below; synthetic:binary is 64 x 64 with its own 48 x 48 crop


class OneSize(nn.Module):
    """A 1x1 convolution that refuses every input but SIZE x SIZE (as a transformer with a fixed img_size)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.seen: set[tuple[int, ...]] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != (SIZE, SIZE):
            raise RuntimeError(f"this model takes {SIZE}x{SIZE} inputs only; got {tuple(x.shape[2:])}")
        return self.conv(x)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


def _compare(**kw):
    # out=None unless given: compare's default out is ./seglosses-compare, which the tests must not write (a file left
    # in the checkout, and two xdist workers on it meet the folder lock)
    kw = {"data": "synthetic:binary", "model": OneSize, "seeds": 1, "config": TINY, "progress": False, "out": None} | kw
    return seglosses.compare(["dice"], log=lambda _: None, **kw)


def test_a_one_size_model_trains_on_a_folder_crop_given_with_the_window():
    table = _compare(crop=(SIZE, SIZE), window=(SIZE, SIZE))
    (run,) = table.runs
    assert run.status == "ok", run.status
    assert 0.0 <= run.metrics["dice"]["mean"] <= 1.0


def test_without_the_crop_the_same_model_is_refused_before_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare_module, "train_run", no_training)
    # the data's 48 x 48 crop, rounded up to --size-multiple (32 for a model factory): 64 x 64
    with pytest.raises(ValueError, match=r"takes 32x32 inputs only; got \(64, 64\).*crop \(--crop\)"):
        _compare(window=(SIZE, SIZE))


def test_the_crop_is_used_as_given_and_enters_the_run_identity(tmp_path):
    crops: list[tuple[int, ...]] = []
    real = compare_module.train_run

    def spy(data, *args, **kwargs):
        crops.append(data.crop)
        return real(data, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare_module, "train_run", spy)
        out = tmp_path / "out"
        _compare(model=None, crop=(24, 40), out=out)  # the built-in U-Net: 24 and 40 are multiples of its 8
        assert crops == [(24, 40)]  # not rounded up, not the data's 48 x 48
        first = json.loads((out / "runs" / "dice__seed0.json").read_text())["fingerprint"]
        _compare(model=None, crop=(24, 40), out=out)  # resumed: the same crop
        assert crops == [(24, 40)]
        _compare(model=None, crop=(32, 32), out=out)  # another crop: trained again, another fingerprint
        assert crops == [(24, 40), (32, 32)]
    second = json.loads((out / "runs" / "dice__seed0.json").read_text())["fingerprint"]
    assert first != second


@pytest.mark.parametrize(
    ("crop", "message"),
    [
        ((32,), r"`crop` must hold 2 positive sizes for the 2D data 'synthetic:binary'; got \(32,\)"),
        ((32, 0), r"`crop` must hold 2 positive sizes .*got \(32, 0\)"),
        ((32.0, 32), r"`crop` must hold 2 positive integer sizes; got \(32.0, 32\)"),
        ((True, 32), r"`crop` must hold 2 positive integer sizes"),
    ],
)
def test_a_bad_crop_is_refused_naming_it(crop, message):
    with pytest.raises(ValueError, match=message):
        _compare(crop=crop)


def test_tune_takes_the_crop_too(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from seglosses.cli import train as train_module
    from seglosses.cli.tune import tune

    crops: list[tuple[int, ...]] = []
    real = train_module.train_run

    def spy(data, *args, **kwargs):
        crops.append(data.crop)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_run", spy)
    result = tune("tversky", trials=1, data="synthetic:binary", crop=(24, 40), out=tmp_path, config=TINY,
                  confirm_seeds=0, progress=False, log=lambda _: None)  # fmt: skip
    assert [t["state"] for t in result.trials] == ["COMPLETE"]
    assert crops == [(24, 40)]


def test_the_command_line_crop(tmp_path, monkeypatch):
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from seglosses.cli.app import app

    seen: dict[str, object] = {}

    def fake(losses, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(compare_module, "compare", fake)
    result = CliRunner().invoke(app, ["compare", "--crop", "24,40", "--out", str(tmp_path)])
    assert seen["crop"] == [24, 40], result.output
    assert result.exit_code == 2
    assert "stop here" in result.output
    result = CliRunner().invoke(app, ["compare", "--crop", "24x40", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--crop must be comma-separated integers such as 256,256; got '24x40'" in " ".join(result.output.split())


def test_window_runs_have_a_new_identity_since_smaller_images_are_padded_to_the_window():
    """5aed75b pads validation images smaller than ``window`` to it (before: predicted whole); a folder of earlier
    runs with the same window must not resume as the same runs, while runs without a window keep their ids."""
    from seglosses.cli.train import RunSetup

    assert RunSetup(window=(32, 32)).identity()["window_pads_smaller_images"] is True
    assert "window_pads_smaller_images" not in RunSetup().identity()
    # the identity before 5aed75b for the same window, as the fingerprint hashes it
    before = {"model": None, "amp": None, "size_multiple": None, "window": (32, 32), "spacing": None,
              "nsd_tolerance": None}  # fmt: skip
    assert RunSetup(window=(32, 32)).identity() != before


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
