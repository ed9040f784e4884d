#!/usr/bin/env bash
# proof-bff next to what a partner could deploy instead, under the same load, in one run:
#
#   upstream         the stand-in for Proof alone: nginx, one worker, answering POST
#                    /widget/session with a fixed body shaped like Proof's success answer
#                    (benches/compare/upstream.conf, widget-session.json). Every variant below
#                    calls it as Proof.
#   nginx            nginx as a proxy that only injects the token: one worker, proxy_pass to the
#                    upstream over keep-alive connections (benches/compare/proxy.conf)
#   express          one node process running the handler a partner would write: express,
#                    cookie-parser, jsonwebtoken, express-rate-limit, fetch
#                    (benches/compare/server.js, exact versions in package-lock.json)
#   proof-bff        the release binary, not in sandbox mode: server.workers = 1, info-level JSON
#                    logs written to a file, rate limits in memory (lifted high)
#   proof-bff-redis  the same with rate_limit.backend = "redis", against a redis-server the
#                    script starts on loopback without persistence
#
#   bash benches/compare.sh [options] [seconds]
#
#   seconds           length of each measured run (default 10)
#   --connections N   wrk's open connections (default 32)
#   --threads N       wrk's threads (default 2)
#   --users N         distinct users' session cookies the requests rotate over (default 1000)
#   --warmup S        seconds of load before each variant's first measured run (default 2)
#   --rounds N        measure every variant N times, every other round in reverse order, and
#                     report the medians (default 1)
#   --only LIST       comma-separated variants to measure (default: all five); the ratios need
#                     nginx and express
#   --no-install      fail instead of installing what is missing
#   --perf DIR        record a CPU profile of each proof-bff variant's peak run with `perf record
#                     -g` into DIR/<variant>.perf.data (needs perf: apt-get install linux-perf);
#                     `perf report -i DIR/proof-bff.perf.data` shows where a checkout's time goes
#                     (sampling costs a little: a profiled run's figures are not the table's)
#   --binary PATH     measure this proof-bff binary instead of building target/release/proof-bff
#                     (another build or version, say, to compare with the current one)
#   --log-level LEVEL proof-bff's log.level (default info, what the targets are about); warn
#                     writes no line for a successful checkout and makes no request span, which
#                     shows what the log line costs
#
# Each variant gets the same requests: POST with the checkout body, Content-Type, an Origin the
# services allow, and, rotating over the users, a session cookie (an HS256 JWT with sub, email and
# exp, signed with the configured secret, made by benches/compare/sessions.js) and
# X-Forwarded-For with that user's address, as a trusted proxy on 127.0.0.1 would send it
# (benches/compare/checkout.lua). nginx ignores what it does not need. The upstream alone is sent
# the Bearer token the proxies inject besides (it refuses requests without it, so a proxy that
# forgets the token shows up as failed requests).
#
# For each variant, in this order: its resident memory once it is ready and idle (before any
# load), a warm-up, then
#   - its peak rate: wrk with --connections connections as fast as they go (requests/s, p50, p99),
#   - p99 at half of that rate: the same connections paced to half the peak requests/s, an open
#     schedule held by checkout.lua through wrk's delay() (wrk2 is not packaged; latency is
#     counted from when a request is written, without wrk2's correction for late sends),
#   - its peak resident memory over both runs (VmHWM: nginx master and worker added up; for
#     proof-bff-redis the service alone, redis-server's shown apart),
#   - the CPU time it used per request in the peak run (all its processes and threads).
# The result is a Markdown table on standard output, with the ratios of requests/s to nginx and to
# Express, the targets proof-bff is held to, and the machine: CPU, cores, kernel, versions.
# Everything listens on free ports on 127.0.0.1 and is stopped at exit.
#
# Like benches/load.sh, every run also counts the CPU time the rest of the machine used meanwhile:
# a run during which other work took more than 5% of one core is flagged (!), and the script says
# so: measure again on a quiet machine.
#
# Installs what is missing (apt-get: nginx, wrk, nodejs, npm, redis-server, redis-tools, curl;
# as root or through sudo), runs `npm ci` for the Express app in a scratch copy, and builds the
# release binary (needs cargo). Debian's nginx package, where an init system runs, also starts its
# default site on port 80; the benchmark does not use it. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
here=benches/compare
source benches/common.sh

