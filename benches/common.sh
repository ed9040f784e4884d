# Helpers shared by the benchmark scripts (benches/compare.sh, benches/slow_proof.sh): installing
# what is missing, free loopback ports, waiting for a process to be ready, and the CPU time and
# memory of processes and of the machine, read from /proc. Sourced, not run; the scripts set
# `set -euo pipefail` first.

PATH="$PATH:/usr/sbin:/sbin"

# --- What a benchmark needs ----------------------------------------------------------------------

# need COMMAND PACKAGE: notes PACKAGE as missing unless COMMAND is found; install_missing then
# installs every noted package.
missing=()
need() { command -v "$1" >/dev/null || missing+=("$2"); }

# install_missing true|false: apt-get install of the packages need() noted, as root or through
# sudo; with false, fails instead, naming them.
install_missing() {
    local install="$1"
    [ ${#missing[@]} -gt 0 ] || return 0
    $install || { echo "missing: ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1; }
    local -a as_root=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "run as root, or install: ${missing[*]}" >&2; exit 1; }
        as_root=(sudo)
    fi
    echo "== installing ${missing[*]}" >&2
    "${as_root[@]}" apt-get update -qq >&2
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# --- Secrets and ports ---------------------------------------------------------------------------

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

used_ports=" "
# free_port VAR: sets VAR to a loopback port not handed out before and free when looked at (a
# process that takes it before the variant binds makes that variant fail to start, and the script
# stop).
free_port() {
    local candidate
    while :; do
        candidate=$((20000 + RANDOM % 40000))
        [[ "$used_ports" == *" $candidate "* ]] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
        used_ports+="$candidate "
        printf -v "$1" '%s' "$candidate"
        return
    done
}

# free_local_port VAR: like free_port, but a port below the kernel's range for outgoing connections
# (net.ipv4.ip_local_port_range), so that none of the benchmark's thousands of connections can
# take it as its local port before the service binds, and that no socket uses at all when looked
# at.
free_local_port() {
    local candidate low
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    [ "$low" -gt 11000 ] || { free_port "$1"; return; }
    while :; do
        candidate=$((10000 + RANDOM % (low - 10000)))
        [[ "$used_ports" == *" $candidate "* ]] && continue
        [ -z "$(ss -Htan "( sport = :$candidate )" 2>/dev/null)" ] || continue
        used_ports+="$candidate "
        printf -v "$1" '%s' "$candidate"
        return
    done
}

# A value made safe for the replacement side of sed's s|...|...|.
sed_escape() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }

# --- Processes -----------------------------------------------------------------------------------

# The pids of a process and of its children (nginx: the master and its worker).
with_children() {
    local pid="$1" children
    children="$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)"
    [ -n "$children" ] || children="$(pgrep -P "$pid" 2>/dev/null || true)"
    echo "$pid $(echo "$children" | tr -s ' \n' '  ')"
}

# CPU seconds (user + system) the processes have used so far, all their threads; with `system`
# first, only the part spent in the kernel (on loopback, mostly sending and receiving).
cpu_seconds() {
    local fields='$14 + $15' pid total=0
    [ "${1:-}" = system ] && { fields='$15'; shift; }
    for pid in "$@"; do
        total="$(awk -v t="$total" -v tick="$(getconf CLK_TCK)" \
            "{ printf \"%.2f\", t + ($fields) / tick }" "/proc/$pid/stat")"
    done
    echo "$total"
}

# A /proc/<pid>/status field (VmRSS, VmHWM) of the processes, added up, in MiB.
memory_mib() {
    local field="$1" pid total=0
    shift
    for pid in "$@"; do
        total="$(awk -v t="$total" -v f="$field:" '$1 == f { printf "%.1f", t + $2 / 1024 }' "/proc/$pid/status")"
    done
    echo "$total"
}

# CPU seconds the whole machine has spent busy so far, every core: user, nice, system and steal
# (time the cores were not ours). Interrupt and softirq time are left out: that is mostly the
# kernel moving the benchmark's own loopback traffic (about 0.3 of a core at 70,000 requests/s),
# which /proc counts to no process.
machine_busy_seconds() {
    awk -v tick="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", ($2 + $3 + $4 + $9) / tick }' /proc/stat
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# nginx: listening, and its worker started.
nginx_ready() { listening "$1" && [ "$(with_children "$2" | wc -w)" -ge 2 ]; }

http_ok() { curl -sf -o /dev/null "$1"; }

# wait_for PID COMMAND...: waits until the command succeeds, for up to 30 s, while PID lives.
wait_for() {
    local pid="$1"
    shift
    for _ in $(seq 300); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# --- Report --------------------------------------------------------------------------------------

thousands() {
    awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); r = ""
        while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
        print s r }'
}
ms() { awk -v n="$1" 'BEGIN { if (n < 10) printf "%.2f ms", n; else printf "%.1f ms", n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }'; }

# The machine's CPU, memory and OS, one Markdown list item each.
machine_lines() {
    echo "- CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores (online to this process), $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory"
    echo "- OS: $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '"'), kernel $(uname -r)"
}
