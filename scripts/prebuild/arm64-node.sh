#!/usr/bin/env bash
# Debian 12's arm64 Node (nodejs and the libraries it needs), unpacked into build/qemu/arm64-root,
# for running the linux-arm64 prebuild under qemu-user (test/prebuilds.test.ts):
#   qemu-aarch64 -L build/qemu/arm64-root build/qemu/arm64-root/usr/bin/node …
# debootstrap only downloads and unpacks (--foreign: nothing runs inside); the debs it fetched
# for nodejs are then unpacked beside the base system.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=build/qemu/arm64-root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ -f $root/.complete ]] && exit 0
rm -rf "$root" && mkdir -p build/qemu
echo "arm64-node: fetching Debian 12 arm64 nodejs into $root"
debootstrap --foreign --arch=arm64 --variant=minbase --include=nodejs bookworm "$root" "$mirror" >/dev/null
for deb in "$root"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
rm -f "$root"/var/cache/apt/archives/*.deb
touch "$root/.complete"
