"""``torch.nn.Module`` wrappers: the same keyword arguments as the functions, checked at construction.

``sync_stats``/``process_group`` (sum the statistics over the ranks of a process group) are stored like the
others; ``process_group`` appears in the repr only when set (None is the default), and a Module with
``process_group=None`` pickles as usual. ``copy.deepcopy`` shares a process group (the copy syncs over the same
ranks); pickling or ``torch.save`` of a whole Module that holds one raises a ``TypeError`` that says what to do.
Whether ``torch.distributed`` is initialised is checked at call time, not at construction.

Each Module stores its arguments as public attributes (``class_weights`` as a buffer, so it follows ``.to()``),
and ``forward(input, target)`` is one call of its function; it never mutates ``self``. Attributes set after
construction (``loss.alpha = 0.5``) are checked by the next eager call, as the function's arguments are (not while
``torch.compile`` traces it).

Buffers (``class_weights``, a per-class focal ``alpha``, ``dist_matrix``) are copies of the values given (a floating
tensor keeps its dtype; a sequence gets the default dtype, float32, and ``dist_matrix`` float64), constants of the
loss, saved in the ``state_dict`` (loading one into a Module built without them, or the reverse, is torch's
"Unexpected/Missing key" error) and converted like any Module's floating buffers: ``.double()`` keeps their values,
``.half()`` and ``.bfloat16()`` round them to that dtype. The result's dtype follows the input, not the buffers (a
float32 input gives a float32 loss after ``.half()`` or ``.double()``). ``torch.jit.script`` is not supported (a
clear ``NotImplementedError``); ``torch.compile`` is.
"""

from __future__ import annotations

import copy
import inspect
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from seglosses import functional as F
from seglosses._checks import (
    check_argument,
    check_dist_matrix,
    check_mode,
    check_reduction,
    check_spacing_form,
    check_weights_vector,
)
from seglosses._types import Mode, Reduction

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "BoundaryLoss",
    "ClDiceLoss",
    "ComboLoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceClDiceLoss",
    "DiceLoss",
    "FBetaLoss",
    "FocalLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "GeneralizedWassersteinDiceLoss",
    "HausdorffDTLoss",
    "HybridFocalLoss",
    "JaccardLoss",
    "LogCoshDiceLoss",
    "LovaszLoss",
    "SensitivitySpecificityLoss",
    "SymmetricFocalLoss",
    "SymmetricFocalTverskyLoss",
    "TopKLoss",
    "TverskyLoss",
    "UnifiedFocalLoss",
]

Weights = Sequence[float] | Tensor | None
Spacing = float | Sequence[float] | Tensor | None
FocalAlpha = float | Sequence[float] | Tensor | None | Literal["auto"]


def _shortest(a: np.ndarray[Any, Any]) -> Any:
    """Nested lists of ``a``'s values, each float16/float32 one as the shortest decimal that gives it back."""
    if a.ndim > 0:
        return [_shortest(b) for b in a]
    if a.dtype in (np.float16, np.float32):
        return float(str(a[()]))  # NumPy prints a float32 0.1 as 0.1 (its .item() is 0.10000000149011612)
    return a.item()


def _tensor_text(t: Tensor) -> str:
    """A buffer's values for the repr; a tensor without data (device 'meta') shows its dtype and shape."""
    if t.device.type == "meta":
        return f"<{t.dtype} {tuple(t.shape)} on meta>"
    v = t.detach().cpu()
    v = v.float() if v.dtype == torch.bfloat16 else v  # NumPy has no bfloat16; float32 holds its values exactly
    return repr(_shortest(v.numpy()))


