#!/usr/bin/env bash
# Set up and run the exporter on its tiny-model demo (CPU): status page at http://localhost:9834/,
# metrics at http://localhost:9834/metrics
# Usage: bash scripts/demo.sh [wan-exporter flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e .
exec "$PY" -m wan_exporter --demo "$@"
