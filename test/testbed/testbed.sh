#!/usr/bin/env bash
# zfs_replicate's multi-host ZFS test bed: isolated "hosts" on one Linux machine, as root.
#
#   testbed.sh up HOST...        bring up hosts (each: netns + mount/uts ns, zfs-fuse with pool "tank", sshd)
#   testbed.sh on HOST -- CMD... run CMD on HOST (its network, mount and uts namespaces; working dir kept)
#   testbed.sh down              stop everything this test bed started and remove its state
#   testbed.sh clean             'down' plus any namespace left by an earlier, interrupted run
#   testbed.sh link HOST up|down cut or restore HOST's network
#   testbed.sh rate HOST RATE|off  limit HOST's egress rate (tbf)
#   testbed.sh status
#   testbed.sh sshd HOST stop|start    stop or start HOST's sshd (sessions already open go on)
#   testbed.sh zfsd HOST restart       "reboot" HOST's zfs-fuse: SIGKILL it, start it again, import and mount the pool
#   testbed.sh shim HOST MODE|off      a stand-in zfs for HOST's ssh sessions only (see shim_script for the modes)
#   testbed.sh hostkey HOST new|restore  give HOST's sshd a new host key (others' known_hosts unchanged), or the old one back
#
# Hosts live on a bridge in their own switch namespace, in 10.213.77.0/24, with no route anywhere else.
# Every host's root key is authorized on every host and known_hosts is pre-filled, so `ssh HOST` just works.
set -uo pipefail

TB=${ZR_TESTBED_DIR:-/var/tmp/zfs_replicate-testbed}
NS=${ZR_TESTBED_NS:-zrt}
NET=10.213.77
POOL_SIZE=${ZR_TESTBED_POOL_SIZE:-2G}
SWITCH=$NS-switch
STATE=$TB/state

die() { echo "testbed: $*" >&2; exit 1; }
hostdir() { echo "$TB/hosts/$1"; }
holder_pid() { cat "$(hostdir "$1")/holder.pid" 2>/dev/null || die "host $1 is not up"; }
enter() { local host=$1; shift; nsenter -t "$(holder_pid "$host")" -m -n -u --wd="$PWD" -- "$@"; }
# A zombie still has /proc/PID: look at the state field.
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
wait_for() { # wait_for TRIES DELAY CMD...: retry CMD until it succeeds
  local tries=$1 delay=$2; shift 2
  local n; for ((n = 0; n < tries; n++)); do "$@" >/dev/null 2>&1 && return 0; sleep "$delay"; done
  return 1
}

write_host_files() {
  local host=$1 dir; dir=$(hostdir "$host")
  rm -rf "$dir"; mkdir -p "$dir"/{root/.ssh,etc_zfs,vdev,mnt}; chmod 700 "$dir/root" "$dir/root/.ssh"
  printf '# test bed host %s\n' "$host" >"$dir/root/.bashrc"
  printf 'max-arc-size = 64\nvdev-cache-size = 10\nzfs-prefetch-disable\nfuse-attr-timeout = 3600\nfuse-entry-timeout = 3600\n' >"$dir/etc_zfs/zfsrc"
  ssh-keygen -q -t ed25519 -N '' -C "root@$host" -f "$dir/root/.ssh/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C "host@$host" -f "$dir/ssh_host_ed25519_key"
  cat >"$dir/sshd_config" <<CONF
Port 22
ListenAddress 0.0.0.0
HostKey $dir/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
LogLevel INFO
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
  echo "$host" >"$dir/etc_hostname"
}

start_holder() { # the holder process owns the host's mount and uts namespaces, inside its netns
  local host=$1 dir; dir=$(hostdir "$host")
  setsid ip netns exec "$NS-$host" unshare --mount --uts --propagation private -- /bin/sh -c "
    set -e
    echo \$\$ >'$dir/holder.pid'
    hostname '$host'
    mount -t tmpfs -o mode=755 $NS-run /run
    mkdir -p /run/zfs /run/lock/zfs /run/sshd
    mount -t tmpfs -o mode=755 $NS-zfslib /var/lib/zfs
    mount --bind '$dir/etc_zfs' /etc/zfs
    mount --bind '$STATE/etc_hosts' /etc/hosts
    mount --bind '$dir/etc_hostname' /etc/hostname
    mount --bind '$dir/root' /root
    : >'$dir/holder.ready'
    exec sleep infinity" </dev/null >"$dir/holder.log" 2>&1 &
}

