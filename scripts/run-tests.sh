#!/usr/bin/env bash
# Runs every test (unit, BPF test-run, namespace) inside scripts/in-lab.sh's cleanup trap.
# The quick benchmark (NvgreBenchTests) loads both cores for a while: it runs on its own
# after the others, so that neither skews the other. Arguments go to one `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($#)); then
  exec scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} "$@"
fi
scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} --skip NvgreBenchTests
scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} --filter NvgreBenchTests
