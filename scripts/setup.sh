#!/usr/bin/env bash
# Brings a fresh machine to the point where `npm run demo` runs and `npm test` can run:
# Debian toolchain, npm devDependencies, and the addon. The sanitizer, fuzz and simulator
# trees are built by `npm test` (and `npm run sim`) when first needed. Safe to run again:
# each part skips work that is already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(g++ cmake ninja-build ccache libgtest-dev clang-format libprotobuf-dev protobuf-compiler libasio-dev
  clang-14 libclang-rt-14-dev  # clang only for the libFuzzer target
  g++-aarch64-linux-gnu qemu-user debootstrap curl xz-utils  # the prebuilds (scripts/prebuild/)
  etcd-server)  # only for `npm run bench:node` (etcd as the comparison); no test uses it

missing=()
for pkg in "${packages[@]}"; do
  # dpkg-query fails for a package it has never heard of; treat that as missing too.
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

# npm ci installs exactly the lock file; plain install only when there is none yet.
if [[ -f package-lock.json ]]; then
  echo "setup: npm ci"
  npm ci --no-fund --no-audit
else
  echo "setup: npm install"
  npm install --no-fund --no-audit
fi

echo "setup: building the addon (npm test builds the other trees)"
node scripts/build.mjs --addon-only
echo "setup: done"
