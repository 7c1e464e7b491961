#!/usr/bin/env bash
# The App as a peer of the shared comparison: started by compare.sh's run.sh on port $1,
# with RESTART_ACTION=log, the secret compare.sh exports, and the ClickHouse at
# CLICKHOUSE_URL (bench/compare.sh starts one outside the measured process tree).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${CLICKHOUSE_URL:?set CLICKHOUSE_URL (bench/compare.sh does)}"
export RESTART_ACTION=log LISTEN_ADDR="127.0.0.1:$1" RUST_LOG=warn CLICKHOUSE_DATABASE="peer_$1" SPOOL_DIR="$(mktemp -d /tmp/autorevert-peer-spool.XXXXXX)"
export CLICKHOUSE_JOB_TABLE="peer_$1.workflow_job" CLICKHOUSE_RUN_TABLE="peer_$1.workflow_run" CLICKHOUSE_JOB_BY_SHA_TABLE="peer_$1.workflow_job_by_head_sha"
exec "$ROOT/target/release/autorevert" serve
