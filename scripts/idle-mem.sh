#!/usr/bin/env bash
# Server RSS per idle WebSocket connection, measured exactly like the idle-memory step of
# scripts/bench.sh (fresh server process, VmRSS before and 2 s after IDLE_CONNS idle
# connections are open, (during - before) * 1024 / conns / 1000 KB), RUNS times, median.
#
#   scripts/idle-mem.sh [SERVER...]
#
# A SERVER is the path of a bench_server-compatible binary (serves /bench), or `bun` for
# ../shared/bench/server.bun.js (Bun from target/bunx, as bench.sh installs it). Default:
# target/release/examples/bench_server. Env: RUNS (3), IDLE_CONNS (10000), IDLE_SECS (8),
# PORT (4110), PREFIX (a command prefix for the server, e.g. `env MALLOC_ARENA_MAX=2`).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared/bench}
RUNS=${RUNS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SECS=${IDLE_SECS:-8}
PORT=${PORT:-4110}
OUT=${OUT:-$ROOT/target/idle-mem}
WSLOAD=$ROOT/target/wsload
BUN=$ROOT/target/bunx/node_modules/.bin/bun
mkdir -p "$OUT"
if [[ ! -x $WSLOAD || $SHARED/wsload.c -nt $WSLOAD ]]; then
    gcc -O2 -o "$WSLOAD" "$SHARED/wsload.c"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($#)) || set -- "$ROOT/target/release/examples/bench_server"

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

for server in "$@"; do
    : > "$OUT/results.txt"
    for run in $(seq "$RUNS"); do
        if [[ $server == bun ]]; then
            PORT=$PORT ${PREFIX:-} "$BUN" "$SHARED/server.bun.js" >"$OUT/server.log" 2>&1 &
            path=/
        else
            PORT=$PORT ${PREFIX:-} "$server" >"$OUT/server.log" 2>&1 &
            path=/bench
        fi
        pid=$!
        for _ in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            sleep 0.1
        done
        sleep 0.5
        before=$(rss_kb "$pid")
        timeout $((IDLE_SECS + 90)) "$WSLOAD" idle "$PORT" "$IDLE_CONNS" -d "$IDLE_SECS" -u "$path" >"$OUT/client.log" 2>&1 &
        client=$!
        for _ in $(seq 900); do grep -q '^connected' "$OUT/client.log" && break; sleep 0.1; done
        sleep 2
        during=$(rss_kb "$pid")
        opened=$(grep -o '^connected [0-9]*' "$OUT/client.log" | awk '{print $2}')
        wait "$client" || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        per=$(awk -v a="$before" -v b="$during" -v n="${opened:-0}" 'BEGIN { if (n > 0) printf "%.2f", (b - a) * 1024 / n / 1000; else print "nan" }')
        echo "  run $run: ${opened:-0} conns, VmRSS $before -> $during kB, $per KB/conn" >&2
        echo "$per" >> "$OUT/results.txt"
    done
    echo "$server: $(median < "$OUT/results.txt") KB/conn (median of $RUNS)"
done
