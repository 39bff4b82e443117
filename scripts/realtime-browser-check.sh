#!/usr/bin/env bash
# The realtime page in a real browser across two instances on Redis:
# `scripts/browser.sh realtime` (part of the test command), kept under its old name. Alice in
# two tabs on both instances, bob in a third: presence, a denied room, chat across instances,
# the notification from `emit --user alice` in both of alice's tabs and not bob's; the
# screenshot is target/browser/realtime.png. REALTIME_CHECK_LOCAL=1 checks the page alone: one
# instance, no Redis, no notification.
set -euo pipefail
exec bash "$(dirname "$0")/browser.sh" realtime
