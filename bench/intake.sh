#!/usr/bin/env bash
# POST /webhook under load: req/s and p50/p99 latency at 32 and 1 connections, peak RSS,
# non-2xx answers. The App runs its full production path (verify, parse, dedupe, queue,
# decide, record in ClickHouse) in RESTART_ACTION=log mode; every request is a fresh
# delivery of a failing pytorch/pytorch trunk run.
#
#   bench/intake.sh                  (DURATION=10s CONNS=32 THREADS=2 SERVER_CPUS= WRK_CPUS=)
#   SERVER_CPUS=1 WRK_CPUS=0 bench/intake.sh
#
# Side by side with the usual stacks, use the shared comparison with bench/compare-peer.sh.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
DURATION="${DURATION:-10s}"; CONNS="${CONNS:-32}"; THREADS="${THREADS:-2}"
SERVER_CPUS="${SERVER_CPUS:-}"; WRK_CPUS="${WRK_CPUS:-}"
command -v wrk >/dev/null || { log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --quiet
work="$(mktemp -d /tmp/autorevert-bench.XXXXXX)"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$work/data"

export WEBHOOK_SECRET=bench-secret RESTART_ACTION=log CLICKHOUSE_DATABASE="bench_$(date +%s)" SPOOL_DIR="$work/spool"
export CLICKHOUSE_JOB_TABLE="$CLICKHOUSE_DATABASE.workflow_job" CLICKHOUSE_RUN_TABLE="$CLICKHOUSE_DATABASE.workflow_run"
export CLICKHOUSE_JOB_BY_SHA_TABLE="$CLICKHOUSE_DATABASE.workflow_job_by_head_sha"
port=$((20000 + RANDOM % 20000)); export LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=warn
pin_s=(); pin_w=()
[[ -z "$SERVER_CPUS" ]] || pin_s=(taskset -c "$SERVER_CPUS")
[[ -z "$WRK_CPUS" ]] || pin_w=(taskset -c "$WRK_CPUS")
"${pin_s[@]}" target/release/autorevert serve >"$work/server.log" 2>&1 &
app=$!
trap 'kill $app 2>/dev/null; wait $app 2>/dev/null; stop_local_clickhouse' EXIT
for _ in $(seq 300); do curl -sf "http://$LISTEN_ADDR/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$LISTEN_ADDR/healthz" >/dev/null || { cat "$work/server.log"; exit 1; }

body="$work/body.json"
python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' \
  fixtures/seed-2d3615f/04.workflow_run.completed.original-failure.json >"$body"
sig="sha256=$(openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r "$body" | cut -d' ' -f1)"
run() { "${pin_w[@]}" wrk -t"$1" -c"$2" -d"$DURATION" --latency -s bench/wrk-post.lua "http://$LISTEN_ADDR/webhook" -- "$body" "$sig" >"$3"; }
run "$THREADS" "$CONNS" "$work/c$CONNS.txt"
run 1 1 "$work/c1.txt"
rss_kb="$(awk '/VmHWM/ {print $2}' /proc/$app/status)"
summary() {
  awk -v name="$2" '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       END {printf "%-4s %9.0f req/s   p50 %-9s p99 %-9s non-2xx %s\n", name, rps, p50, p99, bad+0}' "$1"
}
echo "POST /webhook, $(wc -c <"$body") byte body, $DURATION per run, $(nproc) cores${SERVER_CPUS:+, server on CPU $SERVER_CPUS}${WRK_CPUS:+, wrk on CPU $WRK_CPUS}"
summary "$work/c$CONNS.txt" "c$CONNS"
summary "$work/c1.txt" "c1"
echo "peak RSS $((rss_kb / 1024)) MiB"
echo "deliveries recorded: $(curl -s "$CLICKHOUSE_URL/" --data-binary "SELECT count() FROM $CLICKHOUSE_DATABASE.deliveries FINAL")"
