"""``_numerics.log1m_softmax_lean``: the exact ``log(1 - softmax)`` whose backward keeps the logits only (combo).

Autograd through :func:`seglosses._numerics.log1m_softmax` (prefix/suffix ``logcumsumexp``) kept 5.25x the logits'
bytes for backward; the lean function computes the same forward without autograd and a closed-form gradient. The
gradient references here are the definition, :math:`\\partial L_c / \\partial x_k = [k \\ne c]\\, e^{x_k} /
\\sum_{j \\ne c} e^{x_j} - e^{x_k} / \\sum_j e^{x_j}`, summed against the output gradient in 60-digit mpmath
arithmetic (independent of both implementations); the old autograd path is compared too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import seglosses.functional as SF
from seglosses import _numerics
from seglosses._numerics import _log1m_softmax_vjp, log1m_softmax, log1m_softmax_lean
from seglosses.functional import compound

mpmath = pytest.importorskip("mpmath")
sys.path.insert(0, str(Path(__file__).parent))
from memaudit import measure  # noqa: E402


def _reference(x: list[float], g: list[float]) -> tuple[list[float], list[float]]:
    """``log(1 - p_c)`` and ``d/dx_k sum_c g_c log(1 - p_c)`` of one pixel by the definition, in 60 digits."""
    with mpmath.workdps(60):
        e = [mpmath.exp(mpmath.mpf(v)) for v in x]
        total = mpmath.fsum(e)
        rest = [mpmath.fsum(e[j] for j in range(len(x)) if j != c) for c in range(len(x))]  # 1 - p_c, no cancelling
        values = [float(mpmath.log(rest[c] / total)) for c in range(len(x))]
        grads = []
        for k in range(len(x)):
            s = mpmath.fsum(
                mpmath.mpf(g[c]) * ((e[k] / rest[c] if k != c else 0) - e[k] / total) for c in range(len(x))
            )
            grads.append(float(s))
    return values, grads


def _grad(fn, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    y = fn(leaf, 1)
    (y * g).sum().backward()
    return y.detach(), leaf.grad


EXTREME = [
    [1e4, -1e4, 0.0],  # 1 - p_0 = e^-1e4: log(1 - p) -1e4, r_0 = e^1e4 overflows
    [-1e4, 1e4, 1e4],  # a tie of saturated classes
    [1e4, 1e4 - 30.0, -1e4],
    [800.0, 0.0, -800.0, 3.0],  # exp(800) overflows float64
    [40.0, -3.0, 2.0],
    [0.0, 0.0],
    [-5.0, 1e-3, 2.0, 2.0, -7.0],
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("x", EXTREME)
def test_lean_matches_the_definition_at_extreme_logits(x: list[float], dtype: torch.dtype) -> None:
    xt = torch.tensor(x, dtype=dtype).view(1, -1, 1)
    g = torch.linspace(-1.3, 0.9, len(x), dtype=dtype).view(1, -1, 1)
    values, grads = _reference(xt.flatten().tolist(), g.flatten().tolist())
    y, grad = _grad(log1m_softmax_lean, xt, g)
    # x - logsumexp(x) is resolved to ulp(max |x|) (1.8e-12 in float64 at 1e4, 1e-3 in float32): the attainable
    # accuracy of any formula on these inputs
    tol = torch.finfo(dtype).eps * max(1.0, max(abs(v) for v in x))
    torch.testing.assert_close(
        y.flatten(), torch.tensor(values, dtype=dtype), rtol=4 * torch.finfo(dtype).eps, atol=tol
    )
    torch.testing.assert_close(grad.flatten(), torch.tensor(grads, dtype=dtype), rtol=0, atol=tol)
    assert torch.isfinite(grad).all()
    if dtype == torch.float64:  # the old autograd path is as close to the definition (the two within 2 tol)
        _, old = _grad(log1m_softmax, xt, g)
        torch.testing.assert_close(grad, old, rtol=0, atol=2 * tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [1, 2, 3, 4, 7])
def test_lean_values_bit_equal_and_gradients_match_autograd(c: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(c)
    x = (torch.randn(3, c, 5, 6, generator=gen, dtype=torch.float64) * 4).to(dtype)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    y_old, grad_old = _grad(log1m_softmax, x, g)
    y_new, grad_new = _grad(log1m_softmax_lean, x, g)
    assert torch.equal(y_new, y_old)  # the same operators in the same order
    # (saturated logits: test_lean_matches_the_definition_at_extreme_logits, where the old and the lean float32
    # gradients are both off the definition by up to 1e-4 at logits +-1e4: ulp(1e4) is 1e-3 in float32)
    if dtype == torch.float64:
        torch.testing.assert_close(grad_new, grad_old, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(grad_new, grad_old, rtol=1e-5, atol=1e-6)


def test_lean_other_dims_and_bit_equal_backward_branches() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    for dim in (0, 2, -1):
        y_old, grad_old = _grad(lambda t, _, dim=dim: log1m_softmax(t, dim), x, g)
        y_new, grad_new = _grad(lambda t, _, dim=dim: log1m_softmax_lean(t, dim), x, g)
        assert torch.equal(y_new, y_old)
        torch.testing.assert_close(grad_new, grad_old, rtol=1e-12, atol=1e-12)
    # in place (plain backward) and out of place (create_graph): the same bits
    x[0, :, 0] = torch.tensor([1e4, -1e4, 0.0, 3.0, 1e4 - 1])
    with torch.no_grad():
        in_place = _log1m_softmax_vjp(x, g, 1)
    with torch.enable_grad():
        out_of_place = _log1m_softmax_vjp(x, g, 1)
    assert torch.equal(in_place, out_of_place)


def test_lean_gradcheck_and_double_backward_float64() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: log1m_softmax_lean(t, 1), (x,))
    assert torch.autograd.gradgradcheck(lambda t: log1m_softmax_lean(t, 1), (x,))
    # the index form combo uses: sum of log(1 - p_c) over the classes other than the pixel's own
    t = torch.randint(0, 4, (2, 1, 3), generator=gen)
    assert torch.autograd.gradcheck(lambda v: log1m_softmax_lean(v, 1).scatter(1, t, 0.0).sum(1), (x,))
    assert torch.autograd.gradgradcheck(lambda v: log1m_softmax_lean(v, 1).scatter(1, t, 0.0).sum(1), (x,))


def test_lean_non_finite_logits() -> None:
    g = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64).view(1, 3, 1)
    # NaN or +inf logits: NaN values and NaN gradients throughout the pixel
    for bad in (float("nan"), float("inf")):
        x = torch.tensor([bad, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1)
        _, grad = _grad(log1m_softmax_lean, x, g)
        assert torch.isnan(grad).all()
    # a -inf logit (a class masked off): p = 0 and its gradient 0, the others as without it (autograd through
    # logcumsumexp gave NaN at the -inf class)
    x = torch.tensor([float("-inf"), 0.0, 1.0], dtype=torch.float64).view(1, 3, 1)
    _, grad = _grad(log1m_softmax_lean, x, g)
    _, expected = _reference([-1e300, 0.0, 1.0], g.flatten().tolist())  # exp(-1e300) = 0 in 60 digits too
    torch.testing.assert_close(grad.flatten(), torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=0)


def test_lean_saves_only_the_logits() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 4096, generator=gen).requires_grad_(True)
    t = torch.randint(0, 4, (2, 4096), generator=gen)

    def others(fn):
        return lambda v, tt: fn(v, 1).scatter(1, tt.unsqueeze(1), 0.0).sum()

    old, new = (
        measure(others(log1m_softmax), x, t, num_classes=4),
        measure(others(log1m_softmax_lean), x, t, num_classes=4),
    )
    assert old.ratio("saved") >= 5.0  # prefix, suffix, their concatenations and logaddexp's inputs
    assert new.ratio("saved") == 0.0  # the logits (not counted) and the index (the target's own storage)
    assert new.ratio("peak") <= 5.5  # measured 5.25 (13.5 before): the forward's 3 + the backward's in-place 3
    assert new.ratio("peak") < old.ratio("peak") - 7


def _old_combo(monkeypatch: pytest.MonkeyPatch):
    """combo_loss with autograd through log1m_softmax (the implementation before the lean function)."""
    monkeypatch.setattr(compound, "log1m_softmax_lean", _numerics.log1m_softmax)


@pytest.mark.parametrize("target", ["index", "index-ignore", "onehot", "soft"])
def test_combo_loss_values_and_gradients_unchanged(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 5, 7, generator=gen, dtype=torch.float64) * 3
    x[0, :, 0, 0] = torch.tensor([1e4, -1e4, 0.0, -1e4], dtype=torch.float64)
    t = torch.randint(0, 4, (2, 5, 7), generator=gen)
    kw: dict[str, object] = {"mode": "multiclass", "alpha": 0.7, "beta": 0.3}
    if target == "index-ignore":
        t[0, 1:3] = 255
        kw["ignore_index"] = 255
    elif target == "onehot":
        t = torch.nn.functional.one_hot(t, 4).movedim(-1, 1).double()
    elif target == "soft":
        t = torch.softmax(torch.randn(2, 4, 5, 7, generator=gen, dtype=torch.float64), 1)

    def run():
        leaf = x.clone().requires_grad_(True)
        out = SF.combo_loss(leaf, t, **kw)  # type: ignore[arg-type]
        out.backward()
        return out.detach(), leaf.grad

    new_value, new_grad = run()
    with monkeypatch.context() as m:
        _old_combo(m)
        old_value, old_grad = run()
    assert torch.equal(new_value, old_value)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-12, atol=1e-14)
    assert torch.isfinite(new_grad).all()
    if target == "index-ignore":
        assert (new_grad[0, :, 1:3] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_combo_loss_low_precision_and_autocast_reduce_in_float32(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 3, 6, 6, generator=gen) * 3).to(dtype)
    t = torch.randint(0, 3, (2, 6, 6), generator=gen)
    ref_leaf = x.float().requires_grad_(True)
    ref = SF.combo_loss(ref_leaf, t, mode="multiclass")
    ref.backward()
    leaf = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = SF.combo_loss(leaf, t, mode="multiclass")
    out.backward()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(leaf.grad.float(), ref_leaf.grad.to(dtype).float(), rtol=0, atol=0)


def test_combo_loss_compiles_fullgraph_with_the_lean_function() -> None:
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 4, 5, generator=gen)
    t = torch.randint(0, 3, (2, 4, 5), generator=gen)

    def loss(v, tt):
        return SF.combo_loss(v, tt, mode="multiclass", ignore_index=2)

    xe = x.clone().requires_grad_(True)
    eager = loss(xe, t)
    eager.backward()
    xc = x.clone().requires_grad_(True)
    out = torch.compile(loss, backend="aot_eager", fullgraph=True)(xc, t)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-6, atol=1e-7)
