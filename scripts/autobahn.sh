#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (wstest -m fuzzingclient) against the echo
# example and fails when any case is not OK.
#
#   bash scripts/autobahn.sh                    # every case, 12.* and 13.* included
#   CASES='1.*,2.*' bash scripts/autobahn.sh    # a subset (comma-separated patterns)
#
# 1. The client: autobahntestsuite runs on Python 2.7 only. A virtualenv is made once from
#    pyenv's 2.7.18 in target/autobahn/venv and filled from scripts/autobahn-requirements.txt
#    (pip runs again when that file changes). PYTHON2=/path/to/python2.7 overrides pyenv.
#    Without Python 2.7 or when pip fails, the script exits non-zero; it never skips.
# 2. The server: `cargo build --release --example echo`, started on a free loopback port
#    and stopped by its PID on exit (AUTOBAHN_PROFILE=debug for a debug build). Its log is
#    target/autobahn/echo.log.
# 3. The run: a fuzzingclient spec in target/autobahn/spec.json, the report in
#    target/autobahn/reports (index.html to browse, index.json read by
#    scripts/autobahn-check.py), bounded by AUTOBAHN_TIMEOUT seconds (default 1800).
# 4. The verdict: scripts/autobahn-check.py prints a summary and every case that is not OK,
#    and fails unless each case's behavior and close behavior are OK or INFORMATIONAL.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$(pwd)
WORK="$ROOT/target/autobahn"
VENV="$WORK/venv"
REQUIREMENTS="$ROOT/scripts/autobahn-requirements.txt"
PYTHON2_VERSION=2.7.18
# virtualenv 16.7 is the last one that runs on Python 2.7 without further packages; it
# brings pip 20.3.4, setuptools 44.1.1 and wheel, the last releases for Python 2.
VIRTUALENV_PIN="virtualenv==16.7.12"
PROFILE=${AUTOBAHN_PROFILE:-release}
TIMEOUT=${AUTOBAHN_TIMEOUT:-1800}
CASES=${CASES:-*}

log() { echo "autobahn.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

mkdir -p "$WORK"

# --- the client -----------------------------------------------------------------------

find_python2() {
    if [ -n "${PYTHON2:-}" ]; then
        echo "$PYTHON2"
        return
    fi
    local root=""
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
    elif [ -n "${PYENV_ROOT:-}" ]; then
        root=$PYENV_ROOT
    elif [ -d "$HOME/.pyenv" ]; then
        root="$HOME/.pyenv"
    else
        die "pyenv not found (not on PATH, no \$PYENV_ROOT, no ~/.pyenv); the fuzzing client" \
            "needs Python 2.7: install pyenv and 'pyenv install $PYTHON2_VERSION', or set PYTHON2"
    fi
    local python="$root/versions/$PYTHON2_VERSION/bin/python"
    [ -x "$python" ] || die "no Python $PYTHON2_VERSION under $root/versions (have:" \
        "$(ls "$root/versions" 2>/dev/null | tr '\n' ' ')); run 'pyenv install $PYTHON2_VERSION' or set PYTHON2"
    echo "$python"
}

ensure_client() {
    local want have=""
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    [ -f "$VENV/.requirements.sha256" ] && have=$(cat "$VENV/.requirements.sha256")
    if [ -x "$VENV/bin/wstest" ] && [ "$want" = "$have" ]; then
        return
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        local python2
        python2=$(find_python2)
        "$python2" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null \
            || die "$python2 is not Python 2.7"
        log "creating the Python 2.7 virtualenv $VENV with $python2"
        rm -rf "$VENV" "$WORK/bootstrap"
        "$python2" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
            --target "$WORK/bootstrap" "$VIRTUALENV_PIN" \
            || die "could not install $VIRTUALENV_PIN with $python2 -m pip"
        PYTHONPATH="$WORK/bootstrap" "$python2" -m virtualenv --no-download "$VENV" >&2 \
            || die "could not create the virtualenv $VENV"
    fi
    log "installing the fuzzing client from scripts/autobahn-requirements.txt (log: $WORK/pip.log)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --prefer-binary \
        -r "$REQUIREMENTS" >"$WORK/pip.log" 2>&1; then
        tail -n 30 "$WORK/pip.log" >&2
        die "pip could not install the fuzzing client (see $WORK/pip.log)"
    fi
    [ -x "$VENV/bin/wstest" ] || die "pip ran but $VENV/bin/wstest is missing"
    echo "$want" >"$VENV/.requirements.sha256"
}

ensure_client
# Python 2 packages (cryptography) warn on import; the warnings say nothing about the run.
export PYTHONWARNINGS=ignore

# --- the server -----------------------------------------------------------------------

profile_flag=()
[ "$PROFILE" = release ] && profile_flag=(--release)
[ "$PROFILE" = release ] || [ "$PROFILE" = debug ] || die "AUTOBAHN_PROFILE must be release or debug"
log "building the echo example ($PROFILE)"
cargo build -p asena-examples --example echo "${profile_flag[@]}" >&2
ECHO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/examples/echo"
[ -x "$ECHO_BIN" ] || die "no echo binary at $ECHO_BIN"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

PORT=$PORT "$ECHO_BIN" >"$WORK/echo.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 30))
until port_open "$PORT"; do
    kill -0 "$server_pid" 2>/dev/null || {
        tail -n 20 "$WORK/echo.log" >&2
        server_pid=""
        die "the echo server exited before listening (log: $WORK/echo.log)"
    }
    [ $SECONDS -lt $deadline ] || die "the echo server is not accepting on 127.0.0.1:$PORT after 30 s"
    sleep 0.1
done
log "echo server pid $server_pid on ws://127.0.0.1:$PORT/echo"

# --- the run --------------------------------------------------------------------------

REPORTS="$WORK/reports"
rm -rf "$REPORTS"
cases_json=$(CASES="$CASES" python3 -c '
import json, os
print(json.dumps([c.strip() for c in os.environ["CASES"].split(",") if c.strip()]))')
cat >"$WORK/spec.json" <<EOF
{
    "outdir": "$REPORTS",
    "servers": [{"agent": "asena", "url": "ws://127.0.0.1:$PORT/echo"}],
    "cases": $cases_json,
    "exclude-cases": [],
    "exclude-agent-cases": {}
}
EOF

log "running wstest -m fuzzingclient, cases $cases_json (log: $WORK/wstest.log, at most $TIMEOUT s)"
started=$SECONDS
status=0
(cd "$WORK" && timeout "$TIMEOUT" "$VENV/bin/wstest" -m fuzzingclient -s "$WORK/spec.json") \
    >"$WORK/wstest.log" 2>&1 || status=$?
log "wstest finished in $((SECONDS - started)) s"
if [ $status -ne 0 ]; then
    tail -n 30 "$WORK/wstest.log" >&2
    [ $status -eq 124 ] && die "wstest did not finish within $TIMEOUT s (AUTOBAHN_TIMEOUT)"
    die "wstest exited with status $status (log: $WORK/wstest.log)"
fi
kill -0 "$server_pid" 2>/dev/null || {
    server_pid=""
    die "the echo server died during the run (log: $WORK/echo.log)"
}

# --- the verdict ----------------------------------------------------------------------

python3 scripts/autobahn-check.py "${REPORTS#"$ROOT"/}/index.json"
