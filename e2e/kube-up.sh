#!/usr/bin/env bash
# e2e/kube-up.sh DIR — a Kubernetes control plane with no nodes, for the
# operator's end-to-end tests: etcd + kube-apiserver on free 127.0.0.1 ports,
# like controller-runtime's envtest. No kubelet, scheduler or controller-manager
# runs: objects (Pods, StatefulSets, Services, PDBs, Leases, CRDs, Events, ...)
# are only stored.
#
# The first run builds kube-apiserver, kubectl, etcd and helm from their Go
# modules (minutes) into ${RUNNEL_CACHE:-$HOME/.cache/runnel}/kube/<versions>/bin;
# later runs reuse them. A flock keeps concurrent runs from building twice.
#
# Leaves in DIR: kubeconfig (cluster-admin, O=system:masters), env (source it:
# KUBECONFIG, PATH, HELM_*_HOME under DIR/helm), bin/{kubectl,helm}, pki/,
# etcd/ (data), *.log, *.pid.
# Stop with e2e/kube-down.sh DIR. Re-running on a DIR whose cluster still runs
# stops that cluster first and starts a fresh one (state is wiped).
#
# Environment: RUNNEL_CACHE, KUBE_UP_TIMEOUT (seconds, default 120),
# KUBE_UP_BUILD_ONLY=1 (build/cache the binaries and exit; DIR not needed).
set -euo pipefail

K8S_VERSION=v1.33.13    # k8s.io/kubernetes; pinned in e2e/kube/k8s/go.mod
ETCD_VERSION=v3.5.35    # go.etcd.io/etcd/server/v3; pinned in e2e/kube/etcd/go.mod
HELM_VERSION=v3.18.6    # helm.sh/helm/v3 (client-go v0.33, same minor as the apiserver)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TIMEOUT=${KUBE_UP_TIMEOUT:-120}

die() { echo "kube-up: error: $*" >&2; exit 1; }
log() { echo "kube-up: $*" >&2; }

