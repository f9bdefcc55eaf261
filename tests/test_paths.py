"""Every computation path of every loss under the NumPy float64 references.

A loss picks its path at run time (:mod:`seglosses._dispatch`): the C++ kernels of ``_native``, their chunked
PyTorch twin, the whole-tensor traced twin that ``torch.compile`` runs, the ``torch.library`` operators, or the
generic formulas on probabilities. The reference tests elsewhere see only the default path on small CPU inputs, where
the chunked twin runs a single chunk. Here each path is forced with ``_dispatch.use`` and every loss x mode x target
kind (hard/soft, index/one-hot, with and without ``ignore_index``, logits and probabilities) is compared with
``tests/reference.py``: the value, and the gradient along two random directions against a central difference of the
reference (a wrong gradient in any chunk changes the directional derivative).

``chunk_elements=48`` makes every shape here run several chunks (8 or 24 pixels each, the last one short), so a
chunk that reads or writes another chunk's slice is caught.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import seglosses.functional as SF
from conftest import MODES, TARGET_FORMS, make_case_fn
from reference import REFERENCES
from reference_lovasz import lovasz_loss as lovasz_reference
from seglosses import _dispatch, _fused

CHUNK = 48  # elements of (N, C, chunk): 8 pixels per chunk for N=2, C=3 (30 = 3 x 8 + 6), 24 for N=2, C=1

PATHS = {
    "native": {},
    "native-off-chunked": {"native": False, "chunk_elements": CHUNK},
    "traced": {"traced": True, "ops": False},
    "ops": {"ops": True},
    "ops-native-off-chunked": {"ops": True, "native": False, "chunk_elements": CHUNK},
    "generic": {"fused": False},
}

LOSSES = [*REFERENCES, "lovasz_loss"]
TWO_MODES = ("asymmetric_focal_loss", "symmetric_focal_loss", "asymmetric_focal_tversky_loss")
TWO_MODES += ("symmetric_focal_tversky_loss", "unified_focal_loss")  # binary and multiclass only


def _cases():
    """(mode, target form, ignore, from_logits): every target kind, with logits; ignore_index and probabilities
    where they apply (ignore_index with soft multiclass labels is undefined)."""
    out = []
    for mode in MODES:
        for form in TARGET_FORMS[mode]:
            out.append((mode, form, False, True))
            if mode != "multiclass" or form == "index":
                out.append((mode, form, True, True))
        out.append((mode, TARGET_FORMS[mode][0], True, False))  # probabilities with ignore_index: the generic path
    return out


def _supports(name: str, mode: str, form: str) -> bool:
    if name in TWO_MODES and mode == "multilabel":
        return False
    return not (name == "lovasz_loss" and form == "soft")  # Lovasz is defined on hard labels only


CASES = [
    pytest.param(name, *c, id=f"{name}-{c[0]}-{c[1]}{'-ignore' if c[2] else ''}{'' if c[3] else '-probs'}")
    for name in LOSSES
    for c in _cases()
    if _supports(name, c[0], c[1])
]


def _reference(name):
    return lovasz_reference if name == "lovasz_loss" else REFERENCES[name]


@functools.cache
def _expected(name, mode, form, ignore, from_logits):
    """The case, the reference value and two directional derivatives ``(v, d/dh ref(x + h v))`` (computed once)."""
    case = make_case_fn(mode, target=form, ignore=ignore, from_logits=from_logits, seed=31)
    ref = _reference(name)
    args = case.args()
    value = float(ref(case.x_np, case.t_np, **args))
    rng = np.random.default_rng(5)
    directions = []
    for _ in range(2):
        v = rng.normal(size=case.x_np.shape)
        # probabilities: a step small against the distance to 0 and 1 (log p and log(1 - p) are steep there)
        h = 1e-6 if from_logits else 1e-4 * float(np.minimum(case.x_np, 1 - case.x_np).min())
        up = float(ref(case.x_np + h * v, case.t_np, **args))
        down = float(ref(case.x_np - h * v, case.t_np, **args))
        directions.append((v, (up - down) / (2 * h)))
    return case, value, directions


def _check_path(path, case, name, value, directions):
    x = case.xg()
    with _dispatch.use(**PATHS[path]), _dispatch.record() as taken:
        out = getattr(SF, name)(x, case.t, **case.args())
        out.backward()
    np.testing.assert_allclose(out.item(), value, rtol=1e-9, atol=1e-12, err_msg="value")
    grad = x.grad.numpy()
    for v, slope in directions:
        np.testing.assert_allclose(float((grad * v).sum()), slope, rtol=1e-5, atol=1e-8, err_msg="gradient")
    # the forced path is the one that ran
    fused = [e for e in taken if not e.endswith(":-")]
    if path == "generic":
        assert fused == [], taken
    elif PATHS[path].get("ops"):
        assert all(e.endswith(":ops") for e in fused), taken
    elif PATHS[path].get("ops") is False:
        assert all(e.endswith(":autograd") for e in fused), taken


@pytest.mark.parametrize(("name", "mode", "form", "ignore", "from_logits"), CASES)
def test_every_path_matches_reference(name, mode, form, ignore, from_logits):
    case, value, directions = _expected(name, mode, form, ignore, from_logits)
    # probabilities take the generic formulas whatever is forced: the default path only
    paths = list(PATHS) if from_logits else ["native"]
    failed = []
    for path in paths:
        try:
            _check_path(path, case, name, value, directions)
        except AssertionError as err:
            failed.append(f"path {path}: {err}")
    assert not failed, "\n".join(failed)


# families whose fused pass must have run for logits (so that the forced settings above are not vacuous); with the
# operators forced, Dice, cross entropy, focal and Dice + CE run whole in one operator (the statistics pass inside it)
FUSED = {
    ("dice_loss", "multiclass", "index"): ("stats:softmax_index", "whole:softmax_index"),
    ("dice_loss", "binary", "hard"): ("stats:sigmoid_dense", "whole:sigmoid_dense"),
    ("cross_entropy_loss", "multiclass", "index"): ("pixel:softmax_index", "whole:softmax_index"),
    ("focal_loss", "multilabel", "hard"): ("pixel:sigmoid_dense", "whole:sigmoid_dense"),
    ("dice_ce_loss", "multiclass", "index"): ("stats:softmax_index", "whole:softmax_index"),
    ("dice_ce_loss", "multilabel", "soft"): ("stats:sigmoid_dense", "whole:sigmoid_dense"),
    ("unified_focal_loss", "multiclass", "index"): ("stats:softmax_index", "whole:softmax_index"),
    ("hybrid_focal_loss", "binary", "soft"): "stats:sigmoid_dense",
}


@pytest.mark.parametrize(("name", "mode", "form"), list(FUSED))
def test_forced_fused_paths_run(name, mode, form):
    case = make_case_fn(mode, target=form, seed=31)
    for path, settings in PATHS.items():
        with _dispatch.use(**settings), _dispatch.record() as taken:
            getattr(SF, name)(case.x, case.t, **case.args())
        if path == "generic":
            assert not any(e.startswith(FUSED[name, mode, form]) for e in taken), (path, taken)
        else:
            assert any(e.startswith(FUSED[name, mode, form]) for e in taken), (path, taken)
            if settings.get("ops") and name in ("dice_loss", "cross_entropy_loss", "focal_loss", "dice_ce_loss"):
                assert any(e.startswith("whole:") for e in taken), (path, taken)


@pytest.mark.parametrize("mode", MODES)
def test_chunk_setting_gives_several_chunks(mode):
    case = make_case_fn(mode, seed=31)
    n, c = case.x.shape[:2]
    m = case.x[0, 0].numel()
    assert len(_fused._chunks(n, c, m, case.x.device)) == 1  # the default: one chunk at these sizes
    with _dispatch.use(chunk_elements=CHUNK):
        spans = _fused._chunks(n, c, m, case.x.device)
    assert len(spans) >= 2
    assert spans[-1][1] - spans[-1][0] < spans[0][1] - spans[0][0]  # a short last chunk
    assert [s for s, _ in spans[1:]] == [e for _, e in spans[:-1]]  # contiguous, covering [0, m)
    assert spans[0][0] == 0
    assert spans[-1][1] == m
