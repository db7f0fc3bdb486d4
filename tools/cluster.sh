#!/usr/bin/env bash
# A three-node Kubernetes on this machine for the prod stack (docs/kubernetes.md):
# etcd, kube-apiserver, controller-manager, scheduler, kube-proxy and, per node, a containerd and a
# kubelet with their own cgroup root, ports and pod range on one bridge (so the Vault StatefulSet's
# required anti-affinity is met), CoreDNS, a default `local` StorageClass with pre-made volumes, and the
# project's images imported from the engine. Pod traffic stays on this machine.
#   cluster.sh up       start (or check) the cluster; import the images; print the kubeconfig
#   cluster.sh down     stop it, remove its pods, rules, mounts, cgroups and volumes, restore host settings;
#                       keeps the PKI and the nodes' image stores for a fast next `up`
#   cluster.sh wipe     down, then delete the state directory
#   cluster.sh images   (re)import the images whose engine id changed
#   cluster.sh volumes  offer again the local volumes whose claims were deleted (emptied first)
#   cluster.sh status   exit 0 if the cluster answers and every node is Ready
#   cluster.sh env      the KUBECONFIG export
#   cluster.sh packages the Debian packages it needs (containerd, runc, CNI plugins, iptables, nftables...);
#                       with --check, only whether they are installed
# Needs root and the toolchain's environment (source .toolchain/env.sh; `make cluster` does it).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster/pki.sh"
source "$(dirname "$0")/cluster/addons.sh"
source "$(dirname "$0")/versions.env"

S=${CLUSTER_STATE:-$REPO_ROOT/.cluster}
NODES=$(for i in 1 2 3; do echo "envvars-node-$i"; done)
POD_NET=10.244.0.0/16           # one bridge; node i allocates from 10.244.i.0/24
SVC_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
GATEWAY=10.244.0.1              # the bridge's address: NodePorts answer here, never on the machine's interfaces
BRIDGE=envvars-k8s0
GUARD_TABLE=envvars_k8s_guard
ETCD_PORT=${CLUSTER_ETCD_PORT:-23790}
API_PORT=${CLUSTER_API_PORT:-16443}
KUBELET_PORT=20250 KUBELET_HEALTHZ=20248   # +100 per node
PROXY_HEALTHZ=20256 PROXY_METRICS=20249
PV_PER_NODE=12
PAUSE_IMAGE=localhost/vault-envvars/pause:$PAUSE_REVISION
COREDNS_IMAGE=localhost/vault-envvars/coredns:$COREDNS_VERSION
# Tunables the kubelet, the bridge plugin or kube-proxy may change; `down` puts them back.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
 kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet"
# Host paths the kubelet, containerd or CNI create whatever their flags say; removed if they were not there.
HOST_PATHS="/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd /usr/libexec/kubernetes"
DEBIAN_PACKAGES="containerd runc containernetworking-plugins iptables nftables conntrack openssl"

KUBECONFIG_FILE=$S/kubeconfig/admin.kubeconfig
node_index() { local i=0 n; for n in $NODES; do i=$((i+1)); if [ "$n" = "$1" ]; then echo "$i"; fi; done; }
sock() { echo "$S/nodes/$1/containerd.sock"; }
kctl() { "$KUBE_NODE_BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctr_() { ctr -a "$(sock "$1")" -n k8s.io "${@:2}"; }
alive() { [ -f "$S/pids/$1.pid" ] && kill -0 "$(cat "$S/pids/$1.pid")" 2>/dev/null; }
start() {  # start NAME CMD...: in its own session (survives the caller), log and pid under $S
  local name=$1; shift
  setsid "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$S/pids/$name.pid"
}
wait_for() {  # wait_for SECONDS PROCESS CMD...: until CMD succeeds; fails early if PROCESS died
  local deadline=$(( $(date +%s) + $1 )) name=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ -n "$name" ] && ! alive "$name"; then tail -n 20 "$S/logs/$name.log" >&2; die "$name exited (log: $S/logs/$name.log)"; fi
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for: $* (logs: $S/logs/)"
    sleep 0.3
  done
}

need_tools() {
  [ "$(id -u)" = 0 ] || die "the local cluster needs root (kubelets, containerd, network namespaces)"
  local v
  for v in KUBE_NODE_BIN KUBE_TEST_BIN COREDNS_BIN CRICTL_BIN PAUSE_BIN DOCKER_HOST; do
    [ -n "${!v:-}" ] || die "$v is not set: source .toolchain/env.sh (or run make cluster)"
  done
  # shellcheck disable=SC2086
  apt_install $DEBIAN_PACKAGES
}

