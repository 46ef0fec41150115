# A real Kubernetes control plane for the tests and scripts/dev-env, built from the upstream Go
# modules pinned in controlplane/ (nothing of their code is in this repository):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake Nodes whose Pods run),
# the upstream CRDs of cert-manager, Prometheus Operator and the OpenTelemetry Operator, and
# controlplane/testcloud (the stand-ins for a cloud's LoadBalancer and cert-manager's controller,
# and the fault proxy each test starts in front of the API server).
#
# Source this file; it defines:
#   cp_build           builds the binaries once per pinned version into $MATIH_CACHE/controlplane/
#   cp_start DIR       starts the control plane; writes DIR/kubeconfig (cluster admin), DIR/env
#   cp_stop DIR        stops what cp_start DIR started
#   cp_pin_kubernetes  rewrites controlplane/kubernetes/go.mod's replace block from k8s.io/kubernetes's go.mod

CP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CP_CACHE="${MATIH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/matih}/controlplane"
# The versions of the CRD modules read at start (their YAML is read from the module cache).
CP_CERT_MANAGER=github.com/cert-manager/cert-manager@v1.21.2
CP_PROMETHEUS_OPERATOR=github.com/prometheus-operator/prometheus-operator@v0.85.0
CP_OTEL_OPERATOR=github.com/open-telemetry/opentelemetry-operator@v0.140.0
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

cp_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The Kubernetes version pinned in controlplane/kubernetes/go.mod (v1.34.3).
cp_kube_version() {
  sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$CP_ROOT/controlplane/kubernetes/go.mod"
}

