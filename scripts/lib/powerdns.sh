#!/usr/bin/env bash
# PowerDNS Authoritative for tests and local runs: install it if missing, start one instance on loopback with its
# own config dir (LMDB backend, HTTP API on, no outbound security poll), stop it.
#
# Source it and call the functions:
#   . scripts/lib/powerdns.sh
#   pdns_install                              # apt-get update + install, only when something is missing
#   pdns_start DIR DNS_PORT API_PORT          # exports PDNS_API_URL, PDNS_API_KEY, PDNS_DNS_PORT
#   pdns_stop DIR
# or run it: scripts/lib/powerdns.sh install | start DIR DNS_PORT API_PORT | stop DIR

PDNS_PACKAGES=(pdns-server pdns-backend-lmdb bind9-dnsutils)

# Installs PowerDNS, its LMDB backend and dig, unless they are all there already.
pdns_install() {
  if command -v pdns_server >/dev/null && command -v pdns_control >/dev/null && command -v dig >/dev/null \
    && [[ -e /usr/lib/x86_64-linux-gnu/pdns/liblmdbbackend.so || -n "$(find /usr/lib -name 'liblmdbbackend.so' -print -quit 2>/dev/null)" ]]; then
    return 0
  fi
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "==> installing ${PDNS_PACKAGES[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${PDNS_PACKAGES[@]}" >/dev/null
  # The Debian package may start a system-wide pdns; matih's instances are private, so leave it be.
}

# pdns_start DIR DNS_PORT API_PORT: writes DIR/pdns.conf, starts pdns_server in the background (log in DIR/pdns.log,
# pid in DIR/pdns.pid) and waits until the API answers.
pdns_start() {
  local dir=${1:?usage: pdns_start DIR DNS_PORT API_PORT} dns_port=${2:?DNS_PORT} api_port=${3:?API_PORT}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local key
  key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  umask_old=$(umask)
  umask 077
  cat >"$dir/pdns.conf" <<EOF
launch=lmdb
lmdb-filename=$dir/pdns.lmdb
local-address=127.0.0.1
local-port=$dns_port
daemon=no
guardian=no
socket-dir=$dir
api=yes
api-key=$key
webserver=yes
webserver-address=127.0.0.1
webserver-port=$api_port
webserver-allow-from=127.0.0.1/32
security-poll-suffix=
loglevel=4
EOF
  umask "$umask_old"
  pdns_server --config-dir="$dir" >"$dir/pdns.log" 2>&1 &
  echo $! >"$dir/pdns.pid"
  local i
  for i in $(seq 100); do
    if curl -fsS -o /dev/null -H "X-API-Key: $key" "http://127.0.0.1:$api_port/api/v1/servers/localhost" 2>/dev/null; then
      export PDNS_API_URL="http://127.0.0.1:$api_port" PDNS_API_KEY="$key" PDNS_DNS_PORT="$dns_port"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/pdns.pid")" 2>/dev/null; then
      echo "pdns_server exited; its log ($dir/pdns.log):" >&2
      cat "$dir/pdns.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "pdns_server did not answer on 127.0.0.1:$api_port within 10 s; its log ($dir/pdns.log):" >&2
  cat "$dir/pdns.log" >&2
  return 1
}

# pdns_stop DIR: asks the instance started in DIR to quit, and kills it if it does not within 5 s.
pdns_stop() {
  local dir=${1:?usage: pdns_stop DIR} pid
  [[ -f "$dir/pdns.pid" ]] || return 0
  pid=$(cat "$dir/pdns.pid")
  pdns_control --config-dir="$dir" quit >/dev/null 2>&1 || true
  local i
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$dir/pdns.pid"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  cmd=${1:-}
  shift || true
  case "$cmd" in
    install) pdns_install ;;
    start)
      pdns_start "$@"
      echo "PDNS_API_URL=$PDNS_API_URL PDNS_DNS_PORT=$PDNS_DNS_PORT (API key in $1/pdns.conf)"
      ;;
    stop) pdns_stop "$@" ;;
    *)
      echo "usage: $0 install | start DIR DNS_PORT API_PORT | stop DIR" >&2
      exit 2
      ;;
  esac
fi
