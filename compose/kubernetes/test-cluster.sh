#!/usr/bin/env bash
# corral's Kubernetes test cluster: one node on loopback, built here, no registry, no downloads.
#
#   test-cluster.sh up       build what is missing (cached), start it, print the kubeconfig path last
#   test-cluster.sh down     stop it and remove everything it made (processes, mounts, bridge, cgroups)
#   test-cluster.sh status   what runs, and the node's condition
#
# Parts: Kubernetes v1.20.2 built from Debian's source package with Debian's Go (the only Kubernetes
# this machine can get), Debian's etcd, a containerd of its own (own socket and root, so the Docker
# engine is untouched), the CNI bridge plugin, a pause image compiled here. No kube-proxy, no DNS.
# The node is named `localhost` so the API server reaches the kubelet (exec, port-forward, logs)
# on loopback; nothing sends traffic to pod addresses from the host.
#
# Cached (survives `down`): $CORRAL_K8S_CACHE (default ~/.cache/corral/k8s): source, binaries.
# State (removed by `down`): $CORRAL_K8S_DIR (default /var/lib/corral-k8s).
set -euo pipefail

CACHE=${CORRAL_K8S_CACHE:-$HOME/.cache/corral/k8s}
DIR=${CORRAL_K8S_DIR:-/var/lib/corral-k8s}
K8S_VERSION=1.20.2
SRC_PKG_VERSION=1.20.5+really1.20.2
BIN=$CACHE/bin-$K8S_VERSION
API_PORT=${CORRAL_K8S_API_PORT:-16443}
ETCD_PORT=23790
KUBELET_PORT=10250
BRIDGE=corral-k8s0
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
PAUSE_IMAGE=corral.local/pause:3.2
SOCK=$DIR/containerd/containerd.sock
KUBECONFIG_ADMIN=$DIR/admin.kubeconfig
PKGS=(golang-1.19-go etcd-server containerd runc containernetworking-plugins openssl busybox-static
      golang-github-modern-go-reflect2-dev rsync gcc libc6-dev curl iproute2)

log() { printf '\033[1m[k8s]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------------------ build
ensure_packages() {
    local missing=() pkg
    for pkg in "${PKGS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "need Debian packages: ${missing[*]} (run as root)"
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_binaries() {
    local b missing=0
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do [ -x "$BIN/$b" ] || missing=1; done
    [ $missing = 0 ] && return 0
    local src=$CACHE/src tree=$CACHE/src/kubernetes-$K8S_VERSION
    mkdir -p "$src" "$CACHE/apt/lists/partial"
    if [ ! -f "$tree/.corral-prepared" ]; then
        log "fetching Debian's kubernetes source package ($SRC_PKG_VERSION, ~35 MB)"
        echo "deb-src http://deb.debian.org/debian bookworm main" > "$CACHE/apt/sources.list"
        local opts=(-o "Dir::Etc::sourcelist=$CACHE/apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$CACHE/apt/lists")
        apt-get "${opts[@]}" update -qq 2>/dev/null
        (cd "$src" && apt-get "${opts[@]}" source --download-only -qq "kubernetes=$SRC_PKG_VERSION-1.1+deb12u1" 2>/dev/null \
            || apt-get "${opts[@]}" source --download-only -qq kubernetes 2>/dev/null)
        rm -rf "$tree"
        tar -C "$src" -xzf "$src"/kubernetes_*.orig.tar.gz
        # The vendored reflect2 does not build with Go 1.19; Debian's packaged copy does.
        rm -rf "$tree/vendor/github.com/modern-go/reflect2"
        cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
        touch "$tree/.corral-prepared"
    fi
    log "building Kubernetes v$K8S_VERSION (apiserver, controller-manager, scheduler, kubelet): ~5-10 min on 2 cores, once"
    rm -rf "$tree/_output"
    local started=$SECONDS
    (cd "$tree" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor \
        KUBE_GIT_VERSION=v$K8S_VERSION KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" 2>&1 \
        | while IFS= read -r line; do case "$line" in *"Building go targets"*|*"./cmd/"*) log "  $line";; esac; done)
    [ -x "$tree/_output/bin/kubelet" ] || die "the Kubernetes build failed (run make in $tree to see why)"
    mkdir -p "$BIN.tmp"
    cp "$tree"/_output/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet} "$BIN.tmp/"
    rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
    rm -rf "$tree/_output"  # 2+ GB of intermediate objects
    log "built in $((SECONDS - started)) s: $BIN"
}

ensure_pause_image() {
    # A static pause (PID 1 of every pod sandbox: sleeps, reaps, exits on SIGTERM/SIGINT), one layer.
    local tar=$CACHE/pause.tar
    [ -f "$tar" ] && return 0
    local work; work=$(mktemp -d)
    cat > "$work/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
    for (;;) pause();
}
EOF
    gcc -static -O2 -o "$work/pause" "$work/pause.c"
    mkdir -p "$work/root" && cp "$work/pause" "$work/root/pause"
    python3 "$(dirname "$0")/oci_archive.py" "$work/root" "$PAUSE_IMAGE" /pause "$tar.tmp"
    mv "$tar.tmp" "$tar"
    rm -rf "$work"
}

# ------------------------------------------------------------------------------------------- pki
pki() {
    local p=$DIR/pki
    [ -f "$p/.done" ] && return 0
    mkdir -p "$p" && chmod 700 "$p"
    log "making a throw-away CA and certificates"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=corral-test-ca" \
        -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
    cert apiserver "/CN=kube-apiserver" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.96.0.1"
    cert kubelet "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
    cert admin "/O=system:masters/CN=corral-admin" ""
    cert apiserver-kubelet "/O=system:masters/CN=kube-apiserver-kubelet-client" ""
    cert controller-manager "/CN=system:kube-controller-manager" ""
    cert scheduler "/CN=system:kube-scheduler" ""
    cert node "/O=system:nodes/CN=system:node:localhost" ""
    touch "$p/.done"
}

cert() {  # name subject [subjectAltName]
    local p=$DIR/pki name=$1 subj=$2 san=$3 ext
    ext=$(mktemp)
    { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=serverAuth,clientAuth"; [ -n "$san" ] && echo "subjectAltName=$san"; } > "$ext"
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
        -extfile "$ext" -out "$p/$name.crt" 2>/dev/null
    rm -f "$ext" "$p/$name.csr"
}

kubeconfig() {  # file cert-name
    cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: corral-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $DIR/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $DIR/pki/$2.crt
    client-key: $DIR/pki/$2.key
contexts:
- name: corral-test
  context: {cluster: corral-test, user: $2, namespace: default}
current-context: corral-test
EOF
    chmod 600 "$1"
}

# ------------------------------------------------------------------------------------- processes
alive() { [ -f "$DIR/pids/$1" ] && kill -0 "$(cat "$DIR/pids/$1")" 2>/dev/null; }

start() {  # name command...
    local name=$1; shift
    alive "$name" && return 0
    mkdir -p "$DIR/pids" "$DIR/logs"
    nohup "$@" >"$DIR/logs/$name.log" 2>&1 &
    echo $! > "$DIR/pids/$name"
}

wait_for() {  # what seconds command...
    local what=$1 limit=$2 t=0; shift 2
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1)); [ $t -ge $((limit * 4)) ] && die "$what did not come up within $limit s (logs: $DIR/logs)"
        sleep 0.25
    done
}

