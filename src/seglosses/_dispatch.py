r"""The one place that decides which computation path a loss takes (statistics family and pixel-sum family).

Every hot formula exists in several implementations that compute the same numbers:

================  ==============================================================================================
path              what runs
================  ==============================================================================================
``"ops"``         the ``torch.library`` operators of :mod:`seglosses._ops` (``seglosses::softmax_index_fwd`` ...):
                  the C++ kernels of :mod:`seglosses._native` on the CPU, the Triton kernels of
                  :mod:`seglosses._triton` on CUDA, else the chunked PyTorch twin. Opaque to ``torch.compile`` and
                  ``torch.export`` (fake-tensor and autograd registrations): no graph break, the kernels run.
``"autograd"``    the :class:`torch.autograd.Function` classes of :mod:`seglosses._fused` (eager CPU default: the
                  same C++ kernels with less per-call overhead than an operator call, else the chunked twin; their
                  ``traced`` form is whole-tensor, out-of-place PyTorch).
``"generic"``     the readable formulas on materialised probabilities (``Prepared.prob``): no fused pass at all.
================  ==============================================================================================

Two families choose among them here and nowhere else:

- **statistics** (:func:`stats_path`, :func:`softmax_index_sums`, :func:`sigmoid_dense_sums`): the per-image
  ``TP``, ``P`` and ``G`` of every region loss and of the compound losses (with the pixel term of the same pass);
- **pixel sums** (:func:`pixel_path` and the same two entry points with ``need_stats=False``): the per-image sums
  of cross entropy / focal terms.

Both entry points return a :class:`FusedSums` named tuple ``(tp, p_sum, g_sum, pixel)`` whatever the path.

Value checks as counters. :func:`seglosses.set_value_checks` decides whether a target's class indices are checked
on the host (one reduction and a synchronisation: the CPU by default, every device with ``"always"``, where a bad
index raises the named ``ValueError`` as before). Where the host check does not run (a GPU by default, ``"never"``,
while ``torch.compile`` traces) the statistics pass counts the kept pixels whose index lies outside ``[0, C)``,
per image, on the device: the Triton kernels in their statistics pass, every other path through
:func:`guard_indices` (indices made safe for the kernels) and :func:`poison`. An image with a non-zero counter gets
NaN statistics and pixel sums, so the loss is NaN, with no host synchronisation. NaN in the logits or a dense target
propagates to the loss by itself (the Triton kernels count it too).

Tests (and anyone who needs to pin a path) force a path with :func:`use`::

    from seglosses import _dispatch

    with _dispatch.use(fused=False):            # the generic formulas everywhere
        ...
    with _dispatch.use(ops=True, native=False): # the operators, running their chunked PyTorch twin
        ...
    with _dispatch.use(ops=False, traced=True): # the whole-tensor traced twin in eager mode
        ...
    with _dispatch.use(chunk_elements=64):      # tiny chunks: every input runs several chunks
        ...
    with _dispatch.record() as taken:           # which paths ran, e.g. ["stats:softmax_index:ops"]
        ...

Settings are process-global (not thread-local) and restored on exit from the ``with`` block; they are read while
``torch.compile`` traces (a change recompiles). The defaults (every setting ``None``) are what users get.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from torch import Tensor

from seglosses import _native

if TYPE_CHECKING:
    from seglosses._prepare import Prepared

Family = Literal["softmax_index", "sigmoid_dense", "generic"]
Backend = Literal["ops", "autograd"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The forced choices; ``None`` everywhere means "decide automatically" (the default for users).

    Attributes:
        fused: ``False`` forces the generic formulas (no fused pass) in every loss; ``True``/``None``: the fused
            passes wherever they apply (logits, and index targets for the softmax).
        ops: ``True`` routes every fused pass through the ``torch.library`` operators, ``False`` through the
            autograd functions of :mod:`seglosses._fused` (also under ``torch.compile``, where they take their
            traced form); ``None``: operators under ``torch.compile``/``torch.export``, wherever
            :func:`seglosses._native.intercepted` (``make_fx``, fake or ``torch.func``-wrapped tensors) and on
            CUDA with Triton, the autograd functions in eager mode elsewhere.
        native: ``False`` disables the C++ kernels (every CPU pass runs its PyTorch twin; the same as
            :func:`seglosses._native.set_native` ``(False)`` for the duration); ``True``/``None``: the kernels
            wherever they are built and take the tensors.
        traced: ``True`` makes the autograd functions of :mod:`seglosses._fused` take their whole-tensor, out-of-place
            form (the one ``torch.compile`` traces) also in eager mode; ``None``/``False``: only while compiling.
        chunk_elements: elements of ``(N, C, chunk)`` per chunk of the chunked PyTorch passes on every device
            (test-only: a small value makes every shape run several chunks). ``None``: about 2^18 elements per
            chunk on the CPU (at least 1024 pixels), at most 4 chunks on a GPU.

    """

    fused: bool | None = None
    ops: bool | None = None
    native: bool | None = None
    traced: bool | None = None
    chunk_elements: int | None = None


