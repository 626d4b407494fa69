#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_apt=""
# curl: the TLS end-to-end tests talk to the exporter with it, as an operator would.
# chromium: the status page's browser test.
# etcd: the store of the Kubernetes API server the Job-mode tests run (tests/test_kube_jobs.py).
for bin in promtool prometheus prometheus-alertmanager amtool faketime curl chromium etcd; do
  command -v "$bin" >/dev/null || need_apt=1
done
if [ -n "$need_apt" ]; then
  echo "==> installing Prometheus, Alertmanager, faketime, curl, Chromium and etcd (Debian packages)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    prometheus prometheus-alertmanager faketime curl chromium etcd-server
fi

PY="${PYTHON:-python3}"
echo "==> installing Python dependencies"
# The CPU build of torch first, so the ranges below do not pull several GB of CUDA wheels.
"$PY" -m pip install -q torch==2.13.0
# The tested versions (README "Tested versions"), pinned in constraints.txt.
"$PY" -m pip install -q -c constraints.txt -e '.[test]'

# The current Prometheus, Alertmanager and VictoriaMetrics, helm, kube-apiserver and
# kube-controller-manager, built from source with Go into a per-machine cache, only when missing
# (cold build times: README "Tested versions"). Their paths go to the tests as WAN_PEER_<NAME>.
echo "==> building the peers (scripts/peers.sh; cached in ~/.cache/wan-exporter/peers)"
if peers=$(bash scripts/peers.sh); then
  while IFS='=' read -r name path; do
    [ -n "$name" ] && export "WAN_PEER_$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')=$path"
  done <<<"$peers"
elif [ "${CI:-}" = "true" ]; then
  echo "scripts/peers.sh failed; under CI=true the tests that need the built peers would fail" >&2
  exit 1
else
  echo "warning: scripts/peers.sh failed; the tests that need the built peers will skip" >&2
fi

# Several worker processes (pytest-xdist), one test file each at a time: most end-to-end tests wait
# on real peers (scrape and rule intervals, alert for: durations), so four workers overlap those
# waits on two cores. WAN_TEST_WORKERS=0 runs everything in this process.
workers="${WAN_TEST_WORKERS:-4}"
echo "==> running the test suite ($workers worker processes)"
if [ "$workers" = "0" ]; then
  exec "$PY" -m pytest "$@"
fi
exec "$PY" -m pytest -n "$workers" --dist loadfile "$@"
