"""``seglosses.compare`` on a CUDA device: float32, bf16 and fp16 (gradient scaler) on the whole path.

Skipped without a GPU. Training, validation (whole images and sliding windows) and the metrics run on the device;
the float32 numbers must agree with the CPU run up to the nondeterminism of GPU convolutions.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

pytest.importorskip("rich")

import seglosses  # noqa: E402
from seglosses.cli.train import TrainConfig  # noqa: E402

CFG = TrainConfig(epochs=2, steps_per_epoch=5, batch_size=4, base=8, depth=3)


def _run(device: str, amp: str | None, **kwargs):
    return seglosses.compare(
        ["dice", "dice_ce"], data="synthetic:binary", seeds=1, config=CFG, device=device, amp=amp, out=None,
        progress=False, log=lambda _: None, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_compare_on_cuda_with_and_without_amp(amp):
    table = _run("cuda", amp, num_workers=2)
    for run in table.runs:
        assert run.status == "ok", run.status
        assert all(math.isfinite(v) for v in run.per_image["dice"])
        assert all(math.isfinite(v) for v in run.per_image["hd95"])
        assert math.isfinite(run.metrics["dice"]["mean"])
    rec = table.recommendation()
    assert rec.clear == (rec.ci_low > 0)


def test_cuda_float32_agrees_with_cpu():
    cpu = _run("cpu", None)
    gpu = _run("cuda", None)
    for a, b in zip(cpu.runs, gpu.runs, strict=True):
        assert a.metrics["dice"]["mean"] == pytest.approx(b.metrics["dice"]["mean"], abs=0.05)


def test_user_model_with_sliding_window_on_cuda():
    def factory(in_channels: int, out_channels: int) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, out_channels, 1)
        )

    table = _run("cuda", "bf16", model=factory, window=(32, 32))
    assert all(r.status == "ok" for r in table.runs)
