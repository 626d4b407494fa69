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

# helm, kube-apiserver and kube-controller-manager, built from source into a per-machine cache
# only when missing (cold: see scripts/peers.sh's build-seconds; warm: nothing to do).
if command -v go >/dev/null; then
  echo "==> Kubernetes peers (helm, kube-apiserver, kube-controller-manager)"
  bash scripts/peers.sh helm kube-apiserver kube-controller-manager >/dev/null
fi

PY="${PYTHON:-python3}"
echo "==> installing Python dependencies"
# The CPU build of torch first, so the ranges below do not pull several GB of CUDA wheels.
"$PY" -m pip install -q torch==2.13.0
# The tested versions (README "Tested versions"), pinned in constraints.txt.
"$PY" -m pip install -q -c constraints.txt -e '.[test]'

echo "==> running the test suite"
exec "$PY" -m pytest "$@"
