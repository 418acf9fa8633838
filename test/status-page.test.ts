// The live status page (GET / on a replica's port) in a real browser: Debian's chromium driven
// by playwright-core (both installed by scripts/setup.sh --tests). Three replicas, each its
// own process; the page is opened on a follower, the leader is SIGKILLed, and the page must
// show the new leader by itself, with no console errors. It leaves a screenshot of the new
// leader's page at build/status-page.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ChildReplica, portBlock } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const fixture = fileURLToPath(new URL('./fixtures/replica.ts', import.meta.url));
export const SCREENSHOT = fileURLToPath(new URL('../build/status-page.png', import.meta.url));

interface Shown {
  role: string | null;
  leader: string | null;
  peers: string[];
}

describe('the status page in headless Chromium', function () {
  this.timeout(120_000);
  let dir = '';
  let replicas: ChildReplica[] = [];
  let browser: Browser | undefined;

  before(function () {
    // Not a silent skip: without the browser this suite fails and says how to install it.
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run bash scripts/setup.sh --tests`);
  });

  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    for (const r of replicas) r.kill();
    replicas = [];
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the leader and its peers, and the new leader after the old one is killed', async () => {
    const base = await portBlock(3);
    dir = mkdtempSync(join(tmpdir(), 'raftstore-page-'));
    const ports = [base, base + 1, base + 2];
    const config = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    // group config port dir electionTimeoutMs stuckApplyTimeoutMs snapshotLogThreshold
    replicas = ports.map((port, i) => new ChildReplica(fixture, port, ['page', config, String(port), join(dir, String(i)), '500', '30000', '40']));
    await Promise.all(replicas.map((r) => r.start()));
    const roles = async (): Promise<string[]> =>
      Promise.all(replicas.map(async (r) => {
        const reply = await r.call('status');
        return reply.ok ? (reply.result as { role: string }).role : 'gone';
      }));
    let now = await roles();
    for (let i = 0; i < 150 && !now.includes('leader'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await roles();
    }
    const li = now.indexOf('leader');
    assert.ok(li >= 0, 'a leader was elected');
    for (let i = 0; i < 50; i++) assert.ok((await replicas[li]!.call('propose', { n: 1 })).ok);
    const oldLeader = `127.0.0.1:${ports[li]}:0:0`;
    const fi = (li + 1) % 3;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const errors: string[] = [];
    const pages: Page[] = [];
    const open = async (port: number): Promise<Page> => {
      const page = await browser!.newPage({ viewport: { width: 1100, height: 900 } });
      page.on('console', (m) => { if (m.type() === 'error') errors.push(`${port}: ${m.text()}`); });
      page.on('pageerror', (e) => errors.push(`${port}: ${e.message}`));
      await page.goto(`http://127.0.0.1:${port}/`);
      pages.push(page);
      return page;
    };
    // Browser-side code as strings: this file is type-checked without the DOM's types.
    const shown = (page: Page): Promise<Shown> => page.evaluate(`(() => {
      const g = document.querySelector('section.group[data-group="page"]');
      return {
        role: g?.getAttribute('data-role') ?? null,
        leader: g?.getAttribute('data-leader') || null,
        peers: [...(g?.querySelectorAll('table.peers tr[data-peer]') ?? [])].map((r) => r.getAttribute('data-peer')),
      };
    })()`);
    const chartPoints = `(document.querySelector('table.peers svg.spark polyline')?.getAttribute('points') ?? '').split(' ').length`;
    const leaderPage = await open(ports[li]!);
    const followerPage = await open(ports[fi]!);
    await leaderPage.waitForSelector('section.group[data-group="page"]');
    await followerPage.waitForSelector('section.group[data-group="page"]');
    const onLeader = await shown(leaderPage);
    assert.equal(onLeader.role, 'leader');
    assert.equal(onLeader.leader, oldLeader);
    assert.deepEqual(onLeader.peers.sort(), ports.filter((_, i) => i !== li).map((p) => `127.0.0.1:${p}:0:0`).sort());
    assert.equal(await leaderPage.locator('table.peers svg.spark').count(), 2, 'a lag chart per peer');
    // The replica keeps a sample a second: the chart grows while the page watches.
    await leaderPage.waitForFunction(`${chartPoints} >= 3`, undefined, { timeout: 10_000 });
    const onFollower = await shown(followerPage);
    assert.equal(onFollower.role, 'follower');
    assert.equal(onFollower.leader, oldLeader);
    const events = await leaderPage.locator('ol.events li').allTextContents();
    assert.ok(events.some((e) => /became leader term=\d+/.test(e)), `events: ${events.join(' | ')}`);
    await leaderPage.close();

    replicas[li]!.kill(); // SIGKILL
    const start = Date.now();
    let after: Shown = onFollower;
    while (Date.now() - start < 20_000) {
      after = await shown(followerPage);
      if (after.leader && after.leader !== oldLeader) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(after.leader && after.leader !== oldLeader, `the page showed a new leader (it shows ${after.leader})`);
    const newLeader = ports.findIndex((p) => after.leader === `127.0.0.1:${p}:0:0`);
    assert.notEqual(newLeader, li);
    // The new leader's own reply agrees with what the page shows.
    const reply = await replicas[newLeader]!.call('status');
    assert.ok(reply.ok && (reply.result as { leaderId: string }).leaderId === after.leader);
    const text = await followerPage.locator('body').innerText();
    assert.match(text, /leader changed/, 'the leader change is among the recent events');
    // The new leader's page: the killed peer marked late, the live one caught up, charts
    // drawn from the replica's minute of samples. It is the screenshot.
    const newPage = await open(ports[newLeader]!);
    await newPage.waitForFunction(
      `document.querySelector('tr[data-peer="${oldLeader}"]')?.classList.contains('late') && ${chartPoints} >= 3`,
      undefined, { timeout: 15_000 });
    mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
    await newPage.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(errors, [], 'no console errors');
    console.log(`      screenshot: ${SCREENSHOT}`);
  });
});
