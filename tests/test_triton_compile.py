"""Every Triton kernel compiles ahead of time for a CUDA GPU (sm_90: H100/H200), on a machine without one.

The interpreter (tests/test_triton*.py, ``TRITON_INTERPRET=1``) runs a kernel's Python and checks its numbers; the
compiler is stricter (what a kernel may reference, the types of values carried through loops and branches, what a
constexpr branch may contain), and a kernel only the interpreter accepts fails at its first launch on a GPU. Here
``triton.compile`` with a ``GPUTarget`` runs the whole pipeline (frontend, Triton and GPU passes, LLVM, ``ptxas``)
without a driver, for every kernel and every combination of its constexpr flags that the launch code uses.
Skipped where triton (with its CUDA backend) is not installed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
pytest.importorskip("triton.backends.nvidia")

from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from seglosses import _edt_device, _triton, _triton_lovasz, _triton_whole  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION:UserWarning")

#: Pointer element types by argument name (others: float32).
POINTERS = {
    "t_ptr": "*i64",
    "idx_ptr": "*i64",
    "flag_ptr": "*i32",
    "cnt_ptr": "*i32",
    "before_ptr": "*i64",
    "total_ptr": "*i64",
    "src_ptr": "*fp64",
    "dst_ptr": "*fp64",
}
#: Integer scalars (others: float32).
INTS = {"C", "M", "L", "T", "N", "R0"}
#: Block sizes (constexpr) by name.
BLOCKS = {"BLOCK_M": 64, "BLOCK_C": 4, "BLOCK": 128, "BLOCK_T": 64, "BLOCK_CK": 32, "BLOCK_L": 128, "BLOCK_I": 64,
          "BLOCK_J": 64}  # fmt: skip
#: Constexpr values that are not flags.
FIXED: dict[str, dict[str, Any]] = {
    "_whole_kernel": {"TERM": (0, 1, 2)},
}

KERNELS = {
    "_softmax_index_stats_kernel": _triton._softmax_index_stats_kernel,
    "_finalize_kernel": _triton._finalize_kernel,
    "_softmax_index_grad_kernel": _triton._softmax_index_grad_kernel,
    "_sigmoid_stats_kernel": _triton._sigmoid_stats_kernel,
    "_sigmoid_grad_kernel": _triton._sigmoid_grad_kernel,
    "_keys_softmax_kernel": _triton_lovasz._keys_softmax_kernel,
    "_keys_dense_kernel": _triton_lovasz._keys_dense_kernel,
    "_count_kernel": _triton_lovasz._count_kernel,
    "_weights_kernel": _triton_lovasz._weights_kernel,
    "_softmax_grad_kernel": _triton_lovasz._softmax_grad_kernel,
    "_whole_kernel": _triton_whole._whole_kernel,
    "_gdl_kernel": _triton_whole._gdl_kernel,
    "_min_plus_kernel": _edt_device._min_plus_kernel,
}


def _flags(fn: Any) -> list[str]:
    return [p.name for p in fn.params if p.is_constexpr and p.name not in BLOCKS and p.name != "ACC"]


def _variants(name: str) -> list[tuple[str, dict[str, Any]]]:
    """All flags False, all True, and each flag alone True (every branch compiled at least once), in float32; the
    all-True variant also in float64 (float64 logits)."""
    fn = KERNELS[name]
    fixed = FIXED.get(name, {})
    flags = [f for f in _flags(fn) if f not in fixed]
    combos: list[dict[str, Any]] = [dict.fromkeys(flags, False), dict.fromkeys(flags, True)]
    combos += [{**dict.fromkeys(flags, False), f: True} for f in flags]
    out = []
    seen = set()
    for combo, acc in itertools.product(combos, ("fp32", "fp64")):
        if acc == "fp64" and not all(combo.values()):
            continue
        for fixed_values in itertools.product(*fixed.values()) if fixed else [()]:
            values = {**combo, **dict(zip(fixed, fixed_values, strict=True)), "ACC": acc}
            key = tuple(sorted(values.items()))
            if key not in seen:
                seen.add(key)
                out.append((name, values))
    return out


#: The statistics and gradient kernels also read float16/bfloat16 logits (the gradient stored in their dtype) and
#: targets in their own dtype (class indices of any integer width; dense targets uint8 for bool masks, or float16):
#: (logits and gradient pointer type, target pointer type), compiled with every flag set.
DTYPES = {
    "_softmax_index_stats_kernel": (("fp16", "u8"), ("bf16", "i16"), ("bf16", "i32"), ("fp16", "i8")),
    "_softmax_index_grad_kernel": (("fp16", "u8"), ("bf16", "i16"), ("bf16", "i32"), ("fp16", "i8")),
    "_sigmoid_stats_kernel": (("fp16", "u8"), ("bf16", "fp16"), ("bf16", "u8")),
    "_sigmoid_grad_kernel": (("fp16", "u8"), ("bf16", "fp16"), ("bf16", "u8")),
}
#: Pointers that carry the logits' dtype and the target's.
X_POINTERS = ("x_ptr", "out_ptr")
T_POINTERS = ("t_ptr", "g_ptr")

CASES = [case for name in KERNELS for case in _variants(name)]
CASES += [
    (name, {**dict.fromkeys(_flags(KERNELS[name]), True), "ACC": "fp32", "X": x, "T": t})
    for name, pairs in DTYPES.items()
    for x, t in pairs
]


def _compile(fn: Any, values: dict[str, Any]) -> Any:
    acc = values["ACC"]
    signature: dict[str, str] = {}
    constexprs: dict[tuple[int, ...], Any] = {}
    for i, p in enumerate(fn.params):
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            if p.name == "ACC":
                constexprs[(i,)] = tl.float64 if acc == "fp64" else tl.float32
            elif p.name in BLOCKS:
                constexprs[(i,)] = BLOCKS[p.name]
            else:
                constexprs[(i,)] = values[p.name]
        elif p.name in X_POINTERS and "X" in values:
            signature[p.name] = f"*{values['X']}"
        elif p.name in T_POINTERS and "T" in values:
            signature[p.name] = f"*{values['T']}"
        elif p.name.endswith("_ptr"):
            signature[p.name] = POINTERS.get(p.name, f"*{acc}")
        elif p.annotation_type:  # float hyperparameters are typed float64 in the kernels
            signature[p.name] = p.annotation_type
        elif p.name in INTS:
            signature[p.name] = "i32"
        else:
            signature[p.name] = "fp32"
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32))


@pytest.mark.parametrize(("name", "values"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_kernel_compiles_for_sm90(name: str, values: dict[str, Any]) -> None:
    kernel = _compile(KERNELS[name], values)
    assert "ptx" in kernel.asm, name
    assert ".entry" in kernel.asm["ptx"], name
