"""Validation of user input: the only module of seglosses that raises on bad arguments.

Every message follows one template::

    "<function>: `<argument>` <what was expected>; got <what was received>"

optionally followed by a hint for the usual mistake. Functions here never broadcast and never warn.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, TypeGuard, TypeVar

import numpy as np
import torch

from seglosses._distributed import Sync, is_ready
from seglosses._types import MODES

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + (",)" if len(shape) == 1 else ")")


def _did_you_mean(value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_option(fn: str, name: str, value: object, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` if ``value`` is not one of ``choices`` (with a did-you-mean hint)."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{fn}: `{name}` must be one of {listed}; got {value!r}{_did_you_mean(value, choices)}")


def check_mode(fn: str, mode: object, allowed: Sequence[str] = MODES) -> None:
    """Check the ``mode`` option; ``allowed`` narrows it for losses that do not support every mode."""
    check_option(fn, "mode", mode, MODES)
    if mode not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"{fn}: `mode` must be one of {listed} for this loss; got {mode!r}")


def check_bool(fn: str, name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is a Python bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: `{name}` must be a bool; got {type(value).__name__} {value!r}")


def is_real(value: object) -> TypeGuard[numbers.Real]:
    """A real number: a Python or NumPy int/float (any ``numbers.Real``), not a bool (nor NumPy's, not Real)."""
    return not isinstance(value, bool) and (isinstance(value, (int, float)) or isinstance(value, numbers.Real))


def is_whole(value: object) -> TypeGuard[numbers.Integral]:
    """A whole number: a Python or NumPy int (any ``numbers.Integral``), not a bool."""
    return not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, numbers.Integral))


def check_number(
    fn: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number inside the given interval and return it as float.

    A real number: a Python or NumPy int or float (``np.float32(0.3)`` from a config file too), not a bool.
    """
    if not is_real(value):
        raise TypeError(f"{fn}: `{name}` must be a real number; got {type(value).__name__} {value!r}")
    v = float(value)
    if torch.compiler.is_compiling():
        # while torch.compile traces, a hyperparameter may be symbolic (dynamo makes a float dynamic when a second
        # Module with another value compiles the same code): its value is not known here, the eager call checks it
        return v
    if not math.isfinite(v):
        raise ValueError(f"{fn}: `{name}` must be finite; got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{fn}: `{name}` must be {'>' if low_open else '>='} {low:g}; got {v:g}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{fn}: `{name}` must be {'<' if high_open else '<='} {high:g}; got {v:g}")
    return v


def check_ignore_index(fn: str, ignore_index: object) -> None:
    """``ignore_index`` is ``None`` or an int."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"{fn}: `ignore_index` must be an int or None; got {type(ignore_index).__name__}")
    if ignore_index is not None and not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"{fn}: `ignore_index` must fit in int64; got {ignore_index}")


_WEIGHTS_FORM = "{fn}: `{name}` must be a sequence of numbers, a 1-D tensor or a NumPy array of numbers; got {got}"


def check_weights_vector(fn: str, name: str, value: object, *, allow_zero_sum: bool = False) -> torch.Tensor | None:
    """A sequence, 1-D tensor or NumPy array of non-negative finite weights as a tensor (float64 unless a tensor).

    A tensor keeps its device. The values (finite, >= 0, a positive sum) of a sequence are always checked; those of
    a tensor where value checks apply (:func:`values_checked`: a CPU tensor by default, every device with
    ``set_value_checks("always")``). A loss Module's buffer moved to the GPU, checked when the Module was built, is
    so not read on the host in every call, which would synchronise.
    """
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        w = value.detach()
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":  # e.g. sklearn's compute_class_weight
        w = torch.from_numpy(np.array(value, dtype=np.float64))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        try:
            w = torch.tensor([float(v) for v in value], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(_WEIGHTS_FORM.format(fn=fn, name=name, got=repr(value))) from None
    else:
        raise TypeError(_WEIGHTS_FORM.format(fn=fn, name=name, got=type(value).__name__))
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"{fn}: `{name}` must be 1-D and non-empty; got shape {_fmt_shape(w.shape)}")
    if not torch.is_floating_point(w):
        w = w.to(torch.float64)
    if isinstance(value, torch.Tensor) and not values_checked(w):
        return w
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{fn}: `{name}` must hold finite values >= 0; got {w.tolist()}")
    if not allow_zero_sum and float(w.sum()) <= 0:
        raise ValueError(f"{fn}: `{name}` must have a positive sum; got {w.tolist()}")
    return w


def _float_holds(dtype: torch.dtype, value: int) -> bool:
    """Whether the floating ``dtype`` holds the integer ``value`` exactly (worked out on the host, no tensor made)."""
    info = torch.finfo(dtype)
    magnitude = abs(value)
    if magnitude > info.max:
        return False
    if magnitude == 0:
        return True
    significant = magnitude.bit_length() - ((magnitude & -magnitude).bit_length() - 1)
    return significant <= round(-math.log2(info.eps)) + 1


def dtype_holds(dtype: torch.dtype, value: int) -> bool:
    """Whether a tensor of ``dtype`` can hold the integer ``value`` exactly (bool: 0 and 1)."""
    if dtype == torch.bool:
        return value in (0, 1)
    if dtype.is_floating_point:
        return _float_holds(dtype, value)
    info = torch.iinfo(dtype)
    return info.min <= value <= info.max


