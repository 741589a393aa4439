#!/usr/bin/env bash
# A self-contained demo of zfs_replicate, as root on a Debian 12 machine with Node and npm:
# brings up three throwaway ZFS hosts (zfs-fuse in namespaces, talking over ssh), puts data and snapshots on
# alpha, pulls them to beta with zfs_replicate, then chains beta -> gamma, pulls a tree with -R, and prints what happened.
# It tears everything down at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/setup.sh
TESTBED=test/testbed/testbed.sh
CLI=$PWD/dist/zfs_replicate.mjs
on() { bash "$TESTBED" on "$@"; }
# What cron would run: its minimal PATH; -v to show the info lines a cron job keeps quiet.
# Each host keeps its run records in the test bed, not in this machine's /var/lib/zfs_replicate.
state() { echo "${ZR_TESTBED_DIR:-/var/tmp/zfs_replicate-testbed}/hosts/$1/state"; }
replicate() { local host=$1; shift; echo "+ [$host] zfs_replicate $*"; on "$host" -- env PATH=/usr/bin:/bin ZFS_REPLICATE_STATE_DIR="$(state "$host")" node "$CLI" "$@"; }
show() { echo "--- $1: snapshots of $2 (name, guid, holds)"; on "$1" -- zfs get -Hp -d 1 -o name,property,value guid,userrefs "$2" |
  awk -F'\t' '$1 ~ /@/ { v[$1] = v[$1] " " $2 "=" $3 } END { for (k in v) print "    " k v[k] }' | sort; }
step() { printf '\n=== %s\n' "$*"; }

bash "$TESTBED" clean >/dev/null 2>&1 || true
trap 'step "tearing the test bed down"; bash "$TESTBED" down' EXIT
step "bringing up hosts alpha, beta and gamma"
bash "$TESTBED" up alpha beta gamma 2>/dev/null

step "alpha: a dataset with 5 snapshots of 4 MB each"
on alpha -- zfs create -p tank/virt/machines
for i in 1 2 3 4 5; do
  on alpha -- sh -c "dd if=/dev/urandom of=\$(zfs get -H -o value mountpoint tank/virt/machines)/disk$i bs=1M count=4 status=none"
  on alpha -- zfs snapshot "tank/virt/machines@auto-$i"
done
show alpha tank/virt/machines

step "beta pulls from alpha (initial: creates the parents, full stream + one incremental)"
replicate beta -h alpha -r tank/virt/machines -l tank/offsite/virt/machines -t offsite -k 30 -v
show beta tank/offsite/virt/machines

step "alpha takes 3 more snapshots; beta pulls again (one incremental stream, holds moved)"
for i in 6 7 8; do on alpha -- zfs snapshot "tank/virt/machines@auto-$i"; done
replicate beta -h alpha -r tank/virt/machines -l tank/offsite/virt/machines -t offsite -k 30 -v

step "a run with nothing new: silent, exit 0 (what cron sees on most runs)"
replicate beta -h alpha -r tank/virt/machines -l tank/offsite/virt/machines -t offsite -k 30 && echo "exit 0, no output"

step "dry run on gamma: what a chain hop beta -> gamma would do"
replicate gamma -h beta -r tank/offsite/virt/machines -l tank/chain/machines -t gamma -k 60 --dry-run

step "gamma pulls from beta (chain alpha -> beta -> gamma, each hop with its own tag)"
replicate gamma -h beta -r tank/offsite/virt/machines -l tank/chain/machines -t gamma -k 60 -v

step "the same snapshots (same guids) on all three hosts; holds: offsite on alpha+beta, gamma on beta+gamma"
show alpha tank/virt/machines
show beta tank/offsite/virt/machines
show gamma tank/chain/machines
a=$(on alpha -- zfs get -Hp -o value guid tank/virt/machines@auto-8)
c=$(on gamma -- zfs get -Hp -o value guid tank/chain/machines@auto-8)
[ "$a" = "$c" ] && echo "auto-8: alpha and gamma guids match ($a)" || { echo "guid mismatch: $a vs $c" >&2; exit 1; }

step "a tree with -R: alpha's tank/vm with two VMs, each snapshotted on its own schedule"
for vm in web db; do on alpha -- zfs create -p "tank/vm/$vm"; done
on alpha -- zfs snapshot -r tank/vm@daily-1
on alpha -- zfs snapshot tank/vm/db@hourly-1
replicate beta -R -h alpha -r tank/vm -l tank/offsite/vm -t offsite -k 30 -v
for member in vm vm/web vm/db; do show beta "tank/offsite/$member"; done

step "what beta knows of its replicas (zfs_replicate status: local only), and the Nagios check of the tree"
node "$CLI" status --state-dir "$(state beta)"
node "$CLI" check -R -l tank/offsite/vm --warn 26h --crit 50h --state-dir "$(state beta)" || true
step "demo finished"
