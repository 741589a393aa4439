#!/usr/bin/env bash
# Which `zfs allow` permissions a pull needs when neither end is root: a whole cycle (initial, send from a
# bookmark, resume, abort of a dead resume, expiry, a conflict, --rollback) runs with every candidate
# permission, then with one taken away, and prints the first step that broke. This is how the README's
# `zfs allow` lines were found. Run by hand, not in CI: one cycle takes 3-6 minutes under TCG, so name the
# checks, and split them between the two guests:
#
#   bash test/openzfs/vm.sh up 2.3
#   bash test/openzfs/vm.sh ssh 2.3 "bash $PWD/test/openzfs/allow-minimal.sh 10023 all source:send backup:destroy"
#
# In the guest, as root: the source user zsend logs in through zfs_replicate-serve (its forced command), the
# backup user zrecv runs zfs_replicate; both reach the guest's own sshd through the host's forwarded port
# (vm.sh port VERSION).
set -uo pipefail

PORT=${1:?usage: allow-minimal.sh FORWARDED_SSH_PORT all|source:PERMISSION|backup:PERMISSION...}
PROJECT=$(cd "$(dirname "$0")/../.." && pwd)
SOURCE_CANDIDATES=send,hold,release,bookmark,destroy,mount,userprop
BACKUP_CANDIDATES=receive,create,mount,hold,release,destroy,rollback,userprop,readonly,canmount,snapshot

for user in zsend zrecv; do id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"; done
[ -e /home/zrecv/.ssh/id_ed25519 ] || su zrecv -s /bin/sh -c "ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519"
su zrecv -s /bin/sh -c "ssh-keyscan -p $PORT 10.0.2.2 >~/.ssh/known_hosts" 2>/dev/null
install -d -m 700 -o zsend -g zsend /home/zsend/.ssh
echo "restrict,command=\"$PROJECT/bin/zfs_replicate-serve src/m\" $(cat /home/zrecv/.ssh/id_ed25519.pub)" >/home/zsend/.ssh/authorized_keys
chown zsend: /home/zsend/.ssh/authorized_keys
zfs create -o canmount=off -o mountpoint=none src/m
zfs create -o canmount=off -o mountpoint=none backup/m

# zfs_replicate as zrecv, pulling src/m/$run into backup/m/$run/sub/data
replicate() {
  su zrecv -s /bin/sh -c "cd $PROJECT && PATH=/usr/bin:/bin /usr/local/bin/node dist/zfs_replicate.mjs --user zsend \
    -h 10.0.2.2 -p $PORT --lock-dir /home/zrecv/lock -r src/m/$run -l backup/m/$run/sub/data -t bk -k 30 $*" >/tmp/allow-run.log 2>&1
}
snap() { head -c "${2:-100000}" /dev/urandom >"/src/m/$run/$1" && zfs snapshot "src/m/$run@$1"; }
# a receive cut short, as root: leaves a resume token on the replica
partial() { zfs send -L -e -c -i "src/m/$run@$1" "src/m/$run@$2" | head -c 300000 | zfs recv -s -u "backup/m/$run/sub/data" 2>/dev/null; true; }

broke() { echo "$1 ($(grep -E 'error|refused|denied|conflict' /tmp/allow-run.log | tail -n 1 | cut -c1-220))"; }

cycle() { # $1 a name, $2 source permissions, $3 backup permissions; prints ok or the step that failed
  run=$1; shift
  zfs create -o mountpoint="/src/m/$run" "src/m/$run" && zfs create -o canmount=off -o mountpoint=none "backup/m/$run"
  zfs allow -u zsend "$1" "src/m/$run"
  zfs allow -u zrecv "$2" "backup/m/$run"
  snap a && snap b
  replicate || { broke "initial"; return; }
  # zfs recv -o skips a property the user may not set, and says nothing
  [ "$(zfs get -H -o value,source readonly,canmount,com.sun:auto-snapshot "backup/m/$run/sub/data" | paste -sd' ')" = \
    $'on\tlocal noauto\tlocal false\tlocal' ] || { broke "initial: the replica's properties"; return; }
  snap c && replicate || { broke "incremental"; return; }
  zfs release bk "src/m/$run@c" && zfs destroy "src/m/$run@c" && snap d
  replicate -vv && grep -q "send -L -e -c -i 'src/m/$run#" /tmp/allow-run.log || { broke "send from bookmark"; return; }
  snap e 2000000 && partial d e
  replicate -v && grep -q 'received the rest of an interrupted receive' /tmp/allow-run.log || { broke "resume"; return; }
  snap f 2000000 && partial e f && zfs destroy "src/m/$run@f" && snap g
  replicate && [ "$(zfs get -H -o value receive_resume_token "backup/m/$run/sub/data")" = - ] || { broke "abort a dead resume"; return; }
  sleep 2 && snap h
  replicate --keep 2s && [ "$(zfs list -H -t snapshot -o name -d 1 "backup/m/$run/sub/data" | wc -l)" = 1 ] || { broke "expiry"; return; }
  zfs snapshot "backup/m/$run/sub/data@local" && snap i
  replicate; [ $? = 4 ] || { broke "conflict (exit 4)"; return; }
  replicate --rollback && ! zfs list "backup/m/$run/sub/data@local" >/dev/null 2>&1 || { broke "--rollback"; return; }
  echo ok
}

without() { # the comma list $1 without $2
  tr , '\n' <<<"$1" | grep -vx "$2" | paste -sd,
}

for check in "${@:2}"; do
  permission=${check#*:}
  case $check in
    all) echo "all candidates: $(cycle all "$SOURCE_CANDIDATES" "$BACKUP_CANDIDATES")" ;;
    source:*) echo "source without $permission: $(cycle "s-$permission" "$(without "$SOURCE_CANDIDATES" "$permission")" "$BACKUP_CANDIDATES")" ;;
    backup:*) echo "backup without $permission: $(cycle "b-$permission" "$SOURCE_CANDIDATES" "$(without "$BACKUP_CANDIDATES" "$permission")")" ;;
  esac
done
