"""Audit of what ``seglosses compare`` writes and draws: the CSV files, the plots' data, user text in the renderers.

Expected numbers come from NumPy float64 on fixed per-run values written here (no training). The plots are checked
through the arrays handed to matplotlib (a spy on ``Axes`` methods), never against our own earlier output.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("rich")
pytest.importorskip("matplotlib")

import matplotlib.axes  # noqa: E402

from seglosses.cli.data import SegData  # noqa: E402
from seglosses.cli.report import (  # noqa: E402
    plot_forest,
    plot_per_class,
    plot_per_image,
    plot_predictions,
    rich_table,
    write_report,
)
from seglosses.cli.results import METRICS, ResultsTable, RunResult  # noqa: E402

VOC = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def _run(loss: str, seed: int, per_image: list[float], per_class: dict[str, float], status: str = "ok") -> RunResult:
    metrics = {m: {"mean": float(np.mean(per_image)), **per_class} for m in METRICS}
    history = [{"epoch": 1.0, "train_loss": 0.5, "val_dice": float(np.mean(per_image))}]
    per = {m: list(per_image) for m in METRICS}
    return RunResult(loss, seed, metrics, history, status, 1.0, per_image=per)


def _failed(loss: str, seed: int, message: str = "error: RuntimeError: boom") -> RunResult:
    return RunResult(loss, seed, {}, [], message, 0.0)


def _data(classes: list[str], masks: list[torch.Tensor], ignore_index: int | None = None) -> SegData:
    images = [torch.rand((1, *m.shape), generator=torch.Generator().manual_seed(i)) for i, m in enumerate(masks)]
    clean = [m if ignore_index is None else torch.where(m == ignore_index, 0, m) for m in masks]
    mode = "binary" if len(classes) == 2 else "multiclass"
    data = SegData.from_tensors(
        name="fixed",
        mode=mode,
        class_names=classes,
        ndim=masks[0].ndim,
        train_images=images,
        train_masks=clean,
        val_images=images,
        val_masks=masks,
        crop=tuple(masks[0].shape),
    )
    data.ignore_index = ignore_index
    return data


class _Spy:
    """Records the calls of some ``matplotlib.axes.Axes`` methods (the arrays a plot hands to matplotlib)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
        self.calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {n: [] for n in names}
        for name in names:
            original = getattr(matplotlib.axes.Axes, name)

            def spy(ax: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                self.calls[_name].append((args, kwargs))
                return _original(ax, *args, **kwargs)

            monkeypatch.setattr(matplotlib.axes.Axes, name, spy)


# ------------------------------------------------------------------------------------------------ user text


def test_report_takes_dollar_signs_in_names_literally(tmp_path):
    # matplotlib reads $...$ as mathtext: a loss, class or folder name with "$\frac$" made the report raise
    # ValueError (ParseSyntaxException) after every run had trained.
    classes = ["background", "a$\\frac$", "b$x^$"]
    rng = np.random.default_rng(0)
    runs = [
        _run(name, s, rng.random(2).tolist(), dict.fromkeys(classes, 0.5))
        for name in ("mine$\\frac$", "dice")
        for s in range(2)
    ]
    table = ResultsTable(runs=runs, class_names=classes, mode="multiclass", data="/data/$\\alpha", val_images=2)
    masks = [torch.zeros(8, 8, dtype=torch.int64), torch.ones(8, 8, dtype=torch.int64)]
    files = write_report(table, _data(classes, masks), tmp_path)
    assert "mine$\\frac$" in files["report.html"].read_text()


@pytest.mark.parametrize("name", ["dice[/]", "tversky[alpha=0.3]", "mine[bold]x[/bold]"])
def test_rich_table_shows_loss_and_class_names_verbatim(name):
    from rich.console import Console

    classes = ["background", "[/]one", "two"]
    runs = [_run(n, 0, [0.4, 0.6], dict.fromkeys(classes, 0.5)) for n in (name, "dice")]
    table = ResultsTable(runs=runs, class_names=classes, mode="multiclass", data="d", val_images=2)
    console = Console(record=True, width=300)
    console.print(rich_table(table))
    text = console.export_text()
    assert name in text
    assert "dice_[/]one" in text


# ------------------------------------------------------------------------------------------------ CSV files


def test_per_image_csv_values_and_failed_runs(tmp_path):
    per_image = {("a", 0): [0.81, 0.62, 0.9], ("a", 1): [0.79, 0.66, 0.88], ("b", 0): [0.5, 0.25, 0.125]}
    runs = [_run(loss, seed, v, {"fg": 0.5}) for (loss, seed), v in per_image.items()]
    runs.append(_failed("b", 1))
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=3)
    rows = list(csv.DictReader(table.per_image_to_csv(tmp_path / "per_image.csv").open()))
    assert len(rows) == 4 * 3
    for row in rows:
        key = (row["loss"], int(row["seed"]))
        for metric in METRICS:
            value = float(row[metric])
            if key == ("b", 1):  # the failed run has no per-image values: NaN, as in results.csv, never 0
                assert math.isnan(value), (metric, row)
            else:
                expected = np.float64(per_image[key][int(row["image"])])
                assert value == pytest.approx(expected, rel=1e-6)
        assert math.isnan(float(row["hd95"]))  # no hd95 recorded by these runs
    # the ranking still counts the failed run 0 on every image (documented)
    scores = {s.loss: s.mean["score"] for s in table.summary()}
    assert scores["b"] == pytest.approx(np.mean([0.5, 0.25, 0.125, 0.0, 0.0, 0.0]), abs=1e-12)