def exact_ignore_target(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """``target``, widened (int64 or float64) when its dtype cannot hold ``ignore_index``.

    ``target != ignore_index`` converts ``ignore_index`` to the target's dtype: a uint8 target with
    ``ignore_index=-1`` compares with 255, an int8 one with ``ignore_index=255`` compares with -1, so those values
    were silently ignored instead of being refused as out of range. No value of the widened target equals an
    ``ignore_index`` its own dtype cannot hold, as it should be.
    """
    if ignore_index is None or target.dtype == torch.bool or dtype_holds(target.dtype, ignore_index):
        return target  # (a bool target compares by promotion: no wrap-around)
    return target.to(torch.float64) if torch.is_floating_point(target) else target.long()


def check_class_weights_length(fn: str, weights: torch.Tensor, num_classes: int, num_kept: int) -> None:
    """``class_weights`` has one entry per class, or one per kept class; the kept classes' weights a positive sum.

    The sum is read where value checks apply (:func:`values_checked`), like the vector's own checks.
    """
    n = weights.numel()
    if n not in (num_classes, num_kept):
        expected = (
            f"C={num_classes}" if num_kept == num_classes else f"C={num_classes} or {num_kept} (the kept classes)"
        )
        raise ValueError(f"{fn}: `class_weights` must have length {expected}; got {n}")
    if n == num_classes > num_kept and values_checked(weights):
        kept = weights.detach()[num_classes - num_kept :]
        if float(kept.sum()) <= 0:
            raise ValueError(
                f"{fn}: `class_weights` of the kept classes (include_background=False drops class 0) must have "
                f"a positive sum; got {weights.detach().tolist()}"
            )


def check_no_class_weights_binary(fn: str, class_weights: object, mode: str) -> None:
    """Binary mode has one class (the foreground): per-class weights are meaningless there, so they raise."""
    if mode == "binary" and class_weights is not None:
        raise ValueError(
            f"{fn}: `class_weights` is not defined in mode='binary' (one class); got {class_weights!r}. "
            "Weight positives through focal_loss(alpha=...) or combo_loss(beta=...) instead"
        )


def check_reduction(fn: str, reduction: object, choices: Sequence[str] = ("mean", "sum", "none")) -> None:
    """Check ``reduction`` against the choices this loss supports."""
    if reduction == "none" and "none" not in choices:
        raise ValueError(
            f"{fn}: `reduction` must be one of {', '.join(repr(c) for c in choices)}; got 'none' "
            "(a compound loss adds terms of different shapes: call its parts with reduction='none')"
        )
    check_option(fn, "reduction", reduction, choices)


def check_input_target(
    fn: str,
    input: Any,
    target: Any,
    *,
    mode: str,
    ignore_index: int | None,
    allow_soft: bool = True,
    index_values: bool = True,
) -> str:
    """Check ``input`` and ``target`` against the shape rules shared by every loss and metric.

    ``input`` is ``(N, C, *S)`` (or ``(N, 1, *S)``/``(N, *S)`` in binary mode); ``target`` is class indices
    ``(N, *S)`` in multiclass mode, or the input's shape (0/1 masks, one-hot or soft labels).

    ``index_values=False`` leaves the range check of class indices to the caller (:func:`check_index_range`, run
    by ``prepare`` on the target with ignored pixels already replaced: one pass instead of three).

    Returns the target form: ``"index"`` (multiclass class indices, shape ``(N, *S)``) or ``"dense"`` (the input's
    shape: binary/multilabel masks, multiclass one-hot or soft labels).
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}: `input` must be a torch.Tensor; got {type(input).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{fn}: `target` must be a torch.Tensor; got {type(target).__name__}")
    if not torch.is_floating_point(input):
        raise TypeError(f"{fn}: `input` must be a floating-point tensor; got {input.dtype}")
    if target.device != input.device:
        raise ValueError(f"{fn}: `target` must be on the input's device {input.device}; got {target.device}")
    shape = tuple(input.shape)
    tshape = tuple(target.shape)
    if mode == "binary":
        if input.ndim < 2:
            raise ValueError(
                f"{fn}: `input` for mode='binary' must have shape (N, 1, *S) or (N, *S); got {_fmt_shape(shape)}"
            )
        if tshape != shape:
            hint = ""
            if input.ndim == target.ndim + 1 and shape[1] == 1 and tshape == shape[:1] + shape[2:]:
                hint = " (unsqueeze dim 1 of the target)"
            elif target.ndim == input.ndim + 1 and tshape[1] == 1 and shape == tshape[:1] + tshape[2:]:
                hint = " (squeeze dim 1 of the target)"
            raise ValueError(
                f"{fn}: `target` for mode='binary' must have the input's shape {_fmt_shape(shape)}; "
                f"got {_fmt_shape(tshape)}{hint}"
            )
        form = "dense"
    else:
        if input.ndim < 3:
            raise ValueError(f"{fn}: `input` for mode={mode!r} must have shape (N, C, *S); got {_fmt_shape(shape)}")
        n, c = shape[0], shape[1]
        if mode == "multiclass" and c < 2:
            raise ValueError(
                f"{fn}: `input` for mode='multiclass' must have C >= 2 channels; got {_fmt_shape(shape)} "
                "(use mode='binary' for one foreground channel)"
            )
        index_shape = (n, *shape[2:])
        if mode == "multiclass" and tshape == index_shape:
            form = "index"
        elif tshape == shape:
            form = "dense"
        else:
            if mode == "multiclass":
                hint = ""
                if target.ndim == input.ndim and tshape[1] == 1 and tshape[:1] + tshape[2:] == index_shape:
                    hint = " (squeeze dim 1 of an index target)"
                elif target.ndim == input.ndim and tshape[0] == n and tshape[2:] == shape[2:]:
                    hint = f" (the target has {tshape[1]} channels, the input C={c})"
                elif target.ndim == input.ndim and tshape[0] == n and tshape[-1] == c and tshape[1:-1] == shape[2:]:
                    hint = " (channels-last one-hot: move the class dim to dim 1)"
                raise ValueError(
                    f"{fn}: `target` for mode='multiclass' must have shape (N, *S)={_fmt_shape(index_shape)} "
                    f"or (N, C, *S)={_fmt_shape(shape)}; got {_fmt_shape(tshape)}{hint}"
                )
            raise ValueError(
                f"{fn}: `target` for mode={mode!r} must have the input's shape (N, C, *S)={_fmt_shape(shape)}; "
                f"got {_fmt_shape(tshape)}"
            )
    if form == "index":
        if target.dtype not in _INT_DTYPES:
            raise TypeError(
                f"{fn}: `target` of shape (N, *S) for mode='multiclass' holds class indices and must have an "
                f"integer dtype; got {target.dtype} (use target.long())"
            )
        c = shape[1]
        if not index_values or not values_checked(target):
            return form
        bad = (target < 0) | (target >= c)
        if ignore_index is not None:
            bad &= target != ignore_index
        if bool(bad.any()):
            first = int(target[bad].flatten()[0])
            raise ValueError(
                f"{fn}: `target` class indices must be in [0, {c}){_or_ignored(ignore_index)}; got {first}"
            )
        return form
    # dense target
    if not (target.dtype == torch.bool or target.dtype in _INT_DTYPES or torch.is_floating_point(target)):
        raise TypeError(f"{fn}: `target` must be a real tensor; got {target.dtype}")
    check_values = values_checked(target) and target.numel() > 0 and target.dtype != torch.bool
    if check_values and not allow_soft and mode != "multiclass" and _hard_target_native(target, ignore_index):
        return form  # every value 0, 1 or ignore_index: one native pass (else the passes below say what is wrong)
    # one pass: NaN propagates through aminmax, so NaN and the range are both read from (lo, hi)
    lo, hi = (float(v) for v in torch.aminmax(target)) if check_values else (0.0, 1.0)
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{fn}: `target` must not contain NaN; got {int(torch.isnan(target).sum())} NaN values")
    if mode == "multiclass" and ignore_index is not None:
        raise ValueError(
            f"{fn}: `ignore_index` applies to index targets of shape (N, *S) only in mode='multiclass'; "
            f"got ignore_index={ignore_index} with a one-hot/soft target of shape {_fmt_shape(tshape)}"
        )
    if not check_values:
        return form
    if (lo < 0 or hi > 1) and ignore_index is not None:
        kept = target[target != ignore_index]
        lo, hi = (float(kept.min()), float(kept.max())) if kept.numel() > 0 else (0.0, 1.0)
    if lo < 0 or hi > 1:
        ig = "" if mode == "multiclass" else f" (or equal ignore_index={ignore_index})"
        raise ValueError(f"{fn}: `target` for mode={mode!r} must hold values in [0, 1]{ig}; got min={lo:g}, max={hi:g}")
    if not allow_soft:
        kept = target if ignore_index is None else target[target != ignore_index]
        if bool(((kept != 0) & (kept != 1)).any()):
            raise ValueError(f"{fn}: `target` must be hard (values 0 or 1) for this loss; got soft values")
    return form


def _hard_target_native(target: torch.Tensor, ignore_index: int | None) -> bool:
    """True if the native kernel ran and found only 0, 1 and ``ignore_index`` in ``target`` (NaN is not)."""
    from seglosses import _native

    lib = _native.usable(target)
    kernel = _native.suffix(target.dtype)
    if lib is None or kernel is None:
        return False
    count = getattr(lib, f"sl_count_not_binary{kernel}")
    has_ignore = ignore_index is not None
    threads = max(1, torch.get_num_threads())
    return int(count(target.data_ptr(), target.numel(), int(has_ignore), float(ignore_index or 0), threads)) == 0


def _or_ignored(ignore_index: int | None) -> str:
    """`` or equal ignore_index=...`` for the range messages, empty without one."""
    return "" if ignore_index is None else f" or equal ignore_index={ignore_index}"


def check_index_range(fn: str, cleaned: torch.Tensor, target: torch.Tensor, c: int, ignore_index: int | None) -> None:
    """Class indices in ``[0, C)``: one ``aminmax`` over ``cleaned`` (the target with ignored pixels set to 0)."""
    if cleaned.numel() == 0 or not values_checked(cleaned):
        return
    lo, hi = torch.aminmax(cleaned)
    if bool(lo < 0) or bool(hi >= c):
        bad = (target < 0) | (target >= c)
        if ignore_index is not None:
            bad &= target != ignore_index
        first = int(target[bad].flatten()[0])
        raise ValueError(f"{fn}: `target` class indices must be in [0, {c}){_or_ignored(ignore_index)}; got {first}")


#: When value checks (index range, NaN, probabilities in [0, 1]) run: see :func:`set_value_checks`.
_VALUE_CHECKS = {"when": "cpu"}


def set_value_checks(when: str) -> None:
    """Choose when seglosses checks the *values* of inputs and targets (shapes and dtypes are always checked).

    Args:
        when: ``"cpu"`` (default): only for tensors on the CPU, where the check is one cheap reduction; on a GPU
            it would force a host-device synchronisation in every loss call, so it is skipped there.
            ``"always"``: on every device (use it while debugging a GPU pipeline). ``"never"``: no value checks.

    Value checks are also skipped while ``torch.compile`` traces a loss (they would break the graph).

    """
    check_option("set_value_checks", "when", when, ("cpu", "always", "never"))
    _VALUE_CHECKS["when"] = when


def values_checked(t: torch.Tensor) -> bool:
    """Whether value checks apply to ``t`` now (see :func:`set_value_checks`).

    Never while PyTorch traces or for tensors without readable values (:func:`seglosses._native.intercepted`:
    ``torch.compile``/``export``, ``make_fx``, ``FakeTensor``, ``torch.func.vmap`` wrappers): a check reads the data.
    """
    when = _VALUE_CHECKS["when"]
    if when == "never":
        return False
    from seglosses._native import intercepted

    if intercepted(t):
        return False
    return when == "always" or t.device.type == "cpu"


def check_probabilities(fn: str, x: torch.Tensor) -> None:
    """With ``from_logits=False`` the input must hold probabilities in [0, 1]; NaN is refused too."""
    if x.numel() == 0 or not values_checked(x):
        return
    lo, hi = torch.aminmax(x.detach())
    if not (bool(lo >= 0) and bool(hi <= 1)):
        nan = int(torch.isnan(x.detach()).sum())
        got = f"{nan} NaN values" if nan else f"min={float(lo):g}, max={float(hi):g}"
        raise ValueError(
            f"{fn}: `input` with from_logits=False must hold probabilities in [0, 1]; "
            f"got {got} (pass from_logits=True for logits)"
        )


def check_sync(fn: str, sync_stats: object, process_group: object) -> Sync | None:
    """``sync_stats`` is a bool; when True, ``torch.distributed`` must be initialised. Returns the sync spec or None."""
    check_bool(fn, "sync_stats", sync_stats)
    if not sync_stats:
        return None
    if not is_ready():
        raise ValueError(
            f"{fn}: `sync_stats`=True needs an initialised torch.distributed process group "
            "(call torch.distributed.init_process_group first); got sync_stats=True with torch.distributed "
            f"{'not initialised' if torch.distributed.is_available() else 'not available in this build'}"
        )
    if process_group is not None and not isinstance(process_group, torch.distributed.ProcessGroup):
        raise TypeError(
            f"{fn}: `process_group` must be a torch.distributed.ProcessGroup or None; "
            f"got {type(process_group).__name__}"
        )
    return Sync(process_group)


def check_classes_left(fn: str, num_classes: int, include_background: bool) -> None:
    """``include_background=False`` must leave at least one class."""
    if not include_background and num_classes < 2:
        raise ValueError(
            f"{fn}: `include_background`=False drops channel 0 and leaves no class for C={num_classes}; got "
            "include_background=False (keep it True, or use mode='binary' for a single foreground channel)"
        )


# ---------------------------------------------------------------------- hyperparameters: declared beside each loss
#
# Each loss declares the legal values of its own hyperparameters next to its definition, once:
#
#     @hyperparameters(alpha=NONNEGATIVE, beta=NONNEGATIVE, gamma=POSITIVE, smooth=NONNEGATIVE)
#     def focal_tversky_loss(input, target, *, ...):
#         check_hparams("focal_tversky_loss", alpha=alpha, ...)
#
# The function checks its arguments against that declaration (check_hparams), the Module checks its constructor
# arguments against the same one (losses._SegLoss), and the search space of `seglosses tune` is checked to lie
# inside it (registry). Arguments shared by every loss (mode, from_logits, class_weights, ...) have one meaning
# everywhere and are checked by _SHARED below; a loss does not declare them.


class Interval(NamedTuple):
    """The legal values of a real hyperparameter: ``low <= x <= high``, ``<`` at an open end, None: unbounded.

    Attributes:
        low: the lower end (None: no lower bound).
        high: the upper end (None: no upper bound).
        low_open: the lower end itself is excluded.
        high_open: the upper end itself is excluded.

    Examples:
        >>> from seglosses._checks import Interval
        >>> str(Interval(0.0, 1.0, high_open=True)), Interval(0.0, 1.0, high_open=True).contains(1.0)
        ('[0, 1)', False)

    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, fn: str, name: str, value: object, mode: str | None = None) -> float:
        """Return ``value`` as a float, or raise ``TypeError``/``ValueError`` naming ``fn`` and ``name``."""
        return check_number(
            fn, name, value, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open
        )

    def contains(self, x: float) -> bool:
        """Whether the real number ``x`` lies inside the interval."""
        if not math.isfinite(x):
            return False
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return not (self.high is not None and (x > self.high or (self.high_open and x == self.high)))

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{lo}, {hi}{right}"


