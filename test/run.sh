#!/usr/bin/env bash
# The one test command: builds, then runs the unit tier (no root) and the integration tier (real zfs-fuse hosts).
# ZFS_REPLICATE_TEST_TIER=unit runs only the unit tier (for development); the default runs both, and the
# integration tier fails loudly where it cannot run: it never counts as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
npx --no-install tsc -p tsconfig.json
tier=${ZFS_REPLICATE_TEST_TIER:-all}
files=(dist/test/unit/*.test.js)
if [ "$tier" != unit ]; then
  files+=(dist/test/integration/*.test.js)
fi
exec node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
