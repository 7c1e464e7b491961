#!/usr/bin/env bash
# The decision engine against PyTorch's Lambda on the trunk simulator: the same seeded days
# (2 % flaky jobs, one runner outage and three breakages a day), false reverts, missed
# breakages, time from a breaking commit to its revert decision, restart job-hours; then
# the decisions' cost at PyTorch's scale (150 commits, 6 workflows, 2,000 signals).
#   bench/decisions.sh                 (SEEDS=50 FLAKE=0.02 OUTAGES=1 BREAKAGES=3)
#   OUT=/tmp/sim bench/decisions.sh    also writes every seed's truth, events and decisions
#   POLICY_CMD='python3 bench/policies/naive.py' bench/decisions.sh   scores a third policy
#   PROFILE=dev bench/decisions.sh     the debug build (slower decisions, same outcomes)
#   PAIRING_WINDOW_SECS=0 bench/decisions.sh   the engine without pairing (also
#   ANY_SHARD_REPRO=1, FAILURE_AFTER_GREEN=true: session 6's rules with all three)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-50} FLAKE=${FLAKE:-0.02} OUTAGES=${OUTAGES:-1} BREAKAGES=${BREAKAGES:-3}
PROFILE=${PROFILE:-release}
args=(simulate --seeds "$SEEDS" --flake-rate "$FLAKE" --outages-per-day "$OUTAGES"
      --breakages-per-day "$BREAKAGES" --cost)
[[ -n "${OUT:-}" ]] && args+=(--out "$OUT")
[[ -n "${POLICY_CMD:-}" ]] && args+=(--policy-cmd "$POLICY_CMD")
[[ -n "${BISECTION_LIMIT:-}" ]] && args+=(--bisection-limit "$BISECTION_LIMIT")
[[ -n "${PAIRING_WINDOW_SECS:-}" ]] && args+=(--pairing-window-secs "$PAIRING_WINDOW_SECS")
[[ -n "${ANY_SHARD_REPRO:-}" ]] && args+=(--any-shard-repro)
[[ -n "${FAILURE_AFTER_GREEN:-}" ]] && args+=(--failure-after-green "$FAILURE_AFTER_GREEN")
cargo build --locked --quiet --profile "$PROFILE"
dir=$([[ "$PROFILE" == dev ]] && echo debug || echo "$PROFILE")
time "target/$dir/autorevert" "${args[@]}"