up() {
  [ $# -gt 0 ] || set -- alpha beta gamma
  [ "$(id -u)" = 0 ] || die "the test bed needs root (network and mount namespaces, zfs-fuse)"
  [ -e /dev/fuse ] || die "/dev/fuse is missing: zfs-fuse cannot run"
  local tool; for tool in zfs-fuse zpool zfs sshd ssh-keygen nsenter unshare ip; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed"
  done
  [ -e "$STATE/hosts" ] && die "already up ($(tr '\n' ' ' <"$STATE/hosts")): run 'testbed.sh down' first"
  mkdir -p "$STATE"; : >"$STATE/hosts"
  [ -d /run/netns ] || : >"$STATE/made_run_netns"
  ip netns add "$SWITCH" || die "cannot create network namespace $SWITCH"
  ip -n "$SWITCH" link set lo up
  ip -n "$SWITCH" link add br0 type bridge
  ip -n "$SWITCH" link set br0 up
  local index=0 host
  { echo "127.0.0.1 localhost"; for host in "$@"; do index=$((index + 1)); echo "$NET.$((10 + index)) $host"; done; } >"$STATE/etc_hosts"
  index=0
  for host in "$@"; do
    index=$((index + 1)); echo "$host" >>"$STATE/hosts"
    write_host_files "$host"
    ip netns add "$NS-$host"
    ip -n "$SWITCH" link add "sw-$host" type veth peer name eth0 netns "$NS-$host"
    ip -n "$SWITCH" link set "sw-$host" master br0 up
    ip -n "$NS-$host" link set lo up
    ip -n "$NS-$host" addr add "$NET.$((10 + index))/24" dev eth0
    ip -n "$NS-$host" link set eth0 up
  done
  local other
  for host in "$@"; do
    for other in "$@"; do
      cat "$(hostdir "$other")/root/.ssh/id_ed25519.pub" >>"$(hostdir "$host")/root/.ssh/authorized_keys"
      echo "$other,$(awk -v h="$other" '$2 == h {print $1}' "$STATE/etc_hosts") $(cut -d' ' -f1,2 "$(hostdir "$other")/ssh_host_ed25519_key.pub")" >>"$(hostdir "$host")/root/.ssh/known_hosts"
    done
    chmod 600 "$(hostdir "$host")/root/.ssh/authorized_keys"
  done
  for host in "$@"; do start_holder "$host"; done
  for host in "$@"; do
    local dir; dir=$(hostdir "$host")
    wait_for 200 0.05 test -e "$dir/holder.ready" || die "host $host: namespace holder did not start ($(cat "$dir/holder.log"))"
    enter "$host" zfs-fuse --no-kstat-mount -p /run/zfs/zfs-fuse.pid >"$dir/zfs-fuse.log" 2>&1 || die "host $host: zfs-fuse did not start"
    enter "$host" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" || die "host $host: sshd did not start"
  done
  for host in "$@"; do
    local dir; dir=$(hostdir "$host")
    wait_for 200 0.05 enter "$host" zpool list || die "host $host: zfs-fuse is not answering"
    truncate -s "$POOL_SIZE" "$dir/vdev/tank.img"
    enter "$host" zpool create -m "$dir/mnt/tank" tank "$dir/vdev/tank.img" || die "host $host: zpool create failed"
    cat "/proc/$(holder_pid "$host")/root/run/zfs/zfs-fuse.pid" >"$dir/zfs-fuse.pid"
  done
  for host in "$@"; do
    wait_for 100 0.05 enter "$host" ssh -o BatchMode=yes -o ConnectTimeout=2 "$host" true || die "host $host: sshd is not answering"
  done
  echo "up: $*"
}

stop_hosts() {
  local host holder pids
  for host in "$@"; do # unmount and export first, so that killing zfs-fuse cannot damage a pool mid-write
    holder=$(cat "$(hostdir "$host")/holder.pid" 2>/dev/null) || continue
    alive "$holder" && timeout 15 nsenter -t "$holder" -m -n -u -- sh -c \
      'zfs unmount -a; for pool in $(zpool list -H -o name); do zpool export -f "$pool"; done' >/dev/null 2>&1 &
  done
  wait
  for host in "$@"; do
    pids=$(cat "$(hostdir "$host")/zfs-fuse.pid" 2>/dev/null) && kill -KILL $pids 2>/dev/null
  done
  stop_netns_processes $(for host in "$@"; do echo "$NS-$host"; done)
}

stop_netns_processes() { # SIGTERM everything in these netns, SIGKILL after 2 s; zombies do not count
  local pids round
  pids=$(for ns in "$@"; do ip netns pids "$ns" 2>/dev/null; done)
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
  for ((round = 0; round < 100; round++)); do
    pids=$(for ns in "$@"; do for pid in $(ip netns pids "$ns" 2>/dev/null); do alive "$pid" && echo "$pid"; done; done)
    [ -z "$pids" ] && return 0
    [ $round -eq 40 ] && kill -KILL $pids 2>/dev/null
    sleep 0.05
  done
  echo "testbed: cannot stop: $pids" >&2
  return 1
}

down() {
  local hosts="" host
  [ -e "$STATE/hosts" ] && hosts=$(cat "$STATE/hosts")
  [ -n "$hosts" ] && stop_hosts $hosts
  for host in $hosts; do ip netns del "$NS-$host" 2>/dev/null; rm -rf "$(hostdir "$host")"; done
  ip netns del "$SWITCH" 2>/dev/null
  if [ -e "$STATE/made_run_netns" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null
  fi
  rm -rf "$STATE"
  return 0
}

clean() { # also what an interrupted run left behind, even without state
  down
  local leftovers ns
  leftovers=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS-" || true)
  if [ -n "$leftovers" ]; then
    stop_netns_processes $leftovers
    for ns in $leftovers; do ip netns del "$ns" 2>/dev/null; done
  fi
  rm -rf "$TB/hosts"
}

status() {
  [ -e "$STATE/hosts" ] || { echo "not up"; return 0; }
  local host
  for host in $(cat "$STATE/hosts"); do
    echo "== $host: $(ip netns pids "$NS-$host" | wc -l) processes"
    enter "$host" sh -c 'hostname; zpool list -H -o name,size,alloc,health' 2>&1 | sed 's/^/   /'
  done
}

sshd_pid() { cat "/proc/$(holder_pid "$1")/root/run/sshd.pid" 2>/dev/null; }
sshd_stop() {
  local pid; pid=$(sshd_pid "$1") || return 0
  kill -TERM "$pid" 2>/dev/null
  wait_for 100 0.05 sh -c "! [ -r /proc/$pid/stat ] || [ \"\$(awk '{print \$3}' /proc/$pid/stat)\" = Z ]" || die "host $1: sshd $pid does not stop"
  enter "$1" rm -f /run/sshd.pid
}
sshd_start() {
  local dir; dir=$(hostdir "$1")
  enter "$1" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" || die "host $1: sshd did not start"
  wait_for 100 0.05 enter "$1" ssh -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "$1" true || die "host $1: sshd is not answering"
}

zfsd_restart() { # like a crash and reboot of the host's ZFS: no export, no unmount, the daemon just dies
  local host=$1 dir holder pid mountpoint; dir=$(hostdir "$host"); holder=$(holder_pid "$host")
  pid=$(cat "$dir/zfs-fuse.pid") || die "host $host: no zfs-fuse pid"
  kill -KILL "$pid" 2>/dev/null
  wait_for 200 0.05 sh -c "! [ -r /proc/$pid/stat ] || [ \"\$(awk '{print \$3}' /proc/$pid/stat)\" = Z ]" || die "host $host: zfs-fuse $pid does not die"
  # The dead daemon's FUSE mounts answer "transport endpoint is not connected": detach them, deepest first.
  for mountpoint in $(awk '$3 ~ /^fuse/ {print $2}' "/proc/$holder/mounts" | sort -r); do
    enter "$host" umount -l "$mountpoint" 2>/dev/null
  done
  local try started=0
  for try in 1 2 3 4 5; do # the dead daemon's resources can take a moment to go
    enter "$host" rm -f /run/zfs/zfs-fuse.pid /run/zfs/zfs_socket
    if enter "$host" zfs-fuse --no-kstat-mount -p /run/zfs/zfs-fuse.pid >>"$dir/zfs-fuse.log" 2>&1 &&
      wait_for 100 0.05 enter "$host" zpool list; then started=1; break; fi
    echo "testbed: host $host: zfs-fuse restart attempt $try failed" >>"$dir/zfs-fuse.log"
    sleep 1
  done
  [ "$started" = 1 ] || die "host $host: zfs-fuse did not start again: $(tail -n 5 "$dir/zfs-fuse.log" | tr '\n' ' ')"
  if ! enter "$host" zpool list tank >/dev/null 2>&1; then
    enter "$host" zpool import -f -d "$dir/vdev" tank || die "host $host: cannot import tank after the restart"
  fi
  enter "$host" zfs mount -a 2>/dev/null
  cat "/proc/$holder/root/run/zfs/zfs-fuse.pid" >"$dir/zfs-fuse.pid"
}

# A stand-in /usr/sbin/zfs, bound over the real one in one host's mount namespace. It behaves like zfs except in
# ssh sessions (SSH_CONNECTION is set), and there only for the listings zfs_replicate reads (`zfs get`/`zfs list`
# naming createtxg), according to the mode in $dir/shim.mode:
#   malformed        the real listing plus a line that is not name<TAB>property<TAB>value
#   duplicate-guid   the real listing with the newest snapshot's guid replaced by the oldest one's
#   outside          the real listing plus a dataset and a snapshot outside the requested dataset
#   huge             the real listing plus 700,000 well-formed snapshots (about 120 MB)
#   after:CMD...     the real listing, then (once) the zfs command(s) CMD... (separated by ';') before answering:
#                    a change on the source between the listing and what follows (destroy or rename a snapshot...)
#   syncoid          not a listing mode: `zfs get -t TYPE`, which zfs-fuse lacks and syncoid's remote listing
#                    needs, answered from the real `zfs get` (snapshot rows for -t snapshot, none for anything else)
shim_script() {
  cat <<'SHIM'
#!/bin/bash
dir=@DIR@
real=@REAL@
mode=$(cat "$dir/shim.mode" 2>/dev/null || true)
if [ "$mode" = syncoid ] && [ "${1:-}" = get ]; then
  args=(); type=
  while [ $# -gt 0 ]; do
    if [ "$1" = -t ]; then type=$2; shift 2; continue; fi
    args+=("$1"); shift
  done
  case "$type" in
    '') exec "$real" "${args[@]}" ;;
    *snapshot*) "$real" "${args[@]}" | grep '@'; exit "${PIPESTATUS[0]}" ;;
    *) exit 0 ;;
  esac
fi
listing=0
if [ -n "${SSH_CONNECTION:-}" ] && { [ "${1:-}" = get ] || [ "${1:-}" = list ]; }; then
  for arg in "$@"; do case "$arg" in *createtxg*) listing=1 ;; esac; done
