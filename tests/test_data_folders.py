"""Real-world layouts of ``--data FOLDER``: how each file is read, or the error that names it.

Expected arrays come from the arrays the test wrote (NumPy), never from the loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seglosses.cli.data import CropDataset, CropSpec, DataError, TensorPairs, from_datasets, load_data


def _folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root


def _mask(i: int, shape: tuple[int, ...] = (24, 24)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[3 + i : 10 + i, 4:14] = 1
    return mask


def _normalised(channel: np.ndarray) -> np.ndarray:
    """The documented per-channel scaling: 1st and 99.8th percentiles of the float32 pixels to 0 and 1."""
    x = channel.astype(np.float32)
    lo, hi = np.percentile(x, [1.0, 99.8])
    return (x - lo) / max(float(hi - lo), 1e-6)


def _items(data):
    return [data.train[i] for i in range(data.num_train)] + [data.val[i] for i in range(data.num_val)]


def test_data_nifti_modalities_on_the_4th_axis_are_all_channels(tmp_path):
    # Medical Segmentation Decathlon layout: image (X, Y, Z, 4 modalities), mask (X, Y, Z). The 4th modality
    # used to be dropped as if it were an alpha channel.
    nibabel = pytest.importorskip("nibabel")
    root = _folder(tmp_path / "msd")
    rng = np.random.default_rng(0)
    written = []
    for i in range(3):
        image = rng.normal(size=(12, 10, 6, 4)).astype(np.float32)
        mask = np.zeros((12, 10, 6), np.uint8)
        mask[2:6, 3:7, 1 + i : 4 + i] = 1
        nibabel.save(nibabel.Nifti1Image(image, np.eye(4)), root / "images" / f"c{i}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), root / "masks" / f"c{i}.nii.gz")
        written.append((image, mask))
    data = load_data(str(root))
    assert (data.in_channels, data.ndim, data.mode) == (4, 3, "binary")
    for (image, mask), (got_image, got_mask) in zip(written, _items(data), strict=True):
        expected = np.stack([_normalised(image[..., c]) for c in range(4)])
        np.testing.assert_allclose(got_image.numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got_mask.numpy(), mask)


def test_data_nifti_trailing_singleton_axis_is_a_volume(tmp_path):
    # (X, Y, Z, 1), as some converters write: a volume, for the image and for the mask.
    nibabel = pytest.importorskip("nibabel")
    root = _folder(tmp_path / "nii4")
    rng = np.random.default_rng(1)
    written = []
    for i in range(3):
        image = rng.normal(size=(12, 10, 6, 1)).astype(np.float32)
        mask = np.zeros((12, 10, 6, 1), np.uint8)
        mask[2:6, 3:7, 1 + i : 4 + i] = 2
        nibabel.save(nibabel.Nifti1Image(image, np.eye(4)), root / "images" / f"c{i}.nii.gz")
        nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), root / "masks" / f"c{i}.nii.gz")
        written.append((image, mask))
    data = load_data(str(root))
    assert (data.in_channels, data.ndim, data.num_classes) == (1, 3, 3)
    for (image, mask), (got_image, got_mask) in zip(written, _items(data), strict=True):
        np.testing.assert_allclose(got_image.numpy(), _normalised(image[..., 0])[None], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got_mask.numpy(), mask[..., 0])


def test_data_nifti_4d_mask_is_refused(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    root = _folder(tmp_path / "onehot")
    for i in range(2):
        nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), root / "images" / f"c{i}.nii")
        nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4, 3), np.uint8), np.eye(4)), root / "masks" / f"c{i}.nii")
    with pytest.raises(DataError, match=r"c0\.nii: masks must be 2D or 3D volumes of class indices; got shape"):
        load_data(str(root))


def test_data_grey_alpha_png_loses_its_alpha(tmp_path):
    # 'LA' PNGs (grey + alpha) as image and as mask: one channel, the alpha ignored (as for RGBA).
    from PIL import Image

    root = _folder(tmp_path / "la")
    rng = np.random.default_rng(2)
    written = []
    for i in range(3):
        grey = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        alpha = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        Image.fromarray(np.stack([grey, alpha], -1), "LA").save(root / "images" / f"a{i}.png")
        mask = _mask(i)
        Image.fromarray(np.stack([mask, np.full_like(mask, 255)], -1), "LA").save(root / "masks" / f"a{i}.png")
        written.append((grey, mask))
    data = load_data(str(root))
    assert (data.in_channels, data.num_classes, data.mode) == (1, 2, "binary")
    for (grey, mask), (got_image, got_mask) in zip(written, _items(data), strict=True):
        np.testing.assert_allclose(got_image.numpy(), _normalised(grey)[None], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_mask.numpy(), mask)


def test_data_tiff_stack_of_three_slices_is_3d_not_rgb(tmp_path):
    # A grey (minisblack) stack whose last axis is 3 long is a volume; only an RGB-tagged TIFF has colours.
    tifffile = pytest.importorskip("tifffile")
    root = _folder(tmp_path / "stack")
    rng = np.random.default_rng(3)
    written = []
    for i in range(3):
        image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        mask = np.zeros((10, 12, 3), np.uint8)
        mask[2:6, 3 + i : 8 + i, 0] = 1
        mask[2:6, 3:5, 2] = 2  # differs along the last axis: it was refused as "a colour mask"
        tifffile.imwrite(root / "images" / f"s{i}.tif", image, photometric="minisblack")
        tifffile.imwrite(root / "masks" / f"s{i}.tif", mask, photometric="minisblack")
        written.append((image, mask))
    data = load_data(str(root))
    assert (data.ndim, data.in_channels, data.num_classes) == (3, 1, 3)
    for (image, mask), (got_image, got_mask) in zip(written, _items(data), strict=True):
        np.testing.assert_allclose(got_image.numpy(), _normalised(image)[None], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_mask.numpy(), mask)


def test_data_rgb_tagged_tiff_colour_mask_is_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    root = _folder(tmp_path / "rgbtif")
    for i in range(2):
        tifffile.imwrite(root / "images" / f"s{i}.tif", np.zeros((10, 12, 3), np.uint8), photometric="rgb")
        colour = np.zeros((10, 12, 3), np.uint8)
        colour[2:5, 2:5] = (255, 0, 0)
        tifffile.imwrite(root / "masks" / f"s{i}.tif", colour, photometric="rgb")
    with pytest.raises(DataError, match=r"s0\.tif: a colour mask \(3 channels that differ, shape \(10, 12, 3\)\)"):
        load_data(str(root))


def _png_pairs(root: Path, masks: list[np.ndarray]) -> Path:
    from PIL import Image

    _folder(root)
    rng = np.random.default_rng(4)
    for i, mask in enumerate(masks):
        Image.fromarray(rng.integers(0, 256, mask.shape, dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i}.png")
    return root


@pytest.mark.parametrize("white", [255, 65535])
def test_data_binary_mask_saved_as_black_white_says_divide(tmp_path, white):
    dtype = np.uint8 if white == 255 else np.uint16
    root = _png_pairs(tmp_path / "bw", [_mask(i).astype(dtype) * dtype(white) for i in range(3)])
    with pytest.raises(
        DataError, match=rf"p0\.png: mask value {white} out of range: .*\(a 0/{white} mask\? divide it by"
    ):
        load_data(str(root))


def test_data_voc_void_border_is_not_called_a_0_255_mask(tmp_path):
    # Pascal VOC: classes 0..2 plus 255 on the object borders; dividing by 255 would be wrong advice.
    masks = []
    for i in range(3):
        mask = _mask(i) * 2
        mask[3 + i, 4:14] = 255
        masks.append(mask)
    root = _png_pairs(tmp_path / "voc", masks)
    with pytest.raises(DataError) as info:
        load_data(str(root))
    message = str(info.value)
    assert "p0.png: mask value 255 out of range" in message
    assert "divide" not in message
    assert "give it as the ignore label: --ignore-index 255, or ignore_index=255 in Python" in message
    data = load_data(str(root), ignore_index=255)  # the advice works
    assert data.num_classes == 3
    assert data.ignore_index == 255


def test_data_class_fractions_count_only_training_masks_with_many_declared_classes(tmp_path):
    # classes=200 and a training mask holding 150: its counts used to be skipped (values > 128), which shifted
    # the validation mask's counts into the training fractions.
    masks = [_mask(i) for i in range(5)]
    masks[0][0, :6] = 150
    masks[4][:, :] = 7  # the validation pair (the last 20 %)
    root = _png_pairs(tmp_path / "many", masks)
    data = load_data(str(root) + ":classes=200")
    assert (data.num_train, data.num_val, data.num_classes) == (4, 1, 200)
    train = np.concatenate([m.ravel() for m in masks[:4]]).astype(np.int64)
    expected = np.bincount(train, minlength=200) / train.size
    np.testing.assert_allclose(data.class_fractions(), expected, rtol=0, atol=1e-15)


def test_data_jpeg_images_follow_exif_orientation(tmp_path):
    # Photos stored 24 x 32 with EXIF orientation 6 (rotate 90 degrees clockwise to display), masks drawn on the
    # displayed 32 x 24 picture, as annotation tools show it.
    from PIL import Image

    root = _folder(tmp_path / "jpeg")
    rng = np.random.default_rng(5)
    for i in range(3):
        photo = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        exif = photo.getexif()
        exif[0x0112] = 6
        photo.save(root / "images" / f"j{i}.jpg", exif=exif)
        Image.fromarray(_mask(i, (32, 24))).save(root / "masks" / f"j{i}.png")
    data = load_data(str(root))
    assert (data.in_channels, data.num_classes) == (3, 2)
    for i, (got_image, got_mask) in enumerate(_items(data)):
        with Image.open(root / "images" / f"j{i}.jpg") as im:
            stored = np.asarray(im.convert("RGB"))  # the decoded pixels, not rotated
        displayed = np.rot90(stored, k=-1)  # clockwise
        expected = np.stack([_normalised(displayed[..., c]) for c in range(3)])
        np.testing.assert_allclose(got_image.numpy(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_mask.numpy(), _mask(i, (32, 24)))


def test_data_jpeg_mask_is_refused(tmp_path):
    from PIL import Image

    root = _png_pairs(tmp_path / "jpegmask", [_mask(i) for i in range(2)])
    Image.fromarray(_mask(0) * 255).save(root / "masks" / "p2.jpg")
    with pytest.raises(DataError, match=r"p2\.jpg: a JPEG mask; JPEG is lossy.*save masks losslessly \(PNG or TIFF\)"):
        load_data(str(root))


def test_data_files_in_subfolders_are_named_in_the_error(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "nested")
    for sub in ("images", "masks"):
        (root / sub / "train").mkdir()
        for i in range(2):
            Image.fromarray(_mask(i)).save(root / sub / "train" / f"n{i}.png")
    with pytest.raises(DataError, match=r"images: no image files .*subfolders are not read \(found train\)"):
        load_data(str(root))


def test_data_folder_check_reports_progress(tmp_path, monkeypatch):
    from seglosses.cli import compare as compare_module

    root = _png_pairs(tmp_path / "many", [_mask(i % 5, (8, 8)) for i in range(compare_module.CHECK_BAR_FILES)])
    calls: list[tuple[int, int]] = []
    load_data(str(root), on_file=lambda done, total: calls.append((done, total)))
    n = compare_module.CHECK_BAR_FILES
    assert calls == [(i, n) for i in range(1, n + 1)]
    # compare's bar: started for a folder of CHECK_BAR_FILES pairs, never for fewer, and stopped at the end
    started: list[int] = []

    class _Bar:
        def __init__(self, *columns: object, transient: bool) -> None:
            assert transient
            self.done = 0

        def start(self) -> None:
            started.append(1)

        def add_task(self, name: str, total: int) -> int:
            assert total == n
            return 0

        def update(self, task: int, completed: int) -> None:
            self.done = completed

        def stop(self) -> None:
            started.append(-self.done)

    monkeypatch.setattr("rich.progress.Progress", _Bar)
    compare_module.resolve_data(str(root), num_classes=None, crop=None, caller="compare", progress=True)
    assert started == [1, -n]
    few = _png_pairs(tmp_path / "few", [_mask(i) for i in range(3)])
    compare_module.resolve_data(str(few), num_classes=None, crop=None, caller="compare", progress=True)
    compare_module.resolve_data(str(root), num_classes=None, crop=None, caller="compare", progress=False)
    assert started == [1, -n]


def test_data_folder_with_train_and_val_subfolders_keeps_that_split(tmp_path):
    root = tmp_path / "split"
    train_masks = [_mask(i) for i in range(3)]
    val_masks = [_mask(i, (24, 24)) * 2 for i in range(2)]  # class 2 only in validation
    _png_pairs(root / "train", train_masks)
    _png_pairs(root / "validation", val_masks)  # the same file names as train/: separate folders
    data = load_data(str(root))
    assert (data.num_train, data.num_val) == (3, 2)
    assert data.num_classes == 3
    assert "3 train / 2 validation pairs (train/ and validation/)" in data.description
    # the fractions count the training masks only
    pixels = np.concatenate([m.ravel() for m in train_masks])
    assert data.class_fractions() == pytest.approx((np.bincount(pixels, minlength=3) / pixels.size).tolist())
    for i, expected in enumerate(val_masks):
        np.testing.assert_array_equal(data.val[i][1].numpy(), expected.astype(np.int64))
    for i, expected in enumerate(train_masks):
        np.testing.assert_array_equal(data.train[i][1].numpy(), expected.astype(np.int64))


def test_data_split_folder_errors(tmp_path):
    only_train = tmp_path / "only"
    _png_pairs(only_train / "train", [_mask(i) for i in range(2)])
    with pytest.raises(DataError, match=r"only: a split folder holds train/ and val/.*val/ \(or validation/, valid/\)"):
        load_data(str(only_train))
    val_without_masks = tmp_path / "nomasks"
    _png_pairs(val_without_masks / "train", [_mask(i) for i in range(2)])
    (val_without_masks / "val" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"nomasks/val/masks: folder not found"):
        load_data(str(val_without_masks))
    # a folder with its own images/ and masks/ is read as before, whatever else it holds
    plain = _png_pairs(tmp_path / "plain", [_mask(i) for i in range(5)])
    _png_pairs(plain / "train", [_mask(i) for i in range(2)])
    (plain / "val").mkdir()
    data = load_data(str(plain))
    assert (data.num_train, data.num_val) == (4, 1)


@pytest.mark.parametrize(
    ("dtype", "label"),
    [(torch.uint8, -100), (torch.uint8, -1), (torch.uint8, 300), (torch.int16, 65535), (torch.bool, 255)],
)
def test_data_crop_padding_keeps_an_ignore_label_the_mask_dtype_cannot_hold(dtype, label):
    # A user's Dataset of uint8 (or bool) masks with ignore_index=-100: the padding of an item smaller than the crop
    # raised 'value cannot be converted to type uint8_t without overflow' in every run (bool: padded as class 1).
    mask = np.zeros((5, 6), np.int64)
    mask[1:4, 2:5] = 1
    crops = CropDataset(TensorPairs([torch.rand(1, 5, 6)], [torch.from_numpy(mask).to(dtype)]), (8, 8), label)
    _, out = crops[CropSpec(0, starts=(0, 0))]
    expected = np.full((8, 8), label, np.int64)
    expected[:5, :6] = mask
    assert out.dtype == torch.int64
    np.testing.assert_array_equal(out.numpy(), expected)


def test_data_numpy_integer_ignore_label_of_datasets_is_a_python_int():
    # np.int64(255) passes the check but every loss refused it ('`ignore_index` must be an int or None').
    from seglosses.cli.train import build_loss

    mask = torch.zeros(6, 6, dtype=torch.int64)
    mask[0] = 255
    pair = TensorPairs([torch.rand(1, 6, 6)], [mask])
    data = from_datasets(pair, pair, num_classes=2, caller="compare", ignore_index=np.int64(255))
    assert type(data.ignore_index) is int
    assert data.ignore_index == 255
    build_loss("dice", data.mode, {}, {}, data.ignore_index)


@pytest.mark.parametrize("side", ["train", "val"])
def test_data_split_with_only_ignored_pixels_is_refused(tmp_path, side):
    # Masks made only of the ignore label on one side: nothing to train on (or to score); compare reported a
    # per-image Dice of 1.000.
    root = tmp_path / "void"
    void = [np.full((24, 24), 255, np.uint8) for _ in range(2)]
    labelled = [_mask(i) for i in range(2)]
    _png_pairs(root / "train", void if side == "train" else labelled)
    _png_pairs(root / "val", void if side == "val" else labelled)
    what = "training" if side == "train" else "validation"
    with pytest.raises(DataError, match=rf"void/{side}/masks: every pixel of the {what} masks is the ignore label 255"):
        load_data(str(root), ignore_index=255)
    # one mask made only of the ignore label is fine
    _png_pairs(tmp_path / "one", [np.full((24, 24), 255, np.uint8)] + [_mask(i) for i in range(4)])
    data = load_data(str(tmp_path / "one"), ignore_index=255)
    pixels = np.concatenate([_mask(i).ravel() for i in range(3)])  # train: the void mask and masks 0..2
    np.testing.assert_allclose(data.class_fractions(), np.bincount(pixels) / pixels.size, rtol=0, atol=1e-15)


def test_data_palette_png_image_is_read_as_its_colours(tmp_path):
    # A palette PNG holds class indices as a mask, but as an image its pixels are the palette's colours: it was
    # read as one channel of palette indices (a quantised photo trained on arbitrary numbers).
    from PIL import Image

    root = _folder(tmp_path / "palette")
    rng = np.random.default_rng(6)
    for i in range(3):
        rgb = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(rgb).quantize(16).save(root / "images" / f"q{i}.png")
        Image.fromarray(_mask(i)).save(root / "masks" / f"q{i}.png")
    data = load_data(str(root))
    assert data.in_channels == 3
    for i, (got_image, got_mask) in enumerate(_items(data)):
        with Image.open(root / "images" / f"q{i}.png") as im:
            assert im.mode == "P"
            colours = np.asarray(im.convert("RGB"))
        expected = np.stack([_normalised(colours[..., c]) for c in range(3)])
        np.testing.assert_allclose(got_image.numpy(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got_mask.numpy(), _mask(i))
    # a grey palette is one grey channel, as an 'L' image beside it
    grey_root = _folder(tmp_path / "grey")
    for i in range(3):
        grey = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        image = Image.fromarray(grey).convert("P") if i == 0 else Image.fromarray(grey)
        if i == 0:
            image.putpalette([v for g in range(256) for v in (g, g, g)])
        image.save(grey_root / "images" / f"g{i}.png")
        Image.fromarray(_mask(i)).save(grey_root / "masks" / f"g{i}.png")
    data = load_data(str(grey_root))
    assert data.in_channels == 1
    with Image.open(grey_root / "images" / "g0.png") as im:
        assert im.mode == "P"
        grey0 = np.asarray(im.convert("L"))
    np.testing.assert_allclose(data.train[0][0].numpy(), _normalised(grey0)[None], rtol=1e-6, atol=1e-6)


def test_data_split_folder_with_two_validation_folders_is_refused(tmp_path):
    # val/ and validation/ side by side: one of them was ignored without a word.
    root = tmp_path / "two"
    _png_pairs(root / "train", [_mask(i) for i in range(2)])
    _png_pairs(root / "val", [_mask(i) for i in range(1)])
    _png_pairs(root / "validation", [_mask(i) for i in range(2)])
    with pytest.raises(DataError, match=r"two: two validation folders \(val/, validation/\); keep one"):
        load_data(str(root))
    only = tmp_path / "only"
    _png_pairs(only / "train", [_mask(i) for i in range(2)])
    _png_pairs(only / "valid", [_mask(i) for i in range(1)])
    assert "2 train / 1 validation pairs (train/ and valid/)" in load_data(str(only)).description


def test_data_broken_symbolic_link_is_named(tmp_path):
    # A dangling link to an image and to its mask (data moved): the pair was left out without a word.
    root = _png_pairs(tmp_path / "links", [_mask(i) for i in range(3)])
    (root / "images" / "p9.png").symlink_to(tmp_path / "moved" / "p9.png")
    (root / "masks" / "p9.png").symlink_to(tmp_path / "moved" / "p9_mask.png")
    with pytest.raises(DataError, match=r"images/p9\.png: a broken symbolic link \(to .*moved/p9\.png\)"):
        load_data(str(root))


def test_data_negative_mask_value_hints_at_the_ignore_label(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    root = _folder(tmp_path / "neg")
    for i in range(3):
        mask = _mask(i).astype(np.int16)
        mask[0] = -1
        tifffile.imwrite(root / "images" / f"t{i}.tif", np.full((24, 24), i, np.uint8))
        tifffile.imwrite(root / "masks" / f"t{i}.tif", mask)
    with pytest.raises(
        DataError,
        match=r"t0\.tif: mask value -1 out of range; class indices start at 0 \(if -1 marks pixels to "
        r"ignore: --ignore-index -1, or ignore_index=-1 in Python\)",
    ):
        load_data(str(root))
    assert load_data(str(root), ignore_index=-1).num_classes == 2


def test_data_folder_class_names_from_classes_txt(tmp_path):
    masks = [_mask(i) * 2 for i in range(3)]  # classes 0 and 2 present; classes.txt declares 4
    root = _png_pairs(tmp_path / "named", masks)
    (root / "classes.txt").write_text("background\n aeroplane \n\nbicycle\nbird\n", encoding="utf-8")
    data = load_data(str(root))
    assert data.class_names == ["background", "aeroplane", "bicycle", "bird"]
    assert data.num_classes == 4
    assert data.mode == "multiclass"
    pixels = np.concatenate([m.ravel() for m in masks[: data.num_train]])
    expected = np.bincount(pixels, minlength=4) / pixels.size
    assert data.class_fractions() == pytest.approx(expected.tolist())
    assert "bicycle" in data.description
    # the spec's count must agree; a mask value beyond the names is named with the file
    with pytest.raises(DataError, match=r"classes.txt: 4 class names, but the data spec says classes=3"):
        load_data(str(root) + ":classes=3")
    (root / "classes.txt").write_text("background\nfg\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p0\.png: mask value 2 out of range \[0, 2\) \(classes.txt names 2\)"):
        load_data(str(root))
    (root / "classes.txt").write_text("background\nfg\nfg\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"class names must differ; 'fg' appear twice"):
        load_data(str(root))
    (root / "classes.txt").write_text("background\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"needs at least 2 class names"):
        load_data(str(root))
    (root / "classes.txt").write_text("background\nmean\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'mean' cannot name a class"):
        load_data(str(root))


def test_split_folder_class_names(tmp_path):
    root = tmp_path / "split"
    _png_pairs(root / "train", [_mask(i) for i in range(2)])
    _png_pairs(root / "val", [_mask(i) for i in range(2)])
    (root / "classes.txt").write_text("sky\ncell\n", encoding="utf-8")
    data = load_data(str(root))
    assert data.class_names == ["sky", "cell"]
    assert data.mode == "binary"
