# Shared by scripts/run and scripts/test. Source it; it defines:
#   ensure_venv               the pinned chdb venv in clickhouse-local/.venv (idempotent)
#   start_local_clickhouse D  starts clickhouse-local/server.py on a free loopback port with
#                             data dir D, exports CLICKHOUSE_URL, stops it when the shell exits
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/clickhouse-local/.venv"

log() { printf '%s\n' "$*" >&2; }

ensure_venv() {
  local req="$ROOT/clickhouse-local/requirements.txt" stamp="$VENV/.requirements.sha256"
  local want; want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "setup: creating $VENV with the pinned ClickHouse engine (chdb; ~300 MB download, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || { log "error: python3 -m venv failed (Debian: apt-get install python3-venv)"; return 1; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req" \
    || { log "error: installing clickhouse-local/requirements.txt failed"; return 1; }
  "$VENV/bin/python" -c 'import chdb' || { log "error: chdb does not import"; return 1; }
  echo "$want" >"$stamp"
}

CH_PID=""
stop_local_clickhouse() {
  if [[ -n "$CH_PID" ]] && kill -0 "$CH_PID" 2>/dev/null; then
    kill "$CH_PID" 2>/dev/null || true
    wait "$CH_PID" 2>/dev/null || true
  fi
  CH_PID=""
}

start_local_clickhouse() {
  local data="$1" portfile log_file i
  ensure_venv
  mkdir -p "$data"
  portfile="$(mktemp)"; rm -f "$portfile"
  log_file="$data/../clickhouse-local.log"
  "$VENV/bin/python" "$ROOT/clickhouse-local/server.py" --data "$data" --port 0 --port-file "$portfile" \
    >"$log_file" 2>&1 &
  CH_PID=$!
  trap stop_local_clickhouse EXIT
  for i in $(seq 600); do
    if [[ -s "$portfile" ]]; then break; fi
    if ! kill -0 "$CH_PID" 2>/dev/null; then
      log "error: the local ClickHouse exited at start:"; cat "$log_file" >&2; return 1
    fi
    sleep 0.1
  done
  [[ -s "$portfile" ]] || { log "error: the local ClickHouse did not start within 60 s"; cat "$log_file" >&2; return 1; }
  export CLICKHOUSE_URL="http://127.0.0.1:$(cat "$portfile")"
  rm -f "$portfile"
  curl -sf "$CLICKHOUSE_URL/ping" >/dev/null || { log "error: $CLICKHOUSE_URL/ping does not answer"; return 1; }
  log "local ClickHouse (chdb) at $CLICKHOUSE_URL, data in $data"
}
