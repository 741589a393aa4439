#!/usr/bin/env bash
# Real OpenZFS for zfs_replicate's tests: Debian 12 QEMU guests with OpenZFS 2.1 (bookworm) or 2.3
# (bookworm-backports), built by DKMS for the guest kernel. Root only. KVM is not usable on these machines
# (PVM), so guests run under TCG: slow, so tests keep their data to a few MB.
#
#   vm.sh build VERSION        build the image (cached in $ZR_VM_HOME/images/zfs-VERSION; ~5 min from nothing)
#   vm.sh up VERSION           boot a guest (builds first if needed); the project dir is mounted at its own path
#   vm.sh ssh VERSION [CMD]    run CMD in the guest as root
#   vm.sh down VERSION | clean stop one guest | stop every guest
#   vm.sh port VERSION         the guest's ssh port on 127.0.0.1 (also reachable from other guests at 10.0.2.2)
#
# Every guest and the host share one root key (in $ZR_VM_HOME/key), so guests can ssh to each other through
# the host's forwarded ports: from any guest, `ssh -p $(vm.sh port 2.1) root@10.0.2.2` reaches the 2.1 guest.
set -euo pipefail

HOME_DIR=${ZR_VM_HOME:-/var/tmp/zfs_replicate-vm}
PROJECT=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=bookworm
PACKAGES=systemd-sysv,udev,kmod,iproute2,openssh-server,mbuffer,zstd,lz4,pv,procps,ca-certificates
KEY=$HOME_DIR/key/id_ed25519

log() { printf '[vm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"

version_dirs() { # sets IMAGE RUN PORT for a version
  case "$1" in 2.1) PORT=10021 ;; 2.3) PORT=10023 ;; *) die "version must be 2.1 or 2.3, not '$1'" ;; esac
  IMAGE=$HOME_DIR/images/zfs-$1; RUN=$HOME_DIR/run/zfs-$1
}
ssh_args() { echo "-i $KEY -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=5 -o ControlMaster=auto -o ControlPath=$RUN/ssh.ctl -o ControlPersist=600"; }

