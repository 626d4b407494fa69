#!/usr/bin/env bash
# Build the real peers the tests run against from source, through the Go module proxy, into a
# cache reused between runs on the same machine. A peer is built only when its binary is missing.
#
# Usage: bash scripts/peers.sh [--list] [NAME...]      (no NAME: every peer)
#   prints one line per peer, NAME=PATH, on stdout; progress and build times go to stderr.
# Cache: $WAN_PEERS_DIR, else ${XDG_CACHE_HOME:-~/.cache}/wan-exporter/peers/<name>-<version>/<binary>
# Needs: Go (the machine's toolchain; GOTOOLCHAIN=local, nothing else is fetched).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${WAN_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wan-exporter/peers}"

# name | module | version | package in the module | -X flags for the version (optional)
# Prometheus 3 is published to the module proxy as v0.3XX.Y for release 3.XX.Y.
# k8s.io/kubernetes v1.X.Y: its module zip leaves out staging/, which its go.mod replaces
# k8s.io/* with; prep points those replaces at the published k8s.io/* v0.X.Y modules instead.
PEERS="
prometheus|github.com/prometheus/prometheus|v0.316.0|cmd/prometheus|common=3.16.0
promtool|github.com/prometheus/prometheus|v0.316.0|cmd/promtool|common=3.16.0
alertmanager|github.com/prometheus/alertmanager|v0.35.0|cmd/alertmanager|common=0.35.0
amtool|github.com/prometheus/alertmanager|v0.35.0|cmd/amtool|common=0.35.0
victoria-metrics|github.com/VictoriaMetrics/VictoriaMetrics|v1.151.0|app/victoria-metrics|
helm|helm.sh/helm/v4|v4.3.2|cmd/helm|helm=v4.3.2
kube-apiserver|k8s.io/kubernetes|v1.37.2|cmd/kube-apiserver|k8s=v1.37.2
kube-controller-manager|k8s.io/kubernetes|v1.37.2|cmd/kube-controller-manager|k8s=v1.37.2
"

peer_line() { printf '%s\n' "$PEERS" | awk -F'|' -v n="$1" '$1 == n'; }

if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "$PEERS" | awk -F'|' 'NF {print $1, $3}'
  exit 0
fi

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  mapfile -t names < <(printf '%s\n' "$PEERS" | awk -F'|' 'NF {print $1}')
fi

# Placeholders for embedded web UI assets the module zip leaves out (the UI is not used).
prep() {
  case "$1" in
    alertmanager|amtool) mkdir -p "$2/ui/app/dist" && echo '<!doctype html><title>Alertmanager</title>' >"$2/ui/app/dist/index.html" ;;
    kube-apiserver|kube-controller-manager)
      local v; v=$(peer_line "$1" | awk -F'|' '{print $3}'); v="v0.${v#v1.}"
      rm -f "$2/go.work" "$2/go.work.sum"  # its workspace names the staging/ modules the zip lacks
      sed -i -E "s#^([[:space:]]*k8s\.io/[^ ]+) => \./staging/src/k8s\.io/[^ ]+\$#\1 => \1 $v#" "$2/go.mod" ;;
  esac
}

build() {
  local name=$1 line module version pkg ver dir out ldflags start
  line=$(peer_line "$name")
  [ -n "$line" ] || { echo "peers.sh: unknown peer '$name' (known: $(printf '%s\n' "$PEERS" | awk -F'|' 'NF {printf "%s ", $1}'))" >&2; return 2; }
  IFS='|' read -r name module version pkg ver <<<"$line"
  dir="$CACHE/$name-$version"
  out="$dir/$name"
  if [ ! -x "$out" ]; then
    command -v go >/dev/null || { echo "peers.sh: Go is needed to build $name" >&2; return 1; }
    ldflags="-s -w"
    case "$ver" in
      helm=*) ldflags="$ldflags -X helm.sh/helm/v4/internal/version.version=${ver#helm=}" ;;
      k8s=*) ldflags="$ldflags -X k8s.io/component-base/version.gitVersion=${ver#k8s=} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "${ver#k8s=v1.}" | cut -d. -f1)" ;;
    esac
    if [ "${ver#common=}" != "$ver" ]; then
      local v=${ver#common=}
      ldflags="$ldflags -X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=$version"
    fi
    echo "==> building $name $version from source ($module/$pkg)" >&2
    start=$(date +%s)
    # The module's source from the proxy, copied where it can be written: some embed web UI
    # assets that are not in the module zip, and only the API is needed here.
    local src
    src=$(GOTOOLCHAIN=local go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -d "$src" ] || { echo "peers.sh: could not download $module@$version" >&2; return 1; }
    rm -rf "$dir/src" && mkdir -p "$dir" && cp -r "$src" "$dir/src" && chmod -R u+w "$dir/src"
    prep "$name" "$dir/src"
    (cd "$dir/src" && GOTOOLCHAIN=local GOWORK=off GOFLAGS="-trimpath -mod=mod" CGO_ENABLED=0 \
      go build -ldflags "$ldflags" -o "$out.tmp" "./$pkg") >&2
    mv "$out.tmp" "$out"
    rm -rf "$dir/src"
    echo "$(( $(date +%s) - start ))" >"$dir/build-seconds"
    echo "==> built $name in $(cat "$dir/build-seconds") s" >&2
  fi
  echo "$name=$out"
}

for n in "${names[@]}"; do build "$n"; done
