#!/usr/bin/env bash
# The GPU path in one go, for whoever has a CUDA machine for a few minutes (under 5 on one GPU):
#   bash scripts/gpu_check.sh
# Installs aelab into .venv-gpu with the CUDA build of torch that pip picks there (no constraints
# file: the CPU pin does not apply), runs the `cuda` test group (fit, score, save and load across
# devices, a streamed fit, checkpoint and resume, a 2-rank NCCL fit when two GPUs exist) and the
# training-speed benchmark on CUDA, and prints one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q -e ".[dev]" || { echo "gpu_check: install failed"; exit 2; }
"$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" \
  || { echo "gpu_check: CUDA is not available to torch here"; exit 3; }
GPU=$("$VENV/bin/python" -c "import torch; print(torch.cuda.get_device_name(0), 'x', torch.cuda.device_count())")
start=$(date +%s)
AELAB_TEST_DEVICE=cuda "$VENV/bin/python" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider > gpu_check.log 2>&1
tests_rc=$?
tests=$(grep -E "passed|failed|error" gpu_check.log | tail -1)
AELAB_DEVICE=cuda timeout 240 "$VENV/bin/python" benchmarks/train_speed.py --device cuda >> gpu_check.log 2>&1
bench_rc=$?
echo "gpu_check: $GPU | tests: ${tests:-none} | train_speed rc=$bench_rc | $(( $(date +%s) - start )) s | log: gpu_check.log"
exit $(( tests_rc != 0 || bench_rc != 0 ))
