#!/usr/bin/env bash
# Throughput and latency of POST /start-checkout: wrk against the release binary in sandbox mode,
# so every request goes through the session check, validation, rate limits and a real HTTP call to
# the embedded stand-in for Proof. Also reports the service's resident memory under load.
#
#   bash benches/load.sh [options] [seconds] [connections]
#
#   seconds         length of each measured run (default 10), after a 2 s warm-up
#   connections     wrk's open connections (default 32)
#
#   --redis         rate limits in Redis (rate_limit.backend = "redis") instead of in memory: the
#                   script starts its own redis-server on a free loopback port, without persistence,
#                   and stops it at exit
#   --compare       measure both backends, --runs times each, alternating memory and redis (a fresh
#                   service per run, identical settings otherwise), and print each one's median
#                   requests/s, p50 and p99, and the ratio redis / memory
#   --runs N        runs per backend with --compare (default 3)
#   --workers N     server.workers (default 0: one per core)
#   --wrk-threads N wrk's threads (default 2)
#   --pin           proof-bff on the first CPU only, wrk and redis-server on the others (taskset):
#                   the service's own core is then what limits throughput, as when Redis and the
#                   clients are on other machines; without it everything shares every core
#   --metrics       serve Prometheus /metrics on a loopback port of its own (metrics.listen);
#                   without it nothing is counted, so a run with and one without it measure the
#                   metrics' cost
#   --otlp          OpenTelemetry traces on (telemetry.otlp_endpoint), exported to a sink the script
#                   starts on a free loopback port (python3: answers every POST with 200 and
#                   discards it); its CPU is reported as "sink". At full load the exporter's queue
#                   (OTEL_BSP_MAX_QUEUE_SIZE, 2048 spans) fills and further spans are dropped, as in
#                   production: the service never waits for an export
#   --sample-ratio R  telemetry.sample_ratio with --otlp (default 1.0)
#
# The two backends with one worker, as in BENCHMARKS.md, "Rate limits in Redis":
#
#   bash benches/load.sh --compare --workers 1 --runs 5 10
#
# Each run also prints the CPU seconds used by proof-bff (the service and the stand-in, one
# process), redis-server and wrk, to see which of them the cores went to, and by anything else on
# the machine ("others"): a run that shared the cores with other work is not a measurement of the
# service, and the script says so. The rate limits are lifted so that the benchmark measures the
# checkout path, not refusals; a run that got answers other than 200 (e.g. 503 when Redis is
# slower than rate_limit.redis_timeout_ms) says so too.
#
# The cost of metrics and traces, all else equal: run once without, once with --metrics, once with
# --otlp (and --sample-ratio).
#
# Needs wrk (apt-get install wrk), for --redis and --compare redis-server and redis-cli
# (apt-get install redis-server redis-tools), for --otlp python3. Loopback only. PROOF_BFF_BENCH_PORT sets the service's
# port (default 18480).
set -euo pipefail
cd "$(dirname "$0")/.."

backends=memory
compare=false
runs=3
workers=0
wrk_threads=2
pin=false
metrics=false
otlp=false
sample_ratio=1.0
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --redis) backends=redis ;;
        --compare) compare=true ;;
        --runs) runs="$2"; shift ;;
        --workers) workers="$2"; shift ;;
        --wrk-threads) wrk_threads="$2"; shift ;;
        --pin) pin=true ;;
        --metrics) metrics=true ;;
        --otlp) otlp=true ;;
        --sample-ratio) sample_ratio="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) positional+=("$1") ;;
    esac
    shift
done
duration="${positional[0]:-10}"
connections="${positional[1]:-32}"
port="${PROOF_BFF_BENCH_PORT:-18480}"
$compare && backends="memory redis"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
# Commands run as is, or pinned with --pin.
on_service_cpu=()
on_load_cpus=()
placement="every process on every core"
if $pin; then
    cpus="$(nproc)"
    [ "$cpus" -ge 2 ] || { echo "--pin needs at least 2 CPUs" >&2; exit 1; }
    command -v taskset >/dev/null || { echo "--pin needs taskset (util-linux)" >&2; exit 1; }
    on_service_cpu=(taskset -c 0)
    on_load_cpus=(taskset -c "1-$((cpus - 1))")
    placement="proof-bff on CPU 0, wrk and redis-server on CPU 1-$((cpus - 1))"
