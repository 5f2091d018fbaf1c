#!/usr/bin/env bash
# `make demo`: the demo topology with fixed names (nvdemo-A, nvdemo-A-red1, ...) so that a
# kept demo is easy to poke at. A previous kept demo is removed first. Without --keep the
# trap removes everything on exit; with --keep only a failure does (then `make demo-down`).
set -euo pipefail
cd "$(dirname "$0")/.."
export NVGRE_TEST_PREFIX=nvdemo
scripts/lab-cleanup.sh nvdemo
args=(--datapath "${DATAPATH:-xdp}" --store "${STORE:-none}")
if [[ "${1:-}" != "--keep" ]]; then
  exec scripts/in-lab.sh .build/debug/nvgre-lab demo "${args[@]}"
fi
trap 'scripts/lab-cleanup.sh nvdemo' ERR INT TERM
.build/debug/nvgre-lab demo --keep "${args[@]}"