class Flag(NamedTuple):
    """A hyperparameter that is a Python bool."""

    def check(self, fn: str, name: str, value: object, mode: str | None = None) -> bool:
        """Return ``value``, or raise ``TypeError`` unless it is a bool."""
        check_bool(fn, name, value)
        return bool(value)


class Choice(NamedTuple):
    """A hyperparameter that is one of a few strings.

    Attributes:
        choices: the accepted strings.

    """

    choices: tuple[str, ...]

    def check(self, fn: str, name: str, value: object, mode: str | None = None) -> str:
        """Return ``value``, or raise ``ValueError`` listing the choices (with a did-you-mean hint)."""
        check_option(fn, name, value, self.choices)
        return str(value)


class ClassBalance(NamedTuple):
    """The focal loss's ``alpha``: a scalar, per-class weights, None or ``"auto"`` (see :func:`check_focal_alpha`).

    A number in ``interval`` or None in binary/multilabel mode; C non-negative weights or None in multiclass mode.

    Attributes:
        interval: the legal values of the scalar form.

    """

    interval: Interval = Interval(0.0, 1.0)

    def check(self, fn: str, name: str, value: object, mode: str | None = None) -> object:
        """Check the form allowed in ``mode`` (the length of a per-class vector is checked at call time)."""
        return check_focal_alpha(fn, name, value, mode or "binary", interval=self.interval)


