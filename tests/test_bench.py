"""The benchmark harness (seglosses.cli.benchmark): a quick run end to end, and the memory measurement.

No timing assertions: timings live in `seglosses bench`, never in a test.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seglosses.cli import benchmark as bm

TINY = bm.Workload("tiny", (2, 3, 32, 32), "multiclass")
SUM_CASE = next(c for c in bm.CASES if c.id == "ref:sum")


def test_bench_quick_run_writes_parsable_files(tmp_path):
    # Three fresh subprocesses: the two references and our Dice, on the smallest quick workload.
    results, paths, meta = bm.run_and_report(
        workloads="quick-bin", losses="dice", peers=False, repeats=1, device="cpu", out=tmp_path, rich=False
    )
    assert [r.case for r in results] == ["ref:ce", "ref:sum", "seglosses:dice"]
    assert meta["torch"] == torch.__version__
    with paths["csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    data = json.loads(paths["json"].read_text())
    assert len(rows) == len(data["results"]) == 3
    for row, record in zip(rows, data["results"], strict=True):
        assert row["status"] == record["status"] == "ok", row["error"]
        for key in ("ms", "peak_mib", "x_ce", "x_logits"):
            assert math.isfinite(float(row[key]))
            assert float(row[key]) > 0
            assert math.isfinite(record[key])
    assert "seglosses:dice" in paths["md"].read_text()


def test_bench_min_time_adds_steps_to_short_cases():
    # min_time 0: exactly `repeats` timed steps; min_time > 0: steps until their total reaches it (or the cap)
    counted = bm.measure(TINY, SUM_CASE, repeats=3, device="cpu")
    assert len(counted["ms_all"]) == 3
    timed = bm.measure(TINY, SUM_CASE, repeats=3, device="cpu", min_time=0.02)
    steps = timed["ms_all"]
    assert len(steps) > 3 or sum(steps) >= 20.0  # (three steps of a loaded machine may already reach 20 ms)
    assert sum(steps) >= 20.0 or len(steps) == bm._MAX_STEPS
    assert len(steps) == 3 or sum(steps[:-1]) < 20.0  # it stops at the first step that reaches the total


def test_bench_rejects_negative_min_time():
    with pytest.raises(ValueError, match=r"min_time must be >= 0 seconds; got -1"):
        bm.run_benchmark([TINY], [SUM_CASE], min_time=-1.0)


def test_bench_memory_sum_is_one_gradient():
    # x.sum() fwd+bwd allocates the logits' gradient and a few scalars: 1.0x the logits.
    out = bm.measure(TINY, SUM_CASE, repeats=1, device="cpu")
    assert TINY.logits_bytes <= out["peak_bytes"] <= TINY.logits_bytes + 4096


def test_bench_memory_counts_a_known_temporary():
    # A 16 MiB temporary alive at the same time as the gradient must show up in the peak.
    size = 16 * 2**20

    def loss_with_temporary(x, t):
        tmp = torch.ones(size // 4)
        return x.sum() + tmp.sum()

    out = bm.measure(TINY, SUM_CASE, repeats=1, device="cpu", loss_fn=loss_with_temporary)
    assert out["peak_bytes"] >= size
    assert out["peak_bytes"] <= size + TINY.logits_bytes + 4096


def test_bench_memory_cross_entropy_keeps_its_intermediates():
    # F.cross_entropy saves log_softmax for backward and builds its gradient: more than the logits' gradient.
    ce = next(c for c in bm.CASES if c.id == "ref:ce")
    out = bm.measure(TINY, ce, repeats=1, device="cpu")
    assert out["peak_bytes"] >= 2 * TINY.logits_bytes


def test_bench_derive_ratios():
    rows = [
        bm.Result("w", "", "ref:ce", "reference", "ce", "", "", "ok", ms=10.0, peak_mib=3.0),
        bm.Result("w", "", "seglosses:dice", "seglosses", "dice", "", "", "ok", ms=5.0, peak_mib=2.0),
        bm.Result("w", "", "monai:DiceLoss", "monai", "dice", "", "", "ok", ms=20.0, peak_mib=4.0),
        bm.Result("w", "", "smp:DiceLoss", "smp", "dice", "", "", "ok", ms=15.0, peak_mib=8.0),
        bm.Result("w", "", "kornia:dice_loss", "kornia", "dice", "", "", "unavailable"),
    ]
    bm.derive(rows)
    assert rows[1].x_ce == pytest.approx(0.5)
    assert rows[1].peer_speedup == pytest.approx(3.0)
    assert rows[1].x_leanest_peer == pytest.approx(0.5)
    assert rows[3].peer_speedup == pytest.approx(1.0)
    assert math.isnan(rows[0].peer_speedup)
    assert math.isnan(rows[4].x_ce)


def test_bench_merge_rounds_takes_the_median_of_the_rounds():
    def row(ms: float, status: str = "ok") -> bm.Result:
        return bm.Result("w", "", "seglosses:dice", "seglosses", "dice", "", "", status, ms=ms, ms_all=[ms, ms + 1],
                         peak_mib=2.0 + ms / 100, x_logits=1.0 + ms / 100)  # fmt: skip

    merged = bm.merge_rounds([row(30.0), row(10.0), row(12.0)])
    assert merged.ms == pytest.approx(12.0)
    assert merged.ms_all == [30.0, 31.0, 10.0, 11.0, 12.0, 13.0]
    assert merged.peak_mib == pytest.approx(2.3)  # the largest peak of the rounds
    assert merged.x_logits == pytest.approx(1.3)
    failed = bm.merge_rounds([row(10.0), bm.Result("w", "", "c", "l", "q", "", "", "error", error="boom")])
    assert (failed.status, failed.error) == ("error", "boom")
    assert bm.merge_rounds([row(7.0)]).ms == pytest.approx(7.0)


def test_bench_rounds_run_each_case_that_many_times(monkeypatch):
    calls = []

    def fake_run_one(workload, case, **kwargs):
        calls.append(case.id)
        ms = 10.0 + len(calls)
        return bm.Result(workload.name, "", case.id, case.library, case.quantity, "", "", "ok", ms=ms, ms_all=[ms],
                         peak_mib=1.0, x_logits=1.0)  # fmt: skip

    monkeypatch.setattr(bm, "_run_one", fake_run_one)
    cases = bm.select_cases(["dice"], peers=False)
    results = bm.run_benchmark([TINY], cases, rounds=3, repeats=1)
    ids = [c.id for c in cases]
    assert calls == ids * 3  # one round after the other, not each case three times in a row
    assert [r.case for r in results] == ids
    k = len(ids)
    assert [r.ms for r in results] == [10.0 + k + 1 + i for i in range(k)]  # the middle round's value
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        bm.run_benchmark([TINY], cases, rounds=0)


def test_bench_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown loss 'dise'"):
        bm.select_cases(["dise"])
    with pytest.raises(ValueError, match="unknown workload"):
        bm.select_workloads(["4d"])


def test_bench_every_case_has_a_mapping_note():
    for case in bm.CASES:
        assert case.note
        assert case.call
        assert case.quantity in bm.QUANTITIES + bm.REFERENCES


def test_bench_missing_loss_is_reported_unavailable(monkeypatch):
    # A loss not written yet (e.g. lovasz_loss while lovasz.py is in progress) becomes an "unavailable" row.
    import seglosses.functional as sf

    monkeypatch.delattr(sf, "lovasz_loss", raising=False)
    case = next(c for c in bm.CASES if c.id == "seglosses:lovasz")
    with pytest.raises(bm.Unavailable, match="lovasz_loss"):
        case.build("multiclass")


def test_bench_cli_quick_run_and_min_time(tmp_path):
    # `seglosses bench`: --quick times the references and our Dice with counts only (min time 0) unless asked;
    # an explicit --min-time is recorded in the meta and gives the case more than --repeats steps
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    base = ["bench", "--quick", "--workloads", "quick-bin", "--losses", "dice", "--no-peers", "--device", "cpu"]
    result = typer_testing.CliRunner().invoke(app, [*base, "--repeats", "2", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert "min_time_s" not in data["meta"]
    assert [len(r["ms_all"]) for r in data["results"]] == [2, 2, 2]
    args = [*base, "--repeats", "1", "--min-time", "0.01", "--out", str(tmp_path / "b")]
    result = typer_testing.CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "b" / "results.json").read_text())
    assert data["meta"]["min_time_s"] == 0.01
    for row in data["results"]:  # steps until their total reaches 10 ms: more than one unless the first took that
        steps = row["ms_all"]
        assert sum(steps) >= 10.0
        assert sum(steps[:-1]) < 10.0


def test_bench_cli_rejects_negative_min_time():
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    result = typer_testing.CliRunner().invoke(app, ["bench", "--quick", "--min-time", "-1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Invalid value for '--min-time': Input should be greater than or equal to 0" in result.output


def test_import_seglosses_loads_no_tooling():
    # The harness lives in seglosses.cli.benchmark; the library, its metrics and its Modules must not load it,
    # nor the command-line / tuning stack. A fresh interpreter, so that this test's own imports do not count.
    code = (
        "import sys, seglosses, seglosses.functional, seglosses.losses, seglosses.registry\n"
        "import seglosses.metrics\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'matplotlib', 'optuna')\n"
        "             or m in ('seglosses.benchmark', 'seglosses.cli.benchmark'))\n"
        "print(repr(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_benchmark_module_runs_as_a_script():
    # python -m seglosses.cli.benchmark --help: the module the workers are started as
    proc = subprocess.run(
        [sys.executable, "-m", "seglosses.cli.benchmark", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--worker" in proc.stdout or "--min-time" in proc.stdout


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (Linux /proc; elsewhere only existence)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True


def test_busy_processes_spin_during_the_block_and_are_gone_after():
    with bm.busy_processes(2) as spinners:
        assert len(spinners) == 2
        assert all(p.poll() is None for p in spinners)
        assert all(_alive(p.pid) for p in spinners)
    assert all(p.poll() is not None for p in spinners)
    assert not any(_alive(p.pid) for p in spinners)
    with bm.busy_processes(0) as none:
        assert none == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_busy_processes_are_killed_when_the_block_raises(error):
    seen = []

    def body():
        with bm.busy_processes(1) as spinners:
            seen.extend(spinners)
            assert _alive(spinners[0].pid)
            raise error("stop")

    with pytest.raises(error):
        body()
    assert seen[0].poll() is not None
    assert not _alive(seen[0].pid)


def test_busy_processes_stop_by_themselves_when_the_parent_dies():
    # the parent leaves without its cleanup (os._exit, as after SIGKILL): the spinner notices and ends
    code = (
        "import os, sys\n"
        "from seglosses.cli import benchmark as bm\n"
        "cm = bm.busy_processes(1)\n"
        "spinners = cm.__enter__()\n"
        "print(spinners[0].pid, flush=True)\n"
        "os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_busy_rejects_a_negative_count():
    with pytest.raises(ValueError, match=r"busy must be >= 0 processes; got -1"), bm.busy_processes(-1):
        pass
    with pytest.raises(ValueError, match=r"busy must be >= 0 processes; got -2"):
        bm.run_and_report(workloads="quick-bin", losses="dice", busy=-2, rich=False, out=Path("unused"))


def _spy_on_spinners(monkeypatch, fail=None):
    """Record the spinners ``busy_processes`` starts; replace the timing by rows made after checking them alive."""
    started, alive_during = [], []
    real = bm.busy_processes

    @contextlib.contextmanager
    def spy(n):
        with real(n) as procs:
            started.extend(procs)
            yield procs

    def fake_run_benchmark(workloads, cases, **kwargs):
        alive_during.extend(_alive(p.pid) for p in started)
        if fail is not None:
            raise fail
        return [bm.Result(w.name, "", c.id, c.library, c.quantity, c.call, c.note, "ok", ms=1.0, ms_all=[1.0],
                          peak_mib=1.0, x_logits=1.0) for w in workloads for c in cases]  # fmt: skip

    monkeypatch.setattr(bm, "busy_processes", spy)
    monkeypatch.setattr(bm, "run_benchmark", fake_run_benchmark)
    return started, alive_during


def test_bench_cli_busy_starts_spinners_for_the_run_and_records_them(tmp_path, monkeypatch):
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    started, alive_during = _spy_on_spinners(monkeypatch)
    args = ["bench", "--quick", "--workloads", "quick-bin", "--losses", "dice", "--no-peers", "--device", "cpu"]
    result = typer_testing.CliRunner().invoke(
        app, [*args, "--busy", "2", "--out", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert len(started) == 2
    assert alive_during == [True, True]  # spinning while the cases ran
    assert not any(_alive(p.pid) for p in started)  # and gone after
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["busy"] == 2
    assert f"busy: 2 spinning processes (pids {started[0].pid}, {started[1].pid})" in result.output
    assert "- busy: 2" in (tmp_path / "results.md").read_text()
    # without --busy: none started, the meta says 0
    started.clear()
    result = typer_testing.CliRunner().invoke(app, [*args, "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert started == []
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["busy"] == 0


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_bench_busy_spinners_are_gone_after_an_interrupted_run(tmp_path, monkeypatch, error):
    started, alive_during = _spy_on_spinners(monkeypatch, fail=error("stop"))
    with pytest.raises(error, match="stop"):
        bm.run_and_report(workloads="quick-bin", losses="dice", busy=1, quick=True, out=tmp_path, rich=False)
    assert alive_during == [True]
    assert not _alive(started[0].pid)


def test_bench_cli_rejects_an_unknown_group_and_a_negative_busy():
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    runner = typer_testing.CliRunner()
    result = runner.invoke(app, ["bench", "--quick", "--only", "nope"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "unknown group 'nope'; choose from losses, catalogue, surface" in result.output
    result = runner.invoke(app, ["bench", "--quick", "--busy", "-1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Invalid value for '--busy'" in result.output


def test_bench_groups_default_and_selection():
    assert bm.select_groups(None) == ["losses", "catalogue", "surface"]
    assert bm.select_groups(["surface", "losses"]) == ["losses", "surface"]
    with pytest.raises(ValueError, match="no group given"):
        bm.select_groups([])
    ours = bm.select_cases(["dice"], peers=False)
    assert [c.id for c in ours] == ["ref:ce", "ref:sum", "seglosses:dice"]
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        bm.select_cases(["dice"], groups=())


def test_bench_surface_group_rows(tmp_path):
    surface = pytest.importorskip("seglosses.cli.bench_surface")
    pytest.importorskip("scipy")
    results, paths, meta = bm.run_and_report(only="surface", quick=True, device="cpu", out=tmp_path, rich=False)
    assert meta["groups"] == "surface"
    assert [r.case for r in results] == [f"{c.library}:{c.quantity}" for c in surface.CASES]
    assert {r.workload for r in results} == {surface.WORKLOAD}
    ours = [r for r in results if r.library == "seglosses"]
    assert ours
    assert all(r.status == "ok" and r.ms > 0 and math.isfinite(r.value) for r in ours)
    for row in results:  # a peer that ran gives the same quantity (the mapping is right)
        mine = next(r for r in ours if r.quantity == row.quantity)
        if row.status == "ok" and row.library != "seglosses":
            assert row.value == pytest.approx(mine.value, rel=1e-4, abs=1e-4)
            assert mine.peer_speedup == pytest.approx(min(
                r.ms for r in results if r.quantity == row.quantity and r.library != "seglosses" and r.status == "ok"
            ) / mine.ms)  # fmt: skip
    text = paths["md"].read_text()
    assert f"## {surface.WORKLOAD}" in text
    assert "seglosses:nsd" in text


def test_bench_catalogue_group_runs_in_workers(tmp_path):
    catalogue = pytest.importorskip("seglosses.cli.bench_catalogue")
    names = {c.quantity for c in catalogue.catalogue_cases()}
    assert set(catalogue.CATALOGUE_QUANTITIES) == names
    cases = bm.select_cases(None, peers=True, groups=["catalogue"])
    assert {c.quantity for c in cases} == names | set(bm.REFERENCES)
    assert "cldice" not in bm.QUANTITIES
    # a worker subprocess finds a catalogue case by its id
    case = next(c for c in cases if c.id == "seglosses:cldice")
    row = bm._run_one(bm.WORKLOADS["quick-2d"], case, repeats=1, warmup=1, threads=1, device="cpu", timeout=300)
    assert row.status == "ok", row.error
    assert row.ms > 0
    assert math.isfinite(row.value)


def _value(case: bm.Case, workload: bm.Workload) -> float:
    x, t = bm._inputs(workload, case.target, "cpu")
    return float(case.build(workload.mode)(x, t).detach())


def test_bench_exact_peers_give_our_value():
    # Every peer case marked `exact` for a mode computes our default loss there: same value on the same input
    # (each installed peer; smp 0.6's Dice needs smooth=0.5 for our smooth=1)
    checked = []
    for workload in (bm.WORKLOADS["quick-2d"], bm.WORKLOADS["quick-bin"], bm.WORKLOADS["quick-3d"]):
        for case in bm.CASES:
            if workload.mode not in case.exact or not case.applies(workload):
                continue
            try:
                theirs = _value(case, workload)
            except bm.Unavailable:
                continue
            ours = _value(bm._CASES_BY_ID[f"seglosses:{case.quantity}"], workload)
            assert theirs == pytest.approx(ours, rel=1e-5), (workload.name, case.id)
            checked.append(case.id)
    if not checked:
        pytest.skip("no peer library installed")


def test_bench_value_check_lists_a_wrong_mapping():
    def row(case: str, library: str, value: float) -> bm.Result:
        return bm.Result("quick-2d", "", case, library, "dice", "c", "n", "ok", ms=1.0, peak_mib=1.0, value=value)

    rows = [row("seglosses:dice", "seglosses", 0.5), row("monai:DiceLoss", "monai", 0.5 * (1 + 5e-5)),
            row("smp:DiceLoss", "smp", 0.501), row("kornia:dice_loss", "kornia", 0.7)]  # fmt: skip
    assert bm.value_mismatches(rows) == ["quick-2d smp:DiceLoss: 0.501, ours 0.5"]  # kornia: not marked exact
    text = bm.to_markdown(rows, {})
    assert "1 of 2 rows equal ours" in text
    assert "- quick-2d smp:DiceLoss: 0.501, ours 0.5" in text
    assert bm.value_mismatches(rows[:2]) == []


def test_bench_timed_steps_never_read_the_loss_back(monkeypatch):
    # only the first step's value is copied to the host: on CUDA a read per timed step adds a device-to-host copy
    reads = []
    real_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda self: reads.append(1) or real_float(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or real_float(self))
    out = bm.measure(TINY, SUM_CASE, repeats=4, warmup=2, device="cpu")
    assert len(out["ms_all"]) == 4
    assert len(reads) == 1
    assert out["value"] == pytest.approx(float(bm._inputs(TINY, "natural", "cpu")[0].detach().double().sum()), rel=1e-5)


def test_bench_isolate_library_shares_one_process_per_library(tmp_path, monkeypatch):
    # --isolate library: the references, ours and MONAI's cases of a workload each in one process; same rows
    pytest.importorskip("monai")
    started = []
    real = bm.subprocess.Popen

    def popen(command, **kwargs):
        if "--worker" in command:
            started.append(command[command.index("--worker") + 1 : command.index("--repeats")])
        return real(command, **kwargs)

    monkeypatch.setattr(bm.subprocess, "Popen", popen)
    results, paths, meta = bm.run_and_report(workloads="quick-bin", losses="dice,jaccard", repeats=1, device="cpu",
                                             out=tmp_path, rich=False, isolate="library", only="losses")  # fmt: skip
    cases = [c for c in bm.select_cases(["dice", "jaccard"]) if c.applies(bm.WORKLOADS["quick-bin"])]
    assert [r.case for r in results] == [c.id for c in cases]
    assert started[:3] == [
        ["quick-bin", "ref:ce", "ref:sum"],
        ["quick-bin", "seglosses:dice", "seglosses:jaccard"],
        ["quick-bin", "monai:DiceLoss", "monai:DiceLoss(jaccard)"],
    ]
    assert started[3:] == [["quick-bin", "smp:DiceLoss", "smp:JaccardLoss"]]  # (its row: unavailable if absent)
    ran = [r for r in results if r.library in ("reference", "seglosses", "monai")]
    assert all(r.status == "ok" and r.ms > 0 and r.peak_mib > 0 for r in ran), [r.error for r in ran]
    assert meta["isolate"] == "library"
    text = paths["md"].read_text()
    assert "the cases of one library on one workload in one fresh subprocess" in text
    assert "2 of 2 rows equal ours" in text
    with pytest.raises(ValueError, match="isolate must be one of case, library; got 'all'"):
        bm.run_benchmark([TINY], cases, isolate="all")


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_bench_shared_process_that_dies_costs_one_case(tmp_path, monkeypatch):
    # a worker that reports its first case and then dies (a crash): that case keeps its row, the next one is an
    # error with the worker's last stderr line, and the cases after it run in a new process
    fake = _fake_python(tmp_path, (
        'shift 4\necho "$@" >> ' + str(tmp_path / "calls") + "\n"
        "echo '" + bm._RESULT_MARK + '{"case": "\'"$1"\'", "status": "ok", "ms": 1.0, "ms_all": [1.0], '
        '"peak_bytes": 1024, "value": 0.5, "method": "fake"}\'\n'
        'echo "Segmentation fault in $2" >&2\nexit 139\n'
    ))  # fmt: skip
    monkeypatch.setattr(bm.sys, "executable", fake)
    cases = [bm._CASES_BY_ID[f"seglosses:{q}"] for q in ("dice", "jaccard", "tversky")]
    rows = bm._run_group(TINY, cases, repeats=1, warmup=1, threads=1, device="cpu", timeout=60)
    assert [(r.case, r.status) for r in rows] == [
        ("seglosses:dice", "ok"), ("seglosses:jaccard", "error"), ("seglosses:tversky", "ok")
    ]  # fmt: skip
    assert rows[1].error == "Segmentation fault in seglosses:jaccard"
    assert rows[0].peak_mib == pytest.approx(1024 / 2**20)
    calls = (tmp_path / "calls").read_text().split("\n")
    assert calls[0].startswith("seglosses:dice seglosses:jaccard seglosses:tversky --repeats")
    assert calls[1].startswith("seglosses:tversky --repeats")


def test_bench_shared_process_timeout_is_per_case(tmp_path, monkeypatch):
    # a worker that hangs: each case waits `timeout` seconds from the start (or the previous result), then the
    # process is killed and the next case gets a new one
    monkeypatch.setattr(bm.sys, "executable", _fake_python(tmp_path, "exec sleep 60\n"))
    cases = [bm._CASES_BY_ID[f"seglosses:{q}"] for q in ("dice", "jaccard")]
    began = time.monotonic()
    rows = bm._run_group(TINY, cases, repeats=1, warmup=1, threads=1, device="cpu", timeout=0.3)
    assert [(r.status, r.error) for r in rows] == [("timeout", "over 0 s")] * 2
    assert time.monotonic() - began < 30


def test_bench_cli_rejects_empty_lists_and_suggests_names(tmp_path):
    # an empty --workloads / --losses ran nothing (or only the references) and exited 0; misspelt names get a hint
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    runner = typer_testing.CliRunner()
    base = ["bench", "--quick", "--no-peers", "--out", str(tmp_path)]
    for args, message in [
        (["--workloads", ","], "no workload given; choose from 3d-2x4x96, "),
        (["--losses", ","], "no loss given; choose from dice, "),
        (["--losses", "dise"], "unknown loss 'dise' (did you mean 'dice'?); choose from dice, "),
        (["--workloads", "2d-8x4x255"], "unknown workload '2d-8x4x255' (did you mean '2d-8x4x256'?); choose from "),
        (["--only", "lossess"], "unknown group 'lossess' (did you mean 'losses'?); choose from losses, "),
        (["--isolate", "process"], "isolate must be one of case, library; got 'process'"),
    ]:
        result = runner.invoke(app, [*base, *args], env={"COLUMNS": "200"})
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert not (tmp_path / "results.json").exists()
    with pytest.raises(ValueError, match="timeout must be > 0 seconds; got 0"):
        bm.run_benchmark([TINY], [SUM_CASE], timeout=0)
