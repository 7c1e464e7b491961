#!/usr/bin/env bash
# Fuzz intake (signature check + payload parsing) for SECONDS (default 300), seeded with
# the real fixtures. Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain
# works with RUSTC_BOOTSTRAP=1 and no sanitizer (-s none). A crash lands in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_TO_RUN="${1:-300}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/webhook_intake
i=0
for f in ../fixtures/seed-2d3615f/*.json ../fixtures/github/*.json; do
  i=$((i + 1))
  # byte 0 picks the event; 71 bytes of header; then the body
  { printf '\x00'; printf 'sha256=%064d' 0; cat "$f"; } >"corpus/webhook_intake/seed$i"
done
RUSTC_BOOTSTRAP=1 exec cargo fuzz run webhook_intake -s none corpus/webhook_intake -- \
  -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048
