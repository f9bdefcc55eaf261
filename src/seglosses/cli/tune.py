"""Search the hyperparameters of one loss with Optuna: ``seglosses tune --loss tversky --trials 20``.

Python API: :func:`tune` returns a :class:`TuneResult`. Every trial trains the same U-Net as ``seglosses compare``
(same data split, initial weights, batches and schedule: only the loss's arguments change) and scores the final
weights on the validation data with :mod:`seglosses.metrics` (mean foreground Dice unless ``metric`` says
otherwise). The search space of each loss is declared next to it, in :data:`seglosses.registry.SEARCH_SPACES`.

The study lives in SQLite (``OUT/study.db``), so an interrupted search resumes where it stopped: running the same
command again runs only the trials still missing. The first trial of a new study is the loss's defaults, so the
table shows what tuning gained. Outputs in ``OUT``: ``best_params.json``, ``trials.csv``, ``history.png`` and
``importance.png`` (Optuna's plots; importance needs two finished trials with different values, else the file
says so).

optuna, rich and matplotlib are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seglosses.cli.compare import METRICS, TrainConfig, _atomic_write, _fingerprint, _nan_to_none, build_loss, evaluate
from seglosses.cli.data import SegData, load_data

__all__ = ["TUNE_FILES", "TuneResult", "tune"]

TUNE_FILES: tuple[str, ...] = ("study.db", "best_params.json", "trials.csv", "history.png", "importance.png")


@dataclass
class TuneResult:
    """The outcome of a search.

    Attributes:
        loss: the loss tuned.
        metric: the objective (mean foreground value on the validation data, maximised).
        best_value: the best objective value (NaN if no trial finished).
        best_params: the arguments of the best trial.
        default_value: the objective with the loss's default arguments (trial 0 of the study), NaN if unknown.
        trials: one dict per trial: number, state, value, params.
        study_name: the Optuna study name.
        storage: the Optuna storage URL.
        files: the files written.

    """

    loss: str
    metric: str
    best_value: float
    best_params: dict[str, Any]
    default_value: float
    trials: list[dict[str, Any]]
    study_name: str
    storage: str
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (NaN as null)."""
        out: dict[str, Any] = _nan_to_none(asdict(self))
        return out


def _suggest(trial: Any, name: str, param: Any) -> Any:
    if param.kind == "float":
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    if param.kind == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), log=param.log)
    if param.kind == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, list(param.choices))


def _defaults(loss: str, mode: str, space: Mapping[str, Any]) -> dict[str, Any]:
    """The loss's default values of the searched parameters that lie inside the space (for the baseline trial)."""
    from seglosses.registry import get_loss

    module = get_loss(loss, mode=mode)
    out: dict[str, Any] = {}
    for name, param in space.items():
        value = getattr(module, name, None)
        if param.kind == "bool" and isinstance(value, bool):
            out[name] = value
        elif param.kind == "categorical" and value in param.choices:
            out[name] = value
        elif isinstance(value, int | float) and not isinstance(value, bool) and param.low <= value <= param.high:
            out[name] = value
    return out


