#!/usr/bin/env bash
# proof-bff and nginx in front of a Proof that takes its time, as the real one does: many
# checkouts waiting on Proof at once, rather than benches/compare.sh's fast answers.
#
#   upstream   the stand-in for Proof: nginx, one worker, with the echo module, answering POST
#              /widget/session with widget-session.json's body after --delay-ms (a timer: one
#              worker keeps thousands waiting), after checking the Bearer token
#              (benches/slow_proof/upstream.conf). Both variants call it, one after the other.
#   nginx      the token-injecting proxy of compare.sh, with keepalive 1024 to the upstream so that
#              every waiting checkout has a connection (benches/slow_proof/proxy.conf)
#   proof-bff  the release binary: server.workers = 1, info-level JSON logs written to a file, rate
#              limits in memory (lifted high), proof.max_connections left at its default
#
#   bash benches/slow_proof.sh [options] [seconds]
#
#   seconds                  length of each measured run (default 10)
#   --delay-ms N             how long Proof takes to answer (default 200)
#   --connections N          wrk's open connections (default 1000)
#   --threads N              wrk's threads (default 2)
#   --warmup S               seconds of load before each variant's measured run (default 2)
#   --users N                distinct users' session cookies the checkouts rotate over (default
#                            1000; raised to --streams when that is more)
#   --timeout S              how long a checkout's answer, or a stream's first event, is waited for
#                            (default 20: longer than proof-bff's own deadline for Proof, 15 s, so
#                            that what is counted is what the services answered)
#   --streams N              the second part: N event streams held open (default 300; 0 = skip it)
#   --stream-connections N   the checkout connections of the second part (default 100)
#   --only LIST              variants of the first part, comma-separated (default nginx,proof-bff;
#                            '' for the second part alone)
#   --binary PATH            this proof-bff binary instead of building target/release/proof-bff
#   --proof-bff-env KEY=VALUE  an environment variable for proof-bff, e.g.
#                            PROOF_BFF__PROOF__MAX_CONNECTIONS=2048 (repeatable)
#   --keep-logs DIR          copy the logs (proof-bff's, nginx's, wrk's, the helpers') into DIR at
#                            exit
#   --no-install             fail instead of installing what is missing
#
# First part, for each variant: a check that a checkout through it answers 200 with Proof's body,
# a warm-up, then wrk with --connections connections as fast as they go, for `seconds`. Reported:
# requests/s; the ideal, connections / delay (each connection can have one checkout answered per
# delay at best) and the share of it reached; proof-bff's requests/s against nginx's; p50 and p99;
# answers other than 2xx and wrk's socket errors; peak resident memory (VmHWM; nginx: master and
# worker); and the most requests the upstream had in flight at once (nginx's stub_status sampled
# every 20 ms): a variant that holds fewer connections to Proof than it has checkouts waiting shows
# it there.
#
# Second part, proof-bff alone, a new instance: its resident memory idle, then --streams browsers,
# one user each, open GET /checkout/tx-<user>/events at once. For each stream, proof-bff reads the
# transaction from Proof (GET /widget/transactions/{id}, answered after the same delay, a pending
# transaction of that user) and opens one watcher, which holds Proof's WebSocket (GET /ws?tx_id=,
# the Bearer token on the upgrade) open: nginx passes the WebSocket to a small asyncio server
# (benches/slow_proof.py), which accepts it and stays silent. Reported: how long each stream took to
# get its first event (p99 and max) and the streams that got none; the WebSockets open at Proof;
# resident memory per open stream ((RSS with the streams open − idle RSS) / open streams). Then,
# with the streams held open, --stream-connections connections send checkouts back to back for
# `seconds` (asyncio too, not wrk: wrk drops the answers still awaited when its time is up, and a
# checkout starved by the watchers is exactly one of those; here each is waited for, up to
# --timeout, and counted with its status). 100 connections by default: at 200 ms that is 500
# checkouts/s, which the asyncio client drives for a few percent of a core, and the watchers plus
# the checkouts (300 + 100) fit in proof.max_connections' default (1024): what is measured is
# whether the watchers' long-lived connections starve checkouts, not the bound itself. Reported:
# every checkout's status, p50, p99, and the streams that ended meanwhile.
#
# Like compare.sh, each measured run counts the CPU time the rest of the machine used meanwhile
# (everything but the variant, the upstream, the helpers and wrk): a run during which that was more
# than 5% of a core is flagged (!): measure again on a quiet machine. The result is a Markdown
# table on standard output, progress on standard error. Everything listens on free ports on
# 127.0.0.1 and is stopped at exit; every wait is bounded.
#
# Installs what is missing (apt-get: nginx, libnginx-mod-http-echo, wrk, nodejs, python3, curl,
# iproute2; as root or through sudo) and builds the release binary (needs cargo). Loopback only.
set -euo pipefail
invoked_from="$PWD"
cd "$(dirname "$0")/.."
source benches/common.sh
here=benches/slow_proof
compare=benches/compare