Rule = Interval | Flag | Choice | ClassBalance
"""One declared hyperparameter rule."""

NONNEGATIVE = Interval(0.0)
"""``[0, inf)``: smoothing constants, exponents that may vanish, weights of a sum."""
POSITIVE = Interval(0.0, low_open=True)
"""``(0, inf)``: an exponent whose zero would make the loss constant."""
UNIT = Interval(0.0, 1.0)
"""``[0, 1]``: the weight of a convex combination, a fraction."""
FLAG = Flag()
"""A Python bool."""

_F = TypeVar("_F", bound=Callable[..., Any])
_DECLARED: dict[str, Mapping[str, Rule]] = {}


def hyperparameters(**rules: Rule) -> Callable[[_F], _F]:
    """Declare the legal values of a loss function's own hyperparameters, beside its definition.

    The declaration is stored under the function's name (see :func:`declared`); the function, its Module and the
    search space of ``seglosses tune`` all read it. Arguments shared by every loss (``mode``, ``from_logits``,
    ``include_background``, ``class_weights``, ``ignore_index``, ``per_image``, ``sync_stats``,
    ``process_group``) are not declared: they mean the same everywhere.

    Args:
        **rules: one :class:`Interval`, :class:`Flag`, :class:`Choice` or :class:`ClassBalance` per hyperparameter.

    Returns:
        A decorator that records the rules and returns the function unchanged.

    """

    def declare(f: _F) -> _F:
        _DECLARED[f.__name__] = MappingProxyType(dict(rules))
        return f

    return declare