def test_summary_csv_equals_numpy_with_a_failed_and_a_diverged_run(tmp_path):
    cls = {"a": [0.7, 0.8, 0.75], "b": [0.6, math.nan, 0.5]}  # per-class value of "fg" per seed
    images = {"a": [[0.7, 0.9], [0.8, 0.6], [0.5, 0.7]], "b": [[0.4, 0.6], [0.0, 0.0], [0.3, 0.5]]}
    runs = []
    for loss in ("a", "b"):
        for seed in range(3):
            if loss == "b" and seed == 1:
                runs.append(_failed("b", 1))
                continue
            status = "diverged" if (loss, seed) == ("b", 2) else "ok"
            runs.append(_run(loss, seed, images[loss][seed], {"fg": cls[loss][seed]}, status))
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=2)
    rows = {r["loss"]: r for r in csv.DictReader(table.summary_to_csv(tmp_path / "summary.csv").open())}
    assert [rows["a"]["rank"], rows["b"]["rank"]] == ["1", "2"]
    assert (rows["b"]["seeds"], rows["b"]["failed"]) == ("3", "1")  # diverged is evaluated, not failed
    for loss in ("a", "b"):
        per_seed = np.array(images[loss], dtype=np.float64).mean(axis=1)  # the failed seed counts 0
        assert float(rows[loss]["score"]) == pytest.approx(per_seed.mean(), rel=1e-5)
        assert float(rows[loss]["score_std"]) == pytest.approx(per_seed.std(ddof=1), rel=1e-5)
        fg = np.array([v for v in cls[loss] if not math.isnan(v)])  # the failed run has no pooled value
        assert float(rows[loss]["dice_fg"]) == pytest.approx(fg.mean(), rel=1e-5)
        assert float(rows[loss]["dice_fg_std"]) == pytest.approx(fg.std(ddof=1), rel=1e-5)
        assert math.isnan(float(rows[loss]["hd95_mean"]))


# ------------------------------------------------------------------------------------------------ plots


def _table_three_losses() -> tuple[ResultsTable, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    values = {
        "a": rng.uniform(0.6, 0.9, (3, 5)),
        "b": rng.uniform(0.55, 0.9, (3, 5)),
        "c": rng.uniform(0.1, 0.4, (3, 5)),
    }
    runs = [_run(loss, s, v[s].tolist(), {"fg": 0.5}) for loss, v in values.items() for s in range(3)]
    return ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=5), values


def _reference_bootstrap(d: np.ndarray) -> tuple[float, float, float]:
    idx = np.random.default_rng(0).integers(0, d.size, size=(10_000, d.size))
    low, high = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return float(d.mean()), float(min(low, d.mean())), float(max(high, d.mean()))


def test_forest_plot_draws_the_numpy_differences_and_intervals(tmp_path, monkeypatch):
    table, values = _table_three_losses()
    spy = _Spy(monkeypatch, "plot")
    plot_forest(table, tmp_path / "forest.png")
    lines = [np.asarray(args[0], dtype=np.float64) for args, _ in spy.calls["plot"] if len(args) >= 2]
    points = [x for x in lines if x.size == 1]
    intervals = [x for x in lines if x.size == 2]
    best = values["a"] if values["a"].mean() > values["b"].mean() else values["b"]
    others = sorted((k for k in values if values[k] is not best), key=lambda k: -values[k].mean())
    expected = [_reference_bootstrap((best - values[k]).ravel()) for k in others]
    assert [float(p[0]) for p in points] == pytest.approx([e[0] for e in expected], abs=1e-12)
    assert [tuple(i) for i in intervals] == [pytest.approx(e[1:], abs=1e-12) for e in expected]


