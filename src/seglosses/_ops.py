r"""Every custom kernel as a :mod:`torch.library` operator in the ``seglosses`` namespace.

This module is the only place that knows which device runs which kernel:

================================  =========================================  ======================================
operator                          CPU                                        CUDA
================================  =========================================  ======================================
``seglosses::softmax_index_fwd``  C++ kernels of :mod:`seglosses._native`    Triton (:mod:`seglosses._triton`):
``seglosses::softmax_index_bwd``  (``sl_softmax_index_*``, ``sl_focal_terms``) statistics + finalize, gradient
``seglosses::sigmoid_dense_fwd``  C++ (``sl_sigmoid_dense_*``,               Triton sigmoid statistics + finalize,
``seglosses::sigmoid_dense_bwd``  ``sl_sigmoid_focal_*``)                    gradient
``seglosses::lovasz_fwd``         C++ (``sl_lovasz_fwd``: keys, radix sort,  Triton (:mod:`seglosses._triton_lovasz`):
``seglosses::lovasz_bwd``         weights; ``sl_lovasz_softmax_bwd``)        keys, ``torch.sort``, counts, weights;
                                                                             gradient
``seglosses::whole_loss_fwd``     the statistics operators' kernels, the     Triton statistics + finalize + one
``seglosses::whole_loss_bwd``     formula in PyTorch (forced ``ops=True``)   formula program; gradient pass
``seglosses::distance_maps``      exact EDT of each mask (``sl_edt``, else   on the device: Triton min-plus passes
(:mod:`seglosses._ops_distance`)  scipy), signed or unsigned; no autograd    (:mod:`seglosses._edt_device`)
================================  =========================================  ======================================

Where a kernel does not take the tensors (no compiler, ``SEGLOSSES_NATIVE=0``, no triton, another device or dtype)
the operator runs the PyTorch twin of :mod:`seglosses._fused`, which computes the same numbers. Each forward
operator has a fake-tensor registration (shapes and dtypes only, for ``torch.compile`` and ``torch.export``) and an
autograd registration whose backward calls the matching ``*_bwd`` operator, so that a compiled training step keeps
the kernels (no graph break) and ``torch.library.opcheck`` passes on every operator.

The losses reach these operators only through :mod:`seglosses._dispatch` (under ``torch.compile``,
``torch.export`` and ``make_fx``, for fake tensors, on CUDA with Triton, or when forced: see
:func:`seglosses._native.intercepted`), which also decides every other path.

Statistics come back in the accumulation dtype: float32 (also for float16/bfloat16 logits) or float64.

The softmax forward also returns two per-pixel tensors for its backward, ``(N, M)`` on the CPU (the logsumexp and
``w f'(log p_t)``, so that the C++ backward needs no second reduction over the classes) and ``(N, 0)`` under
the Triton kernels (which recompute both from the logits: no extra memory of the input's size).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch
from torch import Tensor

from seglosses import _fused, _native, _triton

_ACC_HALF = (torch.float16, torch.bfloat16)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def triton_runs(device: torch.device) -> bool:
    """Whether the Triton kernels serve tensors on ``device`` (CUDA with triton importable)."""
    return device.type == "cuda" and _triton.available()


def native_runs(device: torch.device) -> bool:
    """Whether the C++ kernels can serve tensors on ``device`` (the CPU, kernels enabled and built)."""
    return device.type == "cpu" and _native.library() is not None


def use_ops(x: Tensor) -> bool:
    """Whether a loss on ``x`` should call the operators here (a kernel exists for its device), else its twin.

    Under ``torch.compile`` the operators are opaque to the tracer, so they are used whenever a kernel exists.
    """
    return triton_runs(x.device) or native_runs(x.device)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_input_device(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """A CUDA implementation run with the device of its first tensor argument current.

    Triton launches a kernel on the *current* CUDA device (and its current stream), not on the device of the
    tensors: logits on ``cuda:1`` while ``cuda:0`` is current (a model moved with ``.to("cuda:1")``, no
    ``torch.cuda.set_device``) would run on the wrong device ("Pointer argument cannot be accessed from Triton").
    Switching the current device is a host-side setting (no synchronisation); other devices run ``fn`` as it is.
    """

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        x = args[0]
        if not isinstance(x, Tensor) or x.device.type != "cuda":
            return fn(*args, **kwargs)
        with torch.cuda.device(x.device):
            return fn(*args, **kwargs)

    return run


def _aux_saved(device: torch.device) -> bool:
    """Whether the softmax forward keeps its per-pixel tensors for the backward (all but the Triton path)."""
    return not triton_runs(device)


# --------------------------------------------------------------------------------------------------------------
# softmax over the classes, class-index targets
# --------------------------------------------------------------------------------------------------------------


def _softmax_index_fwd_twin(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    need_stats: bool,
    need_pixel: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(TP, P, F, G, lse, w f')`` of softmax logits ``x`` ``(N, C, M)`` and indices ``t`` ``(N, M)`` (CPU)."""
    x = x.to(_acc(x.dtype)).contiguous()
    t = t.long().contiguous()
    valid = None if valid is None else valid.to(x.dtype).contiguous()
    wpix = None if wpix is None else wpix.to(x.dtype).contiguous()
    n, c, m = x.shape
    lse = torch.empty((n, m), dtype=x.dtype, device=x.device)
    logp_t = torch.empty((n, m), dtype=x.dtype, device=x.device) if need_pixel else None
    native = _fused._softmax_index_native(x, t, valid, lse, logp_t, need_stats) if x.device.type == "cpu" else None
    if native is not None:
        tp, psum, gsum = native
    else:
        tp, psum, gsum = _fused._softmax_index_torch(x, t, valid, lse, logp_t, need_stats)
    pix = torch.zeros((n,), dtype=x.dtype, device=x.device)
    deriv = x.new_empty((n, 0))
    if logp_t is not None:
        gam: float | Tensor = float(gamma) if gamma_pix is None else gamma_pix.to(x.dtype)
        terms = _fused._focal_terms_native(logp_t, wpix, gam) if x.device.type == "cpu" else None
        if terms is not None:
            pix, deriv = terms
        else:
            value, deriv = _fused._focal_terms(logp_t, gam)
            if wpix is not None:
                value = value * wpix
                deriv = deriv * wpix
            pix = value.sum(-1)
    return tp.clone(), psum.clone(), pix.clone(), gsum.clone(), lse, deriv.clone()


