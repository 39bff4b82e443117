#!/usr/bin/env bash
# Checks the starter as a user meets it: makes an app with new-app.sh in a fresh directory
# outside the repo and runs its tests. The build goes to target/starter, so reruns are quick.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "starter-check: FAILED: $*" >&2
  exit 1
}

bash "$REPO/scripts/new-app.sh" "$tmp/starter-app" >/dev/null || fail "new-app.sh could not create an app"
cd "$tmp/starter-app"
CARGO_TARGET_DIR="$REPO/target/starter" cargo test \
  || fail "cargo test in an app made from templates/app (output above)"
echo "starter-check: ok"
