#!/usr/bin/env bash
# Cost of the confirmation query at PyTorch scale, beside a naive JOIN of the same question.
#
#   bench/confirmation.sh            (COMMITS=100000 RUNS_PER_COMMIT=3 JOBS_PER_RUN=67 -> 20.1M jobs)
#   COMMITS=10000 bench/confirmation.sh
#
# Fills the local mirror (autorevert migrate: workflow_run, workflow_job with its
# dictionary-backed workflow_event alias, the head_sha materialized view) inside ClickHouse
# with generated rows: per commit, RUNS_PER_COMMIT-1 push runs on main and one
# workflow_dispatch run on trunk/<sha>, spread over the table by hash (a commit's jobs are
# not contiguous in id order, as interleaved PR traffic makes them). Then runs each query
# REPEAT times for random restarted commits and reports the rows and granules ClickHouse
# selected to read (deltas of system.events SelectedRows/SelectedMarks; queries run one at a
# time, so the deltas are exact) and the time.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
COMMITS="${COMMITS:-100000}"; RPC="${RUNS_PER_COMMIT:-3}"; JPR="${JOBS_PER_RUN:-67}"; REPEAT="${REPEAT:-20}"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$(mktemp -d /tmp/autorevert-bench.XXXXXX)/data"
cargo build --release --locked --quiet
DB="confirm_bench"
export CLICKHOUSE_DATABASE=$DB CLICKHOUSE_JOB_TABLE=$DB.workflow_job CLICKHOUSE_RUN_TABLE=$DB.workflow_run
export CLICKHOUSE_JOB_BY_SHA_TABLE=$DB.workflow_job_by_head_sha AUTOREVERT_INGEST=true
q() { curl -sS --fail-with-body "$CLICKHOUSE_URL/" --data-binary "$1"; }
q "DROP DATABASE IF EXISTS $DB SYNC" >/dev/null
target/release/autorevert migrate >/dev/null
RUNS=$((COMMITS * RPC)); JOBS=$((RUNS * JPR))
sha_of='lower(hex(SHA1(toString(c))))'
t0=$(date +%s.%N)
q "INSERT INTO $DB.workflow_run (id, name, event, head_sha, head_branch, status, conclusion, path, run_attempt,
     workflow_id, created_at, updated_at, html_url, url, repository_full_name, dynamoKey)
   SELECT 10000000000 + number, 'trunk', if(number % $RPC = $RPC - 1, 'workflow_dispatch', 'push'), sha,
     if(number % $RPC = $RPC - 1, concat('trunk/', sha), 'main'), 'completed', 'success',
     '.github/workflows/trunk.yml', 1, 1, now64(9), now64(9), '', '', 'pytorch/pytorch',
     concat('pytorch/pytorch/', toString(10000000000 + number))
   FROM (SELECT number, cityHash64(number) % $COMMITS AS c, $sha_of AS sha FROM numbers($RUNS))"
q "INSERT INTO $DB.workflow_job (check_run_url, completed_at, conclusion, created_at, dynamoKey, head_branch,
     head_sha, html_url, id, labels, name, node_id, run_attempt, run_id, run_url, runner_group_id,
     runner_group_name, runner_id, runner_name, started_at, status, steps, url, workflow_name)
   SELECT '', now64(9), if(number % 89 = 0, 'failure', 'success'), now64(9),
     concat('pytorch/pytorch/', toString(number)), if(r % $RPC = $RPC - 1, concat('trunk/', sha), 'main'), sha, '',
     50000000000 + number, ['linux.4xlarge'],
     concat('linux-jammy-py3.10-gcc11 / test (default, ', toString(number % $JPR + 1), ', $JPR, linux.4xlarge)'),
     '', 1, 10000000000 + r, '', 0, '', 0, '', now64(9), 'completed', [],
     concat('https://api.github.com/repos/pytorch/pytorch/actions/jobs/', toString(number)), 'trunk'
   FROM (SELECT number, intDiv(number, $JPR) AS r, cityHash64(r) % $COMMITS AS c, $sha_of AS sha FROM numbers($JOBS))
   SETTINGS max_insert_threads = 2"
q "OPTIMIZE TABLE $DB.workflow_job FINAL" >/dev/null 2>&1 || true
load_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}')
echo "mirror: $(q "SELECT count() FROM $DB.workflow_job") jobs, $(q "SELECT count() FROM $DB.workflow_run") runs, $(q "SELECT uniqExact(head_sha) FROM $DB.workflow_run") commits (generated in ${load_s}s)"
sleep 2  # let the run dictionary load

SEED_QUERY="$(cat <<SQL
SELECT 1 AS count FROM $DB.workflow_job FINAL
WHERE (id, run_id) IN (SELECT DISTINCT id, run_id FROM $DB.workflow_job_by_head_sha WHERE head_sha = {commit_sha:String})
  AND workflow_event = 'workflow_dispatch' AND head_branch = {head_branch:String} AND workflow_name = {workflow_name:String}
LIMIT 1
SQL
)"
NAIVE_QUERY="$(cat <<SQL
SELECT 1 AS count FROM $DB.workflow_job AS j FINAL INNER JOIN $DB.workflow_run AS r FINAL ON j.run_id = r.id
WHERE j.head_sha = {commit_sha:String} AND r.event = 'workflow_dispatch'
  AND j.head_branch = {head_branch:String} AND j.workflow_name = {workflow_name:String}
LIMIT 1
SQL
)"
selected() { q "SELECT sumIf(value, event = 'SelectedRows'), sumIf(value, event = 'SelectedMarks') FROM system.events"; }
measure() {  # measure NAME SQL
  local name="$1" sql="$2" rows=() marks=() ms=() i r sha out before after found
  for i in $(seq "$REPEAT"); do
    # a random restarted commit: the commit of a random dispatch run
    r=$(( ((RANDOM * 32768 + RANDOM) % (RUNS / RPC)) * RPC + RPC - 1 ))
    sha=$(q "SELECT lower(hex(SHA1(toString(cityHash64(toUInt64($r)) % $COMMITS))))")
    before=($(selected))
    out=$(curl -sS -o /tmp/found.$$ -w '%{time_total}' "$CLICKHOUSE_URL/" \
      --data-urlencode "param_commit_sha=$sha" --data-urlencode "param_head_branch=trunk/$sha" \
      --data-urlencode "param_workflow_name=trunk" --data-urlencode "query=$sql" -G)
    after=($(selected))
    found=$(cat /tmp/found.$$)
    [[ "$found" == 1 ]] || { echo "$name: commit $sha not confirmed (answer: $found)" >&2; exit 1; }
    rows+=("$(( after[0] - before[0] ))"); marks+=("$(( after[1] - before[1] ))")
    ms+=("$(awk -v t="$out" 'BEGIN{printf "%.1f", t*1000}')")
  done
  rm -f /tmp/found.$$
  printf '%s\n' "${ms[@]}" | sort -n >/tmp/ms.$$
  printf '%-6s rows read: median %9s  max %9s  granules: median %6s   time: median %6s ms  p95 %6s ms  (n=%s)\n' "$name" \
    "$(printf '%s\n' "${rows[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')" \
    "$(printf '%s\n' "${rows[@]}" | sort -n | tail -1)" \
    "$(printf '%s\n' "${marks[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')" \
    "$(awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}' /tmp/ms.$$)" \
    "$(awk '{a[NR]=$1} END{i=int(NR*0.95); if(i<1)i=1; print a[i]}' /tmp/ms.$$)" "$REPEAT"
  rm -f /tmp/ms.$$
}
measure seed "$SEED_QUERY"
measure naive "$NAIVE_QUERY"