def test_per_image_scatter_draws_best_against_runner_up(tmp_path, monkeypatch):
    table, values = _table_three_losses()
    spy = _Spy(monkeypatch, "scatter")
    plot_per_image(table, tmp_path / "per_image.png")
    means = {k: v.mean() for k, v in values.items()}
    best, runner = sorted(means, key=lambda k: -means[k])[:2]
    assert len(spy.calls["scatter"]) == 3  # one per seed
    for seed, (args, _) in enumerate(spy.calls["scatter"]):
        np.testing.assert_array_equal(np.asarray(args[0]), values[runner][seed])
        np.testing.assert_array_equal(np.asarray(args[1]), values[best][seed])


def test_per_class_plot_with_21_classes_is_readable_and_shows_the_means(tmp_path, monkeypatch):
    # Pascal VOC's 21 classes x 5 losses drew 105 bars in a 6600 px wide figure, class colours repeating every 10.
    rng = np.random.default_rng(2)
    dice = {f"loss{k}": rng.uniform(0, 1, (2, 21)) for k in range(5)}
    runs = [
        _run(loss, s, [0.5], dict(zip(VOC, v[s].tolist(), strict=True))) for loss, v in dice.items() for s in (0, 1)
    ]
    table = ResultsTable(runs=runs, class_names=VOC, mode="multiclass", data="voc", val_images=1)
    spy = _Spy(monkeypatch, "imshow", "bar")
    path = plot_per_class(table, tmp_path / "per_class.png")
    from PIL import Image

    width, height = Image.open(path).size
    assert width <= 2000, (width, height)
    assert not spy.calls["bar"]
    (args, _), *_ = spy.calls["imshow"]
    shown = np.ma.getdata(args[0])
    order = [s.loss for s in table.summary()]
    expected = np.stack([dice[loss].mean(axis=0) for loss in order])  # rows: losses best first, columns: classes
    np.testing.assert_allclose(shown, expected, rtol=0, atol=1e-12)


def _overlay_colours(spy: _Spy) -> list[np.ndarray]:
    """The RGBA colour of every pixel of each overlay drawn by ``imshow`` (cmap + vmin/vmax), in drawing order."""
    import matplotlib.colors

    out = []
    for args, kwargs in spy.calls["imshow"]:
        cmap = kwargs.get("cmap")
        if not isinstance(cmap, matplotlib.colors.Colormap) or "vmax" not in kwargs:
            continue
        norm = matplotlib.colors.Normalize(kwargs["vmin"], kwargs["vmax"])
        out.append(cmap(norm(np.asarray(args[0], dtype=np.float64))))
    return out


def test_predictions_grid_gives_each_of_21_classes_its_own_colour(tmp_path, monkeypatch):
    # Every class >= 4 was drawn in class 4's yellow (a 5-colour map clipped at vmax=4).
    mask = torch.arange(21).repeat_interleave(3).reshape(7, 9)
    mask[0, 0] = 255  # an ignored pixel
    data = _data(VOC, [mask], ignore_index=255)
    table = ResultsTable(runs=[_run("dice", 0, [0.5], {})], class_names=VOC, mode="multiclass", data="voc")
    spy = _Spy(monkeypatch, "imshow")
    plot_predictions(table, data, tmp_path / "runs", tmp_path / "predictions.png")
    truth_colours = _overlay_colours(spy)[0]
    truth = np.where(mask.numpy() == 255, 0, mask.numpy())
    colours = {int(c): tuple(truth_colours[truth == c][0]) for c in range(21)}
    assert colours[0][3] == 0  # background transparent
    assert len(set(colours.values())) == 21
    for c in range(1, 21):
        assert np.all(truth_colours[truth == c] == colours[c])


def test_predictions_grid_says_when_a_run_left_no_prediction(tmp_path, monkeypatch):
    # A failed run (no saved prediction) was drawn as an empty prediction, as if the model had found nothing.
    mask = torch.zeros(6, 6, dtype=torch.int64)
    mask[2:4, 2:4] = 1
    runs = [_run("dice", 0, [0.9], {"fg": 0.9}), _failed("focal", 0, "error: ValueError: <bad>")]
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=1)
    (tmp_path / "runs").mkdir()
    np.savez(tmp_path / "runs" / "dice__seed0.npz", pred0=mask.numpy().astype(np.uint8))
    spy = _Spy(monkeypatch, "text", "imshow")
    plot_predictions(table, _data(["background", "fg"], [mask]), tmp_path / "runs", tmp_path / "predictions.png")
    texts = [str(args[2]) for args, _ in spy.calls["text"]]
    assert any("no prediction" in t and "ValueError" in t for t in texts), texts
    assert len(_overlay_colours(spy)) == 2  # ground truth and dice only: no made-up overlay for focal