# The staging modules k8s.io/kubernetes replaces with ./staging/... in its own go.mod.
cp_staging_modules() {
  local version=$1 gomod
  gomod=$(cd "$CP_ROOT/controlplane/kubernetes" && go mod download -json "k8s.io/kubernetes@$version" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort
}

# cp_pin_kubernetes [VERSION]: (re)writes the wrapper's require and replace block for VERSION.
cp_pin_kubernetes() {
  local version=${1:-$(cp_kube_version)} dir="$CP_ROOT/controlplane/kubernetes" staging
  staging=$(cp_staging_modules "$version") || return 1
  {
    sed '/^\/\/ replace: derived/,$d' "$dir/go.mod" | sed "s/^require k8s.io\/kubernetes v.*/require k8s.io\/kubernetes $version/"
    echo "// replace: derived by scripts/lib/controlplane.sh (cp_pin_kubernetes) from k8s.io/kubernetes $version's go.mod,"
    echo "// which replaces these staging modules with local paths; do not edit by hand."
    for m in $staging; do echo "replace $m => $m v0.${version#v1.}"; done
  } >"$dir/go.mod.new"
  mv "$dir/go.mod.new" "$dir/go.mod"
  (cd "$dir" && go mod tidy)
}

# The key of one build of the upstream binaries: the wrapper modules and the Go version.
cp_build_key() {
  (cd "$CP_ROOT/controlplane" && cat kubernetes/go.mod kubernetes/go.sum etcd/go.mod etcd/go.sum kwok/go.mod \
    kwok/go.sum && go version) | sha256sum | cut -c1-16
}

# cp_build: builds the control plane's binaries unless this pin is built already, and testcloud
# (the project's own, seconds to build) unless its sources are; sets CP_BIN and CP_TESTCLOUD.
cp_build() {
  local key version start ldflags p tc_key
  tc_key=$(cd "$CP_ROOT/controlplane/testcloud" && cat go.mod ./*.go | sha256sum | cut -c1-16)
  CP_TESTCLOUD="$CP_CACHE/testcloud-$tc_key/testcloud"
  export CP_TESTCLOUD
  if [ ! -x "$CP_TESTCLOUD" ]; then
    mkdir -p "$(dirname "$CP_TESTCLOUD")"
    (cd "$CP_ROOT/controlplane/testcloud" && go build -trimpath -o "$CP_TESTCLOUD.tmp" . && mv "$CP_TESTCLOUD.tmp" "$CP_TESTCLOUD") ||
      return 1
  fi
  key=$(cp_build_key)
  CP_BIN="$CP_CACHE/bin-$key"
  export CP_BIN
  if [ -x "$CP_BIN/kube-apiserver" ] && [ -x "$CP_BIN/etcd" ] && [ -x "$CP_BIN/kwok" ]; then
    return 0
  fi
  command -v go >/dev/null || { echo "error: the control plane is built with Go (go not found)" >&2; return 1; }
  version=$(cp_kube_version)
  # The replace block must be what k8s.io/kubernetes's own go.mod says (derived, never typed).
  local want have
  want=$(cp_staging_modules "$version" | tr '\n' ' ')
  have=$(sed -n 's/^replace \(k8s\.io\/[a-z0-9-]*\) => .*/\1/p' "$CP_ROOT/controlplane/kubernetes/go.mod" | sort | tr '\n' ' ')
  if [ "$want" != "$have" ]; then
    echo "error: controlplane/kubernetes/go.mod does not replace exactly the staging modules of k8s.io/kubernetes $version;" >&2
    echo "       run: (. scripts/lib/controlplane.sh && cp_pin_kubernetes $version)" >&2
    return 1
  fi
  mkdir -p "$CP_BIN.tmp"
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$version" | cut -d. -f2)"
    ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  start=$(date +%s)
  echo "==> building the Kubernetes control plane $version (kube-apiserver, kube-controller-manager, kube-scheduler) from Go modules" >&2
  (cd "$CP_ROOT/controlplane/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$CP_BIN.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler) || return 1
  echo "    $(( $(date +%s) - start )) s" >&2
  start=$(date +%s)
  echo "==> building etcd $(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 //p' "$CP_ROOT/controlplane/etcd/go.mod") and kwok $(sed -n 's/^require sigs.k8s.io\/kwok //p' "$CP_ROOT/controlplane/kwok/go.mod")" >&2
  (cd "$CP_ROOT/controlplane/etcd" && go build -trimpath -ldflags "-s -w" -o "$CP_BIN.tmp/etcd" go.etcd.io/etcd/server/v3) || return 1
  (cd "$CP_ROOT/controlplane/kwok" && go build -trimpath -ldflags "-s -w" -o "$CP_BIN.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok) || return 1
  echo "    $(( $(date +%s) - start )) s" >&2
  rm -rf "$CP_BIN" && mv "$CP_BIN.tmp" "$CP_BIN"
}

# The directory of a module in the module cache, downloading it first if needed.
cp_module_dir() {
  (cd "$CP_ROOT/controlplane/kubernetes" && go mod download -json "$1" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')
}

cp_pki() {
  local pki=$1/pki
  mkdir -p "$pki"
  (
    cd "$pki" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=matih-test-ca" 2>/dev/null
    cert() { # NAME SUBJECT [SAN]
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "${3:+subjectAltName=$3}" "extendedKeyUsage=serverAuth,clientAuth" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$1.crt" -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    cert admin "/O=system:masters/CN=matih-test-admin"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    cert kwok "/O=system:masters/CN=kwok"
    cert testcloud "/O=system:masters/CN=testcloud"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
}

cp_kubeconfig() { # FILE USER
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: matih-test
  cluster:
    server: $CP_URL
    certificate-authority: $CP_DIR/pki/ca.crt
contexts:
- name: matih-test
  context:
    cluster: matih-test
    user: $2
current-context: matih-test
users:
- name: $2
  user:
    client-certificate: $CP_DIR/pki/$2.crt
    client-key: $CP_DIR/pki/$2.key
KCFG
}

# cp_spawn NAME CMD...: starts CMD in the background with its log in DIR/NAME.log and pid in DIR/NAME.pid.
cp_spawn() {
  local name=$1
  shift
  nohup "$@" >"$CP_DIR/$name.log" 2>&1 &
  echo $! >"$CP_DIR/$name.pid"
}

cp_wait() { # WHAT SECONDS CMD...
  local what=$1 secs=$2 i
  shift 2
  for i in $(seq 1 $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "error: $what did not come up within ${secs}s; see $CP_DIR/*.log" >&2
  return 1
}

cp_kubectl() {
  kubectl --kubeconfig "$CP_DIR/kubeconfig" --cache-dir "$CP_DIR/.kube-cache" "$@"
}

# cp_start DIR: starts the control plane (building it first if needed; a DIR used before keeps its
# cluster) and exports KUBECONFIG,
# MATIH_TEST_CONTROLPLANE (DIR) and CP_URL. Prints its start time and memory.
cp_start() {
  CP_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
  export CP_DIR
  if [ -f "$CP_DIR/kube-apiserver.pid" ] && kill -0 "$(cat "$CP_DIR/kube-apiserver.pid")" 2>/dev/null; then
    CP_URL=$(cat "$CP_DIR/apiserver.url")
    export CP_URL KUBECONFIG="$CP_DIR/kubeconfig" MATIH_TEST_CONTROLPLANE="$CP_DIR"
    echo "Kubernetes control plane already running at $CP_URL"
    return 0
  fi
  cp_build || return 1
  local start etcd_port peer_port api_port cert_dir cert_mgr prom otel
  start=$(date +%s.%N)
  # A directory started before (scripts/dev-env up, down, up) keeps its cluster: its etcd data,
  # certificates and ports are reused.
  rm -f "$CP_DIR"/*.log
  [ -f "$CP_DIR/pki/ca.crt" ] || cp_pki "$CP_DIR"
  if [ -f "$CP_DIR/ports" ]; then
    read -r etcd_port peer_port api_port <"$CP_DIR/ports"
  else
    etcd_port=$(cp_free_port) peer_port=$(cp_free_port) api_port=$(cp_free_port)
    echo "$etcd_port $peer_port $api_port" >"$CP_DIR/ports"
  fi
  CP_URL="https://127.0.0.1:$api_port"
  echo "$CP_URL" >"$CP_DIR/apiserver.url"
  echo "$CP_TESTCLOUD" >"$CP_DIR/testcloud.path"
  for u in admin controller-manager scheduler kwok; do cp_kubeconfig "$CP_DIR/$u.kubeconfig" "$u"; done
  mv "$CP_DIR/admin.kubeconfig" "$CP_DIR/kubeconfig"

  cp_spawn etcd "$CP_BIN/etcd" --name default --data-dir "$CP_DIR/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" --log-level warn
  cp_spawn kube-apiserver "$CP_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$CP_DIR/pki/apiserver.crt" --tls-private-key-file "$CP_DIR/pki/apiserver.key" \
    --client-ca-file "$CP_DIR/pki/ca.crt" --authorization-mode RBAC --allow-privileged=true \
    --service-cluster-ip-range 10.96.0.0/16 --service-account-issuer "$CP_URL" \
    --service-account-key-file "$CP_DIR/pki/sa.pub" --service-account-signing-key-file "$CP_DIR/pki/sa.key" \
    --endpoint-reconciler-type none --profiling=false --v 1
  cp_wait "kube-apiserver" 90 curl -fsS --cacert "$CP_DIR/pki/ca.crt" --cert "$CP_DIR/pki/admin.crt" \
    --key "$CP_DIR/pki/admin.key" "$CP_URL/readyz" || return 1

  cp_spawn kube-controller-manager "$CP_BIN/kube-controller-manager" --kubeconfig "$CP_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CP_DIR/controller-manager.kubeconfig" --authorization-kubeconfig "$CP_DIR/controller-manager.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --use-service-account-credentials \
    --service-account-private-key-file "$CP_DIR/pki/sa.key" --root-ca-file "$CP_DIR/pki/ca.crt" \
    --controllers '*' --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 \
    --concurrent-namespace-syncs 10 --concurrent-gc-syncs 30 --v 1
  cp_spawn kube-scheduler "$CP_BIN/kube-scheduler" --kubeconfig "$CP_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CP_DIR/scheduler.kubeconfig" --authorization-kubeconfig "$CP_DIR/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --v 1

  # kwok's stages, read from the kwok module in the module cache: nodes Ready, pods Running and
  # Ready, Job pods Succeeded, deleted pods gone.
  local kwok_dir
  kwok_dir=$(cp_module_dir "sigs.k8s.io/kwok@$(sed -n 's/^require sigs.k8s.io\/kwok //p' "$CP_ROOT/controlplane/kwok/go.mod")") || return 1
  {
    printf 'apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  nodeLeaseDurationSeconds: 40\n  nodeLeaseParallelism: 4\n  podPlayStageParallelism: 8\n  nodePlayStageParallelism: 2\n  podsOnNodeSyncParallelism: 2\n'
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo '---'
      cat "$kwok_dir/kustomize/stage/$f"
    done
  } >"$CP_DIR/kwok.yaml"
  cp_spawn kwok "$CP_BIN/kwok" --kubeconfig "$CP_DIR/kwok.kubeconfig" --config "$CP_DIR/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 10.10.0.1 --server-address ""

  # The upstream CRDs, from the projects' own modules.
  cert_mgr=$(cp_module_dir "$CP_CERT_MANAGER") && prom=$(cp_module_dir "$CP_PROMETHEUS_OPERATOR") &&
    otel=$(cp_module_dir "$CP_OTEL_OPERATOR") || return 1
  cp_kubectl apply --server-side -f "$cert_mgr/deploy/crds/" -f "$prom/example/prometheus-operator-crd/" \
    -f "$otel/config/crd/bases/" >"$CP_DIR/crds.log" || { cat "$CP_DIR/crds.log" >&2; return 1; }

  # Two fake nodes for the scheduler and kwok.
  for n in 1 2; do
    cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$n
  annotations: {kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$n, kubernetes.io/os: linux, kubernetes.io/arch: amd64, topology.kubernetes.io/region: eastus}
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "5000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "5000"}
---
NODE
  done | cp_kubectl apply -f - >/dev/null || return 1
  cp_kubectl wait --for condition=established --timeout 60s crd --all >/dev/null || return 1

  cp_spawn testcloud "$CP_TESTCLOUD" standin --dir "$CP_DIR" \
    --lb-ip-delay "${MATIH_TEST_LB_IP_DELAY:-200ms}" --certificate-delay "${MATIH_TEST_CERTIFICATE_DELAY:-200ms}"
  cp_wait "the fake nodes" 60 sh -c "[ \$(kubectl --kubeconfig '$CP_DIR/kubeconfig' --cache-dir '$CP_DIR/.kube-cache' get nodes --no-headers 2>/dev/null | grep -cw Ready) -ge 2 ]" || return 1
  # The default ServiceAccount a Pod needs is made by the serviceaccount controller, per namespace.
  cp_wait "the default ServiceAccount" 60 cp_kubectl get serviceaccount default -n default || return 1

  cat >"$CP_DIR/env" <<ENV
export KUBECONFIG="$CP_DIR/kubeconfig"
export MATIH_TEST_CONTROLPLANE="$CP_DIR"
ENV
  export CP_URL KUBECONFIG="$CP_DIR/kubeconfig" MATIH_TEST_CONTROLPLANE="$CP_DIR"
  local rss
  rss=$(for p in etcd kube-apiserver kube-controller-manager kube-scheduler kwok testcloud; do
    ps -o rss= -p "$(cat "$CP_DIR/$p.pid")"; done | awk '{s+=$1} END {printf "%d", s/1024}')
  printf '==> Kubernetes %s control plane at %s: started in %.1f s, %s MiB resident\n' \
    "$(cp_kube_version)" "$CP_URL" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" "$rss" >&2
}

# cp_stop DIR: stops the processes cp_start DIR started (their data goes with the directory).
cp_stop() {
  local dir=$1 p
  for p in testcloud kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if [ -f "$dir/$p.pid" ]; then
      kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
      rm -f "$dir/$p.pid"
    fi
  done
}