_current = Settings()
_record: list[list[str]] = []


def settings() -> Settings:
    """The settings in force (see :func:`use`)."""
    return _current


@contextlib.contextmanager
def use(
    *,
    fused: bool | None = None,
    ops: bool | None = None,
    native: bool | None = None,
    traced: bool | None = None,
    chunk_elements: int | None = None,
) -> Iterator[Settings]:
    """Force computation paths inside a ``with`` block (see :class:`Settings` for each argument).

    Arguments left at ``None`` keep the value of an enclosing :func:`use` (nested blocks combine). Yields the
    settings in force; restores the previous ones (and the native kernels' on/off state) on exit.

    Raises:
        ValueError: ``chunk_elements`` not a positive integer.

    """
    global _current
    if chunk_elements is not None and (
        isinstance(chunk_elements, bool) or not isinstance(chunk_elements, int) or chunk_elements < 1
    ):
        raise ValueError(f"use: `chunk_elements` must be a positive integer or None; got {chunk_elements!r}")
    previous = _current
    native_before = bool(_native._state["enabled"])
    changes = {
        k: v
        for k, v in {
            "fused": fused,
            "ops": ops,
            "native": native,
            "traced": traced,
            "chunk_elements": chunk_elements,
        }.items()
        if v is not None
    }
    _current = dataclasses.replace(previous, **changes)  # type: ignore[arg-type]
    if native is False:
        _native.set_native(False)
    try:
        yield _current
    finally:
        _current = previous
        _native.set_native(native_before)


@contextlib.contextmanager
def record() -> Iterator[list[str]]:
    """Collect the paths taken inside the block: ``"<family>:<kind>:<backend>"`` strings, one per fused call.

    ``family`` is ``stats`` or ``pixel``; ``kind`` is ``softmax_index``, ``sigmoid_dense`` or ``generic``;
    ``backend`` is ``ops``, ``autograd`` or ``-`` (generic). The Lovász losses add ``lovasz:softmax_index:ops`` or
    ``lovasz:dense:ops`` when their rows go through the ``seglosses::lovasz_fwd`` operator (nothing for their
    readable PyTorch path); Dice, Jaccard, Tversky, focal Tversky, cross entropy, focal and Dice + CE add
    ``whole:<kind>:ops`` when the ``seglosses::whole_loss_fwd`` operator computes them whole (CUDA with Triton, or
    ``use(ops=True)``; :mod:`seglosses._whole`).
    Under ``torch.compile`` entries are appended while tracing (once per compilation, not per call).
    """
    taken: list[str] = []
    _record.append(taken)
    try:
        yield taken
    finally:
        _record.remove(taken)


def _note(entry: str) -> None:
    for taken in _record:
        taken.append(entry)


# --------------------------------------------------------------------------------------------------------------
# decisions
# --------------------------------------------------------------------------------------------------------------


def traced() -> bool:
    """Whether the autograd functions of :mod:`seglosses._fused` take their whole-tensor (traced) form now."""
    return bool(_current.traced) or torch.compiler.is_compiling()


def chunk_elements() -> int | None:
    """The forced chunk size of the chunked PyTorch passes, or None (the device's default rule)."""
    return _current.chunk_elements


def backend(x: Tensor) -> Backend:
    """Which implementation of a fused pass runs on ``x``: the operators or the autograd functions."""
    if _current.ops is not None:
        return "ops" if _current.ops else "autograd"
    if _native.intercepted(x):  # torch.compile/export, make_fx, fake or torch.func-wrapped tensors
        return "ops"
    from seglosses import _ops

    return "ops" if _ops.triton_runs(x.device) else "autograd"


def fused_enabled() -> bool:
    """False when :func:`use` ``(fused=False)`` forces the generic formulas."""
    return _current.fused is not False


