#!/usr/bin/env node
// raftstore's `npm install` step. Where a prebuild loads (linux-x64 and linux-arm64 with
// glibc 2.28 or newer) there is nothing to do. Anywhere else the addon is built from source,
// which needs cmake-js and node-addon-api: they are optional peer dependencies, so the usual
// install does not download a build system it never runs (docs/prebuilds.md).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(`${root}package.json`);
let why;
try {
  require('node-gyp-build')(root);
  process.exit(0);
} catch (err) {
  why = err instanceof Error ? err.message.split('\n')[0] : String(err);
}
console.log(existsSync(`${root}prebuilds`)
  ? `raftstore: no prebuilt addon loads here (${why}); building it from source`
  : 'raftstore: building the addon from source (this copy has no prebuilds, as a clone has none)');
const missing = ['cmake-js', 'node-addon-api'].filter((name) => {
  try {
    require.resolve(`${name}/package.json`);
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) {
  console.error(`raftstore: the source build needs ${missing.join(' and ')}: npm install ${missing.join(' ')}, then`);
  console.error('npm rebuild raftstore. It also needs g++ 12 (C++20), cmake 3.25, ninja, protobuf (protoc and');
  console.error('headers) and asio; on Debian: apt install g++ cmake ninja-build libprotobuf-dev protobuf-compiler libasio-dev');
  process.exit(1);
}
const r = spawnSync(process.execPath, [`${root}scripts/build.mjs`, '--addon-only'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
