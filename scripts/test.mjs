#!/usr/bin/env node
// `npm test`: builds both native trees, then runs every suite, streaming each one's output
// while capturing it to count results. Ends with the plain line `N passed, N failed` (the
// line CI reads) and exits non-zero if anything failed or any step crashed.
//
// Env: SIM_SEEDS (release simulator schedules, default 5000), ASAN_SIM_SEEDS (sanitized
// simulator schedules, default 1000), MUTANT_BUDGET (schedules per mutant, default 5000),
// FUZZ_SECONDS (libFuzzer run on the wire decoders, default 60).
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

function countFromEnv(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  if (!/^[1-9][0-9]*$/.test(v)) {
    console.error(`test: ${name} must be a positive integer, got "${v}"`);
    process.exit(2);
  }
  return Number(v);
}
const simSeeds = countFromEnv('SIM_SEEDS', 5000);
const asanSeeds = countFromEnv('ASAN_SIM_SEEDS', 1000);
const mutantBudget = countFromEnv('MUTANT_BUDGET', 5000);
const fuzzSeconds = countFromEnv('FUZZ_SECONDS', 60);

let passed = 0;
let failed = 0;
const results = []; // one line per step, repeated at the end

// Runs cmd with output streamed to ours and captured; never rejects.
function run(cmd, args) {
  return new Promise((resolve) => {
    let text = '';
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const [from, to] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
      from.setEncoding('utf8');
      from.on('data', (chunk) => {
        to.write(chunk);
        text += chunk;
      });
    }
    child.on('error', (error) => resolve({ code: null, signal: null, error, text }));
    child.on('close', (code, signal) => resolve({ code, signal, text }));
  });
}

function exitNote(r) {
  if (r.error) return `could not start: ${r.error.message}`;
  return r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
}

// Runs one step. `judge(r, text)` turns its outcome into { passed, failed, note }; text has
// colour codes stripped so the patterns match whether or not colours were on.
async function step(title, cmd, args, judge) {
  console.log(`\n===== ${title}: ${cmd} ${args.join(' ')}`);
  const r = await run(cmd, args);
  const text = r.text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const out = judge(r, text);
  passed += out.passed;
  failed += out.failed;
  const line = `${title}: ${out.passed} passed, ${out.failed} failed${out.note ? ` (${out.note})` : ''}`;
  results.push(line);
  console.log(`===== ${line}`);
  return out.failed === 0;
}

function skip(title, why) {
  results.push(`${title}: skipped (${why})`);
  console.log(`\n===== ${title}: skipped (${why})`);
}

// A build is not a test: it counts only when it fails (as one failure).
const judgeBuild = (r) =>
  r.code === 0 ? { passed: 0, failed: 0, note: 'built' } : { passed: 0, failed: 1, note: exitNote(r) };

function judgeCtest(r, text) {
  const m = /(\d+)% tests passed, (\d+) tests? failed out of (\d+)/.exec(text);
  if (m) {
    const f = Number(m[2]);
    const p = Number(m[3]) - f;
    // A non-zero exit with no failed test means ctest itself broke: count that too.
    if (r.code !== 0 && f === 0) return { passed: p, failed: 1, note: exitNote(r) };
    return { passed: p, failed: f };
  }
  if (r.code === 0 && /No tests were found/.test(text)) return { passed: 0, failed: 0, note: 'no unit tests found' };
  return { passed: 0, failed: 1, note: `no ctest summary, ${exitNote(r)}` };
}

function judgeGtest(r, text) {
  const p = Number(/^\[  PASSED  \] (\d+) tests?/m.exec(text)?.[1] ?? 0);
  const f = Number(/^\[  FAILED  \] (\d+) tests?, listed below/m.exec(text)?.[1] ?? 0);
  if (r.code !== 0 && f === 0) return { passed: p, failed: 1, note: exitNote(r) };
  return { passed: p, failed: f };
}

// One simulator run is one check: it passes on exit 0 with a `sim: N schedules, 0 violations` line.
function judgeSim(r, text) {
  const lines = text.split('\n').filter((l) => /^(sim|rate): /.test(l));
  const clean = /^sim: \d+ schedules, 0 violations$/m.test(text);
  const note = [...lines, r.code === 0 ? '' : exitNote(r)].filter(Boolean).join('; ');
  return r.code === 0 && clean ? { passed: 1, failed: 0, note } : { passed: 0, failed: 1, note };
}

// Each `mutant NAME caught ...` line is a pass, each `mutant NAME NOT caught ...` a failure.
function judgeMutants(r, text) {
  let p = 0;
  let f = 0;
  for (const m of text.matchAll(/^mutant\s+\S+\s+(NOT caught|caught)\b/gm)) {
    if (m[1] === 'caught') p += 1;
    else f += 1;
  }
  const summary = /^mutants: .*$/m.exec(text)?.[0];
  if (r.code !== 0 && f === 0) return { passed: p, failed: 1, note: exitNote(r) };
  return { passed: p, failed: f, note: summary };
}

function judgeMocha(r, text) {
  const p = Number(/^\s*(\d+) passing/m.exec(text)?.[1] ?? 0);
  const f = Number(/^\s*(\d+) failing/m.exec(text)?.[1] ?? 0);
  const pending = Number(/^\s*(\d+) pending/m.exec(text)?.[1] ?? 0);
  const note = pending ? `${pending} pending` : undefined;
  if (r.code !== 0 && f === 0) return { passed: p, failed: 1, note: exitNote(r) };
  return { passed: p, failed: f, note };
}

