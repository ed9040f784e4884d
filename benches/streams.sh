#!/usr/bin/env bash
# Memory of open event streams: the release binary holding COUNT streams of GET
# /checkout/{id}/events at once (one user and one transaction each, so COUNT watchers too), against
# a minimal Proof whose WebSocket is refused and whose transactions stay pending. Reports the
# service's resident memory idle and with every stream open, and checks that one stream over
# `status.max_streams` is refused.
#
#   bash benches/streams.sh [count]      (default 10000)
#
# Needs python3. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-10000}"
port="${PROOF_BFF_BENCH_PORT:-18490}"
proof_port=$((port + 1))
secret="bench-session-secret-0123456789abcdef"

ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet

out="$(mktemp)"
fifo="$(mktemp -u)"
mkfifo "$fifo"
cleanup() {
    kill "${service:-}" "${proof:-}" "${browsers:-}" 2>/dev/null || true
    exec 3>&- 2>/dev/null || true
    rm -f "$out" "$fifo" "${report:-}"
}
trap cleanup EXIT

python3 benches/streams.py proof "$proof_port" &
proof=$!

PROOF_BFF__SERVER__LISTEN="127.0.0.1:$port" \
PROOF_BFF__SERVER__WORKERS=2 \
PROOF_BFF__SERVER__MAX_CONNECTIONS=$((count + 1000)) \
PROOF_BFF__LOG__LEVEL=warn \
PROOF_BFF__PROOF__BASE_URL="http://127.0.0.1:$proof_port" \
PROOF_BFF__PROOF__CLIENT_TOKEN="pk_bench_0123456789abcdef" \
PROOF_BFF__PROOF__ORIGIN="https://bench.example" \
PROOF_BFF__BROWSER__ALLOWED_ORIGINS="https://bench.example" \
PROOF_BFF__SESSION__JWT__SECRET="$secret" \
PROOF_BFF__RATE_LIMIT__PER_IP_BURST=100000000 \
PROOF_BFF__RATE_LIMIT__PER_IP_PER_MINUTE=100000000 \
PROOF_BFF__STATUS__MAX_STREAMS="$count" \
PROOF_BFF__STATUS__POLL_INTERVAL_S=3600 \
    target/release/proof-bff >"$out" 2>&1 &
service=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$service/status"; }
echo "== idle: $(rss)"

# The browsers hold their streams until this script closes their stdin.
report="$(mktemp)"
python3 benches/streams.py browsers "$port" "$count" "$secret" <"$fifo" >"$report" &
browsers=$!
exec 3>"$fifo"
for _ in $(seq 600); do
    grep -q '^open' "$report" && break
    kill -0 "$browsers" 2>/dev/null || { echo "the browsers stopped"; exit 1; }
    sleep 1
done
echo "== browsers: $(cat "$report")"
sleep 5
echo "== $count streams open: $(rss) ($(ss -Htn state established "( sport = :$port )" | wc -l) connections)"
over="$(curl -s -o /dev/null -w '%{http_code}' \
    -H "Cookie: session=$(python3 -c "import sys; sys.path.insert(0, 'benches'); import streams; print(streams.session_token('$secret', 'bench-user-$count'))")" \
    "http://127.0.0.1:$port/checkout/tx-$count/events" --max-time 5 || true)"
echo "== stream $((count + 1)): HTTP $over (status.max_streams = $count)"
exec 3>&-
wait "$browsers" || true
