#!/usr/bin/env bash
# Builds every tests/fuzz/*_fuzz.cc with clang + libFuzzer (ASan+UBSan) and runs each for N seconds
# (default 10) from its seed corpus tests/fuzz/corpus/<name>/ (new inputs go to build-fuzz/corpus/,
# the committed seeds are not modified). Exits non-zero if any target crashes, leaks or trips a
# sanitizer; the reproducer is left in build-fuzz/artifacts/<name>/. A target with a dictionary
# tests/fuzz/<name>.dict gets it.
#   scripts/fuzz.sh [seconds] [target...]   e.g. scripts/fuzz.sh 10 (CI), scripts/fuzz.sh 600 (the
#                                           long run recorded in docs/RELIABILITY.md)
# JOBS=1 by default (shared 2-core machines); NICE=19 runs the fuzzers at the lowest priority;
# FUZZ_TIMEOUT (seconds, default 10) is the per-input limit (raise it on an overloaded machine,
# where a starved process can exceed it on a trivial input); FUZZ_BUILD_DIR picks the build folder. Each target's final line reports execs, cov and ft.
set -euo pipefail
seconds="${1:-10}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
CC=clang CXX=clang++ cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [[ $# -gt 0 ]]; then
  cmake --build "$build" -j"${JOBS:-1}" --target "$@"
  targets=("$@")
else
  cmake --build "$build" -j"${JOBS:-1}"
  targets=()
  for src in "$root"/tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$src" .cc)"); done
fi
status=0
for name in "${targets[@]}"; do
  seeds="$root/tests/fuzz/corpus/$name"
  work="$build/corpus/$name"
  artifacts="$build/artifacts/$name/"
  mkdir -p "$work" "$artifacts"
  args=("$work")
  [[ -d "$seeds" ]] && args+=("$seeds")
  dict=()
  [[ -f "$root/tests/fuzz/$name.dict" ]] && dict=(-dict="$root/tests/fuzz/$name.dict")
  echo "== $name: ${seconds}s"
  if ! nice -n "${NICE:-0}" "$build/$name" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts" -print_final_stats=1 "${dict[@]}" "${args[@]}" \
      2>"$build/$name.log"; then
    echo "!! $name failed; log: $build/$name.log, reproducer in $artifacts"
    tail -40 "$build/$name.log"
    status=1
  else
    # The last status line (#N DONE cov: ... ft: ... corp: ... exec/s ...) and the exec count.
    grep -E "^#[0-9]+" "$build/$name.log" | tail -1 || true
    grep -E "stat::number_of_executed_units" "$build/$name.log" | tail -1 || true
  fi
done
exit $status