api() {  # method path [json-body]
    curl -sS --fail --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} "https://127.0.0.1:$API_PORT$2"
}

containerd_config() {
    mkdir -p "$DIR/containerd" "$DIR/cni/net.d"
    cat > "$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM cannot set negative OOM scores, which the kubelet asks for: without this every pod
  # fails at sandbox creation.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
EOF
    cat > "$DIR/cni/net.d/10-corral.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "corral-test",
 "plugins": [{"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
             {"type": "loopback"}]}
EOF
}

kubelet_config() {
    cat > "$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
authentication:
  x509: {clientCAFile: $DIR/pki/ca.crt}
  webhook: {enabled: false}
  anonymous: {enabled: false}
authorization: {mode: AlwaysAllow}
tlsCertFile: $DIR/pki/kubelet.crt
tlsPrivateKeyFile: $DIR/pki/kubelet.key
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
podCIDR: $POD_CIDR
maxPods: 110
EOF
}

import_images() {
    local ctr=(ctr --address "$SOCK" -n k8s.io)
    "${ctr[@]}" images ls -q | grep -qx "$PAUSE_IMAGE" || "${ctr[@]}" images import "$CACHE/pause.tar" >/dev/null
    # corral's runtime image (what `corral image build` prints; CORRAL_K8S_IMAGES names others, space
    # separated), when the Docker engine has it. Variants (a browser image is 1.1 GB) only on request.
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || return 0
    local ref refs=${CORRAL_K8S_IMAGES:-}
    local corral; corral="$(dirname "$0")/../../.venv/bin/corral"
    [ -z "$refs" ] && [ -x "$corral" ] && refs=$("$corral" image build --quiet 2>/dev/null | tail -1 || true)
    import_refs $refs
}

import_refs() {  # Docker images into the cluster's containerd (as docker.io/library/<ref>), once each
    local ctr=(ctr --address "$SOCK" -n k8s.io) ref
    for ref in "$@"; do
        docker image inspect "$ref" >/dev/null 2>&1 || { log "no image $ref in the Docker engine: not imported"; continue; }
        "${ctr[@]}" images ls -q | grep -qx "docker.io/library/$ref" && continue
        log "importing $ref into the cluster's containerd"
        docker save "$ref" | "${ctr[@]}" images import --all-platforms - >/dev/null
    done
}

