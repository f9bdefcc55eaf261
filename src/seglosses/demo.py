"""A one-minute demo: a tiny CNN trained on generated blobs with three losses; the losses fall.

Run with ``python -m seglosses.demo`` (only torch and numpy are needed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seglosses import get_loss


def _blobs(n: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Images with a few bright discs (about 5-10% foreground) plus noise, and their masks ``(n, 1, size, size)``."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx = torch.randint(4, size - 4, (2,), generator=generator).tolist()
            r = float(torch.randint(2, 5, (1,), generator=generator))
            masks[i, 0] += ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float()
    masks = masks.clamp(max=1)
    images = masks * 1.0 + 0.6 * torch.randn(n, 1, size, size, generator=generator)
    return images, masks


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 1)
    )


def main(steps: int = 60, losses: tuple[str, ...] = ("dice", "dice_ce", "focal_tversky")) -> dict[str, list[float]]:
    """Train the same model (same initialisation and data) with each loss and print the loss every 10 steps."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    gen = torch.Generator().manual_seed(0)
    images, masks = _blobs(16, 32, gen)
    history: dict[str, list[float]] = {}
    for name in losses:
        torch.manual_seed(0)
        model = _model()
        loss_fn = get_loss(name, mode="binary")
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        values = []
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(model(images), masks)
            loss.backward()
            opt.step()
            values.append(float(loss.detach()))
        history[name] = values
        shown = "  ".join(f"{v:.4f}" for v in values[::10])
        print(f"{name:>14}: {shown}  ->  {values[-1]:.4f}")
    return history


if __name__ == "__main__":
    main()
