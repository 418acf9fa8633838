#!/usr/bin/env bash
# The package as a user without a compiler gets it: a Debian 11 root filesystem (debootstrap
# minbase: glibc 2.31, no compiler, no cmake, no protobuf) with this machine's Node 20 and npm
# copied in; `npm install --ignore-scripts` of the packed tarball from the npm registry, then
# a three-replica cluster that elects a leader and replicates (test/fixtures/smoke-cluster.mjs).
# Needs root (chroot) and network access to Debian's archive and the npm registry.
# Usage: bash scripts/install-test.sh     (npm test runs it; ~2 minutes the first time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/debian-root.sh
root=$PWD/build/install-root

make_root "$root" bullseye
for tool in gcc g++ cc c++ cmake protoc make; do
  if chroot "$root" /bin/sh -c "command -v $tool" >/dev/null; then
    echo "install-test: the clean root has $tool; it must not" >&2
    exit 1
  fi
done
add_node "$root" /opt/node

rm -rf "$root/app" "$root/pkg" && mkdir -p "$root/app" "$root/pkg"
echo "install-test: npm pack"
npm pack --silent --pack-destination "$root/pkg" >/dev/null
tarball=$(cd "$root/pkg" && ls raftstore-*.tgz)
cp test/fixtures/smoke-cluster.mjs "$root/app/"
echo '{ "name": "app", "private": true, "type": "module" }' >"$root/app/package.json"

mount_root "$root"
run() { in_root "$root" /opt/node "$@"; }
echo "install-test: in the clean root: $(run /bin/sh -c 'ldd --version | head -1'), Node $(run node --version)"
run /bin/sh -c "cd /app && npm install --ignore-scripts --no-audit --no-fund /pkg/$tarball"
port=$((25000 + RANDOM % 1000))
run /bin/sh -c "cd /app && rm -rf data && node smoke-cluster.mjs raftstore $port data 500"
echo "install-test: ok"
