"""seglosses: canonical, verified segmentation losses and metrics for PyTorch (see SPEC in the README)."""

from seglosses import functional
from seglosses import functional as F  # noqa: N812  (the documented alias)
from seglosses.losses import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    ComboLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    HybridFocalLoss,
    JaccardLoss,
    LovaszLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    TverskyLoss,
    UnifiedFocalLoss,
)
from seglosses.registry import available_losses, get_loss

__version__ = "0.1.0"

__all__ = [
    "AsymmetricFocalLoss",
    "AsymmetricFocalTverskyLoss",
    "ComboLoss",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "F",
    "FocalLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "HybridFocalLoss",
    "JaccardLoss",
    "LovaszLoss",
    "SymmetricFocalLoss",
    "SymmetricFocalTverskyLoss",
    "TverskyLoss",
    "UnifiedFocalLoss",
    "__version__",
    "available_losses",
    "functional",
    "get_loss",
]