def tune(
    loss: str,
    *,
    trials: int = 20,
    metric: str = "dice",
    data: str | SegData = "scratch-assay",
    out: str | os.PathLike[str] = "seglosses-tune",
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = None,
    quick: bool = False,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search the hyperparameters of ``loss`` (its :func:`seglosses.registry.search_space`) with Optuna's TPE.

    Args:
        loss: a registry name with a search space (``"tversky"``, ``"unified_focal"``, ...).
        trials: the number of finished trials wanted in the study (those already stored count).
        metric: the objective, one of ``"dice"``, ``"iou"``, ``"precision"``, ``"recall"`` (mean over the
            foreground classes on the validation data, maximised).
        data: a dataset name or folder, or a loaded :class:`~seglosses.cli.data.SegData`.
        out: the results folder (the SQLite study, tables and plots).
        storage: an Optuna storage URL instead of ``sqlite:///OUT/study.db``: several ``tune`` processes given the
            same URL (and the same settings, hence the same study name) share one study, on one machine
            (``sqlite:///path/study.db``) or several (``postgresql://user:pass@host/db``, needs its driver, e.g.
            psycopg2). ``trials`` is then the study's total: each worker stops when the study has that many finished
            trials; no trial is lost or run twice (a worker that starts one too many marks it FAIL, user attribute
            ``status="surplus"``, before training anything). A worker killed mid-trial leaves a RUNNING trial that
            counts as under way until Optuna's storage marks it failed.
        study_name: the study's name (default ``<loss>-<metric>-<hash of the data, schedule and seed>``).
        epochs: overrides the schedule's number of epochs.
        quick: the small schedule of ``seglosses compare --quick`` halved (2 epochs of 5 steps).
        config: a full :class:`~seglosses.cli.compare.TrainConfig` instead of the preset (overrides ``quick``).
        seed: model-initialisation and batch seed, the same for every trial (and the sampler's seed).
        device: ``"cpu"`` or ``"cuda"``.
        progress: show a rich progress bar over the trials.
        log: where to send one-line messages (default: print).

    Returns:
        The :class:`TuneResult`.

    Raises:
        ValueError: unknown loss or metric, a loss without searchable parameters, or bad data.

    """
    import optuna

    from seglosses.cli.compare import train_run
    from seglosses.registry import available_losses, search_space

    say = log if log is not None else print
    if loss not in available_losses():
        import difflib

        close = difflib.get_close_matches(loss, available_losses(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"tune: `loss` must be one of {', '.join(available_losses())}; got {loss!r}{hint}")
    if metric not in METRICS:
        raise ValueError(f"tune: `metric` must be one of {', '.join(METRICS)}; got {metric!r}")
    if trials < 1:
        raise ValueError(f"tune: `trials` must be >= 1; got {trials}")
    dataset = data if isinstance(data, SegData) else load_data(data)
    space = search_space(loss, dataset.mode)
    if not space:
        raise ValueError(f"tune: the loss {loss!r} has no hyperparameter to search in mode={dataset.mode!r}")
    if config is not None:
        pass
    elif quick:
        config = TrainConfig(epochs=epochs or 2, steps_per_epoch=5, batch_size=2 if dataset.ndim == 3 else 8)
    else:
        config = TrainConfig.preset(quick=True, ndim=dataset.ndim, epochs=epochs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if study_name is None:
        study_name = f"{loss}-{metric}-{_fingerprint(dataset, config, loss, {'seed': seed})}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(study_name, storage_url, config.epochs)
    TrialState = optuna.trial.TrialState  # noqa: N806 - an enum
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    # A resumed search must not replay the random start-up draws of the first session: reseed with the count. With
    # --storage several workers may start together on the same count: mix in the process id so they draw apart.
    sampler_seed = seed + 7919 * len(study.trials) + (1_000_003 * os.getpid() if storage is not None else 0)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed % 2**32)
    if not study.trials:
        study.enqueue_trial(_defaults(loss, dataset.mode, space), user_attrs={"baseline": True}, skip_if_exists=True)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    todo = max(0, trials - done)
    say(f"data: {dataset.description}")
    say(f"tune {loss} ({', '.join(space)}) for validation {metric}: {done} trial(s) stored, {todo} to run")
    claimed = (*finished_states, TrialState.RUNNING, TrialState.WAITING)

    def objective(trial: Any) -> float:
        # Several workers on one study: trial numbers are given out atomically by the storage, so a trial with
        # `trials` trials before it that have finished or may still finish (running, waiting) is one too many: it
        # ends as FAIL before any training (user attribute "surplus"), and this worker stops.
        ahead = [t for t in study.get_trials(deepcopy=False, states=claimed) if t.number < trial.number]
        if len(ahead) >= trials:
            trial.set_user_attr("status", "surplus")
            study.stop()
            raise _Surplus(f"the study already has {trials} trials finished or under way")
        if trial.user_attrs.get("baseline") and any(t.user_attrs.get("baseline") for t in ahead):
            trial.set_user_attr("status", "surplus")  # a second worker enqueued the defaults at the same time
            raise _Surplus("the baseline trial is already taken")
        params = {name: _suggest(trial, name, p) for name, p in space.items()}
        loss_fn = build_loss(loss, dataset.mode, params, {})

        def report(epoch: int, metrics: dict[str, dict[str, float]]) -> None:
            value = metrics[metric]["mean"]
            trial.report(0.0 if math.isnan(value) else value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        model, _, status = train_run(dataset, loss_fn, seed=seed, config=config, device=device, on_epoch=report)
        trial.set_user_attr("status", status)
        metrics, _ = evaluate(model, dataset, depth=config.depth, device=device)
        value = metrics[metric]["mean"]
        return 0.0 if math.isnan(value) else value

    if todo:
        from optuna.study import MaxTrialsCallback

        # `trials` is the study's total: stop when it has that many finished trials, whoever ran them.
        enough = MaxTrialsCallback(trials, states=finished_states)
        with _TrialProgress(progress, todo) as bar, _quiet_surplus():
            study.optimize(
                objective, n_trials=todo, callbacks=[bar.callback, enough], catch=(RuntimeError, ValueError, _Surplus)
            )
    result = _result(study, loss, metric, study_name, storage_url)
    result.files = {k: str(v) for k, v in write_tune_outputs(result, study, out_dir).items()}
    if storage is None:
        result.files["study.db"] = str(out_dir / "study.db")
    result.files["best_params.json"] = str(out_dir / "best_params.json")
    _atomic_write(out_dir / "best_params.json", json.dumps(result.to_dict(), indent=2, allow_nan=False))
    return result


class _Surplus(Exception):
    """A trial that another worker's trials made unnecessary (ends as FAIL before training)."""


class _SurplusFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "_Surplus" not in record.getMessage()


@contextlib.contextmanager
def _quiet_surplus() -> Iterator[None]:
    """Hide Optuna's "trial failed" warning for surplus trials (a normal end when workers share a study)."""
    handlers = logging.getLogger("optuna").handlers
    flt = _SurplusFilter()
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _open_study(study_name: str, url: str, epochs: int) -> Any:
    """Create or load the study (several workers may do so at the same moment).

    SQLite waits up to 60 s for a lock held by another worker; a race on creating the tables or the study is retried.
    """
    import optuna

    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    last: Exception | None = None
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="maximize",
                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 2)),
                load_if_exists=True,
            )
        except Exception as exc:  # noqa: BLE001 - sqlalchemy's OperationalError/IntegrityError of a race: retry
            if type(exc).__name__ not in ("OperationalError", "IntegrityError", "DuplicatedStudyError"):
                raise
            last = exc
            time.sleep(0.5 + attempt)
    raise ValueError(f"tune: cannot open the study {study_name!r} in {url}: {last}")