def declared(fn: str | Callable[..., Any]) -> Mapping[str, Rule]:
    """The hyperparameter rules declared by the loss function ``fn`` (a function or its name); empty if none."""
    name = fn if isinstance(fn, str) else fn.__name__
    return _DECLARED.get(name, MappingProxyType({}))


def _check_shared(fn: str, name: str, value: object, mode: str | None) -> bool:
    """Check an argument shared by every loss; False if ``name`` is not one of them."""
    if name == "mode":
        check_mode(fn, value)
    elif name in ("from_logits", "include_background", "per_image", "sync_stats"):
        check_bool(fn, name, value)
    elif name == "ignore_index":
        check_ignore_index(fn, value)
    elif name == "class_weights":
        check_weights_vector(fn, name, value)
    elif name != "process_group":
        return False
    return True


def check_argument(fn: str, name: str, value: object, mode: str | None = None) -> None:
    """Check one argument of the loss ``fn``: a shared one, or a hyperparameter against ``fn``'s declaration.

    Raises:
        TypeError: a value of the wrong type (a non-bool flag, a non-number).
        ValueError: a value outside its declared bounds or choices.
        KeyError: ``fn`` declares no rule for ``name`` (a mistake inside seglosses, not a user error).

    """
    if _check_shared(fn, name, value, mode):
        return
    rule = _DECLARED.get(fn, {}).get(name)
    if rule is None:  # pragma: no cover - a programming error inside seglosses, not user input
        raise KeyError(f"check_argument: {fn} declares no rule for {name!r} (add it to its @hyperparameters)")
    rule.check(fn, name, value, mode)


def check_hparams(fn: str, **kwargs: object) -> None:
    """Check keyword arguments of the loss ``fn`` (the same checks in functions and in Module constructors)."""
    mode = kwargs.get("mode")
    for name, value in kwargs.items():
        check_argument(fn, name, value, mode if isinstance(mode, str) else None)


