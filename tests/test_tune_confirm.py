"""``tune``: the confirmation of the best arguments against the defaults, and the direction of each metric.

Most tests replace the training of a trial (``_Objective.run``) by a fixed function of the loss's arguments and the
seed, so that the search, the confirmation and the verdict are checked on known numbers in well under a second:
the expected gain is the NumPy mean of the paired per-image differences written here, and its interval a NumPy
percentile bootstrap over those pairs. One test trains for real (a tiny schedule) with ``metric="hd95"``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

from seglosses.cli import tune as tune_module  # noqa: E402
from seglosses.cli.data import load_data  # noqa: E402
from seglosses.cli.train import TrainConfig  # noqa: E402
from seglosses.cli.tune import tune  # noqa: E402
from seglosses.registry import get_loss  # noqa: E402

DEFAULT_ALPHA = 0.3  # TverskyLoss's default (checked below)
TINY = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=2)
IMAGES = 4


@pytest.fixture(scope="module")
def data():
    return load_data("synthetic:binary")


def _noise(alpha: float, seed: int) -> np.ndarray:
    # a run's own noise: it depends on the seed and on the arguments, as a real training run's does
    return np.random.default_rng([seed, round(alpha * 1e6)]).normal(scale=0.05, size=IMAGES)


def fake_value(alpha: float, seed: int, *, effect: float) -> np.ndarray:
    """Per-image values of a Tversky loss with FP weight ``alpha`` trained with ``seed``: best at alpha = 0.6.

    A negative ``effect`` is a lucky seed: ``|effect|`` on the search's seed 0 only, nothing on the other seeds.
    """
    strength = abs(effect) if effect >= 0 or seed == 0 else 0.0
    return 0.7 - strength * abs(alpha - 0.6) + _noise(alpha, seed) + 0.01 * np.arange(IMAGES)


def _install(monkeypatch: pytest.MonkeyPatch, *, effect: float, sign: float = 1.0) -> list[tuple[float, int]]:
    calls: list[tuple[float, int]] = []

    def run(self, loss_fn, seed, on_epoch=None):
        alpha = float(loss_fn.alpha)
        calls.append((alpha, seed))
        per_image = sign * fake_value(alpha, seed, effect=effect)
        return tune_module._Values(float(per_image.mean()), per_image.tolist()), "ok"

    monkeypatch.setattr(tune_module._Objective, "run", run)
    return calls


def _bootstrap(d: np.ndarray, resamples: int = 10_000) -> tuple[float, float]:
    # an independent percentile bootstrap of the mean of the pairs (the interval of the whole confirmation)
    rng = np.random.default_rng(12345)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@pytest.mark.parametrize(("effect", "clear"), [(2.0, True), (-2.0, False)])
def test_confirmation_gain_interval_and_verdict(tmp_path: Path, data, monkeypatch, effect, clear) -> None:
    calls = _install(monkeypatch, effect=effect)
    result = tune("tversky", trials=4, data=data, out=tmp_path, config=TINY, confirm_seeds=3, progress=False, log=print)
    conf = result.confirmation
    assert conf is not None
    assert get_loss("tversky", mode="binary").alpha == DEFAULT_ALPHA
    assert result.best_params["alpha"] != DEFAULT_ALPHA, "the defaults won the search: nothing would be confirmed"
    # the search trains with seed 0; the confirmation with seeds 1, 2, 3, the best arguments and then the defaults
    assert conf["seeds"] == [1, 2, 3]
    best_alpha = result.best_params["alpha"]
    confirm_calls = calls[-6:]
    assert sorted(confirm_calls) == sorted(
        [(best_alpha, s) for s in (1, 2, 3)] + [(DEFAULT_ALPHA, s) for s in (1, 2, 3)]
    )
    assert all(seed == 0 for _, seed in calls[:-6])
    diffs = np.concatenate(
        [fake_value(best_alpha, s, effect=effect) - fake_value(DEFAULT_ALPHA, s, effect=effect) for s in (1, 2, 3)]
    )
    assert conf["pairs"] == 3 * IMAGES
    assert conf["gain"] == pytest.approx(diffs.mean(), abs=1e-12)
    assert conf["best_mean"] == pytest.approx(
        np.mean([fake_value(best_alpha, s, effect=effect) for s in (1, 2, 3)]), abs=1e-12
    )
    low, high = _bootstrap(diffs)
    # another resampling seed: the interval ends agree to a small fraction of the spread of the pairs
    assert conf["ci_low"] == pytest.approx(low, abs=0.05 * diffs.std())
    assert conf["ci_high"] == pytest.approx(high, abs=0.05 * diffs.std())
    assert conf["ci_low"] <= conf["gain"] <= conf["ci_high"]
    assert conf["clear"] is clear
    # the words: "no gain over the defaults" when the interval includes 0
    assert ("no gain over the defaults" in conf["text"]) is (not clear)
    assert ("a gain over the defaults" in conf["text"]) is clear
    # written to best_params.json; running again reuses the stored confirmation (no training at all)
    saved = json.loads((tmp_path / "best_params.json").read_text())
    assert saved["confirmation"]["text"] == conf["text"]
    before = len(calls)
    again = tune("tversky", trials=4, data=data, out=tmp_path, config=TINY, confirm_seeds=3, progress=False, log=print)
    assert len(calls) == before
    assert again.confirmation == conf


def test_cli_prints_the_verdict_once(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from seglosses.cli.app import app

    _install(monkeypatch, effect=2.0)
    args = ["tune", "--loss", "tversky", "--trials", "4", "--data", "synthetic:binary", "--quick", "--epochs", "1"]
    args += ["--device", "cpu", "--no-progress", "--out", str(tmp_path), "--confirm-seeds", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("gain over the defaults") == 1, result.output


def test_confirmation_skipped_when_zero_seeds(tmp_path: Path, data, monkeypatch) -> None:
    calls = _install(monkeypatch, effect=2.0)
    result = tune("tversky", trials=2, data=data, out=tmp_path, config=TINY, confirm_seeds=0, progress=False, log=print)
    assert result.confirmation is None
    assert len(calls) == 2


def test_hd95_is_minimised_and_nsd_maximised(tmp_path: Path, data, monkeypatch) -> None:
    # the same fake numbers as "distances" (negated: alpha = 0.6 gives the smallest HD95)
    _install(monkeypatch, effect=2.0, sign=-1.0)
    result = tune("tversky", trials=5, metric="hd95", data=data, out=tmp_path / "hd", config=TINY, progress=False)
    values = [t["value"] for t in result.trials if t["state"] == "COMPLETE"]
    assert result.direction == "minimize"
    assert result.best_value == min(values)
    assert result.confirmation is not None
    assert result.confirmation["gain"] > 0
    assert result.confirmation["best_mean"] < result.confirmation["default_mean"]
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    _install(monkeypatch, effect=2.0)
    result = tune("tversky", trials=3, metric="nsd", data=data, out=tmp_path / "nsd", config=TINY, progress=False)
    assert result.direction == "maximize"
    assert result.best_value == max(t["value"] for t in result.trials if t["state"] == "COMPLETE")


@pytest.mark.parametrize("metric", ["hd95", "nsd"])
def test_surface_objective_scores_each_validation_image(data, metric, monkeypatch) -> None:
    # the objective of a trained model is the mean over the validation images of each image's HD95 / NSD, scored as
    # compare scores its columns: a missed or hallucinated structure scores the image diagonal (between the first
    # and last pixel centres) for HD95 and 0 for NSD; absent from both 0 and 1

    from seglosses.cli import train as train_module
    from seglosses.metrics import hausdorff, nsd

    trained = []
    real = train_module.train_run

    def keep(*args, **kwargs):
        out = real(*args, **kwargs)
        trained.append(out[0])
        return out

    monkeypatch.setattr(train_module, "train_run", keep)
    values, status = tune_module._Objective(data, TINY, metric, 1.5, "cpu").run(get_loss("tversky", mode="binary"), 0)
    assert status == "ok"
    model = trained[0].eval()
    want = []
    for k in range(len(data.val)):
        image, mask = data.val[k]
        with torch.no_grad():
            logits = model(image[None])  # 64 x 64: already a multiple of 2**depth
        target = mask[None, None].float()
        if metric == "hd95":
            diagonal = math.hypot(*(n - 1 for n in mask.shape))
            kw = {"percentile": 95, "empty_both": 0.0, "empty_one": diagonal}
            want.append(float(hausdorff(logits, target, mode="binary", from_logits=True, **kw)))
        else:
            kw = {"tolerance": 1.5, "empty_both": 1.0, "empty_one": 0.0}
            want.append(float(nsd(logits, target, mode="binary", from_logits=True, **kw)))
    assert len(values.per_image) == len(data.val)
    assert values.per_image == pytest.approx(want, rel=1e-9)
    assert values.pooled == pytest.approx(float(np.mean(want)), rel=1e-9)


class _Missing(torch.nn.Module):
    """Predicts background everywhere (logit -10 plus a small trainable slope): every structure is missed."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(out_channels, in_channels))
        self.b = torch.nn.Parameter(torch.full((out_channels,), -10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,nc...->no...", self.w, x) + self.b.view(1, -1, *([1] * (x.ndim - 2)))


@pytest.mark.parametrize(("metric", "tolerance"), [("hd95", 1.0), ("nsd", 1.5)])
def test_surface_objective_of_a_missed_structure(data, metric, tolerance) -> None:
    # nothing predicted: HD95 is the image diagonal between the first and last pixel centres (compare's rule), NSD 0;
    # an image with an empty mask too scores 0 and 1
    from seglosses.cli.train import RunSetup

    setup = RunSetup(model=_Missing)
    values, status = tune_module._Objective(data, TINY, metric, tolerance, "cpu", setup).run(
        get_loss("tversky", mode="binary"), 0
    )
    assert status == "ok"
    want = []
    for k in range(len(data.val)):
        _, mask = data.val[k]
        empty = not bool(mask.any())
        if metric == "hd95":
            want.append(0.0 if empty else math.hypot(*(n - 1 for n in mask.shape)))
        else:
            want.append(1.0 if empty else 0.0)
    assert values.per_image == pytest.approx(want, rel=1e-12)


def test_tune_bad_numbers(tmp_path: Path, data) -> None:
    for kwargs, message in [
        ({"metric": "hd"}, "`metric` must be one of dice, iou, precision, recall, hd95, nsd; got 'hd'"),
        ({"confirm_seeds": -1}, "`confirm_seeds` must be an int >= 0; got -1"),
        ({"heartbeat": 0}, "`heartbeat` must be a number of seconds > 0; got 0"),
        ({"tolerance": -1.0}, "`tolerance` must be a number >= 0; got -1.0"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            tune("tversky", data=data, out=tmp_path, config=TINY, progress=False, **kwargs)


class _FakeStudy:
    """What ``_claim`` reads of a study: its trials (a script of successive snapshots) and ``stop``."""

    _storage = None  # no heartbeats: Optuna's fail_stale_trials does nothing

    def __init__(self, snapshots):
        self.snapshots = list(snapshots)
        self.stopped = False

    def get_trials(self, deepcopy=False):
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def stop(self):
        self.stopped = True


def _t(number, state, **attrs):
    from types import SimpleNamespace

    import optuna

    return SimpleNamespace(number=number, state=getattr(optuna.trial.TrialState, state), user_attrs=attrs)


def _claim_outcome(snapshots, mine=5, total=4, patience=5.0, **attrs):
    from types import SimpleNamespace

    study = _FakeStudy(snapshots)
    trial = SimpleNamespace(
        number=mine, user_attrs=dict(attrs), set_user_attr=lambda k, v: trial.user_attrs.update({k: v})
    )
    try:
        tune_module._claim(study, trial, total, 0.001, patience)
    except tune_module._Surplus:
        return ("stop" if study.stopped else "yield"), trial.user_attrs.get("status")
    return "run", trial.user_attrs.get("status")


def test_claim_rules_count_finished_running_ahead_and_queued_trials() -> None:
    done3 = [_t(0, "COMPLETE"), _t(1, "PRUNED"), _t(2, "COMPLETE")]
    # 3 finished of 4: this trial is needed
    assert _claim_outcome([[*done3, _t(5, "RUNNING")]]) == ("run", None)
    # 4 finished: surplus, and the worker stops
    assert _claim_outcome([[*done3, _t(3, "COMPLETE")]]) == ("stop", "surplus")
    # a trial ahead (lower number) is running: wait; it completes the count -> surplus
    ahead = [*done3, _t(4, "RUNNING")]
    assert _claim_outcome([ahead, ahead, [*done3, _t(4, "COMPLETE")]]) == ("stop", "surplus")
    # ... or it dies (FAIL) -> this trial runs; a running trial with a higher number is not counted
    assert _claim_outcome([ahead, [*done3, _t(4, "FAIL")]]) == ("run", None)
    assert _claim_outcome([[*done3, _t(7, "RUNNING")]]) == ("run", None)
    # a queued trial (a dead worker's parameters) fills the count and nothing runs ahead: give it the place
    assert _claim_outcome([[*done3, _t(4, "FAIL"), _t(6, "WAITING")]]) == ("yield", "surplus")
    # a second baseline (two workers enqueued the defaults) is surplus
    two = [_t(0, "RUNNING", baseline=True), _t(1, "RUNNING", baseline=True)]
    assert _claim_outcome([two], mine=1, total=6, baseline=True) == ("yield", "surplus")
    assert _claim_outcome([two[:1]], mine=0, total=6, baseline=True) == ("run", None)
    # waiting on a trial that never ends (no heartbeat) gives up after `patience` seconds
    assert _claim_outcome([ahead], patience=0.05) == ("stop", "surplus")


def test_tune_takes_datasets_and_a_model_factory(tmp_path: Path, monkeypatch) -> None:
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 16, 16, generator=g)
    masks = (images[:, 0] > 0.3).long()
    train, val = TensorDataset(images[:4], masks[:4]), TensorDataset(images[4:], masks[4:])
    calls = []

    def factory(in_channels, out_channels):
        calls.append((in_channels, out_channels))
        return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    config = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2)
    kw = {"data": (train, val), "num_classes": 2, "out": tmp_path, "config": config, "progress": False}
    result = tune("tversky", trials=1, model=factory, confirm_seeds=0, **kw)
    assert result.trials[0]["state"] == "COMPLETE"
    assert set(calls) == {(1, 1)}  # binary: one output channel; once for the check, once for the trial
    assert len(calls) == 2

    def wrong(in_channels, out_channels):
        return torch.nn.Conv2d(in_channels, 3, 1)

    with pytest.raises(ValueError, match="tune: .*1.*3|tune: .*3.*1"):
        tune("tversky", trials=1, model=wrong, confirm_seeds=0, **{**kw, "out": tmp_path / "w"})
    assert not (tmp_path / "w" / "study.db").exists()  # nothing stored before the check
    with pytest.raises(ValueError, match="needs `num_classes`"):
        tune("tversky", trials=1, **{**kw, "num_classes": None})


def test_tune_stops_when_the_factory_raises_in_a_trial(tmp_path: Path) -> None:
    # a factory that fails after the up-front check is the model's fault, not the trial's arguments': tune stops
    # with one error instead of failing every trial of the search
    import optuna
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 1, 16, 16, generator=g)
    masks = (images[:, 0] > 0.3).long()
    calls = []

    def flaky(in_channels, out_channels):
        calls.append(1)
        if len(calls) > 1:  # the check passes, the first trial's model fails
            raise RuntimeError("cannot reach the weights server")
        return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    data = (TensorDataset(images[:2], masks[:2]), TensorDataset(images[2:], masks[2:]))
    config = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2)
    message = "tune: the model factory raised RuntimeError: cannot reach the weights server"
    with pytest.raises(ValueError, match=message):
        tune("tversky", trials=3, model=flaky, data=data, num_classes=2, out=tmp_path, config=config, progress=False)
    assert len(calls) == 2  # no further trial was tried
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL"]


def test_tune_plots_leave_the_matplotlib_style_of_the_process_alone(tmp_path: Path, data) -> None:
    # optuna's matplotlib plots call plt.style.use("ggplot"): after tune, every later figure of the process (a
    # notebook's, compare's report) was drawn in ggplot's style
    import matplotlib

    before = dict(matplotlib.rcParams)
    tune("tversky", trials=2, data=data, out=tmp_path, config=TINY, confirm_seeds=0, progress=False, log=print)
    assert (tmp_path / "history.png").is_file()
    changed = {k for k, v in matplotlib.rcParams.items() if str(before.get(k)) != str(v)}
    changed -= {"backend", "backend_fallback"}  # matplotlib.use("Agg") for writing files: not a style
    assert not changed, sorted(changed)[:5]