def _result(study: Any, loss: str, metric: str, study_name: str, storage: str) -> TuneResult:
    import optuna

    rows = []
    default_value = math.nan
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("status") == "surplus":  # never trained (see `storage` in `tune`)
            continue
        value = math.nan if t.value is None else float(t.value)
        if t.user_attrs.get("baseline") and t.state == optuna.trial.TrialState.COMPLETE:
            default_value = value
        rows.append({"number": t.number, "state": t.state.name, "value": value, "params": dict(t.params)})
    completed = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    best = max(completed, key=lambda t: float(t.value)) if completed else None
    return TuneResult(
        loss=loss,
        metric=metric,
        best_value=math.nan if best is None else float(best.value),
        best_params={} if best is None else dict(best.params),
        default_value=default_value,
        trials=rows,
        study_name=study_name,
        storage=storage,
    )


def trials_csv(result: TuneResult) -> str:
    """The trials as CSV text: number, state, value, then one column per parameter."""
    names = sorted({k for t in result.trials for k in t["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", result.metric, *names])
    for t in result.trials:
        value = "" if math.isnan(t["value"]) else f"{t['value']:.6g}"
        writer.writerow([t["number"], t["state"], value, *(t["params"].get(n, "") for n in names)])
    return buffer.getvalue()


def rich_trials_table(result: TuneResult, limit: int = 15) -> Any:
    """A ``rich.table.Table`` of the best ``limit`` finished trials, best first."""
    from rich.table import Table

    names = sorted({k for t in result.trials for k in t["params"]})
    table = Table(title=f"tune {result.loss}: validation {result.metric} (best first)")
    for col in ["trial", "state", result.metric, *names]:
        table.add_column(col, justify="right")
    ranked = sorted(result.trials, key=lambda t: -t["value"] if not math.isnan(t["value"]) else math.inf)
    for t in ranked[:limit]:
        value = "-" if math.isnan(t["value"]) else f"{t['value']:.4f}"
        cells = [_fmt_param(t["params"].get(n)) for n in names]
        table.add_row(str(t["number"]), t["state"].lower(), value, *cells)
    return table


def _fmt_param(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_tune_outputs(result: TuneResult, study: Any, out: Path) -> dict[str, Path]:
    """Write ``trials.csv``, ``history.png`` and ``importance.png`` into ``out`` (each atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    files = {"trials.csv": _atomic_write(out / "trials.csv", trials_csv(result))}
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for the matplotlib backend
        from optuna.visualization import matplotlib as ovm

        plots: dict[str, Callable[[], Any]] = {
            "history.png": lambda: ovm.plot_optimization_history(study),
            "importance.png": lambda: ovm.plot_param_importances(study),
        }
        for name, draw in plots.items():
            reason = ""
            if not completed:
                reason = "no trial has finished yet"
            elif name == "importance.png" and len({round(float(t.value), 12) for t in completed}) < 2:
                reason = f"importance needs >= 2 finished trials with different values; got {len(completed)}"
            ax = None
            if not reason:
                try:
                    ax = draw()
                except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                    reason = f"optuna could not draw it: {exc}"
            if ax is None:
                _, ax = plt.subplots(figsize=(6, 2))
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name[:-4]}: {reason}", ha="center", va="center", wrap=True)
            fig: Any = ax.figure
            fig.set_size_inches(7, 4.2)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
            plt.close(fig)
            files[name] = _atomic_write(out / name, buffer.getvalue())
    return files


class _TrialProgress:
    """A rich progress bar over the trials (or nothing)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total

    def __enter__(self) -> _TrialProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("trials"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("trials", total=self.total, info="")
        return self

    def callback(self, study: Any, trial: Any) -> None:
        if self.enabled:
            try:
                best = f"best {study.best_value:.4f}"
            except ValueError:
                best = ""
            value = "-" if trial.value is None else f"{trial.value:.4f}"
            self.bar.update(self.task, advance=1, info=f"last {value} ({trial.state.name.lower()}) {best}")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)
