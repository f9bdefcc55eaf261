"""NumPy float64 reference of the Lovász hinge / Lovász-softmax loss (Berman, Triki, Blaschko, CVPR 2018).

Written from the paper and the library's documented conventions (modes, ignored pixels, per-image and class
reductions), for clarity rather than speed: explicit loops over images and classes, ignored pixels removed by
boolean indexing (as the paper's code does), one sort per vector. Never imports seglosses or torch.

Two independent transcriptions of the Lovász extension of the Jaccard loss are given:

- :func:`lovasz_extension`: the greedy formula (paper eq. 8 with Alg. 1), vectorised per vector with NumPy;
- :func:`lovasz_extension_brute`: the definition as an integral over level sets (the Choquet integral,
  ``f(m) = int_0^inf Delta_J({i : m_i >= t}) dt`` for ``m >= 0``), evaluated with plain Python sets and loops,
  with the set function ``Delta_J(M) = |M| / |G u M|`` (paper eq. 5) counted element by element. It does not sort
  the pixels, so it is independent of tie breaking and of the cumulative-sum formula of Alg. 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def lovasz_grad(gt_sorted: np.ndarray) -> np.ndarray:
    """Alg. 1: the Lovász gradient of the Jaccard loss for a ground truth sorted by decreasing error."""
    gt_sorted = np.asarray(gt_sorted, dtype=np.float64)
    total = gt_sorted.sum()
    intersection = total - np.cumsum(gt_sorted)
    union = total + np.cumsum(1.0 - gt_sorted)
    jaccard = 1.0 - intersection / union
    grad = jaccard.copy()
    grad[1:] = jaccard[1:] - jaccard[:-1]
    return grad


def lovasz_extension(errors: np.ndarray, gt: np.ndarray) -> float:
    """Greedy formula: ``sum_k m_(k) (Delta(top k) - Delta(top k-1))`` with errors sorted in decreasing order."""
    errors = np.asarray(errors, dtype=np.float64)
    order = np.argsort(-errors, kind="stable")
    return float(errors[order] @ lovasz_grad(np.asarray(gt, dtype=np.float64)[order]))


def jaccard_set_loss(mispredicted: set[int], positives: set[int]) -> float:
    """``Delta_J(M) = |M| / |G u M|`` (paper eq. 5), 0 for an empty ``M``."""
    if not mispredicted:
        return 0.0
    return len(mispredicted) / len(positives | mispredicted)


def lovasz_extension_brute(errors: Sequence[float], gt: Sequence[float]) -> float:
    """The definition as a level-set integral, with Python sets (errors must be >= 0)."""
    errs = [float(e) for e in errors]
    positives = {i for i, v in enumerate(gt) if v == 1}
    levels = sorted({e for e in errs if e > 0}, reverse=True) + [0.0]
    total = 0.0
    for k in range(len(levels) - 1):
        above = {i for i, e in enumerate(errs) if e >= levels[k]}
        total += (levels[k] - levels[k + 1]) * jaccard_set_loss(above, positives)
    return total


def lovasz_loss(
    x: np.ndarray,
    t: np.ndarray,
    *,
    mode: str,
    from_logits: bool = True,
    classes: str = "present",
    ignore_index: int | None = None,
    per_image: bool = False,
    reduction: str = "mean",
    extension: Callable[[np.ndarray, np.ndarray], float] = lovasz_extension,
) -> float:
    """The Lovász hinge (binary/multilabel logits) or Lovász-softmax flat form, per class."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t)
    n = x.shape[0]
    if mode == "multiclass":
        c = x.shape[1]
        scores = x.reshape(n, c, -1)
        scores = _softmax(scores) if from_logits else scores
        if np.issubdtype(t.dtype, np.integer):
            labels = t.reshape(n, -1)
            keep = np.ones(labels.shape, dtype=bool) if ignore_index is None else labels != ignore_index
            keep = np.repeat(keep[:, None, :], c, axis=1)
            gt = np.stack([labels == k for k in range(c)], axis=1)
        else:
            gt = t.reshape(n, c, -1) == 1
            keep = np.ones(gt.shape, dtype=bool)
    else:
        c = 1 if mode == "binary" else x.shape[1]
        scores = x.reshape(n, c, -1)
        tf = t.reshape(n, c, -1)
        keep = np.ones(tf.shape, dtype=bool) if ignore_index is None else tf != ignore_index
        gt = tf == 1
    hinge = from_logits and mode != "multiclass"

    def term(images: Sequence[int], k: int) -> float | None:
        s = np.concatenate([scores[i, k][keep[i, k]] for i in images])
        g = np.concatenate([gt[i, k][keep[i, k]] for i in images]).astype(np.float64)
        if s.size == 0:
            return None  # no kept element: left out
        if mode == "multiclass" and classes == "present" and g.sum() == 0:
            return None
        errors = np.maximum(0.0, 1.0 - s * (2.0 * g - 1.0)) if hinge else np.abs(g - s)
        return extension(errors, g)

    values: list[float] = []
    if per_image:
        for i in range(n):
            terms = [v for v in (term([i], k) for k in range(c)) if v is not None]
            if terms:
                values.append(sum(terms) / len(terms))
    else:
        values = [v for v in (term(range(n), k) for k in range(c)) if v is not None]
    if not values:
        return 0.0
    return float(sum(values)) if reduction == "sum" else float(sum(values) / len(values))