fi
if [[ " $backends " == *" redis "* ]]; then
    for tool in redis-server redis-cli; do
        command -v "$tool" >/dev/null ||
            { echo "$tool is needed: apt-get install redis-server redis-tools" >&2; exit 1; }
    done
fi
$otlp && { command -v python3 >/dev/null || { echo "--otlp needs python3" >&2; exit 1; }; }
cargo build --release --quiet

scratch="$(mktemp -d)"
out="$scratch/service.log"
script="$scratch/checkout.lua"
pid=""
redis_pid=""
redis_port=""
sink_pid=""
sink_port=""
cleanup() {
    for process in $pid $redis_pid $sink_pid; do
        kill "$process" 2>/dev/null || true
        wait "$process" 2>/dev/null || true
    done
    rm -rf "$scratch"
}
trap cleanup EXIT

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
    awk -v tick="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / tick }' "/proc/$1/stat"
}

# A redis-server on a free loopback port: a port found free may be taken before it binds, so a
# few are tried.
start_redis() {
    for _ in 1 2 3 4 5; do
        redis_port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && continue
        "${on_load_cpus[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$scratch" --logfile "$scratch/redis.log" &
        redis_pid=$!
        for _ in $(seq 100); do
            redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
            kill -0 "$redis_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=""
    done
    echo "redis-server did not start; its log:" >&2
    cat "$scratch/redis.log" >&2
    exit 1
}

# The OTLP sink: accepts every POST on a free loopback port, answers 200 with an empty body (an
# empty OTLP response) and discards what it got.
start_sink() {
    cat >"$scratch/sink.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
with open(sys.argv[1], "w") as port_file:
    port_file.write(str(server.server_address[1]))
server.serve_forever()
PY
    "${on_load_cpus[@]}" python3 "$scratch/sink.py" "$scratch/sink.port" &
    sink_pid=$!
    for _ in $(seq 100); do
        [ -s "$scratch/sink.port" ] && break
        sleep 0.1
    done
    [ -s "$scratch/sink.port" ] || { echo "the OTLP sink did not start" >&2; exit 1; }
    sink_port="$(cat "$scratch/sink.port")"
}

# True when the service's /readyz answers 200.
ready() (
    exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || exit 1
    printf 'GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    [[ "$(head -1 <&3)" == *" 200 "* ]]
)

# The service in sandbox mode with the rate limits in $1 (memory or redis), until it is ready;
# writes wrk's request script with the sandbox's session cookie.
start_service() {
    local -a settings=(
        "PROOF_BFF__SERVER__LISTEN=127.0.0.1:$port"
        "PROOF_BFF__SERVER__WORKERS=$workers"
        PROOF_BFF__LOG__LEVEL=warn
        # Limits high enough that the benchmark measures the checkout path, not refusals.
        PROOF_BFF__RATE_LIMIT__PER_USER_BURST=100000000
        PROOF_BFF__RATE_LIMIT__PER_USER_PER_MINUTE=100000000
        PROOF_BFF__RATE_LIMIT__PER_IP_BURST=100000000
        PROOF_BFF__RATE_LIMIT__PER_IP_PER_MINUTE=100000000
    )
    if [ "$1" = redis ]; then
        settings+=(
            PROOF_BFF__RATE_LIMIT__BACKEND=redis
            "PROOF_BFF__RATE_LIMIT__REDIS_URL=redis://127.0.0.1:$redis_port"
        )
    fi
    # Port 0: a free port, whichever it is; nothing here scrapes it.
    $metrics && settings+=(PROOF_BFF__METRICS__LISTEN=127.0.0.1:0)
    if $otlp; then
        settings+=(
            "PROOF_BFF__TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$sink_port"
            "PROOF_BFF__TELEMETRY__SAMPLE_RATIO=$sample_ratio"
        )
    fi
    env "${settings[@]}" "${on_service_cpu[@]}" target/release/proof-bff --sandbox >"$out" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        grep -q "Cookie: session=" "$out" && ready && break
        sleep 0.1
    done
    ready || { cat "$out"; exit 1; }
    local cookie
    cookie="$(grep -o "Cookie: session=[^']*" "$out" | head -1 | cut -d' ' -f2-)"
    [ -n "$cookie" ] || { cat "$out"; exit 1; }
    cat >"$script" <<LUA
wrk.method = "POST"
wrk.body = '{"network":"TRC20","currency":"USDT","amount":"100"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Origin"] = "http://127.0.0.1:$port"
wrk.headers["Cookie"] = "$cookie"
LUA
}

stop_service() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}

