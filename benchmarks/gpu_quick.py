"""Quick CUDA timing of the fused multiclass paths (used to check kernel-launch overhead; not the full harness)."""

import time

import torch
import torch.nn.functional as TF

from seglosses import F

dev = "cuda"
shape = (2, 4, 96, 96, 96)
x0 = torch.randn(shape, device=dev)
t = torch.randint(0, 4, (shape[0],) + shape[2:], device=dev)


def bench(f, reps=20):
    for _ in range(3):
        x = x0.clone().requires_grad_(True)
        f(x).backward()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        x = x0.clone().requires_grad_(True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        f(x).backward()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2] * 1e3


ce = bench(lambda x: TF.cross_entropy(x, t))
print(f"CE {ce:.2f} ms")
for name in ["dice", "dice_ce", "focal", "tversky", "jaccard", "generalized_dice", "unified_focal", "lovasz"]:
    fn = getattr(F, name + "_loss")
    ms = bench(lambda x, fn=fn: fn(x, t, mode="multiclass"))
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    x = x0.clone().requires_grad_(True)
    fn(x, t, mode="multiclass").backward()
    peak = (torch.cuda.max_memory_allocated() - base) / x0.nbytes
    print(f"{name:18s} {ms:7.2f} ms  x CE {ms / ce:5.2f}  peak x logits {peak:4.2f}")
try:
    import monai.losses as ml

    d = ml.DiceLoss(softmax=True, to_onehot_y=True, batch=True)
    print(f"monai dice {bench(lambda x: d(x, t.unsqueeze(1))):.2f} ms")
    d2 = ml.DiceCELoss(softmax=True, to_onehot_y=True, batch=True)
    print(f"monai dicece {bench(lambda x: d2(x, t.unsqueeze(1))):.2f} ms")
except ImportError as e:
    print("no monai", e)
