#!/bin/sh
# On the BACKUP host, as root (OpenZFS on Linux; zfs-fuse cannot delegate): an unprivileged user that runs
# zfs_replicate, an ssh key for it, and a container dataset it may receive replicas into (README, "Running
# without root").
#
#   sh setup-backup.sh PARENT            e.g. sh setup-backup.sh backup/zr
#   ZR_USER=name sh setup-backup.sh ...  another user name (default zfs_replicate)
#
# Then put the printed key on each source (setup-source.sh), pin each source's host key as this user
# (ssh-keyscan), and add the crontab line (examples/unprivileged.crontab).
set -eu

PARENT=${1:?usage: setup-backup.sh PARENT_DATASET}
ZR_USER=${ZR_USER:-zfs_replicate}

# 1. The user, with a shell (cron runs its jobs through it) and an ssh key of its own.
id "$ZR_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$ZR_USER"
home=$(getent passwd "$ZR_USER" | cut -d: -f6)
[ -e "$home/.ssh/id_ed25519" ] ||
  su "$ZR_USER" -s /bin/sh -c "ssh-keygen -q -t ed25519 -N '' -C '$ZR_USER@$(hostname)' -f ~/.ssh/id_ed25519"

# 2. The container: never mounted (on Linux only root mounts, and a dataset created below a mounted parent
# would have to be). Replicas below it inherit mountpoint=none; root mounts one when it is needed.
if ! zfs list -H -o name "$PARENT" >/dev/null 2>&1; then
  zfs create -p -o canmount=off -o mountpoint=none "$PARENT"
elif [ "$(zfs get -H -o value mountpoint "$PARENT")" != none ]; then
  echo "setup-backup.sh: $PARENT exists with a mountpoint: zfs set mountpoint=none $PARENT (or pick another parent)" >&2
  exit 1
fi

# 3. What a pull needs there, found by test (test/openzfs/allow-minimal.sh): receive the streams (receive,
# create, mount) with the replica's properties (readonly, canmount; userprop for com.sun:auto-snapshot and
# the claim zfs_replicate:pull), hold the common snapshot (hold, release), expire (destroy), and --rollback
# (rollback).
zfs allow -u "$ZR_USER" receive,create,mount,hold,release,destroy,rollback,readonly,canmount,userprop "$PARENT"

echo "the key to put on each source (setup-source.sh):"
cat "$home/.ssh/id_ed25519.pub"
