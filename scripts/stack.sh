#!/usr/bin/env bash
# The native stack, for machines without Docker: wan-exporter, Prometheus and Alertmanager on
# loopback with the configuration docker-compose uses. Ctrl-C stops everything.
#   bash scripts/stack.sh --demo            # tiny Wan models on the CPU
#   bash scripts/stack.sh                   # the embedded default (Wan2.2 models in the HF cache)
#   bash scripts/stack.sh --help
# Needs the Prometheus and Alertmanager binaries: apt-get install prometheus prometheus-alertmanager
set -euo pipefail
here="${BASH_SOURCE[0]%/*}"; [ "$here" = "${BASH_SOURCE[0]}" ] && here=.   # no dirname: works on a bare PATH
cd "$here/.."
export PYTHONPATH="$PWD/exporter${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m wan_exporter.stack "$@"
