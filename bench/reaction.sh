#!/usr/bin/env bash
# Reaction latency (delivery -> dispatch POST at GitHub), warm and cold token:
#   bench/reaction.sh              (N=1000 COLD=20)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$(mktemp -d /tmp/autorevert-bench.XXXXXX)/data"
cargo bench --locked --bench reaction
