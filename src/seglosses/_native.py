"""Optional native CPU kernels for the fused paths, compiled on first use; PyTorch code is the fallback.

``_native.cpp`` (plain C ABI, no Python or PyTorch headers) is compiled once per machine with the system C++
compiler (``$CXX``, else ``c++``) into ``$SEGLOSSES_CACHE`` (default ``~/.cache/seglosses``) and loaded with
:mod:`ctypes`. Without a compiler, or with ``SEGLOSSES_NATIVE=0`` in the environment, or after
:func:`set_native` ``(False)``, every loss runs its pure-PyTorch path, which computes the same numbers (the tests
compare the two). The kernels run on CPU tensors only; the GPU always takes the PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("_native.cpp")
_state: dict[str, object] = {"enabled": os.environ.get("SEGLOSSES_NATIVE", "1") != "0", "lib": None, "error": None}
_lock = threading.Lock()

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_D = ctypes.c_double
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "sl_version": (_INT, []),
    "sl_set_threading": (None, [_INT]),
    "sl_contended_regions": (_I64, []),
    "sl_serial_now": (_INT, []),
    "sl_softmax_index_fwd": (_INT, [_P, _P, _P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _INT, _INT]),
    "sl_softmax_index_bwd": (None, [_P, _P, _P, _P, _P, _P, _P, _I64, _I64, _I64, _INT, _P, _INT]),
    "sl_sigmoid_dense_fwd": (None, [_P, _P, _P, _I64, _I64, _P, _P, _P, _P, _D, _D, _D, _INT, _INT]),
    "sl_sigmoid_dense_bwd": (None, [_P, _P, _P, _P, _P, _P, _D, _D, _D, _INT, _I64, _I64, _P, _INT]),
    "sl_lovasz_fwd": (_INT, [_INT, _INT, _P, _P, _P, _P, _P, _I64, _I64, _I64, _INT, _P, _P, _P, _P, _INT, _INT]),
    "sl_lovasz_softmax_bwd": (None, [_P, _P, _P, _P, _I64, _I64, _I64, _INT, _P, _INT]),
    "sl_sigmoid_focal_fwd": (None, [_P, _P, _P, _I64, _I64, _D, _D, _D, _P, _INT]),
    "sl_sigmoid_focal_bwd": (None, [_P, _P, _P, _P, _I64, _I64, _D, _D, _D, _P, _INT]),
    "sl_focal_terms": (None, [_P, _P, _I64, _I64, _D, _P, _INT]),
    "sl_count_not_binary": (_I64, [_P, _I64, _INT, _D, _INT]),
    "sl_edt": (None, [_P, _P, _P, _I64, _INT, _P, _P, _INT]),
}


#: The entry points without a float32/float64 pair.
_UNTYPED = ("sl_version", "sl_set_threading", "sl_contended_regions", "sl_serial_now", "sl_edt")

#: The threading modes of :func:`set_threading`, as the kernels number them.
_THREADING = {"adaptive": 0, "threads": 1, "serial": 2}


def _torch_uses_gnu_openmp() -> bool:
    """PyTorch's CPU ops run on GNU OpenMP (then the kernels share its thread pool instead of competing with it)."""
    lib_dir = Path(torch.__file__).parent / "lib"
    return "OpenMP" in torch.__config__.parallel_info() and any(lib_dir.glob("libgomp*.so*"))


def _flags(openmp: bool, wide: bool = True) -> list[str]:
    """Compiler flags: the SIMD extensions this CPU reports; ``wide``: 512-bit vectors where AVX-512 exists.

    Every kernel loop is written to vectorise; with AVX-512 (and 512-bit vectors preferred) a loss step of the
    region and focal kernels ran 10-35% faster here (AMD EPYC, Zen 4) than with AVX2, Lovasz unchanged.
    """
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-math-errno", "-fno-trapping-math"]
    if openmp:
        flags.append("-fopenmp")
    if platform.machine() in ("x86_64", "AMD64"):
        try:
            cpu = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpu = ""
        if " avx2" in cpu and " fma" in cpu:
            flags += ["-mavx2", "-mfma"]
            if wide and all(f" avx512{ext}" in cpu for ext in ("f", "bw", "dq", "vl")):
                flags += ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"]
    return flags


