# What the benchmark scripts share, sourced by scripts/bench.sh and scripts/idle-mem.sh: it
# moves to the repository's root ($ROOT) and sets the defaults both read (RUNS 3, IDLE_CONNS
# 10000); then where the shared benchmark sources are ($SHARED, default ../shared/bench) and
# the tools built from them, the wait for a server's port, a process's resident memory, the
# median of a column of numbers, and the idle-memory measurement, so that both scripts measure
# it the same way.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
SHARED=${SHARED:-$ROOT/../shared/bench}
# The C load client, built from $SHARED/wsload.c by build_wsload.
WSLOAD=$ROOT/target/wsload
# Bun, as bench.sh installs it, for $SHARED/server.bun.js.
BUN=$ROOT/target/bunx/node_modules/.bin/bun

# build_wsload: compiles $WSLOAD when it is missing or older than its source.
build_wsload() {
    if [[ ! -x $WSLOAD || $SHARED/wsload.c -nt $WSLOAD ]]; then
        printf 'compiling wsload.c\n' >&2
        gcc -O2 -o "$WSLOAD" "$SHARED/wsload.c"
    fi
}

# wait_port PORT: waits (at most 10 s) until something accepts on 127.0.0.1:PORT; fails
# when nothing does.
wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# rss_kb PID: the process's VmRSS, in kB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# median: the median of the numbers on stdin, one a line; `nan` when there are none.
median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# idle_rss WSLOAD PID PORT PATH CONNS SECS LOG: with the wsload binary WSLOAD, holds CONNS
# idle WebSocket connections to PATH on 127.0.0.1:PORT open for SECS seconds (its output in
# LOG) and prints `opened before during per`: how many it opened, the VmRSS of the server
# PID before and 2 s after they were open (kB), and (during - before) * 1024 / opened / 1000,
# in KB per connection (`nan` when none opened).
idle_rss() {
    local wsload=$1 pid=$2 port=$3 path=$4 conns=$5 secs=$6 log=$7
    local before during opened client _
    before=$(rss_kb "$pid")
    timeout $((secs + 90)) "$wsload" idle "$port" "$conns" -d "$secs" -u "$path" >"$log" 2>&1 &
    client=$!
    # The connect phase, then a moment for the server to settle.
    for _ in $(seq 900); do grep -q '^connected' "$log" && break; sleep 0.1; done
    sleep 2
    during=$(rss_kb "$pid")
    opened=$(grep -o '^connected [0-9]*' "$log" | awk '{print $2}')
    wait "$client" || true
    opened=${opened:-0}
    echo "$opened $before $during $(awk -v a="$before" -v b="$during" -v n="$opened" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1024 / n / 1000; else print "nan" }')"
}
