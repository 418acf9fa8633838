#!/usr/bin/env node
// Makes the prebuilds the npm package ships, with prebuildify: for each architecture it calls
// scripts/prebuild/cmake-js-build.mjs where it would call node-gyp, then files the result as
// prebuilds/linux-<arch>/raftstore.glibc.node, where node-gyp-build looks. Run by `prepack`
// and by `npm test` (test/prebuilds.test.ts checks what it made). docs/prebuilds.md.
// Usage: node scripts/prebuild.mjs [x64] [arm64]   (default: both)
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const arches = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['x64', 'arm64'];
const prebuildify = createRequire(`${root}package.json`).resolve('prebuildify/bin.js');
// prebuildify takes build/Release/raftstore.node; this machine's own (dev) build is kept aside
// meanwhile and put back after, so neither is ever taken for the other.
const dev = `${root}build/Release/raftstore.node`;
const aside = `${root}build/Release/raftstore.node.dev`;
if (existsSync(dev)) renameSync(dev, aside);
process.on('exit', () => {
  if (existsSync(aside)) renameSync(aside, dev);
});
for (const arch of arches) {
  console.log(`prebuild: linux-${arch}`);
  // One N-API target: the addon is built once for every Node version (package.json "binary").
  const r = spawnSync(process.execPath, [prebuildify, '--napi', '--target', 'node@20.0.0', '--tag-libc',
    '--arch', arch, '--node-gyp', `${root}scripts/prebuild/cmake-js-build.mjs`], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`prebuild: FAILED for linux-${arch} (${r.error?.message ?? `exit code ${r.status}`})`);
    process.exit(r.status || 1);
  }
}
