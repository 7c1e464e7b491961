# Shared by scripts/run and scripts/test. Source it; it defines:
#   ensure_venv               the pinned chdb venv in clickhouse-local/.venv (idempotent)
#   start_local_clickhouse D  starts clickhouse-local/server.py on a free loopback port with
#                             data dir D, exports CLICKHOUSE_URL, stops it when the shell exits
#   ensure_chromium           Debian's chromium for the browser test and screenshots (apt-get)
#   ch_query SQL, fill_restarts DB N [STEP_S]   (see below)
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

ensure_chromium() {
  command -v chromium >/dev/null && return 0
  local sudo=""; [[ "$(id -u)" == 0 ]] || sudo=sudo
  log "setup: installing Debian's chromium (headless browser test, screenshots)"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
    || { log "error: apt-get install chromium failed"; return 1; }
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

# ch_query SQL: runs SQL on $CLICKHOUSE_URL, prints the answer.
ch_query() { curl -sS --fail-with-body "$CLICKHOUSE_URL/" --data-binary "$1"; }

# fill_restarts DB N [STEP_S]: N synthetic restarts of pytorch/pytorch in DB's ledger, as the
# App writes them: 3 versions each (read with FINAL), every state and verdict (mostly
# completed), requested STEP_S seconds apart going back from now, with their event log
# (3 lines) and the per-job verdicts of the completed ones (2 jobs). For the status-page
# benchmark and screenshots; the App must already be running (rows written after start-up
# are not in its in-memory ledger, so none is resumed).
fill_restarts() {
  local db="$1" n="$2" step="${3:-120}"
  local base="SELECT number AS i,
      arrayElement(['trunk', 'trunk', 'trunk', 'inductor', 'pull', 'slow'], i % 6 + 1) AS wf,
      lower(hex(SHA1(concat('synthetic ', toString(i))))) AS sha,
      concat('pytorch/pytorch/', wf, '/', sha, '/1') AS rid,
      arrayElement(['completed', 'confirmed', 'completed', 'unconfirmed', 'completed', 'dispatched',
        'completed', 'dispatch_failed', 'completed', 'dispatch_unknown', 'completed', 'dry_run',
        'completed', 'dispatching', 'completed', 'completed', 'completed', 'completed', 'completed',
        'completed'], i % 20 + 1) AS st,
      arrayElement(['reproduced', 'not_reproduced', 'not_reproduced', 'inconclusive'],
        intDiv(i, 2) % 4 + 1) AS oc,
      now64(3) - toIntervalSecond(i * $step + 30) AS req
    FROM numbers($n)"
  local v
  for v in 0 1 2; do  # one INSERT per version, as the App writes them (an INSERT collapses its own)
    ch_query "INSERT INTO $db.restarts (restart_id, repo, workflow, head_sha, attempt, workflow_file,
        original_run_id, installation_id, status, restart_run_id, run_url, dry_run, requested_at,
        dispatched_at, confirmed_at, confirm_latency_ms, completed_at, outcome, reason, delivery_id,
        version, dispatch_attempts)
      SELECT rid, 'pytorch/pytorch', wf, sha, 1, concat(wf, '.yml'), 20000000000 + i, NULL,
        if($v = 2, st, if($v = 1 AND st NOT IN ('dispatching', 'dry_run'), 'dispatched', 'dispatching')) AS s,
        if(s IN ('dispatched', 'confirmed', 'unconfirmed', 'completed'), 30000000000 + i, NULL), '',
        toUInt8(s = 'dry_run'), req,
        if(s IN ('dispatched', 'confirmed', 'unconfirmed', 'completed'), req + toIntervalSecond(2), NULL),
        if(s IN ('confirmed', 'completed'), req + toIntervalSecond(240 + i % 300), NULL),
        if(s IN ('confirmed', 'completed'), toUInt64(238000 + (i % 300) * 1000), NULL),
        if(s = 'completed', req + toIntervalSecond(6000 + i % 5000), NULL),
        if(s = 'completed', oc, ''),
        multiIf(s = 'dispatch_failed', 'GitHub refused (422): Workflow does not have ''workflow_dispatch'' trigger',
          s = 'completed' AND oc = 'reproduced', 'failed again: linux-jammy-py3.10-gcc11 / test (default)',
          s = 'completed' AND oc = 'not_reproduced', 'all 2 originally failing job(s) passed',
          s = 'completed', 'no evidence for: linux-jammy-py3.10-gcc11 / test (default) (missing from the restart)',
          s = 'unconfirmed', 'restart jobs not visible in ClickHouse within 1800 s',
          concat('run ', toString(20000000000 + i), ' concluded failure')),
        '', $v + 1, 1
      FROM ($base)" >/dev/null
  done
  ch_query "INSERT INTO $db.events (ts, event_id, repo, workflow, head_sha, restart_id, kind, dry_run,
      delivery_id, message, details)
    SELECT req + toIntervalSecond(k * 120), toString(generateUUIDv4(i * 3 + k)), 'pytorch/pytorch', wf,
      sha, rid, arrayElement(['dispatched', 'confirmed', 'outcome'], k + 1), 0, '',
      arrayElement([concat('dispatched ', wf, '.yml on trunk/', sha), 'restart jobs visible in ClickHouse',
        concat('outcome: ', oc)], k + 1), ''
    FROM ($base) ARRAY JOIN [0, 1, 2] AS k" >/dev/null
  ch_query "INSERT INTO $db.restart_job_verdicts (ts, restart_id, repo, workflow, head_sha,
      original_run_id, restart_run_id, job, verdict, detail)
    SELECT req + toIntervalSecond(6000), rid, 'pytorch/pytorch', wf, sha, 20000000000 + i,
      30000000000 + i, job, if(j = 0, oc, 'not_reproduced'),
      if(j = 0, multiIf(oc = 'reproduced', 'failed again', oc = 'not_reproduced', 'passed',
        'missing from the restart'), 'passed')
    FROM ($base) ARRAY JOIN [0, 1] AS j,
      ['linux-jammy-py3.10-gcc11 / test (default)', 'linux-jammy-py3.10-gcc11 / build'] AS job
    WHERE st = 'completed'" >/dev/null
}
