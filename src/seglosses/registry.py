"""Build any loss from its name: ``get_loss("focal_tversky", mode="binary", gamma=0.75)``."""

from __future__ import annotations

import inspect
import re
from typing import Any, NamedTuple

from torch import nn

from seglosses import losses
from seglosses._checks import ClassBalance, Interval, _did_you_mean, declared

__all__ = [
    "SEARCH_SPACES",
    "Param",
    "available_losses",
    "check_search_spaces",
    "default_arguments",
    "get_loss",
    "loss_class",
    "search_space",
]

_REGISTRY: dict[str, type[nn.Module]] = {
    "dice": losses.DiceLoss,
    "jaccard": losses.JaccardLoss,
    "tversky": losses.TverskyLoss,
    "focal_tversky": losses.FocalTverskyLoss,
    "generalized_dice": losses.GeneralizedDiceLoss,
    "cross_entropy": losses.CrossEntropyLoss,
    "focal": losses.FocalLoss,
    "dice_ce": losses.DiceCELoss,
    "combo": losses.ComboLoss,
    "hybrid_focal": losses.HybridFocalLoss,
    "unified_focal": losses.UnifiedFocalLoss,
    "asymmetric_focal": losses.AsymmetricFocalLoss,
    "symmetric_focal": losses.SymmetricFocalLoss,
    "asymmetric_focal_tversky": losses.AsymmetricFocalTverskyLoss,
    "symmetric_focal_tversky": losses.SymmetricFocalTverskyLoss,
    "lovasz": losses.LovaszLoss,
    "boundary": losses.BoundaryLoss,
    "hausdorff_dt": losses.HausdorffDTLoss,
    "cldice": losses.ClDiceLoss,
    "dice_cldice": losses.DiceClDiceLoss,
    "log_cosh_dice": losses.LogCoshDiceLoss,
    "topk": losses.TopKLoss,
    "sensitivity_specificity": losses.SensitivitySpecificityLoss,
    "fbeta": losses.FBetaLoss,
    "generalized_wasserstein_dice": losses.GeneralizedWassersteinDiceLoss,
}


def available_losses() -> list[str]:
    """The registry names, sorted: each is accepted by :func:`get_loss` (and by ``seglosses compare --losses``).

    Examples:
        >>> from seglosses import available_losses
        >>> len(available_losses()), available_losses()[:4]
        (25, ['asymmetric_focal', 'asymmetric_focal_tversky', 'boundary', 'cldice'])

    """
    return sorted(_REGISTRY)


# Other spellings of a name that a hint points to the registry name (never accepted as names themselves).
_COMMON_NAMES = {"ce": "cross_entropy", "bce": "cross_entropy", "iou": "jaccard"}


def _name_hint(name: object) -> str:
    """A did-you-mean for an unknown loss name, also from its class or function name or another case.

    ``"DiceLoss"``, ``"dice_loss"``, ``"DICE"`` and ``"focal-tversky"`` point to the registry name (difflib alone
    matched ``"dice_loss"`` to ``'dice_ce'`` and found nothing for ``"DiceLoss"`` or ``"DICE"``).
    """
    if not isinstance(name, str):
        return ""
    key = re.sub(r"[\s\-]+", "_", name.strip()).lower()
    spellings = {k.replace("_", ""): v for k, v in _COMMON_NAMES.items()}
    for registered, cls in _REGISTRY.items():
        function = cls._function.__name__  # type: ignore[attr-defined]
        for spelling in (registered, cls.__name__.lower(), function):
            spellings[spelling.replace("_", "")] = registered
    found = spellings.get(key.replace("_", ""))
    return f" (did you mean {found!r}?)" if found else _did_you_mean(key, available_losses())