# wrk's latency figure in milliseconds: 740.00us, 3.65ms, 1.02s.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n
    }'
}

# CPU seconds the whole machine has spent busy so far (every core; steal counts, being
# time the cores were not ours).
machine_busy_seconds() {
    awk -v tick="$(getconf CLK_TCK)" '$1 == "cpu" {
        busy = 0
        # user nice system [idle iowait] irq softirq steal; guest time is already in user.
        for (i = 2; i <= 9; i++) if (i != 5 && i != 6) busy += $i
        printf "%.2f", busy / tick
    }' /proc/stat
}

# One warm-up and one measured run against the running service. Prints wrk's output, then one
# line: "RESULT requests/s p50_ms p99_ms non_200 service_cpu redis_cpu wrk_cpu others_cpu
# sink_cpu", where others_cpu is what the rest of the machine used meanwhile: more than a few
# tenths of a second means the run shared the cores with something else and its figures are not to
# be trusted.
measure() {
    local url="http://127.0.0.1:$port/start-checkout"
    "${on_load_cpus[@]}" wrk -t"$wrk_threads" -c"$connections" -d2s -s "$script" "$url" >/dev/null
    local machine_before service_before redis_before=0 sink_before=0
    machine_before="$(machine_busy_seconds)"
    service_before="$(cpu_seconds "$pid")"
    [ -n "$redis_pid" ] && redis_before="$(cpu_seconds "$redis_pid")"
    [ -n "$sink_pid" ] && sink_before="$(cpu_seconds "$sink_pid")"
    local TIMEFORMAT='%U %S'
    { time "${on_load_cpus[@]}" wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency -s "$script" "$url" \
        >"$scratch/wrk.out" 2>&1; } 2>"$scratch/wrk.time"
    local service_after redis_after=0 sink_after=0 machine_after
    service_after="$(cpu_seconds "$pid")"
    [ -n "$redis_pid" ] && redis_after="$(cpu_seconds "$redis_pid")"
    [ -n "$sink_pid" ] && sink_after="$(cpu_seconds "$sink_pid")"
    machine_after="$(machine_busy_seconds)"
    local report wrk_cpu service_cpu redis_cpu sink_cpu others_cpu
    report="$(cat "$scratch/wrk.out")"
    wrk_cpu="$(awk '{ printf "%.2f", $1 + $2 }' "$scratch/wrk.time")"
    service_cpu="$(awk -v a="$service_after" -v b="$service_before" 'BEGIN { printf "%.2f", a - b }')"
    redis_cpu="$(awk -v a="$redis_after" -v b="$redis_before" 'BEGIN { printf "%.2f", a - b }')"
    sink_cpu="$(awk -v a="$sink_after" -v b="$sink_before" 'BEGIN { printf "%.2f", a - b }')"
    others_cpu="$(awk -v a="$machine_after" -v b="$machine_before" -v s="$service_cpu" \
        -v r="$redis_cpu" -v w="$wrk_cpu" -v k="$sink_cpu" \
        'BEGIN { x = a - b - s - r - w - k; if (x < 0) x = 0; printf "%.2f", x }')"
    echo "$report"
    local rps p50 p99 non200
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$report")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$report")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$report")")"
    non200="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$report")"
    echo "RESULT $rps $p50 $p99 ${non200:-0} $service_cpu $redis_cpu $wrk_cpu $others_cpu $sink_cpu"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

