r"""Fused softmax paths for multiclass logits with class-index targets (the common case, made cheap).

One :class:`torch.autograd.Function` computes, from logits ``x`` ``(N, C, M)`` and indices ``t`` ``(N, M)``:

- the soft statistics ``TP_c = sum_m v_m p_{c,m} [t_m = c]`` and ``P_c = sum_m v_m p_{c,m}`` per image, and
- a per-pixel term summed per image, ``sum_m w_m f(log p_{t_m, m})`` with
  ``f(l) = -(1 - e^l)^gamma l`` (cross entropy for ``gamma = 0``, the focal term otherwise),

where ``p = softmax(x)``, ``v`` is the kept-pixel mask and ``w`` a per-pixel weight (class weight or focal alpha
of the pixel's class, times ``v``). Nothing of the input's size is saved for backward except the input itself:
the backward recomputes ``p`` in the gradient's own buffer and writes

.. math::

    \frac{\partial L}{\partial x_c} = p_c \big(v\,\bar P_c - S - K\big) + [c = t]\big(v\,p_t\,\bar T_t + K\big),
    \quad S = v \big(\textstyle\sum_k p_k \bar P_k + p_t \bar T_t\big),\quad K = \bar F\, w\, f'(\log p_t)

(bars are the incoming gradients of ``P``, ``TP`` and the pixel sum), in spatial chunks so that no temporary of
the input's size is allocated beside the gradient. No one-hot tensor of the input's size is built (the PyTorch
twins compare a chunk of the target with the class indices, at most ``_CHUNK_ELEMENTS`` elements, whole
tensors only in the traced form that Inductor fuses); no host synchronisation.

The same module holds the fused sigmoid paths for binary / multilabel logits (statistics ``TP``, ``P``, ``G`` and
the focal / BCE term from one pass each way). On the CPU each pass runs in a compiled kernel when one is available
(:mod:`seglosses._native`: ``_native.cpp`` compiled on first use, OpenMP on PyTorch's thread pool); the
pure-PyTorch functions here are the fallback with the same numbers (``SEGLOSSES_NATIVE=0`` forces them; the tests
pin the two equal). The operators of :mod:`seglosses._ops` run the same functions as their CPU implementation (and
the Triton kernels on CUDA); :mod:`seglosses._dispatch` decides which of the two a loss calls. Each autograd
function also has a whole-tensor, out-of-place ("traced") form, taken while ``torch.compile`` traces it (when the
operators are switched off) or when forced by :func:`seglosses._dispatch.use` ``(traced=True)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seglosses import _dispatch, _native

#: Elements of ``(N, C, chunk)`` processed at once by the chunked passes (bounds the temporaries' size).
_CHUNK_ELEMENTS = 1 << 18


def _chunks(n: int, c: int, m: int, device: torch.device) -> list[tuple[int, int]]:
    """Spatial spans ``[s, e)`` of the chunked passes.

    CPU: chunks of about ``_CHUNK_ELEMENTS`` (cache-sized temporaries, no page faults of large fresh allocations).
    GPU: at most 4 chunks (temporaries a quarter of the input, and few kernel launches: on a GPU the launches of
    many small chunks would cost more than the arithmetic). A chunk size forced by
    :func:`seglosses._dispatch.use` ``(chunk_elements=k)`` gives ``max(1, k // (N C))`` pixels on every device.
    """
    forced = _dispatch.chunk_elements()
    if forced is not None:
        step = max(1, forced // max(1, n * c))
    elif device.type == "cpu":
        step = max(1024, _CHUNK_ELEMENTS // max(1, n * c))
    else:
        step = max(1 << 16, -(-m // 4))
    return [(s, min(m, s + step)) for s in range(0, m, step)] or [(0, 0)]


def _onehot(t: Tensor, classes: Tensor, buffer: Tensor) -> Tensor:
    """``[t == c]`` as floats, ``(N, C, L)``, written into ``buffer`` (a float compare: much faster than bool)."""
    out = buffer[..., : t.shape[-1]]
    return torch.eq(t.to(classes.dtype).unsqueeze(1), classes, out=out)


def _focal_terms(logp_t: Tensor, gamma: float | Tensor) -> tuple[Tensor, Tensor]:
    """``f(l) = -(1 - e^l)^gamma l`` and ``f'(l)``, finite for every ``l <= 0`` and every ``gamma >= 0``.

    With ``q = 1 - e^l = -expm1(l)`` (exact near ``l = 0``):
    ``f'(l) = -q^gamma + gamma q^gamma e^l (l / q)``, and ``l / q -> -1`` as ``q -> 0`` (series below 1e-4).
    ``gamma`` may be a per-pixel tensor (the unified focal loss modulates the background only); ``q^0 = 1``.
    """
    if isinstance(gamma, float | int) and gamma == 0:
        return -logp_t, torch.full_like(logp_t, -1.0)
    q = torch.expm1(logp_t).neg_()
    qg = torch.log(q).mul_(gamma).exp_()  # q^gamma; exactly 0 at q = 0
    if isinstance(gamma, Tensor):
        qg = torch.where(gamma == 0, torch.ones_like(qg), qg)  # 0 * log 0 would be NaN
    # l / q, with its series -1 - q/2 - q^2/3 where q is tiny (l = log(1 - q); the next term q^3/4 is below the
    # float64 epsilon relative to 1 for q < 1e-4)
    ratio = torch.where(q < 1e-4, (q * (-1.0 / 3.0) - 0.5).mul_(q).sub_(1.0), logp_t / q.clamp_min(1e-30))
    value = qg * logp_t
    value.neg_()
    deriv = ratio.mul_(torch.exp(logp_t)).mul_(gamma).sub_(1.0).mul_(qg)
    return value, deriv


class _SoftmaxIndex(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        t: Tensor,
        valid: Tensor | None,
        wpix: Tensor | None,
        gamma: float | Tensor,
        need_stats: bool,
        need_pixel: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, c, m = x.shape
        if _dispatch.traced():
            tp, psum, gsum, lse, logp_t = _softmax_index_traced(x, t, valid, need_stats, need_pixel)
        else:
            lse = torch.empty((n, m), dtype=x.dtype, device=x.device)
            logp_t = torch.empty((n, m), dtype=x.dtype, device=x.device) if need_pixel else None
            native = _softmax_index_native(x, t, valid, lse, logp_t, need_stats)
            if native is not None:
                tp, psum, gsum = native
            else:
                tp, psum, gsum = _softmax_index_torch(x, t, valid, lse, logp_t, need_stats)
        pix = torch.zeros((n,), dtype=x.dtype, device=x.device)
        deriv = None  # f'(log p_t), kept for backward (a (N, M) tensor: 1/C of the input)
        if logp_t is not None:
            native_terms = None if _dispatch.traced() else _focal_terms_native(logp_t, wpix, gamma)
            if native_terms is not None:
                pix, deriv = native_terms
            else:
                value, deriv = _focal_terms(logp_t, gamma)
                if wpix is not None:
                    value = value.mul_(wpix)
                    deriv = deriv.mul_(wpix)
                pix = value.sum(-1)
        ctx.save_for_backward(x, t, valid, lse, deriv)
        ctx.gamma = gamma
        ctx.need_stats = need_stats
        ctx.mark_non_differentiable(gsum)
        return tp, psum, pix, gsum

    @staticmethod
    def backward(ctx: Any, g_tp: Tensor, g_psum: Tensor, g_pix: Tensor, _g_gsum: Tensor) -> tuple[Tensor | None, ...]:
        x, t, valid, lse, deriv = ctx.saved_tensors
        k = None if deriv is None else deriv * g_pix.unsqueeze(1)  # the pixel term's coefficient K, (N, M)
        if _dispatch.traced():
            grad = _softmax_index_grad_traced(x, t, valid, lse, k, g_tp, g_psum, ctx.need_stats)
            return grad, None, None, None, None, None, None
        grad = torch.empty_like(x)
        if not _softmax_index_grad_native(x, t, valid, lse, k, g_tp, g_psum, ctx.need_stats, grad):
            _softmax_index_grad_torch(x, t, valid, lse, k, g_tp, g_psum, ctx.need_stats, grad)
        return grad, None, None, None, None, None, None


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _softmax_index_native(
    x: Tensor, t: Tensor, valid: Tensor | None, lse: Tensor, logp_t: Tensor | None, need_stats: bool
) -> tuple[Tensor, Tensor, Tensor] | None:
    """The forward pass by the native kernel, or None where it does not apply (then nothing was written)."""
    sfx = _native.suffix(x.dtype)
    if sfx is None or t.dtype != torch.int64 or (valid is not None and valid.dtype != x.dtype):
        return None
    lib = _native.usable(x, t, valid)
    if lib is None:
        return None
    n, c, m = x.shape
    sums = torch.zeros((3, n, c), dtype=torch.float64)
    status = getattr(lib, "sl_softmax_index_fwd" + sfx)(
        x.data_ptr(), t.data_ptr(), _native.ptr(valid), n, c, m, lse.data_ptr(), _native.ptr(logp_t),
        sums[0].data_ptr(), sums[1].data_ptr(), sums[2].data_ptr(), int(need_stats), _threads(),
    )  # fmt: skip
    if status != 0:
        return None  # an index outside [0, C) (value checks off): the PyTorch path decides what happens
    psum, tp, gsum = sums.to(x.dtype).unbind(0)
    return tp, psum, gsum


def _focal_terms_native(logp_t: Tensor, wpix: Tensor | None, gamma: float | Tensor) -> tuple[Tensor, Tensor] | None:
    """``(sum_m w f, w f')`` of :func:`_focal_terms` by the native kernel (``w f'`` written over ``logp_t``).

    None where it does not apply (a per-pixel gamma, or no kernel: then ``logp_t`` is untouched).
    """
    sfx = _native.suffix(logp_t.dtype)
    if sfx is None or isinstance(gamma, Tensor) or (wpix is not None and wpix.dtype != logp_t.dtype):
        return None
    lib = _native.usable(logp_t, wpix)
    if lib is None:
        return None
    n, m = logp_t.shape
    value = torch.zeros((n,), dtype=torch.float64)
    getattr(lib, "sl_focal_terms" + sfx)(
        logp_t.data_ptr(), _native.ptr(wpix), n, m, float(gamma), value.data_ptr(), _threads()
    )
    return value.to(logp_t.dtype), logp_t


def _onehot_traced(t: Tensor, c: int, dtype: torch.dtype) -> Tensor:
    """``[t == c]`` as ``(N, C, M)`` floats, out of place (under ``torch.compile`` Inductor fuses it away)."""
    classes = torch.arange(c, device=t.device).view(1, c, 1)
    return (t.unsqueeze(1) == classes).to(dtype)


def _softmax_index_traced(
    x: Tensor, t: Tensor, valid: Tensor | None, need_stats: bool, need_logp: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The forward pass for ``torch.compile``: whole tensors, no chunks, no ``out=`` and no in-place writes.

    The chunked eager form writes into views of preallocated buffers; Inductor's CUDA (Triton) code lost those
    writes in the backward (zero gradients, seen with torch 2.11), so a traced call takes this functional form and
    leaves fusion (no temporaries of the input's size) to the compiler. Returns ``(TP, P, G, lse, log p_t)``.
    """
    n, c, m = x.shape
    lse = torch.logsumexp(x, dim=1)  # (N, M)
    onehot = _onehot_traced(t, c, x.dtype)
    logp_t = (x * onehot).sum(1) - lse if need_logp else None
    if not need_stats:
        return x.new_zeros((n, c)), x.new_zeros((n, c)), x.new_zeros((n, c)), lse, logp_t  # distinct outputs
    prob = torch.exp(x - lse.unsqueeze(1))
    if valid is not None:
        prob = prob * valid.unsqueeze(1)
        onehot = onehot * valid.unsqueeze(1)
    return (prob * onehot).sum(-1), prob.sum(-1), onehot.sum(-1), lse, logp_t


def _softmax_index_grad_traced(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    lse: Tensor,
    k: Tensor | None,
    g_tp: Tensor,
    g_psum: Tensor,
    need_stats: bool,
) -> Tensor:
    """The backward pass for ``torch.compile`` (functional, see :func:`_softmax_index_traced`)."""
    c = x.shape[1]
    prob = torch.exp(x - lse.unsqueeze(1))
    onehot = _onehot_traced(t, c, x.dtype)
    if need_stats:
        # dL/dp_c = v (dP_c + [c = t] dTP_c) = v A_c;  dx_c = p_c (v A_c - v sum_k p_k A_k)
        a = (onehot * g_tp.to(x.dtype).unsqueeze(-1) + g_psum.to(x.dtype).unsqueeze(-1)) * prob
        if valid is not None:
            a = a * valid.unsqueeze(1)
        b = a.sum(1, keepdim=True)
        if k is not None:
            b = b + k.unsqueeze(1)
        grad = a - prob * b
    else:
        assert k is not None
        grad = -(prob * k.unsqueeze(1))
    if k is not None:
        grad = grad + onehot * k.unsqueeze(1)
    return grad


def _softmax_index_torch(
    x: Tensor, t: Tensor, valid: Tensor | None, lse: Tensor, logp_t: Tensor | None, need_stats: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward pass in PyTorch, in spatial chunks (fills ``lse`` and ``logp_t``; returns TP, P, G)."""
    n, c, m = x.shape
    psum = torch.zeros((n, c), dtype=x.dtype, device=x.device)
    tp = torch.zeros((n, c), dtype=x.dtype, device=x.device)
    gsum = torch.zeros((n, c), dtype=x.dtype, device=x.device)
    classes = torch.arange(c, device=x.device, dtype=x.dtype).view(1, c, 1)
    spans = _chunks(n, c, m, x.device)
    buffer = x.new_empty((n, c, spans[0][1] - spans[0][0]))
    work = torch.empty_like(buffer)
    for s, e in spans:
        xc = x[..., s:e]
        mx = xc.amax(1, keepdim=True)
        ex = torch.sub(xc, mx, out=work[..., : e - s]).exp_()
        se = ex.sum(1, keepdim=True)
        lse_c = se.log().add_(mx)  # (N, 1, chunk)
        lse[:, s:e] = lse_c.squeeze(1)
        onehot = _onehot(t[:, s:e], classes, buffer)  # a chunk, never the input's size
        if logp_t is not None:
            logp_t[:, s:e] = (xc * onehot).sum(1) - lse_c.squeeze(1)
        if need_stats:
            prob = ex.div_(se)
            if valid is not None:
                vc = valid[:, s:e].unsqueeze(1)
                prob.mul_(vc)
                onehot.mul_(vc)
            psum += prob.sum(-1)
            tp += prob.mul_(onehot).sum(-1)
            gsum += onehot.sum(-1)
    return tp, psum, gsum


def _softmax_index_grad_torch(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    lse: Tensor,
    k: Tensor | None,
    g_tp: Tensor,
    g_psum: Tensor,
    need_stats: bool,
    grad: Tensor,
) -> None:
    """The backward pass in PyTorch, in spatial chunks, written into ``grad``."""
    n, c, m = x.shape
    classes = torch.arange(c, device=x.device, dtype=x.dtype).view(1, c, 1)
    g_tp3, g_psum3 = g_tp.unsqueeze(-1), g_psum.unsqueeze(-1)
    spans = _chunks(n, c, m, x.device)
    buffer = x.new_empty((n, c, spans[0][1] - spans[0][0]))
    work = torch.empty_like(buffer)
    for s, e in spans:
        out = grad[..., s:e]
        prob = torch.sub(x[..., s:e], lse[:, s:e].unsqueeze(1), out=work[..., : e - s]).exp_()
        onehot = _onehot(t[:, s:e], classes, buffer)
        if need_stats:
            # dL/dp_c = v (dP_c + [c = t] dTP_c) = v A_c;  dx_c = p_c (v A_c - v sum_k p_k A_k)
            torch.mul(onehot, g_tp3, out=out).add_(g_psum3).mul_(prob)
            if valid is not None:
                out.mul_(valid[:, s:e].unsqueeze(1))
            b = out.sum(1, keepdim=True)
            if k is not None:
                b += k[:, s:e].unsqueeze(1)
            out.addcmul_(prob, b, value=-1.0)
        else:
            assert k is not None
            torch.mul(prob, k[:, s:e].unsqueeze(1), out=out).neg_()
        if k is not None:
            out.addcmul_(onehot, k[:, s:e].unsqueeze(1))


def _softmax_index_grad_native(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    lse: Tensor,
    k: Tensor | None,
    g_tp: Tensor,
    g_psum: Tensor,
    need_stats: bool,
    grad: Tensor,
) -> bool:
    """The backward pass by the native kernel into ``grad``; False where it does not apply."""
    sfx = _native.suffix(x.dtype)
    if sfx is None or t.dtype != torch.int64 or (valid is not None and valid.dtype != x.dtype):
        return False
    g_tp = g_tp.to(x.dtype).contiguous()
    g_psum = g_psum.to(x.dtype).contiguous()
    lib = _native.usable(x, t, valid, lse, k, grad)
    if lib is None or (k is not None and k.dtype != x.dtype):
        return False
    if k is None and not need_stats:
        grad.zero_()
        return True
    n, c, m = x.shape
    getattr(lib, "sl_softmax_index_bwd" + sfx)(
        x.data_ptr(), t.data_ptr(), _native.ptr(valid), lse.data_ptr(), _native.ptr(k), g_tp.data_ptr(),
        g_psum.data_ptr(), n, c, m, int(need_stats), grad.data_ptr(), _threads(),
    )  # fmt: skip
    return True


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
    """``(TP, P, F, G)`` per image: ``(N, C)``, ``(N, C)``, ``(N,)``, ``(N, C)`` (see the module docstring).

    ``G`` (kept pixels of each class) is a count and carries no gradient.

    Args:
        x: ``(N, C, M)`` logits, float32 or float64.
        t: ``(N, M)`` int64 class indices (0 at ignored pixels).
        valid: ``(N, M)`` 0/1 float mask of kept pixels, or None.
        wpix: ``(N, M)`` per-pixel weight of the pixel term (already multiplied by ``valid``), or None.
        gamma: focal exponent of the pixel term (0: cross entropy), a float or an ``(N, M)`` per-pixel tensor.
        need_stats: compute ``TP`` and ``P`` (else zeros).
        need_pixel: compute the pixel term (else zeros).

    """
    out: tuple[Tensor, Tensor, Tensor, Tensor] = _SoftmaxIndex.apply(  # type: ignore[no-untyped-call]
        x, t, valid, wpix, gamma, need_stats, need_pixel
    )
    return out


class _SigmoidDense(torch.autograd.Function):
    """Sigmoid statistics ``TP_c = sum v p g``, ``P_c = sum v p``, ``G_c = sum v g`` per image, and a pixel term.

    The optional pixel term is the per-image sum ``sum v L`` of the sigmoid focal term (BCE for gamma 0, no alpha).

    Backward: ``dx = v [p (1 - p) (dP_c + g dTP_c) + dF L'(x)]``, written chunk by chunk into the gradient's buffer.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        g: Tensor,
        valid: Tensor | None,
        alpha: float | None,
        gamma: float,
        need_pixel: bool,
        pos0: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, c, m = x.shape
        lib, sfx = _sigmoid_native(x, g, valid)
        w1, w0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
        if _dispatch.traced():
            tp, psum, gsum, pix = _sigmoid_dense_traced(x, g, valid, alpha, gamma, need_pixel, pos0)
        elif lib is not None:
            sums = torch.zeros((4, n, c), dtype=torch.float64)
            getattr(lib, "sl_sigmoid_dense_fwd" + sfx)(
                x.data_ptr(), g.data_ptr(), _native.ptr(valid), n * c, m, sums[0].data_ptr(), sums[1].data_ptr(),
                sums[2].data_ptr() if need_pixel else None, sums[3].data_ptr(), w1, w0, float(gamma), int(pos0),
                _threads(),
            )  # fmt: skip
            psum, tp, rows, gsum = sums.to(x.dtype).unbind(0)
            pix = rows.sum(1)
        else:
            gsum = (g if valid is None else g * valid).sum(-1)
            psum = torch.zeros((n, c), dtype=x.dtype, device=x.device)
            tp = torch.zeros((n, c), dtype=x.dtype, device=x.device)
            pix = torch.zeros((n,), dtype=x.dtype, device=x.device)
            spans = _chunks(n, c, m, x.device)
            work = x.new_empty((n, c, spans[0][1] - spans[0][0]))
            for s, e in spans:
                prob = torch.sigmoid(x[..., s:e], out=work[..., : e - s])
                if valid is not None:
                    prob.mul_(valid[..., s:e])
                psum += prob.sum(-1)
                tp += prob.mul_(g[..., s:e]).sum(-1)
                if need_pixel:
                    value, _ = _sigmoid_focal_terms(x[..., s:e], g[..., s:e], alpha, gamma, False, pos0)
                    if valid is not None:
                        value.mul_(valid[..., s:e])
                    pix += value.sum((1, 2))
        ctx.save_for_backward(x, g, valid)
        ctx.alpha, ctx.gamma, ctx.need_pixel, ctx.pos0 = alpha, gamma, need_pixel, pos0
        ctx.mark_non_differentiable(gsum)
        return tp, psum, gsum, pix

    @staticmethod
    def backward(ctx: Any, g_tp: Tensor, g_psum: Tensor, _g_gsum: Tensor, g_pix: Tensor) -> tuple[Tensor | None, ...]:
        x, g, valid = ctx.saved_tensors
        n, c, m = x.shape
        if _dispatch.traced():  # functional (see _softmax_index_traced)
            prob = torch.sigmoid(x)
            grad = prob * (1.0 - prob) * (g * g_tp.to(x.dtype).unsqueeze(-1) + g_psum.to(x.dtype).unsqueeze(-1))
            if ctx.need_pixel:
                _, deriv = _sigmoid_focal_terms(x, g, ctx.alpha, ctx.gamma, True, ctx.pos0)
                assert deriv is not None
                grad = grad + deriv * g_pix.to(x.dtype).view(n, 1, 1)
            if valid is not None:
                grad = grad * valid
            return grad, None, None, None, None, None, None
        grad = torch.empty_like(x)
        lib, sfx = _sigmoid_native(x, g, valid)
        if lib is not None:
            g_tp = g_tp.to(x.dtype).contiguous()
            g_psum = g_psum.to(x.dtype).contiguous()
            kscale = g_pix.to(x.dtype).repeat_interleave(c).contiguous() if ctx.need_pixel else None
            w1, w0 = (1.0, 1.0) if ctx.alpha is None else (ctx.alpha, 1.0 - ctx.alpha)
            getattr(lib, "sl_sigmoid_dense_bwd" + sfx)(
                x.data_ptr(), g.data_ptr(), _native.ptr(valid), g_tp.data_ptr(), g_psum.data_ptr(),
                _native.ptr(kscale), w1, w0, float(ctx.gamma), int(ctx.pos0), n * c, m, grad.data_ptr(), _threads(),
            )  # fmt: skip
            return grad, None, None, None, None, None, None
        gt3, gp3 = g_tp.unsqueeze(-1), g_psum.unsqueeze(-1)
        spans = _chunks(n, c, m, x.device)
        work = x.new_empty((n, c, spans[0][1] - spans[0][0]))
        for s, e in spans:
            out = grad[..., s:e]
            prob = torch.sigmoid(x[..., s:e], out=work[..., : e - s])
            torch.mul(prob, prob, out=out).neg_().add_(prob)  # p (1 - p)
            coef = torch.mul(g[..., s:e], gt3, out=prob).add_(gp3)
            out.mul_(coef)
            if ctx.need_pixel:
                _, deriv = _sigmoid_focal_terms(x[..., s:e], g[..., s:e], ctx.alpha, ctx.gamma, True, ctx.pos0)
                assert deriv is not None
                out.addcmul_(deriv, g_pix.view(n, 1, 1))
            if valid is not None:
                out.mul_(valid[..., s:e])
        return grad, None, None, None, None, None, None


def _sigmoid_dense_traced(
    x: Tensor, g: Tensor, valid: Tensor | None, alpha: float | None, gamma: float, need_pixel: bool, pos0: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The forward of :class:`_SigmoidDense` for ``torch.compile``: whole tensors, out of place."""
    n = x.shape[0]
    prob = torch.sigmoid(x)
    gv = g
    if valid is not None:
        prob = prob * valid
        gv = g * valid
    pix = x.new_zeros((n,))
    if need_pixel:
        value, _ = _sigmoid_focal_terms(x, g, alpha, gamma, False, pos0)
        if valid is not None:
            value = value * valid
        pix = value.sum((1, 2))
    return (prob * g).sum(-1), prob.sum(-1), gv.sum(-1), pix


def _sigmoid_native(x: Tensor, g: Tensor, valid: Tensor | None) -> tuple[Any, str]:
    """The native kernels and dtype suffix if they take these (same-shape, same-dtype) tensors, else (None, "")."""
    sfx = _native.suffix(x.dtype)
    if sfx is None or g.dtype != x.dtype or g.shape != x.shape:
        return None, ""
    if valid is not None and (valid.dtype != x.dtype or valid.shape != x.shape):
        return None, ""
    return _native.usable(x, g, valid), sfx


def sigmoid_native_ok(x: Tensor, g: Tensor, valid: Tensor | None) -> bool:
    """The native sigmoid kernels take these tensors (CPU, contiguous, one dtype and shape, kernels built)."""
    return _sigmoid_native(x, g, valid)[0] is not None


def sigmoid_dense(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    *,
    alpha: float | None = None,
    gamma: float = 0.0,
    need_pixel: bool = False,
    gamma_pos0: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(TP, P, G, F)`` for sigmoid probabilities of ``x`` and a dense target: ``(N, C)`` x 3 and ``(N,)``.

    ``F`` is the per-image sum of the sigmoid focal term (with ``gamma = 0`` and no ``alpha``: binary cross
    entropy), computed in the same pass when ``need_pixel`` (else zeros).

    Args:
        x: ``(N, C, M)`` logits.
        g: ``(N, C, M)`` target in [0, 1] (0 at ignored elements).
        valid: ``(N, C, M)`` 0/1 float mask of kept elements, or None.
        alpha: focal weight of the positive term (``1 - alpha`` on the negative), or None.
        gamma: focal exponent of the pixel term.
        need_pixel: compute the pixel term.
        gamma_pos0: the positive term's exponent is 0 (the asymmetric focal loss), else ``gamma``.

    """
    out: tuple[Tensor, Tensor, Tensor, Tensor] = _SigmoidDense.apply(  # type: ignore[no-untyped-call]
        x, g, valid, alpha, gamma, need_pixel, gamma_pos0
    )
    return out


def _sigmoid_focal_terms(
    xc: Tensor, gc: Tensor, alpha: float | None, gamma: float, need_grad: bool, pos0: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Per-element focal loss of a chunk and, if asked, its derivative w.r.t. the logit (both exact in log space).

    With ``a = log p = logsigmoid(x)`` and ``b = log(1 - p) = a - x``:
    ``L = -[w1 g e^{gamma b} a + w0 (1 - g) e^{gamma a} b]`` and
    ``dL/dx = -[w1 g e^{gamma b} (e^b - gamma e^a a) + w0 (1 - g) e^{gamma a} (gamma e^b b - e^a)]``,
    ``w1 = alpha, w0 = 1 - alpha`` (both 1 without alpha). With ``pos0`` the positive term's exponent is 0 (the
    asymmetric focal loss: ``e^{0 b} = 1`` and its ``gamma`` in the derivative is 0).
    """
    w1, w0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    a = torch.nn.functional.logsigmoid(xc)
    b = a - xc
    gamma_pos = 0.0 if pos0 else gamma
    pos = torch.exp(b * gamma_pos).mul_(gc)  # g (1 - p)^gamma
    neg = torch.exp(a * gamma).mul_(1.0 - gc)  # (1 - g) p^gamma
    value = (pos * a).mul_(-w1).sub_((neg * b).mul_(w0))
    if not need_grad:
        return value, None
    ea, eb = torch.exp(a), torch.exp(b)
    d_pos = (eb - (ea * a).mul_(gamma_pos)).mul_(pos).mul_(w1)
    d_neg = ((eb * b).mul_(gamma) - ea).mul_(neg).mul_(w0)
    return value, d_pos.add_(d_neg).neg_()


class _SigmoidFocal(torch.autograd.Function):
    """Sum of the binary/multilabel focal loss per image, ``(N,)``, with a chunked, recomputing backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, g: Tensor, valid: Tensor | None, alpha: float | None, gamma: float) -> Tensor:
        n, c, m = x.shape
        ctx.save_for_backward(x, g, valid)
        ctx.alpha, ctx.gamma = alpha, gamma
        lib, sfx = _sigmoid_native(x, g, valid)
        w1, w0 = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
        if _dispatch.traced():  # functional (see _softmax_index_traced)
            value, _ = _sigmoid_focal_terms(x, g, alpha, gamma, need_grad=False)
            return (value if valid is None else value * valid).sum((1, 2))
        if lib is not None:
            rows = torch.zeros((n * c,), dtype=torch.float64)
            getattr(lib, "sl_sigmoid_focal_fwd" + sfx)(
                x.data_ptr(), g.data_ptr(), _native.ptr(valid), n * c, m, w1, w0, float(gamma), rows.data_ptr(),
                _threads(),
            )  # fmt: skip
            return rows.view(n, c).sum(1).to(x.dtype)
        total = torch.zeros((n,), dtype=x.dtype, device=x.device)
        for s, e in _chunks(n, c, m, x.device):
            value, _ = _sigmoid_focal_terms(x[..., s:e], g[..., s:e], alpha, gamma, need_grad=False)
            if valid is not None:
                value.mul_(valid[..., s:e])
            total += value.sum((1, 2))
        return total

    @staticmethod
    def backward(ctx: Any, g_total: Tensor) -> tuple[Tensor | None, ...]:
        x, g, valid = ctx.saved_tensors
        n, c, m = x.shape
        if _dispatch.traced():  # functional (see _softmax_index_traced)
            _, deriv = _sigmoid_focal_terms(x, g, ctx.alpha, ctx.gamma, need_grad=True)
            assert deriv is not None
            grad = deriv * g_total.to(x.dtype).view(n, 1, 1)
            return (grad if valid is None else grad * valid), None, None, None, None
        grad = torch.empty_like(x)
        lib, sfx = _sigmoid_native(x, g, valid)
        if lib is not None:
            w1, w0 = (1.0, 1.0) if ctx.alpha is None else (ctx.alpha, 1.0 - ctx.alpha)
            rows = g_total.to(x.dtype).repeat_interleave(c).contiguous()
            getattr(lib, "sl_sigmoid_focal_bwd" + sfx)(
                x.data_ptr(), g.data_ptr(), _native.ptr(valid), rows.data_ptr(), n * c, m, w1, w0, float(ctx.gamma),
                grad.data_ptr(), _threads(),
            )  # fmt: skip
            return grad, None, None, None, None
        scale = g_total.view(n, 1, 1)
        for s, e in _chunks(n, c, m, x.device):
            _, deriv = _sigmoid_focal_terms(x[..., s:e], g[..., s:e], ctx.alpha, ctx.gamma, need_grad=True)
            assert deriv is not None
            out = grad[..., s:e]
            torch.mul(deriv, scale, out=out)
            if valid is not None:
                out.mul_(valid[..., s:e])
        return grad, None, None, None, None


def sigmoid_focal(x: Tensor, g: Tensor, valid: Tensor | None, *, alpha: float | None, gamma: float) -> Tensor:
    """Per-image sums ``(N,)`` of the binary/multilabel focal loss of logits ``x`` ``(N, C, M)``.

    Args:
        x: ``(N, C, M)`` logits.
        g: ``(N, C, M)`` target in [0, 1] (0 at ignored elements).
        valid: ``(N, C, M)`` 0/1 float mask of kept elements, or None.
        alpha: weight of the positive term (``1 - alpha`` on the negative), or None for no weighting.
        gamma: focusing exponent.

    """
    out: Tensor = _SigmoidFocal.apply(x, g, valid, alpha, gamma)  # type: ignore[no-untyped-call]
    return out
