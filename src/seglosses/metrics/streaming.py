r"""Streaming accumulation of the metrics over batches: ``update`` / ``compute`` / ``reset`` (SPEC section 5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from seglosses._checks import check_bool, check_classes_left, check_metric_names
from seglosses._distributed import is_ready, sync_int_state
from seglosses._types import Average, Mode
from seglosses.metrics import _core

__all__ = ["SegmentationMetrics"]


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

    Args:
        mode: ``"binary" | "multiclass" | "multilabel"``.
        num_classes: C (1 in binary mode); required so that the state has its shape before the first batch.
        metrics: names among ``"dice", "iou", "precision", "recall", "specificity", "accuracy"`` (default all).
        average: ``"none"`` (default: per-class values for a report), ``"macro"`` or ``"micro"``; see
            :func:`seglosses.metrics.functional.dice`.
        per_image: average each image's value over images (default False).
        ignore_index: target value left out (default None).
        include_background: False drops class 0 (multiclass, multilabel; binary keeps its one class). Default True.
        zero_division: ``"nan"`` (default) or a number in [0, 1] for zero denominators.
        threshold: probability threshold for binary/multilabel (default 0.5, positive when ``p > threshold``).
        from_logits: binary/multilabel inputs are logits (default False).
        sync: under ``torch.distributed``, sum the O(C) int64 state over the ranks of ``process_group`` in
            :meth:`compute` (one ``all_reduce``; every rank must call it), so every rank gets the metrics of all
            ranks' batches; the local state is left unchanged. Default False. Ignored while no process group is
            initialised (a single process computes its own numbers).
        process_group: the group to sum over (default None: the default group).

    Raises:
        ValueError: a bad option here, or bad input in ``update`` (the messages of the functional metrics, naming
            ``SegmentationMetrics.update``).
        TypeError: options or inputs of the wrong type.

    Note:
        torchmetrics' modular metrics (``MulticlassStatScores``, ``MulticlassJaccardIndex``, ...) keep the same
        global counts; their ``multidim_average="samplewise"`` keeps one row per image (O(N) state) where
        ``per_image=True`` here keeps sums. Distributed training: ``sync=True`` sums the state (exact integers)
        over the ranks in :meth:`compute`, as torchmetrics' ``dist_reduce_fx="sum"``.

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
        self.sync = sync
        self.process_group = process_group
        self._state: dict[str, Tensor] = {}
        self.reset()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, num_classes={self.num_classes}, metrics={self.metrics!r}, "
            f"average={self.average!r}, per_image={self.per_image})"
        )

    def reset(self) -> None:
        """Forget every batch seen: zero counts (or zero sums and counts of per-image values)."""
        c = self.num_classes
        if not self.per_image:
            self._state = {k: torch.zeros(c, dtype=torch.int64) for k in ("tp", "fp", "fn", "tn")}
            return
        kept = c if self.mode == "binary" or self.include_background else c - 1
        shape = (kept,) if self.average == "none" else ()
        self._state = {}
        for name in self.metrics:
            self._state[f"{name}_sum"] = torch.zeros(shape, dtype=torch.int64)
            self._state[f"{name}_count"] = torch.zeros(shape, dtype=torch.int64)

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
                sums, count = _core.image_sums(self._values(name, stats))
                state[f"{name}_sum"] = state[f"{name}_sum"] + sums
                state[f"{name}_count"] = state[f"{name}_count"] + count
        self._state = state

    def compute(self) -> dict[str, Tensor]:
        """The metrics of every batch since the last :meth:`reset`, ``{name: value}`` in the order of ``metrics``."""
        state = self._reduce_state()
        if self.per_image:
            return {name: _core.image_mean(state[f"{name}_sum"], state[f"{name}_count"]) for name in self.metrics}
        stats = (state["tp"], state["fp"], state["fn"], state["tn"])
        return {name: self._values(name, stats) for name in self.metrics}

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
