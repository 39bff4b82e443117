#!/usr/bin/env bash
# Fan-out benchmark: Bun's native publish vs. the framework (examples/bench_server) vs. bare
# axum with batched writes (examples/bench_bare), interleaved, median of $RUNS runs each.
#
#   scripts/bench.sh            # full run (about 13 minutes on 2 cores)
#   RUNS=1 DUR=3 scripts/bench.sh   # quick look
#   BARE_BIN=/path/to/other/bench_server scripts/bench.sh   # A/B: another build in the "bare" column
#
# Prints a markdown table: deliveries/s for (C=32,S=32,B=100), (C=1000,S=1000,B=1),
# (C=1000,S=100,B=1) measured with the C client (../shared/bench/wsload.c); for the framework
# alone, deliveries/s and bytes on the wire per delivery at (C=1000,S=100) with 1 KiB
# messages (ZSIZE), uncompressed and with permessage-deflate, measured with the Rust loadgen
# (which inflates what it receives; wsload cannot); for the framework alone, deliveries/s of
# its raw service (/bench) and its typed one (/bench-typed: receives BenchIn, sends BenchOut)
# under the same JSON load (loadgen --json; 37-byte and 1 KiB messages, C=1000 S=100 and
# C=32 S=32 B=100), and how many times the typed server serialized a BenchOut per room
# message it received (its own count); p50/p99 delivery latency at 1,000
# connections, at 50% of each server's own peak, at one light load and at Bun's 50% load
# (every server at the same messages/s), measured with the Rust
# loadgen (examples/loadgen) with server and client pinned to a core each; the kernel's floor
# for one fan-out; server RSS per idle connection at 10,000 connections.
# Only 127.0.0.1 is targeted; every step is bounded in time; servers are stopped by PID.
# Never run from CI (it is a benchmark); CI only compiles the examples.
#
#   scripts/bench.sh history        # the cost of history on fan-out (about 2 minutes)
#   scripts/bench.sh adversarial    # worst-case inputs (about 3 minutes)
#
# Sends 64 KiB, 256 KiB and 1 MiB worst-case inputs of each kind (examples/adversary: invalid
# typed JSON, a managed join with many rooms, a compression bomb, 1-byte fragments, huge
# query strings and headers) to the example that serves them (chat, realtime, echo), a fresh
# server process per input, and prints per input the server's time to answer (median of
# ADV_REPEAT tries) and its peak memory (VmHWM) before and after. ADV_BIN_DIR=/path/to/
# release/examples measures other builds of the servers (e.g. an older commit's). Each server
# runs with its address space capped at ADV_MEM_KB (default 4 GiB).
#
#   scripts/bench.sh acks           # ack round trips at 1,000 sockets (about 1 minute)
#
# Measures the acknowledgement round trip on the channel protocol with ACK_CONNS sockets
# (default 1,000) to bench_server's /bench-ack, server on CPU 0 and loadgen on CPU 1: the
# server asking (SocketRef::request; the time from its request to the client's reply, on the
# server's clock) and the client asking (its `{"$req":..}` to the service's Answer, timed by
# the client), each with every socket asking at once (one request in flight per socket) and
# one request at a time over all of them; prints p50/p99/max and requests/s, median of RUNS
# runs of DUR seconds (the first second a warm-up), and a SUMMARY line.
set -euo pipefail

source "$(dirname "$0")/bench-lib.sh"
DUR=${DUR:-5}
IDLE_SECS=${IDLE_SECS:-10}
OUT=${OUT:-$ROOT/target/bench}
BUN_PORT=${BUN_PORT:-4101}
FW_PORT=${FW_PORT:-4102}
BARE_PORT=${BARE_PORT:-4103}
ZSIZE=${ZSIZE:-1024}
mkdir -p "$OUT"

log() { printf '[bench] %s\n' "$*" >&2; }

