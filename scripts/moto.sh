#!/usr/bin/env bash
# A local S3 + Glue + STS + KMS endpoint (moto's server, from PyPI) on loopback, for tests.
#
#   scripts/moto.sh start    # installs moto into .venv once, starts, waits until ready
#   scripts/moto.sh stop
#   scripts/moto.sh status
#
# Listens on 127.0.0.1:${MOTO_PORT:-5055}; state and logs in .services/moto (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR="$ROOT/.services/moto"
PORT="${MOTO_PORT:-5055}"
PIDFILE="$DIR/server.pid"
PY="$ROOT/.venv/bin/python"

install() {
  if [ ! -x "$PY" ]; then python3 -m venv "$ROOT/.venv"; fi
  if ! "$PY" -c 'import moto.server, boto3' 2>/dev/null; then
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  fi
}

ready() {
  "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/moto-api/', timeout=1)" 2>/dev/null
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
  install
  mkdir -p "$DIR"
  if running; then echo "moto: already running (pid $(cat "$PIDFILE"))"; return; fi
  # Parts from 256 KiB (AWS: 5 MiB), so that tests reach multipart uploads with small files.
  ( cd "$DIR"; S3_UPLOAD_PART_MIN_SIZE=262144 exec nohup "$ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$DIR/server.log" 2>&1 ) &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 60); do
    if ready; then echo "moto: ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; return; fi
    if ! running; then echo "moto: the server exited; see $DIR/server.log" >&2; tail -20 "$DIR/server.log" >&2; exit 1; fi
    sleep 0.5
  done
  echo "moto: not ready after 30 s; see $DIR/server.log" >&2
  exit 1
}

stop() {
  if running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 1 20); do running || break; sleep 0.5; done
    running && kill -9 "$(cat "$PIDFILE")" || true
  fi
  rm -f "$PIDFILE"
  echo "moto: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && ready; then echo "moto: ready on 127.0.0.1:$PORT"; else echo "moto: not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
