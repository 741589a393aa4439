#!/usr/bin/env bash
# Makes a fresh Debian 12 machine (root, Node >= 20.19 and npm) ready to build, test and demo zfs_replicate:
# installs the Debian packages the test bed uses when any is missing, the npm dependencies, and builds.
# Usage: test/setup.sh [--unit-only]   (--unit-only: no Debian packages, for the unit tier)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(zfs-fuse openssh-server openssh-client mbuffer pv lz4 zstd lzop iproute2 util-linux procps faketime prometheus sanoid time)

node_major=$(node -p 'process.versions.node.split(".").map(Number).join(" ")' 2>/dev/null) || { echo "setup: node is not installed (Node >= 20.19 needed)" >&2; exit 1; }
read -r major minor _ <<<"$node_major"
if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 19 ]; }; then
  echo "setup: Node $(node --version) is too old: zfs_replicate needs Node >= 20.19" >&2; exit 1
fi

if [ "${1:-}" != --unit-only ]; then
  missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2; exit 1; }
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d 101: the packages must not start their services in this machine's own namespace.
    policy=/usr/sbin/policy-rc.d; made_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made_policy=1; fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$made_policy" = 1 ] && rm -f "$policy"
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
