#!/usr/bin/env bash
# Install everything, then run the whole test suite (slow tests included).
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
# Two workers (pytest-xdist), one test file each at a time, so a file's module
# fixtures (a trained tiny model...) are built once. On the 2-core dev box the
# whole suite (739 tests) took 27.4 min this way; CI's last one-process run took
# 78 min.
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${KERASTL_TEST_WORKERS:-2}" \
    --dist loadfile --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests - failing" >&2
  exit 1
fi
exit "$rc"
