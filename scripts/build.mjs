#!/usr/bin/env node
// Builds the native trees with CMake + Ninja:
//   build/release  RelWithDebInfo: the simulator and what ships
//   build/asan     Debug with ASan+UBSan: unit tests and a sanitized simulator run
//   build/tsan     Debug with ThreadSanitizer: the threaded transport and runtime tests
//   build/fuzz     clang (Debian's clang-14) with libFuzzer+ASan+UBSan: the wire fuzz target
//   build/addon    the Node addon through cmake-js (-> build/Release/raftstore.node, where
//                  node-gyp-build finds it); `npm install` runs this one alone
// Usage: node scripts/build.mjs [--release-only | --asan-only | --tsan-only | --fuzz-only |
//                               --addon-only]
// CMake is run only for a tree without build.ninja; after that Ninja re-runs CMake by
// itself whenever CMakeLists.txt changes. ccache is picked up by CMakeLists.txt.
// BUILD_JOBS=N caps Ninja's parallelism (its default is cores + 2).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

const trees = {
  // Unit tests run only under the sanitizers, so the release tree skips building them.
  release: { dir: 'build/release', flags: ['-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DRAFTSTORE_TESTS=OFF'] },
  asan: { dir: 'build/asan', flags: ['-DCMAKE_BUILD_TYPE=Debug', '-DRAFTSTORE_SANITIZE=ON'] },
  // ThreadSanitizer only where there are threads: the transport (and, later, the runtime).
  tsan: { dir: 'build/tsan', flags: ['-DCMAKE_BUILD_TYPE=Debug', '-DRAFTSTORE_TSAN=ON'], targets: ['rpc_tests'] },
  fuzz: {
    dir: 'build/fuzz',
    flags: ['-DCMAKE_BUILD_TYPE=Debug', '-DCMAKE_CXX_COMPILER=clang++-14', '-DRAFTSTORE_FUZZ=ON', '-DRAFTSTORE_TESTS=OFF'],
    targets: ['fuzz_wire'],
  },
  addon: {},
};

const args = process.argv.slice(2);
const only = {
  '--release-only': 'release', '--asan-only': 'asan', '--tsan-only': 'tsan', '--fuzz-only': 'fuzz', '--addon-only': 'addon',
};
const unknown = args.filter((a) => !(a in only));
if (unknown.length > 0 || args.length > 1) {
  console.error(`build: unexpected arguments: ${args.join(' ')}`);
  console.error('usage: node scripts/build.mjs [--release-only | --asan-only | --tsan-only | --fuzz-only | --addon-only]');
  process.exit(2);
}
const names = args[0] ? [only[args[0]]] : Object.keys(trees);

function run(cmd, cmdArgs) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`;
    console.error(`build: FAILED: ${cmd} ${cmdArgs.join(' ')} (${why})`);
    process.exit(r.status || 1);
  }
}

function buildAddon() {
  // cmake-js finds Node's headers in node-api-headers (package.json "binary"), offline.
  // Resolved as Node would: in an installed package, cmake-js sits beside it, not inside it.
  const cmakeJs = createRequire(`${root}/package.json`).resolve('cmake-js/bin/cmake-js');
  console.log('build: building build/addon (cmake-js)');
  run(process.execPath, [cmakeJs, 'compile', '--out', 'build/addon', '--generator', 'Ninja',
    '--target', 'raftstore_addon', '--CDRAFTSTORE_TESTS=OFF', '--CDCMAKE_BUILD_TYPE=RelWithDebInfo']);
}

for (const name of names) {
  if (name === 'addon') {
    buildAddon();
    continue;
  }
  const { dir, flags, targets = [] } = trees[name];
  if (!existsSync(`${root}/${dir}/build.ninja`)) {
    console.log(`build: configuring ${dir}`);
    run('cmake', ['-S', '.', '-B', dir, '-G', 'Ninja', ...flags]);
  }
  console.log(`build: building ${dir}`);
  const jobs = process.env.BUILD_JOBS ? ['-j', process.env.BUILD_JOBS] : [];
  run('ninja', ['-C', dir, ...jobs, ...targets]);
}