@torch.library.custom_op("seglosses::softmax_index_fwd", mutates_args=())
def softmax_index_fwd(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    need_stats: bool,
    need_pixel: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The operator (default: CPU and other devices): the C++ kernel where it applies, else the twin."""
    return _softmax_index_fwd_twin(x, t, valid, wpix, gamma, gamma_pix, need_stats, need_pixel)


@softmax_index_fwd.register_kernel("cuda")
@_on_input_device
def _softmax_index_fwd_cuda(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    need_stats: bool,
    need_pixel: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    if not triton_runs(x.device):
        out: tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor] = _softmax_index_fwd_twin(
            x, t, valid, wpix, gamma, gamma_pix, need_stats, need_pixel
        )
        return out
    n = x.shape[0]
    tp, psum, gsum, _, pix, _ = _triton.softmax_index_forward(
        x.contiguous(),
        t.contiguous(),
        None if valid is None else valid.contiguous(),
        None if wpix is None else wpix.contiguous(),
        float(gamma),
        None if gamma_pix is None else gamma_pix.contiguous(),
        need_pixel=need_pixel,
    )
    if not need_stats:
        tp, psum = torch.zeros_like(tp), torch.zeros_like(psum)
    if not need_pixel:
        pix = torch.zeros_like(pix)
    empty = x.new_empty((n, 0), dtype=tp.dtype)
    return tp, psum, pix, gsum, empty, empty.clone()


@softmax_index_fwd.register_fake
def _softmax_index_fwd_fake(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    need_stats: bool,
    need_pixel: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    n, c, m = x.shape
    acc = _acc(x.dtype)
    saved = _aux_saved(x.device)
    lse_m = m if saved else 0
    deriv_m = m if saved and need_pixel else 0
    return (
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n,), dtype=acc),
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n, lse_m), dtype=acc),
        x.new_empty((n, deriv_m), dtype=acc),
    )


def _softmax_index_bwd_twin(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    lse: Tensor,
    deriv: Tensor,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
) -> Tensor:
    """``dL/dx`` of :func:`softmax_index_fwd` from the incoming gradients of ``TP``, ``P`` and ``F`` (CPU)."""
    xa = x.to(_acc(x.dtype)).contiguous()
    t = t.long().contiguous()
    valid = None if valid is None else valid.to(xa.dtype).contiguous()
    if lse.shape[-1] != xa.shape[-1]:  # not saved by the forward: recompute
        lse = torch.logsumexp(xa, dim=1)
    k = None
    if need_pixel:
        if deriv.shape[-1] != xa.shape[-1]:
            logp_t = xa.gather(1, t.unsqueeze(1)).squeeze(1) - lse
            gam: float | Tensor = float(gamma) if gamma_pix is None else gamma_pix.to(xa.dtype)
            _, deriv = _fused._focal_terms(logp_t, gam)
            if wpix is not None:
                deriv = deriv * wpix.to(xa.dtype)
        k = (deriv * g_pix.to(xa.dtype).unsqueeze(1)).contiguous()
    g_tp = g_tp.to(xa.dtype).contiguous()
    g_psum = g_psum.to(xa.dtype).contiguous()
    grad = torch.empty_like(xa)
    if not need_stats and k is None:
        grad.zero_()
    elif xa.device.type != "cpu" or not _fused._softmax_index_grad_native(
        xa, t, valid, lse.contiguous(), k, g_tp, g_psum, need_stats, grad
    ):
        _fused._softmax_index_grad_torch(xa, t, valid, lse, k, g_tp, g_psum, need_stats, grad)
    return grad.to(x.dtype)


@torch.library.custom_op("seglosses::softmax_index_bwd", mutates_args=())
def softmax_index_bwd(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    lse: Tensor,
    deriv: Tensor,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
) -> Tensor:
    """The operator (default: CPU and other devices): the C++ kernel where it applies, else the twin."""
    return _softmax_index_bwd_twin(
        x, t, valid, wpix, gamma, gamma_pix, lse, deriv, g_tp, g_psum, g_pix, need_stats, need_pixel
    )


@softmax_index_bwd.register_kernel("cuda")
@_on_input_device
def _softmax_index_bwd_cuda(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    lse: Tensor,
    deriv: Tensor,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
) -> Tensor:
    if not triton_runs(x.device):
        out: Tensor = _softmax_index_bwd_twin(
            x, t, valid, wpix, gamma, gamma_pix, lse, deriv, g_tp, g_psum, g_pix, need_stats, need_pixel
        )
        return out
    return _triton.softmax_index_backward(
        x.contiguous(),
        t.contiguous(),
        None if valid is None else valid.contiguous(),
        None if wpix is None else wpix.contiguous(),
        float(gamma),
        None if gamma_pix is None else gamma_pix.contiguous(),
        g_tp.contiguous() if need_stats else None,
        g_psum.contiguous() if need_stats else None,
        g_pix.contiguous() if need_pixel else None,
    )


@softmax_index_bwd.register_fake
def _softmax_index_bwd_fake(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    lse: Tensor,
    deriv: Tensor,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _softmax_index_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, t, valid, wpix, gamma, gamma_pix, need_stats, need_pixel = inputs
    ctx.save_for_backward(x, t, valid, wpix, gamma_pix, output[4], output[5])
    ctx.gamma, ctx.need_stats, ctx.need_pixel = gamma, need_stats, need_pixel


def _softmax_index_backward(
    ctx: Any, g_tp: Tensor | None, g_psum: Tensor | None, g_pix: Tensor | None, *_: Tensor | None
) -> tuple[Tensor | None, ...]:
    x, t, valid, wpix, gamma_pix, lse, deriv = ctx.saved_tensors
    n, c, _m = x.shape
    acc = _acc(x.dtype)
    zeros_nc = x.new_zeros((n, c), dtype=acc)
    grad = softmax_index_bwd(
        x, t, valid, wpix, ctx.gamma, gamma_pix, lse, deriv,
        zeros_nc if g_tp is None else g_tp, zeros_nc if g_psum is None else g_psum,
        x.new_zeros((n,), dtype=acc) if g_pix is None else g_pix, ctx.need_stats, ctx.need_pixel,
    )  # fmt: skip
    return grad, None, None, None, None, None, None, None


softmax_index_fwd.register_autograd(_softmax_index_backward, setup_context=_softmax_index_setup)


def softmax_index(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    *,
    wpix: Tensor | None = None,
    gamma: float | Tensor = 0.0,
    need_stats: bool = True,
    need_pixel: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(TP, P, F, G)`` per image as :func:`seglosses._fused.softmax_index`, through the operators.

    Returned in ``x``'s dtype (float32 for float16/bfloat16 logits).
    """
    gamma_pix = gamma if isinstance(gamma, Tensor) else None
    gamma_f = 0.0 if isinstance(gamma, Tensor) else float(gamma)
    tp, psum, pix, gsum, _, _ = softmax_index_fwd(x, t, valid, wpix, gamma_f, gamma_pix, need_stats, need_pixel)
    return tp, psum, pix, gsum


# --------------------------------------------------------------------------------------------------------------
# sigmoid per channel, dense targets
# --------------------------------------------------------------------------------------------------------------


def _sigmoid_native_fwd(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """The C++ sigmoid statistics / focal sums, or None where the kernels do not take these tensors."""
    sfx = _native.suffix(x.dtype)
    if sfx is None or g.dtype != x.dtype or (valid is not None and valid.dtype != x.dtype):
        return None
    lib = _native.usable(x, g, valid)
    if lib is None:
        return None
    n, c, m = x.shape
    w1, w0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    threads = max(1, torch.get_num_threads())
    if need_stats or pos0:
        sums = torch.zeros((4, n, c), dtype=torch.float64)
        getattr(lib, "sl_sigmoid_dense_fwd" + sfx)(
            x.data_ptr(), g.data_ptr(), _native.ptr(valid), n * c, m, sums[0].data_ptr(), sums[1].data_ptr(),
            sums[2].data_ptr() if need_pixel else None, sums[3].data_ptr(), w1, w0, float(gamma), int(pos0), threads,
        )  # fmt: skip
        psum, tp, rows, gsum = sums.to(x.dtype).unbind(0)
        return tp.clone(), psum.clone(), gsum.clone(), rows.sum(1)
    rows = torch.zeros((n * c,), dtype=torch.float64)
    getattr(lib, "sl_sigmoid_focal_fwd" + sfx)(
        x.data_ptr(), g.data_ptr(), _native.ptr(valid), n * c, m, w1, w0, float(gamma), rows.data_ptr(), threads
    )
    zeros = x.new_zeros((n, c))
    gsum = (g if valid is None else g * valid).sum(-1)
    return zeros, zeros.clone(), gsum, rows.view(n, c).sum(1).to(x.dtype)


def _sigmoid_dense_fwd_twin(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(TP, P, G, F)`` of sigmoid logits ``x`` and a dense target ``g``, both ``(N, C, M)`` (CPU)."""
    x = x.to(_acc(x.dtype)).contiguous()
    g = g.to(x.dtype).contiguous()
    valid = None if valid is None else valid.to(x.dtype).expand_as(x).contiguous()
    native = _sigmoid_native_fwd(x, g, valid, alpha, gamma, need_stats, need_pixel, pos0)
    if native is not None:
        return native
    tp, psum, gsum, pix = _fused._sigmoid_dense_traced(x, g, valid, alpha, gamma, need_pixel, pos0)
    if not need_stats:
        tp, psum = torch.zeros_like(tp), torch.zeros_like(psum)
    return tp, psum, gsum, pix


@torch.library.custom_op("seglosses::sigmoid_dense_fwd", mutates_args=())
def sigmoid_dense_fwd(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The operator (default: CPU and other devices): the C++ kernel where it applies, else the twin."""
    return _sigmoid_dense_fwd_twin(x, g, valid, alpha, gamma, need_stats, need_pixel, pos0)


@sigmoid_dense_fwd.register_kernel("cuda")
@_on_input_device
def _sigmoid_dense_fwd_cuda(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not triton_runs(x.device):
        out: tuple[Tensor, Tensor, Tensor, Tensor] = _sigmoid_dense_fwd_twin(
            x, g, valid, alpha, gamma, need_stats, need_pixel, pos0
        )
        return out
    valid = None if valid is None else valid.expand_as(x).contiguous()
    tp, psum, gsum, _, pix, _ = _triton.sigmoid_forward(
        x.contiguous(), g.contiguous(), valid, alpha, gamma, need_pixel=need_pixel, pos0=pos0
    )
    if not need_stats:
        tp, psum = torch.zeros_like(tp), torch.zeros_like(psum)
    if not need_pixel:
        pix = torch.zeros_like(pix)
    return tp, psum, gsum, pix


@sigmoid_dense_fwd.register_fake
def _sigmoid_dense_fwd_fake(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, c, _ = x.shape
    acc = _acc(x.dtype)
    return (
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n, c), dtype=acc),
        x.new_empty((n,), dtype=acc),
    )


def _sigmoid_dense_bwd_twin(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> Tensor:
    """``dL/dx`` of :func:`sigmoid_dense_fwd`: ``v [p (1 - p) (dP + g dTP) + dF L'(x)]`` (CPU)."""
    xa = x.to(_acc(x.dtype)).contiguous()
    g = g.to(xa.dtype).contiguous()
    valid = None if valid is None else valid.to(xa.dtype).expand_as(xa).contiguous()
    n, c, m = xa.shape
    w1, w0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    g_tp = (g_tp if need_stats else torch.zeros_like(g_tp)).to(xa.dtype).contiguous()
    g_psum = (g_psum if need_stats else torch.zeros_like(g_psum)).to(xa.dtype).contiguous()
    sfx = _native.suffix(xa.dtype)
    lib = _native.usable(xa, g, valid) if sfx is not None else None
    grad = torch.empty_like(xa)
    if lib is not None:
        kscale = g_pix.to(xa.dtype).repeat_interleave(c).contiguous() if need_pixel else None
        getattr(lib, "sl_sigmoid_dense_bwd" + str(sfx))(
            xa.data_ptr(), g.data_ptr(), _native.ptr(valid), g_tp.data_ptr(), g_psum.data_ptr(),
            _native.ptr(kscale), w1, w0, float(gamma), int(pos0), n * c, m, grad.data_ptr(),
            max(1, torch.get_num_threads()),
        )  # fmt: skip
        return grad.to(x.dtype)
    prob = torch.sigmoid(xa)
    grad = prob * (1.0 - prob) * (g * g_tp.unsqueeze(-1) + g_psum.unsqueeze(-1))
    if need_pixel:
        _, d = _fused._sigmoid_focal_terms(xa, g, alpha, gamma, True, pos0)
        if d is not None:  # always, with need_grad=True
            grad = grad + d * g_pix.to(xa.dtype).view(n, 1, 1)
    if valid is not None:
        grad = grad * valid
    return grad.to(x.dtype)


@torch.library.custom_op("seglosses::sigmoid_dense_bwd", mutates_args=())
def sigmoid_dense_bwd(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> Tensor:
    """The operator (default: CPU and other devices): the C++ kernel where it applies, else the twin."""
    return _sigmoid_dense_bwd_twin(x, g, valid, alpha, gamma, g_tp, g_psum, g_pix, need_stats, need_pixel, pos0)


@sigmoid_dense_bwd.register_kernel("cuda")
@_on_input_device
def _sigmoid_dense_bwd_cuda(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> Tensor:
    if not triton_runs(x.device):
        out: Tensor = _sigmoid_dense_bwd_twin(
            x, g, valid, alpha, gamma, g_tp, g_psum, g_pix, need_stats, need_pixel, pos0
        )
        return out
    valid = None if valid is None else valid.expand_as(x).contiguous()
    return _triton.sigmoid_backward(
        x.contiguous(),
        g.contiguous(),
        valid,
        alpha,
        gamma,
        g_tp.contiguous() if need_stats else None,
        g_psum.contiguous() if need_stats else None,
        g_pix.contiguous() if need_pixel else None,
        pos0=pos0,
    )


@sigmoid_dense_bwd.register_fake
def _sigmoid_dense_bwd_fake(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    g_tp: Tensor,
    g_psum: Tensor,
    g_pix: Tensor,
    need_stats: bool,
    need_pixel: bool,
    pos0: bool,
) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _sigmoid_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, g, valid, alpha, gamma, need_stats, need_pixel, pos0 = inputs
    ctx.save_for_backward(x, g, valid)
    ctx.alpha, ctx.gamma, ctx.need_stats, ctx.need_pixel, ctx.pos0 = alpha, gamma, need_stats, need_pixel, pos0


def _sigmoid_backward(
    ctx: Any, g_tp: Tensor | None, g_psum: Tensor | None, _g_gsum: Tensor | None, g_pix: Tensor | None
) -> tuple[Tensor | None, ...]:
    x, g, valid = ctx.saved_tensors
    n, c, _m = x.shape
    acc = _acc(x.dtype)
    zeros_nc = x.new_zeros((n, c), dtype=acc)
    grad = sigmoid_dense_bwd(
        x, g, valid, ctx.alpha, ctx.gamma, zeros_nc if g_tp is None else g_tp,
        zeros_nc if g_psum is None else g_psum, x.new_zeros((n,), dtype=acc) if g_pix is None else g_pix,
        ctx.need_stats, ctx.need_pixel, ctx.pos0,
    )  # fmt: skip
    return grad, None, None, None, None, None, None, None


sigmoid_dense_fwd.register_autograd(_sigmoid_backward, setup_context=_sigmoid_setup)


# --------------------------------------------------------------------------------------------------------------
# Lovász rows (hinge, flat error, softmax)
# --------------------------------------------------------------------------------------------------------------


def _lovasz_native_fwd(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """The C++ kernel (float32 on the CPU): ``(value, positives, W, lse)``, or None where it does not apply."""
    if z.dtype != torch.float32 or z.device.type != "cpu" or z.numel() >= 2**31:
        return None
    if t is not None and t.dtype != torch.int64:
        return None
    lib = _native.usable(z, t, g, valid)
    if lib is None:
        return None
    n, c, m = z.shape
    rows = n * c if per_image else c
    length = m if per_image else n * m
    threads = max(1, torch.get_num_threads())
    value = torch.zeros((rows,), dtype=torch.float64)
    positives = torch.zeros((rows,), dtype=torch.float64)
    weights = torch.empty_like(z)  # first the sort keys, then W
    lse = torch.empty((n, m if t is not None else 0), dtype=z.dtype)
    # short rows: one per thread (a scratch row each); long rows: one at a time over all threads
    row_parallel = length < (1 << 20) and rows > 1 and threads > 1
    scratch = torch.empty((length * (threads if row_parallel else 1),), dtype=torch.int32)
    status = lib.sl_lovasz_fwd_f32(
        0 if t is not None else 1, int(hinge), z.data_ptr(), _native.ptr(lse) if t is not None else None,
        _native.ptr(t), _native.ptr(g), _native.ptr(valid), n, c, m, int(per_image), weights.data_ptr(),
        value.data_ptr(), positives.data_ptr(), scratch.data_ptr(), int(row_parallel), threads,
    )  # fmt: skip
    if status != 0:  # the loss guards the indices first
        raise RuntimeError(f"lovasz: the native kernel refused the input (status {status})")
    return value.to(z.dtype), positives.to(z.dtype), weights.view(-1), lse


def _lovasz_fwd_twin(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The C++ kernel where it applies, else the PyTorch twin (sort and weights in PyTorch)."""
    native = _lovasz_native_fwd(z, t, g, valid, hinge, per_image)
    if native is not None:
        return native
    from seglosses.functional.lovasz import lovasz_rows_twin

    value, positives, weights, lse = lovasz_rows_twin(z, t, g, valid, hinge=hinge, per_image=per_image)
    return value, positives, weights.view(-1), lse


@torch.library.custom_op("seglosses::lovasz_fwd", mutates_args=())
def lovasz_fwd(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The Lovász rows: ``(value, positives, W, lse)``.

    ``z`` ``(N, C, M)`` float32/float64: the logits with class indices ``t`` ``(N, M)`` (Lovász-softmax), or, with
    ``t`` None, a dense input (logits for the hinge, else probabilities) with the 0/1 target ``g`` ``(N, C, M)``.
    ``valid``: ``(N, M)`` (with ``t``) or ``(N, C, M)`` 0/1 mask of kept elements, or None. A row is a class of the
    batch (``(C,)``) or, with ``per_image``, of one image (``(N C,)``). ``value``: the Lovász extension
    :math:`\sum_k w_k e_{(k)}` of the row's errors sorted in decreasing order; ``positives``: the kept positives;
    ``W`` ``(N C M,)``: the derivative of the row's value with respect to ``z`` (softmax: to the probabilities),
    flat, in the layout of the kernel that wrote it (``(N, C, M)`` on the CPU, the rows' under Triton), read only by
    :func:`lovasz_bwd` on the same device;
    ``lse`` ``(N, M)``: the logsumexp of the softmax for its backward (``(N, 0)`` under Triton, which recomputes it).
    """
    return _lovasz_fwd_twin(z, t, g, valid, hinge, per_image)


@lovasz_fwd.register_kernel("cuda")
@_on_input_device
def _lovasz_fwd_cuda(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not triton_runs(z.device):
        return _lovasz_fwd_twin(z, t, g, valid, hinge, per_image)
    from seglosses import _triton_lovasz

    z = z.contiguous()
    value, positives, weights = _triton_lovasz.lovasz_forward(
        z,
        None if t is None else t.contiguous(),
        None if g is None else g.contiguous(),
        None if valid is None else valid.contiguous(),
        hinge=hinge,
        per_image=per_image,
    )
    return value, positives, weights, z.new_empty((z.shape[0], 0))


@lovasz_fwd.register_fake
def _lovasz_fwd_fake(
    z: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None, hinge: bool, per_image: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, c, m = z.shape
    rows = n * c if per_image else c
    lse_m = m if t is not None and _aux_saved(z.device) else 0
    return (
        z.new_empty((rows,)),
        z.new_empty((rows,)),
        z.new_empty((n * c * m,)),
        z.new_empty((n, lse_m)),
    )


def _lovasz_bwd_twin(
    z: Tensor, t: Tensor | None, weights: Tensor, lse: Tensor, scale: Tensor, per_image: bool
) -> Tensor:
    n, c, m = z.shape
    weights = weights.view(n, c, m)  # the CPU kernels' layout
    scale = scale.to(weights.dtype).contiguous()
    if t is None:
        s = scale.view(n, c, 1) if per_image else scale.view(1, c, 1)
        return (weights * s).to(z.dtype)
    zc = z.contiguous()
    if lse.shape[-1] == m and z.dtype == torch.float32 and z.device.type == "cpu":
        lib = _native.usable(zc, lse, weights)
        if lib is not None:
            grad = torch.empty_like(zc)
            lib.sl_lovasz_softmax_bwd_f32(
                zc.data_ptr(), lse.data_ptr(), weights.contiguous().data_ptr(), scale.data_ptr(), n, c, m,
                int(per_image), grad.data_ptr(), max(1, torch.get_num_threads()),
            )  # fmt: skip
            return grad
    if lse.shape[-1] != m:
        lse = torch.logsumexp(zc, dim=1)
    p = torch.exp(zc - lse.unsqueeze(1))
    a = weights * (scale.view(n, c, 1) if per_image else scale.view(1, c, 1))
    return (p * (a - (p * a).sum(1, keepdim=True))).to(z.dtype)


@torch.library.custom_op("seglosses::lovasz_bwd", mutates_args=())
def lovasz_bwd(z: Tensor, t: Tensor | None, weights: Tensor, lse: Tensor, scale: Tensor, per_image: bool) -> Tensor:
    """``dL/dz`` of :func:`lovasz_fwd` from the incoming gradient of the rows' values ``scale``."""
    return _lovasz_bwd_twin(z, t, weights, lse, scale, per_image)


@lovasz_bwd.register_kernel("cuda")
@_on_input_device
def _lovasz_bwd_cuda(
    z: Tensor, t: Tensor | None, weights: Tensor, lse: Tensor, scale: Tensor, per_image: bool
) -> Tensor:
    if not triton_runs(z.device):
        return _lovasz_bwd_twin(z, t, weights, lse, scale, per_image)
    from seglosses import _triton_lovasz

    return _triton_lovasz.lovasz_backward(
        z.contiguous(), None if t is None else t.contiguous(), weights.contiguous(), scale, per_image=per_image
    )


@lovasz_bwd.register_fake
def _lovasz_bwd_fake(
    z: Tensor, t: Tensor | None, weights: Tensor, lse: Tensor, scale: Tensor, per_image: bool
) -> Tensor:
    return torch.empty_like(z, memory_format=torch.contiguous_format)


def _lovasz_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    z, t, _g, _valid, _hinge, per_image = inputs
    _value, _positives, weights, lse = output
    ctx.save_for_backward(z, t, weights, lse)
    ctx.per_image = per_image
    ctx.set_materialize_grads(False)  # only the values carry a gradient


def _lovasz_backward(
    ctx: Any, g_value: Tensor | None, _g_pos: Tensor | None, _g_w: Tensor | None, _g_lse: Tensor | None
) -> tuple[Tensor | None, ...]:
    z, t, weights, lse = ctx.saved_tensors
    if g_value is None:
        return None, None, None, None, None, None
    grad = lovasz_bwd(z, t, weights, lse, g_value, ctx.per_image)
    return grad, None, None, None, None, None


lovasz_fwd.register_autograd(_lovasz_backward, setup_context=_lovasz_setup)


# --------------------------------------------------------------------------------------------------------------
# a fused loss whole (ratio region part + pixel part): statistics, formula and reduction in one operator
# --------------------------------------------------------------------------------------------------------------


def _whole_formula_twin(
    tp: Tensor,
    psum: Tensor,
    gsum: Tensor,
    pix: Tensor,
    kept: Tensor,
    weights: Tensor | None,
    region: list[float],
    term: int,
    lam_p: float,
    skip_first: bool,
    per_image: bool,
    mean: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The formula of :mod:`seglosses._triton_whole` in PyTorch: ``(loss, dL/dTP, dL/dP, dL/dF)``.

    The derivatives are written out (an operator's implementation runs below autograd): with ``num = a TP + s``
    and ``den = e TP + c1 P + c2 G + s``, ``dr/dTP = (a den - e num) / den^2``, ``dr/dP = -c1 num / den^2`` (0 where
    ``0 / 0`` is read as 1); ``dl/dr`` is -1, ``-1/r`` or ``-gamma (1 - r)^(gamma - 1)`` (0 at ``r = 1``; the exponent
    0 gives the constant 1 and 0); NaN statistics (poisoned by a value-check counter) stay NaN.
    """
    lam_r, a, e, c1, c2, smooth, gamma, gamma0 = region[:8]
    two_class = _two_class(region)
    n, c = tp.shape
    loss = torch.zeros((), dtype=tp.dtype, device=tp.device)
    ctp, cp = tp.new_empty((0,)), tp.new_empty((0,))  # two tensors: outputs may not alias
    if lam_r != 0 and term >= 3:
        loss, ctp, cp = _gdl_twin(tp, psum, gsum, kept, smooth, term == 4, skip_first, per_image, mean, lam_r)
    elif lam_r != 0:
        n_out, c_out = n, c
        if two_class:  # one channel as the pair [background, foreground]
            k = kept.unsqueeze(-1)
            tp, psum, gsum = (
                torch.cat([(k - gsum) - (psum - tp), tp], -1),  # TP_0 as _stats.two_class_stats
                torch.cat([k - psum, psum], -1),
                torch.cat([k - gsum, gsum], -1),
            )
            c = 2
        big_t, big_p, big_g = (tp, psum, gsum) if per_image else (tp.sum(0), psum.sum(0), gsum.sum(0))
        num = a * big_t + smooth
        den = e * big_t + c1 * big_p + c2 * big_g + smooth
        zero = den == 0 if smooth == 0 else torch.zeros_like(den, dtype=torch.bool)
        den_s = torch.where(zero, torch.ones_like(den), den)
        ratio = torch.where(zero, torch.ones_like(num), num / den_s)
        dr_tp = torch.where(zero, torch.zeros_like(num), (a * den_s - e * num) / (den_s * den_s))
        dr_p = torch.where(zero, torch.zeros_like(num), -c1 * num / (den_s * den_s))
        if term == 0:
            val, dval = 1 - ratio, -torch.ones_like(ratio)
        elif term == 1:
            val, dval = -torch.log(ratio), -1 / ratio
        else:  # class 0 with its own exponent; an exponent of 1 is the plain 1 - r
            base = 1 - ratio
            gam = torch.full((c,), gamma, dtype=tp.dtype, device=tp.device)
            gam[0] = gamma0
            pos = base > 0
            log_base = torch.log(torch.where(pos, base, torch.ones_like(base)))
            keep_nan = torch.where(torch.isnan(base), base, torch.zeros_like(base))  # poisoned statistics stay NaN
            val = torch.where(pos, torch.exp(gam * log_base), keep_nan)
            dval = torch.where(pos, -gam * torch.exp((gam - 1) * log_base), keep_nan)
            val = torch.where(gam == 0, 1 + keep_nan, val)  # 0^0 = 1 (safe_pow's exponent 0), no gradient
            dval = torch.where(gam == 0, keep_nan, dval)
            val = torch.where(gam == 1, base, val)
            dval = torch.where(gam == 1, -torch.ones_like(dval), dval)
        w = torch.ones(c, dtype=tp.dtype, device=tp.device) if weights is None else weights.to(tp.dtype).clone()
        if skip_first:
            w[0] = 0.0
        norm = (w.sum() * (n if per_image else 1)) if mean else torch.ones((), dtype=tp.dtype, device=tp.device)
        w = w * lam_r / norm
        loss = loss + (val * w).sum()
        dtp = (w * dval * dr_tp).expand(n, c)
        dp = (w * dval * dr_p).expand(n, c)
        if two_class:  # the background's coefficients flow back to the foreground's TP (+1) and P (-1, -1)
            dtp, dp = dtp[:, 1:] + dtp[:, :1], dp[:, 1:] - dtp[:, :1] - dp[:, :1]
        ctp = dtp.reshape(n_out, c_out).contiguous()
        cp = dp.reshape(n_out, c_out).contiguous()
    cpix = tp.new_empty((0,))
    if lam_p != 0:
        total = kept.sum()
        if mean:
            coef = torch.where(total > 0, lam_p / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
        else:
            coef = torch.full((), lam_p, dtype=tp.dtype, device=tp.device)
        loss = loss + torch.where(coef != 0, pix.sum() * coef, torch.zeros_like(coef))
        cpix = coef.expand(n).contiguous()
    return loss, ctp, cp, cpix


def _gdl_twin(
    tp: Tensor,
    psum: Tensor,
    gsum: Tensor,
    kept: Tensor,
    smooth: float,
    two_class: bool,
    skip_first: bool,
    per_image: bool,
    mean: bool,
    lam_r: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Generalized Dice and its coefficients (weights ``(G_min / G_c)^2`` held constant), as the Triton kernel."""
    n = tp.shape[0]
    if per_image:
        big_t, big_p, big_g, big_k = tp, psum, gsum, kept
    else:
        big_t, big_p, big_g = tp.sum(0, keepdim=True), psum.sum(0, keepdim=True), gsum.sum(0, keepdim=True)
        big_k = kept.sum(0, keepdim=True)
    if two_class:  # the pair [background, foreground] from one channel
        k = big_k.unsqueeze(-1)
        big_t = torch.cat([k - big_p - big_g + big_t, big_t], -1)
        big_p, big_g = torch.cat([k - big_p, big_p], -1), torch.cat([k - big_g, big_g], -1)
    sel = torch.ones(big_t.shape[-1], dtype=torch.bool, device=tp.device)
    if skip_first:
        sel[0] = False
    present = (big_g > 0) & sel
    # 1 / G_c^2 scaled by G_min^2 (the smallest present G): (G_min / G_c)^2 in (0, 1], the same weights once
    # normalised; 1 / G_c^2 itself overflows for a soft target's class of tiny mass (inf / inf = NaN)
    g_min = torch.where(present, big_g, torch.full_like(big_g, math.inf)).amin(-1, keepdim=True)
    inv = torch.where(present, g_min / torch.where(present, big_g, torch.ones_like(big_g)), 0.0).square()
    largest = inv.amax(-1, keepdim=True)
    inv = torch.where(present, inv, largest)
    inv = torch.where(largest > 0, inv, torch.ones_like(inv))
    inv = torch.where(sel, inv, torch.zeros_like(inv))
    w = inv / inv.sum(-1, keepdim=True)
    num = 2 * (w * big_t).sum(-1, keepdim=True) + smooth
    den = (w * (big_p + big_g)).sum(-1, keepdim=True) + smooth
    zero = den == 0 if smooth == 0 else torch.zeros_like(den, dtype=torch.bool)
    den_s = torch.where(zero, torch.ones_like(den), den)
    score = torch.where(zero, torch.ones_like(num), num / den_s)
    dtp = torch.where(zero, torch.zeros_like(w), -2 * w / den_s)
    dp = torch.where(zero, torch.zeros_like(w), num * w / (den_s * den_s))
    if two_class:
        dtp, dp = (dtp[..., 1] + dtp[..., 0]).unsqueeze(-1), (dp[..., 1] - dtp[..., 0] - dp[..., 0]).unsqueeze(-1)
    scale = lam_r / n if (per_image and mean) else lam_r
    loss = (1 - score).sum() * scale
    return loss, (dtp * scale).expand_as(tp).contiguous(), (dp * scale).expand_as(tp).contiguous()


def _kept_per_image(x: Tensor, t: Tensor | None, valid: Tensor | None) -> Tensor:
    """Kept pixels (softmax) or elements (sigmoid) per image, ``(N,)``, as the statistics pass counts them."""
    n, c, m = x.shape
    acc = _acc(x.dtype)
    if valid is None:
        return torch.full((n,), float(m if t is not None else c * m), dtype=acc, device=x.device)
    return valid.to(acc).reshape(n, -1).sum(-1) * (1 if t is not None or valid.shape[1] == c else c)


def _alpha_arg(alpha: float) -> float | None:
    return None if math.isnan(alpha) else alpha


def _split_arg(pixel: list[float]) -> tuple[float, float, float, float] | None:
    """``(w_0, w_other, gamma_0, gamma_other)`` of ``pixel[3:7]``, or None (NaN: no background split)."""
    if len(pixel) < 7 or math.isnan(pixel[3]):
        return None
    return pixel[3], pixel[4], pixel[5], pixel[6]


def _two_class(region: list[float]) -> bool:
    """Whether the ratio part reads one channel as the pair [background, foreground] (``region[8]``)."""
    return len(region) > 8 and region[8] != 0


def _smoothing(pixel: list[float]) -> float:
    """The pixel term's label smoothing ``eps`` (``pixel[9]``; 0: none)."""
    return float(pixel[9]) if len(pixel) > 9 else 0.0


def _smooth_sum(x: Tensor, valid: Tensor | None, class_w: Tensor | None) -> Tensor:
    """``sum_m v_m sum_c u_c (-log p_mc)`` per image, ``(N,)`` (softmax; ``u``: ``class_w`` or 1; CPU)."""
    logp = torch.log_softmax(x, 1)
    u = torch.ones(x.shape[1], dtype=x.dtype, device=x.device) if class_w is None else class_w.to(x.dtype)
    per_pixel = -(logp * u.view(1, -1, 1)).sum(1)
    return (per_pixel if valid is None else per_pixel * valid.to(x.dtype)).sum(-1)


def _smooth_grad(x: Tensor, valid: Tensor | None, class_w: Tensor | None, g_pix: Tensor, eps: float) -> Tensor:
    """``dL/dx`` of ``g_pix eps / C`` times :func:`_smooth_sum`: ``g_pix v eps / C (U p_c - u_c)``, ``U = sum u``."""
    c = x.shape[1]
    p = torch.softmax(x, 1)
    u = torch.ones(c, dtype=x.dtype, device=x.device) if class_w is None else class_w.to(x.dtype)
    v = torch.ones_like(p[:, :1]) if valid is None else valid.to(x.dtype).unsqueeze(1)
    return (g_pix * eps / c).view(-1, 1, 1) * v * (u.sum() * p - u.view(1, -1, 1))


def _squared(region: list[float]) -> bool:
    """Whether ``P`` and ``G`` are the squared sums ``sum v p^2``, ``sum v g^2`` (``region[9]``, Milletari's Dice)."""
    return len(region) > 9 and region[9] != 0


def _squares(x: Tensor, t: Tensor | None, g: Tensor | None, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(sum v p^2, sum v g^2)`` per image and class, ``(N, C)`` each (the squared Dice's ``P`` and ``G``; CPU)."""
    if t is not None:
        from seglosses._stats import class_sums  # one slot per class and span: exact counts past 2^24 pixels

        p = torch.softmax(x, 1)
        v = torch.ones_like(p[:, :1]) if valid is None else valid.to(x.dtype).unsqueeze(1)
        g2 = class_sums(t, v.squeeze(1).expand_as(t).contiguous(), int(x.shape[1]))
        return (p * p * v).sum(-1), g2
    assert g is not None
    p = torch.sigmoid(x)
    v = torch.ones_like(p) if valid is None else valid.to(x.dtype).expand_as(p)
    return (p * p * v).sum(-1), (g * g * v).sum(-1)


def _squared_grad(x: Tensor, t: Tensor | None, valid: Tensor | None, g_p2: Tensor) -> Tensor:
    """``dL/dx`` through ``sum v p^2`` alone, from its incoming gradient ``g_p2`` ``(N, C)`` (CPU)."""
    if t is not None:
        p = torch.softmax(x, 1)
        v = torch.ones_like(p[:, :1]) if valid is None else valid.to(x.dtype).unsqueeze(1)
        a = 2.0 * g_p2.unsqueeze(-1) * p * p * v  # dL/dp_c p_c
        return a - p * a.sum(1, keepdim=True)
    p = torch.sigmoid(x)
    v = torch.ones_like(p) if valid is None else valid.to(x.dtype).expand_as(p)
    return 2.0 * g_p2.unsqueeze(-1) * p * p * (1.0 - p) * v


def _pos0(pixel: list[float]) -> bool:
    """Whether the sigmoid pixel term's positive part has no focal modulation (``pixel[8]``, asymmetric)."""
    return len(pixel) > 8 and pixel[8] != 0


def _kept_weighted(pixel: list[float]) -> bool:
    """Whether the pixel mean divides by the summed pixel weight (``pixel[7]``), not the kept count."""
    return len(pixel) > 7 and pixel[7] != 0


def _channel_mask(x: Tensor, valid: Tensor | None, class_w: Tensor) -> Tensor:
    """``(N, C, M)``: the kept mask (or ones) times each channel's weight."""
    w = class_w.to(_acc(x.dtype)).view(1, -1, 1)
    base = torch.ones_like(x, dtype=w.dtype) if valid is None else valid.to(w.dtype).expand_as(x)
    return (base * w).contiguous()


def _class_map(t: Tensor, valid: Tensor | None, class_w: Tensor, dtype: torch.dtype) -> Tensor:
    """The per-pixel weight ``w[t]`` (times the kept mask) of a weight per class, ``(N, M)``."""
    w = class_w.to(dtype)[t.clamp(0, class_w.numel() - 1)]
    return w if valid is None else w * valid.to(dtype)


def _split_maps(
    t: Tensor, valid: Tensor | None, split: tuple[float, float, float, float], dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The per-pixel weight (times the kept mask) and exponent maps of a background split, ``(N, M)`` each."""
    background = t == 0  # the maps built in the accumulation dtype (a Python float in torch.where would be float32)
    w = torch.full(t.shape, split[1], dtype=dtype, device=t.device).masked_fill_(background, split[0])
    gam = torch.full(t.shape, split[3], dtype=dtype, device=t.device).masked_fill_(background, split[2])
    return (w if valid is None else w * valid.to(dtype)), gam


def _ignored(
    t: Tensor | None,
    g: Tensor | None,
    ignore_index: int,
    wpix: Tensor | None,
    class_w: Tensor | None,
    pixel: list[float],
    dtype: torch.dtype,
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor | None]:
    """A raw target with ``ignore_index`` (class indices ``t`` or dense ``g``): ``(t, g, kept mask, pixel weight)``.

    Ignored elements of the target become 0; the kept mask is ``(N, M)`` for indices, ``g``'s shape otherwise. For
    indices the pixel weight becomes the kept mask where none is given (the kernels' rule: the kept pixels count).
    """
    raw = t if t is not None else g
    assert raw is not None
    keep = raw != ignore_index
    valid = keep.to(dtype)
    clean = torch.where(keep, raw, torch.zeros_like(raw))
    if t is None:
        return None, clean, valid, wpix
    if wpix is None and class_w is None and _split_arg(pixel) is None:
        wpix = valid
    return clean, g, valid, wpix


def _whole_fwd_twin(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    weights: Tensor | None,
    region: list[float],
    term: int,
    pixel: list[float],
    skip_first: bool,
    per_image: bool,
    mean: bool,
    ignore_index: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The statistics by the operators' CPU implementations (C++ where it applies), the formula in PyTorch.

    float16/bfloat16 logits are upcast here, class indices made int64 and dense targets the logits' dtype (the Triton
    kernels read all of them as they are).
    """
    x = x.to(_acc(x.dtype))
    t = None if t is None else t.long()
    g = None if g is None else g.to(x.dtype)
    if ignore_index is not None:
        t, g, valid, wpix = _ignored(t, g, ignore_index, wpix, class_w, pixel, x.dtype)
    lam_p, gamma_p, alpha = pixel[:3]
    need_pixel = lam_p != 0
    split = _split_arg(pixel)
    if split is not None and t is not None:
        wpix, gamma_pix = _split_maps(t, valid, split, _acc(x.dtype))
    if class_w is not None and t is not None:
        wpix = _class_map(t, valid, class_w, _acc(x.dtype))
    eps = _smoothing(pixel)
    if t is not None:
        tp, psum, pix, gsum, _lse, _deriv = _softmax_index_fwd_twin(
            x, t, valid, wpix, gamma_p, gamma_pix, True, need_pixel
        )
        if need_pixel and eps != 0:  # label smoothing: (1 - eps) of the term plus eps / C sum_c u_c (-log p_c)
            pix = (1 - eps) * pix + eps / x.shape[1] * _smooth_sum(x, valid, class_w)
    else:
        assert g is not None
        alone = class_w is not None or eps != 0  # the pixel term on its own mask / target
        tp, psum, gsum, pix = _sigmoid_dense_fwd_twin(
            x, g, valid, _alpha_arg(alpha), gamma_p, True, need_pixel and not alone, _pos0(pixel)
        )
        if need_pixel and alone:  # per channel: its kept mask times the weight; smoothed: (1 - eps) g + eps / 2
            mask = valid if class_w is None else _channel_mask(x, valid, class_w)
            g_pix = g if eps == 0 else g * (1 - eps) + 0.5 * eps
            _, _, _, pix = _sigmoid_dense_fwd_twin(
                x, g_pix, mask, _alpha_arg(alpha), gamma_p, False, True, _pos0(pixel)
            )
    if _squared(region):
        psum, gsum = _squares(x, t, g, valid)
    kept = _kept_per_image(x, t, valid)
    if _kept_weighted(pixel) and wpix is not None:
        kept = wpix.to(kept.dtype).sum(-1)
    return _whole_formula_twin(tp, psum, gsum, pix, kept, weights, region, term, lam_p, skip_first, per_image, mean)


@torch.library.custom_op("seglosses::whole_loss_fwd", mutates_args=())
def whole_loss_fwd(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    weights: Tensor | None,
    region: list[float],
    term: int,
    pixel: list[float],
    skip_first: bool,
    per_image: bool,
    mean: bool,
    ignore_index: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""A fused loss whole: ``(loss, dL/dTP, dL/dP, dL/dF)``, the coefficients saved for the backward.

    ``x`` ``(N, C, M)`` logits with class indices ``t`` ``(N, M)`` (softmax) or the dense target ``g``
    ``(N, C, M)`` (sigmoid); ``valid`` as for the statistics operators; ``wpix`` ``(N, M)`` the softmax pixel term's
    per-pixel weight and ``gamma_pix`` ``(N, M)`` its per-pixel focal exponent (or None).
    ``L = lambda_r R + lambda_p F``: the region part ``region = [lambda_r, a, e, c1, c2, smooth, gamma, gamma_0]``
    (``gamma_0`` the exponent of class 0) with ``term`` (0: ``1 - r``, 1: ``-log r``, 2: ``(1 - r)^gamma``),
    :math:`r = (a TP + s) / (e TP + c_1 P + c_2 G + s)` per class (and image with ``per_image``), class ``weights``
    ``(C,)`` or None, ``skip_first`` leaving class 0 out; the pixel part ``pixel = [lambda_p, gamma, alpha]`` (the
    focal exponent, 0 for cross entropy; the sigmoid's alpha, NaN for none; optionally ``w_0, w_other, gamma_0,
    gamma_other``, the softmax term's weight and exponent by background / other class, taken from the target in the
    kernels; and ``kept_w``, 1 to divide by the summed pixel weight), its sums over the kept pixels. ``class_w``
    ``(C,)``: the softmax pixel term's weight per class (read at each pixel's class in the kernels).
    ``mean``: means (``sum w l / sum w`` and the mean over images; ``F`` over the kept pixels), else sums. A part
    with weight 0 is left out and its coefficients are ``(0,)``. CPU: the statistics operators' kernels and the
    formula in PyTorch; CUDA: three Triton launches (statistics, finalize, :mod:`seglosses._triton_whole`).
    """
    return _whole_fwd_twin(
        x, t, g, valid, wpix, gamma_pix, class_w, weights, region, term, pixel, skip_first, per_image, mean,
        ignore_index,
    )  # fmt: skip


@whole_loss_fwd.register_kernel("cuda")
@_on_input_device
def _whole_loss_fwd_cuda(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    weights: Tensor | None,
    region: list[float],
    term: int,
    pixel: list[float],
    skip_first: bool,
    per_image: bool,
    mean: bool,
    ignore_index: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not triton_runs(x.device):
        return _whole_fwd_twin(
            x, t, g, valid, wpix, gamma_pix, class_w, weights, region, term, pixel, skip_first, per_image, mean,
            ignore_index,
        )  # fmt: skip
    from seglosses import _triton_whole

    lam_p, gamma_p, alpha = pixel[:3]
    x = x.contiguous()
    valid_c = None if valid is None else valid.contiguous()
    if t is not None:
        tp, psum, gsum, _, pix, kept = _triton.softmax_index_forward(
            x, t.contiguous(), valid_c, None if wpix is None else wpix.contiguous(), gamma_p,
            None if gamma_pix is None else gamma_pix.contiguous(), need_pixel=lam_p != 0, bg_split=_split_arg(pixel),
            class_w=None if class_w is None else class_w.contiguous(), kept_w=_kept_weighted(pixel),
            squared=_squared(region), ignore=ignore_index, label_smoothing=_smoothing(pixel),
        )  # fmt: skip
    else:
        assert g is not None
        tp, psum, gsum, _, pix, kept = _triton.sigmoid_forward(
            x,
            g.contiguous(),
            valid_c,
            _alpha_arg(alpha),
            gamma_p,
            need_pixel=lam_p != 0,
            pos0=_pos0(pixel),
            class_w=None if class_w is None else class_w.contiguous(),
            squared=_squared(region),
            ignore=ignore_index,
            label_smoothing=_smoothing(pixel),
        )
    lam_r, a, e, c1, c2, smooth, gamma, gamma0 = region[:8]
    return _triton_whole.whole_loss(
        tp, psum, gsum, pix, kept, weights, (lam_r, a, e, c1, c2, smooth, gamma, gamma0), term, lam_p,
        skip_first=skip_first, per_image=per_image, mean=mean, two_class=_two_class(region),
    )  # fmt: skip


@whole_loss_fwd.register_fake
def _whole_loss_fwd_fake(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    weights: Tensor | None,
    region: list[float],
    term: int,
    pixel: list[float],
    skip_first: bool,
    per_image: bool,
    mean: bool,
    ignore_index: int | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, c, _m = x.shape
    acc = _acc(x.dtype)
    stats = (n, c) if region[0] != 0 else (0,)
    return (
        x.new_empty((), dtype=acc),
        x.new_empty(stats, dtype=acc),
        x.new_empty(stats, dtype=acc),
        x.new_empty((n,) if pixel[0] != 0 else (0,), dtype=acc),
    )


def _whole_bwd_twin(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    ctp: Tensor,
    cp: Tensor,
    cpix: Tensor,
    pixel: list[float],
    scale: Tensor,
    squared: bool,
    ignore_index: int | None,
) -> Tensor:
    if x.dtype != _acc(x.dtype):  # float16/bfloat16 logits: computed in float32, the gradient in their dtype
        grad = _whole_bwd_twin(
            x.float(), t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix, pixel, scale, squared, ignore_index
        )
        return grad.to(x.dtype)
    t = None if t is None else t.long()
    g = None if g is None else g.to(x.dtype)
    if ignore_index is not None:
        t, g, valid, wpix = _ignored(t, g, ignore_index, wpix, class_w, pixel, x.dtype)
    if squared and ctp.numel() > 0:  # the P coefficient is that of sum v p^2: its own gradient, the rest as usual
        rest = _whole_bwd_twin(
            x, t, g, valid, wpix, gamma_pix, class_w, ctp, torch.zeros_like(cp), cpix, pixel, scale, False, None
        )
        return rest + _squared_grad(x, t, valid, cp * scale.to(cp.dtype))
    n, c, _m = x.shape
    acc = _acc(x.dtype)
    s = scale.to(acc)
    lam_p, gamma_p, alpha = pixel[:3]
    split = _split_arg(pixel)
    if split is not None and t is not None:
        wpix, gamma_pix = _split_maps(t, valid, split, _acc(x.dtype))
    if class_w is not None and t is not None:
        wpix = _class_map(t, valid, class_w, _acc(x.dtype))
    need_stats = ctp.numel() > 0
    g_tp = ctp * s if need_stats else x.new_zeros((n, c), dtype=acc)
    g_ps = cp * s if need_stats else x.new_zeros((n, c), dtype=acc)
    g_pix = cpix * s if lam_p != 0 else x.new_zeros((n,), dtype=acc)
    eps = _smoothing(pixel)
    if t is not None:
        empty = x.new_empty((n, 0), dtype=acc)
        grad = _softmax_index_bwd_twin(
            x, t, valid, wpix, gamma_p, gamma_pix, empty, empty, g_tp, g_ps, (1 - eps) * g_pix, need_stats, lam_p != 0
        )
        if lam_p != 0 and eps != 0:  # the smoothing term's own gradient
            grad = grad + _smooth_grad(x, valid, class_w, g_pix, eps)
        return grad
    assert g is not None
    if (class_w is None and eps == 0) or lam_p == 0:
        return _sigmoid_dense_bwd_twin(
            x, g, valid, _alpha_arg(alpha), gamma_p, g_tp, g_ps, g_pix, need_stats, lam_p != 0, _pos0(pixel)
        )
    # the pixel term on its own mask (weighted per channel) and target (smoothed), the statistics' on the plain ones
    mask = valid if class_w is None else _channel_mask(x, valid, class_w)
    g_smooth = g if eps == 0 else g * (1 - eps) + 0.5 * eps
    grad = _sigmoid_dense_bwd_twin(
        x, g_smooth, mask, _alpha_arg(alpha), gamma_p, g_tp, g_ps, g_pix, False, True, _pos0(pixel)
    )
    if need_stats:
        grad = grad + _sigmoid_dense_bwd_twin(
            x, g, valid, _alpha_arg(alpha), gamma_p, g_tp, g_ps, g_pix, True, False, _pos0(pixel)
        )
    return grad


@torch.library.custom_op("seglosses::whole_loss_bwd", mutates_args=())
def whole_loss_bwd(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    ctp: Tensor,
    cp: Tensor,
    cpix: Tensor,
    pixel: list[float],
    scale: Tensor,
    squared: bool,
    ignore_index: int | None,
) -> Tensor:
    """``dL/dx`` of :func:`whole_loss_fwd`: the gradient pass with the coefficients times ``scale``.

    ``squared``: the P coefficient is that of ``sum v p^2``.
    """
    return _whole_bwd_twin(x, t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix, pixel, scale, squared, ignore_index)


@whole_loss_bwd.register_kernel("cuda")
@_on_input_device
def _whole_loss_bwd_cuda(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    ctp: Tensor,
    cp: Tensor,
    cpix: Tensor,
    pixel: list[float],
    scale: Tensor,
    squared: bool,
    ignore_index: int | None,
) -> Tensor:
    if not triton_runs(x.device):
        return _whole_bwd_twin(
            x, t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix, pixel, scale, squared, ignore_index
        )
    lam_p, gamma_p, alpha = pixel[:3]
    valid_c = None if valid is None else valid.contiguous()
    g_tp = ctp if ctp.numel() > 0 else None
    g_ps = cp if cp.numel() > 0 else None
    g_pix = cpix if lam_p != 0 else None
    if t is not None:
        return _triton.softmax_index_backward(
            x.contiguous(), t.contiguous(), valid_c, None if wpix is None else wpix.contiguous(), gamma_p,
            None if gamma_pix is None else gamma_pix.contiguous(), g_tp, g_ps, g_pix, scale=scale,
            bg_split=_split_arg(pixel), class_w=None if class_w is None else class_w.contiguous(), squared=squared,
            ignore=ignore_index, label_smoothing=_smoothing(pixel),
        )  # fmt: skip
    assert g is not None
    return _triton.sigmoid_backward(
        x.contiguous(), g.contiguous(), valid_c, _alpha_arg(alpha), gamma_p, g_tp, g_ps, g_pix, scale=scale,
        pos0=_pos0(pixel), class_w=None if class_w is None else class_w.contiguous(), squared=squared,
        ignore=ignore_index, label_smoothing=_smoothing(pixel),
    )  # fmt: skip


@whole_loss_bwd.register_fake
def _whole_loss_bwd_fake(
    x: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma_pix: Tensor | None,
    class_w: Tensor | None,
    ctp: Tensor,
    cp: Tensor,
    cpix: Tensor,
    pixel: list[float],
    scale: Tensor,
    squared: bool,
    ignore_index: int | None,
) -> Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _whole_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, t, g, valid, wpix, gamma_pix, class_w, _weights, _region, _term, pixel, *_ = inputs
    _loss, ctp, cp, cpix = output
    ctx.save_for_backward(x, t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix)
    ctx.pixel = pixel
    ctx.squared = _squared(inputs[8])
    ctx.ignore_index = inputs[14]
    ctx.set_materialize_grads(False)  # the coefficients' gradients stay None (no zero tensors, no launches)


def _whole_backward(ctx: Any, g_loss: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, ...]:
    x, t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix = ctx.saved_tensors
    if g_loss is None:
        return (None,) * 15
    grad = whole_loss_bwd(
        x, t, g, valid, wpix, gamma_pix, class_w, ctp, cp, cpix, ctx.pixel, g_loss, ctx.squared, ctx.ignore_index
    )
    return (grad,) + (None,) * 14


whole_loss_fwd.register_autograd(_whole_backward, setup_context=_whole_setup)