def check_focal_alpha(
    fn: str,
    name: str,
    alpha: object,
    mode: str,
    num_classes: int | None = None,
    *,
    interval: Interval = UNIT,
) -> object:
    """Focal ``alpha``: a float in [0, 1] or None (binary/multilabel); a sequence of C floats or None (multiclass).

    ``"auto"`` resolves to 0.25 (binary/multilabel, the focal paper's choice) or None (multiclass: no balancing).
    ``interval`` bounds the scalar form (default ``[0, 1]``).
    """
    if isinstance(alpha, str):
        if alpha != "auto":
            raise ValueError(f"{fn}: `{name}` must be a float, a sequence of floats, None or 'auto'; got {alpha!r}")
        return None if mode == "multiclass" else 0.25
    if alpha is None:
        return None
    if mode == "multiclass":
        if is_real(alpha):
            raise ValueError(
                f"{fn}: `{name}` for mode='multiclass' must be a sequence of C per-class floats or None; got {alpha!r}"
            )
        w = check_weights_vector(fn, name, alpha, allow_zero_sum=True)
        if w is not None and num_classes is not None and w.numel() != num_classes:
            raise ValueError(f"{fn}: `{name}` must have length C={num_classes}; got {w.numel()}")
        return w
    return interval.check(fn, name, alpha)


@contextlib.contextmanager
def as_caller(fn: str, **renames: str) -> Iterator[None]:
    """Re-raise a component's validation error under the caller's name (and argument spelling).

    A compound loss calls the public component losses; an error raised there names the component
    (``"cross_entropy_loss: ..."``). Inside this context the message is rewritten to name ``fn``,
    and each component argument ``old`` listed in ``renames`` (``old="new"``) is spelled as the
    caller spells it, so that the user reads the function and argument they actually called.
    """
    try:
        yield
    except (ValueError, TypeError) as err:
        text = str(err)
        head, sep, rest = text.partition(": ")
        if not sep or not head.isidentifier() or head == fn:
            raise
        for old, new in renames.items():
            rest = rest.replace(f"`{old}`", f"`{new}`")
        raise type(err)(f"{fn}: {rest}") from None


# ------------------------------------------------------------------------------------------------------- metrics


def check_zero_division(fn: str, zero_division: object) -> float:
    """``zero_division`` is ``"nan"`` or any number (negative markers too); returns a float (``nan`` for ``"nan"``)."""
    if zero_division == "nan" and isinstance(zero_division, str):
        return math.nan
    if isinstance(zero_division, str):
        raise ValueError(f"{fn}: `zero_division` must be 'nan' or a number; got {zero_division!r}")
    if not is_real(zero_division):
        raise TypeError(
            f"{fn}: `zero_division` must be 'nan' or a number; got {type(zero_division).__name__} {zero_division!r}"
        )
    return float(zero_division)


def check_num_classes(fn: str, num_classes: object, mode: str, *, required: bool = False) -> int | None:
    """``num_classes`` is None (unless ``required``) or an int: 1 in binary mode, >= 2 multiclass, >= 1 multilabel."""
    if num_classes is None and not required:
        return None
    if num_classes is None:
        raise TypeError(
            f"{fn}: `num_classes` is required here (an int: C, the number of classes of mode={mode!r}); got None"
        )
    if not is_whole(num_classes):
        raise TypeError(f"{fn}: `num_classes` must be an int; got {type(num_classes).__name__} {num_classes!r}")
    k = int(num_classes)  # a NumPy integer too
    if mode == "binary" and k != 1:
        raise ValueError(
            f"{fn}: `num_classes` for mode='binary' must be 1 (the foreground channel); got {k} "
            "(use mode='multiclass' for background + foreground as two classes)"
        )
    low = 2 if mode == "multiclass" else 1
    if k < low:
        raise ValueError(f"{fn}: `num_classes` for mode={mode!r} must be >= {low}; got {k}")
    return k


def check_metric_names(fn: str, metrics: object, choices: Sequence[str]) -> tuple[str, ...]:
    """A non-empty sequence of distinct metric names from ``choices``."""
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or len(metrics) == 0:
        raise TypeError(f"{fn}: `metrics` must be a non-empty sequence of metric names; got {metrics!r}")
    for name in metrics:
        check_option(fn, "metrics", name, choices)
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"{fn}: `metrics` must not repeat a name; got {tuple(metrics)!r}")
    return tuple(metrics)


