"""Rendering of a :class:`~seglosses.cli.results.ResultsTable`: rich table, CSV, JSON, PNG plots, HTML page.

Imports :mod:`seglosses.cli.results` (never the orchestration in :mod:`seglosses.cli.compare`). matplotlib (Agg
backend) and rich are imported inside the functions.
"""

from __future__ import annotations

import base64
import functools
import html
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from seglosses.cli.results import LOADING_HINT_SHARE, LossSummary, ResultsTable, atomic_write

if TYPE_CHECKING:
    from seglosses.cli.data import SegData

__all__ = [
    "REPORT_FILES",
    "loading_line",
    "plot_curves",
    "plot_forest",
    "plot_per_class",
    "plot_per_image",
    "plot_predictions",
    "rich_table",
    "write_report",
]

PREVIEWS = 2  # validation images shown in the predictions grid (the runs keep this many predictions)
#: Names longer than this are cut (with an ellipsis) in the plots; the HTML page and the CSV/JSON files keep them whole.
LABEL_CHARS = 40
#: Up to this many classes the per-class plot draws grouped bars (one colour each); beyond, a losses x classes heatmap.
PER_CLASS_BARS = 10
REPORT_FILES: tuple[str, ...] = (
    "results.csv",
    "summary.csv",
    "per_image.csv",
    "results.json",
    "curves.png",
    "per_class.png",
    "forest.png",
    "per_image.png",
    "predictions.png",
    "report.html",
)


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f}"


def loading_line(table: ResultsTable, *, workers: str = "more loader workers") -> str | None:
    """One line on the data loading: the share of the training steps' time spent waiting for the next batch.

    ``"data loading: 3% of the training steps' time"`` (summed over the runs that recorded it:
    :meth:`~seglosses.cli.results.ResultsTable.data_loading`); above :data:`~seglosses.cli.results.LOADING_HINT_SHARE`
    it adds that the model waited for data and that ``workers`` (how to get more loader workers where the table is
    shown) would keep it busy. ``None`` when no run recorded its timings (results of an older version).
    """
    wait, train, share = table.data_loading()
    if not math.isfinite(share):
        return None
    line = f"data loading: {share:.0%} of the training steps' time ({wait:.1f} s of {train:.1f} s)"
    if share > LOADING_HINT_SHARE:
        line += f"; the model waited for data: {workers} would keep it busy"
    return line


def rich_table(table: ResultsTable, *, workers: str = "more loader workers (--num-workers)") -> Any:
    """A ``rich.table.Table``: one row per loss (best first), mean ± std over seeds of mean and per-class values.

    The terminal table of ``seglosses compare``: its caption holds the verdict and the data-loading line
    (:func:`loading_line`, whose hint names ``workers``: by default the command line's option).
    """
    from rich.markup import escape
    from rich.table import Table

    rec = table.recommendation()
    verdict = (
        f"{rec.best} is a clear winner over {rec.runner_up}"
        if rec.clear
        else ("no clear winner" if rec.runner_up is not None else "one candidate")
    )
    if rec.runner_up is not None and math.isnan(rec.ci_low):
        verdict += f" (difference {rec.difference:.3f}, no interval from a single (image, seed) pair)"
    elif rec.runner_up is not None:
        verdict += f" (difference {rec.difference:.3f}, 95% CI [{rec.ci_low:.3f}, {rec.ci_high:.3f}])"
    caption = escape(f"{verdict}; rank by the per-image {table.metric}")
    loading = loading_line(table, workers=workers)
    if loading is not None:
        caption += f"\n{escape(loading)}"
    out = Table(
        title=escape(f"{table.data}: validation metrics (mean ± std over seeds)"),
        caption=caption,
        show_lines=False,
    )
    out.add_column("#", justify="right")
    out.add_column("loss", style="bold", no_wrap=True)
    out.add_column(f"per-image {table.metric}", justify="right")
    for metric in ("dice", "iou", "precision", "recall"):
        out.add_column(f"{metric} (mean)", justify="right")
    summary = table.summary()
    surface = _surface_columns(summary)
    for col in surface:
        out.add_column(col.removesuffix("_mean").upper(), justify="right")
    per_class = [f"dice_{c}" for c in table.class_names] if len(table.class_names) > 1 else []
    for col in per_class:
        out.add_column(escape(col), justify="right")
    out.add_column("seeds", justify="right")
    for rank, s in enumerate(summary, 1):
        cells = [_fmt(s.mean["score"], s.std["score"])]
        cells += [_fmt(s.mean[f"{m}_mean"], s.std[f"{m}_mean"]) for m in ("dice", "iou", "precision", "recall")]
        cells += [_fmt(s.mean[c], s.std[c]) for c in surface]
        cells += [_fmt(s.mean[c], s.std[c]) for c in per_class]
        seeds = f"{s.seeds}" + (f" ({s.failed} failed)" if s.failed else "")
        out.add_row(str(rank), escape(s.loss), *cells, seeds)
    return out


