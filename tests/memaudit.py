"""A memory audit of one loss call, independent of the loss code's own accounting (used by test_memory_index_targets).

:class:`Audit` is a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that sees every ATen operator of the
forward and the backward (whatever path runs: the C++ kernels' output buffers, the PyTorch twins, the generic
formulas, autograd's own ops) and records, with no help from seglosses:

- **one-hot detection**, two independent ways:
  (a) *provenance*: every tensor carries two bits, "depends on the target" and "depends on the logits", propagated
  from each operator's tensor inputs to its outputs (and to the arguments it writes in place). A tensor of at
  least the logits' numel that depends on the target and not on the logits is a *target-sized* tensor (a one-hot,
  an ``eq`` against an ``arange``, a scatter into zeros of the logits' shape, an expanded mask, a distance map);
  (b) *values*: every tensor of exactly the logits' numel that an operator produces or consumes is compared with
  the one-hot of the target in the layouts a loss could use (``(N, C, M)``, ``(N, M, C)``, ``(C, N, M)``), at the
  kept pixels; a match (nonzero exactly where the one-hot is 1) is a *one-hot*. Checking consumed tensors too
  catches a buffer that an opaque kernel (ctypes) filled after the operator that allocated it.
- **bytes alive**: every storage an operator produces is counted from its first sighting until its Python storage
  object dies (``weakref.finalize``; PyTorch keeps one Python object per storage alive as long as the storage
  lives), so the peak is the most bytes alive at once, at operator granularity. Storages alive before the call
  (the logits, the target) are not counted. Memory a ctypes kernel mallocs itself is invisible here.
- **bytes saved for backward**: the distinct storages packed by ``torch.autograd.graph.saved_tensors_hooks``
  (the logits' and target's own excluded), and, hook-free, the bytes still alive right after the forward returns
  (what the graph keeps, ``ctx`` attributes included), less the loss value itself.
"""

from __future__ import annotations

import dataclasses
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

T_BIT, L_BIT = 1, 2
#: Operators whose result does not depend on their tensor arguments' values (only on shape, dtype, device).
_FACTORIES = {"zeros_like", "ones_like", "empty_like", "full_like", "new_zeros", "new_ones", "new_empty", "new_full",
              "rand_like", "randn_like", "empty_strided", "zeros", "ones", "empty", "full", "arange"}  # fmt: skip


def _where() -> str:
    """The innermost seglosses source line running now (for the flags' messages)."""
    for frame in reversed(traceback.extract_stack()):
        if "/seglosses/" in frame.filename:
            return f"{frame.filename.rsplit('/seglosses/', 1)[1]}:{frame.lineno}"
    return "?"


@dataclasses.dataclass
class Report:
    """One forward + backward, in bytes and as multiples of the logits' bytes."""

    logits_bytes: int
    peak: int = 0  # most bytes alive at once (forward and backward), the gradient of the logits included
    peak_forward: int = 0
    saved: int = 0  # storages packed for backward (hooks)
    retained: int = 0  # bytes alive after the forward returned, the loss value excluded
    target_sized: list[str] = dataclasses.field(default_factory=list)  # provenance flags: op names
    onehot: list[str] = dataclasses.field(default_factory=list)  # value flags: op names

    def ratio(self, field: str) -> float:
        return float(getattr(self, field)) / self.logits_bytes


