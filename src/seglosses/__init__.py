"""seglosses: canonical, verified segmentation losses and metrics for PyTorch.

The definitions (formula, shapes, defaults, edge cases) are in each function's docstring.
"""

from typing import TYPE_CHECKING

from seglosses import functional
from seglosses import functional as F  # noqa: N812  (the documented alias)
from seglosses._checks import set_value_checks
from seglosses.losses import (
    AsymmetricFocalLoss,
    AsymmetricFocalTverskyLoss,
    BoundaryLoss,
    ClDiceLoss,
    ComboLoss,
    CrossEntropyLoss,
    DiceCELoss,
    DiceClDiceLoss,
    DiceLoss,
    FBetaLoss,
    FocalLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    GeneralizedWassersteinDiceLoss,
    HausdorffDTLoss,
    HybridFocalLoss,
    JaccardLoss,
    LogCoshDiceLoss,
    LovaszLoss,
    SensitivitySpecificityLoss,
    SymmetricFocalLoss,
    SymmetricFocalTverskyLoss,
    TopKLoss,
    TverskyLoss,
    UnifiedFocalLoss,
)
from seglosses.registry import available_losses, get_loss

if TYPE_CHECKING:
    from seglosses import metrics
    from seglosses.cli.compare import compare

__version__ = "0.1.0"

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
    "F",
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
    "__version__",
    "available_losses",
    "compare",
    "functional",
    "get_loss",
    "metrics",
    "set_value_checks",
]


def __getattr__(name: str) -> object:
    """Lazy attributes, imported on first use so that ``import seglosses`` stays light.

    ``seglosses.metrics`` (the metrics subpackage: its surface metrics import SciPy's spatial module) and
    ``seglosses.compare`` (the command-line training stack).
    """
    if name == "metrics":
        import importlib

        return importlib.import_module("seglosses.metrics")
    if name == "compare":
        from seglosses.cli.compare import compare

        return compare
    raise AttributeError(f"module 'seglosses' has no attribute {name!r}")
