"""From (input, target, mode, from_logits, ignore_index) to flat probabilities, a target view and a valid mask."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from seglosses._checks import (
    check_bool,
    check_ignore_index,
    check_index_range,
    check_input_target,
    check_mode,
    check_probabilities,
    check_sync,
    dtype_holds,
    values_checked,
)
from seglosses._distributed import Sync, sync_sums
from seglosses._numerics import log1m_softmax_lean, pow_from_log, safe_pow


@dataclass(frozen=True)
class Prepared:
    """Flattened view of one loss call.

    Attributes:
        mode: ``"binary" | "multiclass" | "multilabel"``.
        from_logits: whether ``logits`` holds the raw input.
        raw: ``(N, C, M)`` view of the input in its own dtype (``C = 1`` in binary mode): float16/bfloat16 stay as
            they are here, for the operators that read them directly (the GPU's whole-loss kernels reduce them in
            float32 without a float32 copy of the input).
        logits: ``(N, C, M)`` the input in the computation dtype :attr:`dtype` (float32 or float64): ``raw`` itself,
            or its float32 copy made on first use for float16/bfloat16 inputs.
        prob: ``(N, C, M)`` probabilities (sigmoid, softmax over C, or the input itself), computed on first use
            (the fused paths of :mod:`seglosses._fused` never need it).
        target_raw: the target as given, in its own dtype and with its ignored values (any integer dtype for class
            indices, bool/integer/floating for dense targets), ``(N, M)`` or ``(N, C, M)``: what the GPU's
            whole-loss kernels read (no converted copy, no mask: they compare with ``ignore_index`` themselves).
        target: ``(N, M)`` int64 class indices when ``form == "index"`` (ignored pixels set to 0), else ``(N, C, M)``
            float target in [0, 1] in :attr:`dtype` (ignored elements set to 0): ``target_raw`` itself or its
            cleaned, converted copy, made on first use.
        form: ``"index"`` or ``"dense"``.
        valid: ``None`` when nothing is ignored, else a float 0/1 mask, ``(N, 1, M)`` for index targets and
            ``(N, C, M)`` for dense binary/multilabel targets (made on first use).
        shape: the input's original shape (binary inputs without a channel dim keep theirs).
        sync: where to sum the statistics over ranks (``sync_stats=True``), or None (the default:
            nothing is synchronised).
        ignore_index: the target value that marks ignored elements, or None.

    """

    mode: str
    from_logits: bool
    raw: Tensor
    target_raw: Tensor
    form: str
    shape: tuple[int, ...]
    sync: Sync | None = None
    ignore_index: int | None = None

    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dtype(self) -> torch.dtype:
        """The computation dtype: float64 for float64 inputs, else float32 (every reduction runs in it)."""
        return torch.float64 if self.raw.dtype == torch.float64 else torch.float32

    @property
    def device(self) -> torch.device:
        """The input's device."""
        return self.raw.device

    @property
    def logits(self) -> Tensor:
        """``(N, C, M)`` the input in :attr:`dtype`: float16/bfloat16 inputs upcast on first use (and kept)."""
        x = self.raw
        if x.dtype == self.dtype:
            return x
        if "logits" not in self._cache:
            self._cache["logits"] = x.to(self.dtype)
        return self._cache["logits"]

    def _keep(self) -> Tensor:
        """Bool mask of the elements not ignored, the target's shape (only with ``ignore_index``; kept)."""
        if "keep" not in self._cache:
            assert self.ignore_index is not None
            self._cache["keep"] = torch.ne(self.target_raw, self.ignore_index)
        return self._cache["keep"]

    @property
    def valid(self) -> Tensor | None:
        """``None`` when nothing is ignored, else the float 0/1 kept mask (``(N, 1, M)`` for index targets)."""
        if self.ignore_index is None:
            return None
        if "valid" not in self._cache:
            keep = self._keep()
            self._cache["valid"] = (keep.unsqueeze(1) if self.form == "index" else keep).to(self.dtype)
        return self._cache["valid"]

    @property
    def target(self) -> Tensor:
        """The target as the PyTorch paths use it (ignored elements 0): int64 indices, or dense in :attr:`dtype`."""
        t = self.target_raw
        want = torch.int64 if self.form == "index" else self.dtype
        if t.dtype == want and self.ignore_index is None:
            return t
        if "target" not in self._cache:
            if self.ignore_index is not None:
                t = torch.where(self._keep(), t, torch.zeros_like(t))
            self._cache["target"] = t.to(want)
        return self._cache["target"]

    @property
    def prob(self) -> Tensor:
        """``(N, C, M)`` probabilities: softmax over C (multiclass) or sigmoid of the logits, or the input.

        Computed on first use and kept (a dict, not ``functools.cached_property``, whose lock ``torch.compile``
        cannot trace on Python 3.11).
        """
        if not self.from_logits:
            return self.logits
        if "prob" not in self._cache:
            x = self.logits
            self._cache["prob"] = torch.softmax(x, dim=1) if self.mode == "multiclass" else torch.sigmoid(x)
        return self._cache["prob"]

    @property
    def num_classes(self) -> int:
        """Number of channels ``C`` (1 in binary mode)."""
        return int(self.raw.shape[1])

    def fused(self) -> bool:
        """Whether the fused softmax path applies: multiclass logits with class-index targets."""
        return self.from_logits and self.mode == "multiclass" and self.form == "index"

    def safe_index(self) -> tuple[Tensor, Tensor | None]:
        """Class indices ``(N, M)`` safe to index with, and the per-image count ``(N,)`` of bad ones, or None.

        Where the host value check ran (the CPU by default) a bad index has already raised: ``(target, None)``.
        Elsewhere (a GPU by default, ``set_value_checks("never")``, ``torch.compile``) every kept index outside
        ``[0, C)`` is clamped into it (:func:`seglosses._dispatch.guard_indices`) and counted, so that the PyTorch
        paths that gather or index with the target neither read out of bounds nor hide the bad index: their caller
        makes the image's loss NaN from the count (as the fused passes do). Kept after first use.
        """
        if "safe_index" not in self._cache:
            from seglosses import _dispatch

            t, bad = _dispatch.guard_indices(self.target, self.num_classes, self.valid_pixels())
            self._cache["safe_index"] = t
            if bad is not None:
                self._cache["bad_index"] = bad
        return self._cache["safe_index"], self._cache.get("bad_index")

    def index_poison(self, dtype: torch.dtype) -> Tensor | None:
        """``(N,)`` NaN for each image holding a class index outside ``[0, C)`` (counted on the device), else 0.

        None for dense targets and where the host value check ran (a bad index has raised there). Added to an
        image's values it makes them NaN, as the fused passes' counters do, for the PyTorch paths that build
        masks or gather with :meth:`safe_index`'s guarded indices.
        """
        if self.form != "index":
            return None
        _, bad = self.safe_index()
        return None if bad is None else torch.where(bad > 0, float("nan"), 0.0).to(dtype)

    def valid_pixels(self) -> Tensor | None:
        """``(N, M)`` kept-pixel mask for index targets (``valid`` without its class dim), or None."""
        return None if self.valid is None else self.valid.squeeze(1)

    def target_dense(self) -> Tensor:
        """``(N, C, M)`` float target (a one-hot is built only for index targets; pixel losses avoid this)."""
        if self.form == "dense":
            return self.target
        onehot = torch.zeros_like(self.prob).scatter_(1, self.target.unsqueeze(1), 1.0)
        return onehot

    def count(self) -> Tensor:
        """Number of kept elements per image and class, ``(N, C)``."""
        n, c, m = self.raw.shape
        if self.valid is None:
            # m as given (a SymInt under torch.export with dynamic shapes), not float(m): no size baked in
            return torch.full((n, c), m, dtype=self.dtype, device=self.device)
        return self.valid.sum(-1).expand(n, c)