class Audit(TorchDispatchMode):
    """Record provenance, one-hot values and bytes alive for every operator run inside the mode."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
        super().__init__()
        self.threshold = x.numel()
        self.bits: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.bits[x] = L_BIT
        self.bits[target] = T_BIT
        self.alive: dict[int, int] = {}  # id of a tracked storage object -> bytes
        self.known: set[int] = set()
        self.baseline = {id(x.untyped_storage()), id(target.untyped_storage())}
        self._keep = [x.untyped_storage(), target.untyped_storage()]  # their ids stay unique while we run
        self.now = 0
        self.peak = 0
        self.target_sized: list[str] = []
        self.onehot: list[str] = []
        self._checked: set[tuple[int, int]] = set()
        self.phase = "fwd"  # measure() sets "bwd" before the backward
        self.reference: torch.Tensor | None = None
        self.kept: torch.Tensor | None = None
        if target.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):  # index targets
            t = target.reshape(target.shape[0], -1).long()
            kept = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
            safe = torch.where(kept, t, 0)
            self.reference = torch.nn.functional.one_hot(safe, num_classes).permute(0, 2, 1).bool()  # (N, C, M)
            self.kept = kept

    # -- bytes alive ---------------------------------------------------------------------------------------
    def _freed(self, key: int) -> None:
        self.now -= self.alive.pop(key, 0)
        self.known.discard(key)

    def _track(self, t: torch.Tensor) -> None:
        if t.device.type == "meta" or t.layout != torch.strided:
            return
        s = t.untyped_storage()
        key = id(s)
        if key in self.baseline:
            return
        nbytes = s.nbytes()
        if key not in self.known:
            self.known.add(key)
            self.alive[key] = nbytes
            self.now += nbytes
            weakref.finalize(s, self._freed, key)
        elif nbytes > self.alive.get(key, 0):  # resized (out= ops)
            self.now += nbytes - self.alive[key]
            self.alive[key] = nbytes
        self.peak = max(self.peak, self.now)

    # -- one-hot values --------------------------------------------------------------------------------------
    def _is_onehot(self, t: torch.Tensor) -> bool:
        ref, kept = self.reference, self.kept
        if ref is None or kept is None or t.numel() != ref.numel() or t.is_complex():
            return False
        n, c, m = ref.shape
        nz = t.detach().reshape(-1) != 0
        layouts = (
            nz.reshape(n, c, m),
            nz.reshape(n, m, c).permute(0, 2, 1),
            nz.reshape(c, n, m).permute(1, 0, 2),
        )
        mask = kept.unsqueeze(1).expand(n, c, m)
        return any(bool(((v == ref) | ~mask).all()) for v in layouts)

    def _check_values(self, t: torch.Tensor, name: str) -> None:
        if t.numel() < self.threshold or self.reference is None:
            return
        key = (id(t), t._version)
        if key in self._checked:
            return
        self._checked.add(key)
        if self._is_onehot(t):
            self.onehot.append(f"{self.phase} {name} at {_where()}")

    # -- dispatch --------------------------------------------------------------------------------------------
    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket.__name__)
        written, overwritten = [], []  # arguments the operator writes; those it only writes (out=)
        for i, arg in enumerate(func._schema.arguments):
            if arg.alias_info is not None and arg.alias_info.is_write:
                value = args[i] if i < len(args) else kwargs.get(arg.name)
                for v in tree_flatten(value)[0]:
                    if isinstance(v, torch.Tensor):
                        written.append(v)
                        if arg.is_out:
                            overwritten.append(id(v))
        bits = 0
        for a in tree_flatten((args, kwargs))[0]:
            if isinstance(a, torch.Tensor):
                if (
                    id(a) not in overwritten and name not in _FACTORIES
                ):  # an out= buffer's old content does not reach the result
                    bits |= self.bits.get(a, 0)
                self._track(a)  # a storage made outside the dispatcher (from_numpy, a ctypes kernel's caller)
                self._check_values(a, f"{name}(input)")
        flat_out = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        for o in [*flat_out, *written]:
            b = bits if id(o) in overwritten else self.bits.get(o, 0) | bits
            self.bits[o] = b
            self._track(o)
            if o.numel() >= self.threshold and b == T_BIT:
                self.target_sized.append(f"{self.phase} {name}{tuple(o.shape)} at {_where()}")
            self._check_values(o, name)
        return out


def measure(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    num_classes: int,
    ignore_index: int | None = None,
    backward: bool = True,
) -> Report:
    """Run ``fn(x, target)`` (a scalar loss) forward and backward inside an :class:`Audit`; ``x`` a leaf."""
    report = Report(logits_bytes=x.numel() * x.element_size())
    base = {x.untyped_storage().data_ptr(), target.untyped_storage().data_ptr()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in base and s.nbytes() > 0:
            saved[s.data_ptr()] = max(saved.get(s.data_ptr(), 0), s.nbytes())
        return t

    x.grad = None
    audit = Audit(x, target, num_classes, ignore_index)
    with audit:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = fn(x, target)
        loss_bytes = loss.untyped_storage().nbytes()
        report.peak_forward = audit.peak
        report.retained = audit.now - loss_bytes
        if backward:
            audit.phase = "bwd"
            seed = torch.ones_like(loss)
            audit.bits[seed] = L_BIT  # every gradient is a function of the logits: none is "the target's alone"
            loss.backward(seed)
            del seed
        del loss
    report.peak = audit.peak
    report.saved = sum(saved.values())
    report.target_sized = audit.target_sized
    report.onehot = audit.onehot
    return report
