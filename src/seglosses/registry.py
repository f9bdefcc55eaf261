"""Build any loss from its name: ``get_loss("focal_tversky", mode="binary", gamma=0.75)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from seglosses import losses
from seglosses._checks import check_option

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
}


def available_losses() -> list[str]:
    """The registry names, sorted: each is accepted by :func:`get_loss` (and by ``seglosses compare --losses``).

    Examples:
        >>> from seglosses import available_losses
        >>> "focal_tversky" in available_losses()
        True

    """
    return sorted(_REGISTRY)


def loss_class(name: str) -> type[nn.Module]:
    """The Module class registered under ``name`` (raises ``ValueError`` with a did-you-mean for unknown names)."""
    check_option("get_loss", "name", name, available_losses())
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

    Examples:
        >>> from seglosses import get_loss
        >>> get_loss("tversky", mode="binary", alpha=0.2, beta=0.8)
        TverskyLoss(mode='binary', alpha=0.2, beta=0.8)

    """
    return loss_class(name)(**kwargs)