host_tools() {
  local missing=() tool package
  for pair in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils debootstrap:debootstrap mkfs.ext4:e2fsprogs ssh:openssh-client; do
    tool=${pair%%:*}; package=${pair##*:}; command -v "$tool" >/dev/null || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

mirror() { # the host's own Debian mirror (the only archive reachable here)
  local suite=$1
  awk -v s="$suite" '/^URIs:/ {u = $2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == s) {print u; exit}}' /etc/apt/sources.list.d/debian.sources 2>/dev/null
}

build() {
  local version=$1; version_dirs "$version"
  [ -e "$IMAGE/ready" ] && { log "image zfs-$version is built"; return 0; }
  host_tools
  mkdir -p "$HOME_DIR/key" "$HOME_DIR/debs"
  [ -e "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C zfs_replicate-vm -f "$KEY"
  local work=$HOME_DIR/work/zfs-$version root started=$SECONDS main security
  root=$work/root; rm -rf "$work"; mkdir -p "$root"
  main=$(mirror "$SUITE"); security=$(mirror "$SUITE-security")
  [ -n "$main" ] || die "no bookworm mirror in /etc/apt/sources.list.d/debian.sources"
  log "zfs-$version: debootstrap"
  debootstrap --variant=minbase --components=main,contrib --cache-dir="$HOME_DIR/debs" --include="$PACKAGES" \
    "$SUITE" "$root" "$main" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  mounted=()
  trap 'for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done' EXIT
  for fs in proc sys dev dev/pts; do
    case $fs in proc) mount -t proc proc "$root/proc" ;; sys) mount -t sysfs sysfs "$root/sys" ;; *) mount --bind "/$fs" "$root/$fs" ;; esac
    mounted+=("$root/$fs")
  done
  mount --bind "$HOME_DIR/debs" "$root/var/cache/apt/archives"; mounted+=("$root/var/cache/apt/archives")
  in_root() { LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }
  apt_in() { in_root apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 -y -q "$@" >>"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log"; die "apt-get $* failed"; }; }
  {
    echo "deb $main $SUITE main contrib"
    echo "deb $main $SUITE-updates main contrib"
    [ -n "$security" ] && echo "deb $security $SUITE-security main contrib"
    echo "deb $main $SUITE-backports main contrib"
  } >"$root/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
  apt_in update
  # Headers before zfs-dkms, or DKMS has nothing to build against; initramfs once, at the end.
  apt_in install --no-install-recommends initramfs-tools
  sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$root/etc/initramfs-tools/update-initramfs.conf"
  log "zfs-$version: kernel"
  apt_in install --no-install-recommends linux-image-amd64 linux-headers-amd64
  log "zfs-$version: zfs-dkms (builds the module for the guest kernel)"
  if [ "$version" = 2.3 ]; then apt_in install --no-install-recommends -t "$SUITE-backports" zfs-dkms zfsutils-linux
  else apt_in install --no-install-recommends zfs-dkms zfsutils-linux; fi
  local kernel; kernel=$(ls "$root/lib/modules" | sort -V | tail -1)
  if ! in_root modinfo -k "$kernel" zfs >/dev/null 2>&1; then
    local zver; zver=$(basename "$(ls -d "$root"/usr/src/zfs-* | sort -V | tail -1)"); zver=${zver#zfs-}
    in_root dkms build -m zfs -v "$zver" -k "$kernel" >>"$work/apt.log" 2>&1 && in_root dkms install -m zfs -v "$zver" -k "$kernel" >>"$work/apt.log" 2>&1 \
      || { tail -30 "$work/apt.log"; die "dkms build for $kernel failed"; }
  fi
  log "zfs-$version: configure"
  echo "zfs$version" | tr -d . >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
  echo '/dev/vda / ext4 rw,noatime 0 0' >"$root/etc/fstab"
  mkdir -p "$root/etc/systemd/network" "$root/etc/systemd/journald.conf.d"
  printf '[Match]\nName=e*\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/20-wired.network"
  printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/volatile.conf"
  in_root systemctl enable systemd-networkd.service >/dev/null 2>&1
  in_root systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
  # The data disks are new on every boot: importing pools at boot is wasted time under emulation.
  in_root systemctl mask zfs-import-cache.service zfs-import-scan.service zfs-mount.service zfs-zed.service >/dev/null 2>&1 || true
  grep -v udev-settle "$root/lib/systemd/system/zfs-load-module.service" >"$root/etc/systemd/system/zfs-load-module.service" || true
  echo "options zfs zfs_arc_max=$((128 * 1024 * 1024))" >"$root/etc/modprobe.d/zfs-arc.conf"
  install -d -m 700 "$root/root/.ssh"
  cp "$KEY" "$KEY.pub" "$root/root/.ssh/"
  cp "$KEY.pub" "$root/root/.ssh/authorized_keys"; chmod 600 "$root/root/.ssh/authorized_keys" "$root/root/.ssh/id_ed25519"
  printf 'Host *\n  LogLevel ERROR\n' >"$root/root/.ssh/config"
  printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\nMaxStartups 100:30:200\nMaxSessions 100\n' >"$root/etc/ssh/sshd_config.d/zr.conf"
  install -m 755 "$(command -v node)" "$root/usr/local/bin/node"
  sed -i 's/^update_initramfs=.*/update_initramfs=yes/' "$root/etc/initramfs-tools/update-initramfs.conf"
  in_root update-initramfs -u -k "$kernel" >>"$work/apt.log" 2>&1
  rm -f "$root/usr/sbin/policy-rc.d" "$root"/var/cache/apt/*.bin; rm -rf "$root"/var/lib/apt/lists/*_*
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}"; done; mounted=(); trap - EXIT
  log "zfs-$version: image"
  local staging=$IMAGE.new used
  rm -rf "$staging"; mkdir -p "$staging"
  cp "$root/boot/vmlinuz-$kernel" "$staging/vmlinuz"; cp "$root/boot/initrd.img-$kernel" "$staging/initrd.img"
  used=$(du -sxm "$root" | cut -f1)
  mkfs.ext4 -q -F -m 0 -d "$root" "$staging/rootfs.img" "$((used + used / 5 + 1024))M"
  chroot "$root" dpkg-query -W -f 'zfsutils-linux ${Version}\n' zfsutils-linux >"$staging/zfs-version"
  rm -rf "$IMAGE"; mv "$staging" "$IMAGE"; touch "$IMAGE/ready"; rm -rf "$work"
  log "zfs-$version: built in $((SECONDS - started)) s"
}

running() { [ -e "$RUN/qemu.pid" ] && kill -0 "$(cat "$RUN/qemu.pid")" 2>/dev/null; }

# A TCG boot takes 25-60 s here; one that printed nothing for this long is hung (seen under load: a guest booted
# beside another one gave no ssh after 300 s, and booted in 35 s when tried again).
BOOT_SILENCE_S=90
BOOT_LIMIT_S=240

boot_once() { # boot_once VERSION: start a guest from a fresh overlay; 0 when ssh answers, else 1 with qemu stopped
  local version=$1 started=$SECONDS last_size=-1 last_change=$SECONDS size
  rm -rf "$RUN"; mkdir -p "$RUN"
  qemu-img create -q -f qcow2 -F raw -b "$IMAGE/rootfs.img" "$RUN/root.qcow2"
  truncate -s 2G "$RUN/data1.raw" "$RUN/data2.raw"
  # No `quiet`: the console log is what tells a hung boot from a slow one.
  qemu-system-x86_64 -name "zr-zfs-$version" -machine pc -accel tcg,thread=multi,tb-size=512 -cpu max -smp 2 -m 1536 \
    -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 mitigations=off panic=-1" \
    -drive "file=$RUN/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe" -device virtio-blk-pci,drive=root \
    -drive "file=$RUN/data1.raw,if=none,id=d1,format=raw,cache=unsafe" -device virtio-blk-pci,drive=d1,serial=zr-data1 \
    -drive "file=$RUN/data2.raw,if=none,id=d2,format=raw,cache=unsafe" -device virtio-blk-pci,drive=d2,serial=zr-data2 \
    -virtfs "local,path=$PROJECT,mount_tag=project,security_model=none,multidevs=remap" \
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$PORT-:22" \
    -device virtio-rng-pci -vga none -display none -no-reboot \
    -serial "file:$RUN/console.log" -daemonize -pidfile "$RUN/qemu.pid"
  # shellcheck disable=SC2046
  until ssh $(ssh_args) root@127.0.0.1 true 2>/dev/null; do
    running || { log "zfs-$version: qemu exited while booting"; return 1; }
    size=$(stat -c %s "$RUN/console.log" 2>/dev/null || echo 0)
    [ "$size" != "$last_size" ] && { last_size=$size; last_change=$SECONDS; }
    if [ $((SECONDS - last_change)) -ge $BOOT_SILENCE_S ] || [ $((SECONDS - started)) -ge $BOOT_LIMIT_S ]; then
      log "zfs-$version: no ssh after $((SECONDS - started)) s, console silent for $((SECONDS - last_change)) s: hung"
      stop_qemu; return 1
    fi
    sleep 1
  done
}

up() {
  local version=$1 attempt; version_dirs "$version"
  [ -e "$IMAGE/ready" ] || build "$version"
  running && { log "zfs-$version is up"; return 0; }
  local started=$SECONDS
  for attempt in 1 2; do
    boot_once "$version" && break
    if [ "$attempt" = 2 ]; then
      log "zfs-$version: console tail:"; tail -40 "$RUN/console.log" >&2
      die "zfs-$version: no boot in two tries"
    fi
    cp "$RUN/console.log" "$HOME_DIR/console-zfs-$version-failed.log" 2>/dev/null || true
    log "zfs-$version: booting once more from a fresh overlay"
  done
  # cache=loose: without a cache every file the CLI loads is a round trip to the host, and a run spent ~40 s
  # loading its modules. The guest only reads the project, and each test file boots its own guests.
  # Root pins the guest's own host key, as a backup host would: the CLI refuses an unknown or changed key (an
  # image built before this trusted any key in its ssh config, which is rewritten here too).
  # shellcheck disable=SC2046
  ssh $(ssh_args) root@127.0.0.1 "mkdir -p '$PROJECT' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose project '$PROJECT' && modprobe zfs &&
    zpool create -f -O mountpoint=/src -O compression=off src /dev/disk/by-id/virtio-zr-data1 &&
    zpool create -f -O mountpoint=/backup backup /dev/disk/by-id/virtio-zr-data2 &&
    printf 'Host *\n  LogLevel ERROR\n' >/root/.ssh/config &&
    ssh-keyscan -p $PORT 10.0.2.2 >/root/.ssh/known_hosts 2>/dev/null" || die "zfs-$version: guest setup failed"
  log "zfs-$version up in $((SECONDS - started)) s: $(cat "$IMAGE/zfs-version")"
}

stop_qemu() {
  running || return 0
  local pid; pid=$(cat "$RUN/qemu.pid")
  # shellcheck disable=SC2046
  ssh $(ssh_args) -O exit root@127.0.0.1 >/dev/null 2>&1 || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local version=$1; version_dirs "$version"
  stop_qemu
  rm -rf "$RUN"
}

command=${1:-}; shift || true
case "$command" in
  build) build "${1:?version}" ;;
  up) up "${1:?version}" ;;
  down) down "${1:?version}" ;;
  clean) for version in 2.1 2.3; do down "$version"; done ;;
  port) version_dirs "${1:?version}"; echo "$PORT" ;;
  ssh) version_dirs "${1:?version}"; shift
       # shellcheck disable=SC2046
       exec ssh $(ssh_args) root@127.0.0.1 "$@" ;;
  *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
