r"""Triton kernels of the Lovász losses (run on CUDA; on the CPU only under ``TRITON_INTERPRET=1``, for the tests).

A Lovász row is one class of the batch (``per_image=False``: ``C`` rows of ``N M`` elements) or of one image
(``per_image=True``: ``N C`` rows of ``M``). One forward is

1. **keys**: one pass over the logits (softmax over all classes in registers, or the dense input) writes each
   element's error in the row layout, ``-inf`` where the element is ignored, and counts per image and tile the
   class indices outside ``[0, C)`` at kept pixels and the NaN inputs (value checks as counters: no host
   synchronisation);
2. ``torch.sort`` of every row in decreasing order (values and positions);
3. **counts**: the positives of each tile of sorted elements (the target is read at the sorted position);
4. a prefix sum over the tiles (``torch.cumsum`` of ``(rows, tiles)`` integers: small);
5. **weights**: per tile, the running count of positives (``tl.cumsum`` plus the tile's offset) gives at rank
   :math:`k` the intersection :math:`I_k = G - \#\{\text{positives} \le k\}` and the union
   :math:`U_k = G + k - \#\{\text{positives} \le k\}`, and the weight of rank k in closed form (Berman et al.
   Alg. 1, without the cancellation of subtracting two ratios near 1): :math:`1 / U_k` for a positive,
   :math:`I_k / ((U_k - 1) U_k)` for a negative (1 at :math:`U_k = 1`). Each program writes its partial
   :math:`\sum_k w_k e_{(k)}` (no float atomics: the rows' values are the sums of these partials in a fixed order)
   and scatters :math:`W = (1 - 2g) w` to the element's own position (0 where the element cannot move the value:
   ignored, or a hinge error :math:`\le 0`).

The backward is one pass: ``dL/dz = s_r W`` for the dense forms (the slope of the error in ``z`` is ``1 - 2g`` for
both the hinge and the flat error), and for the softmax ``a = s_r W``, ``dL/dx_c = p_c (a_c - \sum_k p_k a_k)``
with the softmax recomputed from the logits (nothing of the input's size is saved but ``W``).

Steps 2-5 run on a chunk of rows at a time (an eighth of the elements, whole rows), and ``W`` is written in the
row layout over the keys of the rows already sorted. Extra memory of one forward: the keys (then ``W``, 1x the float32
logits) and ``torch.sort``'s working memory for one chunk (the sorted copy, the int64 positions and its radix sort's
buffers, roughly 9x the chunk); with a single row (binary, ``per_image=False``) the chunk is the whole input.
The PyTorch twin is :func:`seglosses._ops.lovasz_fwd`'s CPU path; the tests pin the two equal.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from seglosses._triton import _acc, _next_pow2, _tl_acc, launch_grid, softmax_block_m

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

#: Sorted elements per program of the counts and weights passes (contiguous loads of one row).
_ROW_BLOCK = 1024
#: Elements per program of the dense keys pass.
_DENSE_BLOCK = 1024
#: The smallest number of elements sorted at a time (below it the chunks would only add launches).
_MIN_SORT_CHUNK = 1 << 16


def _sort_chunk(numel: int) -> int:
    """Elements sorted at a time: an eighth of the rows' elements (at least ``_MIN_SORT_CHUNK``), whole rows.

    So ``torch.sort``'s working memory (the sorted copy, its int64 positions and the buffers of its radix sort,
    about 9 bytes per float32 element) is an eighth of what one sort of every row would take, when there are
    several rows; a single row is sorted whole.
    """
    return max(_MIN_SORT_CHUNK, -(-numel // 8))


if triton is not None:
    from seglosses._triton import _softmax_tile

    @triton.jit  # type: ignore[untyped-decorator]
    def _row_address(
        nc: tl.tensor,
        c: tl.tensor,
        n: tl.tensor,
        m: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        PER_IMAGE: tl.constexpr,
    ) -> Any:
        """Where element ``(n, c, m)`` sits in the row layout: ``(n C + c) M + m`` or ``c (N M) + n M + m``."""
        if PER_IMAGE:
            addr = nc.to(tl.int64) * M + m
        else:
            addr = c.to(tl.int64) * L + n.to(tl.int64) * M + m
        return addr

    @triton.jit  # type: ignore[untyped-decorator]
    def _keys_softmax_kernel(
        x_ptr: tl.tensor,
        t_ptr: tl.tensor,
        v_ptr: tl.tensor,
        key_ptr: tl.tensor,
        flag_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        T: tl.tensor,
        HAS_VALID: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """Errors ``|[t = c] - p_c|`` of one (image, pixel tile), all classes; ``-inf`` at ignored pixels."""
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        n = pid // T
        tile = pid % T
        offs_m = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        offs_c = tl.arange(0, BLOCK_C)
        mm = offs_m < M
        mc = offs_c < C
        p, logp_t, q, onehot, bad, isnan, _, _ = _softmax_tile(x_ptr, t_ptr, n, offs_m, offs_c, C, M, ACC)
        kept = mm
        if HAS_VALID:
            v = tl.load(v_ptr + n.to(tl.int64) * M + offs_m, mask=mm, other=0.0)
            kept = kept & (v > 0)
        err = tl.where(onehot, 1.0 - p, p)
        key = tl.where(kept[None, :], err, float("-inf"))
        nc = n * C + offs_c
        addr = _row_address(nc[:, None], offs_c[:, None], n, offs_m[None, :], C, M, L, PER_IMAGE)
        tl.store(key_ptr + addr, key, mask=mc[:, None] & mm[None, :])
        flags = tl.sum(tl.where(mm, isnan, 0), axis=0) + tl.sum((bad & kept).to(tl.int32), axis=0)
        tl.store(flag_ptr + n * T + tile, flags)

    @triton.jit  # type: ignore[untyped-decorator]
    def _keys_dense_kernel(
        z_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        key_ptr: tl.tensor,
        flag_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        T: tl.tensor,
        HAS_VALID: tl.constexpr,
        HINGE: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ) -> None:
        """Errors of one (image x channel, tile): ``1 - z (2g - 1)`` (hinge) or ``|g - z|``; ``-inf`` if ignored."""
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        nc = pid // T
        tile = pid % T
        offs = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        mm = offs < M
        base = nc.to(tl.int64) * M
        z = tl.load(z_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        g = tl.load(g_ptr + base + offs, mask=mm, other=0.0).to(ACC)
        kept = mm
        if HAS_VALID:
            v = tl.load(v_ptr + base + offs, mask=mm, other=0.0)
            kept = kept & (v > 0)
        pos = g > 0.5
        if HINGE:
            err = 1.0 - z * tl.where(pos, 1.0, -1.0)
        else:
            err = tl.abs(tl.where(pos, 1.0, 0.0) - z)
        key = tl.where(kept, err, float("-inf"))
        n = nc // C
        c = nc % C
        tl.store(key_ptr + _row_address(nc, c, n, offs, C, M, L, PER_IMAGE), key, mask=mm)
        flags = tl.sum(((z != z) & mm).to(tl.int32), axis=0) + tl.sum(((g != g) & mm).to(tl.int32), axis=0)
        tl.store(flag_ptr + nc * T + tile, flags)

    @triton.jit  # type: ignore[untyped-decorator]
    def _sorted_target(
        idx: tl.tensor,
        r: tl.tensor,
        t_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        mask: tl.tensor,
        SOFTMAX: tl.constexpr,
        HAS_VALID: tl.constexpr,
        PER_IMAGE: tl.constexpr,
    ) -> Any:
        """The target bit (a kept positive) of row ``r``'s elements at positions ``idx`` of the row."""
        if PER_IMAGE:
            n = r // C
            c = r % C
            m = idx
        else:
            n = idx // M
            c = r
            m = idx % M
        pix = n.to(tl.int64) * M + m
        off = (n.to(tl.int64) * C + c) * M + m
        if SOFTMAX:
            t = tl.load(t_ptr + pix, mask=mask, other=-1).to(tl.int64)
            # a class index outside [0, C) (its rows are NaN by the counter) reads as class 0: a present class, as
            # the other paths' clamped indices are, so the loss keeps a NaN row even where no class is present
            pos = (t == c) | ((c == 0) & ((t < 0) | (t >= C)))
            if HAS_VALID:
                pos = pos & (tl.load(v_ptr + pix, mask=mask, other=0.0) > 0)
        else:
            pos = tl.load(g_ptr + off, mask=mask, other=0.0) > 0.5
            if HAS_VALID:
                pos = pos & (tl.load(v_ptr + off, mask=mask, other=0.0) > 0)
        return pos & mask

    @triton.jit  # type: ignore[untyped-decorator]
    def _count_kernel(
        idx_ptr: tl.tensor,
        t_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        cnt_ptr: tl.tensor,
        R0: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        T: tl.tensor,
        SOFTMAX: tl.constexpr,
        HAS_VALID: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        BLOCK: tl.constexpr,
    ) -> None:
        """The number of positives in one tile of one sorted row (row ``R0 + program`` of the whole set)."""
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        r = pid // T
        tile = pid % T
        offs = tile.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: a row of N M elements may pass 2^31
        mask = offs < L
        idx = tl.load(idx_ptr + r.to(tl.int64) * L + offs, mask=mask, other=0)
        pos = _sorted_target(idx, R0 + r, t_ptr, g_ptr, v_ptr, C, M, mask, SOFTMAX, HAS_VALID, PER_IMAGE)
        tl.store(cnt_ptr + r * T + tile, tl.sum(pos.to(tl.int32), axis=0))

    @triton.jit  # type: ignore[untyped-decorator]
    def _weights_kernel(
        val_ptr: tl.tensor,
        idx_ptr: tl.tensor,
        t_ptr: tl.tensor,
        g_ptr: tl.tensor,
        v_ptr: tl.tensor,
        before_ptr: tl.tensor,
        total_ptr: tl.tensor,
        w_ptr: tl.tensor,
        part_ptr: tl.tensor,
        R0: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        T: tl.tensor,
        SOFTMAX: tl.constexpr,
        HINGE: tl.constexpr,
        HAS_VALID: tl.constexpr,
        PER_IMAGE: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
    ) -> None:
        """Lovász weights of one tile of one sorted row: the partial value, and ``W = (1 - 2g) w`` scattered.

        ``W`` is written in the row layout of the whole set (row ``R0 + program``, the element's position).
        """
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        r = pid // T
        tile = pid % T
        offs = tile.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: a row of N M elements may pass 2^31
        mask = offs < L
        row = r.to(tl.int64) * L
        idx = tl.load(idx_ptr + row + offs, mask=mask, other=0)
        val = tl.load(val_ptr + row + offs, mask=mask, other=float("-inf")).to(ACC)
        pos = _sorted_target(idx, R0 + r, t_ptr, g_ptr, v_ptr, C, M, mask, SOFTMAX, HAS_VALID, PER_IMAGE)
        cum = tl.cumsum(pos.to(tl.int32), axis=0).to(tl.int64) + tl.load(before_ptr + r * T + tile)
        total = tl.load(total_ptr + r)
        union = total + (offs.to(tl.int64) + 1) - cum  # U_k >= 1
        inter = total - cum  # I_k
        uf = union.to(ACC)
        den = tl.where(union == 1, 1.0, (uf - 1.0) * uf)
        w_neg = tl.where(union == 1, 1.0, inter.to(ACC) / den)
        w = tl.where(pos, 1.0 / uf, w_neg)
        if HINGE:
            active = (val > 0) | (val != val)  # a NaN error stays in the value (NaN), as in the PyTorch path
        else:
            active = val != float("-inf")
        active = active & mask
        tl.store(part_ptr + r * T + tile, tl.sum(tl.where(active, val, 0.0) * w, axis=0))
        w_row = (R0 + r).to(tl.int64) * L
        tl.store(w_ptr + w_row + idx, tl.where(active, tl.where(pos, -w, w), 0.0), mask=mask)

    @triton.jit  # type: ignore[untyped-decorator]
    def _softmax_grad_kernel(
        x_ptr: tl.tensor,
        t_ptr: tl.tensor,
        w_ptr: tl.tensor,
        s_ptr: tl.tensor,
        grad_ptr: tl.tensor,
        C: tl.tensor,
        M: tl.tensor,
        L: tl.tensor,
        T: tl.tensor,
        PER_IMAGE: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        """``dL/dx_c = p_c (a_c - sum_k p_k a_k)`` with ``a = s W`` for one (image, pixel tile)."""
        pid = tl.program_id(0)  # one grid axis (see launch_grid)
        n = pid // T
        tile = pid % T
        offs_m = tile.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # int64: M may pass 2^31
        offs_c = tl.arange(0, BLOCK_C)
        mm = offs_m < M
        mc = offs_c < C
        p, logp_t, q, onehot, bad, isnan, _, _ = _softmax_tile(x_ptr, t_ptr, n, offs_m, offs_c, C, M, ACC)
        if PER_IMAGE:
            s = tl.load(s_ptr + n * C + offs_c, mask=mc, other=0.0).to(ACC)
        else:
            s = tl.load(s_ptr + offs_c, mask=mc, other=0.0).to(ACC)
        addr = n.to(tl.int64) * C * M + offs_c[:, None].to(tl.int64) * M + offs_m[None, :]
        w_addr = _row_address(n * C + offs_c[:, None], offs_c[:, None], n, offs_m[None, :], C, M, L, PER_IMAGE)
        both = mc[:, None] & mm[None, :]
        a = tl.load(w_ptr + w_addr, mask=both, other=0.0).to(ACC) * s[:, None]
        dot = tl.sum(p * a, axis=0)
        grad = p * (a - dot[None, :])
        tl.store(grad_ptr + addr, grad.to(grad_ptr.dtype.element_ty), mask=both)


def lovasz_forward(
    z: Tensor,
    t: Tensor | None,
    g: Tensor | None,
    valid: Tensor | None,
    *,
    hinge: bool,
    per_image: bool,
    block_m: int | None = None,
    block_l: int | None = None,
    chunk_elements: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The Lovász rows of ``z`` ``(N, C, M)``: logits with class indices ``t``, or a dense input with target ``g``.

    With ``t`` ``(N, M)``: the softmax over the classes (Lovász-softmax); else ``g`` ``(N, C, M)`` 0/1 and the
    hinge on logits (``hinge``) or the flat error ``|g - z|`` on probabilities.

    ``valid``: ``(N, M)`` (indices) or ``(N, C, M)`` (dense) 0/1 mask of kept elements, or None.
    Returns ``(value, positives, W)``: per row (``(N C,)`` per image, else ``(C,)``) the Lovász extension
    :math:`\sum_k w_k e_{(k)}` and the kept positives :math:`G`, in the accumulation dtype (NaN for the rows that
    hold a NaN input or a bad class index at a kept pixel), and ``W``, the derivative of the row's
    value with respect to ``z`` (softmax: with respect to the probabilities), flat, in the row layout (``(N C, M)``
    per image, else ``(C, N M)``). ``block_m``/``block_l`` override the tile widths and ``chunk_elements`` the
    elements sorted at a time (tests use small ones so that every tile edge and several chunks are hit).
    """
    n, c, m = z.shape
    softmax = t is not None
    rows, length = (n * c, m) if per_image else (c, n * m)
    acc = _acc(z.dtype)
    keys = torch.empty((rows, length), dtype=acc, device=z.device)
    if softmax:
        bm = block_m or softmax_block_m(c)
        tiles = max(1, triton.cdiv(m, bm))
        flags = torch.empty((n, tiles), dtype=torch.int32, device=z.device)
        _keys_softmax_kernel[launch_grid(n, tiles)](
            z, t, z if valid is None else valid, keys, flags, c, m, n * m, tiles,
            HAS_VALID=valid is not None, PER_IMAGE=per_image, ACC=_tl_acc(acc), BLOCK_M=bm, BLOCK_C=_next_pow2(c),
        )  # fmt: skip
    else:
        bm = block_m or _DENSE_BLOCK
        tiles = max(1, triton.cdiv(m, bm))
        flags = torch.empty((n * c, tiles), dtype=torch.int32, device=z.device)
        _keys_dense_kernel[launch_grid(n * c, tiles)](
            z, g, z if valid is None else valid, keys, flags, c, m, n * m, tiles,
            HAS_VALID=valid is not None, HINGE=hinge, PER_IMAGE=per_image, ACC=_tl_acc(acc), BLOCK_M=bm,
        )  # fmt: skip
    bl = block_l or _ROW_BLOCK
    ltiles = max(1, triton.cdiv(length, bl))
    tt = z if t is None else t
    gg = z if g is None else g
    vv = z if valid is None else valid
    common = {"SOFTMAX": softmax, "HAS_VALID": valid is not None, "PER_IMAGE": per_image, "BLOCK": bl}
    value = torch.empty((rows,), dtype=acc, device=z.device)
    total = torch.empty((rows,), dtype=torch.int64, device=z.device)
    # rows sorted a chunk at a time: torch.sort's working memory (sorted copy, int64 positions, its own buffers)
    # is that of one chunk; the keys of a sorted chunk are not needed again, so W takes their place (row layout)
    step = max(1, min(rows, (chunk_elements or _sort_chunk(rows * length)) // max(1, length)))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        vals, idx = torch.sort(keys[r0:r1], dim=-1, descending=True, stable=True)  # ties: position order
        cnt = torch.empty((r1 - r0, ltiles), dtype=torch.int32, device=z.device)
        _count_kernel[launch_grid(r1 - r0, ltiles)](idx, tt, gg, vv, cnt, r0, c, m, length, ltiles, **common)
        before = torch.cumsum(cnt, 1)  # int64
        total[r0:r1] = before[:, -1]
        before.sub_(cnt)  # positives in the earlier tiles of the row
        part = torch.empty((r1 - r0, ltiles), dtype=acc, device=z.device)
        _weights_kernel[launch_grid(r1 - r0, ltiles)](
            vals, idx, tt, gg, vv, before, total[r0:r1], keys, part, r0, c, m, length, ltiles,
            HINGE=hinge and not softmax, ACC=_tl_acc(acc), **common,
        )  # fmt: skip
        del vals, idx
        value[r0:r1] = part.sum(1)
    # the value-check counters: NaN where an input is NaN or a kept index is outside [0, C) (no synchronisation)
    flagged = flags.sum(1)  # per image (softmax) or per image and channel (dense)
    if softmax:
        per_row = flagged.view(n, 1).expand(n, c).reshape(-1) if per_image else flagged.sum().expand(c)
    else:
        per_row = flagged if per_image else flagged.view(n, c).sum(0)
    value = value + torch.where(per_row > 0, float("nan"), 0.0).to(acc)
    return value, total.to(acc), keys.view(-1)


def lovasz_backward(
    z: Tensor,
    t: Tensor | None,
    weights: Tensor,
    scale: Tensor,
    *,
    per_image: bool,
    block_m: int | None = None,
) -> Tensor:
    """``dL/dz`` ``(N, C, M)`` in ``z``'s dtype from ``W`` of :func:`lovasz_forward` (flat, row layout).

    ``scale`` is the rows' incoming gradient (``(N C,)`` per image, else ``(C,)``). With ``t`` (the softmax form)
    ``z`` are the logits.
    """
    n, c, m = z.shape
    if t is None:
        if per_image:
            return (weights.view(n, c, m) * scale.view(n, c, 1).to(weights.dtype)).to(z.dtype)
        rows = weights.view(c, n, m) * scale.view(c, 1, 1).to(weights.dtype)
        return rows.transpose(0, 1).to(z.dtype, memory_format=torch.contiguous_format)
    acc = _acc(z.dtype)
    bm = block_m or softmax_block_m(c)
    tiles = max(1, triton.cdiv(m, bm))
    grad = torch.empty_like(z, memory_format=torch.contiguous_format)
    _softmax_grad_kernel[launch_grid(n, tiles)](
        z, t, weights, scale.contiguous(), grad, c, m, n * m, tiles,
        PER_IMAGE=per_image, ACC=_tl_acc(acc), BLOCK_M=bm, BLOCK_C=_next_pow2(c),
    )  # fmt: skip
    return grad