duration=10
connections=32
wrk_threads=2
users=1000
warmup=2
rounds=1
all_variants="upstream nginx express proof-bff proof-bff-redis"
variants="$all_variants"
install=true
perf_dir=""
binary=""
log_level=info
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) connections="$2"; shift ;;
        --threads) wrk_threads="$2"; shift ;;
        --users) users="$2"; shift ;;
        --warmup) warmup="$2"; shift ;;
        --rounds) rounds="$2"; shift ;;
        --only) variants="${2//,/ }"; shift ;;
        --no-install) install=false ;;
        --perf) perf_dir="$2"; shift ;;
        --binary) binary="$2"; shift ;;
        --log-level) log_level="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
duration="${positional[0]:-$duration}"
for value in "$duration" "$connections" "$wrk_threads" "$users" "$rounds"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive whole number: $value" >&2; exit 2; }
done
[[ "$warmup" =~ ^[0-9]+$ ]] || { echo "--warmup: not a whole number: $warmup" >&2; exit 2; }
[[ "$log_level" =~ ^(error|warn|info|debug|trace)$ ]] ||
    { echo "--log-level: one of error, warn, info, debug, trace: $log_level" >&2; exit 2; }
for variant in $variants; do
    [[ " $all_variants " == *" $variant "* ]] ||
        { echo "unknown variant $variant: one of $all_variants" >&2; exit 2; }
done
has() { [[ " $variants " == *" $1 "* ]]; }

# --- What the benchmark needs -------------------------------------------------------------------

need wrk wrk
need curl curl
need nginx nginx
if has express; then need node nodejs; need npm npm; fi
if has proof-bff-redis; then need redis-server redis-server; need redis-cli redis-tools; fi
command -v node >/dev/null || [[ " ${missing[*]} " == *" nodejs "* ]] || need node nodejs
install_missing "$install"
command -v cargo >/dev/null || { echo "cargo is needed to build proof-bff (rustup.rs)" >&2; exit 1; }
if [ -n "$binary" ]; then
    [ -x "$binary" ] || { echo "--binary: not an executable: $binary" >&2; exit 2; }
    binary="$(realpath "$binary")"
elif has proof-bff || has proof-bff-redis; then
    echo "== cargo build --release" >&2
    cargo build --release --quiet
    binary="$PWD/target/release/proof-bff"
fi

