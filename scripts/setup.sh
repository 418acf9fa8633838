#!/usr/bin/env bash
# Brings a fresh machine to the point where `npm run demo` runs: the Debian packages the addon
# needs, npm devDependencies, and the addon. Nothing more, so the first command is quick.
#   bash scripts/setup.sh --tests   only the Debian packages `npm test` needs besides those
#                                   (npm test runs this itself; the trees it builds itself)
# Safe to run again: each part skips work that is already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(g++ cmake ninja-build ccache libprotobuf-dev protobuf-compiler libasio-dev libssl-dev)
tests_only=false
if [[ ${1:-} == --tests ]]; then
  tests_only=true
  packages+=(libgtest-dev clang-format
    clang-14 libclang-rt-14-dev  # clang only for the libFuzzer target
    g++-aarch64-linux-gnu qemu-user debootstrap curl xz-utils  # the prebuilds (scripts/prebuild/)
    chromium  # the status page test (with playwright-core from npm)
    openssl  # test certificates (test/fixtures/make-certs.sh)
    etcd-server)  # only for `npm run bench:node` and `bench:kv` (etcd as the comparison); no test uses it
elif [[ -n ${1:-} ]]; then
  echo "setup: unexpected argument '$1' (usage: bash scripts/setup.sh [--tests])" >&2
  exit 2
fi

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

if $tests_only; then
  # better-sqlite3 (SqlStore's tests and bench) compiles SQLite: left out of the demo's setup.
  if [[ -d node_modules/better-sqlite3 ]] && ! node -e "new (require('better-sqlite3'))(':memory:')" 2>/dev/null; then
    echo "setup: building better-sqlite3"
    npm rebuild better-sqlite3
  fi
  exit 0
fi

# npm ci installs exactly the lock file; plain install only when there is none yet. Install
# scripts are skipped (better-sqlite3's compiles SQLite for a minute and a half; the demo
# does not use it): esbuild's (tsx) is run, and the addon is built below.
if [[ -f package-lock.json ]]; then
  echo "setup: npm ci"
  npm ci --no-fund --no-audit --ignore-scripts
else
  echo "setup: npm install"
  npm install --no-fund --no-audit --ignore-scripts
fi
npm rebuild esbuild

echo "setup: building the addon (npm test installs and builds the rest)"
node scripts/build.mjs --addon-only
echo "setup: done"
