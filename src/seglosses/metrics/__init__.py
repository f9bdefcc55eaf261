"""Hard-prediction segmentation metrics.

Functions (:mod:`seglosses.metrics.functional`): :func:`confusion` gives the per-class counts ``(tp, fp, fn, tn)``;
:func:`dice`, :func:`iou`, :func:`precision`, :func:`recall`, :func:`specificity` and :func:`accuracy` are one
formula each over those counts. :class:`SegmentationMetrics` accumulates the same counts over batches
(``update``/``compute``/``reset``) and gives exactly the numbers of one call on the concatenated batches.

Surface metrics (:mod:`seglosses.metrics.surface`): :func:`hausdorff` (HD, HD95), :func:`assd`, :func:`masd`,
:func:`asd`, :func:`nsd` (normalised surface Dice) and :func:`boundary_iou`, per image and class in physical units;
``SegmentationMetrics(surface=("hd95", "nsd"), ...)`` streams them.
"""

from seglosses.metrics.functional import accuracy, confusion, dice, iou, precision, recall, specificity
from seglosses.metrics.streaming import SegmentationMetrics
from seglosses.metrics.surface import asd, assd, boundary_iou, hausdorff, masd, nsd

__all__ = [
    "SegmentationMetrics",
    "accuracy",
    "asd",
    "assd",
    "boundary_iou",
    "confusion",
    "dice",
    "hausdorff",
    "iou",
    "masd",
    "nsd",
    "precision",
    "recall",
    "specificity",
]
