#!/usr/bin/env bash
# The README's first command on a fresh Debian 12 machine, timed: a debootstrap root with what
# such a machine comes with (g++, make, python3, git; this machine's Node 20, npm and npm
# settings), a clone of this repository's HEAD, then `bash scripts/setup.sh && npm run demo`
# with every output line stamped with the seconds since the start. Downloads are real (apt
# and npm), ccache starts empty. Needs root and network. Usage: bash scripts/fresh-machine.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/debian-root.sh
repo=$PWD
root=$repo/build/fresh-root

make_root "$root" bookworm --include=g++,make,python3,git,ca-certificates
# Node as this machine has it (a fresh machine of this kind comes with Node 20 and npm, and
# Node's headers).
add_node "$root" /usr
[[ -d /usr/include/node ]] && rm -rf "$root/usr/include/node" && cp -r /usr/include/node "$root/usr/include/node"
mount_root "$root" "$repo" repo
rm -rf "$root/root/raftstore" "$root/root/.cache" "$root/root/.npm"
in_root "$root" /usr /bin/bash -c '
  git config --global --add safe.directory "*"
  git clone -q /repo /root/raftstore && cd /root/raftstore
  start=$(date +%s.%N)
  { bash scripts/setup.sh && timeout 120 npm run demo; } 2>&1 | while IFS= read -r line; do
    printf "%7.1fs %s\n" "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN { print a - b }")" "$line"
  done
  exit "${PIPESTATUS[0]}"' | tee build/fresh-machine.log
# The demo's first line (its own clock may already read +0.01s on a busy machine).
first=$(grep -m1 -E '^ *[0-9.]+s \+[0-9.]+s starting replicas' build/fresh-machine.log | awk '{ print $1 }')
echo "fresh-machine: the demo's first line came ${first:-never} after the start"
[[ -n $first ]]
