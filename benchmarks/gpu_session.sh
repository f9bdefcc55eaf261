#!/usr/bin/env bash
# Everything the GPU issues need measured, as ONE prepared command for a lent device machine (H100/H200), whose
# time is minutes: the CUDA tests, the launch count of one dice step, the memory-bandwidth floor, compare's
# data-loading measurement, then `seglosses bench --device cuda` on the GPU workloads beside MONAI/smp/kornia (the
# shares add up to more than a 500 s budget: the last bench workloads are what a cut drops). Each step runs under its
# own share of a total time budget; after each step everything so far is packed into $OUT/gpu_session.tgz (the device tool
# returns at most 8 files), and $OUT/summary.txt lists each step's exit status and seconds.
#
# Here, once (pip reaches PyPI here, not there):   bash benchmarks/gpu_wheels.sh      (fills the ignored .whl)
# Device call (repo root, carry [".whl"]):          bash benchmarks/gpu_session.sh 500
#   (the argument: the seconds the whole script may take; give the call's timeout_s some 60 s more)
# Back here: untar $OUT/gpu_session.tgz; the bench's results.json renders with
#   python benchmarks/run.py --from-json bench-*/results.json --md benchmarks/RESULTS_cuda.md
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BUDGET=${1:-500}
START=$(date +%s)
OUT=${OUT:-/tmp/gpu-session-out}
WORK=/tmp/gpu-session
mkdir -p "$OUT" "$WORK"
PY=${PY:-python3}  # the interpreter that holds torch (the device image: plain python3)
export PYTHONUNBUFFERED=1 SEGLOSSES_CACHE=/tmp/seglosses-cache
if [[ -z "${NO_WHEELS:-}" ]] && ls .whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        > "$WORK/install.log" 2>&1 || echo "wheel install failed (see install.log)" >> "$OUT/summary.txt"
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
pack() { tar czf "$OUT/gpu_session.tgz" -C "$WORK" . 2> /dev/null; }
# step NAME SHARE CMD...: run CMD with at most SHARE seconds (less if the budget has less left), log to NAME.log.
# At the limit the step gets SIGINT first (pytest then prints its failures so far, the bench keeps the rows it has
# written), SIGKILL 10 s later.
step() {
    local name=$1 share=$2
    shift 2
    local limit
    limit=$(left)
    (( limit > share )) && limit=$share
    if (( limit < 20 )); then
        echo "$name skipped (budget spent)" | tee -a "$OUT/summary.txt"
        return
    fi
    local t0
    t0=$(date +%s)
    timeout --signal=INT --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $(( $(date +%s) - t0 ))s (limit ${limit}s)" | tee -a "$OUT/summary.txt"
    tail -3 "$WORK/$name.log" | sed 's/^/    /' >> "$OUT/summary.txt"
    pack
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch, triton, sys; print(sys.version.split()[0], torch.__version__, triton.__version__)"
    "$PY" -c "from seglosses import _native; print('native:', _native.status())"
} > "$WORK/env.log" 2>&1
cat "$WORK/env.log" >> "$OUT/summary.txt"

# 1. CUDA tests: every loss on CUDA (values, gradients, autocast, compile, sync-debug, CUDA graphs, > 256^2
#    shapes), compare's CUDA + AMP path, the surface metrics on CUDA tensors (8 workers, tests dealt one by one:
#    test_cuda.py alone holds ~720 tests; the Inductor tests compile on the CPU cores). The operator tests of
#    test_ops.py run on the CPU in CI: not here
step tests 150 "$PY" -m pytest -q -p no:cacheprovider -rfE -n 8 --dist load \
    tests/test_cuda.py tests/test_compare_cuda.py tests/test_surface.py -k "cuda or Cuda or CUDA"

# 2. launch count of one forward+backward on the 2D multiclass workload (target: at most 6 for dice; 5 counted on the
#    CPU through the interpreter for every loss computed whole, tests/test_triton.py)
step launches 45 "$PY" - << 'EOF'
import torch
from torch.profiler import ProfilerActivity, profile

import seglosses.functional as F

x = torch.randn(8, 4, 256, 256, device="cuda", requires_grad=True)
t = torch.randint(0, 4, (8, 256, 256), device="cuda")
for _ in range(3):
    F.dice_loss(x, t, mode="multiclass").backward()
torch.cuda.synchronize()
for name in ("dice", "jaccard", "tversky", "focal_tversky", "generalized_dice", "dice_ce", "focal", "cross_entropy",
             "unified_focal", "lovasz"):
    try:
        fn = getattr(F, f"{name}_loss")
        fn(x, t, mode="multiclass").backward()  # warm-up (the kernels compile on first use)
        torch.cuda.synchronize()
        x.grad = None  # the profiled backward writes x.grad fresh (no accumulation kernel)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn(x, t, mode="multiclass").backward()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        print(f"{name}: {len(kernels)} CUDA kernels per forward+backward: {sorted({e.name[:40] for e in kernels})}")
    except Exception as err:  # one loss failing must not cost the others' counts
        print(f"{name}: FAILED {type(err).__name__}: {err}")
EOF

# 3. the memory-bandwidth floor of each bench workload (issue 17: on (2,14,128^3) within 1.5x of it): logits and
#    targets read twice, the gradient written once, at the bandwidth of a large device copy (read + write)
step floor 30 "$PY" - << 'EOF'
import math

import torch

from seglosses.cli.benchmark import WORKLOADS

a = torch.empty(2**28, device="cuda")  # 1 GiB
b = torch.empty_like(a)
for _ in range(3):
    b.copy_(a)
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    b.copy_(a)
end.record()
torch.cuda.synchronize()
bandwidth = 20 * 2 * a.nbytes / (start.elapsed_time(end) / 1e3)
print(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write of 1 GiB, 20 times)")
for w in WORKLOADS.values():
    if w.quick:
        continue
    n, c, *spatial = w.shape
    target = n * math.prod(spatial) * 8 if w.mode == "multiclass" else w.logits_bytes  # int64 indices / float mask
    moved = 2 * (w.logits_bytes + target) + w.logits_bytes
    print(f"{w.name}: floor {moved / bandwidth * 1e3:.3f} ms ({moved / 2**20:.0f} MiB moved)")
EOF

# 4. compare's loader against a cached batch (issue 18: its only measurement), before the long benchmark so that a
#    budget cut falls on the last bench workloads, not on it
step loader 60 "$PY" benchmarks/loader_keeps_up.py --device cuda --workers 0,4,8 --out "$WORK/loader.json"

# 5. the benchmark table, one workload per step (its results are written after every row), in the order of what
#    issue 17 needs most. --isolate library: the cases of one library share one fresh process per workload (5
#    processes per workload instead of 20-30, at several seconds of start-up each, which this budget cannot pay)
for w in 2d-8x4x256:70 3d-2x14x128:90 2d-bin-8x512:60 3d-2x4x96:60 3d-1x8x128:60; do
    step "bench-${w%%:*}" "${w##*:}" "$PY" -m seglosses.cli.benchmark --device cuda --only losses --isolate library \
        --repeats 10 --warmup 3 --min-time 0.3 --timeout 60 --workloads "${w%%:*}" --out "$WORK/bench-${w%%:*}" \
        --no-rich
done

echo "total $(( $(date +%s) - START ))s" >> "$OUT/summary.txt"
pack
