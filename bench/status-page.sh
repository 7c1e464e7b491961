#!/usr/bin/env bash
# The status page with a long ledger: N restarts (3 versions each, read with FINAL, with
# their event log and verdicts: `fill_restarts` in scripts/lib.sh) in ClickHouse, a running
# App (release build, RESTART_ACTION=log), and REPEAT timed GETs of each page, one at a time.
#
#   bench/status-page.sh                 (N=100000 REPEAT=20)
#   N=10000 bench/status-page.sh
#
# Each line: the page, median / p95 / max of curl's total time, and the page's size. The
# first page and a deep one (the last: OFFSET N-50) as HTML and as JSON, a filtered page,
# and one restart's page (its evidence and event log).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
N="${N:-100000}"; REPEAT="${REPEAT:-20}"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$(mktemp -d /tmp/autorevert-bench.XXXXXX)/data"
cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/autorevert"
DB="status_bench"
export CLICKHOUSE_DATABASE=$DB CLICKHOUSE_JOB_TABLE=$DB.workflow_job CLICKHOUSE_RUN_TABLE=$DB.workflow_run
export CLICKHOUSE_JOB_BY_SHA_TABLE=$DB.workflow_job_by_head_sha AUTOREVERT_INGEST=false
export RESTART_ACTION=log WEBHOOK_SECRET=bench-secret RUST_LOG=warn
work="$(mktemp -d /tmp/autorevert-bench-status.XXXXXX)"
ch_query "DROP DATABASE IF EXISTS $DB SYNC" >/dev/null
"$bin" migrate >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
SPOOL_DIR="$work/spool" LISTEN_ADDR="127.0.0.1:$port" "$bin" serve >"$work/app.log" 2>&1 &
app=$!
cleanup() { kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; stop_local_clickhouse; }
trap cleanup EXIT
for _ in $(seq 300); do
  curl -sf "$base/healthz" | grep -q '"ready":true' && break
  sleep 0.2
done

# Round 1: the ledger as written (one part per version: every restart's 3 versions are
# merged by FINAL at read time; merges stopped so it stays so). Round 2: after ClickHouse has
# merged the parts (OPTIMIZE ... FINAL: what background merges come to), the steady state.
ch_query "SYSTEM STOP MERGES $DB.restarts" >/dev/null
t0=$(date +%s.%N)
fill_restarts "$DB" "$N" 60
written=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
ledger() {
  echo "ledger: $(ch_query "SELECT count() FROM $DB.restarts FINAL") restarts ($(ch_query "SELECT count() FROM $DB.restarts") rows in \
$(ch_query "SELECT count() FROM system.parts WHERE database = '$DB' AND table = 'restarts' AND active") parts), \
$(ch_query "SELECT count() FROM $DB.events") events, $(ch_query "SELECT count() FROM $DB.restart_job_verdicts") verdicts"
}

last=$(( (N + 49) / 50 ))
some_id=$(ch_query "SELECT restart_id FROM $DB.restarts FINAL WHERE status = 'completed' ORDER BY requested_at DESC LIMIT 1 OFFSET $((N / 2 / 20 * 13))")
filtered=$(ch_query "SELECT count() FROM $DB.restarts FINAL WHERE workflow = 'trunk' AND outcome = 'not_reproduced'")
measure() {  # measure LABEL PATH
  local label="$1" path="$2" times=() size=0 i out
  curl -sf -o /dev/null "$base$path" || { echo "$label: $path does not answer" >&2; exit 1; }  # warm-up
  for i in $(seq "$REPEAT"); do
    out=$(curl -sf -o "$work/page" -w '%{time_total}' "$base$path")
    times+=("$out"); size=$(stat -c %s "$work/page")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" -v size="$size" '
    { t[NR] = $1 * 1000 }
    END { printf "  %-30s median %6.1f ms  p95 %6.1f ms  max %6.1f ms  %6d bytes\n",
          label, t[int((NR + 1) / 2)], t[int(NR * 0.95 + 0.5)], t[NR], size }'
}
# The page's main query alone, straight to ClickHouse (the App adds the count, the workflows
# and the kill switch's last hold, all at once, and the rendering).
sql() {  # sql LABEL QUERY
  local label="$1" q="$2" times=() i
  for i in $(seq "$REPEAT"); do
    times+=("$(curl -sS -o /dev/null -w '%{time_total}' "$CLICKHOUSE_URL/" --data-binary "$q")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
    { t[NR] = $1 * 1000 }
    END { printf "  %-30s median %6.1f ms  p95 %6.1f ms  max %6.1f ms\n",
          label, t[int((NR + 1) / 2)], t[int(NR * 0.95 + 0.5)], t[NR] }'
}
page_sql="SELECT * FROM $DB.restarts FINAL ORDER BY requested_at DESC, restart_id DESC LIMIT 50"
round() {
  ledger
  measure "first page, HTML (/)" "/"
  measure "deep page, HTML (/?page=$last)" "/?page=$last"
  measure "first page, JSON" "/api/restarts"
  measure "deep page, JSON" "/api/restarts?page=$last"
  measure "filtered, first page" "/?workflow=trunk&outcome=not_reproduced"
  measure "filtered, last page" "/?workflow=trunk&outcome=not_reproduced&page=$(( (filtered + 49) / 50 ))"
  measure "one restart, HTML" "/restarts/$some_id"
  measure "one restart, JSON" "/api/restarts/$some_id"
  sql "first page query alone" "$page_sql"
  sql "deep page query alone" "$page_sql OFFSET $(( (last - 1) * 50 ))"
  sql "count query alone" "SELECT count() FROM $DB.restarts FINAL"
}
echo "round 1: as written (in ${written} s; merges stopped)"
round
ch_query "SYSTEM START MERGES $DB.restarts" >/dev/null
ch_query "OPTIMIZE TABLE $DB.restarts FINAL" >/dev/null
echo "round 2: parts merged"
round
grep -E 'ERROR|WARN' "$work/app.log" | head -5 >&2 || true