host_ip() {  # the address pods reach the API server at (the `kubernetes` Service's endpoint)
  local dev
  dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
  if [ -n "$dev" ]; then ip -4 -o addr show dev "$dev" | awk '{print $4}' | cut -d/ -f1 | head -n1
  else hostname -I | awk '{print $1}'; fi
}

node_config() {  # node_config NODE: its containerd, CNI and kubelet configuration
  local n=$1 i D; i=$(node_index "$n"); D=$S/nodes/$n
  mkdir -p "$D"/{cni,cni-ipam,containerd,kubelet,pod-logs}
  cat >"$D/containerd.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$(sock "$n")"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: without this every sandbox fails ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$D/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni"
EOF
  # Every node's pods on one bridge; this node's /24 of the pod network. Pods get no default route: only
  # the pod network (on-link) and the Service range (through the bridge, where kube-proxy rewrites it).
  cat >"$D/cni/10-envvars.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "envvars-local",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$D/cni-ipam",
              "ranges": [[{"subnet": "$POD_NET", "gateway": "$GATEWAY",
                           "rangeStart": "${POD_NET%.*.*}.$i.2", "rangeEnd": "${POD_NET%.*.*}.$i.254"}]],
              "routes": [{"dst": "$SVC_CIDR"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: "$S/pki/ca.crt"}}
authorization: {mode: Webhook}
tlsCertFile: "$S/pki/kubelet-$n.crt"
tlsPrivateKeyFile: "$S/pki/kubelet-$n.key"
cgroupDriver: cgroupfs        # systemd is not PID 1; containerd 1.6 cannot report its driver
cgroupRoot: /$n               # each kubelet its own cgroup tree
failSwapOn: false
containerRuntimeEndpoint: "unix://$(sock "$n")"
clusterDNS: ["$DNS_IP"]
clusterDomain: cluster.local
resolvConf: "$S/etc/resolv.conf"
port: $(( KUBELET_PORT + 100 * (i - 1) ))
healthzPort: $(( KUBELET_HEALTHZ + 100 * (i - 1) ))
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
podLogsDir: "$D/pod-logs"
volumePluginDir: "$D/kubelet/volume-plugins"
rotateCertificates: false
serializeImagePulls: false
# One shared disk: never evict for disk space, never garbage-collect the imported images.
evictionHard: {memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
}

configs() {
  mkdir -p "$S"/{etc,logs,pids,kubeconfig,images}
  # shellcheck disable=SC2086
  cluster_pki $NODES
  local n
  for n in $NODES; do node_config "$n"; done
  echo "# pods with dnsPolicy Default get no upstream resolver: nothing leaves this machine" >"$S/etc/resolv.conf"
  cat >"$S/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$S/kubeconfig/kube-proxy.kubeconfig"}
hostnameOverride: $(echo "$NODES" | head -n1)
mode: iptables
clusterCIDR: $POD_NET
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ
metricsBindAddress: 127.0.0.1:$PROXY_METRICS
nodePortAddresses: ["$GATEWAY/32"]
iptables: {localhostNodePorts: false}   # else it turns on net.ipv4.conf.all.route_localnet
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}   # host sysctls untouched
EOF
}

cgroup_root() {  # cgroup_root NODE: /NODE in every cgroup v1 hierarchy (the kubelet needs it to exist)
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] && [ ! -f "$h/cgroup.controllers" ] || continue
    mkdir -p "$h/$1"
    if [ -f "$h/cpuset.cpus" ]; then cat "$h/cpuset.cpus" >"$h/$1/cpuset.cpus"; cat "$h/cpuset.mems" >"$h/$1/cpuset.mems"; fi
  done
}

guard() {  # nothing from the pod bridge is forwarded to another interface (the bridge plugin turns ip_forward on)
  nft -f - <<EOF
table inet $GUARD_TABLE
delete table inet $GUARD_TABLE
table inet $GUARD_TABLE {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" counter drop
  }
}
EOF
}

status() {
  [ -s "$KUBECONFIG_FILE" ] && alive kube-apiserver || return 1
  local n
  for n in $NODES; do
    alive "kubelet-$n" || return 1
    kctl get node "$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True || return 1
  done
}

