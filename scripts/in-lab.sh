#!/usr/bin/env bash
# Runs a command that builds network namespaces (tests, demo, benchmarks). They are named
# with NVGRE_TEST_PREFIX; the trap removes whatever is left with that prefix on exit, also
# when the command fails or is interrupted.
set -euo pipefail
here="$(dirname "$0")"
export NVGRE_TEST_PREFIX="${NVGRE_TEST_PREFIX:-nv$$x}"
# Temporary files of this run (ours, and those swift test leaves: TemporaryDirectory.*)
# go in one directory that the trap removes.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/${NVGRE_TEST_PREFIX}-tmp.XXXXXX")"
export TMPDIR="$RUN_TMP"
cleanup() {
  "$here/lab-cleanup.sh" "$NVGRE_TEST_PREFIX"
  rm -rf "$RUN_TMP"
}
trap cleanup EXIT INT TERM
"$@"
