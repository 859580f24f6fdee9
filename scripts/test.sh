#!/usr/bin/env bash
# Install everything, then run the whole test suite (slow tests included).
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
# Two workers (pytest-xdist), one test file each at a time, so a file's module
# fixtures (a trained tiny model...) are built once; tests/conftest.py hands the
# slowest files out first (SLOWEST_FILES) and gc.freeze()s what import made, so each
# test's teardown collects only what that test made (tests/conftest.py, _seed).
# CI on a clean clone took 1666-1680 s before that; the full suite on the 2-core
# dev box: 1548 s, then 1274 s with the per-test freeze. With all of it (and the
# longest-first file order, merged distribute subprocesses, one TF thread per pool):
# `CI=true .ci/run` on a clean clone of the dev box 1148 s, tests 1088 s, 876 passed.
# One TensorFlow thread per pool in each worker: two workers on two cores with
# TensorFlow's default pools (a thread per core each) spin and switch; measured on six
# training/export files: 192 -> 175 s wall, 318 -> 285 s user CPU. Subprocesses that
# tests start inherit it. Override by setting them.
export TF_NUM_INTRAOP_THREADS="${TF_NUM_INTRAOP_THREADS:-1}"
export TF_NUM_INTEROP_THREADS="${TF_NUM_INTEROP_THREADS:-1}"
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${KERASTL_TEST_WORKERS:-2}" \
    --dist loadfile --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests - failing" >&2
  exit 1
fi
exit "$rc"
