#!/usr/bin/env bash
# The whole test suite: starts Redis and NATS on loopback when they are not running, then
# runs every unit, integration, trybuild UI and doc test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo test --workspace --all-features "$@"