def stats_path(prep: Prepared, *, squared: bool = False) -> Family:
    """The statistics family's path for a prepared call.

    ``"softmax_index"``: multiclass logits with class-index targets; ``"sigmoid_dense"``: binary/multilabel logits
    (dense targets); ``"generic"``: probabilities as input, one-hot/soft multiclass targets, or ``squared`` (the
    squared denominators of Milletari's Dice need ``sum p^2``, which the fused passes do not return).
    """
    if not fused_enabled() or squared or not prep.from_logits:
        return "generic"
    if prep.mode == "multiclass":
        return "softmax_index" if prep.form == "index" else "generic"
    return "sigmoid_dense"


def pixel_path(prep: Prepared, *, reduction: str) -> Family:
    """The pixel-sum family's path (cross entropy, focal): as :func:`stats_path`.

    ``"generic"`` also for ``reduction="none"`` (the per-element map is needed, not per-image sums).
    """
    if reduction == "none":
        return "generic"
    return stats_path(prep)


def sigmoid_kernel_runs(x: Tensor, g: Tensor, valid: Tensor | None) -> bool:
    """Whether a sigmoid pixel pass would run a compiled kernel (C++ or Triton) or is forced fused.

    Binary cross entropy without a kernel is best left to ``torch.nn.functional.binary_cross_entropy_with_logits``
    (one fused PyTorch kernel); with a kernel, or when :func:`use` forces the operators or the traced form, the
    fused sigmoid pass runs.
    """
    if _current.ops is not None or _current.traced or _native.intercepted(x):
        return True
    from seglosses import _fused, _ops

    return _ops.triton_runs(x.device) or _fused.sigmoid_native_ok(x, g, valid)


# --------------------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------------------


def _triton_serves(x: Tensor) -> bool:
    from seglosses import _ops

    return _ops.triton_runs(x.device)


