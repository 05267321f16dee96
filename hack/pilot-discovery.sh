#!/usr/bin/env bash
# Builds Istio's pilot-discovery (the istiod binary) from the istio.io/istio Go module,
# because nothing can be downloaded from release pages or image registries here. The
# result is cached outside the clone, keyed by version, so later runs (and fresh clones)
# reuse it.
#
# Usage: hack/pilot-discovery.sh           prints the path of pilot-discovery (builds if needed)
# Env:   PILOT_DISCOVERY                   if set and executable, used as is
#        PILOT_DISCOVERY_VERSION, PILOT_DISCOVERY_CACHE_DIR
set -euo pipefail

if [[ -n "${PILOT_DISCOVERY:-}" && -x "${PILOT_DISCOVERY}" ]]; then
  echo "${PILOT_DISCOVERY}"
  exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
# The istio.io/istio version in go.mod when it has one. The proxy serves istio.io/istio
# only at pseudo-versions (it has no Go-compatible release tags).
default_version=v0.0.0-20260827124520-eed52ebb66ad
mod_version=$(cd "$root" && go list -m -f '{{.Version}}' istio.io/istio 2>/dev/null || true)
version=${PILOT_DISCOVERY_VERSION:-${mod_version:-$default_version}}
cache=${PILOT_DISCOVERY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remote-istiod-operator/istio}
out="$cache/istio-${version}"

if [[ -x "$out/pilot-discovery" ]]; then
  echo "$out/pilot-discovery"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

build_pilot_discovery() {
  cd "$work"
  go mod init pilot-discovery-build >/dev/null 2>&1
  local info gomod dir
  info=$(go mod download -json "istio.io/istio@${version}")
  gomod=$(echo "$info" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  dir=$(echo "$info" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  {
    echo "require istio.io/istio ${version}"
    # Replace directives of istio's go.mod do not apply to a module that depends on it;
    # mirror those that point at other modules (a local path cannot be mirrored).
    awk '
      /^replace \(/ { block = 1; next }
      block && /^\)/ { block = 0; next }
      block && /=>/ { print "replace " $0; next }
      /^replace .*=>/ { print }
    ' "$gomod" | grep -v -E '=>[[:space:]]*\.' || true
  } >>go.mod
  cat >main.go <<'GO'
package main

import (
	_ "github.com/KimMachineGun/automemlimit"
	_ "istio.io/istio/pilot/cmd/pilot-discovery/app"
	_ "istio.io/istio/pkg/log"
)

func main() {}
GO
  go mod tidy >/dev/null 2>&1 || true
  rm main.go
  # Version information as Istio's own build stamps it: <VERSION file>-dev and the commit
  # of the pseudo-version.
  local release commit ver="istio.io/istio/pkg/version"
  release=$(cat "$dir/VERSION" 2>/dev/null || echo unknown)
  commit=${version##*-}
  local ld="-s -w -X ${ver}.buildVersion=${release}-dev -X ${ver}.buildGitRevision=${commit}"
  ld="$ld -X ${ver}.buildStatus=Clean -X ${ver}.buildTag=${version} -X ${ver}.buildOS=$(go env GOOS) -X ${ver}.buildArch=$(go env GOARCH)"
  go build -trimpath -ldflags "$ld" -o "$out/pilot-discovery.tmp" istio.io/istio/pilot/cmd/pilot-discovery
  mv "$out/pilot-discovery.tmp" "$out/pilot-discovery"
}

echo "building pilot-discovery (istio.io/istio ${version}) into $out; the first build takes about 13 minutes on 2 cores" >&2
build_pilot_discovery >&2
echo "$out/pilot-discovery"
