#!/usr/bin/env bash
# Start-up memory over a delivery log: idle RSS (and peak) of `autorevert serve` started
# over an empty log, then over a log of SEGMENTS full 16 MiB segments whose records are all
# acknowledged but PENDING (spread across the segments), as a restart after a busy run finds
# it. The records are copies of one real record the App wrote (a pytorch/pytorch trunk
# failure), renumbered, each with its own delivery id.
#
#   bench/startup-memory.sh                      (SEGMENTS=2 PENDING=19 SETTLE=3)
#   BIN=path/to/autorevert bench/startup-memory.sh   (another build; default: release, built here)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
SEGMENTS="${SEGMENTS:-2}"; PENDING="${PENDING:-19}"; SETTLE="${SETTLE:-3}"
if [[ -z "${BIN:-}" ]]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/autorevert"
fi
work="$(mktemp -d /tmp/autorevert-startup.XXXXXX)"
[[ -n "${CLICKHOUSE_URL:-}" ]] || start_local_clickhouse "$work/data"

export WEBHOOK_SECRET=bench-secret RESTART_ACTION=log CLICKHOUSE_DATABASE="bench_startup_$(date +%s)"
export CLICKHOUSE_JOB_TABLE="$CLICKHOUSE_DATABASE.workflow_job" CLICKHOUSE_RUN_TABLE="$CLICKHOUSE_DATABASE.workflow_run"
export CLICKHOUSE_JOB_BY_SHA_TABLE="$CLICKHOUSE_DATABASE.workflow_job_by_head_sha"
port=$((20000 + RANDOM % 20000)); export LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=info
app=""
trap '[[ -z "$app" ]] || kill -9 $app 2>/dev/null; stop_local_clickhouse; rm -rf "$work"' EXIT

# start SPOOL LOG: starts the App over SPOOL and waits until it answers.
start() {
  SPOOL_DIR="$1" "$BIN" serve >"$2" 2>&1 &
  app=$!
  for _ in $(seq 600); do curl -sf "http://$LISTEN_ADDR/healthz" >/dev/null && return; sleep 0.1; done
  cat "$2"; exit 1
}
# rss: the App's resident and peak memory (MiB), once it has been idle SETTLE seconds.
rss() {
  sleep "$SETTLE"
  awk '/VmRSS/ {r=$2} /VmHWM/ {h=$2} END {printf "idle RSS %.1f MiB, peak %.1f MiB", r/1024, h/1024}' "/proc/$app/status"
}
stop() { kill -9 "$app"; wait "$app" 2>/dev/null || true; app=""; }

# Empty log; then one real delivery, to copy its record.
start "$work/seed" "$work/empty.log"
empty="$(rss)"
body="$work/body.json"
python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), separators=(",",":")))' \
  fixtures/seed-2d3615f/04.workflow_run.completed.original-failure.json >"$body"
sig="sha256=$(openssl dgst -sha256 -hmac "$WEBHOOK_SECRET" -r "$body" | cut -d' ' -f1)"
curl -sf -o /dev/null "http://$LISTEN_ADDR/webhook" -H 'x-github-event: workflow_run' \
  -H 'x-github-delivery: bench-00000000000000000000' -H "x-hub-signature-256: $sig" --data-binary @"$body"
sleep 1
stop

python3 - "$work/seed" "$work/full" "$SEGMENTS" "$PENDING" <<'EOF'
import os, struct, sys, zlib
seed, full, segments, pending = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
SEGMENT, MAGIC = 16 * 1024 * 1024, b"ARSPOOL2"
name = next(n for n in os.listdir(seed) if n.startswith("seg-"))
data = open(os.path.join(seed, name), "rb").read()
assert data.startswith(MAGIC)
n, = struct.unpack_from("<I", data, 8)
p = data[16:16 + n]
at, body = p[8:16], p[16:20]
id_len, = struct.unpack_from("<H", p, 20)
rest = p[22 + id_len:]          # name_len, name, event JSON
os.makedirs(full)
def record(seq):
    i = b"bench-%020d" % seq
    payload = struct.pack("<Q", seq) + at + body + struct.pack("<H", len(i)) + i + rest
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
per = (SEGMENT - len(MAGIC) + len(record(1)) - 1) // len(record(1))
total = per * segments
keep = {1 + k * total // pending for k in range(pending)} if pending else set()
acks = []
for s in range(segments):
    first = 1 + s * per
    with open(os.path.join(full, "seg-%020d.log" % first), "wb") as f:
        f.write(MAGIC)
        for seq in range(first, first + per):
            f.write(record(seq))
            if seq not in keep:
                acks.append(seq)
with open(os.path.join(full, "acks.log"), "wb") as f:
    f.write(b"".join(struct.pack("<Q", a) for a in acks))
print("log: %d segments of %d records (%d bytes each), %d pending" % (segments, per, len(record(1)), len(keep)))
EOF
du -sh "$work/full" | awk '{print "log on disk: " $1}'

start "$work/full" "$work/full.log"
full="$(rss)"
recovered="$(grep -o 'deliveries_recovered=[0-9]*' "$work/full.log" | head -1)"
stop

echo "$BIN, $(nproc) cores"
echo "empty log:                   $empty"
echo "$SEGMENTS full segments, $PENDING pending: $full ($recovered)"
