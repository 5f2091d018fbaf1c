#!/usr/bin/env bash
# Runs every test (unit, BPF test-run, namespace) inside scripts/in-lab.sh's cleanup trap,
# then the fuzzers for a bounded time.
# The quick benchmark (NvgreBenchTests) loads both cores for a while: it runs on its own
# after the others, so that neither skews the other. Arguments go to one `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($#)); then
  exec scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} "$@"
fi
# The code stays as `make format` lays it out (.swift-format, 120 columns).
if ! swift format lint --strict -r Sources Tests Package.swift; then
  echo "run-tests: the code is not formatted; run make format" >&2
  exit 1
fi
scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} --skip NvgreBenchTests
# Every reader of outside input under libFuzzer for a bounded time ($FUZZ_SECONDS each).
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} --filter NvgreBenchTests