# ---- adversarial mode --------------------------------------------------------------------
if [[ ${1:-} == adversarial ]]; then
    ADV_PORT=${ADV_PORT:-4104}
    ADV_REPEAT=${ADV_REPEAT:-3}
    ADV_MEM_KB=${ADV_MEM_KB:-4194304}
    ADV_SIZES=${ADV_SIZES:-"65536 262144 1048576"}
    ADV_KINDS=${ADV_KINDS:-"typed-matches typed-deep typed-long-tag join-rooms deflate-bomb fragments query header headers-many"}
    log "building release examples (adversary, chat, realtime, echo)"
    timeout 1800 cargo build --release --quiet --example adversary --example chat --example realtime --example echo
    ADVERSARY=$ROOT/target/release/examples/adversary
    BIN_DIR=${ADV_BIN_DIR:-$ROOT/target/release/examples}
    afield() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }
    server_of() { case $1 in join-rooms) echo realtime ;; fragments) echo echo ;; *) echo chat ;; esac; }
    ADV_PID=
    trap '[[ -n $ADV_PID ]] && { kill "$ADV_PID" 2>/dev/null; wait "$ADV_PID" 2>/dev/null; }; true' EXIT
    declare -A ADV
    for kind in $ADV_KINDS; do
        for size in $ADV_SIZES; do
            server=$(server_of "$kind")
            # Address space capped (ADV_MEM_KB, default 4 GiB): a quadratic build must fail
            # there, not take the machine's memory.
            (ulimit -v "$ADV_MEM_KB"; exec env -u ASENA_TRANSPORT PORT=$ADV_PORT "$BIN_DIR/$server") >"$OUT/adv-$kind-$size.log" 2>&1 &
            ADV_PID=$!
            wait_port "$ADV_PORT" || true
            sleep 0.3 # let the server finish starting before its memory is read
            line=$(timeout 400 "$ADVERSARY" "$kind" "$ADV_PORT" "$size" --pid "$ADV_PID" --repeat "$ADV_REPEAT" 2>&1 | tail -1 || true)
            kill "$ADV_PID" 2>/dev/null || true
            wait "$ADV_PID" 2>/dev/null || true
            ADV_PID=
            log "$server: $line"
            ADV[$kind,$size,ms]=$(afield median_ms <<<"$line" || true)
            before=$(afield hwm_before_kb <<<"$line" || true)
            after=$(afield hwm_after_kb <<<"$line" || true)
            ADV[$kind,$size,mem]=$(awk -v a="${after:-}" -v b="${before:-}" 'BEGIN { if (a == "" || b == "") print "?"; else if (a == 0) print "died"; else printf "%.1f", (a - b) / 1024 }')
            ADV[$kind,$size,answer]=$(grep -o 'answer="[^"]*"' <<<"$line" | cut -d'"' -f2 | cut -c1-40 || true)
        done
    done
    read -r s1 s2 s3 <<<"$ADV_SIZES"
    r() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.1f×", a / b }'; }
    ms() { awk -v v="$1" 'BEGIN { if (v == "") print "timeout"; else printf "%.2f ms", v }'; }
    echo
    echo "## Adversarial inputs ($(nproc) cores; time to the server's answer, median of $ADV_REPEAT; peak memory raise = VmHWM after − before, MB)"
    echo
    echo "| input | server | answer (largest) | $s1 B | $s2 B | $s3 B | ×4 size → time | ×16 size → time | peak raise $s1 / $s2 / $s3 |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for kind in $ADV_KINDS; do
        echo "| $kind | $(server_of "$kind") | ${ADV[$kind,$s3,answer]:-?} | $(ms "${ADV[$kind,$s1,ms]:-}") | $(ms "${ADV[$kind,$s2,ms]:-}") | $(ms "${ADV[$kind,$s3,ms]:-}") | $(r "${ADV[$kind,$s2,ms]:-}" "${ADV[$kind,$s1,ms]:-}") / $(r "${ADV[$kind,$s3,ms]:-}" "${ADV[$kind,$s2,ms]:-}") | $(r "${ADV[$kind,$s3,ms]:-}" "${ADV[$kind,$s1,ms]:-}") | ${ADV[$kind,$s1,mem]} / ${ADV[$kind,$s2,mem]} / ${ADV[$kind,$s3,mem]} |"
    done
    echo
    echo "Servers: $BIN_DIR. Raw logs: $OUT/adv-*.log"
    exit 0
fi

