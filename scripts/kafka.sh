#!/usr/bin/env bash
# A real Apache Kafka broker (single-node KRaft) on loopback, for tests and benchmarks.
#
#   scripts/kafka.sh start    # fetches the jars from Maven Central once, starts, waits until ready
#   scripts/kafka.sh stop
#   scripts/kafka.sh status
#
# State lives in .services/kafka (ignored by git). The broker listens on 127.0.0.1:${KAFKA_PORT:-19092}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR="$ROOT/.services/kafka"
LIBS="$DIR/libs"
PORT="${KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
PIDFILE="$DIR/broker.pid"
CP="$LIBS/*"

fetch() {
  if [ ! -f "$LIBS/.complete" ]; then
    mkdir -p "$LIBS"
    mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$LIBS"
    touch "$LIBS/.complete"
  fi
}

ready() {
  java -cp "$CP" org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$PORT" >/dev/null 2>&1
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
  fetch
  if running; then echo "kafka: already running (pid $(cat "$PIDFILE"))"; return; fi
  rm -rf "$DIR/data" && mkdir -p "$DIR/data"
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
PROPS
  cat > "$DIR/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${kafka.logs.dir}/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG
  local cluster
  cluster=$(java -cp "$CP" kafka.tools.StorageTool random-uuid)
  java -cp "$CP" kafka.tools.StorageTool format --standalone -t "$cluster" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1
  ( cd "$DIR"; exec nohup java -Xmx512m -Xms256m -Dkafka.logs.dir="$DIR" \
      -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$CP" kafka.Kafka "$DIR/server.properties" \
      >"$DIR/stdout.log" 2>&1 ) &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 120); do
    if ready; then echo "kafka: ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return; fi
    if ! running; then echo "kafka: the broker exited; see $DIR/stdout.log" >&2; tail -20 "$DIR/stdout.log" >&2; exit 1; fi
    sleep 1
  done
  echo "kafka: not ready after 120 s; see $DIR/stdout.log" >&2
  exit 1
}

stop() {
  if running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 1 30); do running || break; sleep 1; done
    running && kill -9 "$(cat "$PIDFILE")" || true
  fi
  rm -f "$PIDFILE"
  echo "kafka: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && ready; then echo "kafka: ready on 127.0.0.1:$PORT"; else echo "kafka: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
