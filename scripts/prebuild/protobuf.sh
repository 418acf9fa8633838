#!/usr/bin/env bash
# Builds protobuf's lite runtime as a static, position-independent library with hidden
# symbols for one prebuild architecture. Debian's own libprotobuf*.a cannot go into a shared
# object (built without -fPIC), so the source is Debian's: the same upstream release as the
# protoc that Debian's protobuf-compiler ships, fetched from Debian's archive and checked.
# Usage: protobuf.sh <x64|arm64>   -> build/prebuild/protobuf-<arch>/libprotobuf-lite.a
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
arch=$1
version=3.21.12
sha256=930c2c3b5ecc6c9c12615cf5ad93f1cd6e12d0aba862b572e076259970ac3a53
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=build/prebuild
tarball=$work/protobuf_$version.orig.tar.gz
src=$work/protobuf-$version
out=$work/protobuf-$arch

protoc_version=$(protoc --version | awk '{print $2}')
[[ $protoc_version == "$version" ]] || {
  echo "protobuf: protoc is $protoc_version, the prebuild's runtime is $version; they must match" >&2
  exit 1
}
mkdir -p "$work"
if [[ ! -f $src/.complete ]]; then
  [[ -f $tarball ]] || curl -fsSL -o "$tarball" "$mirror/pool/main/p/protobuf/protobuf_$version.orig.tar.gz"
  echo "$sha256  $tarball" | sha256sum -c --quiet
  # Unpacked aside and moved into place, so that a half-unpacked tree is never taken for whole.
  tmp=$(mktemp -d "$work/unpack.XXXXXX")
  tar xzf "$tarball" -C "$tmp" && touch "$tmp/protobuf-$version/.complete"
  rm -rf "$src" && mv "$tmp/protobuf-$version" "$src" && rm -rf "$tmp"
fi
[[ -f $out/libprotobuf-lite.a ]] && exit 0

flags="-fvisibility=hidden -fvisibility-inlines-hidden -ffunction-sections -fdata-sections"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
echo "protobuf: building libprotobuf-lite $version for linux-$arch"
cmake -S "$src" -B "$out" -G Ninja -Wno-dev -DCMAKE_TOOLCHAIN_FILE="$PWD/scripts/prebuild/linux-$arch.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -Dprotobuf_BUILD_TESTS=OFF \
  -Dprotobuf_BUILD_PROTOC_BINARIES=OFF -Dprotobuf_BUILD_SHARED_LIBS=OFF -Dprotobuf_WITH_ZLIB=OFF >/dev/null
ninja -C "$out" ${BUILD_JOBS:+-j "$BUILD_JOBS"} libprotobuf-lite
