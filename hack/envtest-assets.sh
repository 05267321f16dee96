#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries envtest needs from their Go modules,
# because nothing can be downloaded from release pages here. The result is cached
# outside the clone, keyed by version, so later runs (and fresh clones) reuse it.
#
# Usage: hack/envtest-assets.sh            prints the assets directory (builds if needed)
# Env:   KUBEBUILDER_ASSETS                if set and populated, used as is
#        ENVTEST_K8S_VERSION, ENVTEST_ETCD_VERSION, ENVTEST_CACHE_DIR
set -euo pipefail

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "${KUBEBUILDER_ASSETS}/kube-apiserver" && -x "${KUBEBUILDER_ASSETS}/etcd" ]]; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi

root=$(cd "$(dirname "$0")/.." && pwd)
# The API server follows the k8s.io/api version in go.mod: v0.X.Y -> v1.X.Y.
api_version=$(cd "$root" && go list -m -f '{{.Version}}' k8s.io/api)
k8s_version=${ENVTEST_K8S_VERSION:-v1${api_version#v0}}
etcd_version=${ENVTEST_ETCD_VERSION:-v3.6.16}
cache=${ENVTEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remote-istiod-operator/envtest}
out="$cache/k8s-${k8s_version}-etcd-${etcd_version}"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

build_apiserver() {
  local dir="$work/apiserver"
  mkdir -p "$dir"
  cd "$dir"
  go mod init envtest-assets/apiserver >/dev/null 2>&1
  # k8s.io/kubernetes points its staging repos at ./staging; replace each with the
  # published module of the matching version.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${k8s_version}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  local staging_version="v0${k8s_version#v1}"
  {
    echo "require k8s.io/kubernetes ${k8s_version}"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod
  cat >main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

func main() {}
GO
  go mod tidy >/dev/null 2>&1 || true
  rm main.go
  local ver="k8s.io/component-base/version"
  local ld="-s -w -X ${ver}.gitVersion=${k8s_version} -X ${ver}.gitMajor=1 -X ${ver}.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
  ld="$ld -X ${ver}.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=${k8s_version}"
  go build -trimpath -ldflags "$ld" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
}

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  cd "$dir"
  go mod init envtest-assets/etcd >/dev/null 2>&1
  echo "require go.etcd.io/etcd/server/v3 ${etcd_version}" >>go.mod
  cat >main.go <<'GO'
package main

import _ "go.etcd.io/etcd/server/v3/etcdmain"

func main() {}
GO
  go mod tidy >/dev/null 2>&1 || true
  rm main.go
  go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$out/etcd.tmp" "$out/etcd"
}

echo "building envtest assets (kube-apiserver ${k8s_version}, etcd ${etcd_version}) into $out; the first build takes about 7 minutes" >&2
[[ -x "$out/etcd" ]] || build_etcd >&2
[[ -x "$out/kube-apiserver" ]] || build_apiserver >&2
echo "$out"
