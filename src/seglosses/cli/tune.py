"""Search the hyperparameters of one loss with Optuna: ``seglosses tune --loss tversky --trials 20``.

Python API: :func:`tune` returns a :class:`TuneResult`. Every trial trains the same model as ``seglosses compare``
(the built-in U-Net or the user's factory; same data split, initial weights, batches and schedule: only the loss's
arguments change) and scores the final weights on the validation data with :mod:`seglosses.metrics` (mean
foreground Dice unless ``metric`` says otherwise: IoU, precision, recall, NSD, or HD95, which is minimised). The
search space of each loss is declared next to it, in :data:`seglosses.registry.SEARCH_SPACES`. After the search,
the best arguments and the defaults are trained again on fresh seeds and compared image by image (a paired
bootstrap interval), because one trial is one seed.

The study lives in SQLite (``OUT/study.db``), so an interrupted search resumes where it stopped: running the same
command again runs only the trials still missing. The first trial of a new study is the loss's defaults, so the
table shows what tuning gained. Running trials send heartbeats to the storage, so that the trial of a worker that
died is failed and re-run by another worker. Outputs in ``OUT``: ``best_params.json``, ``trials.csv``,
``history.png`` and ``importance.png`` (Optuna's plots; importance needs two finished trials with different
values, else the file says so).

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from seglosses.cli.data import SegData
from seglosses.cli.results import METRICS, atomic_write, nan_to_none, paired_bootstrap
from seglosses.cli.train import (
    FactoryError,
    ModelFactory,
    RunSetup,
    TrainConfig,
    build_loss,
    crop_for_model,
    fingerprint,
)

__all__ = ["DEFAULT_HEARTBEAT", "MAX_RETRY", "TUNE_FILES", "TUNE_METRICS", "TuneResult", "tune"]

TUNE_FILES: tuple[str, ...] = ("study.db", "best_params.json", "trials.csv", "history.png", "importance.png")
SURFACE_METRICS: tuple[str, ...] = ("hd95", "nsd")
TUNE_METRICS: tuple[str, ...] = (*METRICS, *SURFACE_METRICS)
#: Seconds between a running trial's heartbeats; a trial silent for twice that long is stale (its worker died).
DEFAULT_HEARTBEAT = 60.0
#: A trial whose worker died is re-run with the same parameters at most this many times.
MAX_RETRY = 2
_STORAGE_ERRORS = (
    "OperationalError",
    "IntegrityError",
    "DatabaseError",
    "DuplicatedStudyError",
    "StorageInternalError",
)


@dataclass
class TuneResult:
    """The outcome of a search.

    Attributes:
        loss: the loss tuned.
        metric: the objective (see :func:`tune`).
        direction: ``"maximize"`` or ``"minimize"`` (HD95).
        best_value: the best objective value (NaN if no trial finished).
        best_params: the arguments of the best trial.
        default_value: the objective with the loss's default arguments (trial 0 of the study), NaN if unknown.
        trials: one dict per trial: number, state, value, params.
        study_name: the Optuna study name.
        storage: the Optuna storage URL.
        confirmation: the re-run of the best arguments and the defaults over fresh seeds (keys ``seeds``,
            ``best_mean``, ``default_mean``, ``gain``, ``ci_low``, ``ci_high``, ``pairs``, ``clear``, ``text``;
            ``gain`` > 0 means the best arguments are better, whatever the direction), or ``None`` when not run.
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
    direction: str = "maximize"
    confirmation: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (NaN as null)."""
        out: dict[str, Any] = nan_to_none(asdict(self))
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
    data: Any = "scratch-assay",
    num_classes: int | None = None,
    model: ModelFactory | None = None,
    out: str | os.PathLike[str] = "seglosses-tune",
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int | None = None,
    quick: bool = False,
    config: TrainConfig | None = None,
    seed: int = 0,
    confirm_seeds: int = 3,
    tolerance: float = 1.0,
    ignore_index: int | None = None,
    class_names: Sequence[str] | None = None,
    crop: Sequence[int] | None = None,
    heartbeat: float = DEFAULT_HEARTBEAT,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search the hyperparameters of ``loss`` (its :func:`seglosses.registry.search_space`) with Optuna's TPE.

    Every trial trains with the same seed, so a trial's value is one training run; differences between trials are
    partly seed noise. After the search the best arguments and the loss's defaults are therefore trained again on
    ``confirm_seeds`` fresh seeds (``seed + 1``, ``seed + 2``, ...), and the paired per-image difference
    ``gain = mean over (validation image, seed) of sign * (metric(best) - metric(defaults))`` (``sign`` = -1 for
    HD95, so that a positive gain is always an improvement) is reported with a 95 % percentile bootstrap interval
    over those pairs (:func:`seglosses.cli.results.paired_bootstrap`); an interval containing 0 reads "no gain
    over the defaults", one above 0 "a gain over the defaults". The confirmation is stored in the study and not
    re-run for the same best arguments. It is skipped when the best trial is the defaults' own trial.

    Args:
        loss: a registry name with a search space (``"tversky"``, ``"unified_focal"``, ...).
        trials: the number of finished trials wanted in the study (those already stored count).
        metric: the objective on the validation data: ``"dice"``, ``"iou"``, ``"precision"``, ``"recall"`` (the
            statistics of all validation pixels, mean over the foreground classes; maximised), ``"hd95"`` (the
            95th-percentile Hausdorff distance of :func:`seglosses.metrics.hausdorff`, surface elements, in the
            data's pixel spacing (1 unless the files give one); mean over images of each image's mean over the
            foreground classes; minimised; a structure missed or hallucinated in an image scores the image's
            diagonal between its first and last pixel centres, the largest distance possible, and a class absent
            from both scores 0; the same per-image values as compare's HD95 column, from the final validation with
            its window, AMP and per-image spacing) or ``"nsd"`` (the
            normalised surface Dice of :func:`seglosses.metrics.nsd` at ``tolerance``, averaged the same way, absent
            from both 1, from one 0; maximised).
        data: a dataset name or folder, a loaded :class:`~seglosses.cli.data.SegData`, or a ``(train, val)`` pair
            of ``torch.utils.data.Dataset`` of ``(image (C, *S) float, mask (*S) int64)``, as in
            :func:`seglosses.compare` (then ``num_classes`` is required).
        num_classes: the number of classes of ``data=(train, val)`` (2 for a binary task).
        model: a factory returning a fresh ``nn.Module`` (called with ``in_channels=``/``out_channels=`` when it
            accepts them, under each run's seed), as in :func:`seglosses.compare`; default the built-in U-Net. Its
            output channels (1 for a binary task, else the class count) are checked before any trial.
        out: the results folder (the SQLite study, tables and plots).
        storage: an Optuna storage URL instead of ``sqlite:///OUT/study.db``: several ``tune`` processes given the
            same URL (and the same settings, hence the same study name) share one study, on one machine
            (``sqlite:///path/study.db``) or several (``postgresql://user:pass@host/db``, needs its driver, e.g.
            psycopg2). ``trials`` is then the study's total: each worker stops when the study has that many finished
            trials; no trial is lost or run twice. A worker whose next trial is not needed (the trials ahead of it
            complete the count) waits for them, and records the trial as FAIL (user attribute
            ``status="surplus"``, nothing trained) once they finish.
        study_name: the study's name (default ``<loss>-<metric>-<hash of the data, schedule and seed>``).
        epochs: overrides the schedule's number of epochs.
        quick: the small schedule of ``seglosses compare --quick`` halved (2 epochs of 5 steps).
        config: a full :class:`~seglosses.cli.train.TrainConfig` instead of the preset (overrides ``quick``).
        seed: model-initialisation and batch seed, the same for every trial (and the sampler's seed).
        confirm_seeds: seeds of the confirmation (default 3; 0 skips it).
        tolerance: the NSD tolerance in the units of the spacing (default 1: one pixel); only for ``"nsd"``.
        ignore_index: the mask value of pixels neither trained on nor scored (e.g. 255, the void border of Pascal
            VOC masks), outside the class indices, as in :func:`seglosses.compare`: the loss of every trial and of
            the confirmation gets it, and the validation metrics leave those pixels out.
        class_names: one name per class, the background first, as in :func:`seglosses.compare`.
        crop: the training crop's spatial size, used as it is, as in :func:`seglosses.compare` (for a named dataset
            or folder it replaces the crop the data chooses; for ``data=(train, val)`` the default is the items whole).
        heartbeat: seconds between the heartbeats of a running trial (default :data:`DEFAULT_HEARTBEAT`, 60). A
            trial without a heartbeat for twice that long belongs to a dead worker (killed, machine lost): the next
            worker that starts a trial marks it FAIL and queues its parameters again (at most :data:`MAX_RETRY`
            times), so the study still reaches ``trials`` finished trials and nothing stays RUNNING.
        device: ``"cpu"`` or ``"cuda"``.
        progress: show a rich progress bar over the trials.
        log: where to send one-line messages (default: print).

    Returns:
        The :class:`TuneResult`.

    Raises:
        ValueError: unknown loss or metric, a loss without searchable parameters, bad numbers, bad data, or an
            ``out`` that cannot be written (raised before any trial).

    """
    import optuna

    from seglosses.registry import available_losses, search_space

    say = log if log is not None else print
    if loss not in available_losses():
        from seglosses.registry import _name_hint

        hint = _name_hint(loss)  # also from a class or function name ("DiceLoss", "dice_loss") or another case
        raise ValueError(f"tune: `loss` must be one of {', '.join(available_losses())}; got {loss!r}{hint}")
    if metric not in TUNE_METRICS:
        raise ValueError(f"tune: `metric` must be one of {', '.join(TUNE_METRICS)}; got {metric!r}")
    if trials < 1:
        raise ValueError(f"tune: `trials` must be >= 1; got {trials}")
    if isinstance(confirm_seeds, bool) or not isinstance(confirm_seeds, int) or confirm_seeds < 0:
        raise ValueError(f"tune: `confirm_seeds` must be an int >= 0; got {confirm_seeds!r}")
    if not (isinstance(heartbeat, int | float) and math.isfinite(heartbeat) and heartbeat > 0):
        raise ValueError(f"tune: `heartbeat` must be a number of seconds > 0; got {heartbeat!r}")
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tune: `tolerance` must be a number >= 0; got {tolerance!r}")
    from seglosses.cli.compare import resolve_data

    dataset = resolve_data(
        data,
        num_classes=num_classes,
        crop=crop,
        caller="tune",
        ignore_index=ignore_index,
        progress=progress,
        class_names=class_names,
    )
    space = search_space(loss, dataset.mode)
    if not space:
        raise ValueError(f"tune: the loss {loss!r} has no hyperparameter to search in mode={dataset.mode!r}")
    if config is not None:
        pass
    elif quick:
        config = TrainConfig(epochs=epochs or 2, steps_per_epoch=5, batch_size=2 if dataset.ndim == 3 else 8)
    else:
        config = TrainConfig.preset(quick=True, ndim=dataset.ndim, epochs=epochs)
    direction = "minimize" if metric == "hd95" else "maximize"
    setup = RunSetup(model=model)
    if isinstance(data, str | os.PathLike) and crop is None:  # a crop chosen by load_data: one the model accepts
        dataset = crop_for_model(dataset, setup, config)
    if model is not None:
        from seglosses.cli.train import check_model

        architecture = check_model(dataset, setup, config, seed=seed, device=device, caller="tune")
        setup = replace(setup, architecture=architecture)
    objective_of = _Objective(dataset, config, metric, float(tolerance), device, setup)
    out_dir = Path(out)
    _check_writable(out_dir)
    storage_url = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if study_name is None:
        extra: dict[str, Any] = {"seed": seed} | ({"tolerance": float(tolerance)} if metric == "nsd" else {})
        study_name = f"{loss}-{metric}-{fingerprint(dataset, config, loss, extra, setup)}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(study_name, storage_url, config.epochs, direction, float(heartbeat))
    TrialState = optuna.trial.TrialState  # noqa: N806 - an enum
    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    # A resumed search must not replay the random start-up draws of the first session: reseed with the count. With
    # --storage several workers may start together on the same count: mix in the process id so they draw apart.
    stored = _retry(lambda: study.get_trials(deepcopy=False))
    sampler_seed = seed + 7919 * len(stored) + (1_000_003 * os.getpid() if storage is not None else 0)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed % 2**32)
    alive = (*finished_states, TrialState.RUNNING, TrialState.WAITING)
    if not any(t.user_attrs.get("baseline") and t.state in alive for t in stored):
        # a new study, or one whose defaults' trial failed (stopped by Ctrl-C, say): queue the defaults (again; a
        # copy queued by two workers at once runs once, see _claim)
        defaults = _defaults(loss, dataset.mode, space)
        _retry(lambda: study.enqueue_trial(defaults, user_attrs={"baseline": True}, skip_if_exists=not stored))
    done = sum(t.state in finished_states for t in stored)
    todo = max(0, trials - done)
    say(f"data: {dataset.description}")
    say(f"tune {loss} ({', '.join(space)}) for validation {metric}: {done} trial(s) stored, {todo} to run")
    poll = min(1.0, heartbeat / 4)
    grace = max(2, math.ceil(2 * heartbeat))  # as in _open_study

    def waiting(numbers: list[int]) -> None:  # a resumed search can wait here for a killed process's trial
        say(
            f"waiting for trial(s) {', '.join(map(str, numbers))}, still running: another worker's, or left by a "
            f"process that was killed (such a trial counts as dead {grace} s after its last heartbeat, then its "
            "parameters run again)"
        )

    def objective(trial: Any) -> float:
        # raises _Surplus when the study does not need it
        _claim(study, trial, trials, poll, 30 * heartbeat, on_wait=waiting)
        params = {name: _suggest(trial, name, p) for name, p in space.items()}
        loss_fn = build_loss(loss, dataset.mode, params, {}, dataset.ignore_index)

        def report(epoch: int, metrics: dict[str, dict[str, float]]) -> None:
            value = metrics[metric]["mean"]
            trial.report(0.0 if math.isnan(value) else value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        values, status = objective_of.run(loss_fn, seed, on_epoch=report if metric in METRICS else None)
        trial.set_user_attr("status", status)
        return values.pooled

    try:
        if todo:
            with _TrialProgress(progress, todo) as bar, _quiet_surplus():
                _optimize(study, objective, trials, todo, [bar.callback])
        result = _result(study, loss, metric, direction, study_name, storage_url)
        if confirm_seeds and result.best_params is not None and not math.isnan(result.best_value):
            result.confirmation = _confirm(study, result, objective_of, seed, confirm_seeds, say)
            say(result.confirmation["text"])
    except FactoryError as exc:  # the model, not the loss's arguments: stop (no trial value, no confirmation)
        raise ValueError(f"tune: {exc}; the finished trials are kept in the study") from exc.__cause__
    result.files = {k: str(v) for k, v in write_tune_outputs(result, study, out_dir).items()}
    if storage is None:
        result.files["study.db"] = str(out_dir / "study.db")
    result.files["best_params.json"] = str(out_dir / "best_params.json")
    atomic_write(out_dir / "best_params.json", json.dumps(result.to_dict(), indent=2, allow_nan=False))
    return result


@dataclass
class _Values:
    """One trained model's objective: ``pooled`` (the search's value) and ``per_image`` (the confirmation's)."""

    pooled: float
    per_image: list[float]


class _Objective:
    """Trains one model for a loss and scores it with the tuning metric (overlap or surface)."""

    def __init__(
        self,
        data: SegData,
        config: TrainConfig,
        metric: str,
        tolerance: float,
        device: str,
        setup: RunSetup | None = None,
    ) -> None:
        self.data, self.config, self.metric, self.tolerance, self.device = data, config, metric, tolerance, device
        self.setup = setup or RunSetup()
        if metric == "nsd":  # the final validation's NSD column at the tuning tolerance
            self.setup = replace(self.setup, nsd_tolerance=tolerance)

    def run(self, loss_fn: Any, seed: int, on_epoch: Callable[..., None] | None = None) -> tuple[_Values, str]:
        from seglosses.cli.train import Evaluation, train_run

        evaluation: list[Evaluation] = []
        model, _, status = train_run(
            self.data,
            loss_fn,
            seed=seed,
            config=self.config,
            device=self.device,
            on_epoch=on_epoch,
            setup=self.setup,
            evaluation=evaluation,
        )
        last = evaluation[-1]
        if self.metric in METRICS:
            pooled = last.metrics[self.metric]["mean"]
            return _Values(0.0 if math.isnan(pooled) else pooled, list(last.per_image[self.metric])), status
        # HD95 / NSD: the final validation's own per-image values, computed as compare computes its columns
        # (seglosses.cli.train.surface_values: the same window, AMP, per-image spacing and empty-class rules)
        per_image = [float(v) for v in last.per_image[self.metric]]
        return _Values(float(sum(per_image) / len(per_image)) if per_image else math.nan, per_image), status


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and write (then remove) a file in it; ``ValueError`` at once if it cannot be written.

    Without it a read-only folder failed only after about a minute of retries to open ``study.db`` (SQLite's "unable
    to open database file", retried as the race of two workers creating the study).
    """
    probe = folder / f".write-check.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ValueError(f"tune: cannot write the results folder {folder}: {reason}") from exc


def _retry(call: Callable[[], Any], attempts: int = 8) -> Any:
    """Run a storage call, retrying the transient errors of a shared database (a lock held too long, a race)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if type(exc).__name__ not in _STORAGE_ERRORS or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def _claim(
    study: Any,
    trial: Any,
    total: int,
    poll: float,
    patience: float,
    on_wait: Callable[[list[int]], None] | None = None,
) -> None:
    """Let ``trial`` run only if the study needs it; wait while the trials ahead of it may complete the count.

    Counted against ``total``: the finished trials (complete, pruned), the trials running with a lower number (they
    started first), and every waiting trial (queued parameters, handed out before any new trial). If those reach
    ``total`` and one of them is still running, the worker waits (calling Optuna's ``fail_stale_trials``, which
    fails the running trials of dead workers and queues their parameters again); if they reach it with no running
    trial ahead, the trial gives its place to a waiting one (``_Surplus`` without stopping); once the finished ones
    reach ``total``, it ends as surplus and the worker stops. The defaults' trial runs once. ``on_wait`` is called
    once, with the numbers of the running trials ahead, when the trial starts waiting (a search resumed after its
    process was killed waits so for the killed trial's heartbeat to go stale).
    """
    import optuna

    states = optuna.trial.TrialState
    finished_states = (states.COMPLETE, states.PRUNED)
    study_stop = study.stop
    since, seen = time.monotonic(), -1
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning
            _retry(lambda: optuna.storages.fail_stale_trials(study))
        everything = _retry(lambda: study.get_trials(deepcopy=False))
        finished = [t for t in everything if t.state in finished_states]
        running = [t for t in everything if t.state == states.RUNNING and t.number < trial.number]
        waiting = [t for t in everything if t.state == states.WAITING and t.number != trial.number]
        if len(finished) >= total:
            trial.set_user_attr("status", "surplus")
            study_stop()
            raise _Surplus(f"the study already has {total} finished trials")
        if trial.user_attrs.get("baseline") and any(
            t.user_attrs.get("baseline") for t in (*finished, *running, *waiting) if t.number < trial.number
        ):
            trial.set_user_attr("status", "surplus")  # a second worker enqueued the defaults at the same time
            raise _Surplus("the baseline trial is already taken")
        if len(finished) + len(running) + len(waiting) < total:
            return
        if not running:
            trial.set_user_attr("status", "surplus")
            raise _Surplus("a queued trial takes this one's place")
        if len(finished) != seen:
            if seen < 0 and on_wait is not None:  # the first wait of this trial: say what it waits for
                on_wait(sorted(t.number for t in running))
            since, seen = time.monotonic(), len(finished)
        elif time.monotonic() - since > patience:
            trial.set_user_attr("status", "surplus")
            study_stop()
            raise _Surplus(f"no trial ahead finished in {patience:.0f} s")
        time.sleep(poll)


def _optimize(study: Any, objective: Callable[[Any], float], total: int, todo: int, callbacks: list[Any]) -> None:
    """``study.optimize`` until the study has ``total`` finished trials, surviving transient storage errors."""
    import optuna
    from optuna.study import MaxTrialsCallback

    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    enough = MaxTrialsCallback(total, states=finished_states)
    failures: list[int] = []

    def budget(study: Any, trial: Any) -> None:
        # a loss that fails on every trial must not loop forever: stop after `todo + 5` real failures here
        if trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get("status") != "surplus":
            failures.append(trial.number)
            if len(failures) > todo + 5:
                study.stop()

    for attempt in range(10):
        try:
            study.optimize(
                objective,
                n_trials=None,
                callbacks=[*callbacks, enough, budget],
                catch=(RuntimeError, ValueError, _Surplus),
            )
            return
        except Exception as exc:
            # a storage error outside the objective (telling Optuna a trial's result): the trial's heartbeat stops,
            # so it is failed and retried like a dead worker's; this worker goes on
            if type(exc).__name__ not in _STORAGE_ERRORS or attempt == 9:
                raise
            time.sleep(1.0 + attempt)
            if len(_retry(lambda: study.get_trials(deepcopy=False, states=finished_states))) >= total:
                return


def _confirm(
    study: Any, result: TuneResult, objective_of: _Objective, seed: int, n: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Train the best arguments and the defaults on ``n`` fresh seeds; the paired per-image gain and its interval."""
    import hashlib

    best_trial = max(
        (t for t in result.trials if t["state"] == "COMPLETE" and not math.isnan(t["value"])),
        key=lambda t: t["value"] if result.direction == "maximize" else -t["value"],
    )
    seeds = [seed + 1 + k for k in range(n)]
    if best_trial.get("baseline"):
        return {
            "seeds": seeds,
            "best_mean": math.nan,
            "default_mean": math.nan,
            "gain": 0.0,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "pairs": 0,
            "clear": False,
            "text": "the best trial is the loss's defaults: no gain over the defaults (nothing to confirm)",
        }
    key = (
        "confirm:"
        + hashlib.sha256(
            json.dumps([result.best_params, seeds, result.metric, objective_of.tolerance], sort_keys=True).encode()
        ).hexdigest()[:16]
    )
    cached = _retry(lambda: study.user_attrs).get(key)
    if isinstance(cached, str):  # stored by an earlier run (or another worker) for the same best arguments
        stored: dict[str, Any] = json.loads(cached)
        # the numbers are kept; the sentence is written again (a study stored by an older version has other words)
        stored["text"] = _confirmation_text(result.metric, stored)
        return stored
    say(f"confirming: the best arguments and the defaults on seeds {', '.join(map(str, seeds))}")
    sign = -1.0 if result.direction == "minimize" else 1.0
    best_vals: list[float] = []
    default_vals: list[float] = []
    for s in seeds:
        ignore = objective_of.data.ignore_index
        b, _ = objective_of.run(build_loss(result.loss, objective_of.data.mode, result.best_params, {}, ignore), s)
        d, _ = objective_of.run(build_loss(result.loss, objective_of.data.mode, {}, {}, ignore), s)
        for x, y in zip(b.per_image, d.per_image, strict=True):
            if math.isfinite(x) and math.isfinite(y):
                best_vals.append(x)
                default_vals.append(y)
    diffs = [sign * (x - y) for x, y in zip(best_vals, default_vals, strict=True)]
    if diffs:
        gain, low, high = paired_bootstrap(diffs)
    else:
        gain = low = high = math.nan
    confirmation: dict[str, Any] = {
        "seeds": seeds,
        "best_mean": _mean(best_vals),
        "default_mean": _mean(default_vals),
        "gain": gain,
        "ci_low": low,
        "ci_high": high,
        "pairs": len(diffs),
        "clear": bool(low > 0),  # False for NaN
    }
    confirmation["text"] = _confirmation_text(result.metric, confirmation)
    _retry(lambda: study.set_user_attr(key, json.dumps(confirmation)))
    return confirmation


def _confirmation_text(metric: str, c: Mapping[str, Any]) -> str:
    """The confirmation's sentence: "a gain over the defaults" when the interval is above 0, else "no gain ..."."""
    low, high = (math.nan if c[k] is None else float(c[k]) for k in ("ci_low", "ci_high"))
    gain = math.nan if c["gain"] is None else float(c["gain"])
    best, default = (math.nan if c[k] is None else float(c[k]) for k in ("best_mean", "default_mean"))
    verdict = "a gain over the defaults" if c["clear"] else "no gain over the defaults (the interval includes 0)"
    if math.isnan(low):
        verdict = "no gain over the defaults (too few image-seed pairs for an interval)"
    return (
        f"confirmation on {len(c['seeds'])} fresh seed(s) ({c['pairs']} image-seed pairs): {metric} "
        f"{best:.4f} with the best arguments vs {default:.4f} with the defaults, gain "
        f"{gain:+.4f} (95% CI [{low:+.4f}, {high:+.4f}]): {verdict}"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


class _Surplus(Exception):
    """A trial that another worker's trials made unnecessary (ends as FAIL before training)."""


class _SurplusFilter(logging.Filter):
    """Drop Optuna's two "Trial N failed ..." warnings of a surplus trial or of one stopped by Ctrl-C."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        number = message.split(" ", 2)[1] if message.startswith("Trial ") else ""
        stopped = "KeyboardInterrupt" in message or "Terminated" in message  # Ctrl-C, or SIGTERM (cli.app)
        if "_Surplus" in message or stopped:  # the first, with the traceback
            self.hidden.add(number)
            return False
        return not (number in self.hidden and " failed with value " in message)


@contextlib.contextmanager
def _quiet_surplus() -> Iterator[None]:
    """Hide Optuna's "trial failed" warnings for surplus trials and for a trial stopped by Ctrl-C.

    A surplus trial is a normal end when workers share a study; the traceback of a Ctrl-C would bury the command
    line's message on how to resume.
    """
    handlers = logging.getLogger("optuna").handlers
    flt = _SurplusFilter()
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


def _open_study(study_name: str, url: str, epochs: int, direction: str, heartbeat: float) -> Any:
    """Create or load the study (several workers may do so at the same moment), with heartbeats.

    SQLite waits up to 60 s for a lock held by another worker; a race on creating the tables or the study (another
    worker created it first, a lock, a half-created schema) is retried for about two minutes.
    """
    import optuna

    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    callback_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if callback_class is None:  # optuna < 4.9
        callback_class = optuna.storages.RetryFailedTrialCallback
    last: Exception | None = None
    for attempt in range(12):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning of the heartbeat options
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=max(1, math.ceil(heartbeat)),
                    grace_period=max(2, math.ceil(2 * heartbeat)),
                    failed_trial_callback=callback_class(max_retry=MAX_RETRY),
                )
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="minimize" if direction == "minimize" else "maximize",
                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 2)),
                load_if_exists=True,
            )
        except Exception as exc:  # sqlalchemy's OperationalError/IntegrityError of a race: retry
            if type(exc).__name__ not in _STORAGE_ERRORS:
                raise
            last = exc
            time.sleep(0.5 + min(attempt, 10) + 0.5 * (os.getpid() % 7) / 7)
    raise ValueError(f"tune: cannot open the study {study_name!r} in {url}: {last}")


def _result(study: Any, loss: str, metric: str, direction: str, study_name: str, storage: str) -> TuneResult:
    import optuna

    rows = []
    default_value = math.nan
    for t in _retry(lambda: study.get_trials(deepcopy=False)):
        if t.user_attrs.get("status") == "surplus":  # never trained (see `storage` in `tune`)
            continue
        value = math.nan if t.value is None else float(t.value)
        if t.user_attrs.get("baseline") and t.state == optuna.trial.TrialState.COMPLETE:
            default_value = value
        row = {"number": t.number, "state": t.state.name, "value": value, "params": dict(t.params)}
        if t.user_attrs.get("baseline"):
            row["baseline"] = True
        rows.append(row)
    completed = [t for t in rows if t["state"] == "COMPLETE" and not math.isnan(t["value"])]
    sign = 1.0 if direction == "maximize" else -1.0
    best = max(completed, key=lambda t: sign * t["value"]) if completed else None
    return TuneResult(
        loss=loss,
        metric=metric,
        direction=direction,
        best_value=math.nan if best is None else float(best["value"]),
        best_params={} if best is None else dict(best["params"]),
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
    sign = -1.0 if result.direction == "maximize" else 1.0
    ranked = sorted(result.trials, key=lambda t: sign * t["value"] if not math.isnan(t["value"]) else math.inf)
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

    files = {"trials.csv": atomic_write(out / "trials.csv", trials_csv(result))}
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # rc_context: optuna's plots call plt.style.use("ggplot"), which changed the style of every later figure of the
    # process (a notebook's own plots, compare's report); the context restores the caller's rcParams on exit
    with warnings.catch_warnings(), matplotlib.rc_context():
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
            files[name] = atomic_write(out / name, buffer.getvalue())
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
