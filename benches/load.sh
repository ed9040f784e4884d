#!/usr/bin/env bash
# Throughput and latency of POST /start-checkout: wrk against the release binary in sandbox mode,
# so every request goes through the session check, validation, rate limits and a real HTTP call to
# the embedded stand-in for Proof. Also reports the service's resident memory under load.
#
#   bash benches/load.sh [seconds] [connections]
#
# Needs wrk (apt-get install wrk). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
port="${PROOF_BFF_BENCH_PORT:-18480}"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet

out="$(mktemp)"
script="$(mktemp --suffix=.lua)"
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out" "$script"' EXIT

# Limits high enough that the benchmark measures the checkout path, not refusals.
PROOF_BFF__SERVER__LISTEN="127.0.0.1:$port" \
PROOF_BFF__LOG__LEVEL=warn \
PROOF_BFF__RATE_LIMIT__PER_USER_BURST=100000000 \
PROOF_BFF__RATE_LIMIT__PER_USER_PER_MINUTE=100000000 \
PROOF_BFF__RATE_LIMIT__PER_IP_BURST=100000000 \
PROOF_BFF__RATE_LIMIT__PER_IP_PER_MINUTE=100000000 \
    target/release/proof-bff --sandbox >"$out" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q "Cookie: session=" "$out" && break
    sleep 0.1
done
cookie="$(grep -o "Cookie: session=[^']*" "$out" | head -1 | cut -d' ' -f2-)"
[ -n "$cookie" ] || { cat "$out"; exit 1; }

cat >"$script" <<LUA
wrk.method = "POST"
wrk.body = '{"network":"TRC20","currency":"USDT","amount":"100"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "http://127.0.0.1:$port"
wrk.headers["Cookie"] = "$cookie"
LUA

echo "== warm-up"
wrk -t2 -c"$connections" -d2s -s "$script" "http://127.0.0.1:$port/start-checkout" >/dev/null
echo "== POST /start-checkout, $connections connections, ${duration}s"
wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$script" "http://127.0.0.1:$port/start-checkout"
echo "== resident memory of proof-bff (service and stand-in in one process)"
grep VmRSS "/proc/$pid/status"
