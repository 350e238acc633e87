#!/usr/bin/env bash
# Sets up, builds, and runs every test: unit tests (ctest), the unit tests again under ASan+UBSan, and
# the end-to-end tests (pytest). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== unit tests (Release)"
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== unit tests under ASan+UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFASTSERVE_SANITIZE=ON -DFASTSERVE_UNIT_TESTS_ONLY=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)"

echo "== end-to-end tests"
.venv/bin/python -m pytest -q tests/e2e
