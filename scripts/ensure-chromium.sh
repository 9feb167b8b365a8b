#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one).
set -euo pipefail
exec "$(dirname "$0")/ensure-debian-packages.sh" chromium chromium fonts-dejavu-core
