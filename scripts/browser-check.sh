#!/usr/bin/env bash
# The chat page in a real browser: `scripts/browser.sh chat` (part of the test command), kept
# under its old name. Two users join, see each other, chat, see typing and each other leave;
# the screenshot is target/browser/chat.png.
set -euo pipefail
exec bash "$(dirname "$0")/browser.sh" chat