# ---- history mode -------------------------------------------------------------------------
# The cost of history on fan-out: bench_server without and with BENCH_HISTORY (every room
# keeps history in the Redis at HISTORY_REDIS: each message appended, numbered and wrapped),
# the Rust loadgen's JSON chat (C=1000 S=100, and C=32 S=32 B=100), interleaved, median of
# $RUNS runs; server on core 0, client on core 1.
if [[ ${1:-} == history ]]; then
    HISTORY_REDIS=${HISTORY_REDIS:-redis://127.0.0.1:6379}
    H_PORT=${H_PORT:-4105}
    log "building release examples (bench_server, loadgen)"
    timeout 1200 cargo build --release --quiet --example bench_server --example loadgen
    FW_BIN=${FW_BIN:-$ROOT/target/release/examples/bench_server}
    LOADGEN=$ROOT/target/release/examples/loadgen
    H_PID=
    trap '[[ -n $H_PID ]] && { kill "$H_PID" 2>/dev/null; wait "$H_PID" 2>/dev/null; }; true' EXIT
    hfield() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }
    rm -f "$OUT"/history-*.txt
    H_CONFIGS=("1000 100 1 4" "32 32 100 2")
    for run in $(seq "$RUNS"); do
        for mode in plain history; do
            url=
            [[ $mode == history ]] && url=$HISTORY_REDIS
            BENCH_HISTORY=$url PORT=$H_PORT taskset -c 0 "$FW_BIN" >"$OUT/history-$mode.log" 2>&1 &
            H_PID=$!
            wait_port "$H_PORT" || { log "bench_server did not start"; cat "$OUT/history-$mode.log" >&2; exit 1; }
            for cfg in "${H_CONFIGS[@]}"; do
                read -r c sn b w <<<"$cfg"
                line=$(timeout $(( DUR + 90 )) taskset -c 1 "$LOADGEN" chat "$H_PORT" "$c" -s "$sn" -b "$b" -w "$w" --json \
                    -d "$DUR" -u /bench 2>"$OUT/history-$mode-$c-$run.err" | grep '^SUMMARY' || true)
                v=$(hfield mean_deliveries/s <<<"$line" || true)
                log "history: C=$c S=$sn B=$b $mode run $run: ${v:-FAILED} deliveries/s"
                echo "${v:-0}" >> "$OUT/history-$mode-$c.txt"
            done
            kill "$H_PID" 2>/dev/null || true
            wait "$H_PID" 2>/dev/null || true
            H_PID=
        done
    done
    echo
    echo "## The cost of history on fan-out ($(nproc) cores; JSON messages; deliveries/s, median of $RUNS)"
    echo
    echo "| load | without history | with history (Redis) | with / without |"
    echo "|---|---|---|---|"
    for cfg in "${H_CONFIGS[@]}"; do
        read -r c sn b w <<<"$cfg"
        p=$(median < "$OUT/history-plain-$c.txt")
        h=$(median < "$OUT/history-history-$c.txt")
        echo "| C=$c S=$sn B=$b | $(awk -v v="$p" 'BEGIN { printf "%.2f M", v / 1e6 }') | $(awk -v v="$h" 'BEGIN { printf "%.2f M", v / 1e6 }') | $(awk -v a="$h" -v b="$p" 'BEGIN { if (b == 0) print "–"; else printf "%.2f×", a / b }') |"
    done
    rm -f "$OUT"/history-*.txt
    exit 0
fi