// libFuzzer exits 0 after -max_total_time with a `Done N runs` line; a crash is a failure
// (it leaves crash-* with the input, and prints how to reproduce).
function judgeFuzz(r, text) {
  const done = /^Done (\d+) runs in (\d+) second/m.exec(text);
  if (r.code === 0 && done) return { passed: 1, failed: 0, note: `${done[1]} inputs in ${done[2]} s` };
  return { passed: 0, failed: 1, note: exitNote(r) };
}

// clang-format must have nothing to change (`npm run format` fixes it).
const judgeFormat = (r) =>
  r.code === 0 ? { passed: 1, failed: 0 } : { passed: 0, failed: 1, note: `npm run format fixes it; ${exitNote(r)}` };

async function main() {
  // The Debian packages only tests need (setup.sh installs those of the addon and the demo).
  await step('test packages', 'bash', ['scripts/setup.sh', '--tests'], judgeBuild);

  const sources = ['native', 'bench'].flatMap((dir) =>
    readdirSync(`${root}/${dir}`, { recursive: true })
      .filter((f) => /\.(h|cpp)$/.test(f)).map((f) => `${dir}/${f}`));
  await step('clang-format', 'clang-format', ['--dry-run', '--Werror', ...sources], judgeFormat);

  const build = (flag) => [process.execPath, ['scripts/build.mjs', flag]];
  // Built separately so that one broken tree still lets the other tree's steps run.
  const releaseOk = await step('build release', ...build('--release-only'), judgeBuild);
  const asanOk = await step('build asan', ...build('--asan-only'), judgeBuild);

  if (asanOk) {
    await step('unit tests (ASan+UBSan)', 'ctest',
      ['--test-dir', 'build/asan', '--output-on-failure', '-j2'], judgeCtest);
    await step('simulator (ASan+UBSan)', 'build/asan/raftstore-sim',
      ['--seeds', String(asanSeeds), '--start', '100001'], judgeSim);
  } else {
    skip('unit tests (ASan+UBSan)', 'asan build failed');
    skip('simulator (ASan+UBSan)', 'asan build failed');
  }

  const tsanOk = await step('build tsan', ...build('--tsan-only'), judgeBuild);
  if (tsanOk) {
    await step('transport and runtime (TSan)', 'build/tsan/rpc_tests', ['--gtest_brief=1'], judgeGtest);
  } else {
    skip('transport and runtime (TSan)', 'tsan build failed');
  }

  const fuzzOk = await step('build fuzz', ...build('--fuzz-only'), judgeBuild);
  if (fuzzOk) {
    // A fresh corpus from the seeds each run, and a fixed seed: the same inputs every time.
    const corpus = `${root}/build/fuzz/corpus`;
    rmSync(corpus, { recursive: true, force: true });
    mkdirSync(corpus, { recursive: true });
    process.env.FUZZ_SEED_DIR = corpus;
    await step('fuzz wire decoders (libFuzzer)', 'build/fuzz/fuzz_wire',
      [`-max_total_time=${fuzzSeconds}`, '-seed=1', '-rss_limit_mb=2048', `-artifact_prefix=${root}/build/fuzz/`, corpus],
      judgeFuzz);
    delete process.env.FUZZ_SEED_DIR;
  } else {
    skip('fuzz wire decoders (libFuzzer)', 'fuzz build failed');
  }

  if (releaseOk) {
    await step('simulator (release)', 'build/release/raftstore-sim',
      ['--seeds', String(simSeeds)], judgeSim);
    await step('mutants', 'build/release/raftstore-sim',
      ['--mutants', '--budget', String(mutantBudget)], judgeMutants);
  } else {
    skip('simulator (release)', 'release build failed');
    skip('mutants', 'release build failed');
  }

  // The prebuilds the package ships (linux-x64 and linux-arm64, cross-compiled against a
  // Debian 11 sysroot), Debian's arm64 Node to run one under qemu-user, and dist/ for that
  // run: test/prebuilds.test.ts checks them.
  await step('build prebuilds', process.execPath, ['scripts/prebuild.mjs'], judgeBuild);
  await step('arm64 Node for qemu', 'bash', ['scripts/prebuild/arm64-node.sh'], judgeBuild);
  await step('compile dist', 'npx', ['--no', '--', 'tsc', '-p', 'tsconfig.build.json'], judgeBuild);

  // The Node addon (cmake-js); mocha's RaftNode suites load it.
  await step('build addon', ...build('--addon-only'), judgeBuild);

  await step('typecheck', 'npx', ['--no', '--', 'tsc', '--noEmit'], (r) =>
    r.code === 0 ? { passed: 1, failed: 0 } : { passed: 0, failed: 1, note: exitNote(r) });
  // --no: never try to download mocha; it comes from devDependencies.
  await step('mocha', 'npx', ['--no', 'mocha', '--reporter=spec',
    ...(process.stdout.isTTY ? ['--color'] : [])], judgeMocha);

  // The packed tarball in a Debian 11 root with Node and no compiler: install, elect, replicate.
  await step('install in a clean root', 'bash', ['scripts/install-test.sh'], (r, text) =>
    r.code === 0 && /^install-test: ok$/m.test(text)
      ? { passed: 1, failed: 0, note: /^smoke: .*$/m.exec(text)?.[0] }
      : { passed: 0, failed: 1, note: exitNote(r) });
}

try {
  await main();
} catch (err) {
  // A bug in this script must not look like a green run.
  console.error(err);
  failed += 1;
  results.push(`test.mjs: crashed (${err instanceof Error ? err.message : String(err)})`);
}
console.log('\n===== summary');
for (const line of results) console.log(`  ${line}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
