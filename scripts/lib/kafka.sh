# shellcheck shell=bash
# A real Apache Kafka broker for the tests and scripts/dev-env: the jars named by kafka/pom.xml
# (org.apache.kafka:kafka_2.13 and kafka-tools with their runtime dependencies), resolved from Maven
# Central by Maven into a cache keyed on that file, run as one KRaft node (broker and controller in
# one JVM, heap 512 MB) on free loopback ports. Nothing of Kafka is in this repository.
#
# Source this file; it defines:
#   kafka_fetch                    resolves the jars once per pom into $MATIH_CACHE/kafka-<hash>/libs; sets KAFKA_LIBS
#   kafka_start DIR [PORT CPORT]   formats DIR's storage (first start), starts the node, waits until it
#                                  serves; writes DIR/env and exports MATIH_TEST_KAFKA (DIR) and KAFKA_BOOTSTRAP
#   kafka_stop DIR                 stops what kafka_start DIR started (the data goes with DIR)
#
# DIR/bootstrap holds the broker's address (127.0.0.1:PORT), DIR/libs.path the jar directory (the
# tests run Kafka's own console consumer from it), DIR/kafka.log the node's log. Topics are not
# created automatically (auto.create.topics.enable=false, as on most production clusters).

KAFKA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KAFKA_CACHE="${MATIH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/matih}"

_kafka_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_kafka_need() {
  local missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} (Kafka runs on Java 17, its jars come through Maven)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      { echo "error: Kafka needs java (17+) and mvn, which could not be installed" >&2; return 1; }
  fi
}

# kafka_fetch: resolves the jars unless this pom's are cached already; sets and exports KAFKA_LIBS.
# MATIH_KAFKA_LIBS names a directory of jars to use as they are (a test's own broker takes the
# shared broker's).
kafka_fetch() {
  _kafka_need || return 1
  if [ -n "${MATIH_KAFKA_LIBS:-}" ]; then
    KAFKA_LIBS=$MATIH_KAFKA_LIBS
    export KAFKA_LIBS
    return 0
  fi
  local key dir start
  key=$(sha256sum <"$KAFKA_ROOT/kafka/pom.xml" | cut -c1-16)
  dir="$KAFKA_CACHE/kafka-$key"
  KAFKA_LIBS="$dir/libs"
  export KAFKA_LIBS
  [ -f "$dir/complete" ] && return 0
  start=$(date +%s.%N)
  mkdir -p "$dir"
  rm -rf "$dir/libs.tmp"
  # Maven's own repository (~/.m2, or -Dmaven.repo.local in MAVEN_OPTS) keeps the downloads.
  mvn -q -B -f "$KAFKA_ROOT/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/libs.tmp" \
    >"$dir/fetch.log" 2>&1 || {
    tail -n 30 "$dir/fetch.log" >&2
    echo "error: resolving Kafka's jars (kafka/pom.xml) with Maven failed; see $dir/fetch.log" >&2
    return 1
  }
  rm -rf "$dir/libs"
  mv "$dir/libs.tmp" "$dir/libs"
  touch "$dir/complete"
  printf '==> Kafka jars resolved into %s in %.1f s\n' "$KAFKA_LIBS" \
    "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" >&2
}

# kafka_start DIR [PORT CPORT]: starts the node (a DIR started before keeps its ports and topics).
kafka_start() {
  local dir port cport start pid i
  dir=$(mkdir -p "${1:?usage: kafka_start DIR [PORT CPORT]}" && cd "$1" && pwd)
  kafka_fetch || return 1
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    _kafka_exports "$dir"
    return 0
  fi
  start=$(date +%s.%N)
  if [ -n "${2:-}" ]; then
    port=$2 cport=${3:?kafka_start: PORT given without CPORT}
    echo "$port $cport" >"$dir/ports"
  elif [ -f "$dir/ports" ]; then
    read -r port cport <"$dir/ports"
  else
    port=$(_kafka_free_port) cport=$(_kafka_free_port)
    echo "$port $cport" >"$dir/ports"
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
    java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || {
      cat "$dir/format.log" >&2
      return 1
    }
  fi
  # -Xms small and the serial collector: one node with a few topics needs little, and the machine is shared.
  nohup java -Xmx512m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dorg.slf4j.simpleLogger.showDateTime=true -Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn \
    -Dorg.slf4j.simpleLogger.log.kafka=info -Dorg.slf4j.simpleLogger.log.state.change.logger=warn \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"
  for i in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$dir/kafka.log" >&2
      echo "error: Kafka exited during start; see $dir/kafka.log" >&2
      rm -f "$dir/kafka.pid"
      return 1
    fi
    grep -q 'Kafka Server started' "$dir/kafka.log" && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  if [ "$i" -ge 600 ]; then
    tail -n 30 "$dir/kafka.log" >&2
    echo "error: Kafka did not come up within 60 s; see $dir/kafka.log" >&2
    return 1
  fi
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "$KAFKA_LIBS" >"$dir/libs.path"
  cat >"$dir/env" <<ENV
export MATIH_TEST_KAFKA="$dir"
export KAFKA_BOOTSTRAP="127.0.0.1:$port"
ENV
  _kafka_exports "$dir"
  printf '==> Apache Kafka %s (KRaft, broker+controller) at %s: started in %.1f s, %s MiB resident\n' \
    "$(_kafka_version)" "$KAFKA_BOOTSTRAP" "$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" \
    "$(($(ps -o rss= -p "$pid") / 1024))" >&2
}

_kafka_exports() {
  MATIH_TEST_KAFKA=$1
  KAFKA_BOOTSTRAP=$(cat "$1/bootstrap")
  export MATIH_TEST_KAFKA KAFKA_BOOTSTRAP
}

_kafka_version() {
  sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_ROOT/kafka/pom.xml"
}

# kafka_stop DIR: stops the node kafka_start DIR started and waits until it is gone.
kafka_stop() {
  local dir=${1:?usage: kafka_stop DIR} pid i
  [ -f "$dir/kafka.pid" ] || return 0
  pid=$(cat "$dir/kafka.pid")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/kafka.pid"
}
