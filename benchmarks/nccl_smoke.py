"""Smoke check of sync_stats on CUDA tensors with the nccl backend (world size 1: the only setting one GPU allows)."""

import os

import torch
import torch.distributed as dist

import seglosses.functional as SF

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("nccl", rank=0, world_size=1)
torch.manual_seed(0)
x0 = torch.randn(2, 4, 32, 32, 32, device="cuda")
t = torch.randint(0, 4, (2, 32, 32, 32), device="cuda")
t[0, :4] = 255
for name in ["dice_loss", "tversky_loss", "generalized_dice_loss", "cross_entropy_loss", "focal_loss", "dice_ce_loss"]:
    fn = getattr(SF, name)
    xa = x0.clone().requires_grad_(True)
    xb = x0.clone().requires_grad_(True)
    a = fn(xa, t, mode="multiclass", ignore_index=255)
    b = fn(xb, t, mode="multiclass", ignore_index=255, sync_stats=True)
    a.backward()
    b.backward()
    ok = torch.allclose(a, b) and torch.allclose(xa.grad, xb.grad)
    print(f"{name:24s} plain {a.item():.6f} synced {b.item():.6f} grads equal {ok}")
dist.destroy_process_group()
