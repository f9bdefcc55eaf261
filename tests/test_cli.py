"""End-to-end tests of ``seglosses compare`` / ``seglosses tune`` on tiny synthetic settings (seconds each)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("typer")
pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

from typer.testing import CliRunner  # noqa: E402

import seglosses  # noqa: E402
from seglosses.cli import compare as compare_module  # noqa: E402
from seglosses.cli.app import app  # noqa: E402
from seglosses.cli.compare import ResultsTable, TrainConfig, parse_loss_args  # noqa: E402
from seglosses.cli.data import DataError, load_data  # noqa: E402
from seglosses.cli.report import REPORT_FILES, rich_table  # noqa: E402
from seglosses.cli.tune import TUNE_FILES, tune  # noqa: E402
from seglosses.registry import SEARCH_SPACES, available_losses, get_loss, search_space  # noqa: E402

# A schedule of a few seconds per run that still learns on synthetic:binary (Dice about 0.8 after 40 steps).
TINY = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=4, base=8, depth=3)
LEARNS = TrainConfig(epochs=4, steps_per_epoch=10, batch_size=8, base=8, depth=3)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # conftest.one_thread: one intra-op thread
    return


@pytest.fixture(scope="module")
def binary_data():
    return load_data("synthetic:binary")


def _no_training(*args, **kwargs):
    raise AssertionError("training started")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()


# ------------------------------------------------------------------------------------------------- compare


def test_compare_writes_every_file_and_resumes(tmp_path, binary_data, monkeypatch):
    out = tmp_path / "cmp"
    table = seglosses.compare(
        ["dice", "focal"], data=binary_data, seeds=2, config=TINY, out=out, progress=False, log=lambda _: None
    )
    assert isinstance(table, ResultsTable)
    assert [(r.loss, r.seed) for r in table.runs] == [("dice", 0), ("dice", 1), ("focal", 0), ("focal", 1)]
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    rows = _read_csv(out / "results.csv")
    assert [(r["loss"], r["seed"]) for r in rows] == [("dice", "0"), ("dice", "1"), ("focal", "0"), ("focal", "1")]
    for r in rows:
        for metric in ("dice", "iou", "precision", "recall"):
            assert f"{metric}_mean" in r
            assert f"{metric}_blob" in r
        assert float(r["hd95_mean"]) >= 0
        assert 0 <= float(r["nsd_mean"]) <= 1
    per_image = _read_csv(out / "per_image.csv")
    assert len(per_image) == 4 * binary_data.num_val
    assert set(per_image[0]) == {"loss", "seed", "image", "dice", "iou", "precision", "recall", "hd95", "nsd"}
    summary = _read_csv(out / "summary.csv")
    assert sorted(r["loss"] for r in summary) == ["dice", "focal"]
    assert {"dice_mean", "dice_mean_std", "iou_blob", "recall_blob_std"} <= set(summary[0])
    results = json.loads((out / "results.json").read_text())
    assert results["recommendation"]["best"] in ("dice", "focal")
    assert len(results["runs"]) == 4
    assert all(r["status"] == "ok" for r in results["runs"])
    for name in ("curves.png", "per_class.png", "predictions.png"):
        _assert_png(out / name)
    html = (out / "report.html").read_text()
    assert html.count("<img") == 5  # curves, per class, forest, per-image scatter, predictions
    assert table.recommendation().best in html
    for loss in ("dice", "focal"):
        for seed in (0, 1):
            assert json.loads((out / "runs" / f"{loss}__seed{seed}.json").read_text())["fingerprint"]
    # The terminal table: one row per loss with mean ± std.
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(rich_table(table))
    text = console.export_text()
    assert "dice" in text
    assert "±" in text

    # Same command again: every run is skipped, nothing trains, the same numbers come back.
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    messages: list[str] = []
    again = seglosses.compare(
        ["dice", "focal"], data=binary_data, seeds=2, config=TINY, out=out, progress=False, log=messages.append
    )
    assert any("4 finished run(s) skipped, 0 to run" in m for m in messages)
    assert [r.metrics for r in again.runs] == [r.metrics for r in table.runs]

    # One run file lost (or a run interrupted): only that run trains again.
    (out / "runs" / "focal__seed1.json").unlink()
    monkeypatch.undo()
    calls: list[int] = []
    real = compare_module.train_run

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "train_run", counting)
    seglosses.compare(["dice", "focal"], data=binary_data, seeds=2, config=TINY, out=out, progress=False, log=print)
    assert len(calls) == 1


def test_compare_changed_settings_retrain(tmp_path, binary_data, monkeypatch):
    out = tmp_path / "cmp"
    seglosses.compare(["tversky"], data=binary_data, seeds=1, config=TINY, out=out, progress=False, report=False)
    calls: list[int] = []
    real = compare_module.train_run

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "train_run", counting)
    table = seglosses.compare(
        ["tversky"],
        data=binary_data,
        seeds=1,
        config=TINY,
        out=out,
        progress=False,
        report=False,
        loss_args={"tversky": {"alpha": 0.2, "beta": 0.8}},
    )
    assert calls == [1]
    assert table.runs[0].loss_args == {"alpha": 0.2, "beta": 0.8}


def test_compare_constant_loss_ranks_last(tmp_path, binary_data):
    def constant(mode: str) -> torch.nn.Module:
        class Constant(torch.nn.Module):
            def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                return torch.tensor(1.0)

        return Constant()

    table = seglosses.compare(
        ["constant", "dice", "dice_ce"],
        data=binary_data,
        seeds=1,
        config=LEARNS,
        out=None,
        progress=False,
        extra_losses={"constant": constant},
        log=lambda _: None,
    )
    ranked = [s.loss for s in table.summary()]
    assert ranked[-1] == "constant"
    assert table.recommendation().best in ("dice", "dice_ce")
    scores = {s.loss: s.mean["score"] for s in table.summary()}
    assert scores["constant"] < min(scores["dice"], scores["dice_ce"]) - 0.2


def test_compare_failing_loss_is_recorded_and_ranks_last(tmp_path, binary_data):
    def broken(mode: str) -> torch.nn.Module:
        class Broken(torch.nn.Module):
            def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                raise RuntimeError("boom")

        return Broken()

    table = seglosses.compare(
        ["broken", "dice"],
        data=binary_data,
        seeds=1,
        config=TINY,
        out=tmp_path / "cmp",
        progress=False,
        extra_losses={"broken": broken},
        log=lambda _: None,
    )
    assert table.runs[0].status == "error: RuntimeError: boom"
    assert [s.loss for s in table.summary()] == ["dice", "broken"]
    assert "boom" in (tmp_path / "cmp" / "report.html").read_text()


def test_compare_cli_runs_and_prints(tmp_path):
    out = tmp_path / "cli"
    args = ["compare", "--data", "synthetic:binary", "--losses", "dice,tversky", "--seeds", "1", "--epochs", "1"]
    args += ["--quick", "--device", "cpu", "--no-progress", "--threads", "1", "--out", str(out)]
    args += ["--loss-arg", "tversky.alpha=0.2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Best:" in result.output
    assert "report.html" in result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["loss_args"] for r in runs] == [{}, {"alpha": 0.2}]
    # not a terminal (a log, CI): every number of the table is printed whole, not cut to fit 80 columns
    summary = {row["loss"]: row for row in _read_csv(out / "summary.csv")}
    for loss in ("dice", "tversky"):
        line = next(x for x in result.output.splitlines() if f" {loss} " in x and "±" in x)
        assert f"{float(summary[loss]['dice_mean']):.3f} ± {float(summary[loss]['dice_mean_std']):.3f}" in line
    for name in REPORT_FILES:
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--losses", "dise"], "did you mean 'dice'"),
        (["--loss-arg", "tversky-alpha"], "--loss-arg must look like LOSS.NAME=VALUE"),
        (["--losses", "dice", "--loss-arg", "tversky.alpha=0.2"], "not among the losses compared"),
        (["--losses", "tversky", "--loss-arg", "tversky.alpha=-1"], "`alpha` must be >= 0"),
        (["--data", "synthetc"], "did you mean 'synthetic'"),
    ],
)
def test_compare_cli_bad_options(tmp_path, args, message, monkeypatch):
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    # the generated data unless the case is about --data: the option errors must not depend on whether the default
    # dataset's package is installed (a fresh CI machine does not have it)
    data = [] if "--data" in args else ["--data", "synthetic"]
    result = CliRunner().invoke(app, ["compare", "--out", str(tmp_path), "--no-progress", *data, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_parse_loss_args():
    parsed = parse_loss_args(["tversky.alpha=0.2", "tversky.beta=0.8", "lovasz.classes=all", "dice.squared=true"])
    assert parsed == {"tversky": {"alpha": 0.2, "beta": 0.8}, "lovasz": {"classes": "all"}, "dice": {"squared": True}}


# ------------------------------------------------------------------------------------------------- user data


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _png_folder(root: Path, n: int = 4, size: int = 24) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        mask[4 + i : 12 + i, 6:14] = 1
        image = (mask * 120 + rng.integers(0, 60, (size, size))).astype(np.uint8)
        _write_png(root / "images" / f"img{i}.png", image)
        _write_png(root / "masks" / f"img{i}.png", mask)
    return root


def _bad_unpaired(root: Path) -> str:
    _write_png(root / "images" / "extra.png", np.zeros((24, 24), np.uint8))
    return "extra.png: no mask with the same name"


def _bad_sizes(root: Path) -> str:
    _write_png(root / "masks" / "img2.png", np.zeros((16, 24), np.uint8))
    return "img2.png: image shape (24, 24) does not match its mask"


def _bad_values(root: Path) -> str:
    _write_png(root / "masks" / "img1.png", np.full((24, 24), 255, np.uint8))
    return (
        "img1.png: mask value 255 out of range: masks hold class indices 0..C-1 (a 0/255 mask? divide it by 255; or, "
        "if 255 marks pixels to ignore, --ignore-index 255)"
    )


def _bad_negative(root: Path) -> str:
    import tifffile

    (root / "images" / "img3.png").unlink()
    (root / "masks" / "img3.png").unlink()
    tifffile.imwrite(root / "images" / "img3.tif", np.zeros((24, 24), np.uint8))
    tifffile.imwrite(root / "masks" / "img3.tif", np.full((24, 24), -1, np.int16))
    return "img3.tif: mask value -1 out of range; class indices start at 0"


def _bad_fractional(root: Path) -> str:
    import tifffile

    (root / "masks" / "img0.png").unlink()
    tifffile.imwrite(root / "masks" / "img0.tif", np.full((24, 24), 0.5, np.float32))
    return "img0.tif: mask values must be integer class indices"


def _bad_unreadable(root: Path) -> str:
    (root / "masks" / "img1.png").write_bytes(b"not a png at all")
    return "img1.png: unreadable"


def _bad_empty(root: Path) -> str:
    for p in [*(root / "images").iterdir(), *(root / "masks").iterdir()]:
        p.unlink()
    return "images: no image files"


def _bad_no_masks_folder(root: Path) -> str:
    for p in (root / "masks").iterdir():
        p.unlink()
    (root / "masks").rmdir()
    return "masks: folder not found"


def _bad_nan_pixels(root: Path) -> str:
    import tifffile

    (root / "images" / "img2.png").unlink()
    image = np.zeros((24, 24), np.float32)
    image[3, 4] = np.nan
    image[5, 6] = np.inf
    image[7, 8] = np.nan
    tifffile.imwrite(root / "images" / "img2.tif", image)
    return "img2.tif: 3 non-finite pixel value(s) (NaN or Inf)"


def _bad_one_nan_pixel(root: Path) -> str:
    import tifffile

    (root / "images" / "img1.png").unlink()
    image = np.linspace(0, 1, 24 * 24, dtype=np.float32).reshape(24, 24)
    image[10, 11] = np.nan
    tifffile.imwrite(root / "images" / "img1.tif", image)
    return "img1.tif: 1 non-finite pixel value(s) (NaN or Inf) of 576"


def _bad_declared_classes(root: Path) -> str:
    _write_png(root / "masks" / "img3.png", np.full((24, 24), 2, np.uint8))
    return "img3.png: mask value 2 out of range [0, 2) (classes=2)"


def _bad_duplicate_name(root: Path) -> str:
    import tifffile

    tifffile.imwrite(root / "images" / "img2.tif", np.zeros((24, 24), np.uint8))
    return "img2.tif: two files named 'img2' in"


def _bad_truncated_png(root: Path) -> str:
    whole = (root / "images" / "img1.png").read_bytes()
    (root / "images" / "img1.png").write_bytes(whole[: len(whole) // 2])  # a valid header, half the pixels
    return "img1.png: unreadable"


def _bad_mixed_dims(root: Path) -> str:
    import tifffile

    for sub in ("images", "masks"):
        (root / sub / "img3.png").unlink()
        tifffile.imwrite(root / sub / "img3.tif", np.zeros((5, 24, 24), np.uint8))
    return "img3.tif: 3D with 1 channel(s), unlike the first pair (2D, 1)"


BAD_DATA = [
    ("duplicate-name", _bad_duplicate_name, ""),
    ("truncated-png", _bad_truncated_png, ""),
    ("mixed-2d-3d", _bad_mixed_dims, ""),
    ("unpaired", _bad_unpaired, ""),
    ("mismatched-size", _bad_sizes, ""),
    ("mask-255", _bad_values, ""),
    ("mask-negative", _bad_negative, ""),
    ("mask-fractional", _bad_fractional, ""),
    ("unreadable", _bad_unreadable, ""),
    ("empty", _bad_empty, ""),
    ("no-masks-folder", _bad_no_masks_folder, ""),
    ("out-of-declared-range", _bad_declared_classes, ":classes=2"),
    ("nan-pixels", _bad_nan_pixels, ""),
    ("one-nan-pixel", _bad_one_nan_pixel, ""),
]


@pytest.mark.parametrize(("kind", "spoil", "suffix"), BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_data_is_reported_before_training(tmp_path, kind, spoil, suffix, monkeypatch):
    root = _png_folder(tmp_path / "data")
    message = spoil(root)
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    with pytest.raises(DataError) as info:
        seglosses.compare(["dice"], data=str(root) + suffix, seeds=1, out=tmp_path / "out", progress=False)
    assert message in str(info.value)
    assert str(root) in str(info.value)  # the error names the file (full path)
    assert not (tmp_path / "out" / "runs").exists()


def test_bad_data_cli_exit_code(tmp_path, monkeypatch):
    root = _png_folder(tmp_path / "data")
    message = _bad_unpaired(root)
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    result = CliRunner().invoke(app, ["compare", "--data", str(root), "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2
    assert message in "".join(result.output.split("\n"))


def test_png_folder_trains(tmp_path):
    root = _png_folder(tmp_path / "data", n=5)
    data = load_data(str(root))
    assert (data.mode, data.num_classes, data.ndim) == ("binary", 2, 2)
    assert (data.num_train, data.num_val) == (4, 1)
    table = seglosses.compare(
        ["dice"], data=data, seeds=1, config=TINY, out=tmp_path / "o", progress=False, report=False
    )
    assert table.runs[0].status == "ok"


def _nifti_folder(root: Path, shapes: list[tuple[int, int, int]]) -> Path:
    nibabel = pytest.importorskip("nibabel")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate(shapes):
        mask = np.zeros((16, 16, 16), np.uint8)
        mask[4:10, 5:11, 3 + i : 9 + i] = 1
        mask[12:14, 2:14, 8] = 2
        image = (mask * 50 + rng.normal(0, 10, mask.shape)).astype(np.float32)
        affine = np.diag([0.8, 0.8, 2.0, 1.0])  # anisotropic voxels: the spacing comes from the header
        nibabel.save(nibabel.Nifti1Image(image, affine), root / "images" / f"case{i}.nii.gz")
        nibabel.save(
            nibabel.Nifti1Image(mask[: shape[0], : shape[1], : shape[2]], affine), root / "masks" / f"case{i}.nii.gz"
        )
    return root


def test_nifti_folder_trains_in_3d(tmp_path):
    root = _nifti_folder(tmp_path / "nii", [(16, 16, 16)] * 3)
    data = load_data(str(root))
    assert (data.mode, data.num_classes, data.ndim, data.crop) == ("multiclass", 3, 3, (16, 16, 16))
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=3)
    assert data.spacing == pytest.approx((0.8, 0.8, 2.0))
    table = seglosses.compare(["dice", "focal"], data=data, seeds=1, config=cfg, out=tmp_path / "o", progress=False)
    assert [r.status for r in table.runs] == ["ok", "ok"]
    assert (tmp_path / "o" / "predictions.png").is_file()
    # a multiclass run: every class reported, the "mean" over the foreground classes only (background excluded)
    assert table.class_names == ["background", "class 1", "class 2"]
    for run in table.runs:
        for metric in ("dice", "iou", "recall"):
            values = run.metrics[metric]
            foreground = np.array([values["class 1"], values["class 2"]], dtype=np.float64)
            expected = np.nanmean(foreground) if not np.isnan(foreground).all() else np.nan
            assert values["mean"] == pytest.approx(expected, abs=1e-12, nan_ok=True)
        assert len(run.per_image["dice"]) == data.num_val == 1


def test_nifti_mismatched_volume(tmp_path):
    root = _nifti_folder(tmp_path / "nii", [(16, 16, 16), (16, 16, 12), (16, 16, 16)])
    with pytest.raises(DataError, match=r"case1\.nii\.gz: image shape \(16, 16, 16\) does not match its mask"):
        load_data(str(root))


# ------------------------------------------------------------------------------------------------- tune


def test_tune_writes_every_file_and_resumes(tmp_path, binary_data, monkeypatch):
    out = tmp_path / "tune"
    result = tune(
        "tversky", trials=3, data=binary_data, out=out, config=TINY, confirm_seeds=0, progress=False, log=lambda _: None
    )
    for name in TUNE_FILES:
        assert (out / name).is_file(), name
    best = json.loads((out / "best_params.json").read_text())
    assert best["loss"] == "tversky"
    assert set(best["best_params"]) == {"alpha", "beta"}
    assert best["best_value"] == pytest.approx(result.best_value)
    assert len(best["trials"]) == 3
    rows = _read_csv(out / "trials.csv")
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["alpha"] == "0.3"  # trial 0 is the loss's defaults (the baseline)
    assert rows[0]["beta"] == "0.7"
    for name in ("history.png", "importance.png"):
        _assert_png(out / name)
    import sqlite3

    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 3

    # The same command again: the study is complete, nothing trains.
    monkeypatch.setattr(compare_module, "train_run", _no_training)
    again = tune(
        "tversky", trials=3, data=binary_data, out=out, config=TINY, confirm_seeds=0, progress=False, log=lambda _: None
    )
    assert len(again.trials) == 3
    # Asking for more trials runs only the missing one, with new parameters (the sampler is not replayed).
    monkeypatch.undo()
    more = tune(
        "tversky", trials=4, data=binary_data, out=out, config=TINY, confirm_seeds=0, progress=False, log=lambda _: None
    )
    assert [t["number"] for t in more.trials] == [0, 1, 2, 3]
    assert more.trials[3]["params"] not in [t["params"] for t in more.trials[:3]]


def test_tune_cli(tmp_path):
    out = tmp_path / "tune"
    args = ["tune", "--loss", "focal_tversky", "--trials", "2", "--data", "synthetic:binary", "--quick"]
    args += ["--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out), "--metric", "iou"]
    args += ["--confirm-seeds", "0"]  # the confirmation has tests of its own (test_tune_confirm.py)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best iou" in result.output
    assert json.loads((out / "best_params.json").read_text())["metric"] == "iou"
    for name in TUNE_FILES:
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "tverski"], "did you mean 'tversky'"),
        (["--loss", "tversky", "--metric", "f1"], "`metric` must be one of dice, iou, precision, recall"),
    ],
)
def test_tune_cli_bad_options(tmp_path, args, message):
    result = CliRunner().invoke(app, ["tune", "--out", str(tmp_path), "--data", "synthetic:binary", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


# Losses with an argument that has no default (a property of the task), and losses limited to some modes. Any other
# registry loss must build in both modes with its defaults: a new exception here is a failure, not a skip.
REQUIRED_ARGS = {"generalized_wasserstein_dice": {"dist_matrix": 1.0 - torch.eye(3)}}
ONLY_MODES = {"generalized_wasserstein_dice": ("multiclass",)}


@pytest.mark.parametrize("name", available_losses())
def test_search_space_values_build_the_loss(name):
    assert name in SEARCH_SPACES
    required = REQUIRED_ARGS.get(name, {})
    modes = ONLY_MODES.get(name, ("binary", "multiclass"))
    for mode in modes:
        get_loss(name, mode=mode, **required)
        for key, param in search_space(name, mode).items():
            if param.kind == "float":
                values = [param.low, param.high]
            elif param.kind == "bool":
                values = [False, True]
            else:
                values = list(param.choices)
            for value in values:
                get_loss(name, mode=mode, **required, **{key: value})
    for mode in sorted({"binary", "multiclass"} - set(modes)):
        with pytest.raises(ValueError, match="`mode` must be one of"):
            get_loss(name, mode=mode, **required)


# ------------------------------------------------------------------------------------------------- packaging


def test_import_seglosses_does_not_import_the_cli_stack_and_python_m_works():
    code = (
        "import sys, seglosses; "
        "print(sorted(m for m in ('typer', 'rich', 'matplotlib', 'optuna', 'seglosses.cli') if m in sys.modules)); "
        "sys.argv = ['seglosses', '--help']; "
        "import runpy; runpy.run_module('seglosses', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    first, _, rest = result.stdout.partition("\n")
    assert first == "[]"
    assert "compare" in rest
    assert "tune" in rest
    assert callable(seglosses.compare)