def prepare(
    fn: str,
    input: Tensor,
    target: Tensor,
    *,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    allow_soft: bool = True,
    sync_stats: bool = False,
    process_group: object = None,
) -> Prepared:
    """Validate and flatten one call.

    Every reduction runs in float32 (float64 for float64 inputs), also under autocast: float16/bfloat16 inputs are
    upcast on first use of :attr:`Prepared.logits`; the whole-loss operators read them as they are (no copy).
    ``sync_stats``/``process_group`` are checked here and kept as ``Prepared.sync``.
    """
    check_mode(fn, mode)
    sync = check_sync(fn, sync_stats, process_group)
    check_bool(fn, "from_logits", from_logits)
    check_ignore_index(fn, ignore_index)
    if isinstance(target, torch.Tensor) and ignore_index is not None and not dtype_holds(target.dtype, ignore_index):
        # no element of this dtype can equal ignore_index, so nothing is ignored; torch would compare a uint8
        # target's 255 equal to -1 (an int8's -1 to 255) and hide those pixels. No widened copy of the target
        ignore_index = None
    form = check_input_target(
        fn, input, target, mode=mode, ignore_index=ignore_index, allow_soft=allow_soft, index_values=False
    )
    shape = tuple(input.shape)
    x = input
    n = x.shape[0]
    c = 1 if mode == "binary" else x.shape[1]
    m = math.prod(x.shape[1:]) // c if c else 0  # not -1: reshape cannot infer it for an empty batch (N = 0)
    x = x.reshape(n, c, m)
    if not from_logits:
        check_probabilities(fn, x)
    t = target.reshape(n, m) if form == "index" else target.reshape(n, c, m)
    prep = Prepared(
        mode=mode, from_logits=from_logits, raw=x, target_raw=t, form=form, shape=shape, sync=sync,
        ignore_index=ignore_index,
    )  # fmt: skip
    if form == "index" and values_checked(t):  # the range check reads the cleaned indices (made here, on the CPU)
        check_index_range(fn, prep.target, target, c=x.shape[1], ignore_index=ignore_index)
    return prep


