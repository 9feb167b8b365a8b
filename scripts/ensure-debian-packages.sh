#!/usr/bin/env bash
# Install Debian packages the tests need, when their command is missing.
# Usage: ensure-debian-packages.sh COMMAND PACKAGE [PACKAGE...]
set -euo pipefail
command_name="$1"; shift
if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "Installing Debian packages for the tests: $*" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
command -v "$command_name" >/dev/null