up() {
    if status >/dev/null 2>&1; then log "already up"; echo "$KUBECONFIG_ADMIN"; return 0; fi
    ensure_packages
    ensure_binaries
    ensure_pause_image
    mkdir -p "$DIR" && chmod 755 "$DIR"
    pki
    kubeconfig "$KUBECONFIG_ADMIN" admin
    kubeconfig "$DIR/controller-manager.kubeconfig" controller-manager
    kubeconfig "$DIR/scheduler.kubeconfig" scheduler
    kubeconfig "$DIR/kubelet.kubeconfig" node
    containerd_config
    kubelet_config
    local started=$SECONDS
    log "starting etcd, containerd, the control plane and the kubelet"
    start etcd etcd --name corral-test --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
        --initial-cluster "corral-test=http://127.0.0.1:$((ETCD_PORT + 10))"
    start containerd containerd --config "$DIR/containerd/config.toml"
    start apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address 127.0.0.1 --insecure-port 0 \
        --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC --allow-privileged=false \
        --client-ca-file "$DIR/pki/ca.crt" --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
        --kubelet-client-certificate "$DIR/pki/apiserver-kubelet.crt" --kubelet-client-key "$DIR/pki/apiserver-kubelet.key" \
        --kubelet-certificate-authority "$DIR/pki/ca.crt" --kubelet-preferred-address-types Hostname,InternalIP \
        --service-account-key-file "$DIR/pki/sa.pub" --service-account-signing-key-file "$DIR/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc --enable-admission-plugins NodeRestriction
    wait_for "etcd" 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    wait_for "the API server" 60 api GET /readyz
    start controller-manager "$BIN/kube-controller-manager" --kubeconfig "$DIR/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --port 0 --leader-elect=false --controllers '*,-nodeipam' --enable-hostpath-provisioner \
        --use-service-account-credentials --service-account-private-key-file "$DIR/pki/sa.key" \
        --root-ca-file "$DIR/pki/ca.crt" --cluster-signing-cert-file "$DIR/pki/ca.crt" --cluster-signing-key-file "$DIR/pki/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR"
    start scheduler "$BIN/kube-scheduler" --kubeconfig "$DIR/scheduler.kubeconfig" --bind-address 127.0.0.1 --port 0 --leader-elect=false
    wait_for "containerd" 30 ctr --address "$SOCK" version
    import_images
    start kubelet "$BIN/kubelet" --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
        --container-runtime remote --container-runtime-endpoint "unix://$SOCK" --hostname-override localhost \
        --oom-score-adj 0 --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki" \
        --pod-infra-container-image "$PAUSE_IMAGE" --image-pull-progress-deadline 10s
    wait_for "the node" 90 node_ready
    ensure_storage_class
    wait_for "the default service account" 60 api GET /api/v1/namespaces/default/serviceaccounts/default
    log "cluster ready in $((SECONDS - started)) s (kubeconfig below)"
    echo "$KUBECONFIG_ADMIN"
}

node_ready() {
    api GET /api/v1/nodes/localhost | python3 -c '
import json, sys
node = json.load(sys.stdin)
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", [])) else 1)'
}

ensure_storage_class() {
    api GET /apis/storage.k8s.io/v1/storageclasses/corral-hostpath >/dev/null 2>&1 && return 0
    api POST /apis/storage.k8s.io/v1/storageclasses '{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "corral-hostpath", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}' >/dev/null
}

# ------------------------------------------------------------------------------------------ down
down() {
    [ -d "$DIR" ] || { log "not running (no $DIR)"; return 0; }
    local name
    for name in kubelet scheduler controller-manager apiserver; do stop "$name"; done
    if alive containerd; then  # pods' processes live under shims that outlive containerd: end them first
        local ctr=(ctr --address "$SOCK" -n k8s.io) id
        for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
        sleep 0.5
        for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true; done
        for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do "${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true; done
    fi
    stop containerd
    stop etcd
    pkill -9 -f "containerd-shim-runc-v2 -namespace k8s.io -address $SOCK" 2>/dev/null || true
    # mounts: kubelet volumes, containerd's rootfs and shm, the pods' network namespaces
    local m
    for m in $(awk -v d="$DIR" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
    for m in $(awk '$2 ~ "^/run/netns/cni-" || $2 ~ "^/var/run/netns/cni-" {print $2}' /proc/mounts); do
        umount "$m" 2>/dev/null || true; rm -f "$m"
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    local cg
    for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
        [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$DIR"
    rm -rf /var/lib/cni/networks/corral-test
    log "stopped; removed $DIR"
}

stop() {
    alive "$1" || return 0
    local pid; pid=$(cat "$DIR/pids/$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
}

status() {
    [ -d "$DIR" ] || { echo "down"; return 3; }
    local name rc=0
    for name in etcd containerd apiserver controller-manager scheduler kubelet; do
        if alive "$name"; then echo "$name: running (pid $(cat "$DIR/pids/$name"))"; else echo "$name: not running"; rc=1; fi
    done
    if node_ready 2>/dev/null; then echo "node localhost: Ready"; else echo "node localhost: not ready"; rc=1; fi
    echo "kubeconfig: $KUBECONFIG_ADMIN"
    return $rc
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    import) shift; [ -S "$SOCK" ] || { echo "the test cluster is not up (./dev k8s up)" >&2; exit 1; }; import_refs "$@" ;;
    *) echo "usage: $0 up|down|status|import IMAGE..." >&2; exit 2 ;;
esac