def test_predictions_grid_of_a_volume_with_ignored_voxels_and_one_image(tmp_path, monkeypatch):
    mask = torch.zeros(5, 6, 7, dtype=torch.int64)
    mask[2, 1:4, 2:5] = 1
    mask[:, 0, :] = 255
    data = _data(["background", "fg"], [mask], ignore_index=255)
    table = ResultsTable(runs=[_run("dice", 0, [0.5], {"fg": 0.5})], class_names=["fg"], mode="binary", data="v")
    spy = _Spy(monkeypatch, "imshow")
    plot_predictions(table, data, tmp_path / "runs", tmp_path / "predictions.png")
    overlays = [np.asarray(a[0]) for a, k in spy.calls["imshow"] if "vmax" in k and not isinstance(k["cmap"], str)]
    np.testing.assert_array_equal(overlays[0], np.where(mask[2].numpy() == 255, 0, mask[2].numpy()))
    white = [a[0] for a, k in spy.calls["imshow"] if isinstance(a[0], np.ma.MaskedArray)]
    assert len(white) == 1  # the ignored row, white on the ground truth panel only
    np.testing.assert_array_equal(~np.ma.getmaskarray(white[0]), mask[2].numpy() == 255)


@pytest.mark.parametrize("style", [None, "ggplot"])
def test_report_with_long_names_keeps_every_label_inside_its_figure(tmp_path, monkeypatch, style):
    # A 300-character loss or folder name pushed titles, tick labels and legends out of the saved PNGs (cut off), and
    # the forest plot's axis label overflowed its 7-inch figure even with short names. "ggplot": a style set globally
    # before (optuna's plots call plt.style.use("ggplot"); in the suite this test failed after the tune tests)
    import matplotlib

    monkeypatch.setattr(matplotlib, "rcParams", matplotlib.rcParams.copy())  # the style below stays in this test
    if style is not None:
        matplotlib.style.use(style)
    long = "x" * 300
    runs = [_run(n, s, [0.4 + 0.1 * s, 0.6], {"fg": 0.5}) for n in (long, "dice", "focal") for s in (0, 1)]
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d" * 300, val_images=2)
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    original = plt.Figure.savefig

    def keep(fig: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(fig, *args, **kwargs)
        tight = fig.get_tightbbox(fig.canvas.get_renderer())  # every artist drawn, in inches
        figures.append((fig.axes[0].get_title(), tight, fig.bbox_inches))
        return out

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    masks = [torch.zeros(6, 6, dtype=torch.int64), torch.ones(6, 6, dtype=torch.int64)]
    files = write_report(table, _data(["background", "fg"], masks), tmp_path)
    assert long in files["report.html"].read_text()  # the page keeps the whole name
    assert len(figures) == 5
    for title, tight, box in figures:
        assert tight.x0 >= box.x0 - 0.05, (title, tight, box)
        assert tight.x1 <= box.x1 + 0.05, (title, tight, box)
        assert tight.y0 >= box.y0 - 0.05, (title, tight, box)
        assert tight.y1 <= box.y1 + 0.05, (title, tight, box)


def test_forest_and_scatter_say_why_without_per_image_values(tmp_path, monkeypatch):
    # Results of an older version (no per-image values) with two losses: not "only one candidate".
    runs = [RunResult(n, 0, {"dice": {"mean": v}}, [], "ok", 1.0) for n, v in (("a", 0.8), ("b", 0.7))]
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=0)
    spy = _Spy(monkeypatch, "text", "set_title")
    plot_forest(table, tmp_path / "f.png")
    plot_per_image(table, tmp_path / "s.png")
    said = " ".join(str(a[-1]) for calls in spy.calls.values() for a, _ in calls)
    assert "only one candidate" not in said
    assert "no per-image values" in said


@pytest.mark.parametrize("path", [Path("results.csv"), Path("summary.csv")])
def test_csv_keeps_nan_and_inf_readable(tmp_path, path):
    runs = [_run("a", 0, [0.5], {"fg": math.inf}), _run("b", 0, [0.4], {"fg": math.nan})]
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=1)
    writer = table.to_csv if path.name == "results.csv" else table.summary_to_csv
    rows = list(csv.DictReader(writer(tmp_path / path).open()))
    values = {r["loss"]: float(r["dice_fg"]) for r in rows}
    assert values["a"] == math.inf
    assert math.isnan(values["b"])


def test_terminal_table_with_one_image_and_one_seed_prints_no_nan_interval():
    from rich.console import Console

    runs = [_run("a", 0, [0.75], {"fg": 0.7}), _run("b", 0, [0.5], {"fg": 0.5})]
    table = ResultsTable(runs=runs, class_names=["fg"], mode="binary", data="d", val_images=1)
    console = Console(record=True, width=250)
    console.print(rich_table(table))
    text = console.export_text()
    assert "no clear winner (difference 0.250, no interval from a single (image, seed) pair)" in text
    assert "nan" not in text