if [[ " $backends " == *" redis "* ]]; then
    start_redis
fi
$otlp && start_sink
extras=""
$metrics && extras+=", metrics on"
$otlp && extras+=", traces on (sample_ratio $sample_ratio)"

if ! $compare; then
    start_service "$backends"
    echo "== POST /start-checkout, rate limits in $backends$extras, workers=$workers, $connections connections, wrk -t$wrk_threads, ${duration}s, $placement"
    result="$(measure)"
    grep -v '^RESULT ' <<<"$result"
    read -r _ _ _ _ non200 service_cpu redis_cpu wrk_cpu others_cpu sink_cpu <<<"$(grep '^RESULT ' <<<"$result")"
    [ "$non200" = 0 ] || echo "!! $non200 answers were not 200"
    awk -v o="$others_cpu" 'BEGIN { exit !(o > 0.5) }' &&
        echo "!! other work used $others_cpu CPU seconds during the run: measure again on a quiet machine"
    [ -n "$redis_pid" ] || redis_cpu="-"
    [ -n "$sink_pid" ] || sink_cpu="-"
    echo "== CPU seconds during the run: proof-bff $service_cpu, redis-server $redis_cpu, OTLP sink $sink_cpu, wrk $wrk_cpu, anything else $others_cpu"
    echo "== resident memory of proof-bff (service and stand-in in one process)"
    grep VmRSS "/proc/$pid/status"
    if [ -n "$redis_pid" ]; then
        echo "== resident memory of redis-server"
        grep VmRSS "/proc/$redis_pid/status"
    fi
    exit 0
fi

echo "== memory vs redis$extras: workers=$workers, $connections connections, wrk -t$wrk_threads, ${duration}s per run, $runs runs each, alternating; $placement"
row='%-7s %3s %11s %7s %7s %7s %9s %9s %7s %7s\n'
# shellcheck disable=SC2059
printf "$row" backend run requests/s p50_ms p99_ms non-200 proof-bff redis wrk others
results="$scratch/results"
: >"$results"
for run in $(seq "$runs"); do
    for backend in $backends; do
        start_service "$backend"
        line="$(measure | grep '^RESULT ')"
        stop_service
        read -r _ rps p50 p99 non200 service_cpu redis_cpu wrk_cpu others_cpu _ <<<"$line"
        [ "$backend" = redis ] || redis_cpu="-"
        # shellcheck disable=SC2059
        printf "$row" "$backend" "$run" "$rps" "$p50" "$p99" "$non200" \
            "$service_cpu" "$redis_cpu" "$wrk_cpu" "$others_cpu"
        echo "$backend $rps $p50 $p99 $non200 $others_cpu" >>"$results"
    done
done
echo "(proof-bff, redis, wrk, others: CPU seconds used during the run; others is the rest of the machine)"

echo "== medians"
printf '%-7s %12s %9s %9s\n' backend requests/s p50_ms p99_ms
declare -A median_rps
for backend in $backends; do
    rps="$(awk -v b="$backend" '$1 == b { print $2 }' "$results" | median)"
    p50="$(awk -v b="$backend" '$1 == b { print $3 }' "$results" | median)"
    p99="$(awk -v b="$backend" '$1 == b { print $4 }' "$results" | median)"
    median_rps[$backend]="$rps"
    printf '%-7s %12s %9s %9s\n' "$backend" "$rps" "$p50" "$p99"
done
awk -v r="${median_rps[redis]}" -v m="${median_rps[memory]}" \
    'BEGIN { printf "redis / memory requests/s: %.2f\n", r / m }'
if awk '$5 != 0 { found = 1 } END { exit !found }' "$results"; then
    echo "!! some runs got answers other than 200: their figures are not checkout throughput"
fi
if awk '$6 > 0.5 { found = 1 } END { exit !found }' "$results"; then
    echo "!! in some runs other work used more than 0.5 CPU seconds (others): measure again on a quiet machine"
fi
