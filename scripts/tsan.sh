#!/usr/bin/env bash
# Builds the threaded unit tests (the thread pool, the engine's loop and request streams, the server)
# with ThreadSanitizer in build-tsan/ and runs them; exits non-zero on any data race, lock-order
# inversion or test failure. Not in CI (see docs/RELIABILITY.md for why): run it before merging a
# change to threaded code (core/thread_pool, engine/engine, server/).
#   scripts/tsan.sh [gtest filter]      JOBS=1 by default (shared 2-core machines);
#                                       TSAN_BUILD_DIR picks the build folder
set -euo pipefail
filter="${1:-*}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${TSAN_BUILD_DIR:-$root/build-tsan}"
tests=(unit_core unit_engine unit_server)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFASTSERVE_UNIT_TESTS_ONLY=ON \
  -DFASTSERVE_TSAN=ON -DFASTSERVE_CUDA=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-1}" --target "${tests[@]}"
# halt_on_error: the first report fails the run.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 ${TSAN_OPTIONS:-}"
# The kernels' pool threads: a small pool keeps the run short and still concurrent.
export FASTSERVE_THREADS="${FASTSERVE_THREADS:-2}"
status=0
for t in "${tests[@]}"; do
  echo "== $t (TSan)"
  if ! "$build/tests/$t" --gtest_filter="$filter" --gtest_brief=1; then
    echo "!! $t failed under TSan"
    status=1
  fi
done
exit $status
