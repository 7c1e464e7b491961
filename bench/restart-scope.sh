#!/usr/bin/env bash
# What restarting only what failed saves: jobs restarted against jobs in the original run,
# runner time, and the estimated time from dispatch to verdict, with and without the
# filters, on the seed case and on a PyTorch-sized trunk run (benches/restart_scope.rs says
# where the jobs and their durations come from). The scope is the App's own decision.
# A computation, not a timing: it needs no quiet machine, and builds with the dev profile.
#
#   bench/restart-scope.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --quiet --profile dev --bench restart_scope