scratch="$(mktemp -d)"
chmod 755 "$scratch"  # nginx's worker does not run as root
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if has express; then
    echo "== npm ci (benches/compare, in a scratch copy)" >&2
    mkdir "$scratch/express"
    cp "$here/package.json" "$here/package-lock.json" "$here/server.js" "$scratch/express/"
    (cd "$scratch/express" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
fi

# --- Secrets, sessions and ports ------------------------------------------------------------------

client_token="bench_$(random_hex 16)"
session_secret="$(random_hex 32)"
origin="https://app.example.com"
node "$here/sessions.js" "$session_secret" "$users" >"$scratch/sessions.txt"
first_token="$(head -1 "$scratch/sessions.txt" | cut -d' ' -f1)"
first_address="$(head -1 "$scratch/sessions.txt" | cut -d' ' -f2)"
expected_body="$(cat "$here/widget-session.json")"

# Fills in benches/compare/<name>.conf's placeholders.
nginx_config() {
    local name="$1" port="$2"
    sed -e "s|@DIR@|$(sed_escape "$scratch")|g" -e "s|@PORT@|$port|g" \
        -e "s|@UPSTREAM_PORT@|${upstream_port:-}|g" -e "s|@TOKEN@|$(sed_escape "$client_token")|g" \
        -e "s|@BODY@|$(sed_escape "$expected_body")|g" "$here/$name.conf" >"$scratch/$name.conf"
    mkdir -p "$scratch/$name-temp"
}

# --- Processes ------------------------------------------------------------------------------------

redis_ready() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

# One checkout through a variant, checked: 200 and Proof's body byte for byte.
check_checkout() {
    local name="$1" url="$2" log="$3"
    local -a extra=()
    [ "$name" = upstream ] && extra=(-H "Authorization: Bearer $client_token")
    local status
    status="$(curl -s -o "$scratch/check.body" -w '%{http_code}' "$url" "${extra[@]}" \
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

upstream_port=""
upstream_pids=()
start_upstream() {
    free_port upstream_port
    nginx_config upstream "$upstream_port"
    nginx -p "$scratch/" -e "$scratch/upstream.error.log" -c "$scratch/upstream.conf" \
        -g 'daemon off;' &
    local master=$!
    pids+=("$master")
    wait_for "$master" nginx_ready "$upstream_port" "$master" ||
        { cat "$scratch/upstream.error.log" >&2; exit 1; }
    read -r -a upstream_pids <<<"$(with_children "$master")"
    check_checkout upstream "http://127.0.0.1:$upstream_port/widget/session" "$scratch/upstream.error.log"
}

redis_port=""
redis_pid=""
start_redis() {
    free_port redis_port
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$scratch" --logfile "$scratch/redis.log" &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_for "$redis_pid" redis_ready "$redis_port" ||
        { cat "$scratch/redis.log" >&2; exit 1; }
}

# Starts variant $1; sets variant_pids (the processes measured), variant_url and variant_log.
variant_pids=()
variant_url=""
variant_log=""
start_variant() {
    local name="$1" port master
    variant_log="$scratch/$name.log"
    if [ "$name" = upstream ]; then
        variant_pids=("${upstream_pids[@]}")
        variant_url="http://127.0.0.1:$upstream_port/widget/session"
        variant_log="$scratch/upstream.error.log"
        return
    fi
    free_port port
    variant_url="http://127.0.0.1:$port/start-checkout"
    case "$name" in
        nginx)
            nginx_config proxy "$port"
            nginx -p "$scratch/" -e "$scratch/proxy.error.log" -c "$scratch/proxy.conf" \
                -g 'daemon off;' >"$variant_log" 2>&1 &
            master=$!
            pids+=("$master")
            wait_for "$master" nginx_ready "$port" "$master" || { cat "$variant_log" "$scratch/proxy.error.log" >&2; exit 1; }
            read -r -a variant_pids <<<"$(with_children "$master")"
            ;;
        express)
            env NODE_ENV=production PORT="$port" \
                PROOF_BASE_URL="http://127.0.0.1:$upstream_port" PROOF_CLIENT_TOKEN="$client_token" \
                PROOF_ORIGIN="$origin" SESSION_SECRET="$session_secret" ALLOWED_ORIGINS="$origin" \
                TRUSTED_PROXIES=127.0.0.1 RATE_LIMIT_PER_MINUTE=100000000 \
                node "$scratch/express/server.js" >"$variant_log" 2>&1 &
            master=$!
            pids+=("$master")
            wait_for "$master" listening "$port" || { cat "$variant_log" >&2; exit 1; }
            variant_pids=("$master")
            ;;
        proof-bff|proof-bff-redis)
            local backend=memory
            [ "$name" = proof-bff-redis ] && backend=redis
            cat >"$scratch/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
workers = 1

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
backend = "$backend"
redis_url = "${redis_port:+redis://127.0.0.1:$redis_port}"
# Lifted, so that the benchmark measures checkouts, not refusals.
per_user_burst = 100000000
per_user_per_minute = 100000000
per_ip_burst = 100000000
per_ip_per_minute = 100000000

[log]
format = "json"
level = "$log_level"
TOML
            # Standard output (the JSON log lines) to a file, as a container runtime or a log
            # shipper would take it; never a terminal.
            env -u RUST_LOG "$binary" --config "$scratch/$name.toml" >"$variant_log" 2>&1 &
            master=$!
            pids+=("$master")
            wait_for "$master" http_ok "http://127.0.0.1:$port/readyz" ||
                { cat "$variant_log" >&2; exit 1; }
            variant_pids=("$master")
            ;;
    esac
}

