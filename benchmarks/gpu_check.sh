#!/usr/bin/env bash
# GPU validation in one command, on a machine with a CUDA GPU, a CUDA build of torch and CuPy, and no network:
#   1. installs cartinv from this checkout without fetching anything (and hippynn from .whl/ when carried there:
#      `pip download --no-deps -d .whl hippynn==0.1.3`; without it the benchmark leaves hippynn out);
#   2. runs the CUDA tests on the device: tests/test_gpu.py (every checked-in basis, fused kernels and the torch
#      backend on the GPU against the CPU, first and second derivatives) and tests/test_cuda_backend.py;
#   3. prints where one CUDA forward + backward spends its time (benchmarks/profile_step.py);
#   4. runs benchmarks/kernels.py on the GPU (cartinv torch backend, fused CUDA kernels, naive einsum, hippynn),
#      which ends with the roofline lines (fused forward against one read of the pair data at copy bandwidth),
#      then the same for the flexible basis against the naive einsum.
# Logs go to $OUT (default ./gpu_check_out). Usage: bash benchmarks/gpu_check.sh [--quick]
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/cartinv_site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/cartinv_site${PYTHONPATH:+:$PYTHONPATH}
fi
$py -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -n 3 || exit 1
$py -c "from cartinv.runtime.kernels import cuda_backend as c; print('cuda backend:', c.available())" | tee "$out/backend.txt"
# one line per test with its time, and a hang (there was one: the double backward on the engine's device thread)
# fails that test after 120 s, where pytest-timeout is installed, instead of taking the whole lease
timeout_opt=()
$py -c "import pytest_timeout" 2>/dev/null && timeout_opt=(--timeout 120)
$py -m pytest -v -rs -p no:cacheprovider --durations 10 "${timeout_opt[@]}" tests/test_gpu.py \
    tests/test_cuda_backend.py 2>&1 | tee "$out/tests.log"
tests=$?
# where one CUDA forward + backward spends its time (host and device tables of torch.profiler)
$py benchmarks/profile_step.py --atoms 20000 --dtype float32 2>&1 | grep -v '^USDT' | tee "$out/profile.log"
if [ "${1:-}" = "--quick" ]; then
    args=(--quick)
else
    args=(--repeats 5)
fi
$py benchmarks/kernels.py "${args[@]}" 2>&1 | grep -v '^USDT' | tee "$out/kernels.log"
bench=$?
# the flexible basis (degree-10 invariant): cartinv against the naive einsum only (hippynn has no such invariants)
$py benchmarks/kernels.py "${args[@]}" --basis lmax3_flexible --methods cartinv naive 2>&1 | grep -v '^USDT' \
    | tee "$out/kernels_flexible.log"
bench=$(( bench | $? ))
echo "tests exit $tests, benchmark exit $bench" | tee -a "$out/tests.log"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
