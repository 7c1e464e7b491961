#!/usr/bin/env bash
# The App side by side with the shared peers (octokit, gidgethub, FastAPI, the Rust floor):
#   bench/compare.sh          (SERVER_CPUS=1 WRK_CPUS=0 REPEAT=3, as issue 5 asks; PEERS to narrow)
# The local ClickHouse is started here, once, at the lowest CPU priority, on the CPUs the
# server is not pinned to (in production it is a remote service): its CPU and memory are not
# the App's, and run.sh measures the App's process alone. Our work as its client is the App's
# and is counted.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
export SERVER_CPUS="${SERVER_CPUS-1}" WRK_CPUS="${WRK_CPUS-0}" REPEAT="${REPEAT:-3}"
cargo build --release --locked --quiet
if [[ -z "${CLICKHOUSE_URL:-}" ]]; then
  start_local_clickhouse "$(mktemp -d /tmp/autorevert-bench.XXXXXX)/data"
  if [[ -n "$SERVER_CPUS" ]]; then
    others="$(python3 -c 'import os,sys
def cpus(spec):
    out = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out
print(",".join(map(str, sorted(set(range(os.cpu_count())) - cpus(sys.argv[1])))))' "$SERVER_CPUS")"
    [[ -z "$others" ]] || taskset -acp "$others" "$CH_PID" >/dev/null
  fi
  # Lowest priority: on a 2-core machine it shares wrk's core, and a stand-in for a remote
  # service must not take the load generator's CPU (which leaves the server idle, waiting
  # for requests). Threads it starts later inherit this.
  renice -n 19 -p $(ls "/proc/$CH_PID/task") >/dev/null
fi
body="${1:-/tmp/autorevert-bench/payload.workflow_run.failure.json}"
shared="$ROOT/../shared/bench"
[[ -f "$body" ]] || "$shared/setup.sh" >/dev/null   # makes the failure payload
BENCH_EXTRA_PEERS="autorevert|$ROOT/bench/compare-peer.sh {port}" "$shared/compare.sh" "$body"
