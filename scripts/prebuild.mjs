#!/usr/bin/env node
// Puts the built addon where node-gyp-build looks for a prebuild
// (prebuilds/<platform>-<arch>/raftstore.napi.node), so that the package `npm pack` makes
// installs without a compiler. Run by `prepack`, after the addon is built.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = `${root}/build/Release/raftstore.node`;
if (!existsSync(built)) {
  console.error(`prebuild: ${built} is missing; run node scripts/build.mjs --addon-only`);
  process.exit(1);
}
const dir = `${root}/prebuilds/${process.platform}-${process.arch}`;
mkdirSync(dir, { recursive: true });
copyFileSync(built, `${dir}/raftstore.napi.node`);
// Without debug info it is a tenth of the size (binutils' strip; keep it whole if absent).
spawnSync('strip', ['--strip-debug', `${dir}/raftstore.napi.node`], { stdio: 'inherit' });
console.log(`prebuild: ${dir}/raftstore.napi.node`);
