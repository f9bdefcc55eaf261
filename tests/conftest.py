"""Shared input factory for the loss tests.

``make_case(mode, ...)`` returns a :class:`Case` holding the same input and target as float64 torch
tensors and as NumPy arrays (for ``tests/reference.py``). Target forms: binary/multilabel ``"hard"``
(0/1) or ``"soft"`` (values in [0, 1]); multiclass ``"index"`` (int64 class indices), ``"onehot"``
(float) or ``"soft"`` (float, rows summing to 1). ``ignore=True`` marks about a fifth of the target
with ``IGNORE`` (255): whole pixels for index targets, single elements for binary/multilabel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

IGNORE = 255
SPATIAL = {2: (5, 6), 3: (3, 4, 5)}
MODES = ("binary", "multiclass", "multilabel")
TARGET_FORMS = {"binary": ("hard", "soft"), "multiclass": ("index", "onehot", "soft"), "multilabel": ("hard", "soft")}


@dataclass
class Case:
    mode: str
    x: torch.Tensor
    t: torch.Tensor
    x_np: np.ndarray
    t_np: np.ndarray
    from_logits: bool
    ignore_index: int | None
    kw: dict[str, Any] = field(default_factory=dict)

    def args(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments shared by the implementation and the reference."""
        out: dict[str, Any] = {"mode": self.mode, "from_logits": self.from_logits}
        if self.ignore_index is not None:
            out["ignore_index"] = self.ignore_index
        out.update(extra)
        return out

    def xg(self) -> torch.Tensor:
        """A fresh leaf copy of the input that requires grad."""
        return self.x.detach().clone().requires_grad_(True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_case_fn(
    mode: str,
    *,
    dims: int = 2,
    target: str | None = None,
    seed: int = 0,
    n: int = 2,
    c: int = 3,
    ignore: bool = False,
    from_logits: bool = True,
    squeeze: bool = False,
    scale: float = 2.0,
    spatial: tuple[int, ...] | None = None,
) -> Case:
    """Build one random case. ``squeeze`` gives binary inputs as (N, *S) instead of (N, 1, *S)."""
    rng = np.random.default_rng(seed)
    s = spatial if spatial is not None else SPATIAL[dims]
    target = target if target is not None else TARGET_FORMS[mode][0]
    ch = 1 if mode == "binary" else c
    logits = rng.normal(size=(n, ch, *s)) * scale
    x = (_softmax(logits) if mode == "multiclass" else _sigmoid(logits)) if not from_logits else logits
    if mode == "multiclass":
        idx = rng.integers(0, c, size=(n, *s))
        idx.reshape(n, -1)[:, :c] = np.arange(c)  # every class present in every image
        if target == "index":
            t = idx.astype(np.int64)
        elif target == "onehot":
            t = np.moveaxis(np.eye(c)[idx], -1, 1)
        elif target == "soft":
            t = _softmax(rng.normal(size=(n, c, *s)) * 1.5)
        else:
            raise ValueError(target)
        if ignore:
            if target != "index":
                raise ValueError("ignore_index needs index targets in multiclass mode")
            mask = rng.random(size=t.shape) < 0.2
            mask.reshape(n, -1)[:, :c] = False
            t = np.where(mask, IGNORE, t)
    else:
        if target == "hard":
            t = (rng.random(size=(n, ch, *s)) < 0.4).astype(np.float64)
            t.reshape(n, ch, -1)[:, :, 0] = 1.0
            t.reshape(n, ch, -1)[:, :, 1] = 0.0
        elif target == "soft":
            t = rng.random(size=(n, ch, *s))
        else:
            raise ValueError(target)
        if ignore:
            mask = rng.random(size=t.shape) < 0.2
            mask.reshape(n, ch, -1)[:, :, :2] = False
            t = np.where(mask, float(IGNORE), t)
    if mode == "binary" and squeeze:
        x, t = x[:, 0], t[:, 0]
    xt = torch.tensor(x, dtype=torch.float64)
    tt = torch.tensor(t)
    return Case(
        mode=mode,
        x=xt,
        t=tt,
        x_np=np.asarray(x, dtype=np.float64),
        t_np=np.asarray(t),
        from_logits=from_logits,
        ignore_index=IGNORE if ignore else None,
    )


@pytest.fixture(scope="session")
def make_case():
    return make_case_fn


@pytest.fixture
def one_thread():
    """One intra-op thread during the test, the count restored after it.

    The training tests (compare, tune) use it: tiny convolutions on the shared 2-core machine run several times
    slower oversubscribed (pytest -n 2), and their numbers are compared bit for bit with runs in subprocesses that
    use one thread too (spawned DDP ranks inherit the count).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
