#!/usr/bin/env bash
# Fuzzes every reader of outside input (Sources/NvgreFuzzing) with libFuzzer: builds the
# harnesses instrumented (-sanitize=fuzzer) in .build/fuzz, then runs each for SECONDS
# (default 20) from its committed corpus in fuzz/corpus/NAME. New inputs go to
# .build/fuzz/work/NAME; a crash's input is kept as .build/fuzz/crashes/NAME-crash-*, and the
# script fails naming it: copy it into fuzz/corpus/NAME, where NvgreFuzzingTests replays it.
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(policy pcap frames nat)
build=.build/fuzz
export TMPDIR=${TMPDIR:-$PWD/.build/tmp}
mkdir -p "$TMPDIR" "$build/crashes"

swift build --build-path "$build" --target NvgreFuzzing -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link \
  2>&1 | grep -E "error|warning: |Compiling|Build" | tail -3
mapfile -t objects < <(find "$build/debug/NvgreFuzzing.build" "$build/debug/NvgrePolicy.build" \
  "$build/debug/NvgreWire.build" "$build/debug/Yams.build" "$build/debug/CYaml.build" -name '*.o')
modulemaps=$(find "$build" -name module.modulemap -path '*CYaml*' | head -1)
swiftc -sanitize=fuzzer -parse-as-library -g -I "$build/debug/Modules" -I "$build/debug" \
  ${modulemaps:+-Xcc -fmodule-map-file="$modulemaps"} fuzz/Entry.swift "${objects[@]}" -o "$build/nvgre-fuzz"

failed=0
for h in "${harnesses[@]}"; do
  mkdir -p "$build/work/$h"
  log="$build/$h.log"
  if NVGRE_FUZZ=$h "$build/nvgre-fuzz" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$build/crashes/$h-" "$build/work/$h" "fuzz/corpus/$h" > "$log" 2>&1; then
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
    echo "fuzz $h: ${runs:-done} ($(ls "$build/work/$h" | wc -l) new inputs), no crash"
  else
    failed=1
    echo "fuzz $h: FAILED; the input: $(ls -t "$build/crashes/$h-"* 2>/dev/null | head -1)"
    grep -E "ERROR|Fatal error|SUMMARY|at /.*Sources" "$log" | head -12
  fi
done
exit $failed