def guard_indices(t: Tensor, c: int, valid: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Class indices made safe for the kernels when the host-side value check did not run.

    Where :func:`seglosses.set_value_checks` checked the target on the host (the CPU by default, every device with
    ``"always"``) a bad index has already raised, and ``(t, None)`` is returned unchanged. Elsewhere (a GPU by
    default, ``"never"``, while ``torch.compile`` traces) the bad-index counter is computed on the device, without a
    host synchronisation: returns ``t`` clamped to ``[0, C)`` (so no kernel reads out of bounds; two passes, the
    clamp and the comparison) and the per-image count ``(N,)`` of the kept pixels that were outside, for
    :func:`poison`.
    """
    from seglosses._checks import values_checked

    if values_checked(t):
        return t, None
    safe = t.clamp(0, c - 1)  # in range everywhere (a bad one's image is poisoned: its value does not matter)
    bad = safe != t
    if valid is not None:
        bad = bad & (valid > 0)
    return safe, bad.sum(-1)


def poison(sums: FusedSums, bad: Tensor) -> FusedSums:
    """Every sum of an image whose bad-index counter ``bad`` ``(N,)`` is non-zero set to NaN (others unchanged).

    Adds NaN or exactly 0 per image: no host synchronisation, and the loss of a batch holding a bad index is NaN.
    """
    nan = torch.where(bad > 0, float("nan"), 0.0).to(sums.tp.dtype)
    col = nan.unsqueeze(1)
    return FusedSums(sums.tp + col, sums.p_sum + col, sums.g_sum + col, sums.pixel + nan)


class FusedSums(NamedTuple):
    """Per-image sums of one fused pass, in the same order for every family and path.

    Attributes:
        tp: ``(N, C)`` ``sum v p g`` (zeros when the statistics were not asked for).
        p_sum: ``(N, C)`` ``sum v p`` (zeros when not asked for).
        g_sum: ``(N, C)`` ``sum v g`` (no gradient; zeros from a sigmoid pass asked for the pixel sums only).
        pixel: ``(N,)`` per-image sum of the pixel term (cross entropy / focal; zeros when not asked for).

    """

    tp: Tensor
    p_sum: Tensor
    g_sum: Tensor
    pixel: Tensor


def softmax_index_sums(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    *,
    wpix: Tensor | None = None,
    gamma: float | Tensor = 0.0,
    need_stats: bool = True,
    need_pixel: bool = False,
) -> FusedSums:
    r"""The softmax pass over logits ``x`` ``(N, C, M)`` with class indices ``t`` ``(N, M)``.

    ``TP_c = sum_m v_m p_{c,m} [t_m = c]``, ``P_c = sum_m v_m p_{c,m}``, ``G_c = sum_m v_m [t_m = c]`` and the pixel
    term ``sum_m w_m f(\log p_{t_m,m})`` with ``f(l) = -(1 - e^l)^\gamma l`` (cross entropy for ``gamma = 0``).

    Args:
        x: ``(N, C, M)`` float32/float64 logits.
        t: ``(N, M)`` int64 class indices (0 at ignored pixels).
        valid: ``(N, M)`` 0/1 float mask of kept pixels, or None.
        wpix: ``(N, M)`` per-pixel weight of the pixel term (already times ``valid``), or None.
        gamma: focal exponent (default 0), a float or an ``(N, M)`` per-pixel tensor.
        need_stats: compute ``TP`` and ``P`` (default True).
        need_pixel: compute the pixel term (default False).

    """
    family = "stats" if need_stats else "pixel"
    how = backend(x)
    _note(f"{family}:softmax_index:{how}")
    bad = None
    if not (how == "ops" and _triton_serves(x)):  # the Triton kernels count bad indices themselves
        t, bad = guard_indices(t, x.shape[1], valid)
    if how == "ops":
        from seglosses import _ops

        tp, psum, pix, gsum = _ops.softmax_index(
            x, t, valid, wpix=wpix, gamma=gamma, need_stats=need_stats, need_pixel=need_pixel
        )
    else:
        from seglosses import _fused

        tp, psum, pix, gsum = _fused.softmax_index(
            x, t, valid, wpix=wpix, gamma=gamma, need_stats=need_stats, need_pixel=need_pixel
        )
    sums = FusedSums(tp, psum, gsum, pix)
    return sums if bad is None else poison(sums, bad)


def sigmoid_dense_sums(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    *,
    alpha: float | None = None,
    gamma: float = 0.0,
    need_stats: bool = True,
    need_pixel: bool = False,
    gamma_pos0: bool = False,
) -> FusedSums:
    r"""The sigmoid pass over logits ``x`` and a dense target ``g`` in [0, 1], both ``(N, C, M)``.

    ``TP = sum v p g``, ``P = sum v p``, ``G = sum v g`` per image and channel, and the pixel term
    ``sum v L`` with ``L = -[w_1 g (1 - p)^{\gamma_+} \log p + w_0 (1 - g) p^\gamma \log(1 - p)]``
    (``w_1 = alpha``, ``w_0 = 1 - alpha``, both 1 without alpha; ``gamma_+ = 0`` with ``gamma_pos0``, else
    ``gamma``): binary cross entropy for ``gamma = 0`` and no alpha.

    Args:
        x: ``(N, C, M)`` float32/float64 logits.
        g: ``(N, C, M)`` target (0 at ignored elements).
        valid: 0/1 float mask broadcastable to ``(N, C, M)``, or None.
        alpha: weight of the positive term, or None (default).
        gamma: focal exponent (default 0).
        need_stats: compute ``TP``, ``P`` and ``G`` (default True; without it they may be zeros).
        need_pixel: compute the pixel term (default False).
        gamma_pos0: the positive term's exponent is 0 (the asymmetric focal loss; default False).

    """
    family = "stats" if need_stats else "pixel"
    how = backend(x)
    _note(f"{family}:sigmoid_dense:{how}")
    if valid is not None and valid.shape != x.shape:
        valid = valid.expand_as(x).contiguous()
    if how == "ops":
        from seglosses import _ops

        out = _ops.sigmoid_dense_fwd(x, g, valid, alpha, float(gamma), need_stats, need_pixel, gamma_pos0)
        return FusedSums(out[0], out[1], out[2], out[3])
    from seglosses import _fused

    if not need_stats and not gamma_pos0:  # the pixel sums only (no pass over the target for G)
        pix = _fused.sigmoid_focal(x, g, valid, alpha=alpha, gamma=gamma)
        zeros = x.new_zeros(x.shape[:2])
        return FusedSums(zeros, zeros, zeros, pix)
    tp, psum, gsum, pix = _fused.sigmoid_dense(
        x, g, valid, alpha=alpha, gamma=gamma, need_pixel=need_pixel, gamma_pos0=gamma_pos0
    )
    return FusedSums(tp, psum, gsum, pix)


def note_generic(family: Literal["stats", "pixel"]) -> None:
    """Record that ``family`` took the generic formulas (for :func:`record`)."""
    _note(f"{family}:generic:-")
