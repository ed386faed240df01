#!/usr/bin/env bash
# The benchmark command: writes bench/results.json and bench/results.md.
# Runs on its own fresh services (own ports and data) so figures do not depend
# on what the demo or the tests left in the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
use_fresh_services bench 29092 26379 27018
exec python3 bench/run.py "$@"
