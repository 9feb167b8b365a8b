#!/usr/bin/env bash
# Run every part of a check even when an earlier one fails, then print a summary of all
# parts and exit non-zero if any failed, so that one failure never hides another.
# Usage: scripts/run-parts.sh NAME COMMAND [NAME COMMAND ...]
# Each COMMAND is one string, run with `bash -c`. Ctrl-C stops after the running part.
set -uo pipefail # no -e: a failing part must not stop the others

if [ $# -eq 0 ] || [ $(($# % 2)) -ne 0 ]; then
  echo "usage: $0 NAME COMMAND [NAME COMMAND ...]" >&2
  exit 2
fi

names=()
results=()
interrupted=0
# pytest turns Ctrl-C into an ordinary exit status, and bash then carries on with the next
# line: remember the interrupt and stop after the part that was running.
trap 'interrupted=1' INT

while [ $# -gt 0 ] && [ "$interrupted" -eq 0 ]; do
  name="$1" command="$2"
  shift 2
  printf '\n==> %s: %s\n' "$name" "$command"
  started=$SECONDS
  bash -c "$command"
  status=$?
  names+=("$name")
  if [ "$status" -eq 0 ]; then
    results+=("PASS  $(printf '%-22s' "$name") $((SECONDS - started)) s")
  else
    results+=("FAIL  $(printf '%-22s' "$name") $((SECONDS - started)) s, exit status $status")
  fi
done

failed=0
printf '\n==> summary\n'
for result in "${results[@]}"; do
  printf '  %s\n' "$result"
  case "$result" in FAIL*) failed=$((failed + 1)) ;; esac
done
while [ $# -gt 0 ]; do
  printf '  SKIP  %s (interrupted)\n' "$1"
  shift 2
done

if [ "$interrupted" -ne 0 ]; then
  echo "interrupted"
  exit 130
fi
if [ "$failed" -ne 0 ]; then
  echo "$failed of ${#names[@]} parts failed"
  exit 1
fi
echo "all ${#names[@]} parts passed"