# ---- acks mode ---------------------------------------------------------------------------
if [[ ${1:-} == acks ]]; then
    ACK_PORT=${ACK_PORT:-4105}
    ACK_CONNS=${ACK_CONNS:-1000}
    log "building release examples (bench_server, loadgen)"
    timeout 1200 cargo build --release --quiet --example bench_server --example loadgen
    LOADGEN=$ROOT/target/release/examples/loadgen
    SRV_CPU=() CLI_CPU=()
    if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
        SRV_CPU=(taskset -c 0) CLI_CPU=(taskset -c 1)
    else
        log "taskset or a second core is missing: runs unpinned"
    fi
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    PORT=$ACK_PORT "${SRV_CPU[@]}" "$ROOT/target/release/examples/bench_server" >"$OUT/acks-server.log" 2>&1 &
    ACK_PID=$!
    trap 'kill "$ACK_PID" 2>/dev/null; wait "$ACK_PID" 2>/dev/null; true' EXIT
    wait_port "$ACK_PORT" || { log "bench_server did not start"; cat "$OUT/acks-server.log" >&2; exit 1; }
    afield() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }
    # CASE: who asks, and how many requests are in flight.
    ACK_CASES=("server $ACK_CONNS" "server 1" "client $ACK_CONNS" "client 1")
    declare -A ACK
    for case in "${ACK_CASES[@]}"; do
        read -r from inflight <<<"$case"
        for k in rtt_p50_us rtt_p99_us rtt_max_us mean_requests errors; do : > "$OUT/acks-$from-$inflight-$k.txt"; done
    done
    for run in $(seq "$RUNS"); do
        for case in "${ACK_CASES[@]}"; do
            read -r from inflight <<<"$case"
            log_file=$OUT/acks-$from-$inflight-$run.log
            timeout $(( DUR + 90 )) "${CLI_CPU[@]}" "$LOADGEN" acks "$ACK_PORT" "$ACK_CONNS" \
                -u /bench-ack -d "$DUR" --from "$from" --in-flight "$inflight" >"$log_file" 2>&1 || true
            line=$(grep '^SUMMARY' "$log_file" || true)
            log "acks from $from, $inflight in flight, run $run: ${line:-FAILED}"
            for k in rtt_p50_us rtt_p99_us rtt_max_us mean_requests/s errors; do
                echo "$(afield "$k" <<<"$line" || true)" >> "$OUT/acks-$from-$inflight-${k%%/*}.txt"
            done
        done
    done
    for case in "${ACK_CASES[@]}"; do
        read -r from inflight <<<"$case"
        for k in rtt_p50_us rtt_p99_us rtt_max_us mean_requests errors; do
            ACK[$from,$inflight,$k]=$({ grep -v '^$' "$OUT/acks-$from-$inflight-$k.txt" || true; } | median)
        done
    done
    ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.3f ms", v / 1000 }'; }
    echo
    echo "## Ack round trip, $ACK_CONNS sockets ($(nproc) cores; server on CPU 0, loadgen on CPU 1; median of $RUNS runs, ${DUR} s each)"
    echo
    echo "| who asks | in flight | p50 | p99 | max | requests/s | errors |"
    echo "|---|---|---|---|---|---|---|"
    for case in "${ACK_CASES[@]}"; do
        read -r from inflight <<<"$case"
        label=$([[ $from == server ]] && echo "server (SocketRef::request, server's clock)" || echo "client (Answer, client's clock)")
        echo "| $label | $inflight | $(ms "${ACK[$from,$inflight,rtt_p50_us]}") | $(ms "${ACK[$from,$inflight,rtt_p99_us]}") | $(ms "${ACK[$from,$inflight,rtt_max_us]}") | ${ACK[$from,$inflight,mean_requests]} | ${ACK[$from,$inflight,errors]} |"
    done
    echo
    echo "SUMMARY acks conns=$ACK_CONNS server_all_p50_us=${ACK[server,$ACK_CONNS,rtt_p50_us]}" \
        "server_all_p99_us=${ACK[server,$ACK_CONNS,rtt_p99_us]} server_one_p50_us=${ACK[server,1,rtt_p50_us]}" \
        "server_one_p99_us=${ACK[server,1,rtt_p99_us]} client_all_p50_us=${ACK[client,$ACK_CONNS,rtt_p50_us]}" \
        "client_all_p99_us=${ACK[client,$ACK_CONNS,rtt_p99_us]} client_one_p50_us=${ACK[client,1,rtt_p50_us]}" \
        "client_one_p99_us=${ACK[client,1,rtt_p99_us]}"
    echo "Raw logs: $OUT/acks-*"
    exit 0
fi

# ---- build -------------------------------------------------------------------------------
log "building release examples"
timeout 1200 cargo build --release --quiet --example bench_server --example bench_bare --example loadgen
FW_BIN=${FW_BIN:-$ROOT/target/release/examples/bench_server}
BARE_BIN=${BARE_BIN:-$ROOT/target/release/examples/bench_bare}
LOADGEN=$ROOT/target/release/examples/loadgen
build_wsload
if [[ ! -x $BUN ]]; then
    log "installing Bun from npm into target/bunx"
    mkdir -p "$ROOT/target/bunx"
    (cd "$ROOT/target/bunx" && npm init -y >/dev/null && timeout 300 npm install --silent bun)
fi
HAVE_BUN=1
if ! "$BUN" --version >/dev/null 2>&1; then
    log "Bun unavailable; its column stays empty"
    HAVE_BUN=0
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < IDLE_CONNS + 100 )); then
    log "ulimit -n $(ulimit -n) is too low for $IDLE_CONNS connections; using $(( $(ulimit -n) - 200 ))"
    IDLE_CONNS=$(( $(ulimit -n) - 200 ))
