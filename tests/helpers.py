"""Comparison helpers shared by the test files (implementation vs ``tests/reference.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import seglosses.functional as SF
from reference import REFERENCES, numeric_grad

RTOL = 1e-6  # float64 value agreement
GRAD_RTOL = 1e-5  # autograd vs central finite difference of the NumPy reference
GRAD_ATOL = 1e-8


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def assert_close(got: Any, expected: Any, rtol: float = RTOL, atol: float = 1e-10) -> None:
    got_np = to_np(got) if isinstance(got, torch.Tensor) else np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got_np.shape == expected.shape, f"shape {got_np.shape} != expected {expected.shape}"
    np.testing.assert_allclose(got_np, expected, rtol=rtol, atol=atol)


def check_reference(name: str, case: Any, *, grad: bool = True, **kw: Any) -> torch.Tensor:
    """Value (and gradient, for scalar outputs) of ``SF.<name>`` against the NumPy reference."""
    impl = getattr(SF, name)
    ref = REFERENCES[name]
    args = case.args(**kw)
    x = case.xg()
    out = impl(x, case.t, **args)
    assert out.dtype == torch.float64
    expected = ref(case.x_np, case.t_np, **args)
    assert_close(out, expected)
    if grad and out.ndim == 0:
        out.backward()
        num = numeric_grad(lambda a: ref(a, case.t_np, **args), case.x_np, probabilities=not case.from_logits)
        np.testing.assert_allclose(to_np(x.grad), num, rtol=GRAD_RTOL, atol=GRAD_ATOL)
    return out


def run_interpreted(script: str) -> dict[str, float]:
    """Run ``script --worker`` in a subprocess under ``TRITON_INTERPRET=1``; the dict of its ``RESULTS`` JSON line.

    ``TRITON_INTERPRET`` is read when a kernel is decorated, long after the test process imported seglosses, so the
    Triton tests evaluate their cases in a fresh process (tests/test_triton.py, tests/test_triton_lovasz.py).
    """
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, script, "--worker"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert lines, proc.stdout[-4000:]
    return dict(json.loads(lines[-1][len("RESULTS ") :]))


class TritonLaunches:
    """Counts the Triton kernel launches the interpreter runs from :meth:`install` on, and whether one runs now.

    The Triton tests' workers watch ATen operators with a dispatch mode; those seen ``inside`` a launch are the
    interpreter's own handling of the tensors, not operators the GPU would run.
    """

    def __init__(self) -> None:
        self.launches = 0
        self.depth = 0

    @property
    def inside(self) -> bool:
        """Whether a Triton launch is running now."""
        return self.depth > 0

    def install(self) -> TritonLaunches:
        """Wrap the interpreter's launch (for the rest of the process: the workers are one-shot)."""
        from triton.runtime import interpreter

        run = interpreter.InterpretedFunction.run

        def counted(fn: object, *args: object, **kwargs: object) -> object:
            self.launches += 1
            self.depth += 1
            try:
                return run(fn, *args, **kwargs)
            finally:
                self.depth -= 1

        interpreter.InterpretedFunction.run = counted  # type: ignore[method-assign]
        return self


class FixedLogits(torch.nn.Module):
    """A stand-in model for validation: returns fixed logits ``(C, *S)``, one image per call, cut to the input's size
    (the validation loader has batch size 1 and pads the image)."""

    def __init__(self, logits: list[torch.Tensor]) -> None:
        super().__init__()
        self.logits = logits
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.calls]
        self.calls += 1
        return out[None, :, : x.shape[2], : x.shape[3]]
