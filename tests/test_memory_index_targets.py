"""No one-hot of the input's size with class-index targets, and the memory of every registry loss, pinned.

SPEC section 8 and STYLE ("The one core idea"): with index targets no one-hot tensor of the input's size is built.
The check does not trust the loss code: :mod:`memaudit` watches every ATen operator of the forward and the backward
through a ``TorchDispatchMode`` and flags a tensor of at least the logits' numel that depends on the target and not
on the logits (provenance) or whose nonzeros are exactly the target's one-hot (values). It also counts the bytes
alive at once (storages tracked from their first sighting until they die) and the bytes saved for backward, as
multiples of the float32 logits' bytes. The table of every loss x path is benchmarks/RESULTS_memory_cpu.md.

Paths: ``default`` (the C++ kernels where they apply) and ``pytorch`` (kernels off, the PyTorch twins) with the
chunk forced below the input's size (``chunk_elements=4096``, an eighth of the 2D input): the twins work in spatial
chunks by design, so what must never appear is a tensor of the *input's* size. With the default chunk (2^18
elements) an input this small is one chunk, and the twin's chunk one-hot (``_fused._onehot``) is then the whole
input (a bounded temporary: at most 2^18 elements; an input above one chunk is checked with the default chunk).
"""

from __future__ import annotations

import functools

import pytest
import torch

import seglosses
from memaudit import Report, measure
from seglosses import _dispatch

LOSSES = seglosses.available_losses()
C = 4
SPATIAL = {2: (64, 64), 3: (16, 16, 16)}  # 32768 logits each


