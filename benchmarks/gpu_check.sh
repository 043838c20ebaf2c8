#!/usr/bin/env bash
# Issue 12's checks on a machine with a CUDA GPU, in one run of about 11 minutes or less:
#
#   bash benchmarks/gpu_check.sh
#
# 1. installs the project into that machine's python3 (no network: no index, no dependencies, no build
#    isolation; torch with CUDA, pluggy, click, pandas, scikit-learn, onnx, onnxruntime, pytest must be there);
# 2. runs tests/test_cuda.py (the captured step against the eager one, resume, export, GPU decoding);
# 3. runs benchmarks/gpu_bench.py --quick (steps/s, rows/s, busy %, share of the bf16 matmul rate, sampling);
# 4. runs the whole test suite under a time limit (in parallel where pytest-xdist is installed);
# 5. trains the tabular default at batch 16,384 for its 20,000 steps and judges it (benchmarks/large_batch.py):
#    whether a large batch at the same steps keeps the quality measured on the CPU up to batch 2,048.
#
# Data: tests need NSL-KDD. ADVGEN_DATA is used when set, else ./.gpu-data (a folder git ignores, to copy
# the data into when the machine sees only this repository), else ../shared/datasets:
#   echo /.gpu-data/ >> .git/info/exclude && mkdir -p .gpu-data && cp -r ../shared/datasets/nsl-kdd .gpu-data/
# and carry .gpu-data along. Logs go to $OUT when it is set, else /tmp/advgen-gpu-check: install.log,
# test_cuda.log, bench.txt, bench.json, suite.log, large_batch.txt and summary.txt, and the folder
# large_batch/ (the run and its report). The exit status is that of the CUDA tests.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-${TMPDIR:-/tmp}/advgen-gpu-check}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
SUITE_SECONDS="${SUITE_SECONDS:-200}"
LARGE_BATCH_SECONDS="${LARGE_BATCH_SECONDS:-150}"
export PYTHONUNBUFFERED=1
if [ -z "${ADVGEN_DATA:-}" ]; then
  if [ -d .gpu-data/nsl-kdd ]; then export ADVGEN_DATA="$PWD/.gpu-data"; else export ADVGEN_DATA="$(cd .. && pwd)/shared/datasets"; fi
fi
summary="$OUT_DIR/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started ))s; }

note "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') (tree may hold uncommitted changes)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$summary"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tee -a "$summary"
note "ADVGEN_DATA=$ADVGEN_DATA ($( [ -f "$ADVGEN_DATA/nsl-kdd/KDDTrain+_20Percent.txt" ] && echo found || echo 'NSL-KDD MISSING: tabular tests will fail'))"

# 1. install
if "$PY" -m pip install --no-deps --no-index --no-build-isolation -e . > "$OUT_DIR/install.log" 2>&1; then
  note "install: ok ($(elapsed))"
else
  note "install: FAILED (see install.log); running from the source tree"
  export PYTHONPATH="$PWD:$PWD/plugins:$PWD/datasets:$PWD/export${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. the CUDA tests
timeout 120 "$PY" -m pytest tests/test_cuda.py -v -p no:cacheprovider -o addopts="" > "$OUT_DIR/test_cuda.log" 2>&1
cuda_status=$?
note "tests/test_cuda.py: exit $cuda_status: $(tail -n 1 "$OUT_DIR/test_cuda.log") ($(elapsed))"

# 3. the quick benchmark
timeout 170 "$PY" benchmarks/gpu_bench.py --quick --json "$OUT_DIR/bench.json" > "$OUT_DIR/bench.txt" 2>&1
note "gpu_bench --quick: exit $? ($(elapsed))"
grep -v ' \.\.\.$' "$OUT_DIR/bench.txt" >> "$summary"

# 4. the whole suite, in parallel where pytest-xdist is installed, cut off after SUITE_SECONDS
parallel=()
if "$PY" -c "import xdist" 2>/dev/null; then parallel=(-n 8 --dist loadfile); fi
OMP_NUM_THREADS=2 timeout "$SUITE_SECONDS" "$PY" -m pytest -q -p no:cacheprovider "${parallel[@]}" \
  --ignore=tests/test_cuda.py > "$OUT_DIR/suite.log" 2>&1
suite_status=$?
if [ "$suite_status" -eq 124 ]; then
  note "full suite: cut off after ${SUITE_SECONDS}s (see suite.log) ($(elapsed))"
else
  note "full suite: exit $suite_status: $(tail -n 1 "$OUT_DIR/suite.log") ($(elapsed))"
fi
grep -E '^(FAILED|ERROR)' "$OUT_DIR/suite.log" | head -n 40 | tee -a "$summary" > /dev/null

# 5. quality at a large batch and the default steps (the run's log shows its step rate if it is cut off)
timeout "$LARGE_BATCH_SECONDS" "$PY" benchmarks/large_batch.py --work "$OUT_DIR/large_batch" --device cuda \
  --parallel 1 --threads 0 --seeds 2 --setting 16384:20000:2e-4:0.9995 > "$OUT_DIR/large_batch.txt" 2>&1
note "large_batch 16384 x 20000: exit $? ($(elapsed))"
tail -n 4 "$OUT_DIR/large_batch.txt" >> "$summary"
tail -c 300 "$OUT_DIR"/large_batch/*.log 2>/dev/null | tr '\r' '\n' | tail -n 3 >> "$summary"
exit "$cuda_status"
