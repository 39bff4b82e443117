#!/usr/bin/env bash
# Our AsyncAPI documents feed other generators: The Codegen Project's CLI (packed for offline
# install in ../shared/tools/codegen, pinned in scripts/codegen-ts/package-lock.json) generates
# a TypeScript client, with message validation on, from the document the chat example prints
# (`chat --asyncapi`); `tsc` compiles it in strict mode; then scripts/codegen-ts/conversation.ts,
# built on that client, holds a conversation with a running chat server on a free loopback
# port (join, message, private message, room info, ping, an error reply, leave), every message
# the server sends validated against the document. Uses the debug build of the chat example
# `cargo test` made (builds it when missing). Fails loudly when a step fails; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/scripts/codegen-ts
OUT=$ROOT/target/codegen-ts
mkdir -p "$OUT"

log() { echo "codegen-ts.sh: $*" >&2; }
fail() {
    log "error: $*"
    exit 1
}

for tool in node npm; do
    command -v "$tool" >/dev/null 2>&1 || fail "\`$tool\` is not installed; this check needs Node.js 20+ and npm"
done
for tarball in the-codegen-project-cli-0.82.1.tgz asyncapi-modelina-6.0.0-next.15.tgz; do
    [[ -f $ROOT/../shared/tools/codegen/$tarball ]] ||
        fail "../shared/tools/codegen/$tarball is missing (The Codegen Project's CLI, packed for offline install)"
done

stamp=$DIR/node_modules/.asena-lock.sha256
want=$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)
if [[ ! -x $DIR/node_modules/.bin/codegen || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    log "installing The Codegen Project's CLI, TypeScript and ws (npm ci) into scripts/codegen-ts/node_modules"
    (cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2) ||
        fail "\`npm ci\` failed in scripts/codegen-ts (is the npm registry reachable?)"
    echo "$want" >"$stamp"
fi

if [[ ! -x target/debug/examples/chat ]]; then
    cargo build --example chat
fi
rm -rf "$DIR/gen" "$DIR/dist"
mkdir -p "$DIR/gen"
target/debug/examples/chat --asyncapi >"$DIR/gen/chat.asyncapi.json"

# The CLI keeps its settings under $HOME and would ask to send telemetry: give it a home of
# its own with telemetry off.
home=$OUT/home
mkdir -p "$home/.the-codegen-project"
echo '{"version":"1.0.0","telemetry":{"enabled":false},"hasShownTelemetryNotice":true}' \
    >"$home/.the-codegen-project/config.json"
(cd "$DIR" && HOME=$home CODEGEN_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 \
    node_modules/.bin/codegen generate codegen.config.mjs >"$OUT/generate.log" 2>&1) || {
    cat "$OUT/generate.log" >&2
    fail "The Codegen Project's CLI could not generate a client from the chat's document (log above)"
}
(cd "$DIR" && node_modules/.bin/tsc -p .) || fail "the generated TypeScript client does not compile (errors above)"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port target/debug/examples/chat >"$OUT/chat.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/chat.log" >&2; fail "the chat exited before listening (log above)"; }
    sleep 0.05
done
timeout --kill-after=5 60 node "$DIR/dist/conversation.js" "ws://127.0.0.1:$port" ||
    fail "the conversation through the generated client failed (chat log: $OUT/chat.log)"
log "ok: a TypeScript client generated from the chat's document talked to the chat"
