"""``compare`` / ``tune`` with an ignore label (``ignore_index``, ``--ignore-index``): the 255 'void' border of
Pascal VOC-style masks is neither trained on nor scored.

Expected values come from NumPy counts over the kept pixels written here and from DeepMind's surface-distance
(ignored pixels as background in both masks, SPEC section 9); no value is copied from our own output.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("rich")
pytest.importorskip("PIL")

from helpers import FixedLogits  # noqa: E402
from seglosses.cli.data import CropDataset, CropSpec, DataError, SegData, from_datasets, load_data  # noqa: E402
from seglosses.cli.train import RunSetup, TrainConfig, build_loss, fingerprint, validate  # noqa: E402

VOID = 255
TINY = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=2)


def _void_border(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the pixels on a class boundary set to :data:`VOID` (as Pascal VOC draws its masks)."""
    edge = np.zeros(mask.shape, bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:-1] |= mask[1:] != mask[:-1]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    out = mask.copy()
    out[edge] = VOID
    return out


def _voc_folder(
    root: Path, classes: int, n: int = 6, shape: tuple[int, int] = (40, 48), first: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """PNG pairs whose masks hold ``classes`` classes and a void border; returns the masks (sorted by name).

    ``first``: another shape for the first pair (smaller than the crop: training pads it).
    """
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(5)
    masks = []
    for i in range(n):
        size = first if (i == 0 and first is not None) else shape
        mask = np.zeros(size, np.uint8)
        side = min(9, min(size) // 2)
        for c in range(1, classes):
            y, x = rng.integers(1, min(size) - side, 2)
            mask[y : y + side, x : x + side] = c
        image = (mask * 60 + rng.integers(0, 40, size)).astype(np.uint8)
        mask = _void_border(mask)
        Image.fromarray(image).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
        masks.append(mask)
    return masks


# --------------------------------------------------------------------------------------------------- data


def test_folder_with_a_void_border_needs_the_ignore_label(tmp_path):
    masks = _voc_folder(tmp_path / "voc", classes=3)
    with pytest.raises(DataError, match=r"mask value 255 out of range.*--ignore-index 255"):
        load_data(str(tmp_path / "voc"))
    data = load_data(str(tmp_path / "voc"), ignore_index=VOID)
    assert data.ignore_index == VOID
    assert data.num_classes == 3
    assert data.mode == "multiclass"
    train = np.concatenate([m.ravel() for m in masks[: data.num_train]])
    kept = train[train != VOID]
    expected = np.bincount(kept, minlength=3) / kept.size
    assert data.class_fractions() == pytest.approx(expected.tolist(), abs=1e-12)
    everything = np.concatenate([m.ravel() for m in masks])
    share = np.mean(everything == VOID)
    assert f"ignore label 255: {share:.1%} of all pixels" in data.description
    # the masks are read with the void value kept (the losses and metrics leave it out)
    _, mask = data.val[0]
    np.testing.assert_array_equal(mask.numpy(), masks[data.num_train].astype(np.int64))


def test_binary_folder_with_a_void_border(tmp_path):
    _voc_folder(tmp_path / "voc", classes=2)
    data = load_data(str(tmp_path / "voc"), ignore_index=VOID)
    assert data.mode == "binary"
    assert data.num_classes == 2


@pytest.mark.parametrize(
    ("spec_suffix", "ignore", "message"),
    [
        (":classes=300", VOID, r"`ignore_index`=255 is one of the class indices \[0, 300\)"),
        ("", 1, r"mask value 255 out of range: .*--ignore-index 255"),
        (":classes=4", 3, r"`ignore_index`=3 is one of the class indices \[0, 4\)"),
        ("", True, r"`ignore_index` must be an integer mask value or None; got True"),
        ("", 2.5, r"`ignore_index` must be an integer mask value or None; got 2.5"),
    ],
)
def test_bad_ignore_labels_for_a_folder(tmp_path, spec_suffix, ignore, message):
    _voc_folder(tmp_path / "voc", classes=3)
    with pytest.raises(DataError, match=message):
        load_data(str(tmp_path / "voc") + spec_suffix, ignore_index=ignore)


def test_declared_classes_with_the_ignore_label(tmp_path):
    _voc_folder(tmp_path / "voc", classes=3)
    data = load_data(str(tmp_path / "voc") + ":classes=5", ignore_index=VOID)
    assert data.num_classes == 5
    with pytest.raises(DataError, match=r"out of range \[0, 2\) \(classes=2 besides the ignore label 255\)"):
        load_data(str(tmp_path / "voc") + ":classes=2", ignore_index=VOID)


def test_named_datasets_check_the_ignore_label():
    data = load_data("synthetic", ignore_index=VOID)
    assert data.ignore_index == VOID
    assert "ignore" not in load_data("synthetic").description
    with pytest.raises(DataError, match=r"`ignore_index`=2 is one of the class indices \[0, 3\)"):
        load_data("synthetic", ignore_index=2)


class _Masks(torch.utils.data.Dataset):
    def __init__(self, masks: list[torch.Tensor]) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.masks[index]
        return torch.rand(1, *mask.shape), mask


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
def test_datasets_with_the_ignore_label(dtype):
    mask = torch.tensor(_void_border(np.pad(np.ones((4, 4), np.uint8), 3)).astype(np.int64)).to(dtype)
    pair = (_Masks([mask]), _Masks([mask]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\) for num_classes=2; val\[0\] holds values in"):
        from_datasets(*pair, num_classes=2, caller="compare")
    data = from_datasets(*pair, num_classes=2, caller="compare", ignore_index=VOID)
    assert data.ignore_index == VOID
    assert "ignore label 255" in data.description
    bad = mask.clone()
    bad[0, 0] = 7
    with pytest.raises(ValueError, match=r"\(besides the ignore label 255\); val\[0\] holds values in \[0, 7\]"):
        from_datasets(_Masks([bad]), _Masks([bad]), num_classes=2, caller="compare", ignore_index=VOID)
    with pytest.raises(ValueError, match=r"compare: `ignore_index`=0 is one of the class indices \[0, 2\)"):
        from_datasets(*pair, num_classes=2, caller="compare", ignore_index=0)


def test_negative_ignore_label_of_a_dataset():
    mask = torch.zeros(8, 8, dtype=torch.int64)
    mask[2:5, 2:5] = 1
    mask[0] = -100  # torch's cross-entropy convention
    data = from_datasets(_Masks([mask]), _Masks([mask]), num_classes=2, caller="compare", ignore_index=-100)
    assert data.ignore_index == -100


def test_training_crops_are_padded_with_the_ignore_label():
    mask = torch.ones(5, 6, dtype=torch.int64)
    crops = CropDataset(_Masks([mask]), (8, 8), pad_label=VOID)
    _, out = crops[CropSpec(0, starts=(0, 0))]
    expected = np.full((8, 8), VOID)
    expected[:5, :6] = 1
    np.testing.assert_array_equal(out.numpy(), expected)
    _, background = CropDataset(_Masks([mask]), (8, 8))[CropSpec(0, starts=(0, 0))]
    assert int(background[5:].max()) == 0  # without an ignore label: background, as before


# --------------------------------------------------------------------------------------------------- losses


def test_registry_losses_get_the_ignore_label():
    loss = build_loss("dice_ce", "multiclass", {}, {}, VOID)
    assert loss.ignore_index == VOID
    # the same value as the loss on the kept pixels alone (a (1, C, M) layout of only those pixels)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 6, 7))
    target[:, ::2, 1::3] = VOID
    keep = target != VOID
    flat_logits = logits.permute(1, 0, 2, 3)[:, keep][None, :, :, None]
    flat_target = target[keep][None, :, None]
    expected = build_loss("dice_ce", "multiclass", {}, {})(flat_logits, flat_target)
    assert float(loss(logits, target)) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError, match=r"ignore_index=0 differs from the data's ignore label 255"):
        build_loss("dice", "multiclass", {"ignore_index": 0}, {}, VOID)


def test_extra_loss_factories_must_take_the_ignore_label():
    def bare(mode: str) -> nn.Module:
        return nn.Identity()

    seen: list[int] = []

    def aware(mode: str, ignore_index: int | None = None) -> nn.Module:
        seen.append(ignore_index)  # type: ignore[arg-type]
        return nn.Identity()

    with pytest.raises(ValueError, match=r"the extra loss 'bare': the data has the ignore label 255, but its factory"):
        build_loss("bare", "binary", {}, {"bare": bare}, VOID)
    build_loss("aware", "binary", {}, {"aware": aware}, VOID)
    build_loss("bare", "binary", {}, {"bare": bare})  # no ignore label: called as before
    assert seen == [VOID]


def test_fingerprint_keeps_runs_with_and_without_the_ignore_label_apart():
    data = load_data("synthetic")
    config = TrainConfig(epochs=1)
    plain = fingerprint(data, config, "dice", {}, RunSetup())
    from dataclasses import replace

    assert fingerprint(replace(data, ignore_index=VOID), config, "dice", {}, RunSetup()) != plain


# --------------------------------------------------------------------------------------------------- validation


def _counts(pred: np.ndarray, truth: np.ndarray, classes: range) -> tuple[np.ndarray, ...]:
    keep = truth != VOID
    p, t = pred[keep], truth[keep]
    tp = np.array([np.sum((p == c) & (t == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum((p == c) & (t != c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum((p != c) & (t == c)) for c in classes], dtype=np.float64)
    return tp, fp, fn


def _deepmind(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """HD95 and NSD (tolerance 1, spacing 1) of one class by surface-distance, with compare's empty-mask rules."""
    sd = pytest.importorskip("surface_distance")
    if not gt.any() and not pred.any():
        return 0.0, 1.0
    if not gt.any() or not pred.any():
        return math.sqrt(sum((n - 1) ** 2 for n in gt.shape)), 0.0
    dists = sd.compute_surface_distances(gt, pred, (1.0, 1.0))
    return float(sd.compute_robust_hausdorff(dists, 95)), float(sd.compute_surface_dice_at_tolerance(dists, 1.0))


def _blobs(rng: np.random.Generator, classes: int, shape: tuple[int, int] = (20, 24)) -> np.ndarray:
    mask = np.zeros(shape, np.int64)
    for c in range(1, classes):
        y, x = rng.integers(2, 12, 2)
        mask[y : y + 6, x : x + 7] = c
    return mask


@pytest.mark.parametrize("classes", [2, 3])
def test_validation_leaves_ignored_pixels_out(classes):
    rng = np.random.default_rng(classes)
    truths = [_void_border(_blobs(rng, classes)) for _ in range(3)]
    # predictions: the true class with some noise; inside the void border anything, mostly foreground
    preds = []
    for t in truths:
        p = np.where(rng.random(t.shape) < 0.8, t, rng.integers(0, classes, t.shape))
        p = np.where(t == VOID, rng.integers(1, classes, t.shape), p)
        preds.append(p)
    images = [torch.zeros(1, *truths[0].shape) for _ in truths]
    masks = [torch.from_numpy(t) for t in truths]
    mode = "binary" if classes == 2 else "multiclass"
    data = SegData(
        name="fixed",
        mode=mode,
        class_names=["background"] + [f"c{c}" for c in range(1, classes)],
        ndim=2,
        train=None,  # type: ignore[arg-type]
        val=_Pairs(images, masks),
        crop=None,
        in_channels=1,
        ignore_index=VOID,
    )
    if mode == "binary":
        logits = [torch.from_numpy(np.where(p == 1, 4.0, -4.0)).float()[None] for p in preds]
    else:
        logits = [torch.from_numpy(np.eye(classes, dtype=np.float32)[p].transpose(2, 0, 1) * 4.0) for p in preds]
    result = validate(FixedLogits(logits), data, multiple=4, device="cpu", setup=RunSetup(), surface=True)
    fg = range(1, classes)
    counts = [_counts(p, t, fg) for p, t in zip(preds, truths, strict=True)]
    tp, fp, fn = (sum(c[k] for c in counts) for k in range(3))
    assert result.metrics["dice"]["mean"] == pytest.approx(np.mean(2 * tp / (2 * tp + fp + fn)), abs=1e-12)
    assert result.metrics["precision"]["mean"] == pytest.approx(np.mean(tp / (tp + fp)), abs=1e-12)
    per_image = [np.mean(2 * a / (2 * a + b + c)) for a, b, c in counts]
    assert result.per_image["dice"] == pytest.approx(per_image, abs=1e-12)
    # surface metrics: ignored pixels are background in both masks
    expected = []
    for p, t in zip(preds, truths, strict=True):
        kept = t != VOID
        per_class = [_deepmind((t == c) & kept, (p == c) & kept) for c in fg]
        expected.append((np.mean([v[0] for v in per_class]), np.mean([v[1] for v in per_class])))
    assert result.per_image["hd95"] == pytest.approx([e[0] for e in expected], rel=1e-9)
    assert result.per_image["nsd"] == pytest.approx([e[1] for e in expected], rel=1e-9)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, images: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


# --------------------------------------------------------------------------------------------------- compare


class _Recording(nn.Module):
    """A loss for ``extra_losses`` that records the targets it sees and the ignore label it was built with."""

    seen: list[torch.Tensor] = []
    labels: list[int | None] = []

    def __init__(self, mode: str, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        _Recording.labels.append(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _Recording.seen.append(target.detach().clone())
        keep = (target != self.ignore_index).float()
        return ((logits - (target == 1).float()) ** 2 * keep).sum() / keep.sum().clamp_min(1)


def test_compare_trains_and_scores_with_the_ignore_label(tmp_path):
    import seglosses

    _voc_folder(tmp_path / "voc", classes=2, n=5, shape=(16, 16), first=(9, 10))  # the first is padded to 16
    _Recording.seen.clear()
    _Recording.labels.clear()
    table = seglosses.compare(
        ["dice", "recording"],
        data=str(tmp_path / "voc"),
        ignore_index=VOID,
        extra_losses={"recording": _Recording},
        seeds=1,
        config=TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=2),
        out=None,
        progress=False,
        log=lambda _: None,
    )
    assert [r.status for r in table.runs] == ["ok", "ok"]
    assert set(_Recording.labels) == {VOID}
    seen = torch.cat([t.flatten() for t in _Recording.seen])
    assert set(seen.unique().tolist()) == {0.0, 1.0, float(VOID)}  # the void border and the padding reach the loss
    with pytest.raises(ValueError, match=r"`ignore_index`=1 is one of the class indices \[0, 2\)"):
        seglosses.compare(["dice"], data="synthetic:binary", ignore_index=1, out=None, progress=False)


def test_cli_ignore_index_and_brackets_in_messages(tmp_path):
    typer_testing = pytest.importorskip("typer.testing")
    from seglosses.cli.app import app

    _voc_folder(tmp_path / "voc", classes=3, n=5, shape=(24, 24))
    runner = typer_testing.CliRunner()
    base = ["compare", "--data", str(tmp_path / "voc"), "--no-progress", "--seeds", "1", "--epochs", "1"]
    base += ["--steps-per-epoch", "1", "--batch-size", "2", "--losses", "dice,focal"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2
    assert "--ignore-index 255" in refused.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--ignore-index", "255"])
    assert result.exit_code == 0, result.output
    assert "ignore label 255" in result.output
    # one validation image and one seed: no interval, and the text says so literally (rich markup would drop it)
    assert "95% CI [nan, nan]" in result.output
    bad = runner.invoke(app, ["compare", "--data", "synthetic", "--out", str(tmp_path / "c"), "--ignore-index", "2"])
    assert bad.exit_code == 2
    assert "is one of the class indices [0, 3)" in bad.output


def test_tune_passes_the_ignore_label(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from seglosses.cli import tune as tune_module

    _voc_folder(tmp_path / "voc", classes=2, n=4, shape=(16, 16))
    labels: list[int | None] = []
    real = tune_module.build_loss

    def spy(name, mode, args, extra, ignore_index=None):
        labels.append(ignore_index)
        return real(name, mode, args, extra, ignore_index)

    monkeypatch.setattr(tune_module, "build_loss", spy)
    result = tune_module.tune(
        "tversky",
        trials=1,
        data=str(tmp_path / "voc"),
        ignore_index=VOID,
        out=tmp_path / "t",
        config=TINY,
        confirm_seeds=0,
        progress=False,
        log=lambda _: None,
    )
    assert labels == [VOID]
    assert len(result.trials) == 1


@pytest.mark.parametrize("name", ["a/b", "..", ".hidden", "", "x\\y"])
def test_loss_names_that_cannot_name_result_files_are_refused(name, tmp_path):
    # each run is saved as runs/<name>__seed<k>.json: "a/b" or ".." would point elsewhere, ".x" is a temporary name
    import seglosses

    with pytest.raises(ValueError, match=r"cannot name its result files"):
        seglosses.compare(
            [name], data="synthetic:binary", extra_losses={name: _Recording}, out=tmp_path, progress=False
        )


def test_class_names_for_datasets_name_the_result_columns():
    import seglosses
    from seglosses.cli.compare import resolve_data

    masks = [torch.from_numpy(np.pad(np.full((4, 4), c, np.int64), 2)) for c in (1, 2, 1, 2)]
    pair = (_Masks(masks[:3]), _Masks(masks[3:]))
    names = ["background", "nucleus", "membrane"]
    table = seglosses.compare(
        ["dice"],
        data=pair,
        num_classes=3,
        class_names=names,
        seeds=1,
        config=TINY,
        out=None,
        progress=False,
        log=lambda _: None,
    )
    assert table.class_names == names
    assert "dice_membrane" in table.columns
    named = resolve_data("synthetic", num_classes=None, crop=None, caller="c", class_names=["a", "b", "c"])
    assert named.class_names == ["a", "b", "c"]
    # other names, another run identity (results are keyed by class name: a resumed folder must not mix them)
    from seglosses.cli.train import RunSetup, fingerprint

    plain = resolve_data("synthetic", num_classes=None, crop=None, caller="c")
    same = resolve_data("synthetic", num_classes=None, crop=None, caller="c", class_names=plain.class_names)
    config = TrainConfig(epochs=1)
    assert fingerprint(same, config, "dice", {}, RunSetup()) == fingerprint(plain, config, "dice", {}, RunSetup())
    assert fingerprint(named, config, "dice", {}, RunSetup()) != fingerprint(plain, config, "dice", {}, RunSetup())
    for bad, message in (
        (["background", "nucleus"], r"compare: `class_names`: 2 class names for 3 classes"),
        (["background", "mean", "x"], r"'mean' cannot name a class"),
        (["a", "a", "b"], r"class names must differ; 'a' appear twice"),
        ("abc", r"class names must be a sequence of strings"),
        (["a", "", "b"], r"class names must be non-empty strings"),
    ):
        with pytest.raises(ValueError, match=message):
            seglosses.compare(["dice"], data=pair, num_classes=3, class_names=bad, out=None, progress=False)