class _SegLoss(nn.Module):
    """Shared machinery of the loss Modules (not public)."""

    _function: ClassVar[Callable[..., Tensor]]
    _reductions: ClassVar[tuple[str, ...]] = ("mean", "sum", "none")
    _modes: ClassVar[tuple[str, ...]] = ("binary", "multiclass", "multilabel")
    _arg_names: tuple[str, ...]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        fn = type(self)._function.__name__
        checked = dict(kwargs)
        for name, value in kwargs.items():
            # the function's own declaration (@hyperparameters beside it) and the shared arguments' rules; a tensor's
            # values are checked here once, on a CPU copy (the calls then do not read them on the host)
            value = value.detach().cpu() if isinstance(value, Tensor) else value
            if name == "mode":
                check_mode(fn, value, type(self)._modes)
            elif name == "reduction":
                check_reduction(fn, value, type(self)._reductions)
            elif name == "spacing":  # a map's pixel size, stored as checked (its length is checked at call time)
                checked[name] = check_spacing_form(fn, value)
            elif name == "dist_matrix":
                check_dist_matrix(fn, value)
            else:  # the declaration beside the function (iterations: a whole number >= 0, and so on)
                check_argument(fn, name, value, str(kwargs["mode"]))
        self._arg_names = tuple(checked)
        for name, value in checked.items():
            if name == "class_weights":
                # a copy (before, a float32 tensor was the buffer itself: loading a state_dict into the loss wrote
                # into the user's tensor and into every loss built from it); a tensor keeps its device, a floating
                # one its dtype (float64 weights were cut to float32: the Module then differed from the function
                # in float64), a sequence or an integer tensor gets the default dtype
                w = check_weights_vector(fn, "class_weights", value)
                if w is not None:
                    keep = isinstance(value, Tensor) and torch.is_floating_point(value)
                    w = w.to(dtype=w.dtype if keep else torch.get_default_dtype(), copy=True)
                self.register_buffer("class_weights", w)
            elif name == "alpha" and isinstance(value, Sequence) and not isinstance(value, str):
                # per-class focal weights: a buffer (it moves with the Module; no host-to-device copy in a call)
                a = torch.tensor([float(v) for v in value], dtype=torch.get_default_dtype())
                self.register_buffer("alpha", a)
            elif name == "dist_matrix":  # a buffer too, in float64 (normalised in the call, on its device)
                m = value.detach() if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float64)
                self.register_buffer("dist_matrix", m.to(torch.float64).clone())
            elif isinstance(value, Tensor):
                self.register_buffer(name, value.detach().clone())
            else:  # a NumPy scalar (np.float32 from a config file) is kept as the Python number it holds
                setattr(self, name, value.item() if isinstance(value, np.generic) else value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every loss class its own ``forward`` code object (a copy of the one it inherits).

        ``torch.compile`` caches compiled frames per code object, with a limit of recompiles each (8 by default): with
        one shared ``forward`` every further loss class compiled in a process is a recompile of the same frame, and the
        ninth fails under ``fullgraph=True`` (silently runs eagerly otherwise). A copy per class keeps each class's
        compilations apart.
        """
        super().__init_subclass__(**kwargs)
        if "forward" not in cls.__dict__:
            base = cls.forward
            own = types.FunctionType(
                base.__code__.replace(), base.__globals__, base.__name__, base.__defaults__, base.__closure__
            )
            own.__doc__, own.__qualname__ = base.__doc__, f"{cls.__qualname__}.forward"
            own.__annotations__ = dict(base.__annotations__)
            cls.forward = own  # type: ignore[method-assign]

    if TYPE_CHECKING:  # for type checkers only; nothing changes at run time

        def __call__(self, input: Tensor, target: Tensor) -> Tensor:
            """A loss's value is a Tensor (``nn.Module`` types ``__call__`` as ``Callable[..., Any]``)."""
            ...

        def __getattr__(self, name: str) -> Any:
            """The stored arguments are floats, bools, strings or buffers (``nn.Module`` says ``Tensor | Module``)."""
            ...

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Compute the loss; see the function named in the class docstring."""
        return type(self)._function(input, target, **{name: getattr(self, name) for name in self._arg_names})

    def __deepcopy__(self, memo: dict[int, Any]) -> _SegLoss:
        """A deep copy that shares ``process_group``: a handle of this process's communicator, not data to copy.

        ``copy.deepcopy`` of a model or LightningModule holding a loss with a process group (an EMA copy, a
        checkpoint callback) failed with "cannot pickle 'ProcessGroup' object". Everything else is copied as usual.
        """
        group = self.__dict__.get("process_group")
        if group is not None:
            memo[id(group)] = group  # deepcopy(group) is the group itself
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(nn.Module.__getstate__(self), memo))  # type: ignore[no-untyped-call]
        return new

    def __copy__(self) -> _SegLoss:
        """``copy.copy`` as by default, ``process_group`` shared (the default went through :meth:`__getstate__`)."""
        new = type(self).__new__(type(self))
        new.__setstate__(nn.Module.__getstate__(self))  # type: ignore[no-untyped-call]
        return new

    def __getstate__(self) -> dict[str, Any]:
        """The Module's state for pickling; refused with a clear message while it holds a process group."""
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        if state.get("process_group") is not None:
            raise TypeError(
                f"{type(self).__name__}: a loss with process_group set cannot be pickled or saved whole (a process "
                "group belongs to the process that made it); save it with process_group=None (or its state_dict) and "
                "set loss.process_group after loading"
            )
        return state

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` is not supported: say so by name (TorchScript fails on the annotations otherwise)."""
        raise NotImplementedError(
            f"{type(self).__name__}: torch.jit.script is not supported by the seglosses losses (their checks and "
            "kernels are Python); call the loss eagerly or under torch.compile, and script or export the model "
            "without its loss"
        )

    def extra_repr(self) -> str:
        """The mode and every argument that differs from the function's default."""
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self)._function).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        parts = []
        for name in self._arg_names:
            value = getattr(self, name)
            if isinstance(value, Tensor):
                parts.append(f"{name}={_tensor_text(value)}")
            elif name not in defaults or value != defaults[name]:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


class DiceLoss(_SegLoss):
    """Dice loss Module. See :func:`seglosses.functional.dice_loss`.

    Examples:
        >>> import torch
        >>> from seglosses import DiceLoss
        >>> loss = DiceLoss(mode="multiclass", include_background=False)
        >>> loss
        DiceLoss(mode='multiclass', include_background=False)
        >>> # p = 1/3 everywhere, every pixel class 0; classes 1 and 2: TP = FN = 0, FP = 16/3, smooth = 1
        >>> # D = 1 / (16/3 + 1) = 3/19, loss 1 - 3/19 = 16/19 = 0.84210...
        >>> round(loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)).item(), 6)
        0.842105

    """

    _function = staticmethod(F.dice_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        smooth: float = 1.0,
        squared: bool = False,
        log_loss: bool = False,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth=smooth,
            squared=squared,
            log_loss=log_loss,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class JaccardLoss(_SegLoss):
    """Jaccard (IoU) loss Module. See :func:`seglosses.functional.jaccard_loss`."""

    _function = staticmethod(F.jaccard_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class TverskyLoss(_SegLoss):
    """Tversky loss Module. See :func:`seglosses.functional.tversky_loss`."""

    _function = staticmethod(F.tversky_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            beta=beta,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class FocalTverskyLoss(_SegLoss):
    """Focal Tversky loss Module. See :func:`seglosses.functional.focal_tversky_loss`."""

    _function = staticmethod(F.focal_tversky_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class GeneralizedDiceLoss(_SegLoss):
    """Generalised Dice loss Module. See :func:`seglosses.functional.generalized_dice_loss`."""

    _function = staticmethod(F.generalized_dice_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        smooth: float = 1.0,
        include_background: bool = True,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth=smooth,
            include_background=include_background,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class CrossEntropyLoss(_SegLoss):
    """Cross entropy Module. See :func:`seglosses.functional.cross_entropy_loss`."""

    _function = staticmethod(F.cross_entropy_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        class_weights: Weights = None,
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class FocalLoss(_SegLoss):
    """Focal loss Module. See :func:`seglosses.functional.focal_loss`."""

    _function = staticmethod(F.focal_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: FocalAlpha = "auto",
        gamma: float = 2.0,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        if isinstance(alpha, Sequence) and not isinstance(alpha, str):
            alpha = torch.tensor([float(a) for a in alpha])
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            gamma=gamma,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class DiceCELoss(_SegLoss):
    """Dice + cross entropy Module. See :func:`seglosses.functional.dice_ce_loss`."""

    _function = staticmethod(F.dice_ce_loss)
    _reductions = ("mean", "sum")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        squared: bool = False,
        log_loss: bool = False,
        label_smoothing: float = 0.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Literal["mean", "sum"] = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            ce_weight=ce_weight,
            dice_weight=dice_weight,
            smooth=smooth,
            squared=squared,
            log_loss=log_loss,
            label_smoothing=label_smoothing,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class ComboLoss(_SegLoss):
    """Combo loss Module. See :func:`seglosses.functional.combo_loss`."""

    _function = staticmethod(F.combo_loss)
    _reductions = ("mean",)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Literal["mean"] = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            beta=beta,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class HybridFocalLoss(_SegLoss):
    """Hybrid focal loss Module. See :func:`seglosses.functional.hybrid_focal_loss`."""

    _function = staticmethod(F.hybrid_focal_loss)
    _reductions = ("mean", "sum")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        weight: float = 0.5,
        focal_alpha: FocalAlpha = "auto",
        focal_gamma: float = 2.0,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        tversky_gamma: float = 0.75,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Literal["mean", "sum"] = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        if isinstance(focal_alpha, Sequence) and not isinstance(focal_alpha, str):
            focal_alpha = torch.tensor([float(a) for a in focal_alpha])
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            weight=weight,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            tversky_alpha=tversky_alpha,
            tversky_beta=tversky_beta,
            tversky_gamma=tversky_gamma,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class UnifiedFocalLoss(_SegLoss):
    """Unified focal loss Module. See :func:`seglosses.functional.unified_focal_loss`."""

    _function = staticmethod(F.unified_focal_loss)
    _reductions = ("mean", "sum")
    _modes = ("binary", "multiclass")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        weight: float = 0.5,
        delta: float = 0.6,
        gamma: float = 0.5,
        asymmetric: bool = True,
        smooth: float = 1e-7,
        ignore_index: int | None = None,
        reduction: Literal["mean", "sum"] = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            weight=weight,
            delta=delta,
            gamma=gamma,
            asymmetric=asymmetric,
            smooth=smooth,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class _UnifiedFocalPart(_SegLoss):
    _modes = ("binary", "multiclass")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        delta: float = 0.7,
        gamma: float = 2.0,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            delta=delta,
            gamma=gamma,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class AsymmetricFocalLoss(_UnifiedFocalPart):
    """Asymmetric focal loss Module. See :func:`seglosses.functional.asymmetric_focal_loss`."""

    _function = staticmethod(F.asymmetric_focal_loss)


class SymmetricFocalLoss(_UnifiedFocalPart):
    """Symmetric focal loss Module. See :func:`seglosses.functional.symmetric_focal_loss`."""

    _function = staticmethod(F.symmetric_focal_loss)


class _UnifiedTverskyPart(_SegLoss):
    _modes = ("binary", "multiclass")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        delta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1e-7,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            delta=delta,
            gamma=gamma,
            smooth=smooth,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class AsymmetricFocalTverskyLoss(_UnifiedTverskyPart):
    """Asymmetric focal Tversky loss Module. See :func:`seglosses.functional.asymmetric_focal_tversky_loss`."""

    _function = staticmethod(F.asymmetric_focal_tversky_loss)


class SymmetricFocalTverskyLoss(_UnifiedTverskyPart):
    """Symmetric focal Tversky loss Module. See :func:`seglosses.functional.symmetric_focal_tversky_loss`."""

    _function = staticmethod(F.symmetric_focal_tversky_loss)


class LovaszLoss(_SegLoss):
    """Lovasz hinge / Lovasz-softmax loss Module. See :func:`seglosses.functional.lovasz_loss`."""

    _function = staticmethod(F.lovasz_loss)
    _reductions = ("mean", "sum")

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        classes: Literal["present", "all"] = "present",
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            classes=classes,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
        )


class _DistanceMapLoss(_SegLoss):
    """A loss weighted by distance maps of the target: ``forward`` also takes a precomputed ``dist_map``."""

    if TYPE_CHECKING:

        def __call__(self, input: Tensor, target: Tensor, dist_map: Tensor | None = None) -> Tensor:
            """A loss's value is a Tensor; ``dist_map`` as in :meth:`forward`."""
            ...

    def forward(self, input: Tensor, target: Tensor, dist_map: Tensor | None = None) -> Tensor:
        """Compute the loss; ``dist_map`` None computes the target's maps in the call (on the target's device)."""
        kwargs = {name: getattr(self, name) for name in self._arg_names}
        return type(self)._function(input, target, dist_map=dist_map, **kwargs)


class BoundaryLoss(_DistanceMapLoss):
    """Boundary loss Module. See :func:`seglosses.functional.boundary_loss`.

    ``forward(input, target, dist_map=None)``: pass the target's signed maps (from the data loader) to avoid
    computing them in every call.

    Examples:
        >>> import torch
        >>> from seglosses import get_loss
        >>> loss = get_loss("boundary", mode="binary", from_logits=False)
        >>> p = torch.tensor([[[[0.5, 1.0, 1.0, 0.0]]]])
        >>> g = torch.tensor([[[[0.0, 1.0, 1.0, 0.0]]]])
        >>> loss(p, g).item()  # signed map (1, 0, 0, 1): (0.5 * 1) / 4
        0.125

    """

    _function = staticmethod(F.boundary_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        spacing: Spacing = None,
        include_background: bool = False,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            spacing=spacing,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class HausdorffDTLoss(_DistanceMapLoss):
    """Hausdorff distance-transform loss Module. See :func:`seglosses.functional.hausdorff_dt_loss`.

    ``forward(input, target, dist_map=None)``: ``dist_map`` holds the target's unsigned maps; the prediction's are
    always computed inside.
    """

    _function = staticmethod(F.hausdorff_dt_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: float = 2.0,
        spacing: Spacing = None,
        log_loss: bool = False,
        include_background: bool = False,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            spacing=spacing,
            log_loss=log_loss,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class ClDiceLoss(_SegLoss):
    """clDice loss Module. See :func:`seglosses.functional.cldice_loss`."""

    _function = staticmethod(F.cldice_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        iterations: int = 10,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            iterations=iterations,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class DiceClDiceLoss(_SegLoss):
    """Dice + clDice Module. See :func:`seglosses.functional.dice_cldice_loss`."""

    _function = staticmethod(F.dice_cldice_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        alpha: float = 0.5,
        iterations: int = 10,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            alpha=alpha,
            iterations=iterations,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class LogCoshDiceLoss(_SegLoss):
    """Log-cosh Dice loss Module. See :func:`seglosses.functional.log_cosh_dice_loss`."""

    _function = staticmethod(F.log_cosh_dice_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        smooth: float = 1.0,
        squared: bool = False,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            smooth=smooth,
            squared=squared,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class TopKLoss(_SegLoss):
    """TopK cross-entropy Module. See :func:`seglosses.functional.topk_loss`.

    Examples:
        >>> from seglosses import get_loss
        >>> get_loss("topk", mode="multiclass", k=5.0)
        TopKLoss(mode='multiclass', k=5.0)

    """

    _function = staticmethod(F.topk_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        k: float = 10.0,
        class_weights: Weights = None,
        label_smoothing: float = 0.0,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            k=k,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class SensitivitySpecificityLoss(_SegLoss):
    """Sensitivity-specificity loss Module. See :func:`seglosses.functional.sensitivity_specificity_loss`."""

    _function = staticmethod(F.sensitivity_specificity_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        r: float = 0.05,
        eps: float = 1e-5,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            r=r,
            eps=eps,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class FBetaLoss(_SegLoss):
    """F-beta (asymmetric similarity) loss Module. See :func:`seglosses.functional.fbeta_loss`."""

    _function = staticmethod(F.fbeta_loss)

    def __init__(
        self,
        *,
        mode: Mode,
        from_logits: bool = True,
        beta: float = 1.5,
        smooth: float = 1.0,
        include_background: bool = True,
        class_weights: Weights = None,
        ignore_index: int | None = None,
        per_image: bool = False,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            from_logits=from_logits,
            beta=beta,
            smooth=smooth,
            include_background=include_background,
            class_weights=class_weights,
            ignore_index=ignore_index,
            per_image=per_image,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )


class GeneralizedWassersteinDiceLoss(_SegLoss):
    """Generalised Wasserstein Dice loss Module. See :func:`seglosses.functional.generalized_wasserstein_dice_loss`.

    ``dist_matrix`` is a float64 buffer (checked here): it moves with the Module, and on a GPU a call neither copies
    it from the host nor reads it there.

    Examples:
        >>> from seglosses import get_loss
        >>> get_loss("generalized_wasserstein_dice", mode="multiclass", dist_matrix=[[0, 1], [1, 0]])
        GeneralizedWassersteinDiceLoss(mode='multiclass', dist_matrix=[[0.0, 1.0], [1.0, 0.0]])

    """

    _function = staticmethod(F.generalized_wasserstein_dice_loss)
    _modes = ("multiclass",)

    def __init__(
        self,
        *,
        mode: Mode,
        dist_matrix: Tensor | Sequence[Sequence[float]],
        from_logits: bool = True,
        smooth: float = 1e-5,
        ignore_index: int | None = None,
        reduction: Reduction = "mean",
        sync_stats: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            dist_matrix=dist_matrix,
            from_logits=from_logits,
            smooth=smooth,
            ignore_index=ignore_index,
            reduction=reduction,
            sync_stats=sync_stats,
            process_group=process_group,
        )
