#!/usr/bin/env bash
# Runs a command that builds network namespaces (tests, demo, benchmarks). They are named
# with NVGRE_TEST_PREFIX; the trap removes whatever is left with that prefix on exit, also
# when the command fails or is interrupted.
set -euo pipefail
export NVGRE_TEST_PREFIX="${NVGRE_TEST_PREFIX:-nv$$x}"
# Temporary files of this run (ours, and those swift test leaves: TemporaryDirectory.*)
# go in one directory that the trap removes.
RUN_TMP="$(mktemp -d "${TMPDIR:-/tmp}/${NVGRE_TEST_PREFIX}-tmp.XXXXXX")"
export TMPDIR="$RUN_TMP"
cleanup() {
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${NVGRE_TEST_PREFIX}" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "/sys/fs/bpf/${NVGRE_TEST_PREFIX}"* "/run/nvgre/${NVGRE_TEST_PREFIX}"* "$RUN_TMP" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
"$@"