stop_variant() {
    [ "$1" = upstream ] && return
    local pid
    for pid in "${variant_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${variant_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# --- Measuring ------------------------------------------------------------------------------------

# wrk against the running variant for $1 seconds; $2: requests/s to hold, or 0 for as fast as the
# connections go. Prints one line: "requests/s p50_ms p99_ms requests failed variant_cpu redis_cpu
# others_cpu variant_system_cpu" (failed: answers other than 2xx and socket errors; CPU seconds
# used meanwhile by the variant, by redis-server, by the rest of the machine besides them, the
# upstream and wrk, and the variant's part of its own spent in the kernel).
run_wrk() {
    local seconds="$1" rate="$2"
    local -a env_vars=(COMPARE_SESSIONS="$scratch/sessions.txt" COMPARE_ORIGIN="$origin"
        COMPARE_THREADS="$wrk_threads" COMPARE_RATE="$rate")
    [ "$current" = upstream ] && env_vars+=(COMPARE_BEARER="$client_token")
    local -a upstream=("${upstream_pids[@]}") redis=()
    [ "$current" = upstream ] && upstream=()
    [ -n "$redis_pid" ] && redis=("$redis_pid")
    local machine_before variant_before upstream_before redis_before
    machine_before="$(machine_busy_seconds)"
    variant_before="$(cpu_seconds "${variant_pids[@]}")"
    local system_before
    system_before="$(cpu_seconds system "${variant_pids[@]}")"
    upstream_before="$(cpu_seconds "${upstream[@]}")"
    redis_before="$(cpu_seconds "${redis[@]}")"
    local perf_pid=""
    if [ -n "$perf_dir" ] && [ "$rate" = 0 ] && [[ "$current" == proof-bff* ]] && [ "$seconds" -gt 2 ]; then
        mkdir -p "$perf_dir"
        perf record -q -g -F 999 -p "${variant_pids[0]}" -o "$perf_dir/$current.perf.data" \
            -- sleep $((seconds - 1)) >/dev/null 2>&1 &
        perf_pid=$!
    fi
    local TIMEFORMAT='%U %S'
    { time env "${env_vars[@]}" wrk -t"$wrk_threads" -c"$connections" -d"${seconds}s" --latency \
        -s "$here/checkout.lua" "$variant_url" >"$scratch/wrk.out" 2>&1; } 2>"$scratch/wrk.time"
    [ -n "$perf_pid" ] && wait "$perf_pid"
    local variant_after upstream_after redis_after machine_after
    variant_after="$(cpu_seconds "${variant_pids[@]}")"
    local system_after
    system_after="$(cpu_seconds system "${variant_pids[@]}")"
    upstream_after="$(cpu_seconds "${upstream[@]}")"
    redis_after="$(cpu_seconds "${redis[@]}")"
    machine_after="$(machine_busy_seconds)"
    awk -v va="$variant_after" -v vb="$variant_before" -v ua="$upstream_after" -v ub="$upstream_before" \
        -v ra="$redis_after" -v rb="$redis_before" -v sa="$system_after" -v sb="$system_before" \
        -v ma="$machine_after" -v mb="$machine_before" -v wt="$(cat "$scratch/wrk.time")" '
        function ms(v,   n) {
            n = v + 0
            if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
            return n
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { requests = $1 }
        /Non-2xx or 3xx responses:/ { failed += $NF }
        /Socket errors:/ { gsub(/,/, ""); failed += $4 + $6 + $8 + $10 }
        END {
            split(wt, w, " ")
            variant = va - vb
            redis = ra - rb
            others = (ma - mb) - variant - (ua - ub) - redis - (w[1] + w[2])
            if (others < 0) others = 0
            if (rps == "") { print "wrk gave no result" > "/dev/stderr"; exit 1 }
            printf "%.0f %.3f %.3f %d %d %.2f %.2f %.2f %.2f\n", rps, p50, p99, requests, failed, variant, redis, others, sa - sb
        }' "$scratch/wrk.out" || { cat "$scratch/wrk.out" >&2; exit 1; }
}

# Every measurement of every round: "variant round idle_mib peak_mib redis_mib rps p50 p99
# cpu_us_per_request half_rps half_p99 failed busy redis_cpu_us_per_request", busy being 1 when a
# run was shared.
results="$scratch/results"
: >"$results"

measure_variant() {
    local name="$1" round="$2"
    current="$name"
    start_variant "$name"
    sleep 1
    local idle
    idle="$(memory_mib VmRSS "${variant_pids[@]}")"
    check_checkout "$name" "$variant_url" "$variant_log"
    [ "$warmup" -gt 0 ] && run_wrk "$warmup" 0 >/dev/null
    local line rps p50 p99 requests failed cpu redis_cpu others
    line="$(run_wrk "$duration" 0)"
    read -r rps p50 p99 requests failed cpu redis_cpu others system <<<"$line"
    local half_rps half_p99 half_failed half_others
    line="$(run_wrk "$duration" $((rps / 2)))"
    read -r half_rps _ half_p99 _ half_failed _ _ half_others _ <<<"$line"
    local peak redis_peak=-
    peak="$(memory_mib VmHWM "${variant_pids[@]}")"
    [ "$name" = proof-bff-redis ] && redis_peak="$(memory_mib VmHWM "$redis_pid")"
    local cpu_us redis_us=- busy=0
    cpu_us="$(awk -v c="$cpu" -v n="$requests" 'BEGIN { printf "%.1f", n ? c / n * 1e6 : 0 }')"
    local system_us
    system_us="$(awk -v c="$system" -v n="$requests" 'BEGIN { printf "%.1f", n ? c / n * 1e6 : 0 }')"
    [ "$name" = proof-bff-redis ] &&
        redis_us="$(awk -v c="$redis_cpu" -v n="$requests" 'BEGIN { printf "%.1f", n ? c / n * 1e6 : 0 }')"
    awk -v a="$others" -v b="$half_others" -v d="$duration" 'BEGIN { exit !(a > 0.05 * d || b > 0.05 * d) }' &&
        busy=1
    stop_variant "$name"
    echo "$name $round $idle $peak $redis_peak $rps $p50 $p99 $cpu_us $half_rps $half_p99 $((failed + half_failed)) $busy $redis_us" >>"$results"
    printf '   %-16s round %s: %8s requests/s, p50 %s ms, p99 %s ms; at %s/s p99 %s ms; idle %s MiB, peak %s MiB; CPU %s µs/request (system %s); %s failed; others used %s + %s CPU s\n' \
        "$name" "$round" "$rps" "$p50" "$p99" "$half_rps" "$half_p99" "$idle" "$peak" "$cpu_us" "$system_us" \
        "$((failed + half_failed))" "$others" "$half_others" >&2
}

echo "== measuring: $variants; $connections connections, wrk -t$wrk_threads, ${duration}s per run, $users users, $rounds round(s)" >&2
start_upstream
has proof-bff-redis && start_redis
for round in $(seq "$rounds"); do
    order="$variants"
    if [ $((round % 2)) = 0 ]; then
        order="$(tr ' ' '\n' <<<"$variants" | tac | tr '\n' ' ')"
    fi
    for variant in $order; do
        measure_variant "$variant" "$round"
    done
done

# --- Report ---------------------------------------------------------------------------------------

# The median of column $2 for variant $1 over the rounds.
median() {
    awk -v v="$1" -v c="$2" '$1 == v { print $c }' "$results" | sort -g |
        awk '{ x[NR] = $1 } END { if (NR % 2) print x[(NR + 1) / 2]; else printf "%.3f\n", (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}
label() {
    case "$1" in
        upstream) echo "upstream alone (nginx, static answer)" ;;
        nginx) echo "nginx proxy, token injected" ;;
        express) echo "Express (express, jsonwebtoken, express-rate-limit, fetch)" ;;
        proof-bff) echo "proof-bff, $log_level JSON logs, limits in memory" ;;
        proof-bff-redis) echo "proof-bff, $log_level JSON logs, limits in Redis" ;;
    esac
}

