"""``seglosses compare`` / ``tune`` killed (SIGKILL, Ctrl-C, SIGTERM) at named points, then run again on the same out.

The process kills itself at a deterministic point: a driver script (written into the test's folder) wraps
``os.replace`` (the rename that publishes each result file), the training step callback or ``train_run``, and sends
its own process the signal on the n-th call; a second process is paused the same way (SIGSTOP) and the test waits
for the file it stopped on. No sleep races a process. Expected values come from an uninterrupted run with the same
seeds on one CPU thread: a resumed folder must give the same numbers bit for bit.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("typer")
pytest.importorskip("optuna")
pytest.importorskip("matplotlib")
if sys.platform == "win32":  # SIGKILL/SIGSTOP/SIGCONT, and the folder lock is an flock (none on Windows)
    pytest.skip("POSIX signals and flock", allow_module_level=True)

from typer.testing import CliRunner  # noqa: E402

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli import report as report_module  # noqa: E402
from seglosses.cli.app import app  # noqa: E402
from seglosses.cli.compare import TrainConfig  # noqa: E402
from seglosses.cli.report import REPORT_FILES  # noqa: E402
from seglosses.cli.tune import tune  # noqa: E402

# A second or so per run on one thread; seed 0's Dice differs between the two losses.
TINY = {"epochs": 1, "steps_per_epoch": 4, "batch_size": 4, "base": 8, "depth": 3}
LOSSES = ["dice", "focal"]
# The order compare trains its runs in: for each seed, each loss (its table lists them by loss).
ORDER = [("dice", 0), ("focal", 0), ("dice", 1), ("focal", 1)]
CLI_COMPARE = [
    "compare", "--losses", "dice,focal", "--data", "synthetic:binary", "--seeds", "2", "--quick", "--epochs", "1",
    "--steps-per-epoch", "2", "--batch-size", "2", "--device", "cpu", "--threads", "1", "--no-progress",
]  # fmt: skip

DRIVER = r"""
import fnmatch, json, os, signal, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
point, pattern, n, sig = os.environ["KILL_AT"].split(":")
n, sig, calls = int(n), getattr(signal, sig), [0]


def hit(name, path=""):
    if name == point and fnmatch.fnmatch(Path(path).name, pattern):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), sig)


real_replace = os.replace


def replace(src, dst, *args, **kwargs):  # atomic_write's rename: the moment a result file appears
    hit("before-rename", dst)
    real_replace(src, dst, *args, **kwargs)
    hit("after-rename", dst)


os.replace = replace
import seglosses.cli.compare as compare_module
import seglosses.cli.train as train_module

real_train = train_module.train_run


def train_run(*args, **kwargs):  # compare's runs and tune's trials
    hit("train")
    return real_train(*args, **kwargs)


compare_module.train_run = train_module.train_run = train_run
real_step = compare_module._Progress.step


def step(self, *args):  # called after every training step of compare, progress bars or not
    hit("step")
    return real_step(self, *args)


compare_module._Progress.step = step
if sys.argv[1] == "api":
    import seglosses
    from seglosses.cli.compare import TrainConfig

    kwargs = json.loads(sys.argv[2])
    kwargs["config"] = TrainConfig(**kwargs["config"])
    seglosses.compare(**kwargs, log=print)
else:
    from seglosses.cli.app import main

    sys.argv = ["seglosses", *sys.argv[2:]]
    main()
"""


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


def _driver(tmp_path: Path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(DRIVER, encoding="utf-8")
    return path


def _start(tmp_path: Path, kill_at: str, args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "KILL_AT": kill_at, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(_driver(tmp_path)), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _run(tmp_path: Path, kill_at: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    process = _start(tmp_path, kill_at, args)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _api(out: Path, **extra: object) -> list[str]:
    kwargs = {"losses": LOSSES, "data": "synthetic:binary", "seeds": 2, "config": TINY, "out": str(out)}
    return ["api", json.dumps(kwargs | {"progress": False} | extra)]


def _compare(out: Path | None, log: list[str] | None = None, **extra: object) -> seglosses.ResultsTable:
    kwargs = {"data": "synthetic:binary", "seeds": 2, "config": TrainConfig(**TINY), "progress": False}
    return seglosses.compare(LOSSES, out=out, log=(log.append if log is not None else print), **(kwargs | extra))


def _numbers(table: seglosses.ResultsTable) -> list[tuple[object, ...]]:
    """Everything a run computed (not its timings), in the table's order."""
    return [(r.loss, r.seed, r.status, r.metrics, r.per_image, r.history, r.fingerprint) for r in table.runs]


