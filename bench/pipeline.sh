#!/usr/bin/env bash
# Throughput of the whole pipeline: 100,000 mixed deliveries (~98 % workflow_job, as PyTorch's
# traffic) POSTed to a running App with ingestion into the mirror on; deliveries/s end to
# end (until ClickHouse holds them all) and ClickHouse INSERTs/s and rows per INSERT.
#   bench/pipeline.sh              (N=100000 CONNS=32 JOBS_PER_RUN=70 FAIL_EVERY=10)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
cargo build --release --locked --quiet
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$(mktemp -d /tmp/autorevert-bench.XXXXXX)/data"
AUTOREVERT_BIN="$ROOT/target/release/autorevert" cargo bench --locked --bench pipeline