def _check_name(fn: str, name: object) -> None:
    """Raise ``ValueError`` for a name that is not in the registry (listing the names, with a did-you-mean)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        listed = ", ".join(repr(c) for c in available_losses())
        raise ValueError(f"{fn}: `name` must be one of {listed}; got {name!r}{_name_hint(name)}")


def loss_class(name: str) -> type[nn.Module]:
    """The Module class registered under ``name`` (raises ``ValueError`` with a did-you-mean for unknown names)."""
    _check_name("get_loss", name)
    return _REGISTRY[name]


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss Module registered under ``name`` with keyword arguments (``mode`` is required).

    Args:
        name: a registry name, see :func:`available_losses` (``"dice"``, ``"focal_tversky"``, ...).
        **kwargs: the Module's keyword arguments, checked at construction.

    Returns:
        The Module.

    Raises:
        ValueError: unknown name (with a did-you-mean hint) or bad arguments.
        TypeError: a keyword the loss does not take (named, with a did-you-mean hint and the keywords it takes).

    Examples:
        >>> from seglosses import get_loss
        >>> get_loss("tversky", mode="binary", alpha=0.2, beta=0.8)
        TverskyLoss(mode='binary', alpha=0.2, beta=0.8)

    """
    cls = loss_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in accepted:
            raise TypeError(
                f"get_loss: {cls.__name__} ({name!r}) takes no argument {key!r}{_did_you_mean(key, accepted)}; "
                f"it takes {', '.join(accepted)}"
            )
    return cls(**kwargs)


class Param(NamedTuple):
    """One hyperparameter of a search space (used by ``seglosses tune``; Optuna reads it, seglosses does not).

    Attributes:
        kind: ``"float"``, ``"int"``, ``"bool"`` or ``"categorical"``.
        low: lower bound (float/int).
        high: upper bound (float/int).
        log: sample on a log scale (float/int).
        choices: the values of a ``"categorical"`` parameter.
        modes: the modes in which the parameter applies (empty: every mode).

    """

    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    modes: tuple[str, ...] = ()


_UNIT = Param("float", 0.05, 0.95)
_SMOOTH = Param("float", 1e-3, 10.0, log=True)
_WEIGHT = Param("float", 0.1, 0.9)
_DELTA = Param("float", 0.3, 0.9)

SEARCH_SPACES: dict[str, dict[str, Param]] = {
    "dice": {"smooth": _SMOOTH, "squared": Param("bool"), "log_loss": Param("bool")},
    "jaccard": {"smooth": _SMOOTH},
    # Tversky: alpha weights false positives, beta false negatives; searched independently (not alpha + beta = 1).
    "tversky": {"alpha": _UNIT, "beta": _UNIT},
    "focal_tversky": {"alpha": _UNIT, "beta": _UNIT, "gamma": Param("float", 0.25, 3.0, log=True)},
    "generalized_dice": {"smooth": _SMOOTH},
    "cross_entropy": {"label_smoothing": Param("float", 0.0, 0.2)},
    "focal": {"alpha": Param("float", 0.05, 0.95, modes=("binary", "multilabel")), "gamma": Param("float", 0.0, 5.0)},
    "dice_ce": {"ce_weight": Param("float", 0.1, 10.0, log=True), "smooth": _SMOOTH},
    "combo": {"alpha": _WEIGHT, "beta": _WEIGHT},
    "hybrid_focal": {
        "weight": _WEIGHT,
        "focal_gamma": Param("float", 0.0, 5.0),
        "tversky_alpha": _UNIT,
        "tversky_beta": _UNIT,
        "tversky_gamma": Param("float", 0.25, 3.0, log=True),
    },
    "unified_focal": {"weight": _WEIGHT, "delta": _DELTA, "gamma": Param("float", 0.05, 0.95)},
    "asymmetric_focal": {"delta": _DELTA, "gamma": Param("float", 0.0, 5.0)},
    "symmetric_focal": {"delta": _DELTA, "gamma": Param("float", 0.0, 5.0)},
    "asymmetric_focal_tversky": {"delta": _DELTA, "gamma": Param("float", 0.05, 0.95)},
    "symmetric_focal_tversky": {"delta": _DELTA, "gamma": Param("float", 0.05, 0.95)},
    "lovasz": {
        "per_image": Param("bool"),
        "classes": Param("categorical", choices=("present", "all"), modes=("multiclass",)),
    },
    # The boundary loss has no hyperparameter of its own (its schedule is the user's): only the pooling is searched.
    "boundary": {"per_image": Param("bool")},
    # alpha: the distance maps' exponent (the paper tried 1 to 3 and kept 2).
    "hausdorff_dt": {"alpha": Param("float", 1.0, 3.0), "log_loss": Param("bool")},
    # iterations: skeleton steps; a few reach the centre line of thin structures, 10 is the reference code's value.
    "cldice": {"iterations": Param("int", 3, 15), "smooth": _SMOOTH},
    "dice_cldice": {"alpha": _WEIGHT, "iterations": Param("int", 3, 15)},
    "log_cosh_dice": {"smooth": _SMOOTH, "squared": Param("bool")},
    # k: the percentage of pixels kept (nnU-Net uses 10); 100 would be the plain cross-entropy.
    "topk": {"k": Param("float", 1.0, 50.0, log=True), "label_smoothing": Param("float", 0.0, 0.2)},
    # r: the weight of the sensitivity term (Brosch et al. found 0.01-0.1 alike; up to 0.5 weighs it more).
    "sensitivity_specificity": {"r": Param("float", 0.01, 0.5, log=True)},
    # beta: > 1 weighs false negatives more (Hashemi et al. chose 1.5); 1 is Dice.
    "fbeta": {"beta": Param("float", 0.5, 3.0), "smooth": _SMOOTH},
    # dist_matrix is the task's knowledge, not searched (pass it through the loss arguments).
    "generalized_wasserstein_dice": {"smooth": Param("float", 1e-6, 1.0, log=True)},
}
"""The hyperparameters ``seglosses tune`` searches for each loss, with their sampling ranges.

Each range lies inside the legal values its loss function declares with ``@hyperparameters`` (checked when this
module is imported, by :func:`check_search_spaces`), so a search never proposes a value the loss rejects."""


