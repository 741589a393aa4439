#!/usr/bin/env bash
# The one test command (README: `npm test`): sets the machine up, builds, checks format, lint and the
# architecture, then runs three tiers:
#   unit     no root, no ZFS: planners, parsers, pipeline, lock, arguments, and the orchestration on fake hosts
#   fuse     the real CLI on zfs-fuse hosts in network + mount namespaces, over real ssh (root)
#   openzfs  the real CLI in QEMU guests with OpenZFS 2.3 and 2.1 (root; images built first, once per machine)
# ZR_TEST_TIER=unit or ZR_TEST_TIER=fuse stops after that tier, for development. Otherwise every tier runs, and a
# tier that cannot run here (not root, no zfs-fuse, no QEMU) fails with the reason: it never counts as passed.
# Every tier runs even when an earlier one failed; the exit status is non-zero if any did.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${ZR_TEST_TIER:-all}
case "$tier" in unit | fuse | all) ;; *) echo "ZR_TEST_TIER must be unit, fuse or all" >&2; exit 2 ;; esac
started=$SECONDS
if [ "$tier" = unit ]; then bash test/setup.sh --unit-only; else bash test/setup.sh; fi
npx --no-install biome check .
if [ "$tier" != unit ]; then
  # Never leave a test bed or a guest behind, also when the run is interrupted.
  trap 'bash test/testbed/testbed.sh clean >/dev/null 2>&1 || true; bash test/openzfs/vm.sh clean >/dev/null 2>&1 || true' EXIT
fi

results=$(mktemp -d)
summary=()
failed=0
run_tier() { # run_tier NAME TIMEOUT_S FILES...: one tier, its spec output on the console, its counts kept
  local name=$1 timeout=$2 began=$SECONDS status=0; shift 2
  echo "=== tier $name: $# files"
  # One file at a time: the integration files share one test bed's names and addresses.
  # --test-timeout: every test fails on its own after that long, so a hung process never hangs the suite.
  node --test --test-concurrency=1 --test-timeout=$((timeout * 1000)) --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$results/$name.tap" "$@" || status=$?
  local pass fail
  pass=$(awk '/^# pass /{print $3}' "$results/$name.tap" 2>/dev/null || true)
  # A test cut by the timeout is "cancelled", not "failed": it counts as failed here.
  fail=$(awk '/^# (fail|cancelled) /{n += $3} END {print n + 0}' "$results/$name.tap" 2>/dev/null || true)
  summary+=("$(printf '%-8s %4s passed %3s failed  %4d s' "$name" "${pass:-0}" "${fail:-0}" $((SECONDS - began)))")
  [ "$status" = 0 ] || failed=1
}

run_tier unit 60 dist/test/unit/*.test.js
[ "$tier" = unit ] || run_tier fuse 300 dist/test/integration/*.test.js
if [ "$tier" = all ]; then
  # The guest images are built once per machine (7-9 min each from nothing on 2 busy cores), before the tier:
  # inside it, a fresh machine's two builds took most of the tier's own timeout, and the file was cut at 1800 s.
  began=$SECONDS
  if bash test/openzfs/vm.sh build 2.3 && bash test/openzfs/vm.sh build 2.1; then
    summary+=("$(printf '%-8s %24s  %4d s' images 'built or cached' $((SECONDS - began)))")
    run_tier openzfs 2400 dist/test/openzfs/*.test.js
  else
    echo "=== tier openzfs: the guest images could not be built (see above), so it did not run"
    summary+=("openzfs  did not run: the guest images could not be built")
    failed=1
  fi
fi

echo "=== elapsed per tier (whole run $((SECONDS - started)) s, setup and lint included)"
printf '%s\n' "${summary[@]}"
total_pass=$(cat "$results"/*.tap 2>/dev/null | awk '/^# pass /{s += $3} END {print s + 0}')
total_fail=$(cat "$results"/*.tap 2>/dev/null | awk '/^# (fail|cancelled) /{s += $3} END {print s + 0}')
rm -rf "$results"
echo "tests: $total_pass passed, $total_fail failed"
[ "$failed" = 0 ] && [ "$total_fail" = 0 ]
