#!/usr/bin/env bash
# The benchmark command: writes bench/results.json and bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
exec python3 bench/run.py "$@"
