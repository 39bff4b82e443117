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

source "$(dirname "$0")/bench-lib.sh"
IDLE_SECS=${IDLE_SECS:-8}
PORT=${PORT:-4110}
OUT=${OUT:-$ROOT/target/idle-mem}
mkdir -p "$OUT"
build_wsload
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($#)) || set -- "$ROOT/target/release/examples/bench_server"

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
        wait_port "$PORT" || true
        sleep 0.5
        read -r opened before during per < <(idle_rss "$WSLOAD" "$pid" "$PORT" "$path" "$IDLE_CONNS" "$IDLE_SECS" "$OUT/client.log")
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "  run $run: $opened conns, VmRSS $before -> $during kB, $per KB/conn" >&2
        echo "$per" >> "$OUT/results.txt"
    done
    echo "$server: $(median < "$OUT/results.txt") KB/conn (median of $RUNS)"
done
