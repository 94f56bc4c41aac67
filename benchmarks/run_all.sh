#!/usr/bin/env bash
# Regenerates every figure of docs/benchmarks.md's speed sections in one run, one benchmark after the other, and
# writes their output (with the machine, the load average and each command) to benchmarks/results-<UTC time>.md.
# Run it on an otherwise idle machine: `make bench` (or `bash benchmarks/run_all.sh`). SMALL=1 runs the small
# field only (64 x 8) for a quick check. The compiled kernels are built (and cached by numba) before any timing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
out="benchmarks/results-$(date -u +%Y%m%dT%H%M%SZ).md"
run() {
    echo "\$ $*" | tee -a "$out"
    "$@" 2>&1 | tee -a "$out"
    echo | tee -a "$out"
}
{
    echo "# Benchmark run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(uname -m), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $($PY -c 'import platform, torch; print("Python", platform.python_version(), "torch", torch.__version__)')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} | tee "$out"
# warm the numba cache (compiles once per checkout; not part of any timing)
$PY -c "import numpy as np, torch; from evaluator.biqa.brisque import Brisque; from evaluator.scoring.fidelity import fidelity; Brisque().brisque(torch.rand(1, 3, 64, 64)); fidelity(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16, 3), np.uint8))"
run $PY benchmarks/bench_biqa.py --images 32 --repeats 3
run $PY benchmarks/bench_koncept512.py --batches 1 4 --repeats 3
run $PY benchmarks/bench_evaluate.py --images 64 --runs 8 --workdir "${WORKDIR:-/tmp/pp-bench}/64x8"
if [ "${SMALL:-0}" != 1 ]; then
    run $PY benchmarks/bench_evaluate.py --images 550 --runs 13 --workdir "${WORKDIR:-/tmp/pp-bench}/550x13"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo "written: $out"
