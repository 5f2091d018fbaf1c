#!/usr/bin/env bash
# Runs every test (unit, BPF test-run, namespace) inside scripts/in-lab.sh's cleanup trap.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/in-lab.sh swift test ${SWIFT_BUILD_FLAGS:-} "$@"
