#!/usr/bin/env bash
# What a flood of forged session tokens from one address costs once that address is over its
# limit, with the limits in memory and in Redis: the CPU the service spends per request, when every
# answer is 429 per_ip. The per-address limit runs before the session's signature is checked on
# either backend, so the two should differ by a Redis call, not by a signature check.
#
#   bash benches/forged_tokens.sh [options] [seconds] [connections]
#
#   seconds         length of each measured run (default 10), after a 2 s warm-up
#   connections     wrk's open connections (default 32)
#
#   --runs N        runs per backend (default 3), alternating memory and redis, a fresh service each
#   --binary PATH   measure this proof-bff binary instead of building target/release/proof-bff
#                   (to compare two builds with the same script)
#   --log-level L   log.level (default info: each refusal writes its two lines, as in production)
#
# The service runs with one worker (server.workers = 1) and `session.source = "jwt"` with an ES256
# public key made afresh by openssl; the forged token is signed by another P-256 key
# (benches/jwks_token.py), so its signature would fail. The address's limit is one request a
# minute: the first forged token spends it (401 invalid_session), every later one is over it.
# Proof is never called. Each run reports the CPU seconds of proof-bff and redis-server (from
# /proc) over the requests wrk completed, and checks that every answer was a refusal. CPU per
# request is what matters here, not requests/s: wrk shares the cores.
#
# Needs wrk, curl, openssl, python3, redis-server (apt-get install wrk curl openssl python3
# redis-server). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/common.sh

runs=3
binary=""
log_level=info
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs="$2"; shift ;;
        --binary) binary="$2"; shift ;;
        --log-level) log_level="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
duration="${positional[0]:-10}"
connections="${positional[1]:-32}"

for tool in wrk curl openssl python3 redis-server; do need "$tool" "$tool"; done
install_missing false
if [ -z "$binary" ]; then
    cargo build --release --quiet
    binary=target/release/proof-bff
fi

work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# The partner's session key, and the forger's.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/partner.pem" 2>/dev/null
openssl pkey -in "$work/partner.pem" -pubout -out "$work/partner.pub.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/forger.pem" 2>/dev/null
claims="{\"sub\":\"bench-user\",\"email\":\"bench-user@example.com\",\"exp\":$(($(date +%s) + 86400))}"
forged="$(python3 benches/jwks_token.py token "$work/forger.pem" bench-ec "$claims")"

# A port found free may be taken before redis-server binds it: a few are tried.
redis_pid=""
for _ in 1 2 3 4 5; do
    free_local_port redis_port
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        >"$work/redis.out" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for "$redis_pid" listening "$redis_port" && break
    redis_pid=""
done
[ -n "$redis_pid" ] || { echo "redis-server did not start:" >&2; cat "$work/redis.out" >&2; exit 1; }

# One run: a fresh service with the limits in `backend`; prints "<service µs> <redis µs>" per
# request.
run() {
    local backend="$1" port
    free_local_port port
    local origin="http://127.0.0.1:$port"
    local redis_table=""
    [ "$backend" = redis ] && redis_table="backend = \"redis\"
redis_url = \"redis://127.0.0.1:$redis_port\"
redis_timeout_ms = 1000"
    cat >"$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
workers = 1

[proof]
base_url = "http://127.0.0.1:9"
client_token = "bench_$(random_hex 16)"
origin = "https://sandbox.partner.example"

[browser]
allowed_origins = ["$origin"]

[session]
source = "jwt"

[session.jwt]
algorithm = "ES256"
public_key_pem_file = "$work/partner.pub.pem"

[rate_limit]
per_ip_burst = 1
per_ip_per_minute = 1
$redis_table

[log]
level = "$log_level"
TOML
    "$binary" --config "$work/config.toml" >/dev/null 2>"$work/service.err" &
    local pid=$!
    pids+=("$pid")
    wait_for "$pid" http_ok "$origin/readyz" || { cat "$work/service.err"; exit 1; }

    local checkout=(curl -s -o "$work/answer.json" -w '%{http_code}' "$origin/start-checkout"
        -H "Origin: $origin" -H 'Content-Type: application/json' -H "Cookie: session=$forged"
        -d '{"network":"TRC20","currency":"USDT","amount":"100"}')
    local first second
    first="$("${checkout[@]}")"
    second="$("${checkout[@]}")"
    if [ "$first" != 401 ] || [ "$second" != 429 ] || ! grep -q '"per_ip"' "$work/answer.json"; then
        echo "$backend: the forged token was answered $first, then $second $(cat "$work/answer.json")" >&2
        exit 1
    fi

    cat >"$work/forged.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"network":"TRC20","currency":"USDT","amount":"100"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "$origin"
wrk.headers["Cookie"] = "session=$forged"
LUA
    wrk -t1 -c"$connections" -d2s -s "$work/forged.lua" "$origin/start-checkout" >/dev/null
    local service_before redis_before service_after redis_after
    service_before="$(cpu_seconds "$pid")"
    redis_before="$(cpu_seconds "$redis_pid")"
    wrk -t1 -c"$connections" -d"${duration}s" -s "$work/forged.lua" "$origin/start-checkout" \
        >"$work/wrk.out"
    service_after="$(cpu_seconds "$pid")"
    redis_after="$(cpu_seconds "$redis_pid")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true

    local requests refused
    requests="$(awk '/requests in/ {print $1}' "$work/wrk.out")"
    refused="$(awk '/Non-2xx or 3xx responses/ {print $NF}' "$work/wrk.out")"
    if [ "${refused:-0}" != "$requests" ] || grep -q 'Socket errors' "$work/wrk.out"; then
        echo "$backend: not every request was refused:" >&2
        cat "$work/wrk.out" >&2
        exit 1
    fi
    awk -v a="$service_before" -v b="$service_after" -v c="$redis_before" \
        -v d="$redis_after" -v n="$requests" \
        'BEGIN { printf "%.1f %.1f %d\n", (b - a) * 1e6 / n, (d - c) * 1e6 / n, n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== forged ES256 tokens over the address's limit: POST /start-checkout, every answer 429 per_ip"
echo "== $binary, one worker, $connections connections, ${duration}s per run, $runs run(s) per backend, log.level = $log_level"
echo "| run | limits | requests | proof-bff CPU per request | redis-server CPU per request |"
echo "|---|---|---|---|---|"
: >"$work/memory.txt"
: >"$work/redis.txt"
for n in $(seq "$runs"); do
    # Every other run starts with the other backend, so neither always follows the same one.
    if [ $((n % 2)) = 1 ]; then order=(memory redis); else order=(redis memory); fi
    for backend in "${order[@]}"; do
        read -r service redis requests < <(run "$backend")
        echo "$service $redis" >>"$work/$backend.txt"
        if [ "$backend" = redis ]; then redis_cell="$redis µs"; else redis_cell="–"; fi
        echo "| $n | $backend | $(thousands "$requests") | $service µs | $redis_cell |"
    done
done
memory="$(cut -d' ' -f1 "$work/memory.txt" | median)"
redis="$(cut -d' ' -f1 "$work/redis.txt" | median)"
redis_server="$(cut -d' ' -f2 "$work/redis.txt" | median)"
echo
echo "medians: memory $memory µs, redis $redis µs (+ redis-server $redis_server µs) per forged token:" \
    "redis / memory $(ratio "$redis" "$memory"), with redis-server's share $(ratio "$(awk -v a="$redis" -v b="$redis_server" 'BEGIN { print a + b }')" "$memory")"
