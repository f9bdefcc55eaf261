"""Pure functions, one per loss: ``name_loss(input, target, *, mode, ...)``; ``input`` and ``target`` positional."""

from seglosses.functional.boundary import boundary_loss, hausdorff_dt_loss
from seglosses.functional.compound import combo_loss, dice_ce_loss, hybrid_focal_loss
from seglosses.functional.lovasz import lovasz_loss
from seglosses.functional.pixel import cross_entropy_loss, focal_loss
from seglosses.functional.region import (
    dice_loss,
    focal_tversky_loss,
    generalized_dice_loss,
    jaccard_loss,
    tversky_loss,
)
from seglosses.functional.region_extra import (
    fbeta_loss,
    generalized_wasserstein_dice_loss,
    log_cosh_dice_loss,
    sensitivity_specificity_loss,
)
from seglosses.functional.topk import topk_loss
from seglosses.functional.topology import cldice_loss, dice_cldice_loss
from seglosses.functional.unified_focal import (
    asymmetric_focal_loss,
    asymmetric_focal_tversky_loss,
    symmetric_focal_loss,
    symmetric_focal_tversky_loss,
    unified_focal_loss,
)

#: ``cross_entropy`` is another name of :func:`cross_entropy_loss` (the same function).
cross_entropy = cross_entropy_loss

__all__ = [
    "asymmetric_focal_loss",
    "asymmetric_focal_tversky_loss",
    "boundary_loss",
    "cldice_loss",
    "combo_loss",
    "cross_entropy",
    "cross_entropy_loss",
    "dice_ce_loss",
    "dice_cldice_loss",
    "dice_loss",
    "fbeta_loss",
    "focal_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "generalized_wasserstein_dice_loss",
    "hausdorff_dt_loss",
    "hybrid_focal_loss",
    "jaccard_loss",
    "log_cosh_dice_loss",
    "lovasz_loss",
    "sensitivity_specificity_loss",
    "symmetric_focal_loss",
    "symmetric_focal_tversky_loss",
    "topk_loss",
    "tversky_loss",
    "unified_focal_loss",
]
