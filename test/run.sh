#!/usr/bin/env bash
# The one test command (README: `npm test`): sets the machine up, builds, then runs three tiers:
#   unit     no root, no ZFS: planner, parsers, pipeline, lock, arguments
#   fuse     the real CLI on zfs-fuse hosts in network + mount namespaces, over real ssh (root)
#   openzfs  the real CLI in QEMU guests with OpenZFS 2.3 and 2.1 (root; images built on first use, ~7 min each)
# ZR_TEST_TIER=unit or ZR_TEST_TIER=fuse stops after that tier, for development. Otherwise every tier runs, and a
# tier that cannot run here (not root, no zfs-fuse, no QEMU) fails with the reason: it never counts as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${ZR_TEST_TIER:-all}
case "$tier" in unit | fuse | all) ;; *) echo "ZR_TEST_TIER must be unit, fuse or all" >&2; exit 2 ;; esac
if [ "$tier" = unit ]; then bash test/setup.sh --unit-only; else bash test/setup.sh; fi
files=(dist/test/unit/*.test.js)
if [ "$tier" != unit ]; then
  files+=(dist/test/integration/*.test.js)
  # Never leave a test bed or a guest behind, also when the run is interrupted.
  trap 'bash test/testbed/testbed.sh clean >/dev/null 2>&1 || true; bash test/openzfs/vm.sh clean >/dev/null 2>&1 || true' EXIT
fi
[ "$tier" = all ] && files+=(dist/test/openzfs/*.test.js)
# One file at a time: the integration files share one test bed's names and addresses.
node --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
