"""seglosses: canonical, verified segmentation losses and metrics for PyTorch (see SPEC in the README)."""

from typing import TYPE_CHECKING

from seglosses import functional
from seglosses import functional as F  # noqa: N812  (the documented alias)
from seglosses._checks import set_value_checks
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

if TYPE_CHECKING:
    from seglosses.cli.compare import compare

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
    "compare",
    "functional",
    "get_loss",
    "set_value_checks",
]


def __getattr__(name: str) -> object:
    """Lazy attributes: ``seglosses.compare`` imports the command-line stack only when it is used."""
    if name == "compare":
        from seglosses.cli.compare import compare

        return compare
    raise AttributeError(f"module 'seglosses' has no attribute {name!r}")