def _count_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The seeds of the runs trained from now on (in this test)."""
    trained: list[int] = []
    real = compare_module.train_run

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        trained.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "train_run", counting)
    return trained


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def uninterrupted() -> list[tuple[object, ...]]:
    """The numbers of the comparison run in one go, without files (the reference of every resume)."""
    # module scope: set up before the autouse _one_thread, which would otherwise save and "restore" this 1, so
    # every later test file of the same xdist worker ran on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _numbers(_compare(None, log=[]))
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------- compare


def test_killed_before_a_result_is_renamed_resumes_to_the_uninterrupted_numbers(tmp_path, uninterrupted, monkeypatch):
    out = tmp_path / "out"
    # SIGKILL with the second run's JSON written to its temporary file, not yet renamed
    killed = _run(tmp_path, "before-rename:*__seed*.json:2:SIGKILL", _api(out))
    assert killed.returncode == -signal.SIGKILL
    runs = out / "runs"
    assert sorted(p.name for p in runs.glob("*.json")) == ["dice__seed0.json"]
    assert len(list(runs.glob(".focal__seed0.json.*.tmp"))) == 1  # the half-published result

    trained = _count_training(monkeypatch)
    log: list[str] = []
    table = _compare(out, log)
    assert len(trained) == 3  # the finished run is not trained again; the killed one is
    assert "resuming: 1 finished run(s) skipped, 3 to run" in log
    assert not list(out.rglob("*.tmp"))
    assert _numbers(table) == uninterrupted
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert [(r["loss"], int(r["seed"])) for r in rows] == [(r[0], r[1]) for r in uninterrupted]
    dice = [float(r["dice_mean"]) for r in rows]
    assert dice == [float(f"{r[3]['dice']['mean']:.6g}") for r in uninterrupted]


def test_killed_while_the_report_is_written_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "out"
    # SIGKILL after the CSV/JSON files and the plots (drawn into a temporary folder), before report.html appears
    killed = _run(tmp_path, "before-rename:report.html:1:SIGKILL", _api(out))
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "report.html").exists()
    assert len(list((out / "runs").glob("*.json"))) == 4
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    log: list[str] = []
    _compare(out, log)
    assert "resuming: 4 finished run(s) skipped, 0 to run" in log
    left = {p.name for p in out.iterdir()} - {"runs", "config.json", ".seglosses.lock"}
    assert left == set(REPORT_FILES)  # no temporary file or folder of plots left
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        f"{loss}__seed{seed}.{ext}" for loss, seed in ORDER for ext in ("json", "npz")
    )


def _no_training(*args: object, **kwargs: object) -> None:
    raise AssertionError("training started")


def test_ctrl_c_during_a_run_stops_with_the_resume_message(tmp_path):
    out = tmp_path / "out"
    # SIGINT at the first step of the third run (each run has 2 steps)
    result = _run(tmp_path, "step:*:5:SIGINT", ["cli", *CLI_COMPARE, "--out", str(out)])
    assert result.returncode == 130, result.stderr
    message = _one_line(result.stderr)
    assert "interrupted. Finished work is saved in" in message
    assert "run the same command again to resume" in message
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["dice__seed0.json", "focal__seed0.json"]
    assert not list(out.rglob("*.tmp"))


def test_sigterm_stops_with_the_resume_message(tmp_path):
    out = tmp_path / "out"
    # SIGTERM (a scheduler ending the job) at the first step of the second run
    result = _run(tmp_path, "step:*:3:SIGTERM", ["cli", *CLI_COMPARE, "--out", str(out)])
    assert result.returncode == 143, result.stderr
    message = _one_line(result.stderr)
    assert "terminated (SIGTERM). Finished work is saved in" in message
    assert "run the same command again to resume" in message
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["dice__seed0.json"]
    assert not list(out.rglob("*.tmp"))


def test_ctrl_c_before_anything_finished_says_nothing_is_kept(tmp_path):
    out = tmp_path / "out"
    result = _run(tmp_path, "step:*:1:SIGINT", ["cli", *CLI_COMPARE, "--out", str(out)])
    assert result.returncode == 130, result.stderr
    message = _one_line(result.stderr)
    assert "interrupted. Nothing was finished yet; run the same command again to start" in message
    assert "Finished work is saved" not in message
    assert "Traceback" not in result.stderr


def test_an_operating_system_error_is_one_line(tmp_path, monkeypatch):
    """A full disk or another OSError raised while comparing: one line and status 2, not a traceback."""
    from typer.testing import CliRunner

    import seglosses.cli.compare as compare_module
    from seglosses.cli.app import app

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "runs" / ".x.tmp"))

    monkeypatch.setattr(compare_module, "compare", full)
    result = CliRunner().invoke(app, ["compare", "--data", "synthetic:binary", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "error: [Errno 28] No space left on device" in _one_line(result.output)
    assert "Traceback" not in result.output


def test_a_second_comparison_on_the_same_folder_stops_and_the_first_finishes(tmp_path, uninterrupted):
    out = tmp_path / "out"
    # the first comparison pauses itself (SIGSTOP) with its first result in a temporary file, not yet renamed
    first = _start(tmp_path, "before-rename:dice__seed0.json:1:SIGSTOP", _api(out))
    try:
        deadline = time.monotonic() + 240
        while not list((out / "runs").glob(".dice__seed0.json.*.tmp")):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first comparison never reached its first result"
            time.sleep(0.05)
        with pytest.raises(ValueError, match=rf"results folder .* is in use by another process \(pid {first.pid}\)"):
            _compare(out, log=[])
        # its temporary file is still there (a second comparison used to remove it, then the first one crashed)
        assert list((out / "runs").glob(".dice__seed0.json.*.tmp"))
    finally:
        first.send_signal(signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert len(list((out / "runs").glob("*.json"))) == 4

    log: list[str] = []
    table = _compare(out, log)  # the folder is free again
    assert "resuming: 4 finished run(s) skipped, 0 to run" in log
    assert _numbers(table) == uninterrupted


def test_run_files_edited_by_hand_are_run_again_with_a_message(tmp_path, uninterrupted, monkeypatch):
    out = tmp_path / "out"
    _compare(out, log=[], report=False)
    runs = out / "runs"
    focal1 = (runs / "focal__seed1.json").read_text(encoding="utf-8")
    (runs / "dice__seed0.json").write_bytes(b"")  # truncated to nothing
    (runs / "focal__seed0.json").write_text(focal1, encoding="utf-8")  # another run's file copied over it
    other = json.loads((runs / "dice__seed1.json").read_text(encoding="utf-8"))
    other["fingerprint"] = "0123456789abcdef"  # what a run of other settings records
    (runs / "dice__seed1.json").write_text(json.dumps(other), encoding="utf-8")

    trained = _count_training(monkeypatch)
    log: list[str] = []
    table = _compare(out, log, report=False)
    assert sorted(trained) == [0, 0, 1]  # only focal__seed1 is kept
    assert "resuming: 1 finished run(s) skipped, 3 to run" in log
    assert "1 result file(s) cannot be read, so those runs run again: runs/dice__seed0.json" in log
    assert (
        "1 result file(s) hold the result of another (loss, seed), so those runs run again: runs/focal__seed0.json"
    ) in log
    assert "1 result file(s) were made with other settings, so those runs run again: runs/dice__seed1.json" in log
    assert _numbers(table) == uninterrupted
    assert json.loads((runs / "focal__seed0.json").read_text(encoding="utf-8"))["seed"] == 0


class _Killed(BaseException):
    """Stands for SIGKILL in this process: nothing catches it, no file is written after it."""


def test_predictions_of_other_settings_are_never_shown_beside_a_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _compare(out, log=[], seeds=1, report=False)
    # Other settings (two epochs); the process dies after the first run's predictions, before its JSON.
    real = compare_module.atomic_write

    def dies_before_the_json(path, content):  # noqa: ANN001, ANN202
        if path.suffix == ".json" and path.parent.name == "runs":
            raise _Killed
        return real(path, content)

    monkeypatch.setattr(compare_module, "atomic_write", dies_before_the_json)
    with pytest.raises(_Killed):
        _compare(out, log=[], seeds=1, report=False, config=TrainConfig(**(TINY | {"epochs": 2})))
    monkeypatch.undo()
    with np.load(out / "runs" / "dice__seed0.npz") as npz:
        assert str(npz["fingerprint"]) != first.runs[0].fingerprint  # the new settings' predictions
    # the first settings again: their run is finished (its JSON kept), so nothing trains; the predictions beside it
    # are another run's and must not be drawn as its own
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    table = _compare(out, log=[], seeds=1)
    assert _numbers(table) == _numbers(first)
    shown = report_module._run_previews(table, out / "runs", 0)
    assert "dice" not in shown
    assert set(shown) == {"focal"}
    assert set(shown["focal"]) == {"pred0", "pred1"}


def test_a_full_disk_stops_with_one_line_and_keeps_the_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = Path.write_text

    def full_disk(self, data, *args, **kwargs):  # noqa: ANN001, ANN202
        if self.name.startswith(".dice__seed1.json."):  # the third run's result: half written, then no space
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(ValueError, match="No space left on device; the runs finished before it are kept in") as info:
        _compare(out, log=[])
    assert str(out / "runs" / "dice__seed1.json") in str(info.value)
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["dice__seed0.json", "focal__seed0.json"]
    assert not list(out.rglob("*.tmp"))  # the half-written temporary file is removed


def test_an_unwritable_results_folder_fails_before_training(tmp_path, monkeypatch):
    # A path below a file cannot be created, whoever runs the test (root ignores a read-only mode).
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    out = tmp_path / "file" / "out"
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    result = CliRunner().invoke(app, [*CLI_COMPARE, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"compare: cannot write the results folder {out}: Not a directory" in _one_line(result.output)


# ------------------------------------------------------------------------------------------------- tune


@pytest.mark.parametrize(
    ("sig", "code", "what"), [("SIGINT", 130, "interrupted."), ("SIGTERM", 143, "terminated (SIGTERM).")]
)
def test_tune_ctrl_c_in_the_defaults_trial_is_one_message_and_the_defaults_run_on_resume(tmp_path, sig, code, what):
    out = tmp_path / "tune"
    args = ["tune", "--loss", "tversky", "--trials", "2", "--data", "synthetic:binary", "--quick", "--epochs", "1"]
    args += ["--device", "cpu", "--threads", "1", "--no-progress", "--confirm-seeds", "0", "--out", str(out)]
    result = _run(tmp_path, f"train:*:1:{sig}", ["cli", *args])  # the first trial: the loss's defaults
    assert result.returncode == code, result.stderr
    assert f"{what} Finished work is saved in" in _one_line(result.stderr)
    assert "run the same command again to resume" in _one_line(result.stderr)
    assert "Traceback" not in result.stderr
    assert "KeyboardInterrupt" not in result.stderr
    assert "Terminated" not in result.stderr

    config = TrainConfig(epochs=1, steps_per_epoch=5, batch_size=8)  # tune --quick --epochs 1
    resumed = tune("tversky", trials=2, data="synthetic:binary", out=out, config=config, confirm_seeds=0,
                   progress=False, log=lambda _: None)  # fmt: skip
    states = [(t["state"], bool(t.get("baseline"))) for t in resumed.trials]
    assert states[0] == ("FAIL", True)  # the interrupted one
    assert ("COMPLETE", True) in states  # the defaults ran again
    assert np.isfinite(resumed.default_value)
    assert sum(s == "COMPLETE" for s, _ in states) == 2


def test_tune_an_unwritable_results_folder_fails_at_once(tmp_path, monkeypatch):
    # A folder that exists but cannot be written used to be retried for about a minute as a locked study; a path
    # below a file stands for it here (root ignores a read-only mode)
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    out = tmp_path / "file" / "out"
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    args = ["tune", "--loss", "tversky", "--data", "synthetic:binary", "--quick", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"tune: cannot write the results folder {out}: Not a directory" in _one_line(result.output)


class _Study:
    """A study whose trials are given snapshot after snapshot (the last one stays), without storage or heartbeats."""

    _storage = None

    def __init__(self, *snapshots: list[object]) -> None:
        self.snapshots = list(snapshots)

    def get_trials(self, deepcopy: bool = False) -> list[object]:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def stop(self) -> None:
        pass


def test_tune_says_what_a_resumed_trial_waits_for() -> None:
    # SIGKILL leaves its trial RUNNING until its heartbeat goes stale (2 x --heartbeat, 2 minutes by default): the
    # search resumed meanwhile waits for it, and now says so instead of nothing for two minutes
    from types import SimpleNamespace

    import optuna

    from seglosses.cli import tune as tune_module

    def trial(number: int, state: str) -> SimpleNamespace:
        return SimpleNamespace(number=number, state=getattr(optuna.trial.TrialState, state), user_attrs={})

    done, killed = trial(0, "COMPLETE"), trial(1, "RUNNING")
    mine = SimpleNamespace(number=2, user_attrs={}, set_user_attr=lambda k, v: None)
    running = trial(2, "RUNNING")  # this trial, as the storage lists it
    study = _Study([done, killed, running], [done, killed, running], [done, trial(1, "FAIL"), running])
    waits: list[list[int]] = []
    tune_module._claim(study, mine, 2, 0.001, 60.0, on_wait=waits.append)  # runs once trial 1 is failed
    assert waits == [[1]]


# ------------------------------------------------------------------------------------------------- --nproc


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:  # the process ended meanwhile
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended (its parent, or init, has yet to reap it)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process tree from Linux /proc")
def test_sigterm_with_nproc_stops_the_ranks_too(tmp_path):
    """SIGTERM to ``compare --nproc 2`` (the parent only, as ``kill PID``): the ranks stop too, and the parent exits.

    The parent waits in the ranks' join; SIGTERM raised there as KeyboardInterrupt used to leave the (non-daemon)
    ranks training, and the parent waited for them at exit.
    """
    out = tmp_path / "out"
    args = [a if a != "1" or CLI_COMPARE[i - 1] != "--epochs" else "50" for i, a in enumerate(CLI_COMPARE)]
    args += ["--nproc", "2", "--out", str(out)]  # 50 epochs: long enough to be stopped midway
    # not through the driver: the ranks are spawned, and a spawned process runs the parent's __main__ module again
    process = subprocess.Popen(
        [sys.executable, "-m", "seglosses", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(ranks) < 2 or not list(out.glob(".ddp-*/init*")):  # the ranks have met
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the ranks never started"
            time.sleep(0.1)
            ranks = [pid for pid in _children(process.pid) if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        left = [pid for pid in ranks if _alive(pid)]
        for pid in left:  # a failing run must not leave ranks training on the machine
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM)" in _one_line(stderr)
    assert not left, "ranks left running"


def test_tune_interrupted_with_a_storage_says_the_study_keeps_the_trials(tmp_path, monkeypatch):
    """With ``--storage`` the finished trials live in that database, not in ``--out``: never "Nothing was finished"."""
    pytest.importorskip("optuna")
    from typer.testing import CliRunner

    import seglosses.cli.tune as tune_module
    from seglosses.cli.app import app

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tune_module, "tune", interrupted)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = CliRunner().invoke(app, ["tune", "--loss", "tversky", "--storage", url, "--out", str(tmp_path / "o")])
    assert result.exit_code == 130, result.output
    message = _one_line(result.output)
    assert "interrupted. Finished trials are kept in the study of --storage; run the same command again" in message
    assert "Nothing was finished" not in message
