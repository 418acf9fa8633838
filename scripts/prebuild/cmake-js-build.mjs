#!/usr/bin/env node
// prebuildify's build step (its --node-gyp option names this file): prebuildify calls it as it
// would call node-gyp (`rebuild --target=… --arch=… --release`); it builds the portable addon
// for that architecture with cmake-js instead (into build/prebuild/out-<arch>) and copies it
// to build/Release/raftstore.node, where prebuildify picks it up and files it under prebuilds/. Steps: the Debian 11 sysroot
// (sysroot.sh), protobuf's lite runtime for the target (protobuf.sh), then cmake-js with the
// target's toolchain file and RAFTSTORE_PREBUILD (CMakeLists.txt, docs/prebuilds.md).
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const arches = { x64: 'amd64', arm64: 'arm64' };
const archArg = process.argv.find((a) => a.startsWith('--arch='));
const arch = archArg ? archArg.slice('--arch='.length) : process.arch;
if (!(arch in arches)) {
  console.error(`prebuild: no toolchain for linux-${arch}; prebuilds are made for ${Object.keys(arches).join(', ')}`);
  process.exit(2);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    console.error(`prebuild: FAILED: ${cmd} ${args.join(' ')} (${r.error?.message ?? `exit code ${r.status}`})`);
    process.exit(r.status || 1);
  }
}

run('bash', ['scripts/prebuild/sysroot.sh', arches[arch], `build/sysroot/${arches[arch]}`]);
run('bash', ['scripts/prebuild/protobuf.sh', arch]);
// Asio is header-only and the same for every target; the sysroot has only the C library.
const asio = `${root}build/prebuild/asio`;
if (!existsSync(`${asio}/asio.hpp`)) {
  mkdirSync(asio, { recursive: true });
  cpSync('/usr/include/asio', `${asio}/asio`, { recursive: true });
  cpSync('/usr/include/asio.hpp', `${asio}/asio.hpp`);
}
// OpenSSL 3's headers for TLS (native/rpc/tls.h): the addon is compiled against them and
// links nothing; Node carries OpenSSL 3 and exports its symbols. The target sysroot has an
// older OpenSSL, so the build machine's headers (scripts/setup.sh installs libssl-dev) serve
// both targets. Of the two per-architecture files, opensslconf.h is the same for Debian's
// amd64 and arm64, and configuration.h differs only in OPENSSL_NO_EC_NISTP_64_GCC_128 and
// RC4_INT, which the TLS calls made here do not touch.
const openssl = `${root}build/prebuild/openssl`;
if (!existsSync(`${openssl}/openssl/opensslconf.h`)) {
  mkdirSync(openssl, { recursive: true });
  cpSync('/usr/include/openssl', `${openssl}/openssl`, { recursive: true });
  cpSync('/usr/include/x86_64-linux-gnu/openssl', `${openssl}/openssl`, { recursive: true });
}
const cmakeJs = createRequire(`${root}package.json`).resolve('cmake-js/bin/cmake-js');
console.log(`prebuild: building the addon for linux-${arch}`);
const tree = ['--out', `build/prebuild/addon-${arch}`, '--generator', 'Ninja'];
// configure every time (cheap), so that an existing tree takes these settings too; then build.
run(process.execPath, [cmakeJs, 'configure', ...tree, '--CDRAFTSTORE_TESTS=OFF', '--CDCMAKE_BUILD_TYPE=Release',
  '--CDRAFTSTORE_PREBUILD=ON', `--CDCMAKE_TOOLCHAIN_FILE=${root}scripts/prebuild/linux-${arch}.cmake`,
  `--CDRAFTSTORE_PROTOBUF_SRC=${root}build/prebuild/protobuf-3.21.12`,
  `--CDRAFTSTORE_PROTOBUF_LIB=${root}build/prebuild/protobuf-${arch}/libprotobuf-lite.a`,
  `--CDRAFTSTORE_ASIO_INCLUDE=${asio}`, `--CDRAFTSTORE_OPENSSL_INCLUDE=${openssl}`, `--CDRAFTSTORE_ADDON_DIR=${root}build/prebuild/out-${arch}`]);
run(process.execPath, [cmakeJs, 'build', ...tree, '--target', 'raftstore_addon']);
// Where prebuildify takes it from (and moves it away): a fresh copy, whatever was there.
mkdirSync(`${root}build/Release`, { recursive: true });
copyFileSync(`${root}build/prebuild/out-${arch}/raftstore.node`, `${root}build/Release/raftstore.node`);