declare -A rps p50 p99 half_rps half_p99 idle peak redis_peak cpu redis_cpu failed busy
for v in $variants; do
    idle[$v]="$(median "$v" 3)"
    peak[$v]="$(median "$v" 4)"
    redis_peak[$v]="$(awk -v v="$v" '$1 == v { print $5 }' "$results" | sort -g | tail -1)"
    rps[$v]="$(median "$v" 6)"
    p50[$v]="$(median "$v" 7)"
    p99[$v]="$(median "$v" 8)"
    cpu[$v]="$(median "$v" 9)"
    redis_cpu[$v]=-
    [ "$v" = proof-bff-redis ] && redis_cpu[$v]="$(median "$v" 14)"
    half_rps[$v]="$(median "$v" 10)"
    half_p99[$v]="$(median "$v" 11)"
    failed[$v]="$(awk -v v="$v" '$1 == v { n += $12 } END { print n + 0 }' "$results")"
    busy[$v]="$(awk -v v="$v" '$1 == v { n += $13 } END { print n + 0 }' "$results")"
done

echo
echo "POST /start-checkout (the upstream alone: POST /widget/session), $connections connections, wrk -t$wrk_threads, ${duration} s per run, $users users' sessions rotating, one worker each; medians of $rounds round(s)."
echo
echo "| variant | requests/s | p50 | p99 | p99 at half the peak rate | idle RSS | peak RSS | CPU per request | vs nginx | vs Express |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for v in $variants; do
    name="$(label "$v")"
    [ "${busy[$v]}" != 0 ] && name="$name (!)"
    peak_cell="${peak[$v]} MiB"
    [ "${redis_peak[$v]}" != "-" ] && peak_cell="$peak_cell (+ redis-server ${redis_peak[$v]} MiB)"
    cpu_cell="${cpu[$v]} µs"
    [ "${redis_cpu[$v]}" != "-" ] && cpu_cell="$cpu_cell (+ redis-server ${redis_cpu[$v]} µs)"
    vs_nginx="–"; vs_express="–"
    has nginx && [ "$v" != nginx ] && vs_nginx="$(ratio "${rps[$v]}" "${rps[nginx]}")"
    has express && [ "$v" != express ] && vs_express="$(ratio "${rps[$v]}" "${rps[express]}")"
    printf '| %s | %s | %s | %s | %s (at %s/s) | %s MiB | %s | %s | %s | %s |\n' \
        "$name" "$(thousands "${rps[$v]}")" "$(ms "${p50[$v]}")" "$(ms "${p99[$v]}")" \
        "$(ms "${half_p99[$v]}")" "$(thousands "${half_rps[$v]}")" "${idle[$v]}" "$peak_cell" \
        "$cpu_cell" "$vs_nginx" "$vs_express"
