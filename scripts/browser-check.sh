#!/usr/bin/env bash
# Manual check of the chat page in a real browser (not part of CI): installs Debian's
# chromium and playwright-core (into target/) when missing, runs the chat example on a free
# loopback port, drives two tabs through join / members / send, and saves a screenshot to
# target/chat.png.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
mkdir -p target/browser
if [ ! -d target/browser/node_modules/playwright-core ]; then
    (cd target/browser && npm init -y >/dev/null && npm install --silent playwright-core@1)
fi
cargo build --quiet --example chat
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port target/debug/examples/chat >target/browser/chat.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
NODE_PATH=target/browser/node_modules timeout 60 node scripts/browser/chat.js "http://127.0.0.1:$port/" target/chat.png
echo "screenshot: target/chat.png"