up() {
  need_tools
  if status; then echo "cluster already up"; images; addons; print_env; return 0; fi
  alive etcd || alive kube-apiserver && die "a previous cluster is half up: run tools/cluster.sh down first"
  HOST_IP=$(host_ip)
  [ -n "$HOST_IP" ] || die "no IPv4 address on this machine for the API server to advertise"
  local p ports="$ETCD_PORT $((ETCD_PORT + 10)) $API_PORT $PROXY_HEALTHZ $PROXY_METRICS" i
  for i in 1 2 3; do ports="$ports $((KUBELET_PORT + 100 * (i - 1))) $((KUBELET_HEALTHZ + 100 * (i - 1)))"; done
  for p in $ports; do
    ! ss -ltnH "sport = :$p" | grep -q . || die "port $p is in use (CLUSTER_ETCD_PORT / CLUSTER_API_PORT pick others)"
  done
  mkdir -p "$S"
  # A failed `up` takes down what it started: no half cluster left running.
  trap 'rc=$?; if [ "$rc" != 0 ]; then echo "cluster up failed: stopping what it started" >&2; down >&2; fi' EXIT
  [ -f "$S/sysctl.saved" ] || for p in $SYSCTLS; do sysctl -e "$p"; done >"$S/sysctl.saved" 2>/dev/null
  [ -f "$S/nft-tables.before" ] || nft list tables >"$S/nft-tables.before"
  for p in $HOST_PATHS; do
    [ -e "$p" ] || grep -qx "$p" "$S/host-paths-created" 2>/dev/null || echo "$p" >>"$S/host-paths-created"
  done
  step "local cluster: configuration and certificates (API server at $HOST_IP:$API_PORT)"
  configs
  done_step
  step "etcd, kube-apiserver, three containerds"
  local K=$KUBE_NODE_BIN P=$S/pki n
  start etcd "$KUBE_TEST_BIN/etcd" --name envvars-local --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "envvars-local=http://127.0.0.1:$((ETCD_PORT + 10))"
  for n in $NODES; do start "containerd-$n" containerd --config "$S/nodes/$n/containerd.toml"; done
  wait_for 60 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  start kube-apiserver "$KUBE_TEST_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=0.0.0.0 --secure-port="$API_PORT" --advertise-address="$HOST_IP" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$P/apiserver-kubelet-client.key" --kubelet-certificate-authority="$P/ca.crt" \
    --kubelet-preferred-address-types=InternalIP --service-cluster-ip-range="$SVC_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --anonymous-auth=false --profiling=false \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key"
  wait_for 120 kube-apiserver kctl get --raw /readyz
  for n in $NODES; do wait_for 30 "containerd-$n" ctr -a "$(sock "$n")" version; done
  done_step
  step "controllers, scheduler, kubelets, kube-proxy; waiting for three Ready nodes"
  guard
  start kube-controller-manager "$K/kube-controller-manager" \
    --kubeconfig="$S/kubeconfig/controller-manager.kubeconfig" --leader-elect=false --secure-port=0 \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --use-service-account-credentials=true --service-cluster-ip-range="$SVC_CIDR" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" --profiling=false
  start kube-scheduler "$K/kube-scheduler" --kubeconfig="$S/kubeconfig/scheduler.kubeconfig" \
    --leader-elect=false --secure-port=0 --profiling=false
  images
  for n in $NODES; do
    cgroup_root "$n"
    start "kubelet-$n" "$K/kubelet" --config="$S/nodes/$n/kubelet.yaml" \
      --kubeconfig="$S/kubeconfig/kubelet-$n.kubeconfig" --root-dir="$S/nodes/$n/kubelet" \
      --cert-dir="$S/nodes/$n/kubelet/pki" --hostname-override="$n" --node-ip="$HOST_IP" --v=1
  done
  start kube-proxy "$K/kube-proxy" --config="$S/etc/kube-proxy.yaml"
  for n in $NODES; do wait_for 180 "kubelet-$n" kctl wait --for=condition=Ready "node/$n" --timeout=2s; done
  done_step
  addons
  for p in "$S"/pids/*.pid; do n=$(basename "$p" .pid); alive "$n" || die "$n died; see $S/logs/$n.log"; done
  trap - EXIT
  print_env
}

addons() {
  step "CoreDNS, the local StorageClass and its volumes"
  # shellcheck disable=SC2086
  cluster_addons $NODES | kctl apply -f - >/dev/null
  recycle_volumes
  kctl -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null
  done_step
}

recycle_volumes() {  # a Released local volume (its claim deleted) is emptied and offered again
  local pv path
  for pv in $(kctl get pv -o 'jsonpath={range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}'); do
    path=$(kctl get pv "$pv" -o 'jsonpath={.spec.local.path}')
    case $path in "$S"/volumes/*) find "$path" -mindepth 1 -delete ;; *) continue ;; esac
    kctl patch pv "$pv" --type json -p '[{"op": "remove", "path": "/spec/claimRef"}]' >/dev/null
  done
}

# The images pods run: built on the engine (pause, CoreDNS: a static binary FROM scratch; the service from
# service/Dockerfile), saved from it and imported into every node's containerd when the engine's id changed.
DOCKER=("$REPO_ROOT/.venv/bin/python" "$REPO_ROOT/tools/dockerctl.py")
scratch_image() {  # scratch_image TAG BINARY
  "${DOCKER[@]}" exists "$1" && return 0
  local ctx; ctx=$(mktemp -d)
  cp "$2" "$ctx/"
  printf 'FROM scratch\nCOPY %s /%s\nUSER 65532:65532\nENTRYPOINT ["/%s"]\n' "$(basename "$2")" "$(basename "$2")" "$(basename "$2")" >"$ctx/Dockerfile"
  "${DOCKER[@]}" build "$ctx" "$1" 2>"$S/images/$(basename "$2")-build.log" \
    || die "building $1 failed; see $S/images/$(basename "$2")-build.log"
  rm -rf "$ctx"
}
images() {
  mkdir -p "$S/images"
  step "images into the nodes' containerd (imported when the engine's copy changed)"
  scratch_image "$PAUSE_IMAGE" "$PAUSE_BIN/pause"
  scratch_image "$COREDNS_IMAGE" "$COREDNS_BIN/coredns"
  # tools/images.sh prints "<what> image: <name>" for each image it makes (base, vault, postgres).
  local out made base service=localhost/vault-envvars/service:local
  out=$(bash "$REPO_ROOT/tools/images.sh")
  made=$(sed -n 's/^[a-z]* image: //p' <<<"$out")
  base=$(sed -n 's/^base image: //p' <<<"$out")
  bash "$REPO_ROOT/tools/service-wheels.sh" >/dev/null
  "${DOCKER[@]}" build-file "$REPO_ROOT" service/Dockerfile "$service" "BASE=$base" 2>"$S/images/service-build.log" \
    || die "building $service failed; see $S/images/service-build.log"
  local img id n tar imported=""
  for img in "$PAUSE_IMAGE" "$COREDNS_IMAGE" $made "$service"; do
    id=$("${DOCKER[@]}" id "$img")
    tar=""
    for n in $NODES; do
      [ "$(cat "$S/nodes/$n/images/${img//\//_}" 2>/dev/null)" = "$id" ] && continue
      if [ -z "$tar" ]; then tar=$S/images/export.tar; "${DOCKER[@]}" save "$img" >"$tar"; fi
      ctr -a "$(sock "$n")" -n k8s.io images import "$tar" >/dev/null
      mkdir -p "$S/nodes/$n/images"; echo "$id" >"$S/nodes/$n/images/${img//\//_}"
    done
    [ -z "$tar" ] || { rm -f "$tar"; imported="$imported $img"; }
  done
  done_step "${imported:-nothing new}"
}

print_env() {
  echo "Cluster up: three nodes. kubectl: export KUBECONFIG=$KUBECONFIG_FILE PATH=$KUBE_NODE_BIN:\$PATH"
}

stop_process() {  # stop_process NAME: SIGTERM what we started, SIGKILL after 15 s
  local f=$S/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    ! kill -0 "$pid" 2>/dev/null || kill -9 "$pid"
  fi
  rm -f "$f"
}

remove_pods() {  # remove_pods NODE: every sandbox and container of the node (their shims then exit)
  local a p t c; a=$(sock "$1")
  local cri=("$CRICTL_BIN/crictl" -r "unix://$a" -i "unix://$a" --timeout 10s)
  for p in $("${cri[@]}" pods -q 2>/dev/null); do
    "${cri[@]}" stopp "$p" >/dev/null 2>&1 || true; "${cri[@]}" rmp -f "$p" >/dev/null 2>&1 || true
  done
  for t in $(ctr_ "$1" tasks ls -q 2>/dev/null); do
    ctr_ "$1" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; sleep 0.3
    ctr_ "$1" tasks delete -f "$t" >/dev/null 2>&1 || true
  done
  for c in $(ctr_ "$1" containers ls -q 2>/dev/null); do ctr_ "$1" containers delete "$c" >/dev/null 2>&1 || true; done
}

down() {
  [ -d "$S" ] || { echo "no cluster state at $S"; return 0; }
  local n f ipt t h p
  stop_process kube-proxy
  for n in $NODES; do stop_process "kubelet-$n"; done
  stop_process kube-scheduler; stop_process kube-controller-manager
  for n in $NODES; do
    if alive "containerd-$n"; then remove_pods "$n"; fi
    stop_process "containerd-$n"
  done
  stop_process kube-apiserver; stop_process etcd
  # kube-proxy's chains (its --cleanup), the kubelet's (KUBE-FIREWALL, canaries), our guard table. Read with
  # iptables-save and touch only what exists: any iptables-nft command creates the table it names.
  # (Saved into a variable first: `iptables-save | grep -q` under pipefail fails when grep stops early.)
  for ipt in iptables ip6tables; do
    grep -q 'KUBE-' <<<"$("$ipt-save" 2>/dev/null || true)" || continue
    [ -z "${KUBE_NODE_BIN:-}" ] || "$KUBE_NODE_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    has() { grep -q "^:$2 " <<<"$("$ipt-save" -t "$1" 2>/dev/null || true)"; }
    if has filter KUBE-FIREWALL; then  # each kubelet adds its jumps
      while $ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
      while $ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
      $ipt -F KUBE-FIREWALL; $ipt -X KUBE-FIREWALL
    fi
    for t in filter nat mangle; do if has "$t" KUBE-KUBELET-CANARY; then $ipt -t "$t" -X KUBE-KUBELET-CANARY; fi; done
    if has mangle KUBE-IPTABLES-HINT; then $ipt -t mangle -X KUBE-IPTABLES-HINT; fi
  done
  nft delete table inet "$GUARD_TABLE" 2>/dev/null || true
  if [ -f "$S/nft-tables.before" ]; then  # tables iptables-nft created for us, now empty
    nft list tables 2>/dev/null | while read -r _ fam t; do
      grep -qx "table $fam $t" "$S/nft-tables.before" && continue
      case $fam in ip) ipt=iptables ;; ip6) ipt=ip6tables ;; *) continue ;; esac
      "$ipt-save" -t "$t" 2>/dev/null | grep -E '^(-A|:)' | grep -vqE '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT ' \
        || nft delete table "$fam" "$t"
    done
    rm -f "$S/nft-tables.before"
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  { grep -o " $S/[^ ]*" /proc/mounts || true; } | sort -r | while read -r p; do umount -l "$p" 2>/dev/null || true; done
  for h in /sys/fs/cgroup/*/; do
    for n in $NODES kubepods; do
      [ -d "$h/$n" ] && find "$h/$n" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  find /var/log/containers -maxdepth 1 -type l -lname "$S/*" -delete 2>/dev/null || true
  if [ -f "$S/host-paths-created" ]; then
    while read -r p; do rm -rf "$p"; done <"$S/host-paths-created"
    rm -f "$S/host-paths-created"
  fi
  if [ -f "$S/sysctl.saved" ]; then
    while read -r p _ v; do
      # ip_forward stays on while the engine's own bridge needs it.
      [ "$p" = net.ipv4.ip_forward ] && ip -br link | grep -qE '^(cni-)?podman' && continue
      sysctl -qw "$p=$v" 2>/dev/null || true
    done <"$S/sysctl.saved"
    rm -f "$S/sysctl.saved"
  fi
  # The cluster's data goes (the next `up` starts empty); PKI and the nodes' image stores stay.
  rm -rf "$S/etcd" "$S/volumes" "$S/logs" "$S/pids"
  for n in $NODES; do rm -rf "$S/nodes/$n/kubelet" "$S/nodes/$n/pod-logs" "$S/nodes/$n/cni-ipam" "$S/nodes/$n/containerd/state"; done
  echo "local cluster down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  wipe) down; rm -rf "$S"; echo "removed $S" ;;
  images) need_tools; images ;;
  volumes) recycle_volumes ;;
  # for tools/toolchain.sh; --check: exit 1 when one is missing, installing nothing
  packages) if [ "${2:-}" = --check ]; then dpkg -s $DEBIAN_PACKAGES >/dev/null 2>&1; else apt_install $DEBIAN_PACKAGES; fi ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
  *) echo "usage: $0 up|down|wipe|images|status|env" >&2; exit 2 ;;
esac