duration=10
delay_ms=200
connections=1000
wrk_threads=2
warmup=2
users=1000
timeout_s=20
streams=300
stream_connections=100
all_variants="nginx proof-bff"
variants="$all_variants"
binary=""
install=true
keep_logs=""
proof_bff_env=()
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --delay-ms) delay_ms="$2"; shift ;;
        --connections) connections="$2"; shift ;;
        --threads) wrk_threads="$2"; shift ;;
        --warmup) warmup="$2"; shift ;;
        --users) users="$2"; shift ;;
        --timeout) timeout_s="$2"; shift ;;
        --streams) streams="$2"; shift ;;
        --stream-connections) stream_connections="$2"; shift ;;
        --only) variants="${2//,/ }"; shift ;;
        --binary) binary="$2"; shift ;;
        --proof-bff-env)
            [[ "$2" =~ ^PROOF_BFF__[A-Z0-9_]+=.*$ ]] ||
                { echo "--proof-bff-env: PROOF_BFF__<SECTION>__<KEY>=VALUE: $2" >&2; exit 2; }
            proof_bff_env+=("$2"); shift ;;
        --keep-logs) keep_logs="$2"; shift ;;
        --no-install) install=false ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
duration="${positional[0]:-$duration}"
for value in "$duration" "$connections" "$wrk_threads" "$users" "$timeout_s"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive whole number: $value" >&2; exit 2; }
done
for value in "$delay_ms" "$warmup" "$streams" "$stream_connections"; do
    [[ "$value" =~ ^[0-9]+$ ]] || { echo "not a whole number: $value" >&2; exit 2; }
done
for variant in $variants; do
    [[ " $all_variants " == *" $variant "* ]] ||
        { echo "unknown variant $variant: one of $all_variants" >&2; exit 2; }
