"""Hard-prediction segmentation metrics (SPEC section 5).

Functions (:mod:`seglosses.metrics.functional`): :func:`confusion` gives the per-class counts ``(tp, fp, fn, tn)``;
:func:`dice`, :func:`iou`, :func:`precision`, :func:`recall`, :func:`specificity` and :func:`accuracy` are one
formula each over those counts. :class:`SegmentationMetrics` accumulates the same counts over batches
(``update``/``compute``/``reset``) and gives exactly the numbers of one call on the concatenated batches.
"""

from seglosses.metrics.functional import accuracy, confusion, dice, iou, precision, recall, specificity
from seglosses.metrics.streaming import SegmentationMetrics

__all__ = ["SegmentationMetrics", "accuracy", "confusion", "dice", "iou", "precision", "recall", "specificity"]
