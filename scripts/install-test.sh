#!/usr/bin/env bash
# The package as a user without a compiler gets it: a Debian 11 root filesystem (debootstrap
# minbase: glibc 2.31, no compiler, no cmake, no protobuf) with this machine's Node 20 and npm
# copied in; `npm install --ignore-scripts` of the packed tarball from the npm registry, then
# a three-replica cluster that elects a leader and replicates (test/fixtures/smoke-cluster.mjs).
# Needs root (chroot) and network access to Debian's archive and the npm registry.
# Usage: bash scripts/install-test.sh     (npm test runs it; ~2 minutes the first time)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD/build/install-root
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ ! -f $root/.complete ]]; then
  rm -rf "$root" && mkdir -p build
  echo "install-test: debootstrap bullseye minbase into $root"
  debootstrap --variant=minbase bullseye "$root" "$mirror" >build/install-root.log 2>&1 ||
    { tail -20 build/install-root.log; exit 1; }
  touch "$root/.complete"
fi
for tool in gcc g++ cc c++ cmake protoc make; do
  if chroot "$root" /bin/sh -c "command -v $tool" >/dev/null; then
    echo "install-test: the clean root has $tool; it must not" >&2
    exit 1
  fi
done

# Node as its official builds are: one binary (needs glibc 2.28) plus npm's JavaScript.
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/opt/node/bin" "$root/opt/node/lib/node_modules"
cp "$node_bin" "$root/opt/node/bin/node"
rm -rf "$root/opt/node/lib/node_modules/npm" && cp -r "$npm_dir" "$root/opt/node/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/opt/node/bin/npm"
# The network as this machine reaches it: its resolver, its CA bundle (a proxy may sign the
# registry's certificates) and its npm registry.
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/ssl/certs"
cafile=$(npm config get cafile)
[[ $cafile == null || $cafile == undefined || ! -f $cafile ]] && cafile=/etc/ssl/certs/ca-certificates.crt
[[ -f $cafile ]] && cp "$cafile" "$root/etc/ssl/certs/host-ca.crt"
registry=$(npm config get registry)

rm -rf "$root/app" "$root/pkg" && mkdir -p "$root/app" "$root/pkg"
echo "install-test: npm pack"
npm pack --silent --pack-destination "$root/pkg" >/dev/null
tarball=$(cd "$root/pkg" && ls raftstore-*.tgz)
cp test/fixtures/smoke-cluster.mjs "$root/app/"
echo '{ "name": "app", "private": true, "type": "module" }' >"$root/app/package.json"

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && mounted+=("$root/proc"); }
mountpoint -q "$root/dev" || { mount --bind /dev "$root/dev" && mounted+=("$root/dev"); }

in_root() {
  local ca=()
  [[ -f $root/etc/ssl/certs/host-ca.crt ]] &&
    ca=(NODE_EXTRA_CA_CERTS=/etc/ssl/certs/host-ca.crt npm_config_cafile=/etc/ssl/certs/host-ca.crt)
  chroot "$root" /usr/bin/env -i PATH=/opt/node/bin:/usr/bin:/bin HOME=/root \
    npm_config_registry="$registry" "${ca[@]}" "$@"
}
echo "install-test: in the clean root: $(in_root /bin/sh -c 'ldd --version | head -1'), Node $(in_root node --version)"
in_root /bin/sh -c "cd /app && npm install --ignore-scripts --no-audit --no-fund /pkg/$tarball"
port=$((25000 + RANDOM % 1000))
in_root /bin/sh -c "cd /app && rm -rf data && node smoke-cluster.mjs raftstore $port data 500"
echo "install-test: ok"