def _inputs(dims: int, ignore: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(dims * 10 + ignore)
    s = SPATIAL[dims]
    x = torch.randn(2, C, *s, generator=g).requires_grad_(True)
    t = torch.randint(0, C, (2, *s), generator=g)
    if ignore:
        t[torch.rand(t.shape, generator=g) < 0.2] = 255
    return x, t


def _options(name: str, ignore: bool) -> dict[str, object]:
    kw: dict[str, object] = {"mode": "multiclass"}
    if name == "generalized_wasserstein_dice":
        kw["dist_matrix"] = (1 - torch.eye(C)).tolist()
    if ignore:
        kw["ignore_index"] = 255
    return kw


@functools.cache
def _measured(name: str, dims: int, ignore: bool, path: str) -> Report:
    x, t = _inputs(dims, ignore)
    loss = seglosses.get_loss(name, **_options(name, ignore))  # type: ignore[arg-type]
    forced = {"default": {}, "pytorch": {"native": False, "chunk_elements": 4096}}[path]
    with _dispatch.use(**forced):  # type: ignore[arg-type]
        loss(x, t)  # warm-up: kernel build, lazy imports, caches
        return measure(loss, x, t, num_classes=C, ignore_index=255 if ignore else None)


# -- the detector's own checks: it flags what it must, and nothing else ------------------------------------------
def _onehot_float(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    g = torch.nn.functional.one_hot(t.reshape(t.shape[0], -1), C).permute(0, 2, 1).float()
    return -(torch.log_softmax(x.reshape(*g.shape), 1) * g).sum()


def _eq_arange(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    g = t.reshape(t.shape[0], 1, -1) == torch.arange(C).view(1, C, 1)
    return -torch.where(g, torch.log_softmax(x.reshape(*g.shape), 1), 0.0).sum()


def _scatter_zeros(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    xf = x.reshape(x.shape[0], C, -1)
    g = torch.zeros_like(xf).scatter_(1, t.reshape(t.shape[0], 1, -1), 1.0)
    return -(torch.log_softmax(xf, 1) * g).sum()


def _channels_last_bool(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # a bool one-hot, (N, M, C), made without autograd
        g = torch.stack([t.reshape(t.shape[0], -1) == c for c in range(C)], -1)
    return -(torch.log_softmax(x.reshape(x.shape[0], C, -1), 1) * g.permute(0, 2, 1)).sum()


def _gathered(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    xf = x.reshape(x.shape[0], C, -1)
    return -torch.log_softmax(xf, 1).gather(1, t.reshape(t.shape[0], 1, -1)).sum()


@pytest.mark.parametrize("builder", [_onehot_float, _eq_arange, _scatter_zeros, _channels_last_bool])
def test_detector_flags_every_way_of_building_a_onehot(builder: object) -> None:
    x, t = _inputs(2, False)
    report = measure(builder, x, t, num_classes=C)  # type: ignore[arg-type]
    assert [f for f in report.onehot if f.startswith("fwd")], "values: the one-hot not recognised"
    if builder is not _channels_last_bool:  # the stack of per-class compares is (N, M) pieces: values catch it
        assert [f for f in report.target_sized if f.startswith("fwd")], "provenance: the one-hot not recognised"


def test_detector_passes_a_gather_and_counts_bytes() -> None:
    x, t = _inputs(2, False)
    report = measure(_gathered, x, t, num_classes=C)
    assert [f for f in report.onehot if f.startswith("fwd")] == []  # the gather's gradient is one-hot shaped
    assert report.target_sized == []
    # log_softmax keeps its output (1x) for backward; the gather's backward makes the gradient (1x) beside it and
    # x.grad (1x): by hand 1x saved, and a peak of at least 2x (the output and the gradient) and at most 3x + a bit
    assert report.ratio("saved") == pytest.approx(1.0, abs=0.01)
    assert 2.0 <= report.ratio("peak") <= 3.1


# -- every registry loss: no one-hot of the input's size -----------------------------------------------------------
@pytest.mark.parametrize("path", ["default", "pytorch"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-kept", "ignore"])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_builds_no_onehot_for_index_targets(
    name: str, dims: int, ignore: bool, path: str, request: pytest.FixtureRequest
) -> None:
    if path == "pytorch" and dims == 3:
        pytest.skip("the PyTorch twins are the same code in 3D; 2D suffices to keep the file fast")
    if name == "lovasz" and path == "pytorch":
        # Lovasz-softmax sorts each class's errors |[t = c] - p_c| and walks the labels in that order (Berman et al.,
        # Alg. 1): the sorted labels are one bool per (class, pixel) however they are made (a gather of t by each
        # class's permutation would be 8 bytes each), so the readable path's bool (N, C, M) `target == classes`, an
        # eighth of the float32 errors it sorts beside it (and its class-major copy for the rows), is the algorithm's
        # own; nothing else of that size comes from the target alone, and the default kernel path builds none
        report = _measured(name, dims, ignore, path)
        assert report.target_sized
        assert report.target_sized[0].startswith("fwd eq(")
        assert all("functional/lovasz.py" in f for f in report.target_sized), report.target_sized
        return
    report = _measured(name, dims, ignore, path)
    # provenance: nothing of the logits' size computed from the target alone, forward or backward (the incoming
    # gradient counts as a function of the logits, so the gradient of a gather is not the target's alone)
    assert report.target_sized == []
    # values: no tensor of the logits' size is the target's one-hot in the forward (in the backward the gradient of
    # a gather at the target's own class legitimately has the one-hot's support when its incoming gradient has no 0)
    assert [f for f in report.onehot if f.startswith("fwd")] == []


def test_pytorch_twin_builds_its_onehot_by_chunks_only() -> None:
    """The PyTorch fallback writes ``[t == c]`` chunk by chunk (at most ``_fused._CHUNK_ELEMENTS`` elements): on an
    input larger than one chunk nothing of the input's size comes from the target alone."""
    from seglosses import _fused

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, C, 192, 192, generator=g).requires_grad_(True)  # 294912 elements > 2^18
    assert x.numel() > _fused._CHUNK_ELEMENTS
    t = torch.randint(0, C, (2, 192, 192), generator=g)
    loss = seglosses.get_loss("dice", mode="multiclass")
    with _dispatch.use(native=False):
        report = measure(loss, x, t, num_classes=C)
    assert report.target_sized == []


# -- saved and peak bytes per loss, as multiples of the float32 logits (default path, 2D and 3D, no ignore) ---------
# Each bound is the measurement (benchmarks/RESULTS_memory_cpu.md) plus a margin, with the reason it holds. Unit:
# the logits (N, C, M) float32; an (N, M) float32 map is 1/C = 0.25 of it, an (N, M) bool 1/16, the gradient 1.
BOUNDS: dict[str, tuple[float, float]] = {
    # the fused softmax pass keeps the logits (not counted) and logsumexp (N, M): 0.25; peak = x.grad + that
    **{
        n: (0.3, 1.4)
        for n in (
            "dice",
            "jaccard",
            "tversky",
            "focal_tversky",
            "generalized_dice",
            "fbeta",
            "log_cosh_dice",
            "asymmetric_focal_tversky",
            "symmetric_focal_tversky",
        )
    },  # fmt: skip
    # plus the pixel term's derivative f'(log p_t) (N, M): 0.5; the peak adds the backward's (N, M) coefficient
    **{n: (0.6, 1.9) for n in ("cross_entropy", "focal", "dice_ce", "hybrid_focal")},
    # as cross entropy, with a per-pixel gamma map (N, M) held by the autograd function (not a saved tensor);
    # the forward builds the per-pixel focal factors of the asymmetric terms: measured 2.31x
    **{n: (0.6, 2.6) for n in ("unified_focal", "asymmetric_focal", "symmetric_focal")},
    # Lovasz: the kernel keeps the sorted errors' permutation and gradient weights per class ((C, M) each): 1.25
    "lovasz": (1.4, 2.5),
    # boundary: softmax (1) + the distance map (1, computed from the target, a constant) - the kept class 0: 1.75
    "boundary": (1.9, 3.3),
    # Hausdorff-DT: softmax (1), the weight map d(g)^a + d(q)^a (1), (p - g) pieces: 2.5; the maps' EDTs at peak
    "hausdorff_dt": (2.7, 7.5),
    # TopK: per-pixel CE (N, M) and its logsumexp, no softmax (index_log_p): measured 0.31 (1.31 with the softmax of
    # index_log_probs' unused p_t); the sort of the per-pixel values at peak: 3.75-4.5 from one process to another
    "topk": (0.5, 5.5),
    # sensitivity/specificity: softmax (1), p_t and its square (N, M) (0.5); the generic backward's pieces at peak
    "sensitivity_specificity": (1.7, 6.0),
    # GWD: softmax (1) and the index (the target's own storage, not counted) + (N, M) pieces: 1.25 (2.25 when the
    # gather kept the cost map)
    "generalized_wasserstein_dice": (1.4, 3.3),
    # clDice: softmax (1), ~2 sqrt(iterations) skeleton checkpoints (4) and (N, M) maps: 5.06 (5.5 with the bool
    # one-hot of the target and its skeleton, (N, C, M) each); the skeleton's recomputing backward at peak (19.25)
    "cldice": (5.3, 20.5),
    "dice_cldice": (5.6, 20.8),
    # combo: the fused pass's logsumexp (0.25) and log p_t's logsumexp (0.25): 0.5 (index_log_p builds no softmax:
    # 1.5 with the p_t of index_log_probs); its log(1 - p) is _numerics.log1m_softmax_lean, which keeps the logits
    # only (autograd through the prefix/suffix logcumsumexp kept 5.25 more: 6.75). Peak 6.0 (15.25 before): the
    # forward's exclusive logcumsumexp (3 at once) beside the statistics, and the closed-form backward's buffers
    "combo": (0.7, 6.5),
}


def test_bounds_cover_the_registry() -> None:
    assert sorted(BOUNDS) == LOSSES


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_saved_and_peak_bytes_bounded(name: str, dims: int) -> None:
    saved_bound, peak_bound = BOUNDS[name]
    report = _measured(name, dims, False, "default")
    assert report.ratio("saved") <= saved_bound
    assert report.ratio("retained") <= saved_bound + 0.3  # what the graph holds, ctx attributes included
    assert report.ratio("peak") <= peak_bound
