"""``seglosses compare --nproc`` (DDP over gloo processes) and ``seglosses tune --storage`` (workers sharing a study).

- ``compare(..., nproc=2)`` on a tiny synthetic setting gives the table of one process with the same global batch.
  The metrics are compared with ``abs=1e-6`` and the per-epoch training losses with ``rel=1e-5``: the two runs do
  the same arithmetic except for the order of float32 sums (the loss statistics and the BatchNorm statistics are
  summed per rank then across ranks; DDP averages the two halves' gradients), which changes the last bits of the
  loss and of every update; over a dozen AdamW steps that stays around 1e-7 relative, and the hard predictions behind
  the metrics come out identical (the run here gives exact equality of the metrics).
- Two ``python -m seglosses tune`` processes on one SQLite study finish exactly ``--trials`` trials between them.
- A ``tune`` worker killed with SIGKILL in the middle of a trial: with heartbeats, the next worker marks that trial
  FAIL, runs its parameters again, and the study still ends with exactly ``--trials`` finished trials and nothing
  RUNNING.
- A bad ``--nproc`` (0, or a global batch it does not divide) fails with a clear message before anything trains.
- ``GlobalBatchNorm`` on 2 gloo ranks under bf16 autocast: the global batch statistics are taken in float32, as
  ``nn.BatchNorm`` does (NumPy float64 reference on the bf16 values), and the output keeps the input's dtype. A layer
  with ``track_running_stats=False`` (a user's model) is converted too: global statistics in training, the given
  batch's own in eval, no running buffers (it was refused, so ``compare --nproc`` failed on such a model).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("typer")
optuna = pytest.importorskip("optuna")

from typer.testing import CliRunner  # noqa: E402

from seglosses.cli.app import app  # noqa: E402
from seglosses.cli.compare import TrainConfig, compare  # noqa: E402
from seglosses.cli.data import load_data  # noqa: E402
from seglosses.cli.ddp import GlobalBatchNorm  # noqa: E402
from seglosses.registry import search_space  # noqa: E402

TINY = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4, base=4, depth=2)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


def test_compare_nproc2_equals_one_process(tmp_path: Path) -> None:
    data = load_data("synthetic:binary")
    losses = ["dice", "focal"]  # a region loss and a pixel-wise one, both with sync_stats=True under DDP
    kwargs = {"data": data, "seeds": 1, "config": TINY, "progress": False, "log": lambda _: None}
    one = compare(losses, out=None, **kwargs)
    two = compare(losses, out=tmp_path / "ddp", nproc=2, **kwargs)
    assert [r.status for r in two.runs] == ["ok", "ok"]
    for a, b in zip(one.runs, two.runs, strict=True):
        assert (a.loss, a.seed) == (b.loss, b.seed)
        for metric, values in a.metrics.items():
            for key, value in values.items():
                other = b.metrics[metric][key]
                assert (math.isnan(value) and math.isnan(other)) or other == pytest.approx(value, abs=1e-6), (
                    a.loss,
                    metric,
                    key,
                )
        assert [h["train_loss"] for h in b.history] == pytest.approx([h["train_loss"] for h in a.history], rel=1e-5)
        assert [h["val_dice"] for h in b.history] == pytest.approx([h["val_dice"] for h in a.history], abs=1e-6)
    # rank 0 wrote the usual outputs, and the rendezvous folder is gone
    assert (tmp_path / "ddp" / "results.csv").is_file()
    assert (tmp_path / "ddp" / "runs" / "dice__seed0.json").is_file()
    assert not list((tmp_path / "ddp").glob(".ddp-*"))


@pytest.mark.parametrize(
    ("nproc", "message"),
    [
        ("0", "--nproc must be >= 1; got 0"),
        ("3", "the global batch_size 8 must be divisible by the number of processes 3"),
    ],
)
def test_compare_bad_nproc_cli(tmp_path: Path, nproc: str, message: str) -> None:
    assert TrainConfig.preset(quick=True, ndim=2).batch_size == 8
    args = ["compare", "--losses", "dice", "--data", "synthetic:binary", "--quick", "--seeds", "1"]
    args += ["--device", "cpu", "--no-progress", "--out", str(tmp_path / "c"), "--nproc", nproc]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "c" / "runs").exists()  # nothing trained


@pytest.mark.parametrize(
    ("nproc", "message"),
    [
        (0, "compare: `nproc` must be >= 1; got 0"),  # the Python API names the argument, not the flag
        (3, "the global batch_size 4 must be divisible by the number of processes 3"),
    ],
)
def test_compare_bad_nproc_api(nproc: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compare(["dice"], data="synthetic:binary", seeds=1, out=None, config=TINY, nproc=nproc, progress=False)


def test_two_tune_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["--loss", "tversky", "--data", "synthetic:binary", "--quick", "--trials", "6", "--storage", url]
    common += ["--study-name", "shared", "--device", "cpu", "--no-progress", "--threads", "1", "--confirm-seeds", "0"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "seglosses", "tune", *common, "--out", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        for name in ("a", "b")
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]  # generous: the 2-core machine may be very busy
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(outputs)  # whole outputs (a list repr is cut)
    study = optuna.load_study(study_name="shared", storage=url)
    TrialState = optuna.trial.TrialState  # noqa: N806
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6, [(t.number, t.state.name) for t in study.trials]
    assert len({t.number for t in finished}) == 6
    # nothing lost: every other trial is a surplus one that never trained; nothing run twice: distinct parameters
    others = [t for t in study.trials if t not in finished]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("status") == "surplus" for t in others), others
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == 6, params
    assert sum(bool(t.user_attrs.get("baseline")) for t in finished) == 1
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def _tune_worker(url: str, out: Path, trials: int, *extra: str) -> subprocess.Popen[str]:
    # two epochs per trial: a window of a few seconds in which the killing test sees the trial running
    args = ["--loss", "tversky", "--data", "synthetic:binary", "--quick", "--epochs", "2", "--trials", str(trials)]
    args += ["--storage", url, "--study-name", "killed", "--device", "cpu", "--no-progress", "--threads", "1"]
    args += ["--confirm-seeds", "0", "--heartbeat", "1", "--out", str(out), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "seglosses", "tune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


def test_tune_worker_killed_mid_trial_is_retried_and_the_study_completes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    TrialState = optuna.trial.TrialState  # noqa: N806
    victim = _tune_worker(url, tmp_path / "a", 3)
    # kill worker A (SIGKILL: no cleanup at all) once it trains its second trial (its parameters are drawn)
    killed = None
    study = None
    drawn = set(search_space("tversky", "binary"))
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
        try:  # the study is loaded once (a fresh load per poll was slow on a busy machine: windows were missed)
            if study is None:
                study = optuna.load_study(study_name="killed", storage=url)
            trials = study.get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the study or its tables may not exist yet, or the database is locked
            continue
        # every parameter drawn (they are drawn one at a time: a snapshot after the first lacks the others)
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number >= 1 and set(t.params) >= drawn]
        if running:
            victim.send_signal(signal.SIGKILL)
            killed = running[0]
    victim_output = victim.communicate(timeout=30)[0]
    assert killed is not None, f"worker A finished or failed before it could be killed mid-trial:\n{victim_output}"
    assert victim.returncode == -signal.SIGKILL
    stuck = optuna.load_study(study_name="killed", storage=url).trials[killed.number]
    assert stuck.state == TrialState.RUNNING  # what SIGKILL leaves behind
    assert stuck.params == killed.params
    # worker B, same study: it fails the stale trial (no heartbeat for 2 s), re-runs its parameters, completes 3
    survivor = _tune_worker(url, tmp_path / "b", 3)
    output = survivor.communicate(timeout=900)[0]
    assert survivor.returncode == 0, output
    study = optuna.load_study(study_name="killed", storage=url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3, [(t.number, t.state.name) for t in study.trials]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert study.trials[killed.number].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1
    assert retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retried[0].params == killed.params


def _bn_input() -> torch.Tensor:
    """A bf16 activation ``(4, 3, 6, 5)`` whose channel means (about 100.3, -60.2, 0.4) are not bf16 numbers.

    bf16 keeps 8 significant bits: near 100 its spacing is 0.5, so a mean rounded to bf16 is off by up to 0.25, a
    quarter of the channel's standard deviation (1).
    """
    g = torch.Generator().manual_seed(5)
    offsets = torch.tensor([100.3, -60.2, 0.4]).view(1, 3, 1, 1)
    return (torch.randn((4, 3, 6, 5), generator=g) + offsets).to(torch.bfloat16)


def _bn_worker(rank: int, world: int, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{root}/store", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        x = _bn_input()
        per = x.shape[0] // world
        layer = GlobalBatchNorm(torch.nn.BatchNorm2d(3))
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([1.5, 0.5, 2.0]))
            layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x[rank * per : (rank + 1) * per])
        result = {"out": out.detach(), "mean": layer.running_mean, "var": layer.running_var}
        untracked = GlobalBatchNorm(torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False))
        shard = x[rank * per : (rank + 1) * per].float()
        result["untracked_train"] = untracked(shard)
        result["untracked_eval"] = untracked.eval()(shard)  # this batch's own statistics, no collective
        result["untracked_keys"] = list(untracked.state_dict())
        torch.save(result, Path(root) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_bf16_statistics_in_float32(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_bn_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    # NumPy float64 on the bf16 values of the whole batch: biased variance for the output, unbiased for the running
    # variance, momentum 0.1 from the initial running statistics (0, 1), as nn.BatchNorm documents
    x = _bn_input().double().numpy()
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    n = x.size / x.shape[1]
    w, b = np.array([1.5, 0.5, 2.0]), np.array([0.1, -0.2, 0.3])
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    expected = expected * w[None, :, None, None] + b[None, :, None, None]
    per = x.shape[0] // world
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["out"].dtype == torch.bfloat16  # as nn.BatchNorm under autocast: the input's dtype
        # |expected| < 8 here: bf16 rounds it by at most 2**-6; a mean rounded to bf16 moved it by up to 0.75
        np.testing.assert_allclose(got["out"].double().numpy(), expected[rank * per : (rank + 1) * per], atol=0.02)
        np.testing.assert_allclose(got["mean"].numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["var"].numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
        # no running statistics: the global batch's in training, the shard's own in eval (float32 input)
        normalised = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
        np.testing.assert_allclose(got["untracked_train"].numpy(), normalised[rank * per : (rank + 1) * per], atol=1e-4)
        shard = x[rank * per : (rank + 1) * per]
        own = (shard - shard.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
            shard.var(axis=(0, 2, 3), keepdims=True) + 1e-5
        )
        np.testing.assert_allclose(got["untracked_eval"].numpy(), own, atol=1e-4)
        assert got["untracked_keys"] == []  # as nn.BatchNorm2d(affine=False, track_running_stats=False)