fi
[ "$listing" = 1 ] && [ -n "$mode" ] || exec "$real" "$@"
dataset=${!#}
case "$mode" in
  malformed)
    "$real" "$@"; status=$?
    printf '%s@garbage this line has no tabs at all\n' "$dataset"
    exit $status ;;
  duplicate-guid)
    out=$("$real" "$@"); status=$?
    first=$(printf '%s\n' "$out" | awk -F'\t' '$1 ~ /@/ && $2 == "guid" {print $3; exit}')
    last=$(printf '%s\n' "$out" | awk -F'\t' '$1 ~ /@/ && $2 == "guid" {name = $1} END {print name}')
    printf '%s\n' "$out" | awk -F'\t' -v OFS='\t' -v last="$last" -v guid="$first" '$1 == last && $2 == "guid" {$3 = guid} {print}'
    exit $status ;;
  outside)
    "$real" "$@"; status=$?
    parent=${dataset%/*}; [ "$parent" = "$dataset" ] && parent=$dataset
    for property in type guid createtxg creation userrefs; do
      case $property in type) value=filesystem ;; *) value=1 ;; esac
      printf '%s/intruder\t%s\t%s\n' "$parent-elsewhere" "$property" "$value"
    done
    for property in type guid createtxg creation userrefs; do
      case $property in type) value=snapshot ;; guid) value=12345678901234567 ;; createtxg) value=999999999 ;; *) value=1 ;; esac
      printf '%s-elsewhere/intruder@evil\t%s\t%s\n' "$parent" "$property" "$value"
    done
    exit $status ;;
  huge) # well-formed, complete rows: only their amount is hostile
    "$real" "$@"
    awk -v d="$dataset" 'BEGIN { OFS = "\t"; for (i = 1; i <= 700000; i++) { s = d "@huge" i
      print s, "type", "snapshot"; print s, "guid", "1" sprintf("%015d", i); print s, "createtxg", sprintf("%d", 100000000 + i)
      print s, "creation", 1700000000; print s, "userrefs", 0 } }'
    exit 0 ;;
  after:*)
    "$real" "$@"; status=$?
    : >"$dir/shim.mode"
    IFS=';' read -r -a actions <<<"${mode#after:}"
    # An unmount can find the dataset busy for a moment (zfs-fuse, a file just written): tried a few times.
    for one in "${actions[@]}"; do
      read -r -a action <<<"$one"
      for try in 1 2 3 4 5 6 7 8 9 10; do
        "$real" "${action[@]}" >>"$dir/shim.log" 2>&1 && break
        [ "$try" = 10 ] && echo "shim action failed: ${action[*]}" >>"$dir/shim.log"
        sleep 0.2
      done
    done
    exit $status ;;
  *) exec "$real" "$@" ;;
esac
SHIM
}

shim() {
  local host=$1 mode=$2 dir holder; dir=$(hostdir "$host"); holder=$(holder_pid "$host")
  if [ "$mode" = off ]; then
    : >"$dir/shim.mode"
    awk '$2 == "/usr/sbin/zfs"' "/proc/$holder/mounts" | grep -q . && enter "$host" umount /usr/sbin/zfs
    return 0
  fi
  if ! awk '$2 == "/usr/sbin/zfs"' "/proc/$holder/mounts" | grep -q .; then
    cp /usr/sbin/zfs "$dir/zfs.real"
    shim_script | sed -e "s|@DIR@|$dir|" -e "s|@REAL@|$dir/zfs.real|" >"$dir/zfs.shim"
    chmod +x "$dir/zfs.shim"
    enter "$host" mount --bind "$dir/zfs.shim" /usr/sbin/zfs || die "host $host: cannot bind the shim"
  fi
  printf '%s\n' "$mode" >"$dir/shim.mode"
}

hostkey() {
  local host=$1 dir; dir=$(hostdir "$host")
  case "$2" in
    new)
      [ -e "$dir/ssh_host_ed25519_key.orig" ] || cp -p "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.orig"
      rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
      ssh-keygen -q -t ed25519 -N '' -C "host@$host (new)" -f "$dir/ssh_host_ed25519_key" ;;
    restore)
      [ -e "$dir/ssh_host_ed25519_key.orig" ] || return 0
      mv "$dir/ssh_host_ed25519_key.orig" "$dir/ssh_host_ed25519_key"
      ssh-keygen -y -f "$dir/ssh_host_ed25519_key" >"$dir/ssh_host_ed25519_key.pub" ;;
    *) die "hostkey HOST new|restore" ;;
  esac
  sshd_stop "$host"; sshd_start "$host"
}

command=${1:-}; shift || true
case "$command" in
  up) up "$@" ;;
  down) down ;;
  clean) clean ;;
  status) status ;;
  on) host=${1:?host}; shift; [ "${1:-}" = -- ] && shift; enter "$host" "$@" ;;
  link) ip -n "$NS-${1:?host}" link set eth0 "${2:?up|down}" ;;
  rate) if [ "${2:?rate|off}" = off ]; then ip netns exec "$NS-$1" tc qdisc del dev eth0 root 2>/dev/null || true
        else ip netns exec "$NS-$1" tc qdisc replace dev eth0 root tbf rate "$2" burst 64kb latency 50ms; fi ;;
  sshd) case "${2:?stop|start}" in stop) sshd_stop "$1" ;; start) sshd_start "$1" ;; *) die "sshd HOST stop|start" ;; esac ;;
  zfsd) [ "${2:-}" = restart ] || die "zfsd HOST restart"; zfsd_restart "$1" ;;
  shim) shim "${1:?host}" "${2:?mode|off}" ;;
  hostkey) hostkey "${1:?host}" "${2:?new|restore}" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
