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
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("typer")
optuna = pytest.importorskip("optuna")

from typer.testing import CliRunner  # noqa: E402

from seglosses.cli.app import app  # noqa: E402
from seglosses.cli.compare import TrainConfig, compare  # noqa: E402
from seglosses.cli.data import load_data  # noqa: E402
from seglosses.registry import search_space  # noqa: E402

TINY = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4, base=4, depth=2)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the spawned ranks inherit this count (compare passes it on)
    yield
    torch.set_num_threads(threads)


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
    assert [w.returncode for w in workers] == [0, 0], outputs
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
