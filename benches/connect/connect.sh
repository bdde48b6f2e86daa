#!/usr/bin/env bash
# Kafka Connect peer for W2 (see README.md beside this file).
#
#   benches/connect/connect.sh setup              # jars from Maven Central (once) + the mp_date SMT
#   benches/connect/connect.sh load N [TOPIC]     # sluice gen --clean N events -> TOPIC (8 partitions)
#   benches/connect/connect.sh run --topic T --events N [connect.py options]
#   benches/connect/connect.sh moto start|stop    # a moto server of its own on 127.0.0.1:5062
#
# State (jars, run folders) lives in benches/connect/.work (ignored by git), or $CONNECT_WORK.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="${CONNECT_WORK:-$HERE/.work}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SLUICE="${SLUICE:-$ROOT/target/debug/sluice}"
BROKERS="${BROKERS:-127.0.0.1:19092}"
MOTO_PORT="${MOTO_PORT:-5062}"
MOTO_DIR="${MOTO_DIR:-/tmp/w2cmoto}"

setup() {
  if [ ! -f "$WORK/.complete" ]; then
    mkdir -p "$WORK/libs" "$WORK/plugins/iceberg"
    mvn -q -B -f "$HERE/runtime/pom.xml" dependency:copy-dependencies -DoutputDirectory="$WORK/libs"
    mvn -q -B -f "$HERE/plugin/pom.xml" dependency:copy-dependencies -DoutputDirectory="$WORK/plugins/iceberg"
    rm -rf "$WORK/smt-classes" && mkdir -p "$WORK/smt-classes"
    javac -nowarn -d "$WORK/smt-classes" -cp "$WORK/libs/*" "$HERE/smt/dev/sluice/bench/MpDate.java"
    mkdir -p "$WORK/smt-classes/META-INF/services"
    cp "$HERE/smt/META-INF/services/"* "$WORK/smt-classes/META-INF/services/"
    jar cf "$WORK/libs/sluice-bench-smt.jar" -C "$WORK/smt-classes" .
    touch "$WORK/.complete"
  fi
  echo "connect: worker jars $(du -sh "$WORK/libs" | cut -f1), iceberg plugin $(du -sh "$WORK/plugins/iceberg" | cut -f1) in $WORK"
}

load() {
  local n="$1" topic="${2:-w2c-test-$1}" file="/tmp/w2c/events-$1.ndjson"
  mkdir -p /tmp/w2c
  [ -f "$file" ] || "$SLUICE" gen --clean --events "$n" -o "$file"
  "$SLUICE" replay "$file" --brokers "$BROKERS" --topic "$topic" --partitions 8 --no-progress --json
}

moto() {
  case "${1:-}" in
    start)
      if curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null; then echo "moto: already up on $MOTO_PORT"; return; fi
      mkdir -p "$MOTO_DIR"
      ( cd "$MOTO_DIR"; S3_UPLOAD_PART_MIN_SIZE=262144 exec nohup "$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > server.log 2>&1 ) &
      echo $! > "$MOTO_DIR/moto.pid"
      for _ in $(seq 1 30); do curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null && { echo "moto: up on $MOTO_PORT (pid $(cat "$MOTO_DIR/moto.pid"))"; return; }; sleep 0.5; done
      echo "moto: not up; see $MOTO_DIR/server.log" >&2; exit 1 ;;
    stop)
      [ -f "$MOTO_DIR/moto.pid" ] && kill "$(cat "$MOTO_DIR/moto.pid")" 2>/dev/null || true
      rm -f "$MOTO_DIR/moto.pid"; echo "moto: stopped" ;;
    *) echo "usage: $0 moto start|stop" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  setup) setup ;;
  load) shift; [ $# -ge 1 ] || { echo "usage: $0 load N [TOPIC]" >&2; exit 2; }; load "$@" ;;
  run) shift; setup >&2; exec "$PY" "$HERE/connect.py" run --brokers "$BROKERS" --endpoint "http://127.0.0.1:$MOTO_PORT" "$@" ;;
  moto) shift; moto "$@" ;;
  *) echo "usage: $0 setup | load N [TOPIC] | run --topic T --events N [...] | moto start|stop" >&2; exit 2 ;;
esac
