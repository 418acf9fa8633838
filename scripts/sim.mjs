#!/usr/bin/env node
// `npm run sim -- <args>`: brings build/release up to date, then runs the simulator with
// the given arguments (e.g. `--seed 42 --trace`, the replay line a failure prints).
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function run(cmd, args, stdio = 'inherit') {
  const r = spawnSync(cmd, args, { cwd: root, stdio });
  if (r.error) {
    console.error(`sim: cannot run ${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  // A signal death keeps the shell's 128+N convention, so callers still see a crash.
  if (r.signal) {
    console.error(`sim: ${cmd} killed by ${r.signal}`);
    process.exit(128 + (constants.signals[r.signal] ?? 0));
  }
  return r.status;
}

// Build chatter goes to stderr so that `npm run sim -- ... > trace.txt` keeps only the sim's.
const built = run(process.execPath, ['scripts/build.mjs', '--release-only'], [0, 2, 2]);
if (built !== 0) process.exit(built);
process.exit(run('build/release/raftstore-sim', process.argv.slice(2)));
