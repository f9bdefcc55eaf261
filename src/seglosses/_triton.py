r"""Triton kernels of the fused paths (run on CUDA; on the CPU only under ``TRITON_INTERPRET=1``, for the tests).

Each fused family takes three launches per forward + backward, none of which synchronises with the host:

1. **statistics** over a grid of (image or image x channel, spatial tile): the softmax (over all classes, in
   registers) or the sigmoid of the logits, and per class the partial sums of ``TP = sum v p g``,
   ``P = sum v p``, ``G = sum v g``, ``P2 = sum v p^2``, the pixel term (cross entropy / focal), the kept-pixel
   count and two value-check counters (class index outside ``[0, C)`` at a kept pixel, NaN in the logits or the
   target). Each program writes its own row of partials: no float atomics.
2. **finalize**: one program per image adds its partials in a fixed order (deterministic two-stage reduction) and
   writes the statistics; where a counter is non-zero it writes NaN instead, so that the loss becomes NaN without
   a host synchronisation (``set_value_checks("always")`` still raises on the host before the kernels run).
3. **gradient**: one elementwise pass that recomputes the softmax / sigmoid from the logits and reads the incoming
   gradients (of ``TP``, ``P`` and of the pixel term) through pointers.

The PyTorch twins of these passes are the functions of :mod:`seglosses._fused`; the tests pin the two equal.
Logits may be float16, bfloat16, float32 or float64; reductions run in float32 (float64 for float64 logits).
Targets may have any integer dtype (class indices) or any floating dtype (dense targets). Nothing here chooses a
device: :mod:`seglosses._ops` decides which kernel runs where.

The softmax gradient, with ``K = dF\,w\,f'(\log p_t)`` the pixel term's coefficient:

.. math::

    A_c = v\,p_c\,(\bar P_c + [c = t]\,\bar T_c),\qquad
    \frac{\partial L}{\partial x_c} = A_c - p_c\Big(\sum_k A_k + K\Big) + [c = t]\,K .

The sigmoid gradient: ``dx = v [p (1 - p) (dP + g dTP) + dF L'(x)]``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

#: Number of statistic columns per (image, tile, class) partial: TP, P, G, P2, pixel term, kept, bad index, NaN.
STATS = 8

#: Elements held in registers per softmax program (classes x pixels): 4096 keeps a tile in the register file of
#: one warp group (16 values per thread at 256 threads) for any C, and gives tiles of 1024 pixels at C = 4.
_SOFTMAX_TILE = 4096
#: Pixels per sigmoid program: 1024 contiguous elements of one channel (coalesced 4 KB loads of float32).
_SIGMOID_BLOCK = 1024
#: Tiles added per step of the finalize program: a (BLOCK_T, next_pow2(C) x 8) block of at most this many elements,
#: BLOCK_T between 1 and 64. 64 rows at every C made the block 64 x 2048 at C = 256 (kilobytes of register spills per
#: thread), minutes of compilation at C = 2048 and more than triton's 2^20 elements per tensor above it.
_FINAL_BLOCK_ELEMENTS = 8192


def available() -> bool:
    """Whether triton can be imported (the kernels exist)."""
    return triton is not None


def _next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def launch_grid(rows: int, tiles: int) -> tuple[int]:
    """The grid of ``rows x tiles`` programs, on one axis: program ``pid`` is ``(pid // tiles, pid % tiles)``.

    CUDA allows 2^31 - 1 programs along x but only 65535 along y and z, which the tiles of one large volume pass
    (a 256^3 image at C = 14 has 65536 softmax tiles, a (64, 1, 1024, 1024) batch 65536 rows of Lovász tiles).
    """
    return (rows * tiles,)


def softmax_block_m(c: int) -> int:
    """Pixels per softmax tile for ``C`` classes: ``_SOFTMAX_TILE / next_pow2(C)``, at least 16, at most 1024."""
    return max(16, min(1024, _SOFTMAX_TILE // _next_pow2(c)))


def _acc(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64 logits, else float32 (float16/bfloat16 are reduced in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


if triton is not None:
    #: Whether the kernels run in Triton's interpreter (read when this module is imported, as triton does).
    _INTERPRETED = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")

    @triton.jit  # type: ignore[untyped-decorator]
    def _as_acc(x: tl.tensor, ACC: tl.constexpr) -> Any:
        """A float scalar argument (typed float64: exact hyperparameters for float64 logits) in the accumulation dtype.

        Compiled, the float64 scalar is cast once, so float32 kernels do not compute in float64. The interpreter gets
        a Python float, which its operations would round to float32 when they make it a tensor: it is made a tensor of
        the accumulation dtype directly (exact for float64 logits).
        """
        if _INTERPRETED:
            y = tl.full([], x, ACC)
        else:
            y = tl.cast(x, ACC)
        return y

    @triton.jit  # type: ignore[untyped-decorator]
    def _log1p_small(u: tl.tensor) -> Any:
        """``log(1 + u)`` accurate for tiny ``u`` (Goldberg's trick: no libdevice, so the interpreter runs it)."""
        w = 1.0 + u
        return tl.where(w == 1.0, u, tl.log(w) * (u / (w - 1.0)))

    @triton.jit  # type: ignore[untyped-decorator]
    def _softmax_tile(
        x_ptr: tl.tensor,
        t_ptr: tl.tensor,
        n: tl.tensor,
        offs_m: tl.tensor,
        offs_c: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        ACC: tl.constexpr,
    ) -> Any:
        """Load a (classes x pixels) tile: softmax, log p_t, 1 - p_t, one-hot, bad flags, NaNs, logits, logsumexp.

        The logits are ``-inf`` in the padded classes.
        """
        mm = offs_m < M
        mc = offs_c < C
        base = n.to(tl.int64) * C * M
        xt = tl.load(
            x_ptr + base + offs_c[:, None].to(tl.int64) * M + offs_m[None, :],
            mask=mc[:, None] & mm[None, :],
            other=0.0,
        ).to(ACC)
        isnan = tl.sum((xt != xt).to(tl.int32), axis=0)  # NaN logits per pixel
        xt = tl.where(mc[:, None], xt, float("-inf"))  # padded classes take no probability
        t = tl.load(t_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0)
        bad = (t < 0) | (t >= C)  # class index outside [0, C)
        onehot = offs_c[:, None] == t.to(tl.int32)[None, :]
        # softmax over the classes through its logsumexp: lse = max + log sum exp(x - max)
        mx = tl.max(xt, axis=0)
        ex = tl.exp(xt - mx[None, :])
        se = tl.sum(ex, axis=0)
        p = ex / se[None, :]
        lse = mx + tl.log(se)
        # log p_t = x_t - lse, and q = 1 - p_t as the sum of the other classes' probabilities (exact near p_t = 1)
        x_t = tl.sum(tl.where(onehot, xt, 0.0), axis=0)
        logp_t = x_t - lse
        q = tl.sum(tl.where(onehot, 0.0, p), axis=0)
        return p, logp_t, q, onehot, bad, isnan, xt, lse

    @triton.jit  # type: ignore[untyped-decorator]
    def _kept_pixels(
        v_ptr: tl.tensor,
        t_ptr: tl.tensor,
        n: tl.tensor,
        offs_m: tl.tensor,
        mm: tl.tensor,
        M: tl.tensor,
        ignore: tl.tensor,
        HAS_VALID: tl.constexpr,
        HAS_IGNORE: tl.constexpr,
        ACC: tl.constexpr,
    ) -> Any:
        """The kept-pixel weights of a tile of image ``n`` (0 outside the image).

        The ``valid`` mask, or the raw target compared with ``ignore_index`` (no mask in memory), or every pixel.
        """
        if HAS_VALID:
            v = tl.load(v_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0.0).to(ACC)
        elif HAS_IGNORE:
            t_raw = tl.load(t_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0)
            v = ((t_raw.to(tl.int64) != ignore) & mm).to(ACC)
        else:
            v = mm.to(ACC)
        return v

    @triton.jit  # type: ignore[untyped-decorator]
    def _smoothing_weights(
        cw_ptr: tl.tensor, offs_c: tl.tensor, C: tl.tensor, HAS_CW: tl.constexpr, ACC: tl.constexpr
    ) -> Any:
        """The label-smoothing term's class weights ``u_c`` (the class weights, or 1; 0 in padded classes)."""
        mc = offs_c < C
        if HAS_CW:
            u = tl.load(cw_ptr + offs_c, mask=mc, other=0.0).to(ACC)
        else:
            u = mc.to(ACC)
        return u

    @triton.jit  # type: ignore[untyped-decorator]
    def _focal(logp_t: tl.tensor, q: tl.tensor, gam: tl.tensor, GAMMA_ZERO: tl.constexpr) -> Any:
        r"""``f(l) = -(1 - e^l)^\gamma l`` and ``f'(l) = -q^\gamma + \gamma q^\gamma e^l (l / q)``, ``q = 1 - e^l``.

        ``q^gamma = exp(gamma log q)`` (0 at q = 0 for gamma > 0, 1 for gamma = 0); ``l / q -> -1`` as ``q -> 0``
        (its series ``-1 - q/2 - q^2/3`` below q = 1e-4, as in the PyTorch twin).
        """
        if GAMMA_ZERO:
            return -logp_t, logp_t * 0.0 - 1.0
        qg = tl.where(gam == 0.0, 1.0, tl.exp(gam * tl.log(q)))
        ratio = tl.where(q < 1e-4, (q * (-1.0 / 3.0) - 0.5) * q - 1.0, logp_t / tl.maximum(q, 1e-30))
        value = -qg * logp_t
        deriv = (ratio * tl.exp(logp_t) * gam - 1.0) * qg
        return value, deriv

    @triton.jit  # type: ignore[untyped-decorator]
    def _pixel_weight(
        t_ptr: tl.tensor,
        w_ptr: tl.tensor,
        gp_ptr: tl.tensor,
        cw_ptr: tl.tensor,
        n: tl.tensor,
        offs_m: tl.tensor,
        mm: tl.tensor,
        v: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        gamma: tl.tensor,
        w_bg: tl.tensor,
        w_fg: tl.tensor,
        g_bg: tl.tensor,
        g_fg: tl.tensor,
        HAS_W: tl.constexpr,
        HAS_GPIX: tl.constexpr,
        BG_SPLIT: tl.constexpr,
        HAS_CW: tl.constexpr,
        ACC: tl.constexpr,
    ) -> Any:
        """The softmax pixel term's weight and focal exponent at the pixels of a tile (statistics and gradient).

        ``BG_SPLIT``: by background / other class, from the target (the unified focal loss); else the weight per
        class read at each pixel's class (``HAS_CW``, index 0 where it is out of range), the per-pixel map
        (``HAS_W``) or the kept mask, and the per-pixel exponent (``HAS_GPIX``) or ``gamma``.
        """
        if BG_SPLIT:
            tt = tl.load(t_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=1)
            bgm = tt == 0
            w = tl.where(bgm, w_bg, w_fg) * v
            gam = tl.where(bgm, g_bg, g_fg)
        else:
            if HAS_CW:
                tc = tl.load(t_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0)
                tc = tl.where((tc >= 0) & (tc < C), tc, 0)
                w = tl.load(cw_ptr + tc, mask=mm, other=0.0).to(ACC) * v
            elif HAS_W:
                w = tl.load(w_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0.0).to(ACC)
            else:
                w = v
            if HAS_GPIX:
                gam = tl.load(gp_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0.0).to(ACC)
            else:
                gam = gamma
        return w, gam

    @triton.jit  # type: ignore[untyped-decorator]
    def _softmax_index_stats_kernel(
        x_ptr: tl.tensor,
        t_ptr: tl.tensor,
        v_ptr: tl.tensor,
        w_ptr: tl.tensor,
        gp_ptr: tl.tensor,
        cw_ptr: tl.tensor,
        part_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        T: tl.tensor,
        gamma: tl.float64,
        w_bg: tl.float64,
        w_fg: tl.float64,
        g_bg: tl.float64,
        g_fg: tl.float64,
        ignore: tl.int64,
        ls: tl.float64,
        HAS_VALID: tl.constexpr,
        HAS_IGNORE: tl.constexpr,
        HAS_W: tl.constexpr,
        HAS_GPIX: tl.constexpr,
        BG_SPLIT: tl.constexpr,
        HAS_CW: tl.constexpr,
        LS: tl.constexpr,
        KEPT_W: tl.constexpr,
        GAMMA_ZERO: tl.constexpr,
        NEED_PIXEL: tl.constexpr,
        SQUARED: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """Partials ``part[n, tile, c, :] = (TP, P, G, P2, F, kept, bad, nan)``; F, kept and the counters at c = 0.

        ``SQUARED``: ``P`` is ``sum v p_c^2`` (the squared Dice's denominator; ``G`` is its own square here).
        """
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        gamma = _as_acc(gamma, ACC)
        w_bg = _as_acc(w_bg, ACC)
        w_fg = _as_acc(w_fg, ACC)
        g_bg = _as_acc(g_bg, ACC)
        g_fg = _as_acc(g_fg, ACC)
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        n = pid // T
        tile = pid % T
        offs_m = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        offs_c = tl.arange(0, BLOCK_C)
        mm = offs_m < M
        p, logp_t, q, onehot, bad, isnan, xt, lse = _softmax_tile(x_ptr, t_ptr, n, offs_m, offs_c, C, M, ACC)
        v = _kept_pixels(v_ptr, t_ptr, n, offs_m, mm, M, ignore, HAS_VALID, HAS_IGNORE, ACC)
        v = tl.where(mm, v, 0.0)
        kept = v > 0
        ohv = onehot.to(ACC) * v[None, :]
        pv = p * v[None, :]
        tp = tl.sum(pv * onehot.to(ACC), axis=1)  # TP_c = sum v p_c [t = c]
        ps = tl.sum(pv, axis=1)  # P_c = sum v p_c
        gs = tl.sum(ohv, axis=1)  # G_c = sum v [t = c]
        p2 = tl.sum(pv * p, axis=1)  # sum v p_c^2
        if SQUARED:
            ps = p2
        fsum = tl.sum(v, axis=0) * 0.0
        if NEED_PIXEL:
            w, gam = _pixel_weight(
                t_ptr, w_ptr, gp_ptr, cw_ptr, n, offs_m, mm, v, C, M, gamma, w_bg, w_fg, g_bg, g_fg,
                HAS_W, HAS_GPIX, BG_SPLIT, HAS_CW, ACC,
            )  # fmt: skip
            value, _ = _focal(logp_t, q, gam, GAMMA_ZERO)
            if LS:  # label smoothing: (1 - eps) of the term, plus eps / C sum_c u_c (lse - x_c) at each kept pixel
                eps = _as_acc(ls, ACC)
                value = value * (1.0 - eps)
            fsum = tl.sum(tl.where(mm & (w != 0.0), w * value, 0.0), axis=0)  # sum w f(log p_t)
            if LS:
                u = _smoothing_weights(cw_ptr, offs_c, C, HAS_CW, ACC)
                mc = offs_c < C
                smooth = tl.sum(tl.where(mc[:, None], u[:, None] * (lse[None, :] - xt), 0.0), axis=0)
                # eps / C in ACC; no C.to(ACC): the launcher passes C == 1 as a constexpr, which has no .to
                fsum += tl.sum(tl.where(mm & (v != 0.0), v * smooth, 0.0), axis=0) * (eps / C)
        nkept = tl.sum(v, axis=0)
        if KEPT_W:  # the pixel term's weight summed instead (the weighted mean's denominator)
            if NEED_PIXEL:
                nkept = tl.sum(tl.where(mm, w, 0.0), axis=0)
        nbad = tl.sum((bad & kept).to(ACC), axis=0)
        nnan = tl.sum(tl.where(mm, isnan, 0).to(ACC), axis=0)
        k = tl.arange(0, 8)
        first = offs_c[:, None] == 0
        scal = tl.where(k[None, :] == 4, fsum, tl.where(k[None, :] == 5, nkept, tl.where(k[None, :] == 6, nbad, nnan)))
        vals = tl.where(
            k[None, :] == 0,
            tp[:, None],
            tl.where(
                k[None, :] == 1,
                ps[:, None],
                tl.where(k[None, :] == 2, gs[:, None], tl.where(k[None, :] == 3, p2[:, None], 0.0)),
            ),
        )
        vals = tl.where((k[None, :] >= 4), tl.where(first, scal, 0.0), vals)
        row = (n.to(tl.int64) * T + tile) * C
        ptrs = part_ptr + (row + offs_c[:, None]) * 8 + k[None, :]
        tl.store(ptrs, vals, mask=(offs_c[:, None] < C) & (k[None, :] < 8))

    @triton.jit  # type: ignore[untyped-decorator]
    def _finalize_kernel(
        part_ptr: tl.tensor,
        tp_ptr: tl.tensor,
        p_ptr: tl.tensor,
        g_ptr: tl.tensor,
        p2_ptr: tl.tensor,
        pix_ptr: tl.tensor,
        kept_ptr: tl.tensor,
        C: tl.tensor,
        T: tl.tensor,
        POISON: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_CK: tl.constexpr,
        BLOCK_C: tl.constexpr,
        ACC: tl.constexpr,
    ) -> None:
        """``TP[n, c] = sum_tile part[n, tile, c, 0]``, likewise P, G and P2 (columns 1-3); ``pix[n]``, ``kept[n]``.

        Each statistic is its own ``(N, C)`` tensor (operator outputs must not be views of one another).

        The tiles are added in a fixed order (deterministic). With ``POISON`` a non-zero bad-index or NaN counter
        of the image makes its statistics and pixel term NaN (the loss becomes NaN, no host synchronisation).
        """
        n = tl.program_id(0)
        cols = tl.arange(0, BLOCK_CK)
        ck = C * 8
        acc = tl.zeros((BLOCK_CK,), dtype=ACC)
        for t0 in range(0, T, BLOCK_T):
            rows = t0 + tl.arange(0, BLOCK_T)
            blk = tl.load(
                part_ptr + (n.to(tl.int64) * T + rows[:, None]) * ck + cols[None, :],
                mask=(rows[:, None] < T) & (cols[None, :] < ck),
                other=0.0,
            )
            acc += tl.sum(blk, axis=0)
        acc2 = tl.reshape(acc, (BLOCK_C, 8))
        k = tl.arange(0, 8)
        per_c = tl.arange(0, BLOCK_C)
        pix = tl.sum(tl.sum(tl.where(k[None, :] == 4, acc2, 0.0), axis=1), axis=0)
        kept = tl.sum(tl.sum(tl.where(k[None, :] == 5, acc2, 0.0), axis=1), axis=0)
        flags = tl.sum(tl.sum(tl.where(k[None, :] >= 6, acc2, 0.0), axis=1), axis=0)
        if POISON:
            acc2 = tl.where(flags > 0, float("nan"), acc2)
            pix = tl.where(flags > 0, float("nan"), pix)
        row = n.to(tl.int64) * C + per_c
        mc = per_c < C
        tl.store(tp_ptr + row, tl.sum(tl.where(k[None, :] == 0, acc2, 0.0), axis=1), mask=mc)
        tl.store(p_ptr + row, tl.sum(tl.where(k[None, :] == 1, acc2, 0.0), axis=1), mask=mc)
        tl.store(g_ptr + row, tl.sum(tl.where(k[None, :] == 2, acc2, 0.0), axis=1), mask=mc)
        tl.store(p2_ptr + row, tl.sum(tl.where(k[None, :] == 3, acc2, 0.0), axis=1), mask=mc)
        tl.store(pix_ptr + n, pix)
        tl.store(kept_ptr + n, kept)

    @triton.jit  # type: ignore[untyped-decorator]
    def _softmax_index_grad_kernel(
        x_ptr: tl.tensor,
        t_ptr: tl.tensor,
        v_ptr: tl.tensor,
        w_ptr: tl.tensor,
        gp_ptr: tl.tensor,
        cw_ptr: tl.tensor,
        gtp_ptr: tl.tensor,
        gps_ptr: tl.tensor,
        gpix_ptr: tl.tensor,
        scale_ptr: tl.tensor,
        out_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        T: tl.tensor,
        gamma: tl.float64,
        w_bg: tl.float64,
        w_fg: tl.float64,
        g_bg: tl.float64,
        g_fg: tl.float64,
        ignore: tl.int64,
        ls: tl.float64,
        HAS_VALID: tl.constexpr,
        HAS_IGNORE: tl.constexpr,
        HAS_W: tl.constexpr,
        HAS_GPIX: tl.constexpr,
        BG_SPLIT: tl.constexpr,
        HAS_CW: tl.constexpr,
        LS: tl.constexpr,
        GAMMA_ZERO: tl.constexpr,
        NEED_STATS: tl.constexpr,
        HAS_SCALE: tl.constexpr,
        NEED_PIXEL: tl.constexpr,
        SQUARED: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """``dx_c = A_c - p_c (sum_k A_k + K) + [c = t] K``, ``A_c = v p_c (dP_c + [c = t] dTP_c)``.

        ``SQUARED``: ``dP`` is the gradient of ``sum v p_c^2``, so ``A_c = v p_c (2 p_c dP_c + [c = t] dTP_c)``.
        """
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        gamma = _as_acc(gamma, ACC)
        w_bg = _as_acc(w_bg, ACC)
        w_fg = _as_acc(w_fg, ACC)
        g_bg = _as_acc(g_bg, ACC)
        g_fg = _as_acc(g_fg, ACC)
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        n = pid // T
        tile = pid % T
        offs_m = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        offs_c = tl.arange(0, BLOCK_C)
        mm = offs_m < M
        mc = offs_c < C
        p, logp_t, q, onehot, bad, isnan, xt, lse = _softmax_tile(x_ptr, t_ptr, n, offs_m, offs_c, C, M, ACC)
        v = _kept_pixels(v_ptr, t_ptr, n, offs_m, mm, M, ignore, HAS_VALID, HAS_IGNORE, ACC)
        ohf = onehot.to(ACC)
        grad = p * 0.0
        kk = v * 0.0
        smooth_grad = p * 0.0
        if NEED_PIXEL:
            w, gam = _pixel_weight(
                t_ptr, w_ptr, gp_ptr, cw_ptr, n, offs_m, mm, v, C, M, gamma, w_bg, w_fg, g_bg, g_fg,
                HAS_W, HAS_GPIX, BG_SPLIT, HAS_CW, ACC,
            )  # fmt: skip
            _, deriv = _focal(logp_t, q, gam, GAMMA_ZERO)
            g_pix = tl.load(gpix_ptr + n).to(ACC)  # the incoming gradient of the pixel sum, read on the device
            if HAS_SCALE:
                g_pix = g_pix * tl.load(scale_ptr).to(ACC)
            kk = tl.where(w != 0.0, w * deriv, 0.0) * g_pix  # K = dF w f'(log p_t)
            if LS:  # (1 - eps) of that, and the smoothing term's dF v eps / C (U p_c - u_c), U = sum_c u_c
                eps = _as_acc(ls, ACC)
                kk = kk * (1.0 - eps)
                u = _smoothing_weights(cw_ptr, offs_c, C, HAS_CW, ACC)
                su = g_pix * v * (eps / C)  # no C.to(ACC): C == 1 arrives as a constexpr (see the statistics)
                smooth_grad = su[None, :] * (tl.sum(u, axis=0) * p - u[:, None])
        if NEED_STATS:
            gtp = tl.load(gtp_ptr + n.to(tl.int64) * C + offs_c, mask=mc, other=0.0).to(ACC)
            gps = tl.load(gps_ptr + n.to(tl.int64) * C + offs_c, mask=mc, other=0.0).to(ACC)
            if HAS_SCALE:  # coefficients times the loss's incoming gradient, read on the device
                sc = tl.load(scale_ptr).to(ACC)
                gtp = gtp * sc
                gps = gps * sc
            if SQUARED:
                a = (ohf * gtp[:, None] + 2.0 * p * gps[:, None]) * p * v[None, :]
            else:
                a = (ohf * gtp[:, None] + gps[:, None]) * p * v[None, :]
            b = tl.sum(a, axis=0) + kk
            grad = a - p * b[None, :]
        else:
            grad = -p * kk[None, :]
        grad += ohf * kk[None, :] + smooth_grad
        base = n.to(tl.int64) * C * M
        tl.store(
            out_ptr + base + offs_c[:, None].to(tl.int64) * M + offs_m[None, :],
            grad,
            mask=mc[:, None] & mm[None, :],
        )

    @triton.jit  # type: ignore[untyped-decorator]
    def _sigmoid_terms(
        x: tl.tensor,
        g: tl.tensor,
        w1: tl.tensor,
        w0: tl.tensor,
        gamma: tl.tensor,
        gamma_pos: tl.tensor,
        NEED_GRAD: tl.constexpr,
    ) -> Any:
        """The sigmoid focal term and its derivative in log space (``a = log p``, ``b = log(1 - p) = a - x``).

        ``L = -[w1 g e^{gamma_pos b} a + w0 (1 - g) e^{gamma a} b]``,
        ``L' = -[w1 g e^{gamma_pos b} (e^b - gamma_pos e^a a) + w0 (1 - g) e^{gamma a} (gamma e^b b - e^a)]``.
        """
        a = tl.minimum(x, 0.0) - _log1p_small(tl.exp(-tl.abs(x)))  # logsigmoid(x)
        b = a - x
        pos = tl.exp(b * gamma_pos) * g
        neg = tl.exp(a * gamma) * (1.0 - g)
        value = -(w1 * pos * a) - w0 * neg * b
        deriv = value * 0.0
        if NEED_GRAD:
            ea = tl.exp(a)
            eb = tl.exp(b)
            deriv = -(w1 * pos * (eb - gamma_pos * ea * a) + w0 * neg * (gamma * eb * b - ea))
        return value, deriv

    @triton.jit  # type: ignore[untyped-decorator]
    def _sigmoid_stats_kernel(
        x_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        cw_ptr: tl.tensor,
        part_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        T: tl.tensor,
        w1: tl.float64,
        w0: tl.float64,
        gamma: tl.float64,
        gamma_pos: tl.float64,
        ignore: tl.int64,
        ls: tl.float64,
        HAS_VALID: tl.constexpr,
        HAS_IGNORE: tl.constexpr,
        LS: tl.constexpr,
        HAS_CW: tl.constexpr,
        NEED_PIXEL: tl.constexpr,
        SQUARED: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ) -> None:
        """Partials ``part[n, tile, c, :] = (TP, P, G, P2, F, kept, 0, nan)`` of one channel row and tile.

        ``SQUARED``: ``P`` and ``G`` are ``sum v p^2`` and ``sum v g^2`` (the squared Dice's denominators).
        """
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        w1 = _as_acc(w1, ACC)
        w0 = _as_acc(w0, ACC)
        gamma = _as_acc(gamma, ACC)
        gamma_pos = _as_acc(gamma_pos, ACC)
        pid = tl.program_id(0)  # one grid axis (see launch_grid): row = n * C + c, then tile
        r = pid // T
        tile = pid % T
        n = r // C
        c = r % C
        offs = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        mm = offs < M
        base = r.to(tl.int64) * M
        x = tl.load(x_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        g = tl.load(g_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        if HAS_VALID:
            v = tl.load(v_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        elif HAS_IGNORE:  # the raw target: an element is kept where it is not ignore_index (then read as 0)
            keep = g != ignore.to(ACC)
            g = tl.where(keep, g, 0.0)
            v = (keep & mm).to(ACC)
        else:
            v = mm.to(ACC)
        nnan = tl.sum(((x != x) | (g != g)).to(ACC), axis=0)
        p = 1.0 / (1.0 + tl.exp(-x))
        pv = p * v
        tp = tl.sum(pv * g, axis=0)  # TP = sum v p g
        ps = tl.sum(pv, axis=0)  # P = sum v p
        gs = tl.sum(g * v, axis=0)  # G = sum v g
        p2 = tl.sum(pv * p, axis=0)  # sum v p^2
        if SQUARED:
            ps = p2
            gs = tl.sum(g * g * v, axis=0)  # sum v g^2
        fsum = ps * 0.0
        if NEED_PIXEL:
            g_pix = g
            if LS:  # label smoothing of the pixel term's target: (1 - eps) g + eps / 2
                eps = _as_acc(ls, ACC)
                g_pix = g * (1.0 - eps) + 0.5 * eps
            value, _ = _sigmoid_terms(x, g_pix, w1, w0, gamma, gamma_pos, False)
            if HAS_CW:  # the channel's weight of the pixel term
                value = value * tl.load(cw_ptr + c).to(ACC)
            fsum = tl.sum(tl.where(v != 0.0, value * v, 0.0), axis=0)
        nkept = tl.sum(v, axis=0)
        k = tl.arange(0, 8)
        vals = tl.where(
            k == 0,
            tp,
            tl.where(
                k == 1,
                ps,
                tl.where(
                    k == 2,
                    gs,
                    tl.where(k == 3, p2, tl.where(k == 4, fsum, tl.where(k == 5, nkept, tl.where(k == 7, nnan, 0.0)))),
                ),
            ),
        )
        tl.store(part_ptr + ((n.to(tl.int64) * T + tile) * C + c) * 8 + k, vals)

    @triton.jit  # type: ignore[untyped-decorator]
    def _sigmoid_grad_kernel(
        x_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        gtp_ptr: tl.tensor,
        gps_ptr: tl.tensor,
        gpix_ptr: tl.tensor,
        scale_ptr: tl.tensor,
        cw_ptr: tl.tensor,
        out_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        T: tl.tensor,
        w1: tl.float64,
        w0: tl.float64,
        gamma: tl.float64,
        gamma_pos: tl.float64,
        ignore: tl.int64,
        ls: tl.float64,
        HAS_VALID: tl.constexpr,
        HAS_IGNORE: tl.constexpr,
        LS: tl.constexpr,
        HAS_CW: tl.constexpr,
        NEED_STATS: tl.constexpr,
        HAS_SCALE: tl.constexpr,
        NEED_PIXEL: tl.constexpr,
        SQUARED: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ) -> None:
        """``dx = v [p (1 - p) (dP + g dTP) + dF L'(x)]`` for one channel row and tile.

        ``SQUARED``: ``2 p dP`` instead of ``dP`` (the gradient of ``sum v p^2``).
        """
        # float scalars arrive as float64 (exact hyperparameters for float64 logits), used in ACC
        w1 = _as_acc(w1, ACC)
        w0 = _as_acc(w0, ACC)
        gamma = _as_acc(gamma, ACC)
        gamma_pos = _as_acc(gamma_pos, ACC)
        pid = tl.program_id(0)  # one grid axis (see launch_grid): row = n * C + c, then tile
        r = pid // T
        tile = pid % T
        n = r // C
        offs = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        mm = offs < M
        base = r.to(tl.int64) * M
        x = tl.load(x_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        g = tl.load(g_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        if HAS_VALID:
            v = tl.load(v_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        elif HAS_IGNORE:  # the raw target: an element is kept where it is not ignore_index (then read as 0)
            keep = g != ignore.to(ACC)
            g = tl.where(keep, g, 0.0)
            v = (keep & mm).to(ACC)
        else:
            v = mm.to(ACC)
        grad = x * 0.0
        if NEED_STATS:
            p = 1.0 / (1.0 + tl.exp(-x))
            gtp = tl.load(gtp_ptr + r).to(ACC)
            gps = tl.load(gps_ptr + r).to(ACC)
            if HAS_SCALE:
                sc = tl.load(scale_ptr).to(ACC)
                gtp = gtp * sc
                gps = gps * sc
            if SQUARED:
                grad = p * (1.0 - p) * (2.0 * p * gps + g * gtp)
            else:
                grad = p * (1.0 - p) * (gps + g * gtp)
        if NEED_PIXEL:
            g_ls = g
            if LS:  # label smoothing of the pixel term's target: (1 - eps) g + eps / 2
                eps = _as_acc(ls, ACC)
                g_ls = g * (1.0 - eps) + 0.5 * eps
            _, deriv = _sigmoid_terms(x, g_ls, w1, w0, gamma, gamma_pos, True)
            if HAS_CW:  # the channel's weight of the pixel term
                deriv = deriv * tl.load(cw_ptr + r % C).to(ACC)
            g_pix = tl.load(gpix_ptr + n).to(ACC)
            if HAS_SCALE:
                g_pix = g_pix * tl.load(scale_ptr).to(ACC)
            grad += deriv * g_pix
        grad = tl.where(v != 0.0, grad * v, 0.0)
        tl.store(out_ptr + base + offs, grad, mask=mm)


def finalize_block_t(block_ck: int) -> int:
    """Tiles per step of the finalize program for ``block_ck`` columns (at most :data:`_FINAL_BLOCK_ELEMENTS`)."""
    return max(1, min(64, _FINAL_BLOCK_ELEMENTS // block_ck))


def _tl_acc(dtype: torch.dtype) -> Any:
    return tl.float64 if dtype == torch.float64 else tl.float32


def _finalize(part: Tensor, n: int, c: int, t: int, poison: bool) -> tuple[Tensor, ...]:
    """Launch the finalize program over ``part`` ``(N, T, C, 8)``: ``(TP, P, G, P2, pix, kept)``, separate tensors."""
    stats = [torch.empty((n, c), dtype=part.dtype, device=part.device) for _ in range(4)]
    pix = torch.empty((n,), dtype=part.dtype, device=part.device)
    kept = torch.empty((n,), dtype=part.dtype, device=part.device)
    block_c = _next_pow2(c)
    _finalize_kernel[(n,)](
        part, *stats, pix, kept, c, t,
        POISON=poison, BLOCK_T=finalize_block_t(block_c * 8), BLOCK_CK=block_c * 8, BLOCK_C=block_c,
        ACC=_tl_acc(part.dtype),
    )  # fmt: skip
    return stats[0], stats[1], stats[2], stats[3], pix, kept


def softmax_index_forward(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    *,
    need_pixel: bool,
    poison: bool = True,
    bg_split: tuple[float, float, float, float] | None = None,
    class_w: Tensor | None = None,
    kept_w: bool = False,
    squared: bool = False,
    ignore: int | None = None,
    label_smoothing: float = 0.0,
    block_m: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Statistics pass + finalize for softmax logits ``x`` ``(N, C, M)`` and class indices ``t`` ``(N, M)``.

    Returns ``(TP, P, G, P2, F, kept)``: ``(N, C)`` x 4 and ``(N,)`` x 2, in the accumulation dtype (float32, or
    float64 for float64 logits). ``F`` is ``sum_m w_m f(log p_{t_m})`` (cross entropy for ``gamma = 0``, else the
    focal term; ``w`` = ``wpix`` or the kept mask; ``gamma_pix`` a per-pixel exponent overriding ``gamma``).
    ``bg_split`` ``(w_0, w_other, gamma_0, gamma_other)``: the pixel term's weight (times the kept mask) and exponent
    by background / other class, from the target (instead of ``wpix``/``gamma_pix``); ``class_w`` ``(C,)``: the
    pixel term's weight per class, read at each pixel's class (instead of ``wpix``), and with ``kept_w`` the kept
    count becomes the sum of that weight. ``squared``: ``P`` is ``sum v p^2`` (the squared Dice's denominator; ``G``
    needs no square for one-hot targets). ``ignore``: ``t`` holds the raw target and a pixel is kept where it is not
    this value (instead of a ``valid`` mask; its class index is then not read). ``label_smoothing`` ``eps``: the
    pixel term is ``(1 - eps) w f(log p_t) + eps / C sum_c u_c (-log p_c)`` at each kept pixel (``u``: ``class_w`` or
    1; with ``gamma = 0`` this is torch's smoothed cross entropy). ``block_m`` overrides the tile width (tests use
    small tiles so that every mask edge is hit).
    """
    n, c, m = x.shape
    bm = block_m or softmax_block_m(c)
    tiles = max(1, triton.cdiv(m, bm))
    acc = _acc(x.dtype)
    part = torch.empty((n, tiles, c, STATS), dtype=acc, device=x.device)
    gz = gamma_pix is None and bg_split is None and float(gamma) == 0.0
    split = bg_split if bg_split is not None else (0.0, 0.0, 0.0, 0.0)
    _softmax_index_stats_kernel[launch_grid(n, tiles)](
        x, t, x if valid is None else valid, x if wpix is None else wpix, x if gamma_pix is None else gamma_pix,
        x if class_w is None else class_w, part, c, m, tiles, float(gamma), *(float(v) for v in split),
        0 if ignore is None else int(ignore), float(label_smoothing), HAS_VALID=valid is not None,
        HAS_IGNORE=ignore is not None, HAS_W=wpix is not None, HAS_GPIX=gamma_pix is not None,
        BG_SPLIT=bg_split is not None, HAS_CW=class_w is not None, LS=label_smoothing != 0, KEPT_W=kept_w,
        GAMMA_ZERO=gz, NEED_PIXEL=need_pixel, SQUARED=squared, ACC=_tl_acc(acc), BLOCK_M=bm, BLOCK_C=_next_pow2(c),
    )  # fmt: skip
    tp, psum, gsum, p2, pix, kept = _finalize(part, n, c, tiles, poison)
    return tp, psum, gsum, p2, pix, kept


def softmax_index_backward(
    x: Tensor,
    t: Tensor,
    valid: Tensor | None,
    wpix: Tensor | None,
    gamma: float,
    gamma_pix: Tensor | None,
    g_tp: Tensor | None,
    g_psum: Tensor | None,
    g_pix: Tensor | None,
    *,
    scale: Tensor | None = None,
    bg_split: tuple[float, float, float, float] | None = None,
    class_w: Tensor | None = None,
    squared: bool = False,
    ignore: int | None = None,
    label_smoothing: float = 0.0,
    block_m: int | None = None,
) -> Tensor:
    """The gradient pass: ``dL/dx`` ``(N, C, M)`` in ``x``'s dtype from the incoming gradients (device pointers).

    ``g_tp``/``g_psum`` ``(N, C)`` (None: the statistics are not used), ``g_pix`` ``(N,)`` (None: no pixel term);
    ``scale`` (one element, or None) multiplies ``g_tp``, ``g_psum`` and ``g_pix`` in the kernel (no launch of its
    own). ``squared``: ``g_psum`` is the gradient of ``sum v p^2``; ``ignore`` and ``label_smoothing`` as
    :func:`softmax_index_forward`'s.
    """
    n, c, m = x.shape
    bm = block_m or softmax_block_m(c)
    tiles = max(1, triton.cdiv(m, bm))
    acc = _acc(x.dtype)
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    gz = gamma_pix is None and bg_split is None and float(gamma) == 0.0
    need_stats = g_tp is not None and g_psum is not None
    split = bg_split if bg_split is not None else (0.0, 0.0, 0.0, 0.0)
    _softmax_index_grad_kernel[launch_grid(n, tiles)](
        x, t, x if valid is None else valid, x if wpix is None else wpix, x if gamma_pix is None else gamma_pix,
        x if class_w is None else class_w,
        g_tp if g_tp is not None else x, g_psum if g_psum is not None else x, g_pix if g_pix is not None else x,
        scale if scale is not None else x, grad, c, m, tiles, float(gamma), *(float(v) for v in split),
        0 if ignore is None else int(ignore), float(label_smoothing), HAS_VALID=valid is not None,
        HAS_IGNORE=ignore is not None, HAS_W=wpix is not None, HAS_GPIX=gamma_pix is not None,
        BG_SPLIT=bg_split is not None, HAS_CW=class_w is not None, LS=label_smoothing != 0, GAMMA_ZERO=gz,
        NEED_STATS=need_stats, HAS_SCALE=scale is not None, NEED_PIXEL=g_pix is not None, SQUARED=squared,
        ACC=_tl_acc(acc), BLOCK_M=bm, BLOCK_C=_next_pow2(c),
    )  # fmt: skip
    return grad


def _sigmoid_weights(alpha: float | None, gamma: float, pos0: bool) -> tuple[float, float, float, float]:
    w1, w0 = (1.0, 1.0) if alpha is None else (float(alpha), 1.0 - float(alpha))
    return w1, w0, float(gamma), 0.0 if pos0 else float(gamma)


def sigmoid_forward(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    *,
    need_pixel: bool,
    pos0: bool = False,
    poison: bool = True,
    class_w: Tensor | None = None,
    squared: bool = False,
    ignore: int | None = None,
    label_smoothing: float = 0.0,
    block_m: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Statistics pass + finalize for sigmoid logits ``x`` and a dense target ``g``, both ``(N, C, M)``.

    Returns ``(TP, P, G, P2, F, kept)`` as :func:`softmax_index_forward` (``F`` summed over the channels of each
    image; ``kept`` counts kept elements). ``valid`` is ``(N, C, M)`` or None; ``class_w`` ``(C,)`` weighs the pixel
    term per channel; ``squared``: ``P`` and ``G`` are ``sum v p^2`` and ``sum v g^2``; ``ignore``: ``g`` is the raw
    target and an element is kept where it is not this value (instead of ``valid``); ``label_smoothing`` ``eps``: the
    pixel term's target is ``(1 - eps) g + eps / 2`` (the statistics keep ``g``).
    """
    n, c, m = x.shape
    bm = block_m or _SIGMOID_BLOCK
    tiles = max(1, triton.cdiv(m, bm))
    acc = _acc(x.dtype)
    part = torch.empty((n, tiles, c, STATS), dtype=acc, device=x.device)
    w1, w0, gam, gam_pos = _sigmoid_weights(alpha, gamma, pos0)
    _sigmoid_stats_kernel[launch_grid(n * c, tiles)](
        x, g, x if valid is None else valid, x if class_w is None else class_w, part, c, m, tiles, w1, w0, gam,
        gam_pos, 0 if ignore is None else int(ignore), float(label_smoothing), HAS_VALID=valid is not None,
        HAS_IGNORE=ignore is not None, LS=label_smoothing != 0, HAS_CW=class_w is not None, NEED_PIXEL=need_pixel,
        SQUARED=squared,
        ACC=_tl_acc(acc), BLOCK_M=bm,
    )  # fmt: skip
    tp, psum, gsum, p2, pix, kept = _finalize(part, n, c, tiles, poison)
    return tp, psum, gsum, p2, pix, kept


def sigmoid_backward(
    x: Tensor,
    g: Tensor,
    valid: Tensor | None,
    alpha: float | None,
    gamma: float,
    g_tp: Tensor | None,
    g_psum: Tensor | None,
    g_pix: Tensor | None,
    *,
    pos0: bool = False,
    scale: Tensor | None = None,
    class_w: Tensor | None = None,
    squared: bool = False,
    ignore: int | None = None,
    label_smoothing: float = 0.0,
    block_m: int | None = None,
) -> Tensor:
    """The sigmoid gradient pass (:func:`softmax_index_backward` has the incoming gradients, scale and squared)."""
    n, c, m = x.shape
    bm = block_m or _SIGMOID_BLOCK
    tiles = max(1, triton.cdiv(m, bm))
    grad = torch.empty_like(x, memory_format=torch.contiguous_format)
    w1, w0, gam, gam_pos = _sigmoid_weights(alpha, gamma, pos0)
    need_stats = g_tp is not None and g_psum is not None
    _sigmoid_grad_kernel[launch_grid(n * c, tiles)](
        x, g, x if valid is None else valid, g_tp if g_tp is not None else x, g_psum if g_psum is not None else x,
        g_pix if g_pix is not None else x, scale if scale is not None else x, x if class_w is None else class_w,
        grad, c, m, tiles, w1, w0, gam, gam_pos, 0 if ignore is None else int(ignore), float(label_smoothing),
        HAS_VALID=valid is not None, HAS_IGNORE=ignore is not None, LS=label_smoothing != 0, HAS_CW=class_w is not None,
        NEED_STATS=need_stats, HAS_SCALE=scale is not None, NEED_PIXEL=g_pix is not None, SQUARED=squared,
        ACC=_tl_acc(_acc(x.dtype)), BLOCK_M=bm,
    )  # fmt: skip
    return grad