done
echo
echo "RSS: resident memory (nginx: master and worker added up); idle: once ready, before any load; peak: the highest over both runs (VmHWM). CPU per request: the variant's own processes, all threads, in the peak run."

if has proof-bff; then
    echo
    echo "Targets for proof-bff ($log_level JSON logs, limits in memory):"
    target() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? (a >= b) : (a < b); print ok ? "met" : "NOT met" }'; }
    if has nginx; then
        r="$(awk -v a="${rps["proof-bff"]}" -v b="${rps[nginx]}" 'BEGIN { printf "%.2f", a / b }')"
        echo "- requests/s at least 0.8× nginx's: ${r}× ($(target "$r" 0.8 ge))"
    fi
    if has express; then
        r="$(awk -v a="${rps["proof-bff"]}" -v b="${rps[express]}" 'BEGIN { printf "%.1f", a / b }')"
        echo "- requests/s at least 30× Express's: ${r}× ($(target "$r" 30 ge))"
    fi
    if has upstream; then
        d="$(awk -v a="${half_p99["proof-bff"]}" -v b="${half_p99[upstream]}" 'BEGIN { printf "%.2f", a - b }')"
        echo "- p99 at half its peak rate less than 1 ms above the upstream alone's (at half of its own): +${d} ms ($(target "$d" 1 lt))"
    fi
    echo "- idle resident memory under 20 MiB: ${idle["proof-bff"]} MiB ($(target "${idle["proof-bff"]}" 20 lt))"
fi

flagged=false
for v in $variants; do
    [ "${failed[$v]}" != 0 ] && echo "!! $v: ${failed[$v]} requests failed (non-2xx answers or socket errors): its figures are not checkout throughput"
    [ "${busy[$v]}" != 0 ] && flagged=true
done
$flagged && echo "!! (!): in some of that variant's runs other work used more than 5% of a core: measure again on a quiet machine"

echo
echo "Machine:"
machine_lines
versions="nginx $(nginx -v 2>&1 | sed 's|.*nginx/||'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true)"
if has express; then
    versions+=", node $(node --version)"
    for package in express jsonwebtoken express-rate-limit cookie-parser; do
        versions+=", $package $(node -p "require('$scratch/express/node_modules/$package/package.json').version")"
    done
fi
has proof-bff-redis && versions+=", redis-server $(redis-server --version | grep -o 'v=[^ ]*' | cut -c3-)"
if [ -n "$binary" ] && [ "$binary" != "$PWD/target/release/proof-bff" ]; then
    versions+=", proof-bff $binary ($("$binary" --version 2>/dev/null || echo 'version unknown'))"
elif has proof-bff || has proof-bff-redis; then
    versions+=", proof-bff $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src stand-in Cargo.toml Cargo.lock 2>/dev/null || echo '+changes') ($(rustc --version | awk '{ print $1, $2 }'))"
fi
echo "- $versions"
