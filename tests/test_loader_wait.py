"""The data-loading share of ``compare``'s training time: recorded per run, shown, hinted at, and benchmarked.

Each run records the seconds its training steps waited for the next batch (``data_wait_s``) and the seconds of the
steps in all (``train_s``). These tests check the invariants of those numbers (finite, >= 0, wait <= train), a lower
bound a sleeping Dataset forces on the wait, the hint's threshold on fixed numbers, that run files of older versions
(without the numbers) still resume, and that ``benchmarks/loader_keeps_up.py``'s core runs on the CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("typer")
pytest.importorskip("matplotlib")

from typer.testing import CliRunner  # noqa: E402

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli import data as data_module  # noqa: E402
from seglosses.cli.app import app  # noqa: E402
from seglosses.cli.compare import ResultsTable, RunResult, TrainConfig  # noqa: E402
from seglosses.cli.data import load_data  # noqa: E402
from seglosses.cli.report import loading_line, rich_table  # noqa: E402
from seglosses.cli.results import LOADING_HINT_SHARE  # noqa: E402
from seglosses.cli.train import StepTimes, train_run  # noqa: E402

TINY = TrainConfig(epochs=1, steps_per_epoch=3, batch_size=2, base=4, depth=2)
SLEEP = 0.05  # seconds per training item read by the slow dataset
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


@pytest.fixture(scope="module")
def binary_data():
    return load_data("synthetic:binary")


def _assert_timings(run: RunResult) -> None:
    assert math.isfinite(run.data_wait_s), run.data_wait_s
    assert math.isfinite(run.train_s), run.train_s
    assert 0.0 <= run.data_wait_s <= run.train_s
    assert run.train_s > 0.0
    assert 0.0 <= run.loading_share <= 1.0


class _Slow(torch.utils.data.Dataset):
    """A training Dataset that sleeps before every item (a slow disk or decoder); the items of ``base``."""

    def __init__(self, base, sleep: float) -> None:
        self.base, self.sleep, self.reads = base, sleep, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        self.reads += 1
        time.sleep(self.sleep)
        return self.base[index]


# ------------------------------------------------------------------------------------------- recorded per run


def test_each_run_records_wait_and_train_time(tmp_path, binary_data):
    out = tmp_path / "cmp"
    table = seglosses.compare(
        ["dice", "focal"], data=binary_data, seeds=1, config=TINY, out=out, progress=False, log=lambda _: None
    )
    for run in table.runs:
        _assert_timings(run)
    wait, train, share = table.data_loading()
    assert wait == pytest.approx(sum(r.data_wait_s for r in table.runs), rel=1e-12)
    assert train == pytest.approx(sum(r.train_s for r in table.runs), rel=1e-12)
    assert share == pytest.approx(wait / train, rel=1e-12)
    # kept in the run files, results.csv and results.json
    for run in table.runs:
        record = json.loads((out / "runs" / f"{run.loss}__seed0.json").read_text())
        assert record["data_wait_s"] == pytest.approx(run.data_wait_s, rel=1e-12)
        assert record["train_s"] == pytest.approx(run.train_s, rel=1e-12)
    import csv

    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row, run in zip(rows, table.runs, strict=True):
        assert float(row["data_wait_s"]) == pytest.approx(run.data_wait_s, rel=1e-3)
        assert float(row["train_s"]) == pytest.approx(run.train_s, rel=1e-3)
    results = json.loads((out / "results.json").read_text())
    assert results["data_loading"]["share"] == pytest.approx(share, rel=1e-12)
    assert "Data loading:" in (out / "report.html").read_text()


def test_train_run_times_count_every_step_and_change_nothing(binary_data):
    loss = seglosses.get_loss("dice", mode="binary")
    times = StepTimes()
    _, history, status = train_run(binary_data, loss, seed=0, config=TINY, times=times)
    _, again, _ = train_run(binary_data, loss, seed=0, config=TINY)  # without times: the same training
    assert status == "ok"
    assert times.steps == TINY.epochs * TINY.steps_per_epoch
    assert 0.0 <= times.data_wait_s <= times.train_s
    assert times.share == pytest.approx(times.data_wait_s / times.train_s, rel=1e-12)
    assert history == again


def test_a_slow_dataset_makes_the_wait_large(binary_data):
    slow = _Slow(binary_data.train, SLEEP)
    messages: list[str] = []
    table = seglosses.compare(
        ["dice"],
        data=(slow, binary_data.val),
        num_classes=2,
        crop=binary_data.crop,
        seeds=1,
        config=TINY,
        out=None,
        progress=False,
        log=messages.append,
    )
    (run,) = table.runs
    _assert_timings(run)
    reads = TINY.steps_per_epoch * TINY.batch_size
    assert slow.reads >= reads
    assert run.data_wait_s >= reads * SLEEP  # every training read slept inside the timed wait
    assert run.loading_share > LOADING_HINT_SHARE
    # the Python API carries the numbers; its messages name no command-line flag
    assert not any("--" in m for m in messages), messages
    assert any("data loading" in m for m in messages), messages


def test_cli_prints_the_share_and_the_workers_hint(tmp_path, monkeypatch):
    real = data_module.CropDataset.__getitem__

    def slow_item(self, spec):
        time.sleep(SLEEP)
        return real(self, spec)

    monkeypatch.setattr(data_module.CropDataset, "__getitem__", slow_item)
    args = ["compare", "--data", "synthetic:binary", "--losses", "dice", "--seeds", "1", "--epochs", "1"]
    args += ["--steps-per-epoch", "3", "--batch-size", "2", "--device", "cpu", "--no-progress", "--threads", "1"]
    args += ["--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "data loading:" in result.output
    assert "--num-workers" in result.output
    (record,) = json.loads((tmp_path / "cli" / "results.json").read_text())["runs"]
    assert record["data_wait_s"] >= 3 * 2 * SLEEP


# ------------------------------------------------------------------------------------- the hint's threshold


def _timed_table(wait: float, train: float, runs: int = 2) -> ResultsTable:
    metrics = {"dice": {"mean": 0.5, "fg": 0.5}}
    out = [
        RunResult("dice", seed, metrics, [], "ok", 1.0, per_image={"dice": [0.5]}, data_wait_s=wait, train_s=train)
        for seed in range(runs)
    ]
    return ResultsTable(out, ["fg"], "binary", "test", val_images=1)


@pytest.mark.parametrize(
    ("wait", "train", "hint"),
    [(0.0, 10.0, False), (1.0, 10.0, False), (2.0, 10.0, False), (2.1, 10.0, True), (9.0, 10.0, True)],
)
def test_hint_only_above_the_threshold(wait, train, hint):
    table = _timed_table(wait, train)
    line = loading_line(table, workers="WORKERS")
    assert line is not None
    assert f"{round(100 * wait / train)}%" in line
    assert ("WORKERS" in line) is hint
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(rich_table(table))
    text = console.export_text()
    assert "data loading:" in text
    assert ("--num-workers" in text) is hint


def test_share_sums_over_runs_before_dividing():
    table = _timed_table(1.0, 10.0)
    table.runs[1].data_wait_s, table.runs[1].train_s = 9.0, 30.0
    wait, train, share = table.data_loading()
    assert (wait, train) == (10.0, 40.0)
    assert share == pytest.approx(0.25, abs=1e-15)  # not the mean of 0.1 and 0.3


# ----------------------------------------------------------------------------------- records of older versions


def test_old_run_records_without_timings_still_resume(tmp_path, binary_data, monkeypatch):
    out = tmp_path / "cmp"
    seglosses.compare(["dice", "focal"], data=binary_data, seeds=1, config=TINY, out=out, progress=False, log=print)
    for name, value in (("dice", "absent"), ("focal", None)):  # an older version's file; a null written for NaN
        path = out / "runs" / f"{name}__seed0.json"
        record = json.loads(path.read_text())
        for key in ("data_wait_s", "train_s"):
            if value == "absent":
                del record[key]
            else:
                record[key] = value
        path.write_text(json.dumps(record))

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(compare_module, "train_run", no_training)
    messages: list[str] = []
    table = seglosses.compare(
        ["dice", "focal"], data=binary_data, seeds=1, config=TINY, out=out, progress=False, log=messages.append
    )
    assert any("2 finished run(s) skipped, 0 to run" in m for m in messages)
    for run in table.runs:
        assert math.isnan(run.data_wait_s)
        assert math.isnan(run.train_s)
        assert math.isnan(run.loading_share)
    assert all(math.isnan(v) for v in table.data_loading())
    assert loading_line(table) is None
    results = json.loads((out / "results.json").read_text())
    assert results["data_loading"] == {"data_wait_s": None, "train_s": None, "share": None}
    assert "Data loading:" not in (out / "report.html").read_text()


def test_runs_with_and_without_timings_mix():
    table = _timed_table(3.0, 10.0, runs=3)
    table.runs[0].data_wait_s = table.runs[0].train_s = math.nan  # an older version's run
    assert table.data_loading() == (6.0, 20.0, pytest.approx(0.3))


# ---------------------------------------------------------------------------------------------- benchmark


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("loader_keeps_up", ROOT / "benchmarks" / "loader_keeps_up.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_core_runs_on_cpu(tmp_path):
    bench = _benchmark_module()
    folder = bench.write_pairs(tmp_path / "pairs", pairs=5, size=40)
    assert len(list((folder / "images").glob("*.png"))) == 5
    result = bench.measure(
        folder, device="cpu", steps=2, warmup=1, workers=0, batch_size=2, crop=(32, 32), base=4, depth=2
    )
    for key in ("loader_s_per_step", "cached_s_per_step", "ratio", "data_wait_share", "item_read_s"):
        assert math.isfinite(result[key]), (key, result[key])
        assert result[key] >= 0, (key, result[key])
    assert result["loader_floor_s_per_step"] == pytest.approx(2 * result["item_read_s"], rel=1e-12)  # 0 workers
    assert result["ratio"] == pytest.approx(result["loader_s_per_step"] / result["cached_s_per_step"], rel=1e-12)
    assert (result["workers"], result["batch_size"], result["crop"], result["steps"]) == (0, 2, [32, 32], 2)
    assert result["device"]
    assert result["torch"] == torch.__version__
    line = bench.markdown_line(result)
    assert line.startswith("|")
    assert f"{result['ratio']:.2f}" in line


def test_benchmark_command_line_writes_json_and_markdown(tmp_path, capsys):
    bench = _benchmark_module()
    out = tmp_path / "loader.json"
    args = ["--pairs", "4", "--size", "40", "--steps", "1", "--warmup", "1", "--workers", "0", "--batch-size", "2"]
    args += ["--crop", "32", "--base", "4", "--depth", "2", "--out", str(out)]
    (result,) = bench.main(args)
    assert json.loads(out.read_text()) == [json.loads(json.dumps(result))]
    table = out.with_suffix(".md").read_text().splitlines()
    assert table == [*bench.MARKDOWN_HEADER.splitlines(), bench.markdown_line(result)]
    assert "ratio" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--amp", "fp16", "--device", "cpu", "--out", str(out)])
    assert "--amp fp16 needs --device cuda" in capsys.readouterr().err
