#!/usr/bin/env bash
# Builds every tests/fuzz/*_fuzz.cc with clang + libFuzzer (ASan+UBSan) and runs each for N seconds
# (default 10) from its seed corpus tests/fuzz/corpus/<name>/ (new inputs go to build-fuzz/corpus/,
# the committed seeds are not modified). Exits non-zero on the first crash; the reproducer is left in
# build-fuzz/artifacts/<name>/.
#   scripts/fuzz.sh [seconds]        JOBS=1 by default (shared 2-core machines)
set -euo pipefail
seconds="${1:-10}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
CC=clang CXX=clang++ cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"${JOBS:-1}"
status=0
for src in "$root"/tests/fuzz/*_fuzz.cc; do
  name="$(basename "$src" .cc)"
  seeds="$root/tests/fuzz/corpus/$name"
  work="$build/corpus/$name"
  artifacts="$build/artifacts/$name/"
  mkdir -p "$work" "$artifacts"
  args=("$work")
  [[ -d "$seeds" ]] && args+=("$seeds")
  echo "== $name: ${seconds}s"
  if ! "$build/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts" -print_final_stats=1 "${args[@]}" 2>"$build/$name.log"; then
    echo "!! $name failed; log: $build/$name.log, reproducer in $artifacts"
    tail -40 "$build/$name.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$build/$name.log" | tail -2 || true
  fi
done
exit $status
