#!/usr/bin/env bash
# Makes a build sysroot of Debian 11 (bullseye, glibc 2.31) for one architecture, from
# Debian's archive: the C library's headers and link stubs only. Linking against it (not the
# build machine's glibc 2.36) keeps every symbol at the oldest version that has it, so the
# addon loads on glibc 2.28 and newer. Usage: sysroot.sh <amd64|arm64> <dir>
set -euo pipefail
arch=$1 dir=$2
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=(libc6 libc6-dev linux-libc-dev libcrypt1 libcrypt-dev)

[[ -f $dir/.complete ]] && exit 0
rm -rf "$dir" && mkdir -p "$dir/.debs"
index=$dir/.debs/Packages
curl -fsSL "$mirror/dists/bullseye/main/binary-$arch/Packages.xz" | xz -d >"$index"
for pkg in "${packages[@]}"; do
  # The stanza of this package: its Filename line names the .deb in the pool.
  file=$(awk -v p="$pkg" '$1 == "Package:" { hit = ($2 == p) } hit && $1 == "Filename:" { print $2; exit }' "$index")
  [[ -n $file ]] || { echo "sysroot: $pkg not in bullseye/$arch" >&2; exit 1; }
  echo "sysroot: $arch ${file##*/}"
  curl -fsSL -o "$dir/.debs/${file##*/}" "$mirror/$file"
  dpkg-deb -x "$dir/.debs/${file##*/}" "$dir"
done
# Debian's packages carry absolute symlinks (/lib64/ld-linux-x86-64.so.2 -> /lib/...), which
# would lead out of the sysroot into the build machine's glibc: make them point inside it.
while IFS= read -r link; do
  ln -sfn --relative "$dir$(readlink "$link")" "$link"
done < <(find "$dir" -type l -lname '/*')
rm -rf "$dir/.debs"
touch "$dir/.complete"