if [[ ${KUBE_UP_BUILD_ONLY:-} != 1 ]]; then
    [[ $# -eq 1 && -n $1 ]] || die "usage: $0 DIR"
fi

# ---------------------------------------------------------------- binaries --
CACHE_ROOT=${RUNNEL_CACHE:-$HOME/.cache/runnel}
VDIR=$CACHE_ROOT/kube/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION
BIN=$VDIR/bin
BINARIES=(kube-apiserver kubectl etcd helm)

have_all() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || return 1; done
}

# go_build NAME... -- runs "$@" after '--' (a go build/install writing into
# $tmp), logs to $VDIR/build-<first name>.log, then moves the binaries into
# $BIN atomically. Skips if all NAMEs are already there.
go_build() {
    local names=() b need=0
    while [[ $1 != -- ]]; do names+=("$1"); shift; done
    shift
    for b in "${names[@]}"; do [[ -x $BIN/$b ]] || need=1; done
    ((need)) || return 0
    local blog=$VDIR/build-${names[0]}.log start=$SECONDS
    log "building ${names[*]} (first run only; takes minutes) — log: $blog"
    rm -rf "$tmp" && mkdir -p "$tmp"
    if ! "$@" >"$blog" 2>&1; then
        tail -n 40 "$blog" >&2
        die "building ${names[*]} failed (full log: $blog)"
    fi
    for b in "${names[@]}"; do
        [[ -x $tmp/$b ]] || die "build of ${names[*]} produced no $b (log: $blog)"
        mv -f "$tmp/$b" "$BIN/$b"
    done
    log "built ${names[*]} in $((SECONDS - start)) s"
}

ensure_binaries() {
    have_all && return 0
    command -v go >/dev/null || die "go is needed to build the Kubernetes binaries (not found in PATH)"
    mkdir -p "$BIN"
    exec 8>"$VDIR/.build.lock"
    if ! flock -n 8; then
        log "another kube-up is building into $VDIR; waiting for its lock"
        flock 8
    fi
    # left by an interrupted build (we hold the lock); the module cache's
    # files are read-only
    chmod -R u+w "$VDIR"/scratch.* 2>/dev/null || true
    rm -rf "$VDIR"/tmp.* "$VDIR"/scratch.*
    tmp=$VDIR/tmp.$$
    # The build and module caches are of no use once the binaries are cached
    # (several GB, which a CI disk may not have): a scratch pair, removed after.
    scratch=$VDIR/scratch.$$
    export GOCACHE=$scratch/build GOMODCACHE=$scratch/mod
    trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$tmp" "$scratch"' EXIT
    # Static binaries like the upstream releases; the module graph is the one
    # committed in e2e/kube/*/go.{mod,sum} (readonly: a build never edits them).
    export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    kver+=" -X k8s.io/component-base/version.gitMajor=1"
    kver+=" -X k8s.io/component-base/version.gitMinor=$minor"
    kver+=" -X k8s.io/component-base/version.gitTreeState=clean"
    (cd "$HERE/kube/k8s" && go_build kube-apiserver kubectl -- \
        go build -trimpath -ldflags "-s -w $kver" -o "$tmp/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
    (cd "$HERE/kube/etcd" && go_build etcd -- \
        go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
    # helm's go.mod has no replace directives: plain `go install pkg@version`
    # (with helm's own go.sum). Same -X flags as helm's Makefile.
    local hk="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    hk+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    hk+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
    hk+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    hk+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
    hk+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    (cd "$VDIR" && GOFLAGS= GOBIN=$tmp go_build helm -- \
        go install -trimpath -ldflags "-s -w $hk" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
    chmod -R u+w "$scratch"
    rm -rf "$tmp" "$scratch"
    trap - EXIT
    flock -u 8
    exec 8>&-
    have_all || die "binaries missing in $BIN after the build"
}

ensure_binaries
if [[ ${KUBE_UP_BUILD_ONLY:-} == 1 ]]; then
    echo "$BIN"
    exit 0
fi

# ------------------------------------------------------------------ prereqs --
if ! command -v openssl >/dev/null; then
    log "openssl missing; installing it with apt-get"
    apt-get install -y openssl >&2 || die "openssl is needed to make the certificates"
fi
command -v python3 >/dev/null || die "python3 is needed (free ports)"
command -v setsid >/dev/null || die "setsid (util-linux) is needed"

mkdir -p "$1"
DIR=$(cd "$1" && pwd)

# One kube-up per DIR at a time.
exec 9>"$DIR/.kube-up.lock"
flock -n 9 || die "another kube-up is running on $DIR"

if compgen -G "$DIR/*.pid" >/dev/null; then
    log "$DIR has pid files of an earlier cluster; stopping it first"
    "$HERE/kube-down.sh" "$DIR"
fi
# Fresh state every time (only what this script creates).
rm -rf "$DIR/etcd" "$DIR/pki" "$DIR/bin" "$DIR/helm"
rm -f "$DIR/kubeconfig" "$DIR/env" "$DIR/etcd.log" "$DIR/kube-apiserver.log" "$DIR"/*.pid
mkdir -p "$DIR/pki" "$DIR/bin"
chmod 700 "$DIR/pki"

ln -sf "$BIN/kubectl" "$DIR/bin/kubectl"
ln -sf "$BIN/helm" "$DIR/bin/helm"

# Three distinct free loopback ports (bound together, then released).
read -r ETCD_PORT PEER_PORT API_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
EOF
)

# ---------------------------------------------------------------------- pki --
PKI=$DIR/pki
ossl() { openssl "$@" 2>>"$PKI/openssl.log" || die "openssl $1 failed: $(tail -n 5 "$PKI/openssl.log")"; }
newkey() { ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

newkey "$PKI/ca.key"
ossl req -x509 -new -key "$PKI/ca.key" -sha256 -days 3650 -subj "/CN=runnel-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt"

# sign NAME SUBJECT EXTFILE-CONTENT: NAME.key + NAME.crt signed by the CA
sign() {
    newkey "$PKI/$1.key"
    ossl req -new -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
    printf '%s\n' "$3" >"$PKI/$1.ext"
    ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -sha256 -days 3650 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt"
    rm -f "$PKI/$1.csr" "$PKI/$1.ext"
}
# Serving cert: 127.0.0.1/localhost, plus the in-cluster names and the first IP
# of --service-cluster-ip-range (the `kubernetes` Service).
sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=runnel-e2e-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# Service-account token key pair.
newkey "$PKI/sa.key"
ossl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

b64() { base64 -w0 <"$1"; }
umask 077
cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: runnel-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: runnel-e2e-admin
  user:
    client-certificate-data: $(b64 "$PKI/admin.crt")
    client-key-data: $(b64 "$PKI/admin.key")
contexts:
- name: runnel-e2e
  context:
    cluster: runnel-e2e
    user: runnel-e2e-admin
    namespace: default
current-context: runnel-e2e
EOF
umask 022
cat >"$DIR/env" <<EOF
# source me: the cluster of e2e/kube-up.sh $DIR
export KUBECONFIG=$DIR/kubeconfig
export PATH=$DIR/bin:\$PATH
export HELM_CACHE_HOME=$DIR/helm/cache HELM_CONFIG_HOME=$DIR/helm/config HELM_DATA_HOME=$DIR/helm/data
EOF

# ---------------------------------------------------------------- processes --
# start NAME BINARY ARGS...: detached (own session, stdin /dev/null), log in
# DIR/NAME.log, pid in DIR/NAME.pid (the pid is the binary's: bash execs it).
start() {
    local name=$1; shift
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/$name.pid" "$@" \
        </dev/null >"$DIR/$name.log" 2>&1 8>&- 9>&- &
    local i
    for i in $(seq 50); do [[ -s $DIR/$name.pid ]] && return 0; sleep 0.1; done
    die "$name did not start (no pid file)"
}

STARTED=0
fail() {
    echo "kube-up: error: $*" >&2
    local f
    for f in etcd kube-apiserver; do
        [[ -f $DIR/$f.log ]] || continue
        echo "----- last lines of $DIR/$f.log -----" >&2
        tail -n 30 "$DIR/$f.log" >&2
    done
    if ((STARTED)); then
        echo "kube-up: stopping what was started (logs stay in $DIR)" >&2
        "$HERE/kube-down.sh" "$DIR" >&2 || true
    fi
    exit 1
}
alive() { local p; p=$(cat "$DIR/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

T0=$SECONDS
DEADLINE=$((SECONDS + TIMEOUT))
ETCD_URL=http://127.0.0.1:$ETCD_PORT
PEER_URL=http://127.0.0.1:$PEER_PORT

STARTED=1
start etcd "$BIN/etcd" \
    --name=runnel-e2e \
    --data-dir="$DIR/etcd" \
    --listen-client-urls="$ETCD_URL" --advertise-client-urls="$ETCD_URL" \
    --listen-peer-urls="$PEER_URL" --initial-advertise-peer-urls="$PEER_URL" \
    --initial-cluster="runnel-e2e=$PEER_URL" --initial-cluster-state=new \
    --unsafe-no-fsync=true

until [[ $(curl -fsS --max-time 2 "$ETCD_URL/health" 2>/dev/null) == *'"health":"true"'* ]]; do
    alive etcd || fail "etcd exited"
    ((SECONDS < DEADLINE)) || fail "etcd not healthy at $ETCD_URL after ${TIMEOUT}s"
    sleep 0.2
done

# Flags as envtest's, plus:
# --disable-admission-plugins=ServiceAccount: that plugin rejects Pods whose
#   ServiceAccount ("default") does not exist, and no controller-manager runs
#   to create it.
# --endpoint-reconciler-type=none: the `kubernetes` Service's Endpoints would
#   carry the advertise address 127.0.0.1, which validation rejects (loopback);
#   the default reconciler then logs an error every 10 s.
start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --secure-port="$API_PORT" \
    --cert-dir="$PKI" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --etcd-servers="$ETCD_URL" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-key-file="$PKI/sa.pub" \
    --authorization-mode=RBAC \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none

KUBECTL=("$BIN/kubectl" --kubeconfig "$DIR/kubeconfig" --request-timeout=5s)
until [[ $("${KUBECTL[@]}" get --raw /readyz 2>/dev/null) == ok ]]; do
    alive etcd || fail "etcd exited"
    alive kube-apiserver || fail "kube-apiserver exited"
    ((SECONDS < DEADLINE)) || fail "kube-apiserver not ready (/readyz) after ${TIMEOUT}s"
    sleep 0.3
done
until "${KUBECTL[@]}" api-resources --api-group=apiextensions.k8s.io -o name 2>/dev/null \
        | grep -qx 'customresourcedefinitions.apiextensions.k8s.io'; do
    alive kube-apiserver || fail "kube-apiserver exited"
    ((SECONDS < DEADLINE)) || fail "customresourcedefinitions not served after ${TIMEOUT}s"
    sleep 0.3
done

log "up in $((SECONDS - T0)) s: kube-apiserver $K8S_VERSION https://127.0.0.1:$API_PORT, etcd $ETCD_VERSION $ETCD_URL"
log "kubectl/helm: $DIR/bin; stop: $HERE/kube-down.sh $DIR; or: source $DIR/env"
echo "$DIR/kubeconfig"