done
has() { [[ " $variants " == *" $1 "* ]]; }
# Paths given on the command line are the caller's.
[ -z "$binary" ] || [[ "$binary" == /* ]] || binary="$invoked_from/$binary"
[ -z "$keep_logs" ] || [[ "$keep_logs" == /* ]] || keep_logs="$invoked_from/$keep_logs"
[ "$users" -ge "$streams" ] || users="$streams"
[ "$users" -le 60000 ] || { echo "at most 60000 users (and streams)" >&2; exit 2; }

# --- What the benchmark needs -------------------------------------------------------------------

echo_module=/usr/lib/nginx/modules/ngx_http_echo_module.so
need wrk wrk
need curl curl
need nginx nginx
need node nodejs
need python3 python3
need ss iproute2
[ -f "$echo_module" ] || missing+=(libnginx-mod-http-echo)
install_missing "$install"
[ -f "$echo_module" ] || { echo "nginx's echo module is not at $echo_module" >&2; exit 1; }
if [ -n "$binary" ]; then
    [ -x "$binary" ] || { echo "--binary: not an executable: $binary" >&2; exit 2; }
    binary="$(realpath "$binary")"
else
    command -v cargo >/dev/null || { echo "cargo is needed to build proof-bff (rustup.rs)" >&2; exit 1; }
    echo "== cargo build --release" >&2
    cargo build --release --quiet
    binary="$PWD/target/release/proof-bff"
fi

# Every connection is a descriptor in wrk, the variant (twice: the client's and Proof's) and the
# upstream.
ulimit -n "$(ulimit -Hn)"
needed_fds=$((2 * (connections > stream_connections ? connections : stream_connections) + 2 * streams + 1000))
[ "$(ulimit -n)" -ge "$needed_fds" ] ||
    { echo "open files limit $(ulimit -n) is under the $needed_fds this run needs (ulimit -Hn)" >&2; exit 1; }

scratch="$(mktemp -d)"
chmod 755 "$scratch"  # nginx's worker does not run as root
pids=()
browsers_pid=""
cleanup() {
    local pid
    exec 3>&- 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$keep_logs" ]; then
        mkdir -p "$keep_logs"
        find "$scratch" -maxdepth 1 -type f \( -name '*.log' -o -name '*.out' -o -name '*.toml' \
            -o -name '*.conf' -o -name 'in-flight.txt' \) -exec cp {} "$keep_logs/" \;
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Secrets, sessions and ports ------------------------------------------------------------------

client_token="bench_$(random_hex 16)"
session_secret="$(random_hex 32)"
origin="https://app.example.com"
node "$compare/sessions.js" "$session_secret" "$users" >"$scratch/sessions.txt"
first_token="$(head -1 "$scratch/sessions.txt" | cut -d' ' -f1)"
first_address="$(head -1 "$scratch/sessions.txt" | cut -d' ' -f2)"
expected_body="$(cat "$compare/widget-session.json")"
delay_s="$(awk -v d="$delay_ms" 'BEGIN { printf "%.3f", d / 1000 }')"
ideal="$(awk -v c="$connections" -v d="$delay_ms" 'BEGIN { if (d > 0) printf "%.0f", c * 1000 / d; else print 0 }')"
keepalive=$((connections > 1024 ? connections : 1024))

upstream_port=""
status_port=""
websocket_port=""
free_local_port upstream_port
free_local_port status_port
free_local_port websocket_port

# Fills in benches/slow_proof/<name>.conf's placeholders.
nginx_config() {
    local name="$1" port="$2" sleep=""
    [ "$delay_ms" -gt 0 ] && sleep="echo_sleep $delay_s;"
    sed -e "s|@DIR@|$(sed_escape "$scratch")|g" -e "s|@PORT@|$port|g" \
        -e "s|@UPSTREAM_PORT@|$upstream_port|g" -e "s|@STATUS_PORT@|$status_port|g" \
        -e "s|@WEBSOCKET_PORT@|$websocket_port|g" -e "s|@KEEPALIVE@|$keepalive|g" \
        -e "s|@ECHO_MODULE@|$(sed_escape "$echo_module")|g" -e "s|@SLEEP@|$sleep|g" \
        -e "s|@TOKEN@|$(sed_escape "$client_token")|g" \
        -e "s|@BODY@|$(sed_escape "$expected_body")|g" "$here/$name.conf" >"$scratch/$name.conf"
    mkdir -p "$scratch/$name-temp"
}

# --- Processes ------------------------------------------------------------------------------------

# The stand-in for Proof: the WebSocket server (second part only), nginx, and the sampler of its
# requests in flight. helper_pids: the processes besides the variant and wrk whose CPU time is ours.
upstream_pids=()
helper_pids=()
samples="$scratch/in-flight.txt"
start_upstream() {
    if [ "$streams" -gt 0 ]; then
        python3 benches/slow_proof.py websocket "$websocket_port" 2>"$scratch/websocket.log" &
        pids+=($!)
        helper_pids+=($!)
        wait_for $! listening "$websocket_port" || { cat "$scratch/websocket.log" >&2; exit 1; }
    fi
    nginx_config upstream "$upstream_port"
    nginx -p "$scratch/" -e "$scratch/upstream.error.log" -c "$scratch/upstream.conf" \
        -g 'daemon off;' &
    local master=$!
    pids+=("$master")
    wait_for "$master" nginx_ready "$upstream_port" "$master" ||
        { cat "$scratch/upstream.error.log" >&2; exit 1; }
    read -r -a upstream_pids <<<"$(with_children "$master")"
    : >"$samples"
    python3 benches/slow_proof.py sample "$status_port" 20 "$samples" &
    pids+=($!)
    helper_pids+=($!)
}

# The upstream itself: the token checked, Proof's body after the delay; for the second part, the
# transaction of user 1 and the WebSocket's upgrade.
check_upstream() {
    local status elapsed
    read -r status elapsed < <(curl -s -o "$scratch/check.body" -w '%{http_code} %{time_total}\n' \
        --max-time "$timeout_s" -H "Authorization: Bearer $client_token" \
        -H 'Content-Type: application/json' -d '{"network":"TRC20","currency":"USDT","amount":"100"}' \
        "http://127.0.0.1:$upstream_port/widget/session" || true)
    if [ "$status" != 200 ] || [ "$(cat "$scratch/check.body")" != "$expected_body" ] ||
        ! awk -v e="$elapsed" -v d="$delay_ms" 'BEGIN { exit !(e * 1000 >= d * 0.9) }'; then
        echo "the upstream answered $status after ${elapsed}s (expected 200 with the body after ${delay_ms} ms):" >&2
        cat "$scratch/check.body" "$scratch/upstream.error.log" >&2
        exit 1
    fi
    status="$(curl -s -o /dev/null -w '%{http_code}' -d '{}' "http://127.0.0.1:$upstream_port/widget/session" || true)"
    [ "$status" = 401 ] || { echo "the upstream answered $status without the token (expected 401)" >&2; exit 1; }
    [ "$streams" -gt 0 ] || return 0
    local user=user-00001  # the first user of sessions.js
    status="$(curl -s -o "$scratch/check.body" -w '%{http_code}' --max-time "$timeout_s" \
        -H "Authorization: Bearer $client_token" \
        "http://127.0.0.1:$upstream_port/widget/transactions/tx-$user" || true)"
    grep -q "\"partner_user_id\":\"$user\"" "$scratch/check.body" && [ "$status" = 200 ] ||
        { echo "the upstream's transaction of $user: $status $(cat "$scratch/check.body")" >&2; exit 1; }
    # RFC 6455's example key and the answer it must get.
    status="$(curl -s -D "$scratch/check.head" -o /dev/null -w '%{http_code}' --max-time 1 \
        -H "Authorization: Bearer $client_token" -H 'Connection: Upgrade' -H 'Upgrade: websocket' \
        -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
        "http://127.0.0.1:$upstream_port/ws?tx_id=tx-$user" || true)"
    [ "$status" = 101 ] && grep -qi '^Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=' "$scratch/check.head" ||
        { echo "the upstream's WebSocket answered $status (expected 101 with RFC 6455's accept):" >&2; cat "$scratch/check.head" >&2; exit 1; }
}

# One checkout through a variant, checked: 200 and Proof's body byte for byte.
check_checkout() {
    local name="$1" url="$2" log="$3" status
    status="$(curl -s -o "$scratch/check.body" -w '%{http_code}' --max-time "$timeout_s" "$url" \
        -H "Origin: $origin" -H 'Content-Type: application/json' \
        -H "Cookie: session=$first_token" -H "X-Forwarded-For: $first_address" \
        -d '{"network":"TRC20","currency":"USDT","amount":"100"}' || true)"
    if [ "$status" != 200 ] || [ "$(cat "$scratch/check.body")" != "$expected_body" ]; then
        echo "$name: a checkout answered $status:" >&2
        cat "$scratch/check.body" >&2
        echo >&2
        [ -f "$log" ] && tail -20 "$log" >&2
        exit 1
    fi
}

proof_bff_config() {
    local name="$1" port="$2"
    cat >"$scratch/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
workers = 1
max_connections = $((connections + streams + stream_connections + 1000 > 10000 ? connections + streams + stream_connections + 1000 : 10000))

[proof]
base_url = "http://127.0.0.1:$upstream_port"
client_token = "$client_token"
origin = "$origin"

[browser]
allowed_origins = ["$origin"]

[session]
source = "jwt"

[session.jwt]
algorithm = "HS256"
secret = "$session_secret"

[client_ip]
trusted_proxies = ["127.0.0.1/32"]
source = "x-forwarded-for"

[rate_limit]
backend = "memory"
# Lifted, so that the benchmark measures checkouts, not refusals.
per_user_burst = 100000000
per_user_per_minute = 100000000
per_ip_burst = 100000000
per_ip_per_minute = 100000000

[status]
max_streams = $((streams > 10000 ? streams : 10000))

[log]
format = "json"
level = "info"
TOML
}

# Starts variant $1; sets variant_pids (the processes measured), variant_url and variant_log.
variant_pids=()
variant_url=""
variant_log=""
variant_port=""
start_variant() {
    local name="$1" master
    variant_log="$scratch/$name.log"
    free_local_port variant_port
    variant_url="http://127.0.0.1:$variant_port/start-checkout"
    case "$name" in
        nginx)
            nginx_config proxy "$variant_port"
            nginx -p "$scratch/" -e "$scratch/proxy.error.log" -c "$scratch/proxy.conf" \
                -g 'daemon off;' >"$variant_log" 2>&1 &
            master=$!
            pids+=("$master")
            wait_for "$master" nginx_ready "$variant_port" "$master" ||
                { cat "$variant_log" "$scratch/proxy.error.log" >&2; exit 1; }
            read -r -a variant_pids <<<"$(with_children "$master")"
            ;;
        proof-bff*)
            proof_bff_config "$name" "$variant_port"
            # Standard output (the JSON log lines) to a file, as a container runtime or a log
            # shipper would take it; never a terminal.
            env -u RUST_LOG "${proof_bff_env[@]}" "$binary" --config "$scratch/$name.toml" \
                >"$variant_log" 2>&1 &
            master=$!
            pids+=("$master")
            wait_for "$master" http_ok "http://127.0.0.1:$variant_port/readyz" ||
                { cat "$variant_log" >&2; exit 1; }
            variant_pids=("$master")
            ;;
    esac
}

stop_variant() {
    local pid
    for pid in "${variant_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${variant_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Whether this binary has proof.max_connections (a key it does not know is refused).
max_connections_known() {
    proof_bff_config probe 1
    env -u RUST_LOG PROOF_BFF__PROOF__MAX_CONNECTIONS=1024 "$binary" check-config \
        --config "$scratch/probe.toml" >/dev/null 2>&1
}

# --- Measuring ------------------------------------------------------------------------------------

now_ms() { date +%s%3N; }

# The most requests the upstream had in flight, and the most connections open to it, from the
# samples between two times (unix ms).
upstream_peak() {
    awk -v from="$1" -v to="$2" '$1 >= from && $1 <= to { if ($2 > w) w = $2; if ($3 > a) a = $3; n++ }
        END { if (n) print w + 0, a + 0; else print "- -" }' "$samples"
}

# CPU seconds of the machine besides ours (the variant, the upstream and the helpers; the caller
# adds wrk's): "others" between two readings of `cpu_mark`.
cpu_mark() {
    echo "$(machine_busy_seconds) $(cpu_seconds "${variant_pids[@]}") $(cpu_seconds "${upstream_pids[@]}" "${helper_pids[@]}")"
}
others_since() {
    local before="$1" extra="${2:-0}" after
    after="$(cpu_mark)"
    awk -v b="$before" -v a="$after" -v x="$extra" 'BEGIN { split(b, p); split(a, q)
        o = (q[1] - p[1]) - (q[2] - p[2]) - (q[3] - p[3]) - x; if (o < 0) o = 0; printf "%.2f", o }'
}
variant_cpu_since() {
    awk -v b="$1" -v a="$(cpu_mark)" 'BEGIN { split(b, p); split(a, q); printf "%.2f", q[2] - p[2] }'
}

# wrk against the running variant for $1 seconds. Prints: "requests/s p50_ms p99_ms requests
# non2xx socket_errors others_cpu variant_cpu upstream_in_flight upstream_connections".
run_wrk() {
    local seconds="$1" mark from to
    mark="$(cpu_mark)"
    from="$(now_ms)"
    local TIMEFORMAT='%U %S'
    { time env COMPARE_SESSIONS="$scratch/sessions.txt" COMPARE_ORIGIN="$origin" \
        COMPARE_THREADS="$wrk_threads" wrk -t"$wrk_threads" -c"$connections" -d"${seconds}s" \
        --timeout "${timeout_s}s" --latency -s "$compare/checkout.lua" "$variant_url" \
        >"$scratch/wrk.out" 2>&1; } 2>"$scratch/wrk.time"
    to="$(now_ms)"
    local wrk_cpu others variant_cpu
    wrk_cpu="$(awk '{ printf "%.2f", $1 + $2 }' "$scratch/wrk.time")"
    others="$(others_since "$mark" "$wrk_cpu")"
    variant_cpu="$(variant_cpu_since "$mark")"
    local peak
    peak="$(upstream_peak "$from" "$to")"
    awk -v others="$others" -v cpu="$variant_cpu" -v peak="$peak" '
        function ms(v,   n) {
            n = v + 0
            if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
            return n
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { requests = $1 }
        /Non-2xx or 3xx responses:/ { non2xx += $NF }
        /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        END {
            if (rps == "") { print "wrk gave no result" > "/dev/stderr"; exit 1 }
            printf "%.0f %.3f %.3f %d %d %d %.2f %.2f %s\n", rps, p50, p99, requests, non2xx, errors, others, cpu, peak
        }' "$scratch/wrk.out" || { cat "$scratch/wrk.out" >&2; exit 1; }
}

# "variant rps p50 p99 requests non2xx errors others cpu in_flight upstream_connections peak_mib busy"
results="$scratch/results"
: >"$results"

measure_variant() {
    local name="$1"
    start_variant "$name"
    check_checkout "$name" "$variant_url" "$variant_log"
    [ "$warmup" -gt 0 ] && run_wrk "$warmup" >/dev/null
    local line rps p50 p99 requests non2xx errors others cpu in_flight upstream_connections
    line="$(run_wrk "$duration")"
    read -r rps p50 p99 requests non2xx errors others cpu in_flight upstream_connections <<<"$line"
    local peak busy=0
    peak="$(memory_mib VmHWM "${variant_pids[@]}")"
    awk -v o="$others" -v d="$duration" 'BEGIN { exit !(o > 0.05 * d) }' && busy=1
    stop_variant
    echo "$name $rps $p50 $p99 $requests $non2xx $errors $others $cpu $in_flight $upstream_connections $peak $busy" >>"$results"
    printf '   %-9s %6s requests/s (ideal %s), p50 %s ms, p99 %s ms; %s non-2xx, %s socket errors; peak %s MiB; upstream: %s in flight, %s connections at most; CPU %s µs/request; others used %s CPU s\n' \
        "$name" "$rps" "$ideal" "$p50" "$p99" "$non2xx" "$errors" "$peak" "$in_flight" \
        "$upstream_connections" "$(awk -v c="$cpu" -v n="$requests" 'BEGIN { printf "%.1f", n ? c / n * 1e6 : 0 }')" \
        "$others" >&2
}

# The second part: streams held open, then checkouts beside them. Sets the stream_* values.
measure_streams() {
    local name=proof-bff-streams
    start_variant "$name"
    sleep 1
    stream_idle="$(memory_mib VmRSS "${variant_pids[@]}")"
    echo "   $name: idle ${stream_idle} MiB; opening $streams streams" >&2
    local fifo="$scratch/browsers.in" report="$scratch/browsers.out"
    mkfifo "$fifo"
    : >"$report"
    python3 benches/slow_proof.py streams "$variant_port" "$scratch/sessions.txt" "$origin" \
        "$streams" "$stream_connections" "$duration" "$timeout_s" <"$fifo" >"$report" \
        2>"$scratch/browsers.log" &
    browsers_pid=$!
    pids+=("$browsers_pid")
    helper_pids+=("$browsers_pid")
    exec 3>"$fifo"
    wait_line 1 30
    local mark from
    mark="$(cpu_mark)"
    from="$(now_ms)"
    echo open >&3
    wait_line 2 $((timeout_s + 30))
    stream_open_others="$(others_since "$mark")"
    stream_open_seconds="$(awk -v a="$(now_ms)" -v b="$from" 'BEGIN { printf "%.2f", (a - b) / 1000 }')"
    stream_opened="$(sed -n 2p "$report")"
    # The watchers' WebSockets settle; then the memory with every stream open.
    sleep 2
    stream_rss="$(memory_mib VmRSS "${variant_pids[@]}")"
    stream_websockets="$(ss -Htn state established "( sport = :$websocket_port )" | wc -l)"
    stream_connections_open="$(ss -Htn state established "( sport = :$variant_port )" | wc -l)"
    echo "   $name: $stream_opened; RSS ${stream_rss} MiB, $stream_websockets WebSockets open at Proof" >&2
    mark="$(cpu_mark)"
    from="$(now_ms)"
    echo go >&3
    wait_line 3 $((duration + timeout_s + 30))
    stream_checkout_others="$(others_since "$mark")"
    stream_checkout_seconds="$(awk -v a="$(now_ms)" -v b="$from" 'BEGIN { printf "%.2f", (a - b) / 1000 }')"
    local cpu
    cpu="$(variant_cpu_since "$mark")"
    stream_checkouts="$(sed -n 3p "$report")"
    stream_peak="$(memory_mib VmHWM "${variant_pids[@]}")"
    echo "   $name: checkouts: $stream_checkouts; proof-bff used $cpu CPU s; others used $stream_open_others CPU s in ${stream_open_seconds} s + $stream_checkout_others in ${stream_checkout_seconds} s" >&2
    exec 3>&-
    wait "$browsers_pid" 2>/dev/null || true
    stop_variant
}

# wait_line N SECONDS: until the browsers printed line N, at most SECONDS.
wait_line() {
    local n="$1" seconds="$2" start=$SECONDS
    while [ "$(wc -l <"$scratch/browsers.out")" -lt "$n" ]; do
        if ! kill -0 "$browsers_pid" 2>/dev/null || [ $((SECONDS - start)) -gt "$seconds" ]; then
            echo "the browsers stopped or took too long:" >&2
            cat "$scratch/browsers.log" "$scratch/browsers.out" >&2
            tail -20 "$variant_log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

if max_connections_known; then
    max_connections_note="proof.max_connections: this binary has the key, left at its default"
elif env -u RUST_LOG "$binary" check-config --config "$scratch/probe.toml" >/dev/null 2>&1; then
    max_connections_note="proof.max_connections: not in this binary (awc's own limit applies: 100 connections to Proof per worker)"
else
    max_connections_note="proof.max_connections: unknown (\`proof-bff check-config\` refused the benchmark's configuration)"
fi
for setting in "${proof_bff_env[@]}"; do max_connections_note+="; --proof-bff-env $setting"; done

stream_part="no stream part"
[ "$streams" -gt 0 ] && stream_part="then $streams streams with $stream_connections checkout connections"
echo "== ${variants:-no first part}: $connections connections, wrk -t$wrk_threads, ${duration}s, Proof answering after ${delay_ms} ms; $stream_part" >&2
start_upstream
check_upstream
for variant in $variants; do
    measure_variant "$variant"
done
[ "$streams" -gt 0 ] && measure_streams

# --- Report ---------------------------------------------------------------------------------------

field() { awk -v v="$1" -v c="$2" '$1 == v { print $c }' "$results"; }
# json JSON PATH: the value at PATH (keys joined by dots) of one of the browsers' lines; "-" for none.
json() {
    python3 -c 'import json, sys
value = json.loads(sys.argv[1])
for key in sys.argv[2].split("."):
    value = None if value is None else value.get(key)
print("-" if value is None else json.dumps(value) if isinstance(value, dict) else value)' "$1" "$2"
}
# Figures that may be missing ("-").
fmt_ms() { if [ "$1" = - ]; then echo –; else ms "$1"; fi; }
fmt_n() { if [ "$1" = - ]; then echo –; else thousands "$1"; fi; }
statuses() { python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(", ".join(f"{k}: {v}" for k, v in sorted(d.items())) or "none")' "$1"; }

flagged=false
if [ -n "${variants// /}" ]; then
    echo
    echo "POST /start-checkout, Proof answering after $delay_ms ms; $connections connections, wrk -t$wrk_threads, $duration s; $users users' sessions rotating; one worker each."
    echo
    echo "| variant | requests/s | ideal ($connections / ${delay_s} s) | of ideal | vs nginx | p50 | p99 | non-2xx / socket errors | peak RSS | upstream in flight at most |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for v in $variants; do
        label="nginx proxy, token injected, keepalive $keepalive"
        [ "$v" = proof-bff ] && label="proof-bff, info JSON logs, limits in memory"
        [ "$(field "$v" 13)" != 0 ] && { label="$label (!)"; flagged=true; }
        vs_nginx="–"
        has nginx && [ "$v" != nginx ] && vs_nginx="$(ratio "$(field "$v" 2)" "$(field nginx 2)")"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s MiB | %s |\n' \
            "$label" "$(thousands "$(field "$v" 2)")" "$(thousands "$ideal")" \
            "$(awk -v r="$(field "$v" 2)" -v i="$ideal" 'BEGIN { if (i > 0) printf "%.0f%%", 100 * r / i; else print "–" }')" \
            "$vs_nginx" "$(ms "$(field "$v" 3)")" "$(ms "$(field "$v" 4)")" \
            "$(thousands "$(field "$v" 6)")" "$(thousands "$(field "$v" 7)")" "$(field "$v" 12)" \
            "$(field "$v" 10)"
    done
    echo
    echo "Ideal: each connection gets at best one answer per delay. Upstream in flight: the most requests the stand-in for Proof had at once (stub_status, sampled every 20 ms). Peak RSS: VmHWM (nginx: master and worker added up)."
fi

if [ "$streams" -gt 0 ]; then
    open="$(json "$stream_opened" open)"
    per_stream="$(awk -v a="$stream_rss" -v b="$stream_idle" -v n="$open" 'BEGIN { if (n > 0) printf "%.1f KiB", (a - b) * 1024 / n; else print "–" }')"
    failed_streams="$(statuses "$(json "$stream_opened" failed)")"
    stream_busy=""
    awk -v a="$stream_open_others" -v b="$stream_checkout_others" -v s="$stream_open_seconds" \
        -v t="$stream_checkout_seconds" 'BEGIN { exit !(a > 0.05 * s || b > 0.05 * t) }' &&
        { stream_busy=" (!)"; flagged=true; }
    echo
    echo "Event streams: $streams browsers open GET /checkout/{id}/events at once against a new proof-bff instance (Proof's GET /widget/transactions answering after $delay_ms ms, its WebSocket silent); then, with them open, $stream_connections connections send checkouts back to back for $duration s, each answer waited for up to $timeout_s s.$stream_busy"
    echo
    echo "| streams | open | without a first event | first event p99 | first event max | WebSockets open at Proof | RSS idle → streams open | per open stream |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '| %s | %s | %s | %s | %s | %s | %s → %s MiB | %s |\n' "$streams" "$open" "$failed_streams" \
        "$(fmt_ms "$(json "$stream_opened" first_event_ms.p99)")" "$(fmt_ms "$(json "$stream_opened" first_event_ms.max)")" \
        "$stream_websockets" "$stream_idle" "$stream_rss" "$per_stream"
    echo
    stream_ideal="–"
    [ "$delay_ms" -gt 0 ] && stream_ideal="$(thousands $((stream_connections * 1000 / delay_ms)))"
    echo "| checkouts sent | statuses | no answer / errors | requests/s (ideal $stream_ideal) | p50 | p99 | max | streams ended meanwhile | peak RSS |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s MiB |\n' \
        "$(fmt_n "$(json "$stream_checkouts" sent)")" "$(statuses "$(json "$stream_checkouts" statuses)")" \
        "$(statuses "$(json "$stream_checkouts" errors)")" "$(fmt_n "$(json "$stream_checkouts" requests_per_s)")" \
        "$(fmt_ms "$(json "$stream_checkouts" p50_ms)")" "$(fmt_ms "$(json "$stream_checkouts" p99_ms)")" \
        "$(fmt_ms "$(json "$stream_checkouts" max_ms)")" "$(json "$stream_checkouts" streams_ended)" "$stream_peak"
    echo
    echo "Per open stream: (RSS with the streams open − idle RSS) / open streams, the watcher and its WebSocket included. $stream_connections_open connections were open to proof-bff with the streams open."
fi

for v in $variants; do
    total=$(($(field "$v" 6) + $(field "$v" 7)))
    [ "$total" != 0 ] && echo "!! $v: $total requests failed (non-2xx answers or socket errors)"
done
$flagged && echo "!! (!): other work used more than 5% of a core during that run: measure again on a quiet machine"

echo
echo "Machine:"
machine_lines
echo "- $max_connections_note"
echo "- nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') with echo $(dpkg-query -W -f '${Version}' libnginx-mod-http-echo 2>/dev/null || echo '?'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true), $(python3 --version), proof-bff $(
    if [ "$binary" = "$PWD/target/release/proof-bff" ]; then
        echo "$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+changes') ($(rustc --version | awk '{ print $1, $2 }'))"
    else
        echo "$binary ($("$binary" --version 2>/dev/null || echo 'version unknown'))"
    fi)"
