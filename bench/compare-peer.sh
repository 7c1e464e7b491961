#!/usr/bin/env bash
# Wrapper for the shared comparison (shared/bench/compare.sh): starts the App on port $1
# with a local ClickHouse, RESTART_ACTION=log, and the secret compare.sh exports.
#   BENCH_EXTRA_PEERS="autorevert|$PWD/bench/compare-peer.sh {port}" SERVER_CPUS=1 WRK_CPUS=0 REPEAT=3 ../shared/bench/compare.sh
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$(mktemp -d /tmp/autorevert-peer.XXXXXX)/data" 2>/dev/null
export RESTART_ACTION=log LISTEN_ADDR="127.0.0.1:$1" RUST_LOG=warn CLICKHOUSE_DATABASE="peer_$1" SPOOL_DIR="$(mktemp -d /tmp/autorevert-peer-spool.XXXXXX)"
export CLICKHOUSE_JOB_TABLE="peer_$1.workflow_job" CLICKHOUSE_RUN_TABLE="peer_$1.workflow_run" CLICKHOUSE_JOB_BY_SHA_TABLE="peer_$1.workflow_job_by_head_sha"
"$ROOT/target/release/autorevert" serve
