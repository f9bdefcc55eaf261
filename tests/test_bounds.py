"""Every hyperparameter bound of every loss, tried at its ends: just inside passes, just outside raises.

The legal intervals below are written here from the papers and the documented rules, not read from the library's
declarations, so a bound dropped from (or loosened in) a declaration makes a test fail:

- smoothing constants ``smooth >= 0``; Tversky's ``alpha, beta >= 0`` (Salehi et al. 2017: weights of FP and FN);
- focal Tversky ``gamma > 0`` (Abraham & Khan 2019, ``(1 - TI)^gamma``: gamma = 0 makes the loss a constant 1);
- focal ``gamma >= 0`` (Lin et al. 2017: 0 is cross-entropy), its class balance ``alpha`` in [0, 1];
- label smoothing in [0, 1]; combo's ``alpha`` (the CE share) and ``beta`` (the FN weight) in [0, 1] (Taghanaki
  et al. 2019); convex weights and the unified focal family's ``delta`` in [0, 1];
- the unified focal family's ``gamma`` in [0, 1] (Yeung et al. 2022: the Tversky term is raised to ``1 - gamma``
  and the focal term's ``(1 - p)^gamma`` suppression is meant to be at most linear);
- dice + CE's term weights ``>= 0``.

Each finite end is tried with the next representable float: at a closed end the end itself passes and the next
float outward raises; at an open end the end itself raises and the next float inward passes. The function, the
Module's constructor and ``get_loss`` are all tried, and each error message names the function, the argument and
the violated bound.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from seglosses.registry import SEARCH_SPACES, available_losses, get_loss, loss_class

INF = math.inf
CLOSED_UNIT = (0.0, 1.0, False, False)
NONNEG = (0.0, INF, False, False)
POS = (0.0, INF, True, False)

# (low, high, low_open, high_open) of each real hyperparameter, per registry name
PAPERS: dict[str, dict[str, tuple[float, float, bool, bool]]] = {
    "dice": {"smooth": NONNEG},
    "jaccard": {"smooth": NONNEG},
    "tversky": {"alpha": NONNEG, "beta": NONNEG, "smooth": NONNEG},
    "focal_tversky": {"alpha": NONNEG, "beta": NONNEG, "gamma": POS, "smooth": NONNEG},
    "generalized_dice": {"smooth": NONNEG},
    "cross_entropy": {"label_smoothing": CLOSED_UNIT},
    "focal": {"alpha": CLOSED_UNIT, "gamma": NONNEG},
    "dice_ce": {"ce_weight": NONNEG, "dice_weight": NONNEG, "smooth": NONNEG, "label_smoothing": CLOSED_UNIT},
    "combo": {"alpha": CLOSED_UNIT, "beta": CLOSED_UNIT, "smooth": NONNEG},
    "hybrid_focal": {
        "weight": CLOSED_UNIT,
        "focal_alpha": CLOSED_UNIT,
        "focal_gamma": NONNEG,
        "tversky_alpha": NONNEG,
        "tversky_beta": NONNEG,
        "tversky_gamma": POS,
        "smooth": NONNEG,
    },
    "unified_focal": {"weight": CLOSED_UNIT, "delta": CLOSED_UNIT, "gamma": CLOSED_UNIT, "smooth": NONNEG},
    "asymmetric_focal": {"delta": CLOSED_UNIT, "gamma": NONNEG},
    "symmetric_focal": {"delta": CLOSED_UNIT, "gamma": NONNEG},
    "asymmetric_focal_tversky": {"delta": CLOSED_UNIT, "gamma": CLOSED_UNIT, "smooth": NONNEG},
    "symmetric_focal_tversky": {"delta": CLOSED_UNIT, "gamma": CLOSED_UNIT, "smooth": NONNEG},
    "lovasz": {},
    # the rest of the catalogue
    "boundary": {},
    "hausdorff_dt": {"alpha": NONNEG},  # Karimi & Salcudean 2019: the distance maps' exponent (they keep 2)
    "cldice": {"smooth": NONNEG},
    "dice_cldice": {"alpha": CLOSED_UNIT, "smooth": NONNEG},  # Shit et al. 2021: a convex combination
    "log_cosh_dice": {"smooth": NONNEG},
    "topk": {"k": (0.0, 100.0, True, False), "label_smoothing": CLOSED_UNIT},  # the percentage of pixels kept
    "sensitivity_specificity": {"r": CLOSED_UNIT, "eps": POS},  # Brosch et al. 2015: r weighs the two terms
    "fbeta": {"beta": NONNEG, "smooth": NONNEG},
    "generalized_wasserstein_dice": {"smooth": NONNEG},
}
# whole-number hyperparameters: their smallest legal value (clDice's skeleton iterations: 0 is no thinning)
INTEGERS: dict[str, dict[str, int]] = {"cldice": {"iterations": 0}, "dice_cldice": {"iterations": 0}}
REGISTERED = set(available_losses())


def _ends():
    for name, params in PAPERS.items():
        if name not in REGISTERED:
            continue
        for key, (low, high, low_open, high_open) in params.items():
            for end, value, is_open, outward in (("low", low, low_open, -INF), ("high", high, high_open, INF)):
                if math.isinf(value):
                    continue
                inside = math.nextafter(value, -outward) if is_open else value
                outside = value if is_open else math.nextafter(value, outward)
                op = (">" if is_open else ">=") if end == "low" else ("<" if is_open else "<=")
                yield pytest.param(name, key, inside, outside, f"{op} {value:g}", id=f"{name}-{key}-{end}")
    for name, ints in INTEGERS.items():
        if name not in REGISTERED:
            continue
        for key, low in ints.items():
            yield pytest.param(name, key, low, low - 1, f">= {low}", id=f"{name}-{key}-low")


ENDS = list(_ends())

X = torch.tensor([[[[0.5, -1.0, 3.0], [2.0, 0.0, -4.0]]]], dtype=torch.float64)
G = torch.tensor([[[[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]], dtype=torch.float64)
XM = torch.tensor([[[[0.5, -1.0, 3.0], [2.0, 0.0, -4.0]], [[1.0, 2.0, -3.0], [0.0, 0.5, 1.0]]]], dtype=torch.float64)
XM = torch.cat([XM, -XM.sum(1, keepdim=True)], 1)  # (1, 3, 2, 3)
TM = torch.tensor([[[0, 1, 2], [2, 1, 0]]])


def call(name: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, object]]:
    """An input, a target and the required keyword arguments under which ``name`` runs (binary if it can)."""
    if "binary" in loss_class(name)._modes:
        return X, G, {"mode": "binary"}
    kw: dict[str, object] = {"mode": "multiclass"}
    if name == "generalized_wasserstein_dice":
        kw["dist_matrix"] = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [1.0, 0.5, 0.0]], dtype=torch.float64)
    return XM, TM, kw


def test_every_registered_loss_has_its_bounds_written_here():
    assert REGISTERED <= set(PAPERS)


@pytest.mark.parametrize(("name", "key", "inside", "outside", "bound"), ENDS)
def test_bound_inside_passes_outside_raises(name, key, inside, outside, bound):
    cls = loss_class(name)
    fn = cls._function
    x0, t, kw = call(name)
    x = x0.clone().requires_grad_(True)
    value = fn(x, t, **kw, **{key: inside})
    assert value.ndim == 0
    assert torch.isfinite(value)
    if value.requires_grad:  # (a loss can be constant at an end, e.g. the focal Tversky term at gamma = 1)
        value.backward()
        assert torch.isfinite(x.grad).all()
    assert torch.isfinite(cls(**kw, **{key: inside})(x0, t))
    assert torch.isfinite(get_loss(name, **kw, **{key: inside})(x0, t))

    msg = re.escape(f"{fn.__name__}: `{key}` must be {bound}; got")
    with pytest.raises(ValueError, match=msg):
        fn(x0, t, **kw, **{key: outside})
    with pytest.raises(ValueError, match=msg):
        cls(**kw, **{key: outside})
    with pytest.raises(ValueError, match=msg):
        get_loss(name, **kw, **{key: outside})


REALS = [pytest.param(n, k, id=f"{n}-{k}") for n, ps in PAPERS.items() if n in REGISTERED for k in ps]


@pytest.mark.parametrize(("name", "key"), REALS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_hyperparameter_raises(name, key, bad):
    cls = loss_class(name)
    x, t, kw = call(name)
    msg = re.escape(f"{cls._function.__name__}: `{key}` must be finite; got")
    with pytest.raises(ValueError, match=msg):
        cls._function(x, t, **kw, **{key: bad})
    with pytest.raises(ValueError, match=msg):
        cls(**kw, **{key: bad})


@pytest.mark.parametrize(("name", "key"), REALS)
def test_non_number_hyperparameter_raises(name, key):
    cls = loss_class(name)
    x, t, kw = call(name)
    msg = re.escape(f"{cls._function.__name__}: `{key}` must be ")
    for bad in (True, "0.5", None):
        if bad is None and key in ("alpha", "focal_alpha") and name in ("focal", "hybrid_focal"):
            continue  # None is the focal loss's "no class balance"
        with pytest.raises((TypeError, ValueError), match=msg):
            cls._function(x, t, **kw, **{key: bad})
        with pytest.raises((TypeError, ValueError), match=msg):
            cls(**kw, **{key: bad})


FLAGS = [
    ("dice", "squared"),
    ("dice", "log_loss"),
    ("dice_ce", "squared"),
    ("dice_ce", "log_loss"),
    ("unified_focal", "asymmetric"),
    ("lovasz", "per_image"),
]


@pytest.mark.parametrize(("name", "key"), FLAGS)
def test_flag_must_be_a_bool(name, key):
    cls = loss_class(name)
    msg = re.escape(f"{cls._function.__name__}: `{key}` must be a bool; got int 1")
    with pytest.raises(TypeError, match=msg):
        cls._function(X, G, mode="binary", **{key: 1})
    with pytest.raises(TypeError, match=msg):
        cls(mode="binary", **{key: 1})
    for ok in (False, True):
        assert torch.isfinite(cls(mode="binary", **{key: ok})(X, G))


def test_lovasz_classes_is_present_or_all():
    cls = loss_class("lovasz")
    x = torch.randn(1, 3, 2, 3, dtype=torch.float64)
    t = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    for ok in ("present", "all"):
        assert torch.isfinite(cls._function(x, t, mode="multiclass", classes=ok))
        assert torch.isfinite(cls(mode="multiclass", classes=ok)(x, t))
    msg = r"lovasz_loss: `classes` must be one of 'present', 'all'; got 'presnt' \(did you mean 'present'\?\)"
    with pytest.raises(ValueError, match=msg):
        cls._function(x, t, mode="multiclass", classes="presnt")
    with pytest.raises(ValueError, match=msg):
        cls(mode="multiclass", classes="presnt")


@pytest.mark.parametrize(("name", "key"), [("focal", "alpha"), ("hybrid_focal", "focal_alpha")])
def test_focal_class_balance_forms(name, key):
    cls = loss_class(name)
    fn = cls._function.__name__
    x = torch.randn(1, 3, 2, 3, dtype=torch.float64)
    t = torch.tensor([[[0, 1, 2], [2, 1, 0]]])
    # multiclass: per-class weights or None; a scalar raises
    assert torch.isfinite(cls(mode="multiclass", **{key: [0.2, 0.3, 0.5]})(x, t))
    assert torch.isfinite(cls(mode="multiclass", **{key: None})(x, t))
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `{key}` for mode='multiclass' must be a sequence")):
        cls(mode="multiclass", **{key: 0.25})
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `{key}` must hold finite values >= 0")):
        cls(mode="multiclass", **{key: [0.2, -0.3, 0.5]})
    # binary: "auto" is accepted, other strings raise
    assert torch.isfinite(cls(mode="binary", **{key: "auto"})(X, G))
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `{key}` must be a float, a sequence of floats, None")):
        cls(mode="binary", **{key: "balanced"})


# ------------------------------------------------------------------------------------ the search spaces of `tune`


def _inside(bounds: tuple[float, float, bool, bool], v: float) -> bool:
    low, high, low_open, high_open = bounds
    return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)


@pytest.mark.parametrize("name", sorted(SEARCH_SPACES))
def test_search_space_lies_inside_the_legal_values(name):
    cls = loss_class(name)
    _, _, kw = call(name)
    for key, param in SEARCH_SPACES[name].items():
        modes = param.modes or (kw["mode"],)
        if param.kind == "int":
            assert param.low < param.high, (name, key)
            assert param.low >= INTEGERS[name][key], (name, key, param.low)
            values: tuple[object, ...] = (int(param.low), int(param.high))
        elif param.kind == "float":
            assert param.low < param.high, (name, key)
            assert _inside(PAPERS[name][key], param.low), (name, key, param.low)
            assert _inside(PAPERS[name][key], param.high), (name, key, param.high)
            values = (param.low, param.high)
        elif param.kind == "bool":
            values = (False, True)
        else:
            values = param.choices
        for mode in modes:
            for v in values:
                cls(**{**kw, "mode": mode, key: v})  # every value the search may propose builds the loss


# ------------------------------------------------------------------- the declarations beside each loss function


def _declared_intervals(name: str) -> dict[str, tuple[float, float, bool, bool]]:
    from seglosses._checks import ClassBalance, Interval, declared

    out = {}
    for key, rule in declared(loss_class(name)._function).items():
        interval = rule.interval if isinstance(rule, ClassBalance) else rule
        if isinstance(interval, Interval) and key not in INTEGERS.get(name, {}):
            low = -INF if interval.low is None else interval.low
            high = INF if interval.high is None else interval.high
            out[key] = (low, high, interval.low_open, interval.high_open)
    return out


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_declared_bounds_are_the_papers_rules(name):
    # one declaration (@hyperparameters beside the function) is read by the function, the Module and `tune`
    assert _declared_intervals(name) == PAPERS[name]


def test_search_spaces_are_checked_against_the_declarations():
    from seglosses.registry import Param, check_search_spaces

    check_search_spaces(SEARCH_SPACES)
    with pytest.raises(ValueError, match=r"'gamma' samples \[0, 3\] outside its declared bounds \(0, inf\)"):
        check_search_spaces({"focal_tversky": {"gamma": Param("float", 0.0, 3.0)}})  # gamma > 0 is declared
    with pytest.raises(ValueError, match=r"'gamma' samples \[0.5, 1.5\] outside its declared bounds \[0, 1\]"):
        check_search_spaces({"unified_focal": {"gamma": Param("float", 0.5, 1.5)}})
    with pytest.raises(ValueError, match=r"declares no hyperparameter 'gama'"):
        check_search_spaces({"focal_tversky": {"gama": Param("float", 0.1, 3.0)}})
