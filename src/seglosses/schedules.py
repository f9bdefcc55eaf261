"""Weight schedules that mix two losses over training (the user's loop applies them, never the loss)."""

from __future__ import annotations

from seglosses._checks import check_number


def rebalance(epoch: int | float) -> float:
    r"""Kervadec et al.'s "rebalance" weight of the region loss at ``epoch``.

    .. math::

        \alpha(e) = \max(0.01,\; 1 - 0.01\,e), \qquad L = \alpha\,L_{region} + (1 - \alpha)\,L_{boundary}

    The region loss (e.g. :func:`seglosses.functional.dice_loss` or generalised Dice) starts with all the weight;
    every epoch moves 0.01 of it to :func:`seglosses.functional.boundary_loss`, down to 0.01 from epoch 99 on.

    Args:
        epoch: the epoch, >= 0 (counting from 0).

    Returns:
        :math:`\alpha`, in [0.01, 1].

    Raises:
        ValueError: a negative or non-finite epoch.
        TypeError: a non-numeric epoch.

    References:
        H. Kervadec et al., "Boundary loss for highly unbalanced segmentation", MIDL 2019 / MedIA 2021 (the
        "rebalance" strategy of the official code).

    Examples:
        >>> from seglosses.schedules import rebalance
        >>> rebalance(0), rebalance(30), rebalance(200)
        (1.0, 0.7, 0.01)

    """
    e = check_number("rebalance", "epoch", epoch, low=0.0)
    return max(0.01, 1.0 - 0.01 * e)