def check_metric_input_target(
    fn: str,
    input: Any,
    target: Any,
    *,
    mode: str,
    ignore_index: int | None,
    num_classes: int | None,
) -> tuple[int, bool, str]:
    """Check a metric call: scores or hard labels against a hard target.

    ``input`` is floating-point scores/probabilities/logits (the losses' shapes) or hard labels: integer/bool
    0/1 maps of the same shapes in binary/multilabel mode, integer class indices ``(N, *S)`` in multiclass mode
    (then ``num_classes`` is required). The target must be hard: 0/1 (binary/multilabel), class indices or a one-hot
    ``(N, C, *S)`` (multiclass). Returns ``(C, input_is_hard, target_form)``.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}: `input` must be a torch.Tensor; got {type(input).__name__}")
    hard = input.dtype == torch.bool or input.dtype in _INT_DTYPES
    if not hard and not torch.is_floating_point(input):
        raise TypeError(
            f"{fn}: `input` must be a floating-point tensor (scores) or an integer/bool tensor (hard labels); "
            f"got {input.dtype}"
        )
    shape = tuple(input.shape)
    if mode == "multiclass" and hard:
        if num_classes is None:
            raise ValueError(
                f"{fn}: `num_classes` must be given with hard class-index input of shape (N, *S)="
                f"{_fmt_shape(shape)} in mode='multiclass'; got None"
            )
        if input.ndim < 2:
            raise ValueError(
                f"{fn}: `input` of class indices for mode='multiclass' must have shape (N, *S); got {_fmt_shape(shape)}"
            )
        # a stride-0 stand-in of the scores' shape (N, C, *S): the shape checks below need no memory
        scores_shape = (shape[0], num_classes, *shape[1:])
        stand_in = torch.empty((), dtype=torch.float32, device=input.device).expand(scores_shape)
    else:
        stand_in = torch.empty((), dtype=torch.float32, device=input.device).expand(shape) if hard else input
    form = check_input_target(fn, stand_in, target, mode=mode, ignore_index=ignore_index)
    c = 1 if mode == "binary" else int(stand_in.shape[1])
    if num_classes is not None and c != num_classes:
        raise ValueError(
            f"{fn}: `input` must have C=num_classes={num_classes} channels in dim 1 (N, C, *S); got {_fmt_shape(shape)}"
        )
    # values of the input
    if hard and input.dtype != torch.bool and input.numel() > 0:
        lo, hi = (int(v) for v in torch.aminmax(input))
        high = c - 1 if mode == "multiclass" else 1
        if lo < 0 or hi > high:
            what = f"class indices in [0, {c})" if mode == "multiclass" else "hard labels 0 or 1"
            raise ValueError(f"{fn}: `input` of dtype {input.dtype} must hold {what}; got min={lo}, max={hi}")
    if not hard:
        nan = torch.isnan(input)
        if bool(nan.any()):
            raise ValueError(f"{fn}: `input` must not contain NaN; got {int(nan.sum())} NaN values")
    # the target must be hard
    if form == "dense" and target.dtype != torch.bool:
        kept = target if ignore_index is None else target[target != ignore_index]
        soft = (kept != 0) & (kept != 1)
        if bool(soft.any()):
            first = float(kept[soft].flatten()[0])
            raise ValueError(
                f"{fn}: `target` must be hard (values 0 or 1) for metrics; got {int(soft.sum())} other values, "
                f"e.g. {first:g} (threshold soft labels first)"
            )
    if form == "dense" and mode == "multiclass":
        bad = target.sum(1, dtype=torch.int64) != 1
        if bool(bad.any()):
            raise ValueError(
                f"{fn}: `target` of shape (N, C, *S) for mode='multiclass' must be one-hot (exactly one 1 per "
                f"pixel); got {int(bad.sum())} pixels whose channels sum to other than 1"
            )
    return c, hard, form


# -------------------------------------------------------------------------------------------------------- lovasz


def check_one_hot(fn: str, target: torch.Tensor) -> None:
    """A dense multiclass target ``(N, C, ...)`` of a loss defined on hard labels must be one-hot (one 1 per pixel)."""
    bad = target.sum(1) != 1
    if bool(bad.any()):
        raise ValueError(
            f"{fn}: `target` of shape (N, C, *S) for mode='multiclass' must be one-hot (exactly one 1 per pixel); "
            f"got {int(bad.sum())} pixels whose channels sum to other than 1 (to ignore pixels, pass class indices "
            "(N, *S) with ignore_index)"
        )


# ------------------------------------------------------------------------------ pixel sizes and distance maps


def _to_float(value: numbers.Real) -> float:
    try:
        return float(value)
    except OverflowError:  # an int or Fraction too large for a float: not finite, rejected below
        return math.inf


def _spacing(fn: str, spacing: object, ndim: int | None) -> tuple[tuple[float, ...], bool]:
    """The rule behind :func:`check_spacing`; also returns whether ``spacing`` was one number (for every axis)."""
    if spacing is None:
        return (1.0,) * (ndim or 0), True
    received = spacing
    if isinstance(spacing, (torch.Tensor, np.ndarray)):
        if spacing.ndim > 1:
            raise ValueError(
                f"{fn}: `spacing` must be a number or 1-D (one value per spatial axis); got a "
                f"{type(spacing).__name__} of shape {_fmt_shape(spacing.shape)}"
            )
        spacing = spacing.tolist()  # a 0-d tensor gives a Python number, a 1-D one a list
    if is_real(spacing):
        items: list[object] = [spacing]
        scalar = True
    elif isinstance(spacing, Sequence) and not isinstance(spacing, (str, bytes, bytearray)):
        items = list(spacing)
        scalar = False
    else:
        raise TypeError(
            f"{fn}: `spacing` must be None, a number, a sequence of numbers or a 1-D tensor; "
            f"got {type(received).__name__} {received!r}"
        )
    values: list[float] = []
    for v in items:
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"{fn}: `spacing` must hold real numbers; got {type(v).__name__} {v!r} in {received!r}")
        values.append(_to_float(v))
    if scalar and ndim is not None:
        values *= ndim
    elif ndim is not None and len(values) != ndim:
        raise ValueError(
            f"{fn}: `spacing` must have one value per spatial axis ({ndim}); got {len(values)} values {tuple(values)!r}"
        )
    elif not values:
        raise ValueError(
            f"{fn}: `spacing` must hold one value per spatial axis; got an empty {type(received).__name__}"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        shown: object = values[0] if scalar and values else tuple(values)
        raise ValueError(f"{fn}: `spacing` must hold finite values > 0; got {shown!r}")
    return tuple(values), scalar


def check_spacing(fn: str, spacing: object, ndim: int | None) -> tuple[float, ...]:
    """Check a pixel size ``spacing`` and return one float per spatial axis.

    Accepted forms: ``None`` (1 along every axis), a real number (the same size along every axis), or one real
    number per spatial axis in array order: a sequence, a 1-D tensor or a 1-D NumPy array (a 0-d tensor or array
    counts as a number). Every value must be finite and > 0; bools and strings are rejected.

    Args:
        fn: the name of the calling function, shown in the message.
        spacing: the argument as the user passed it.
        ndim: the number of spatial axes ``len(S)``; ``None`` checks the values only (a constructor, before any
            input is seen): then ``None`` gives ``()`` and a number ``(value,)``.

    Returns:
        ``ndim`` floats (the values given, when ``ndim`` is None).

    Raises:
        TypeError: not None, a number, a sequence or a 1-D tensor; or a value that is not a real number.
        ValueError: a tensor of more than one dimension; not ``ndim`` values; an empty sequence; a value that is
            not finite or not > 0.

    Examples:
        >>> from seglosses._checks import check_spacing
        >>> check_spacing("f", 2, 3), check_spacing("f", [0.5, 1], 2), check_spacing("f", None, 2)
        ((2.0, 2.0, 2.0), (0.5, 1.0), (1.0, 1.0))

    """
    return _spacing(fn, spacing, ndim)[0]


def check_spacing_form(fn: str, spacing: object) -> float | tuple[float, ...] | None:
    """:func:`check_spacing` before the number of axes is known, keeping the form for a later broadcast.

    Returns ``None``, one float (a number: the same size along every axis) or a tuple of floats; pass the result to
    :func:`check_spacing` with ``ndim`` when the input is seen.
    """
    if spacing is None:
        return None
    values, scalar = _spacing(fn, spacing, None)
    return values[0] if scalar else values


def check_dist_map(
    fn: str,
    dist_map: object,
    shape: tuple[int, ...],
    device: torch.device,
    *,
    also: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """A given distance map: a floating-point tensor of shape ``shape`` ``(N, C, *S)`` (or ``also``) on ``device``.

    Returns ``dist_map`` unchanged.
    """
    if not isinstance(dist_map, torch.Tensor):
        raise TypeError(f"{fn}: `dist_map` must be a torch.Tensor or None; got {type(dist_map).__name__}")
    if not torch.is_floating_point(dist_map):
        raise TypeError(f"{fn}: `dist_map` must be a floating-point tensor; got {dist_map.dtype}")
    got = tuple(dist_map.shape)
    if got != shape and got != also:
        raise ValueError(
            f"{fn}: `dist_map` must have shape (N, C, *S)={shape}; got {got} "
            "(one map per image and class, as seglosses.distance computes)"
        )
    if dist_map.device != device:
        raise ValueError(f"{fn}: `dist_map` must be on the input's device {device}; got {dist_map.device}")
    return dist_map


def check_dist_matrix(fn: str, dist_matrix: object, num_classes: int | None = None) -> torch.Tensor:
    """``dist_matrix``: a ``(C, C)`` real matrix, symmetric, zero diagonal, finite entries >= 0 with a positive maximum.

    The class-to-class distances of the generalized Wasserstein Dice loss. ``num_classes`` (the input's C, when
    known) fixes C. Returns the matrix divided by its maximum, float64, on its own device (a sequence: the CPU).
    The values of a sequence are checked; those of a tensor where value checks apply (:func:`values_checked`: a CPU
    tensor by default; the Module's buffer moved to the GPU was checked when the Module was built), and none while
    ``torch.compile`` traces: there only the shape is checked, so that no call synchronises.
    """
    if isinstance(dist_matrix, torch.Tensor):
        m = dist_matrix.detach().to(torch.float64)
    else:
        try:
            m = torch.as_tensor(dist_matrix, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{fn}: `dist_matrix` must be a (C, C) tensor or nested sequence of numbers; got "
                f"{type(dist_matrix).__name__}"
            ) from None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"{fn}: `dist_matrix` must have shape (C, C) with C >= 2; got {tuple(m.shape)}")
    if num_classes is not None and m.shape[0] != num_classes:
        raise ValueError(
            f"{fn}: `dist_matrix` must have shape (C, C)=({num_classes}, {num_classes}) for the input's C; "
            f"got {tuple(m.shape)}"
        )
    if torch.compiler.is_compiling() or (isinstance(dist_matrix, torch.Tensor) and not values_checked(m)):
        # not read on the host: torch.compile tracing (a data-dependent guard would break the graph) or a matrix on
        # a GPU (a device synchronisation)
        return m / m.amax()
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
        raise ValueError(f"{fn}: `dist_matrix` must hold finite values >= 0; got {m.tolist()}")
    if bool((m.diagonal() != 0).any()):
        raise ValueError(f"{fn}: `dist_matrix` must have a zero diagonal; got diagonal {m.diagonal().tolist()}")
    if not torch.equal(m, m.T):
        raise ValueError(f"{fn}: `dist_matrix` must be symmetric; got {m.tolist()}")
    top = float(m.max())
    if top <= 0:
        raise ValueError(f"{fn}: `dist_matrix` must have a positive entry; got {m.tolist()}")
    return m / top
