#!/usr/bin/env bash
# What checking sessions against an identity provider's key set (session.source = "jwks") costs
# per checkout, next to [session.jwt]: the same release binary, the same stand-in for Proof and the
# same wrk load as benches/load.sh, one session source after another:
#
#   jwt  HS256          the partner's shared secret (what load.sh measures, through the sandbox)
#   jwt  RS256, ES256   a fixed public key
#   jwks RS256, ES256, EdDSA
#                       the key set fetched from a local static server (python3 -m http.server)
#                       and kept: every checkout is verified against the cached set
#
#   bash benches/jwks.sh [seconds] [connections]
#
# Keys are made afresh with openssl; tokens are signed by benches/jwks_token.py. Each variant runs
# in its own proof-bff (not in sandbox mode, whose sessions are always HS256) in front of the
# stand-in that a `proof-bff --sandbox` serves. PROOF_BFF_BENCH_ROUNDS=n repeats the whole series,
# every other round in reverse order. Needs wrk, curl, openssl and python3. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
rounds="${PROOF_BFF_BENCH_ROUNDS:-1}"
base_port="${PROOF_BFF_BENCH_PORT:-18480}"
upstream_port=$((base_port + 1))
key_set_port=$((base_port + 2))
port="$base_port"

for tool in wrk curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install $tool" >&2; exit 1; }
done
cargo build --release --quiet

work="$(mktemp -d)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

issuer="https://idp.bench.example/"
audience="proof-bff-bench"
client_token="bench_$(openssl rand -hex 16)"
hs256_secret="$(openssl rand -hex 32)"
exp=$(($(date +%s) + 86400))
claims="{\"iss\":\"$issuer\",\"aud\":\"$audience\",\"sub\":\"bench-user\",\"email\":\"bench-user@example.com\",\"exp\":$exp}"

# The stand-in for Proof, served by a sandbox instance that nothing else talks to.
PROOF_BFF__SERVER__LISTEN="127.0.0.1:$upstream_port" \
PROOF_BFF__PROOF__CLIENT_TOKEN="$client_token" \
PROOF_BFF__LOG__LEVEL=warn \
    target/release/proof-bff --sandbox >"$work/upstream.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q "stand-in for Proof at" "$work/upstream.out" && break
    sleep 0.1
done
stand_in="$(grep -o 'stand-in for Proof at http://[0-9.:]*' "$work/upstream.out" | awk '{print $NF}')"
[ -n "$stand_in" ] || { cat "$work/upstream.out"; exit 1; }

# The identity provider: three signing keys, their public halves as a key set on a static server.
mkdir "$work/idp"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ec.pem"
openssl genpkey -algorithm ED25519 -out "$work/ed25519.pem"
openssl pkey -in "$work/rsa.pem" -pubout -out "$work/rsa.pub.pem"
openssl pkey -in "$work/ec.pem" -pubout -out "$work/ec.pub.pem"
{
    printf '{"keys":['
    python3 benches/jwks_token.py jwk "$work/rsa.pem" bench-rsa
    printf ','
    python3 benches/jwks_token.py jwk "$work/ec.pem" bench-ec
    printf ','
    python3 benches/jwks_token.py jwk "$work/ed25519.pem" bench-ed
    printf ']}'
} | tr -d '\n' >"$work/idp/jwks.json"
python3 -m http.server --bind 127.0.0.1 --directory "$work/idp" "$key_set_port" \
    >"$work/idp.out" 2>&1 &
pids+=($!)

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
hs256_token() {
    local input
    input="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '%s' "$claims" | b64url)"
    printf '%s.%s' "$input" "$(printf '%s' "$input" | openssl dgst -sha256 -hmac "$hs256_secret" -binary | b64url)"
}