fi

# ---- servers -----------------------------------------------------------------------------
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# start_server NAME PORT [PREFIX...] -> sets SERVER_PID; PREFIX (e.g. taskset -c 0) runs the
# server
start_server() {
    local name=$1 port=$2
    shift 2
    case $name in
        bun) PORT=$port "$@" "$BUN" "$SHARED/server.bun.js" >"$OUT/$name.log" 2>&1 & ;;
        framework) PORT=$port "$@" "$FW_BIN" >"$OUT/$name.log" 2>&1 & ;;
        bare) PORT=$port "$@" "$BARE_BIN" >"$OUT/$name.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_port "$port" && return 0
    log "$name did not start on port $port"; cat "$OUT/$name.log" >&2; exit 1
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

port_of() { case $1 in bun) echo "$BUN_PORT" ;; framework) echo "$FW_PORT" ;; bare) echo "$BARE_PORT" ;; esac; }
path_of() { case $1 in bun) echo "/" ;; *) echo "/bench" ;; esac; }
field() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }

SERVERS=(framework bare)
(( HAVE_BUN )) && SERVERS=(bun framework bare)

# ---- idle memory: a fresh process per measurement ------------------------------------------
declare -A RESULT
for name in "${SERVERS[@]}"; do : > "$OUT/idle-$name.txt"; done
for run in $(seq "$RUNS"); do
    for name in "${SERVERS[@]}"; do
        port=$(port_of "$name")
        start_server "$name" "$port"
        pid=$SERVER_PID
        sleep 0.5
        read -r opened before during per < <(idle_rss "$WSLOAD" "$pid" "$port" "$(path_of "$name")" "$IDLE_CONNS" "$IDLE_SECS" "$OUT/idle-$name-$run.log")
        stop_server "$pid"
        log "idle $name run $run: $opened conns, VmRSS ${before} -> ${during} kB, ${per} KB/conn"
        echo "$per" >> "$OUT/idle-$name.txt"
    done
done
for name in "${SERVERS[@]}"; do RESULT[idle,$name]=$(median < "$OUT/idle-$name.txt"); done

# ---- throughput (C client) and latency (Rust loadgen) -------------------------------------
declare -A SPID
for name in "${SERVERS[@]}"; do
    start_server "$name" "$(port_of "$name")"
    SPID[$name]=$SERVER_PID
done

CONFIGS=("32 32 100 2" "1000 1000 1 2" "1000 100 1 4")
for cfg in "${CONFIGS[@]}"; do
    read -r c s b w <<<"$cfg"
    for name in "${SERVERS[@]}"; do : > "$OUT/chat-$c-$s-$b-$name.txt"; done
    for run in $(seq "$RUNS"); do
        for name in "${SERVERS[@]}"; do
            line=$(timeout $(( DUR + 90 )) "$WSLOAD" chat "$(port_of "$name")" "$c" -d "$DUR" -b "$b" -s "$s" -w "$w" -u "$(path_of "$name")" | grep '^SUMMARY' || true)
            v=$(field mean_deliveries/s <<<"$line")
            log "C=$c S=$s B=$b $name run $run: ${v:-STALL} deliveries/s"
            echo "${v:-0}" >> "$OUT/chat-$c-$s-$b-$name.txt"
        done
    done
    for name in "${SERVERS[@]}"; do RESULT[chat$c-$s-$b,$name]=$(median < "$OUT/chat-$c-$s-$b-$name.txt"); done
done

