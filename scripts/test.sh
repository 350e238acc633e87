#!/usr/bin/env bash
# Sets up, builds, and runs every test: unit tests (ctest), the CPU kernels again on their scalar
# path, the unit tests under ASan+UBSan, a short libFuzzer run of every fuzz target, and the
# end-to-end tests (pytest). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== unit tests (Release)"
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== CPU kernels on the scalar reference path and on the AVX2 path"
FASTSERVE_CPU_KERNELS=scalar ./build/tests/unit_backend_cpu --gtest_brief=1
# On AVX-512 machines the default is the AVX-512 tiles; this runs the AVX2 ones through matmul().
FASTSERVE_CPU_KERNELS=avx2 ./build/tests/unit_backend_cpu --gtest_brief=1

echo "== unit tests under ASan+UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFASTSERVE_SANITIZE=ON -DFASTSERVE_UNIT_TESTS_ONLY=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
# The tokenizer's 10k-string corpus runs in full in the Release pass; a 1,000-string subset here.
FASTSERVE_TOKENIZER_CORPUS_LIMIT=1000 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j"$(nproc)"

echo "== fuzz targets (short run)"
JOBS="$(nproc)" bash scripts/fuzz.sh "${FASTSERVE_FUZZ_SECONDS:-5}"

# Not in CI by default (a third full build; docs/RELIABILITY.md): FASTSERVE_TSAN=1 adds it.
if [[ "${FASTSERVE_TSAN:-0}" == 1 ]]; then
  echo "== threaded unit tests under TSan"
  JOBS="$(nproc)" bash scripts/tsan.sh
fi

echo "== end-to-end tests"
.venv/bin/python -m pytest -q tests/e2e