def _cache_dir() -> Path:
    root = os.environ.get("SEGLOSSES_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "seglosses"


def _compile(compiler: str, flags: list[str]) -> Path:
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *flags, platform.machine()]).encode()).hexdigest()[:16]
    out_dir = _cache_dir()
    target = out_dir / f"kernels-{key}.so"
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            subprocess.run(
                [compiler, *flags, str(_SOURCE), "-o", tmp], check=True, capture_output=True, text=True, timeout=300
            )
            os.replace(tmp, target)  # atomic: concurrent first uses each build, one wins
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _build() -> ctypes.CDLL:
    compiler = os.environ.get("CXX", "c++")
    openmp = _torch_uses_gnu_openmp()
    # fallbacks: a compiler without AVX-512 options, then one without OpenMP (std::thread)
    attempts = [_flags(openmp), _flags(openmp, wide=False), _flags(openmp=False, wide=False)]
    for i, flags in enumerate(attempts):
        if i > 0 and flags == attempts[i - 1]:
            continue
        try:
            target = _compile(compiler, flags)
            break
        except subprocess.CalledProcessError:
            if i == len(attempts) - 1:
                raise
    lib = ctypes.CDLL(str(target))
    for name, (restype, argtypes) in _SIGNATURES.items():
        if name in _UNTYPED:
            variants = [name]
        elif name.startswith("sl_lovasz"):
            variants = [f"{name}_f32"]  # float32 only (float64 inputs take the PyTorch path)
        else:
            variants = [f"{name}_f32", f"{name}_f64"]
        for variant in variants:
            fn = getattr(lib, variant)
            fn.restype = restype
            fn.argtypes = argtypes
    if lib.sl_version() != 11:
        raise RuntimeError("seglosses native kernels: version mismatch")
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, building them on first call; None if disabled or unavailable."""
    if not _state["enabled"]:
        return None
    lib = _state["lib"]
    if lib is not None:
        return lib  # type: ignore[return-value]
    if _state["error"] is not None:
        return None
    with _lock:
        if _state["lib"] is None and _state["error"] is None:
            try:
                built = _build()
                built.sl_set_threading(_THREADING[str(_state.get("threading", "adaptive"))])
                _state["lib"] = built
            except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as err:
                detail = getattr(err, "stderr", "") or ""
                _state["error"] = f"{type(err).__name__}: {err} {detail}".strip()
    return _state["lib"]  # type: ignore[return-value]


def set_native(enabled: bool) -> None:
    """Use the native CPU kernels when they can be built (default) or always the PyTorch path (``False``)."""
    _state["enabled"] = bool(enabled)


def set_threading(mode: str) -> None:
    """How a kernel call with more than one range of work runs (the numbers are the same in every mode).

    A kernel splits its work into ``torch.get_num_threads()`` contiguous ranges (fewer for small inputs) with one
    partial sum per range, added in range order, so its result depends on the thread count only. ``"adaptive"``
    (the default) runs the ranges on a team of threads, handed out one at a time, and times each such call: its
    gain is ``(S - wall) / S`` with ``S`` the thread count times its fastest range (what one thread alone would
    have taken), about 0.5 with two idle cores and negative where the call waited for a thread that another process
    had descheduled (a fork-join region waits a whole scheduler slice for it). Where the moving average of the gains
    (weight 0.25) turns negative, the calls run their ranges one after the other on the calling thread for a
    back-off period (20 ms, doubling after each losing probe up to 0.5 s), after which one call probes with a team
    again. Small calls (under 32768 elements) and a process allowed a single core always run on the calling thread.
    ``"threads"`` always forks, ``"serial"`` never does (A/B timings and tests). No effect when the native kernels
    are unavailable.

    Raises:
        ValueError: ``mode`` is not one of ``"adaptive"``, ``"threads"``, ``"serial"``.

    """
    if mode not in _THREADING:
        raise ValueError(f"set_threading: mode must be one of {', '.join(map(repr, _THREADING))}; got {mode!r}")
    lib = library()
    _state["threading"] = mode
    if lib is not None:
        lib.sl_set_threading(_THREADING[mode])


def threading_state() -> dict[str, object]:
    """The threading state: ``mode``, ``contended_calls`` (back-off periods started so far), ``serial_now``."""
    lib = library()
    if lib is None:
        return {"mode": _state.get("threading", "adaptive"), "contended_calls": 0, "serial_now": False}
    return {
        "mode": _state.get("threading", "adaptive"),
        "contended_calls": int(lib.sl_contended_regions()),
        "serial_now": bool(lib.sl_serial_now()),
    }


def status() -> str:
    """One line for reports: whether the native kernels are in use, and why not."""
    if not _state["enabled"]:
        return "off (PyTorch path)"
    if library() is not None:
        return "on"
    return f"unavailable (PyTorch path): {_state['error']}"


def intercepted(*tensors: torch.Tensor | None) -> bool:
    """Whether PyTorch traces the operations on these tensors now, or they hold no data a ctypes kernel can read.

    True while ``torch.compile``/``torch.export`` trace, while ``make_fx`` (the tracer under AOTAutograd) records
    (its proxy dispatch mode), and for a tensor subclass with its own ``__torch_dispatch__`` (``FakeTensor``, under
    ``FakeTensorMode`` too, and ``FunctionalTensor``) or a ``torch.func`` transform's wrapper (``vmap`` works through
    the operators; ``grad``/``jacrev`` are not supported by their autograd registration). A kernel called
    through :mod:`ctypes` is invisible to a tracer (``make_fx`` recorded a graph without it: a constant loss of 0)
    and a fake tensor's data pointer is 0 (the kernel crashed the process). The custom operators of
    :mod:`seglosses._ops` serve these cases: the tracers record them, and their kernels run on real tensors.
    Other dispatch modes (a flop counter, a logging mode) do not count: they see real tensors and correct results.
    """
    if torch.compiler.is_compiling() or torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.PROXY) is not None:
        return True
    for tensor in tensors:
        if tensor is None:
            continue
        if type(tensor).__torch_dispatch__ is not torch.Tensor.__torch_dispatch__:
            return True
        if torch._C._functorch.is_functorch_wrapped_tensor(tensor):
            return True
    return False


def usable(*tensors: torch.Tensor | None) -> ctypes.CDLL | None:
    """The kernels if every given tensor is a contiguous CPU tensor with readable data, else None.

    None as well wherever :func:`intercepted` (tracing, fake or ``torch.func``-wrapped tensors).
    """
    if not _state["enabled"] or intercepted(*tensors):
        return None
    for tensor in tensors:
        if tensor is not None and (tensor.device.type != "cpu" or not tensor.is_contiguous()):
            return None
    return library()


def ptr(tensor: torch.Tensor | None) -> int | None:
    """Address of a tensor's first element (None for None)."""
    return None if tensor is None else tensor.data_ptr()


def suffix(dtype: torch.dtype) -> str | None:
    """Kernel name suffix for a floating dtype, None if no kernel takes it."""
    return {torch.float32: "_f32", torch.float64: "_f64"}.get(dtype)