# permessage-deflate, framework only: C=1000 S=100, $ZSIZE-byte JSON-like messages, closed
# loop, with the Rust loadgen both times (it inflates every compressed delivery, in the
# client, on the same two cores). bench_server compresses each room message of 256 bytes or
# more once and sends that frame to every compressing member. (Bun has perMessageDeflate
# too, but the shared server.bun.js turns it off; bench_bare does not negotiate it.)
for mode in plain deflate; do : > "$OUT/z-$mode.txt"; : > "$OUT/zwire-$mode.txt"; done
for run in $(seq "$RUNS"); do
    for mode in plain deflate; do
        flags=()
        [[ $mode == deflate ]] && flags=(--deflate)
        timeout $(( DUR + 90 )) "$LOADGEN" chat "$FW_PORT" 1000 -s 100 -w 4 --size "$ZSIZE" "${flags[@]}" \
            -d "$DUR" -u /bench >"$OUT/z-$mode-$run.log" 2>&1 || true
        line=$(grep '^SUMMARY' "$OUT/z-$mode-$run.log" || true)
        # (no SUMMARY when loadgen fails, e.g. the server refused permessage-deflate)
        v=$(field mean_deliveries/s <<<"$line" || true)
        wire=$(field wire_bytes_per_msg <<<"$line" || true)
        errors=$(field inflate_errors <<<"$line" || true)
        log "C=1000 S=100 ${ZSIZE} B $mode framework run $run: ${v:-FAILED} deliveries/s," \
            "${wire:-?} B/delivery, ${errors:-?} inflate errors"
        [[ -n $line && ${errors:-0} == 0 ]] || tail -3 "$OUT/z-$mode-$run.log" >&2
        echo "${v:-0}" >> "$OUT/z-$mode.txt"
        echo "${wire:-nan}" >> "$OUT/zwire-$mode.txt"
    done
done
for mode in plain deflate; do
    RESULT[z-$mode,framework]=$(median < "$OUT/z-$mode.txt")
    RESULT[zwire-$mode,framework]=$(median < "$OUT/zwire-$mode.txt")
done

# Typed channels, framework only: the same JSON messages (loadgen --json) to the raw service
# (/bench: each message goes out unchanged) and to the typed one (/bench-typed: each message
# is decoded and validated into a BenchIn, and a BenchOut with the same fields, hence the same
# bytes, goes to the room: serialized once however many sockets receive it). Same process,
# interleaved. The server counts typed messages received and BenchOuts serialized, and logs
# both (`typed: received=N serialized=M`).
TYPED_CONFIGS=("1000 100 1 4 0" "1000 100 1 4 1024" "32 32 100 2 0")
for cfg in "${TYPED_CONFIGS[@]}"; do
    read -r c s b w size <<<"$cfg"
    for variant in raw typed; do : > "$OUT/typed-$c-$s-$b-$size-$variant.txt"; done
    sizeflag=()
    (( size > 0 )) && sizeflag=(--size "$size")
    for run in $(seq "$RUNS"); do
        for variant in raw typed; do
            path=/bench
            [[ $variant == typed ]] && path=/bench-typed
            line=$(timeout $(( DUR + 90 )) "$LOADGEN" chat "$FW_PORT" "$c" -s "$s" -b "$b" -w "$w" --json "${sizeflag[@]}" \
                -d "$DUR" -u "$path" | grep '^SUMMARY' || true)
            v=$(field mean_deliveries/s <<<"$line" || true)
            msize=$(field size <<<"$line" || true)
            log "C=$c S=$s B=$b ${msize:-?}-byte JSON $variant framework run $run: ${v:-STALL} deliveries/s"
            echo "${v:-0}" >> "$OUT/typed-$c-$s-$b-$size-$variant.txt"
        done
    done
    for variant in raw typed; do
        RESULT[typed$c-$s-$b-$size,$variant]=$(median < "$OUT/typed-$c-$s-$b-$size-$variant.txt")
    done
done
sleep 1.5 # the server logs its typed counts once a second
counts=$(grep '^typed: ' "$OUT/framework.log" | tail -1 || true)
TYPED_RECEIVED=$(field received <<<"$counts" || true)
TYPED_SERIALIZED=$(field serialized <<<"$counts" || true)
log "typed server: ${TYPED_RECEIVED:-?} messages received, ${TYPED_SERIALIZED:-?} BenchOuts serialized"

for name in "${SERVERS[@]}"; do stop_server "${SPID[$name]}"; done

# ---- latency: server on CPU 0, load client on CPU 1 ---------------------------------------
# On 2 cores an unpinned load client and a multi-threaded server take turns on the same cores,
# and the scheduler's time slices (milliseconds) end up in the latencies. Pinning gives each its
# own core (tokio then starts one worker). The peak is measured in the same pinning (C client,
# C=1000 S=1000 B=1), and the offered load is 50% of it: messages/s = peak / 2 / 1000, every
# client sending, each message delivered to all 1,000. A second run offers every server the
# same light load (LIGHT_RATE messages/s), and a third every server Bun's 50% load (equal load:
# the framework's p99 against Bun's at the same messages/s).
LIGHT_RATE=${LIGHT_RATE:-250}
SRV_CPU=() CLI_CPU=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    SRV_CPU=(taskset -c 0) CLI_CPU=(taskset -c 1)
else
    log "taskset or a second core is missing: latency runs unpinned"
