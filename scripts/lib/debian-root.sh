# Sourced by scripts/install-test.sh and scripts/fresh-machine.sh: a Debian root filesystem
# made with debootstrap, with this machine's Node, npm and network settings, entered by chroot.

# make_root ROOT SUITE [debootstrap options…]: made once (then kept under build/).
make_root() {
  local root=$1 suite=$2
  shift 2
  [[ -f $root/.complete ]] && return 0
  rm -rf "$root" && mkdir -p "$(dirname "$root")"
  echo "$(basename "$0" .sh): debootstrap $suite into $root"
  debootstrap --variant=minbase "$@" "$suite" "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
    >"$root.log" 2>&1 || { tail -20 "$root.log"; return 1; }
  touch "$root/.complete"
}

# add_node ROOT PREFIX: Node as its official builds are (one binary, glibc 2.28 or newer) and
# npm's JavaScript, under PREFIX/bin; the machine's npm settings; its resolver and CA bundle
# (a proxy may sign the registry's certificates), where the npm settings point.
add_node() {
  local root=$1 prefix=$2
  local npm_dir
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$root$prefix/bin" "$root$prefix/lib/node_modules" "$root/etc/ssl/certs" "$root/root"
  cp "$(command -v node)" "$root$prefix/bin/node"
  rm -rf "$root$prefix/lib/node_modules/npm" && cp -r "$npm_dir" "$root$prefix/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root$prefix/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root$prefix/bin/npx"
  for f in /etc/npmrc /usr/etc/npmrc; do
    [[ -f $f ]] && mkdir -p "$root$(dirname "$f")" && cp "$f" "$root$f"
  done
  [[ -f $HOME/.npmrc ]] && cp "$HOME/.npmrc" "$root/root/.npmrc"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  local cafile
  cafile=$(npm config get cafile)
  [[ $cafile == /* && -f $cafile ]] && mkdir -p "$root$(dirname "$cafile")" && cp "$cafile" "$root$cafile"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
}

# mount_root ROOT [HOST_DIR AT]: /proc, /dev and optionally HOST_DIR at ROOT/AT, unmounted
# when the script exits.
ROOT_MOUNTS=()
mount_root() {
  local root=$1
  trap 'for m in "${ROOT_MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done' EXIT
  mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc" && ROOT_MOUNTS+=("$root/proc"); }
  mountpoint -q "$root/dev" || { mount --bind /dev "$root/dev" && ROOT_MOUNTS+=("$root/dev"); }
  if (($# == 3)); then
    mkdir -p "$root/$3"
    mountpoint -q "$root/$3" || { mount --bind "$2" "$root/$3" && ROOT_MOUNTS+=("$root/$3"); }
  fi
}

# in_root ROOT PREFIX COMMAND…: COMMAND in the root, with a clean environment but for the CA
# bundle and this machine's npm registry.
in_root() {
  local root=$1 prefix=$2
  shift 2
  chroot "$root" /usr/bin/env -i PATH="$prefix/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" HOME=/root \
    TERM=dumb NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    npm_config_registry="$(npm config get registry)" "$@"
}