def log_probs(prep: Prepared, g: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(log p, log(1 - p))``, both ``(N, C, M)``, for the pixel-wise losses.

    From logits both are exact (``logsigmoid(+-x)``; ``log_softmax`` and :func:`log1m_softmax_lean`), finite for every
    finite logit. From probabilities ``log p`` is taken only where the target has mass on the class and
    ``log(1 - p)`` only where it has mass off it; elsewhere 0 is returned, so that ``0 * log 0`` counts as 0 in value
    and gradient. A wrong hard prediction (``p = 0`` where ``g > 0``) still gives ``-inf``: its loss
    is infinite. ``g`` overrides the target used for that masking (a label-smoothed target).
    """
    x = prep.logits
    if prep.from_logits:
        if prep.mode == "multiclass":
            return torch_f.log_softmax(x, dim=1), log1m_softmax_lean(x, dim=1)  # saves the logits only
        return torch_f.logsigmoid(x), torch_f.logsigmoid(-x)
    p = prep.prob
    g = prep.target_dense() if g is None else g
    on, off = g > 0, g < 1
    if prep.valid is not None:
        kept = prep.valid > 0
        on, off = on & kept, off & kept
    logp = torch.log(torch.where(on, p, torch.ones_like(p)))
    log1mp = torch.log1p(-torch.where(off, p, torch.zeros_like(p)))
    return logp, log1mp


def focal_factors(prep: Prepared, gamma: float, logp: Tensor, log1mp: Tensor) -> tuple[Tensor, Tensor]:
    """``((1 - p)^gamma, p^gamma)`` for the focal terms.

    From logits they are ``exp(gamma * log(1 - p))`` and ``exp(gamma * log p)`` of the exact logs (no NaN gradient
    for gamma < 1 at saturated logits). From probabilities :func:`safe_pow` is used, since the logs are masked there.
    """
    if prep.from_logits:
        return pow_from_log(log1mp, gamma), pow_from_log(logp, gamma)
    p = prep.prob
    return safe_pow(1 - p, gamma), safe_pow(p, gamma)


def masked_mean(values: Tensor, valid: Tensor | None, reduction: str, sync: Sync | None = None) -> Tensor:
    """Mean or sum of per-element ``values`` over the kept elements; 0 (with zero gradient) when none is kept.

    With ``sync`` the sum and the count of kept elements are summed over the ranks first: the mean
    over the global count of kept elements.
    """
    if valid is not None:
        values = torch.where(valid > 0, values, torch.zeros_like(values))
    if sync is not None:
        total = values.sum()
        count = total.new_tensor(values.numel()) if valid is None else valid.expand_as(values).sum().to(total.dtype)
        return sync_ratio(total, count, reduction, sync)
    if reduction == "sum":
        return values.sum()
    if valid is None:  # no element at all (N = 0 or no pixel): 0, as when every pixel is ignored
        return values.mean() if values.numel() else values.sum()
    count = valid.expand_as(values).sum()
    return values.sum() / count.clamp_min(1)


def sync_ratio(total: Tensor, den: Tensor, reduction: str, sync: Sync) -> Tensor:
    """``total`` (``"sum"``) or ``total / den`` (``"mean"``; 0 when ``den`` is 0), both summed over the ranks first.

    One collective for both. ``den`` carries no gradient (a count or a sum of weights).
    """
    if reduction == "sum":
        return sync_sums([total], sync)[0]
    total, den = sync_sums([total, den.to(total.dtype)], sync)
    ok = den > 0
    return torch.where(ok, total / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(total))


def index_log_probs(prep: Prepared, *, need_log1m: bool) -> tuple[Tensor, Tensor | None, Tensor]:
    """For index targets: ``(log p_t, log(1 - p_t) or None, p_t)``, each ``(N, M)``, of each pixel's own class t.

    From logits ``log(1 - p_t) = logsumexp_{c != t} x_c - logsumexp_c x_c`` (exact, no one-hot); from probabilities
    the logs are masked at ignored pixels (their value is 0 there, and so is their gradient). Where the host value
    check did not run, an image holding an index outside ``[0, C)`` gets NaN values (:meth:`Prepared.safe_index`).
    """
    t = prep.safe_index()[0].unsqueeze(1)
    p_t = prep.prob.gather(1, t).squeeze(1)
    if prep.from_logits:
        x = prep.logits
        logp_t, lse = _logits_log_p(x, t)
        log1m_t = None
        if need_log1m:
            others = x.scatter(1, t, float("-inf"))
            log1m_t = torch.logsumexp(others, dim=1) - lse
    else:
        kept = torch.ones_like(p_t, dtype=torch.bool) if prep.valid is None else prep.valid.squeeze(1) > 0
        logp_t = torch.log(torch.where(kept, p_t, torch.ones_like(p_t)))
        log1m_t = torch.log1p(-torch.where(kept, p_t, torch.zeros_like(p_t))) if need_log1m else None
    poison = prep.index_poison(logp_t.dtype)  # a bad index (counted on the device): every value of its image NaN
    if poison is not None:
        nan = poison.unsqueeze(1)
        logp_t, p_t = logp_t + nan, p_t + nan
        log1m_t = None if log1m_t is None else log1m_t + nan
    return logp_t, log1m_t, p_t


def _logits_log_p(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p_t, logsumexp_c x_c)``, each ``(N, M)``, from logits ``(N, C, M)`` and indices ``t`` ``(N, 1, M)``."""
    lse = torch.logsumexp(x, dim=1)
    return x.gather(1, t).squeeze(1) - lse, lse


def index_log_p(prep: Prepared) -> Tensor:
    """``log p_t`` alone, ``(N, M)``: the first value of :func:`index_log_probs`, bit for bit, without ``p_t``.

    From logits the softmax is then never built: ``p_t`` (a gather of :attr:`Prepared.prob`) kept the whole softmax,
    one tensor of the input's size, alive for the backward of a loss that only uses ``log p_t``.
    """
    if not prep.from_logits:
        return index_log_probs(prep, need_log1m=False)[0]
    logp_t, _ = _logits_log_p(prep.logits, prep.safe_index()[0].unsqueeze(1))
    poison = prep.index_poison(logp_t.dtype)  # as index_log_probs: every value of an image with a bad index NaN
    return logp_t if poison is None else logp_t + poison.unsqueeze(1)


def unflatten(values: Tensor, prep: Prepared) -> Tensor:
    """Per-element values ``(N, M)`` (index form) or ``(N, C, M)`` back to the input's layout (``reduction="none"``)."""
    if values.ndim == 2:  # (N, M): the spatial shape of a multiclass input
        return values.reshape(prep.shape[:1] + prep.shape[2:])
    return values.reshape(prep.shape)
