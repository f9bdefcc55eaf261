r"""``seglosses bench`` cases of the distance-map and topology losses, beside MONAI's.

:func:`catalogue_cases` returns :class:`seglosses.cli.benchmark.Case` rows in the format of
:data:`seglosses.cli.benchmark.CASES` (same fields, same ``build(mode) -> loss(x, t)`` contract), for
:mod:`seglosses.cli.benchmark` to add to its table; :data:`CATALOGUE_QUANTITIES` names their quantities.

- ``boundary`` and ``hausdorff_dt``: our rows with the target's distance map precomputed (the recommended use: a
  :class:`seglosses.distance.DistanceMapTransform` in the data loader; here the map is computed on the first call,
  a warm-up step, and reused for the same target tensor) and with every map computed inside the call
  (``:maps-inside``, the cost of not precomputing: the exact EDT of every image and class on the CPU, one native call
  over the batch, scipy per image and class without the native kernels). The Hausdorff-DT
  loss always computes its prediction's map inside (it changes every step). MONAI's ``HausdorffDTLoss`` takes no
  map: it computes the prediction's and the target's maps in every call. MONAI 1.6 has no boundary loss.
- ``cldice`` (10 skeleton steps, our default) and ``cldice_3`` (3 steps, MONAI's default): ours beside MONAI's
  ``SoftclDiceLoss(iter_=k)``; MONAI pools the classes of each image into one ratio (ours: one per class, batch
  pooled), the same work. ``dice_cldice``: beside ``SoftDiceclDiceLoss(iter_=10)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch

from seglosses.cli.benchmark import Case, Unavailable

if TYPE_CHECKING:
    from seglosses._types import Mode

__all__ = ["CATALOGUE_QUANTITIES", "catalogue_cases"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Build = Callable[[str], LossFn]

#: The quantities of :func:`catalogue_cases`, in table order.
CATALOGUE_QUANTITIES: tuple[str, ...] = ("boundary", "hausdorff_dt", "cldice", "cldice_3", "dice_cldice")


def _ours(name: str, *, dist: str | None = None, **kwargs: Any) -> Build:  # noqa: ANN401
    """Our ``name`` with ``kwargs``; ``dist`` (``"signed"``/``"unsigned"``): the target's map precomputed once."""

    def build(mode: str) -> LossFn:
        import seglosses.distance as sd
        import seglosses.functional as sf

        fn = getattr(sf, name, None)
        if fn is None:
            raise Unavailable(f"seglosses.functional has no {name}")
        maps: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

        def loss(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            extra: dict[str, Any] = {}
            if dist is not None:
                key = (t.data_ptr(), tuple(t.shape))
                if key not in maps:  # the first (warm-up) call: what a data-loader transform would have done
                    maps.clear()
                    make = sd.signed_distance if dist == "signed" else sd.unsigned_distance
                    num_classes = int(x.shape[1]) if mode == "multiclass" else None
                    maps[key] = make(t, mode=cast("Mode", mode), num_classes=num_classes).to(x.device)
                extra["dist_map"] = maps[key]
            out: torch.Tensor = fn(x, t, mode=mode, **kwargs, **extra)
            return out

        return loss

    return build


def _monai(name: str, **kwargs: Any) -> Build:  # noqa: ANN401
    def build(mode: str) -> LossFn:
        try:
            import monai.losses as ml
        except ImportError as err:
            raise Unavailable(f"MONAI is not installed ({err})") from err
        act = {"softmax": True, "to_onehot_y": True} if mode == "multiclass" else {"sigmoid": True}
        module: LossFn = getattr(ml, name)(**act, **kwargs)
        return module

    return build


def catalogue_cases() -> tuple[Case, ...]:
    """The benchmark cases of the boundary, Hausdorff-DT and clDice losses (ours and MONAI's).

    Returns:
        :class:`~seglosses.cli.benchmark.Case` rows; ids ``seglosses:<loss>``, ``seglosses:<loss>:maps-inside``,
        ``seglosses:cldice:3``, ``monai:<Class>`` / ``monai:<Class>:3``.

    Examples:
        >>> from seglosses.cli.bench_catalogue import catalogue_cases
        >>> sorted({c.quantity for c in catalogue_cases()})
        ['boundary', 'cldice', 'cldice_3', 'dice_cldice', 'hausdorff_dt']

    """
    pre = "the target's map precomputed once (as a DistanceMapTransform in the data loader)"
    inside = "every map computed inside the call on the CPU (exact EDT of the batch: native kernel, else scipy)"
    return (
        Case(
            "seglosses:boundary",
            "seglosses",
            "boundary",
            "boundary_loss(x, t, mode=mode, dist_map=phi)",
            pre,
            _ours("boundary_loss", dist="signed"),
        ),
        Case(
            "seglosses:boundary:maps-inside",
            "seglosses",
            "boundary",
            "boundary_loss(x, t, mode=mode)",
            inside,
            _ours("boundary_loss"),
        ),
        Case(
            "seglosses:hausdorff_dt",
            "seglosses",
            "hausdorff_dt",
            "hausdorff_dt_loss(x, t, mode=mode, dist_map=d)",
            pre + "; the prediction's map inside (it changes every step)",
            _ours("hausdorff_dt_loss", dist="unsigned"),
        ),
        Case(
            "seglosses:hausdorff_dt:maps-inside",
            "seglosses",
            "hausdorff_dt",
            "hausdorff_dt_loss(x, t, mode=mode)",
            inside,
            _ours("hausdorff_dt_loss"),
        ),
        Case(
            "monai:HausdorffDTLoss",
            "monai",
            "hausdorff_dt",
            "HausdorffDTLoss(softmax|sigmoid, to_onehot_y, batch=True)",
            "alpha=2, background dropped (binary keeps its channel), batch=True pools the images as our default; "
            "computes both maps in every call (4 EDTs per image and class), no spacing, no ignore_index",
            _monai("HausdorffDTLoss", batch=True),
            target="channel",
        ),
        Case(
            "seglosses:cldice",
            "seglosses",
            "cldice",
            "cldice_loss(x, t, mode=mode)",
            "defaults: 10 skeleton steps",
            _ours("cldice_loss"),
        ),
        Case(
            "monai:SoftclDiceLoss",
            "monai",
            "cldice",
            "SoftclDiceLoss(softmax|sigmoid, to_onehot_y, iter_=10)",
            "same skeleton and steps; MONAI pools the classes of each image (ours: per class over the batch) and "
            "adds 1e-4 to the harmonic mean's denominator",
            _monai("SoftclDiceLoss", iter_=10),
            target="channel",
        ),
        Case(
            "seglosses:cldice:3",
            "seglosses",
            "cldice_3",
            "cldice_loss(x, t, mode=mode, iterations=3)",
            "3 skeleton steps (MONAI's default)",
            _ours("cldice_loss", iterations=3),
        ),
        Case(
            "monai:SoftclDiceLoss:3",
            "monai",
            "cldice_3",
            "SoftclDiceLoss(softmax|sigmoid, to_onehot_y)",
            "iter_=3 (default); classes pooled per image, +1e-4 in the harmonic mean",
            _monai("SoftclDiceLoss"),
            target="channel",
        ),
        Case(
            "seglosses:dice_cldice",
            "seglosses",
            "dice_cldice",
            "dice_cldice_loss(x, t, mode=mode)",
            "defaults: alpha=0.5, 10 skeleton steps, smooth=1",
            _ours("dice_cldice_loss"),
        ),
        Case(
            "monai:SoftDiceclDiceLoss",
            "monai",
            "dice_cldice",
            "SoftDiceclDiceLoss(softmax|sigmoid, to_onehot_y, iter_=10)",
            "Dice per image and class (ours batch-pooled), clDice classes pooled per image; same work",
            _monai("SoftDiceclDiceLoss", iter_=10),
            target="channel",
        ),
    )