def _surface_columns(summary: list[LossSummary]) -> list[str]:
    """``hd95_mean`` and ``nsd_mean`` where some loss has a value (results of older versions have none)."""
    return [c for c in ("hd95_mean", "nsd_mean") if any(math.isfinite(s.mean.get(c, math.nan)) for s in summary)]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _literal_text(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a plot with every text drawn as written (``text.parse_math`` off).

    Loss, class and folder names are user text, and matplotlib would read ``$...$`` in them as mathtext: rendered
    as a formula, or a ``ValueError`` for one it cannot parse (after every run had trained).
    """

    @functools.wraps(function)
    def plot(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return function(*args, **kwargs)

    return plot


def _save(plt: Any, fig: Any, path: Path, dpi: int = 100) -> Path:
    """Lay out (two passes: the first can move a long rotated label that the second then fits), save and close."""
    fig.tight_layout()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (a long name would push the plot out of its figure)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@_literal_text
def plot_curves(table: ResultsTable, path: Path) -> Path:
    """Validation mean Dice per epoch, one line per loss (mean over seeds, band = min..max)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for loss in table.losses:
        curves = [[h["val_dice"] for h in r.history] for r in table.runs if r.loss == loss and r.history]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        arr = np.array([c[:length] for c in curves], dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0)
        epochs = np.arange(1, length + 1)
        line = ax.plot(epochs, arr.mean(0), marker="o", ms=3, label=_short(loss))[0]
        if arr.shape[0] > 1:
            ax.fill_between(epochs, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation Dice (mean over foreground classes)")
    ax.set_title(f"{_short(table.data)}\nvalidation curves (band: range over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no line when every run failed
        ax.legend(fontsize=8, ncol=2)
    return _save(plt, fig, path)


@_literal_text
def plot_per_class(table: ResultsTable, path: Path) -> Path:
    """Dice per class for each loss (best loss first), mean over seeds.

    Up to :data:`PER_CLASS_BARS` classes: grouped bars, one colour per class, error bars = std over seeds. More
    classes (21 for Pascal VOC) would repeat the colours and need a figure metres wide: a heatmap then, one row per
    loss and one column per class, each cell printed with its mean (the std over seeds is in ``summary.csv``).
    """
    plt = _plt()
    summary = table.summary()
    classes = table.class_names
    if len(classes) > PER_CLASS_BARS:
        means = np.array([[s.mean[f"dice_{c}"] for c in classes] for s in summary], dtype=np.float64)
        fig, ax = plt.subplots(figsize=(min(18.0, 3.5 + 0.5 * len(classes)), 1.8 + 0.35 * len(summary)))
        image = ax.imshow(np.ma.masked_invalid(means), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        for (row, col), value in np.ndenumerate(means):
            text = f"{value:.2f}" if math.isfinite(value) else "-"
            colour = "black" if math.isfinite(value) and value > 0.6 else "white"
            ax.text(col, row, text, ha="center", va="center", fontsize=6, color=colour)
        ax.set_xticks(range(len(classes)), [_short(c, 20) for c in classes], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(summary)), [_short(s.loss) for s in summary], fontsize=8)
        fig.colorbar(image, ax=ax, label="validation Dice", fraction=0.03)
        ax.set_title("Dice per class (mean over seeds; best loss on top; std in summary.csv)", fontsize=10)
    else:
        width = 0.8 / max(1, len(classes))
        fig, ax = plt.subplots(figsize=(min(20.0, max(6.0, 1.2 * len(summary) * max(1, len(classes)) / 2 + 3)), 4.2))
        x = np.arange(len(summary))
        for i, c in enumerate(classes):
            means_c = [np.nan_to_num(s.mean[f"dice_{c}"]) for s in summary]
            stds = [np.nan_to_num(s.std[f"dice_{c}"]) for s in summary]
            offset = (i - (len(classes) - 1) / 2) * width
            ax.bar(x + offset, means_c, width, yerr=stds, capsize=3, label=_short(c, 20))
        ax.set_xticks(x, [_short(s.loss) for s in summary], rotation=20, ha="right", rotation_mode="anchor")
        ax.set_ylabel("validation Dice")
        ax.set_ylim(0, 1)
        ax.set_title("Dice per class\n(best loss first; error bars: std over seeds)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def _no_comparison(table: ResultsTable) -> str:
    """Why there is no paired comparison: one candidate, or no per-image values (results of an older version)."""
    return "only one candidate: nothing to compare" if len(table.losses) < 2 else "no per-image values: no comparison"


@_literal_text
def plot_forest(table: ResultsTable, path: Path) -> Path:
    """Forest plot: the paired difference (best - other) of every other loss, with its 95 % bootstrap interval.

    An interval entirely right of the dashed line at 0 means the best loss is clearly ahead of that one. A loss with
    failed runs (each counted 0 on every image) says how many in its label.
    """
    plt = _plt()
    comparisons = table.comparisons()
    summary = table.summary()
    best = summary[0].loss
    failed = {s.loss: f" ({s.failed}/{s.seeds} runs failed)" if s.failed else "" for s in summary}
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.45 * max(1, len(comparisons))))
    for y, c in enumerate(comparisons):
        clear = c.ci_low > 0
        colour = "tab:green" if clear else "tab:gray"
        if not math.isnan(c.ci_low):
            ax.plot([c.ci_low, c.ci_high], [y, y], color=colour, lw=2)
        ax.plot([c.difference], [y], "o", color=colour)
    ax.axvline(0.0, color="k", ls="--", lw=1)
    ax.set_yticks(range(len(comparisons)), [_short(c.loss) + failed[c.loss] for c in comparisons])
    ax.invert_yaxis()
    ax.set_xlabel(
        f"per-image {table.metric}: {_short(best)} minus the loss named\n(mean over image x seed pairs, 95% CI)"
    )
    title = f"{_short(best)} against every other loss" if comparisons else _no_comparison(table)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


@_literal_text
def plot_per_image(table: ResultsTable, path: Path) -> Path:
    """Scatter of the per-image metric: best loss (y) against the runner-up (x), one point per (image, seed)."""
    plt = _plt()
    rec = table.recommendation()
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    if rec.runner_up is not None and table.val_images:
        best = table.image_matrix(rec.best)
        other = table.image_matrix(rec.runner_up)
        for row, seed in enumerate(table.seeds):
            ax.scatter(other[row], best[row], s=14, alpha=0.7, label=f"seed {seed}")
        ax.plot([0, 1], [0, 1], color="k", lw=1, ls="--")
        ax.set_xlabel(f"{_short(rec.runner_up)} (runner-up)", fontsize=9)
        ax.set_ylabel(f"{_short(rec.best)} (best)", fontsize=9)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, _no_comparison(table), ha="center", va="center")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"per-image {table.metric}, above the line:\n{_short(rec.best)} better", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _window(truth: np.ndarray, size: int = 256) -> tuple[slice, slice]:
    """A ``size`` x ``size`` window (or the whole image if smaller) holding the most foreground of ``truth``."""
    h, w = truth.shape
    wh, ww = min(h, size), min(w, size)
    fg = np.pad((truth > 0).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, best_xy = -1, (0, 0)
    for y in range(0, h - wh + 1, max(1, (h - wh) // 4) if h > wh else 1):
        for x in range(0, w - ww + 1, max(1, (w - ww) // 8) if w > ww else 1):
            count = fg[y + wh, x + ww] - fg[y, x + ww] - fg[y + wh, x] + fg[y, x]
            if count > best:
                best, best_xy = int(count), (y, x)
    y, x = best_xy
    return slice(y, y + wh), slice(x, x + ww)


def _middle(array: np.ndarray) -> np.ndarray:
    """The middle slice of a volume, the array itself for an image."""
    return array[array.shape[0] // 2] if array.ndim == 3 else array


_OVERLAY = [(0, 0, 0, 0), (1, 0.15, 0.1, 0.55), (0.1, 0.9, 0.2, 0.55), (0.2, 0.4, 1, 0.55), (1, 0.8, 0, 0.55)]


def _class_colours(count: int) -> list[tuple[float, float, float, float]]:
    """One overlay colour per class, all distinct.

    Background transparent, classes 1-4 red, green, blue, yellow, then tab20's colours (without its blue, green and
    red, too close to classes 1-3), then evenly spaced hues.
    """
    import matplotlib

    base = [(float(r), float(g), float(b), float(a)) for r, g, b, a in _OVERLAY]
    if count <= len(base):
        return base[: max(2, count)]
    tab20 = matplotlib.colormaps["tab20"]
    extra = [tab20(k) for k in range(20) if k not in (0, 4, 6)]
    missing = count - len(base) - len(extra)
    if missing > 0:
        hsv = matplotlib.colormaps["hsv"]
        extra += [hsv((k + 0.5) / missing) for k in range(missing)]
    return base + [(float(r), float(g), float(b), 0.55) for r, g, b, _ in extra[: count - len(base)]]


def _run_previews(table: ResultsTable, runs_dir: Path, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``{loss: {"pred0": array, ...}}``: the saved validation predictions of each loss's run with ``seed``.

    Never a stale file: a failed run has none, and a file that names another run's fingerprint (the run of other
    settings, its ``.json`` not yet written when the comparison was killed) is left out. Files without a
    fingerprint (older versions) are taken as they are.
    """
    runs = {r.loss: r for r in table.runs if r.seed == seed}
    previews: dict[str, dict[str, np.ndarray]] = {}
    for loss, run in runs.items():
        file = runs_dir / f"{loss}__seed{seed}.npz"
        if not file.is_file() or run.status.startswith("error"):
            continue
        with np.load(file) as npz:
            if "fingerprint" in npz.files and str(npz["fingerprint"]) != run.fingerprint:
                continue
            previews[loss] = {k: npz[k] for k in npz.files if k != "fingerprint"}
    return previews


@_literal_text
def plot_predictions(table: ResultsTable, data: SegData, runs_dir: Path, path: Path) -> Path:
    """A grid of validation images (rows): the image, the ground truth, then one column per loss (first seed).

    Volumes show their middle slice; large images a 256 x 256 window with the most foreground. Overlay colours:
    class 1 red, class 2 green, class 3 blue, class 4 yellow, further classes each its own colour (a legend under the
    grid names the classes shown); pixels with the data's ignore label white. A loss whose run left no prediction (a
    failed run) shows the image alone and says why.
    """
    plt = _plt()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    losses = table.losses
    seed = min(r.seed for r in table.runs)
    status = {r.loss: r.status for r in table.runs if r.seed == seed}
    previews = _run_previews(table, runs_dir, seed)
    rows = min(PREVIEWS, data.num_val)
    shown = [data.val[r] for r in range(rows)]
    colours = _class_colours(data.num_classes)
    cmap = ListedColormap(colours)
    cols = 2 + len(losses)
    first = _middle(shown[0][1].numpy())
    ys, xs = _window(first)
    h, w = first[ys, xs].shape
    present: set[int] = set()
    any_void = False
    legend_rows = 1 if data.num_classes > 2 else 0
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 2.0 * max(1.0, w / h) ** 0.5, rows * 2.1 + 0.5 + 0.3 * legend_rows), squeeze=False
    )
    for r in range(rows):
        image = _middle(shown[r][0][0].numpy())
        truth = _middle(shown[r][1].numpy())
        void = np.zeros(truth.shape, dtype=bool) if data.ignore_index is None else truth == data.ignore_index
        truth = np.where(void, 0, truth)
        ys, xs = _window(truth)
        image, truth, void = image[ys, xs], truth[ys, xs], void[ys, xs]
        any_void = any_void or bool(void.any())
        present.update(np.unique(truth).tolist())
        panels: list[tuple[str, np.ndarray | None, str | None]] = [
            ("image", None, None),
            ("ground truth", truth, None),
        ]
        for loss in losses:
            pred = previews.get(loss, {}).get(f"pred{r}")
            if pred is not None:
                present.update(np.unique(pred[ys, xs]).tolist())
                panels.append((_short(loss, 24), pred[ys, xs], None))
            else:
                why = status.get(loss, "no run")
                why = why if why.startswith("error") else "none saved"
                panels.append((_short(loss, 24), None, "no prediction:\n" + textwrap.fill(_short(why, 90), 30)))
        lo, hi = np.percentile(image, [1, 99.5])
        for ax, (title, overlay, note) in zip(axes[r], panels, strict=True):
            ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
            if overlay is not None:
                ax.imshow(overlay, cmap=cmap, vmin=0, vmax=cmap.N - 1, interpolation="nearest")
            if note is not None:
                ax.text(
                    0.5,
                    0.5,
                    note,
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize=6,
                    wrap=False,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
                )
            if title == "ground truth" and void.any():  # the ignore label: white, neither class nor background
                white = ListedColormap([(1, 1, 1, 0.6)])
                ax.imshow(np.ma.masked_where(~void, void), cmap=white, interpolation="nearest")
            if r == 0:
                ax.set_title(title, fontsize=8)
            ax.axis("off")
    names = data.class_names
    handles = [Patch(color=colours[c], label=_short(names[c], 20)) for c in sorted(present) if 0 < c < len(colours)]
    if any_void:
        handles.append(Patch(facecolor="white", edgecolor="0.5", label="ignored"))
    bottom = 0.0
    if legend_rows and handles:
        ncol = max(1, min(len(handles), cols * 2))
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=6, frameon=False)
        bottom = min(0.4, 0.3 * math.ceil(len(handles) / ncol) / fig.get_figheight())
    fig.suptitle(f"{_short(table.data)}: validation predictions (seed {seed}; one column per loss)", fontsize=9)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(table: ResultsTable, out: Path, plots: dict[str, Path]) -> Path:
    """One self-contained HTML page: recommendation, summary table, the five plots (embedded), settings."""
    rec = table.recommendation()
    cols = ["dice_mean", "iou_mean", "precision_mean", "recall_mean", *_surface_columns(table.summary())]
    if len(table.class_names) > 1:
        cols += [f"dice_{c}" for c in table.class_names]
    cols = ["score", *cols]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", "loss", *cols, "seeds"])
    rows = []
    for rank, s in enumerate(table.summary(), 1):
        cells = "".join(f"<td>{_fmt(s.mean[c], s.std[c])}</td>" for c in cols)
        rows.append(f"<tr><td>{rank}</td><td><b>{html.escape(s.loss)}</b></td>{cells}<td>{s.seeds}</td></tr>")
    failed = [r for r in table.runs if r.status != "ok"]
    notes = "".join(f"<li>{html.escape(r.loss)} seed {r.seed}: {html.escape(r.status)}</li>" for r in failed)
    settings = html.escape(", ".join(f"{k}={v}" for k, v in table.config.items()))
    loading = loading_line(table, workers="more DataLoader workers (num_workers)")
    loading_html = f"<p>{html.escape(loading[:1].upper() + loading[1:])}.</p>" if loading is not None else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>seglosses compare: {html.escape(table.data)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
img{{max-width:100%;display:block;margin:1em 0}}.rec{{background:#eef6ee;padding:.6em;border-radius:4px}}</style>
</head><body>
<h1>seglosses compare: {html.escape(table.data)}</h1>
<p>{html.escape(table.description)}</p>
<p class="rec">{html.escape(rec.text)}</p>
<h2>Validation metrics (mean ± std over seeds; mean = over foreground classes)</h2>
<table><tr>{head}</tr>{"".join(rows)}</table>
<p>HD95 and NSD: each validation image's value (surface elements, physical units), the mean over its foreground
classes, then over the images; a class missed or hallucinated scores HD95 = the image's diagonal and NSD 0, a class
absent from both mask and prediction HD95 0 and NSD 1.</p>
{f"<h3>Runs that did not finish normally</h3><ul>{notes}</ul>" if notes else ""}
<h2>Is the best loss clearly better? (paired differences, 95% bootstrap intervals)</h2>
<p>Each loss against the best on the same validation images and seeds: an interval entirely above 0 is a clear
difference. The per-image value is the mean over the image's foreground classes; a class absent from both the image's
mask and its prediction scores 1.</p>
{_img_tag(plots["forest"], "forest plot")}
{_img_tag(plots["per_image"], "per-image scatter")}
<h2>Validation curves</h2>{_img_tag(plots["curves"], "validation curves")}
<h2>Dice per class</h2>{_img_tag(plots["per_class"], "per-class Dice")}
<h2>Predictions</h2>{_img_tag(plots["predictions"], "validation predictions")}
<h2>Settings</h2><p>mode={html.escape(table.mode)}, {settings}. Every loss used the same initial weights per seed,
the same batches, augmentation, optimiser and schedule. Files: results.csv (one row per run), summary.csv,
per_image.csv (one row per run and validation image), results.json, runs/.</p>
{loading_html}
</body></html>
"""
    return atomic_write(out / "report.html", page)


def write_report(table: ResultsTable, data: SegData, out: Path) -> dict[str, Path]:
    """Write every file of :data:`REPORT_FILES` into ``out`` (each atomically) and return their paths."""
    import os
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "results.csv": table.to_csv(out / "results.csv"),
        "summary.csv": table.summary_to_csv(out / "summary.csv"),
        "per_image.csv": table.per_image_to_csv(out / "per_image.csv"),
        "results.json": table.to_json(out / "results.json"),
    }
    plots: dict[str, Path] = {}
    # matplotlib's default style whatever the process set before (optuna's plots call plt.style.use("ggplot")
    # globally; a notebook may have its own): the report's layout is sized for it, and two reports look alike
    # the plots are drawn into a hidden folder, then moved in (a comparison killed meanwhile leaves the folder,
    # named like atomic_write's temporary files: `seglosses.compare` removes it when it resumes)
    with tempfile.TemporaryDirectory(prefix=".report-", suffix=".tmp", dir=out) as tmp, _plt().style.context("default"):
        t = Path(tmp)
        plots["curves"] = plot_curves(table, t / "curves.png")
        plots["per_class"] = plot_per_class(table, t / "per_class.png")
        plots["forest"] = plot_forest(table, t / "forest.png")
        plots["per_image"] = plot_per_image(table, t / "per_image.png")
        plots["predictions"] = plot_predictions(table, data, out / "runs", t / "predictions.png")
        files["report.html"] = write_html(table, out, plots)
        for key, p in plots.items():
            os.replace(p, out / f"{key}.png")
            files[f"{key}.png"] = out / f"{key}.png"
    return files