fi
for name in "${SERVERS[@]}"; do
    start_server "$name" "$(port_of "$name")" "${SRV_CPU[@]}"
    : > "$OUT/pinned-peak-$name.txt"
done
for run in $(seq "$RUNS"); do
    for name in "${SERVERS[@]}"; do
        line=$(timeout $(( DUR + 90 )) "${CLI_CPU[@]}" "$WSLOAD" chat "$(port_of "$name")" 1000 -d "$DUR" -b 1 -s 1000 -w 2 -u "$(path_of "$name")" | grep '^SUMMARY' || true)
        v=$(field mean_deliveries/s <<<"$line")
        log "pinned peak $name run $run: ${v:-STALL} deliveries/s"
        echo "${v:-0}" >> "$OUT/pinned-peak-$name.txt"
    done
done
for name in "${SERVERS[@]}"; do
    RESULT[pinnedpeak,$name]=$(median < "$OUT/pinned-peak-$name.txt")
    RESULT[rate,$name]=$(awk -v p="${RESULT[pinnedpeak,$name]}" 'BEGIN { r = p / 2 / 1000; if (r < 1) r = 1; printf "%.0f", r }')
    for k in lat50 lat99 light50 light99 eq50 eq99; do : > "$OUT/$k-$name.txt"; done
done
# latency NAME RATE P50FILE P99FILE
latency() {
    local name=$1 rate=$2 line p50 p99
    line=$(timeout $(( DUR + 90 )) "${CLI_CPU[@]}" "$LOADGEN" chat "$(port_of "$name")" 1000 -s 1000 -r "$rate" -d "$DUR" -u "$(path_of "$name")" | grep '^SUMMARY' || true)
    p50=$(field lat_p50_us <<<"$line"); p99=$(field lat_p99_us <<<"$line")
    log "latency $name at $rate msgs/s: p50=${p50:-?} us p99=${p99:-?} us"
    echo "${p50:-nan}" >> "$OUT/$3-$name.txt"
    echo "${p99:-nan}" >> "$OUT/$4-$name.txt"
}
for run in $(seq "$RUNS"); do
    for name in "${SERVERS[@]}"; do
        latency "$name" "${RESULT[rate,$name]}" lat50 lat99
        latency "$name" "$LIGHT_RATE" light50 light99
        if (( HAVE_BUN )); then latency "$name" "${RESULT[rate,bun]}" eq50 eq99; fi
    done
done
for name in "${SERVERS[@]}"; do
    for k in lat50 lat99 light50 light99 eq50 eq99; do RESULT[$k,$name]=$(median < "$OUT/$k-$name.txt"); done
done

# ---- the kernel's floor: one small write to each of 1,000 loopback sockets, one core -------
: > "$OUT/floor.txt"
for run in $(seq "$RUNS"); do
    v=$("${SRV_CPU[@]}" "$LOADGEN" floor 1000 | grep -o 'median_round_us=[0-9.]*' | cut -d= -f2)
    log "floor run $run: ${v:-?} us per 1,000 writes"
    echo "${v:-nan}" >> "$OUT/floor.txt"
done
FLOOR=$(median < "$OUT/floor.txt")

# ---- report -------------------------------------------------------------------------------
fmt_m() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.2f M", v / 1e6 }'; }
fmt_ms() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.2f ms", v / 1000 }'; }
fmt_b() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.0f B", v }'; }
fmt_kb() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.1f KB", v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "nan" || b == "nan" || b == 0) print "–"; else printf "%.2f×", a / b }'; }
get() { echo "${RESULT[$1,$2]:-nan}"; }

row() { # label key formatter
    local label=$1 key=$2 f=$3
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" \
        "$($f "$(get "$key" bun)")" "$($f "$(get "$key" framework)")" "$($f "$(get "$key" bare)")" \
        "$(ratio "$(get "$key" framework)" "$(get "$key" bare)")" \
        "$(ratio "$(get "$key" framework)" "$(get "$key" bun)")"
}

