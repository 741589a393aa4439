#!/usr/bin/env bash
# The one test command (README: `npm test`): sets the machine up, builds, then runs the unit tier (no root) and
# the integration tier (real zfs-fuse hosts in namespaces, as root).
# ZR_TEST_TIER=unit runs only the unit tier, for development. Otherwise the integration tier always
# runs, and where it cannot (not root, no zfs-fuse) its tests fail with the reason: they never count as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${ZR_TEST_TIER:-all}
if [ "$tier" = unit ]; then bash test/setup.sh --unit-only; else bash test/setup.sh; fi
files=(dist/test/unit/*.test.js)
if [ "$tier" != unit ]; then
  files+=(dist/test/integration/*.test.js)
  # Never leave a test bed behind, also when the run is interrupted.
  trap 'bash test/testbed/testbed.sh clean >/dev/null 2>&1 || true' EXIT
fi
# One file at a time: the integration files share one test bed's names and addresses.
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