# One variant: its [session] tables, and the token its checkouts carry.
run_variant() {
    local name="$1" session="$2" token="$3"
    cat >"$work/config.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[proof]
base_url = "$stand_in"
client_token = "$client_token"
origin = "https://sandbox.partner.example"

[browser]
allowed_origins = ["http://127.0.0.1:$port"]

[rate_limit]
per_user_burst = 100000000
per_user_per_minute = 100000000
per_ip_burst = 100000000
per_ip_per_minute = 100000000

[log]
level = "warn"

$session
TOML
    target/release/proof-bff --config "$work/config.toml" >"$work/service.out" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local ready=""
    for _ in $(seq 300); do
        if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
        sleep 0.1
    done
    [ -n "$ready" ] || { cat "$work/service.out"; exit 1; }

    cat >"$work/checkout.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"network":"TRC20","currency":"USDT","amount":"100"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "http://127.0.0.1:$port"
wrk.headers["Cookie"] = "session=$token"
LUA
    # One checkout first: a token the service refuses would make the figures meaningless.
    local status
    status="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/start-checkout" \
        -H "Origin: http://127.0.0.1:$port" -H 'Content-Type: application/json' \
        -H "Cookie: session=$token" -d '{"network":"TRC20","currency":"USDT","amount":"100"}')"
    [ "$status" = 200 ] || { echo "$name: a checkout answered $status" >&2; cat "$work/service.out"; exit 1; }

    wrk -t2 -c"$connections" -d2s -s "$work/checkout.lua" "http://127.0.0.1:$port/start-checkout" >/dev/null
    wrk -t2 -c"$connections" -d"${duration}s" --latency -s "$work/checkout.lua" \
        "http://127.0.0.1:$port/start-checkout" >"$work/wrk.out"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local rps p50 p90 p99 errors
    rps="$(awk '/^Requests\/sec/ {printf "%d", $2}' "$work/wrk.out")"
    p50="$(awk '$1 == "50%" {print $2}' "$work/wrk.out")"
    p90="$(awk '$1 == "90%" {print $2}' "$work/wrk.out")"
    p99="$(awk '$1 == "99%" {print $2}' "$work/wrk.out")"
    errors="$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")"
    printf '| %-12s | %8s | %8s | %8s | %8s | %s\n' "$name" "$rps" "$p50" "$p90" "$p99" "${errors:+non-2xx: $errors}"
}

jwt_key() {
    printf '[session]\nsource = "jwt"\n\n[session.jwt]\nalgorithm = "%s"\npublic_key_pem_file = "%s"\nissuer = "%s"\naudience = "%s"\n' \
        "$1" "$2" "$issuer" "$audience"
}
jwks() {
    printf '[session]\nsource = "jwks"\n\n[session.jwks]\nissuer = "%s"\njwks_url = "http://127.0.0.1:%s/jwks.json"\nalgorithms = ["%s"]\naudience = "%s"\n' \
        "$issuer" "$key_set_port" "$1" "$audience"
}

rsa_token="$(python3 benches/jwks_token.py token "$work/rsa.pem" bench-rsa "$claims")"
ec_token="$(python3 benches/jwks_token.py token "$work/ec.pem" bench-ec "$claims")"
ed_token="$(python3 benches/jwks_token.py token "$work/ed25519.pem" bench-ed "$claims")"

hs256_session="$(printf '[session]\nsource = "jwt"\n\n[session.jwt]\nsecret = "%s"\nissuer = "%s"\naudience = "%s"\n' "$hs256_secret" "$issuer" "$audience")"
run_numbered() {
    case "$1" in
        1) run_variant "jwt HS256" "$hs256_session" "$(hs256_token)" ;;
        2) run_variant "jwt RS256" "$(jwt_key RS256 "$work/rsa.pub.pem")" "$rsa_token" ;;
        3) run_variant "jwks RS256" "$(jwks RS256)" "$rsa_token" ;;
        4) run_variant "jwt ES256" "$(jwt_key ES256 "$work/ec.pub.pem")" "$ec_token" ;;
        5) run_variant "jwks ES256" "$(jwks ES256)" "$ec_token" ;;
        6) run_variant "jwks EdDSA" "$(jwks EdDSA)" "$ed_token" ;;
    esac
}

echo "== POST /start-checkout, $connections connections, ${duration}s per variant, $rounds round(s)"
echo "| session      | req/s    | p50      | p90      | p99      |"
for round in $(seq "$rounds"); do
    # Every other round runs backwards, so no variant always follows the same one.
    if [ $((round % 2)) = 0 ]; then order=(6 5 4 3 2 1); else order=(1 2 3 4 5 6); fi
    for n in "${order[@]}"; do run_numbered "$n"; done
done
