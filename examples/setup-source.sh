#!/bin/sh
# On a SOURCE host, as root (OpenZFS on Linux; zfs-fuse cannot delegate): an unprivileged user whose only
# login is the backup host's key, restricted to zfs_replicate-serve on the given datasets, and the `zfs allow`
# rights a pull needs on them (README, "Running without root").
#
#   sh setup-source.sh 'ssh-ed25519 AAAA... zfs_replicate@backup1' BACKUP_ADDRESS DATASET...
#   e.g. sh setup-source.sh "$(cat backup1.pub)" 192.0.2.10 tank/vm tank/db
#   ZR_USER=name   another user name (default zfs_replicate)
#   ZR_SERVE=path  where zfs_replicate-serve is (default /usr/local/bin/zfs_replicate-serve)
#   ZR_TAG=tag     the backup host's hold tag (its -t): the key may then hold and release no other (--tag)
set -eu

KEY=${1:?usage: setup-source.sh PUBLIC_KEY BACKUP_ADDRESS DATASET...}
FROM=${2:?usage: setup-source.sh PUBLIC_KEY BACKUP_ADDRESS DATASET...}
shift 2
[ "$#" -gt 0 ] || { echo "setup-source.sh: name the datasets the backup host may pull" >&2; exit 2; }
ZR_USER=${ZR_USER:-zfs_replicate}
SERVE=${ZR_SERVE:-/usr/local/bin/zfs_replicate-serve}
TAG_OPTION=
if [ -n "${ZR_TAG-}" ]; then
  case $ZR_TAG in -* | *[!A-Za-z0-9_.:-]*)
    echo "setup-source.sh: ZR_TAG '$ZR_TAG': write this line by hand (such a tag needs quotes in command=)" >&2
    exit 2 ;;
  esac
  TAG_OPTION="--tag $ZR_TAG "
fi
[ -x "$SERVE" ] || { echo "setup-source.sh: $SERVE is missing: copy bin/zfs_replicate-serve there first" >&2; exit 1; }
for dataset; do
  case $dataset in *[!A-Za-z0-9_.:/-]*)
    echo "setup-source.sh: '$dataset': write this line by hand (a name with spaces needs quotes in command=)" >&2
    exit 2 ;;
  esac
  zfs list -H -o name "$dataset" >/dev/null
done

# 1. The user: a shell, because sshd runs the forced command through it; no password.
id "$ZR_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$ZR_USER"
home=$(getent passwd "$ZR_USER" | cut -d: -f6)
install -d -m 700 -o "$ZR_USER" -g "$ZR_USER" "$home/.ssh"

# 2. The key may run zfs_replicate-serve only, from the backup host only, with no forwarding and no terminal.
line="restrict,from=\"$FROM\",command=\"$SERVE $TAG_OPTION$*\" $KEY"
keys=$home/.ssh/authorized_keys
touch "$keys"
{ grep -vF -- "$KEY" "$keys" || true; printf '%s\n' "$line"; } >"$keys.new"
chown "$ZR_USER:" "$keys.new" && chmod 600 "$keys.new" && mv "$keys.new" "$keys"

# 3. What a pull needs on the datasets and their children, found by test (test/openzfs/allow-minimal.sh):
# send, hold and release the common snapshot, create a bookmark of it and destroy our older ones. zfs itself
# now refuses this user everything else; the wrapper narrows destroy to zfs_replicate's own bookmarks.
for dataset; do
  zfs allow -u "$ZR_USER" send,hold,release,bookmark,destroy "$dataset"
done
echo "$keys:"
cat "$keys"
