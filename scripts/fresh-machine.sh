#!/usr/bin/env bash
# The README's first command on a fresh Debian 12 machine, timed: a debootstrap root with what
# such a machine comes with (g++, make, python3, git; this machine's Node 20, npm and npm
# settings), a clone of this repository's HEAD, then `bash scripts/setup.sh && npm run demo`
# with every output line stamped with the seconds since the start. Downloads are real (apt
# and npm), ccache starts empty. Needs root and network. Usage: bash scripts/fresh-machine.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
root=$repo/build/fresh-root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ ! -f $root/.complete ]]; then
  rm -rf "$root" && mkdir -p build
  echo "fresh-machine: debootstrap bookworm into $root"
  debootstrap --variant=minbase --include=g++,make,python3,git,ca-certificates bookworm "$root" "$mirror" \
    >build/fresh-root.log 2>&1 || { tail -20 build/fresh-root.log; exit 1; }
  touch "$root/.complete"
fi
# Node as this machine has it (a fresh machine of this kind comes with Node 20 and npm).
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/lib/node_modules" "$root/etc/ssl/certs" "$root/repo"
cp "$(command -v node)" "$root/usr/bin/node"
rm -rf "$root/usr/lib/node_modules/npm" && cp -r "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
[[ -d /usr/include/node ]] && rm -rf "$root/usr/include/node" && cp -r /usr/include/node "$root/usr/include/node"
for f in /etc/npmrc /usr/etc/npmrc "$HOME/.npmrc"; do
  [[ -f $f ]] && mkdir -p "$root$(dirname "${f/#$HOME//root}")" && cp "$f" "$root${f/#$HOME//root}"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"  # a proxy's CA too
cp /etc/resolv.conf "$root/etc/resolv.conf"

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc dev repo; do
  mountpoint -q "$root/$m" && continue
  case $m in
    proc) mount -t proc proc "$root/proc" ;;
    dev) mount --bind /dev "$root/dev" ;;
    repo) mount --bind "$repo" "$root/repo" ;;
  esac
  mounted+=("$root/$m")
done
rm -rf "$root/root/raftstore" "$root/root/.cache" "$root/root/.npm"
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt TERM=dumb /bin/bash -c '
  git config --global --add safe.directory "*"
  git clone -q /repo /root/raftstore && cd /root/raftstore
  start=$(date +%s.%N)
  { bash scripts/setup.sh && timeout 120 npm run demo; } 2>&1 | while IFS= read -r line; do
    printf "%7.1fs %s\n" "$(awk -v a="$(date +%s.%N)" -v b="$start" "BEGIN { print a - b }")" "$line"
  done
  exit "${PIPESTATUS[0]}"' | tee build/fresh-machine.log
first=$(grep -m1 -E '^ *[0-9.]+s \+0\.00s ' build/fresh-machine.log | awk '{ print $1 }')
echo "fresh-machine: the demo's first line came ${first:-never} after the start"
[[ -n $first ]]
