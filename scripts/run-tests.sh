#!/usr/bin/env bash
# Runs every test. Tests that build network namespaces name them with NVGRE_TEST_PREFIX; the
# trap removes whatever is left with that prefix, also when a test crashes.
set -euo pipefail
cd "$(dirname "$0")/.."

export NVGRE_TEST_PREFIX="nvt$$x"
cleanup() {
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${NVGRE_TEST_PREFIX}" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "/sys/fs/bpf/${NVGRE_TEST_PREFIX}"* 2>/dev/null || true
}
trap cleanup EXIT INT TERM

swift test ${SWIFT_BUILD_FLAGS:-} "$@"
