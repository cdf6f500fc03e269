#!/usr/bin/env bash
# e2e/kube/gen-k8s-gomod.sh v1.Y.Z — rewrites e2e/kube/k8s/go.mod (and go.sum)
# for another Kubernetes release: requires k8s.io/kubernetes v1.Y.Z and
# replaces each staging module it requires at v0.0.0 (k8s.io/api,
# apimachinery, client-go, ...) with its published v0.Y.Z. Then set
# K8S_VERSION in e2e/kube-up.sh to match. Needs go and the Go module proxy.
set -euo pipefail
[[ $# -eq 1 && $1 =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "usage: $0 v1.Y.Z" >&2; exit 2; }
K=$1
S=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
cd "$(dirname "${BASH_SOURCE[0]}")/k8s"
export GOWORK=off GOFLAGS=-mod=mod

kdir=$(cd /tmp && go mod download -json "k8s.io/kubernetes@$K" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -f $kdir/go.mod ]] || { echo "k8s.io/kubernetes@$K: no go.mod downloaded" >&2; exit 1; }
gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kdir/go.mod")
godebug=$(sed -n 's/^godebug default=\(.*\)$/\1/p' "$kdir/go.mod")
staging=$(sed -n 's/^\t\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$kdir/go.mod")

{
    sed -n '1,/^module /p' go.mod
    echo
    echo "go $gover"
    [[ -z $godebug ]] || { echo; echo "godebug default=$godebug"; }
    echo
    echo "require k8s.io/kubernetes $K"
    echo
    echo "replace ("
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$S"; done
    echo ")"
} >go.mod.new
mv go.mod.new go.mod
rm -f go.sum
go mod tidy
echo "e2e/kube/k8s/go.mod: k8s.io/kubernetes $K, $(wc -w <<<"$staging") staging modules at $S"
