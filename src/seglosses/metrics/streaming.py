r"""Streaming accumulation of the metrics over batches: ``update`` / ``compute`` / ``reset``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from seglosses._checks import check_bool, check_classes_left, check_metric_names, check_spacing, check_spacing_form
from seglosses._distributed import collective_device, is_ready, sync_int_state
from seglosses._types import Average, Mode
from seglosses.metrics import _core
from seglosses.metrics import surface as _surface

__all__ = ["SegmentationMetrics"]

# the per-image state of each metric: the exact int64 sums of _core.image_sums (integer parts, fractions in
# multiples of 2**-32, images with a value)
_IMAGE_SUMS = ("whole", "sum", "count")


class SegmentationMetrics:
    r"""Accumulate hard-prediction metrics over batches, for validation loops.

    ``compute()`` returns exactly the numbers of one call of each function of :mod:`seglosses.metrics.functional`
    on the concatenated batches, with the same arguments, on the same device (a macro mean over classes may differ
    in the last bit between CPU and CUDA). Without ``per_image`` the state is the int64 counts
    ``(tp, fp, fn, tn)``, each ``(C,)``, and the formulas are applied to their sums. With ``per_image`` it is, for each
    metric, the sum of the per-image values (in exact fixed point, so the order of the batches does not matter) and
    how many images had a value, ``(C_kept,)`` or ``()`` each. Either way the state is O(C), whatever the number of
    images.

    Shapes:
        - ``update`` input and target: as in :func:`seglosses.metrics.functional.confusion`; C must equal
          ``num_classes``.
        - ``compute`` values: ``(C_kept,)`` with ``average="none"`` (the default here), else ``()``; float64.
          Surface metrics with ``per_image=True`` and ``average="none"``: ``(N, C_kept)``, one row per image seen
          (as the functions of :mod:`seglosses.metrics.surface`).

    Args:
        mode: ``"binary" | "multiclass" | "multilabel"``.
        num_classes: C (1 in binary mode); required so that the state has its shape before the first batch.
        metrics: names among ``"dice", "iou", "precision", "recall", "specificity", "accuracy"`` (default all).
        average: ``"none"`` (default: per-class values for a report), ``"macro"`` or ``"micro"``; see
            :func:`seglosses.metrics.functional.dice`.
        per_image: average each image's value over images (default False).
        ignore_index: target value left out (default None).
        include_background: False drops class 0 (multiclass, multilabel; binary keeps its one class). Default True.
        zero_division: ``"nan"`` (default) or a finite number for zero denominators (as the functions).
        threshold: probability threshold for binary/multilabel (default 0.5, positive when ``p > threshold``).
        from_logits: binary/multilabel inputs are logits (default False).
        sync: under ``torch.distributed``, sum the O(C) int64 state over the ranks of ``process_group`` in
            :meth:`compute` (one ``all_reduce``; every rank must call it), so every rank gets the metrics of all
            ranks' batches; the per-image surface values are gathered from every rank (in rank order). The local
            state is left unchanged. Default False. Ignored while no process group is initialised (a single
            process computes its own numbers).
        process_group: the group to sum over, a ``torch.distributed.ProcessGroup`` (default None: the default
            group).
        surface: surface metrics to add, names among ``"hd"``, ``"hd95"``, ``"assd"``, ``"masd"``, ``"nsd"``,
            ``"boundary_iou"`` (default none): the canonical definitions of :mod:`seglosses.metrics.surface`
            (``boundary="surfel"``, their default empty-mask rules), with this object's ``average`` (``"micro"``
            raises), ``per_image``, ``include_background``, ``ignore_index``, ``threshold`` and ``from_logits``.
            Their state is the per-image, per-class values, ``(N, C_kept)`` float64 (O(N C): a distance has no
            sufficient statistic), kept on the inputs' device.
        spacing: voxel size per spatial axis for the surface metrics (array order; one number for all axes),
            default None (1).
        tolerance: the NSD tolerance in the units of ``spacing``; required with ``"nsd"``.

    Raises:
        ValueError: a bad option here, or bad input in ``update`` (the messages of the functional metrics, naming
            ``SegmentationMetrics.update``).
        TypeError: options or inputs of the wrong type.

    Note:
        torchmetrics' modular metrics (``MulticlassStatScores``, ``MulticlassJaccardIndex``, ...) keep the same
        global counts; their ``multidim_average="samplewise"`` keeps one row per image (O(N) state) where
        ``per_image=True`` here keeps sums. Distributed training: ``sync=True`` sums the state (exact integers)
        over the ranks in :meth:`compute`, as torchmetrics' ``dist_reduce_fx="sum"``; the surface metrics' per-image
        values are concatenated over the ranks (torchmetrics' ``dist_reduce_fx="cat"``), as MONAI's
        ``HausdorffDistanceMetric`` buffers them. The surface work runs on the CPU (see
        :mod:`seglosses.metrics.surface`); empty masks give the functions' default values (exactly one empty: every
        distance ``inf``, NSD and boundary IoU 0; both empty: distances 0, NSD and boundary IoU 1), and a mean
        containing ``inf`` is ``inf``.

    Examples:
        Two batches of one 2x2 binary mask give the counts of both together: TP = 1 + 1, FP = 1 + 0, FN = 0 + 1,
        so Dice = 4 / (4 + 1 + 1).

        >>> import torch
        >>> from seglosses.metrics import SegmentationMetrics
        >>> m = SegmentationMetrics(mode="binary", num_classes=1, metrics=("dice", "recall"))
        >>> m.update(torch.tensor([[[0.9, 0.2], [0.7, 0.1]]]), torch.tensor([[[1, 0], [0, 0]]]))
        >>> m.update(torch.tensor([[[0.9, 0.2], [0.3, 0.1]]]), torch.tensor([[[1, 0], [1, 0]]]))
        >>> m.compute()  # recall: 2 / (2 + 1)
        {'dice': tensor([0.6667], dtype=torch.float64), 'recall': tensor([0.6667], dtype=torch.float64)}
        >>> m.reset()
        >>> m.compute()["dice"]  # nothing seen: 0 / 0
        tensor([nan], dtype=torch.float64)

        Surface metrics stream per-image values: a 1x3 bar against a dot at its end (HD = 2, so every boundary
        element is within the tolerance 2: NSD = 1), then an exact match (HD = 0).

        >>> m = SegmentationMetrics(mode="binary", num_classes=1, metrics=("dice",), surface=("hd", "nsd"),
        ...                         tolerance=2.0, average="macro")
        >>> bar = torch.zeros(1, 3, 5, dtype=torch.long); bar[0, 1, 1:4] = 1
        >>> dot = torch.zeros(1, 3, 5, dtype=torch.long); dot[0, 1, 1] = 1
        >>> m.update(bar, dot); m.update(dot, dot)
        >>> {k: round(v.item(), 4) for k, v in m.compute().items()}  # hd: (2 + 0) / 2
        {'dice': 0.6667, 'hd': 1.0, 'nsd': 1.0}

    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_classes: int,
        metrics: Sequence[str] = _core.METRICS,
        average: Average = "none",
        per_image: bool = False,
        ignore_index: int | None = None,
        include_background: bool = True,
        zero_division: float | str = "nan",
        threshold: float = 0.5,
        from_logits: bool = False,
        sync: bool = False,
        process_group: object = None,
        surface: Sequence[str] = (),
        spacing: float | Sequence[float] | Tensor | None = None,
        tolerance: float | None = None,
    ) -> None:
        fn = type(self).__name__
        self.threshold, c = _core.check_options(
            fn,
            mode=mode,
            threshold=threshold,
            from_logits=from_logits,
            ignore_index=ignore_index,
            per_image=per_image,
            num_classes=num_classes,
            num_classes_required=True,
        )
        self._zero_division = _core.check_average_options(
            fn, average=average, include_background=include_background, zero_division=zero_division
        )
        self.metrics = check_metric_names(fn, metrics, _core.METRICS)
        if mode != "binary":
            check_classes_left(fn, num_classes, include_background)
        self.mode = mode
        self.num_classes = num_classes
        self.average = average
        self.per_image = per_image
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.zero_division = zero_division
        self.from_logits = from_logits
        check_bool(fn, "sync", sync)
        if process_group is not None and not (dist.is_available() and isinstance(process_group, dist.ProcessGroup)):
            # a wrong object was accepted here and failed only in compute(), inside the collective
            raise TypeError(
                f"{fn}: `process_group` must be a torch.distributed.ProcessGroup or None; "
                f"got {type(process_group).__name__}"
            )
        self.sync = sync
        self.process_group = process_group
        self.surface = _surface.check_surface_names(fn, surface, average=average, tolerance=tolerance)
        self.spacing = check_spacing_form(fn, spacing)
        self.tolerance = None if tolerance is None else _surface.check_tolerance(fn, tolerance)
        self._specs = {name: _surface.named_spec(name, self.tolerance) for name in self.surface}
        self._state: dict[str, Tensor] = {}
        self._surface_values: list[dict[str, Tensor]] = []
        self.reset()

    def __repr__(self) -> str:
        """The mode, ``num_classes`` and every argument that differs from its default (as the loss Modules' repr).

        It showed ``metrics``, ``average`` and ``per_image`` always and never ``ignore_index``,
        ``include_background``, ``zero_division``, ``threshold``, ``from_logits``, ``sync``, ``spacing`` or
        ``tolerance``: two objects that compute different numbers printed alike.
        """
        parts = [f"mode={self.mode!r}", f"num_classes={self.num_classes}"]
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name in ("self", "mode", "num_classes"):
                continue
            value = getattr(self, p.name)
            if value is not p.default and value != p.default:
                parts.append(f"{p.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def reset(self) -> None:
        """Forget every batch seen: zero counts (or zero sums and counts of per-image values), no surface values."""
        self._surface_values = []
        c = self.num_classes
        if not self.per_image:
            self._state = {k: torch.zeros(c, dtype=torch.int64) for k in ("tp", "fp", "fn", "tn")}
            return
        kept = c if self.mode == "binary" or self.include_background else c - 1
        shape = (kept,) if self.average == "none" else ()
        self._state = {}
        for name in self.metrics:
            for part in _IMAGE_SUMS:
                self._state[f"{name}_{part}"] = torch.zeros(shape, dtype=torch.int64)

    def update(self, input: Tensor, target: Tensor) -> None:
        """Add one batch (shapes as in :func:`seglosses.metrics.functional.confusion`); returns nothing."""
        stats = _core.counts(
            f"{type(self).__name__}.update",
            input,
            target,
            mode=self.mode,
            threshold=self.threshold,
            from_logits=self.from_logits,
            ignore_index=self.ignore_index,
            per_image=self.per_image,
            num_classes=self.num_classes,
            include_background=self.include_background,
        )
        state = {k: v.to(stats[0].device) for k, v in self._state.items()}
        if not self.per_image:
            for key, count in zip(("tp", "fp", "fn", "tn"), stats, strict=True):
                state[key] = state[key] + count
        else:
            for name in self.metrics:
                for part, value in zip(_IMAGE_SUMS, _core.image_sums(self._values(name, stats)), strict=True):
                    state[f"{name}_{part}"] = state[f"{name}_{part}"] + value
        if self.surface:
            self._surface_values.append(self._surface_update(input, target))
        self._state = state

    def _surface_update(self, input: Tensor, target: Tensor) -> dict[str, Tensor]:
        """The per-image, per-class surface values ``(N, C_kept)`` of one batch."""
        fn = f"{type(self).__name__}.update"
        masks = _surface.masks(
            fn,
            input,
            target,
            mode=self.mode,
            threshold=self.threshold,
            from_logits=self.from_logits,
            ignore_index=self.ignore_index,
            include_background=self.include_background,
            num_classes=self.num_classes,
        )
        spacing = check_spacing(fn, self.spacing, masks.pred.ndim - 2)
        return _surface.surface_values(fn, masks, self._specs, spacing=spacing, boundary="surfel", connectivity=1)

    def compute(self) -> dict[str, Tensor]:
        """The metrics of every batch since the last :meth:`reset`, ``{name: value}``: ``metrics``, then ``surface``."""
        state = self._reduce_state()
        if self.per_image:
            out = {name: _core.image_mean(*(state[f"{name}_{p}"] for p in _IMAGE_SUMS)) for name in self.metrics}
        else:
            stats = (state["tp"], state["fp"], state["fn"], state["tn"])
            out = {name: self._values(name, stats) for name in self.metrics}
        for name, values in self._surface_state().items():
            out[name] = _surface.reduce_values(values, average=self.average, per_image=self.per_image)
        return out

    def _surface_state(self) -> dict[str, Tensor]:
        """The per-image surface values of every batch (of every rank with ``sync``), ``(N, C_kept)`` each."""
        if not self.surface:
            return {}
        kept = self.num_classes if self.mode == "binary" or self.include_background else self.num_classes - 1
        device = self._state[next(iter(self._state))].device
        local: dict[str, Tensor] = {}
        for name in self.surface:
            parts = [batch[name] for batch in self._surface_values]
            dtype = parts[0].dtype if parts else _core.value_dtype(device)
            local[name] = torch.cat(parts) if parts else torch.empty((0, kept), dtype=dtype, device=device)
        if self.sync and is_ready():
            return gather_rows(local, self.process_group)
        return local

    def _values(self, name: str, stats: _core.Counts) -> Tensor:
        return _core.values(
            name,
            stats,
            fn=type(self).__name__,
            mode=self.mode,
            average=self.average,
            include_background=self.include_background,
            zero_division=self._zero_division,
        )

    def _reduce_state(self) -> dict[str, Tensor]:
        """The state to compute from: the local state, or with ``sync`` its sum over the ranks.

        Every entry of ``self._state`` is an int64 sum, so summing each over the ranks (one ``all_reduce`` with
        ``SUM`` of the concatenated entries) gives the numbers of one process on the data of all ranks.
        """
        if self.sync and is_ready():
            return sync_int_state(self._state, self.process_group)
        return self._state


def gather_rows(values: dict[str, Tensor], group: object = None) -> dict[str, Tensor]:
    """Concatenate ``(n_k, K)`` tensors over the ranks, in rank order (``n_k`` may differ between ranks).

    Two collectives: an ``all_gather`` of the row counts, then one of the rows padded to the largest count
    (every entry of ``values`` packed side by side), trimmed and concatenated. NaN and inf travel unchanged.
    """
    names = list(values)
    packed = torch.cat([values[k].to(torch.float64) for k in names], dim=1)
    home = packed.device
    packed = packed.to(collective_device(packed, group))  # NCCL: a rank without batches holds CPU tensors
    world = dist.get_world_size(group)  # type: ignore[arg-type]
    count = torch.tensor([packed.shape[0]], dtype=torch.int64, device=packed.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count, group=group)
    sizes = [int(c.item()) for c in counts]
    rows = max(sizes)
    padded = torch.full((rows, packed.shape[1]), math.nan, dtype=torch.float64, device=packed.device)
    padded[: packed.shape[0]] = packed
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded, group=group)
    full = torch.cat([g[:n] for g, n in zip(gathered, sizes, strict=True)]).to(home)
    out: dict[str, Tensor] = {}
    col = 0
    for k in names:
        width = values[k].shape[1]
        out[k] = full[:, col : col + width].to(values[k].dtype)
        col += width
    return out
