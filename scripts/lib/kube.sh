# Helpers to run the Kubernetes API test server (src/bin/kube-test-server) in the background.
# Source this file; it defines kube_start DIR and kube_stop DIR.

# kube_start DIR: builds and starts the server on a free loopback port, writes DIR/kube.url,
# DIR/kubeconfig and DIR/kube.pid, and exports KUBE_API_URL and KUBECONFIG.
kube_start() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  mkdir -p "$dir"
  if [ -f "$dir/kube.pid" ] && kill -0 "$(cat "$dir/kube.pid")" 2>/dev/null; then
    echo "kube-test-server already running (pid $(cat "$dir/kube.pid"))"
  else
    cargo build --quiet --manifest-path "$root/Cargo.toml" --bin kube-test-server
    rm -f "$dir/kube.url"
    nohup "$root/target/debug/kube-test-server" --listen 127.0.0.1:0 --ready-file "$dir/kube.url" \
      --deployment-ready-delay-ms "${KUBE_DEPLOYMENT_READY_DELAY_MS:-500}" --lb-ip-delay-ms "${KUBE_LB_IP_DELAY_MS:-500}" \
      --certificate-ready-delay-ms "${KUBE_CERTIFICATE_READY_DELAY_MS:-500}" >"$dir/kube.log" 2>&1 &
    echo $! >"$dir/kube.pid"
    for _ in $(seq 1 100); do [ -s "$dir/kube.url" ] && break; sleep 0.1; done
    [ -s "$dir/kube.url" ] || { echo "kube-test-server did not start; see $dir/kube.log" >&2; return 1; }
  fi
  KUBE_API_URL=$(cat "$dir/kube.url")
  cat >"$dir/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: matih-test
  cluster:
    server: $KUBE_API_URL
contexts:
- name: matih-test
  context:
    cluster: matih-test
    user: matih-test
current-context: matih-test
users:
- name: matih-test
  user: {}
KCFG
  export KUBE_API_URL KUBECONFIG="$dir/kubeconfig"
}

# kube_stop DIR: stops the server started by kube_start DIR, if it runs.
kube_stop() {
  local dir=$1
  if [ -f "$dir/kube.pid" ]; then
    kill "$(cat "$dir/kube.pid")" 2>/dev/null || true
    rm -f "$dir/kube.pid" "$dir/kube.url"
  fi
}
