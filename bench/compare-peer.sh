#!/usr/bin/env bash
# Wrapper for the shared comparison (shared/bench/compare.sh): starts the App on port $1
# with a local ClickHouse, RESTART_ACTION=log, and the secret compare.sh exports.
#   BENCH_EXTRA_PEERS="autorevert|$PWD/bench/compare-peer.sh {port}" SERVER_CPUS=1 WRK_CPUS=0 REPEAT=3 ../shared/bench/compare.sh
#
# When compare.sh pins this wrapper to some CPUs (SERVER_CPUS), the local ClickHouse is moved
# to the others: in production ClickHouse is a remote service, not on the App's core, and
# the peers being compared have no store to share their core with. The App itself stays
# on the pinned CPUs; its own ClickHouse client work (serializing and sending batches) is
# counted there.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
if [[ -z "${CLICKHOUSE_URL:-}" ]]; then
  start_local_clickhouse "$(mktemp -d /tmp/autorevert-peer.XXXXXX)/data" 2>/dev/null
  mine="$(taskset -cp $$ | awk '{print $NF}')"
  all="0-$(($(nproc --all) - 1))"
  if [[ "$mine" != "$all" ]]; then
    others="$(python3 -c 'import os,sys; a=set(range(os.cpu_count())); m=os.sched_getaffinity(0); print(",".join(map(str,sorted(a-m))))')"
    [[ -z "$others" ]] || taskset -acp "$others" "$CH_PID" >/dev/null
  fi
fi
export RESTART_ACTION=log LISTEN_ADDR="127.0.0.1:$1" RUST_LOG=warn CLICKHOUSE_DATABASE="peer_$1" SPOOL_DIR="$(mktemp -d /tmp/autorevert-peer-spool.XXXXXX)"
export CLICKHOUSE_JOB_TABLE="peer_$1.workflow_job" CLICKHOUSE_RUN_TABLE="peer_$1.workflow_run" CLICKHOUSE_JOB_BY_SHA_TABLE="peer_$1.workflow_job_by_head_sha"
exec "$ROOT/target/release/autorevert" serve