echo
echo "## Fan-out benchmark ($(nproc) cores, 16-byte messages unless a row says otherwise, median of $RUNS runs, ${DUR} s each)"
echo
echo "| metric | Bun native publish | framework (bench_server) | bare axum, batched (bench_bare) | framework / bare | framework / Bun |"
echo "|---|---|---|---|---|---|"
row "deliveries/s C=32 S=32 B=100" chat32-32-100 fmt_m
row "deliveries/s C=1000 S=1000 B=1" chat1000-1000-1 fmt_m
row "deliveries/s C=1000 S=100 B=1" chat1000-100-1 fmt_m
ZLABEL="${ZSIZE}-byte"
(( ZSIZE == 1024 )) && ZLABEL="1 KiB"
row "deliveries/s C=1000 S=100, $ZLABEL messages, uncompressed (loadgen)" z-plain fmt_m
row "deliveries/s C=1000 S=100, $ZLABEL messages, permessage-deflate (loadgen)" z-deflate fmt_m
row "bytes on the wire per delivery, $ZLABEL messages, uncompressed" zwire-plain fmt_b
row "bytes on the wire per delivery, $ZLABEL messages, permessage-deflate" zwire-deflate fmt_b
row "deliveries/s C=1000 S=1000 B=1, server pinned to 1 core" pinnedpeak fmt_m
row "latency p50, 1,000 conns, 50% of pinned peak" lat50 fmt_ms
row "latency p99, 1,000 conns, 50% of pinned peak" lat99 fmt_ms
row "latency p50, 1,000 conns, ${LIGHT_RATE} msgs/s" light50 fmt_ms
row "latency p99, 1,000 conns, ${LIGHT_RATE} msgs/s" light99 fmt_ms
row "latency p50, 1,000 conns, Bun's 50% load ($(get rate bun) msgs/s)" eq50 fmt_ms
row "latency p99, 1,000 conns, Bun's 50% load ($(get rate bun) msgs/s)" eq99 fmt_ms
row "RSS per idle connection (${IDLE_CONNS} conns)" idle fmt_kb
echo
echo "Offered load at 50% of the pinned peak (messages/s from 1,000 senders, each delivered to" \
    "1,000 clients): Bun $(get rate bun), framework $(get rate framework), bare $(get rate bare)."
echo "Latency runs: server on CPU 0, load client on CPU 1."
echo "The $ZLABEL rows are the framework's alone, measured with the Rust loadgen (not wsload, as" \
    "the other throughput rows are), which inflates every compressed delivery on the same cores;" \
    "bytes on the wire are whole WebSocket frames, header included."
echo "Kernel floor on this machine: one 24-byte write to each of 1,000 loopback sockets takes" \
    "$(fmt_ms "$FLOOR") on one core (loadgen floor 1000), so no server on one core delivers a" \
    "message to the last of 1,000 sockets sooner."
echo "Ratios for latency and memory are framework / other (lower is better there)."
echo
echo "## Typed channels: the framework's raw service (/bench) and its typed one (/bench-typed), same JSON load (loadgen --json), same process, interleaved"
echo
echo "| metric | raw (\`/bench\`) | typed (\`/bench-typed\`) | typed / raw |"
echo "|---|---|---|---|"
trow() { # label key
    printf '| %s | %s | %s | %s |\n' "$1" "$(fmt_m "$(get "$2" raw)")" "$(fmt_m "$(get "$2" typed)")" \
        "$(ratio "$(get "$2" typed)" "$(get "$2" raw)")"
}
trow "deliveries/s C=1000 S=100 B=1, 37-byte JSON messages" typed1000-100-1-0
trow "deliveries/s C=1000 S=100 B=1, 1 KiB JSON messages" typed1000-100-1-1024
trow "deliveries/s C=32 S=32 B=100, 37-byte JSON messages" typed32-32-100-0
echo
echo "The typed server serialized ${TYPED_SERIALIZED:-?} BenchOuts for the ${TYPED_RECEIVED:-?} messages it" \
    "received ($(awk -v a="${TYPED_SERIALIZED:-}" -v b="${TYPED_RECEIVED:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "?"; else printf "%.3f", a / b }')" \
    "per room message), each message going to every member of the room (1,000 or 32 sockets)."
echo "Raw logs: $OUT"
