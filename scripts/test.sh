#!/usr/bin/env bash
# The whole test suite: starts Redis and NATS on loopback when they are not running,
# installs the official AsyncAPI parser the `asyncapi` tests validate documents with and the
# real Ignis 0.0.7 with Bun that the `interop_ignis` tests run against (scripts/interop.sh), then
# runs every unit, integration, trybuild UI and doc test of the workspace, drives the chat and
# realtime example pages and the chat's inspector in headless Chromium (scripts/browser.sh: installs Debian's chromium
# and playwright-core when missing and reuses the debug build `cargo test` made), builds a new
# app from the starter in a temporary directory outside the repository and runs its tests,
# generates a TypeScript client from the chat's AsyncAPI document with The Codegen Project's CLI
# and holds a conversation with the chat through it (scripts/codegen-ts.sh), and runs the Autobahn|Testsuite fuzzing client (every case, compression included) against the
# echo example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/asyncapi.sh
bash scripts/interop.sh
cargo test --workspace --all-features "$@"
bash scripts/browser.sh
bash scripts/codegen-ts.sh
bash scripts/starter-check.sh
bash scripts/autobahn.sh
