#!/usr/bin/env bash
# The README's picture: the report's first screen, rendered offline by headless Chromium.
# Remake it whenever the report changes:  scripts/first-screen.sh reports/default.html
# (Debian's chromium; networking is off, so the picture also shows the report opens offline).
set -euo pipefail
report="${1:-reports/default.html}"
out="${2:-docs/first-screen.png}"
[[ -f "$report" ]] || { echo "first-screen: no report at $report (run make demo first)" >&2; exit 2; }
command -v chromium >/dev/null || { echo "first-screen: chromium is missing (apt-get install chromium)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1200,1100 \
  --virtual-time-budget=20000 --screenshot="$out" "file://$(realpath "$report")" 2>/dev/null
echo "$out"
