"""Data-parallel training for ``seglosses compare --nproc N`` (or under ``torchrun``): the process plumbing.

Every run of a comparison trains one model with ``DistributedDataParallel`` over K processes (gloo on CPU, nccl on
CUDA). The result equals that of one process with the same global batch, up to float rounding, because:

- every rank draws the same GLOBAL batch from the same seeded generator and keeps its contiguous slice of
  ``batch_size / K`` crops (so the concatenation of the slices is the single-process batch, in order);
- the loss is built with ``sync_stats=True`` (its statistics summed over the ranks) where it supports it (every
  registry loss except ``lovasz``): every rank computes the loss of the concatenated batch, and after DDP's mean of
  gradients the update is the single-process one. ``lovasz`` sorts the errors of its own batch and has no
  sum-of-statistics form: it runs per rank (the mean over ranks of the per-slice Lovasz losses, as plain DDP does), so
  its numbers differ from one process's. Candidates from ``extra_losses`` run per rank as well;
- the model's BatchNorm layers become :class:`GlobalBatchNorm`, which normalise with the mean and variance of the
  global batch (summed over the ranks with the same differentiable all-reduce as the losses). ``torch.nn.SyncBatchNorm``
  would do this on CUDA only; this one works with gloo on CPU too;
- validation runs on rank 0 only, with the unwrapped model (BatchNorm in eval mode uses its running statistics,
  identical on every rank), and rank 0 broadcasts each run's result so that every rank returns the same table.

Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from seglosses._distributed import Sync, sync_sums

__all__ = ["DistContext", "GlobalBatchNorm", "convert_batchnorm", "launched_world_size", "spawn"]

TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    """A process's place in the group: ``rank`` of ``world_size``, and the torch device it trains on."""

    rank: int
    world_size: int
    device: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, writes files and prints."""
        return self.rank == 0

    def shard(self, tensor: Tensor) -> Tensor:
        """The contiguous slice of this rank of a global batch (the batch size is a multiple of ``world_size``)."""
        per = tensor.shape[0] // self.world_size
        return tensor[self.rank * per : (self.rank + 1) * per]

    def mean(self, value: float) -> float:
        """The mean of a float over the ranks (the same on every rank afterwards)."""
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=torch.device(self.device) if self.device != "cpu" else None)
        return box[0]


def launched_world_size() -> int:
    """The number of processes this one was launched with: ``WORLD_SIZE`` under ``torchrun``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return 1


def _backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def _local_device(device: str, local_rank: int) -> str:
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def init_from_env(device: str) -> DistContext:
    """The context of a process started by ``torchrun`` (initialising the default group from ``env://`` if needed)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local = _local_device(device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(_backend(device), init_method="env://", timeout=TIMEOUT)
    return DistContext(rank=int(dist.get_rank()), world_size=int(dist.get_world_size()), device=local)


def _worker(
    rank: int,
    world_size: int,
    init_file: str,
    device: str,
    fn: Callable[[DistContext, Any], Any],
    payload: Any,
    result_file: str,
) -> None:
    dist.init_process_group(
        _backend(device), init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=TIMEOUT
    )
    try:
        ctx = DistContext(rank=rank, world_size=world_size, device=_local_device(device, rank))
        result = fn(ctx, payload)
        if rank == 0:
            Path(result_file).write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def spawn(
    world_size: int, device: str, fn: Callable[[DistContext, Any], Any], payload: Any, folder: Path | None
) -> Any:
    """Run ``fn(ctx, payload)`` in ``world_size`` fresh processes (``torch.multiprocessing.spawn``); rank 0's return.

    The group meets through a file (``init_method="file://..."``) in a temporary folder inside ``folder`` (the
    output folder) or the system's temporary folder; ``fn`` and ``payload`` must be picklable.

    If this process is interrupted while it waits (Ctrl-C, or SIGTERM raised as ``KeyboardInterrupt`` by the
    command line), the ranks are terminated before the exception goes on: they are not daemons, so a parent that
    left them running would wait at exit for the whole comparison (and rank 0 would write into the removed folder).
    """
    from torch.multiprocessing.spawn import start_processes

    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ddp-", dir=folder) as tmp:
        init_file = str(Path(tmp, "init").resolve())
        result_file = str(Path(tmp, "result.pkl").resolve())
        args = (world_size, init_file, device, fn, payload, result_file)
        context = start_processes(_worker, args=args, nprocs=world_size, join=False, start_method="spawn")  # type: ignore[no-untyped-call]
        try:
            while not context.join():  # raises when a rank fails (and then terminates the others itself)
                pass
        except BaseException:
            _stop(context.processes)
            raise
        return pickle.loads(Path(result_file).read_bytes())  # noqa: S301 - written by our own rank 0 just now


def _stop(processes: list[Any], grace: float = 10.0) -> None:
    """Terminate the ranks still alive (SIGTERM), then kill those still alive after ``grace`` seconds."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


class GlobalBatchNorm(nn.Module):
    """BatchNorm over the global batch of all ranks (training mode); plain running-statistics BatchNorm in eval.

    Two passes (mean, then the mean squared deviation), each one differentiable all-reduce of per-channel sums, so
    the statistics match one process's on the concatenated batch to float rounding; they are taken in float32 at
    least (as ``nn.BatchNorm``'s kernels do; a bf16 or fp16 activation under autocast too), and the output has the
    input's dtype. The running statistics are updated as ``nn.BatchNorm`` does (unbiased variance), identically on
    every rank. A layer built with ``track_running_stats=False`` keeps none and, as ``nn.BatchNorm``, normalises
    with the statistics of the batch it is given in eval mode too: that batch's own (validation runs on one rank,
    so no collective there).
    """

    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum = bn.eps, bn.momentum
        self.weight, self.bias = bn.weight, bn.bias
        # nn.BatchNorm without running statistics holds None buffers (left out of its state_dict): the same here
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(N, C, *S)`` per channel: global batch statistics in training, running ones in eval."""
        tracked = self.running_mean is not None and self.running_var is not None
        if not self.training:
            # without running statistics, the batch's own (nn.BatchNorm's rule; local: eval runs on one rank)
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, not tracked, 0.0, self.eps
            )
        sync = Sync()
        # the statistics in float32 at least, as nn.BatchNorm's kernels accumulate them: a bf16 activation (autocast)
        # summed and divided in bf16 kept 8 bits of its mean (near 100 a step of 0.5, a quarter of a unit variance)
        dtype = torch.promote_types(x.dtype, torch.float32)
        xs = x.to(dtype)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=dtype, device=x.device)
        total, n = sync_sums([xs.sum(dims), count], sync)
        mean = total / n
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = xs - mean.view(shape)
        (squares,) = sync_sums([centred.pow(2).sum(dims)], sync)
        var = squares / n
        if self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum  # as nn.BatchNorm
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None and self.bias is not None:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)  # the input's dtype, as nn.BatchNorm (bf16 in, bf16 out under autocast)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` (in place, sharing its parameters) by :class:`GlobalBatchNorm`."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return GlobalBatchNorm(module)
    for name, child in module.named_children():
        setattr(module, name, convert_batchnorm(child))
    return module
