#!/usr/bin/env bash
# The whole test suite: starts Redis and NATS on loopback when they are not running, then
# runs every unit, integration, trybuild UI and doc test of the workspace, then builds a new
# app from the starter in a temporary directory outside the repository and runs its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo test --workspace --all-features "$@"
# bash scripts/autobahn.sh  # enabled once permessage-deflate lands
bash scripts/starter-check.sh
