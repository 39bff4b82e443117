#!/usr/bin/env bash
# The whole test suite: starts Redis and NATS on loopback when they are not running, then
# runs every unit, integration, trybuild UI and doc test of the workspace, builds a new app
# from the starter in a temporary directory outside the repository and runs its tests, and
# runs the Autobahn|Testsuite fuzzing client (every case, compression included) against the
# echo example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
cargo test --workspace --all-features "$@"
bash scripts/starter-check.sh
bash scripts/autobahn.sh