def check_search_spaces(spaces: dict[str, dict[str, Param]]) -> None:
    """Raise ``ValueError`` if a search space names an undeclared hyperparameter or samples outside its bounds.

    A ``float``/``int`` range ``[low, high]`` must lie inside the loss function's declared
    ``seglosses._checks.Interval`` (the scalar interval of a focal ``alpha``); a ``categorical`` parameter's choices
    must each pass its rule.
    """
    for name, space in spaces.items():
        fn = _REGISTRY[name]._function  # type: ignore[attr-defined]
        rules = declared(fn)
        for key, param in space.items():
            rule = rules.get(key)
            if rule is None:
                if key == "per_image" and param.kind == "bool":
                    continue  # shared by every loss (a bool), not a declared hyperparameter
                raise ValueError(f"search space of {name!r}: {fn.__name__} declares no hyperparameter {key!r}")
            interval = rule.interval if isinstance(rule, ClassBalance) else rule
            if param.kind in ("float", "int"):
                if not isinstance(interval, Interval):
                    raise ValueError(f"search space of {name!r}: {key!r} is declared {rule!r}, not a real interval")
                if not (interval.contains(param.low) and interval.contains(param.high)):
                    raise ValueError(
                        f"search space of {name!r}: {key!r} samples [{param.low:g}, {param.high:g}] outside its "
                        f"declared bounds {interval}"
                    )
            elif param.kind == "categorical":
                for choice in param.choices:
                    rule.check(fn.__name__, key, choice)


check_search_spaces(SEARCH_SPACES)


def search_space(name: str, mode: str | None = None) -> dict[str, Param]:
    """The search space of the loss ``name``, keeping only the parameters that apply in ``mode`` (if given).

    Examples:
        >>> from seglosses.registry import search_space
        >>> sorted(search_space("tversky"))
        ['alpha', 'beta']
        >>> sorted(search_space("focal", mode="multiclass"))
        ['gamma']

    """
    _check_name("search_space", name)
    space = SEARCH_SPACES.get(name, {})
    return {k: p for k, p in space.items() if mode is None or not p.modes or mode in p.modes}


def default_arguments(name: str, *, mode: str, num_classes: int) -> dict[str, Any] | None:
    """Arguments without a default that ``name`` needs for a task, or None when the loss does not support ``mode``.

    For running every loss on one task (``seglosses compare --losses all``): the generalised Wasserstein Dice loss
    gets ``dist_matrix = 1 - eye(C)`` (every confusion costs the same; pass the task's own matrix for real use);
    every other loss needs nothing. ``num_classes`` is ``C`` (1 in binary mode).

    Examples:
        >>> from seglosses.registry import default_arguments
        >>> default_arguments("dice", mode="binary", num_classes=1)
        {}
        >>> default_arguments("generalized_wasserstein_dice", mode="binary", num_classes=1) is None
        True
        >>> default_arguments("generalized_wasserstein_dice", mode="multiclass", num_classes=2)
        {'dist_matrix': [[0.0, 1.0], [1.0, 0.0]]}

    """
    cls = loss_class(name)
    if mode not in getattr(cls, "_modes", ("binary", "multiclass", "multilabel")):
        return None
    if name == "generalized_wasserstein_dice":
        return {"dist_matrix": [[0.0 if i == j else 1.0 for j in range(num_classes)] for i in range(num_classes)]}
    return {}
