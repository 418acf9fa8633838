// The live status page at GET / on every replica's port: one HTML document with its script
// and style inline (no build step, no external assets). It polls /status.json (status.cpp)
// every second; each peer's chart is the minute of lag the replica keeps. Everything from
// the replica is set as text, never as markup.

#include "node_host_internal.h"

namespace raftstore::runtime {

const std::string& status_page_html() {
  static const std::string page = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>raftstore status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
           align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  #state { margin-left: auto; font-size: 13px; }
  #state.down { color: #ff8a80; font-weight: 600; }
  main { padding: 16px 20px; display: grid; gap: 16px; }
  section.group { background: #fff; border: 1px solid #d9dde5; border-radius: 6px; padding: 12px 16px; }
  section.group h2 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 10px; align-items: center; }
  .role { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #e3e7ee; }
  .role.leader { background: #c8f0d0; } .role.candidate { background: #ffe0a3; }
  .role.learner { background: #dfe3ff; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 10px; }
  dt { color: #5b6478; } dd { margin: 0; font-family: ui-monospace, monospace; }
  table { border-collapse: collapse; margin: 6px 0 10px; }
  th, td { text-align: left; padding: 3px 10px 3px 0; font-size: 13px; }
  th { color: #5b6478; font-weight: 500; border-bottom: 1px solid #d9dde5; }
  td { font-family: ui-monospace, monospace; }
  svg.spark { vertical-align: middle; }
  .joint { color: #b35c00; font-weight: 600; }
  ol.events { margin: 0; padding-left: 0; list-style: none; max-height: 220px; overflow: auto;
              font-size: 13px; }
  ol.events li { padding: 1px 0; font-family: ui-monospace, monospace; }
  .warn { color: #9a5b00; } .error { color: #b00020; }
  tr.late td { color: #b00020; }
  .muted { color: #7a8296; }
</style>
</head>
<body>
<header><h1>raftstore</h1><span id="address"></span><span id="state">loading…</span></header>
<main id="groups"></main>
<script>
'use strict';
const HISTORY = 60;  // samples, one a second, as the replica keeps them

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function spark(values) {
  const w = 120, h = 24, max = Math.max(1, ...values);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  // Right-aligned: the newest sample at the right edge, one step a second.
  const x0 = (HISTORY - values.length) * w / (HISTORY - 1);
  const pts = values.map((v, i) => `${(x0 + i * w / (HISTORY - 1)).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', pts.join(' '));
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#3867d6');
  line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
  title.textContent = `lag over the last ${values.length} s (max ${max})`;
  svg.append(title);
  return svg;
}

function peers(list) { return list.length ? list.join(', ') : '—'; }

function pageOf(peerId) {  // ip:port:idx -> that replica's status page
  const [ip, port] = peerId.split(':');
  return `http://${ip}:${port}/`;
}

function renderGroup(g) {
  const s = el('section', { class: 'group', 'data-group': g.group, 'data-role': g.role,
                            'data-leader': g.leader || '', 'data-term': g.term });
  s.append(el('h2', {}, g.group, el('span', { class: `role ${g.role}` }, g.role),
              el('span', { class: 'muted' }, g.peer)));
  const leader = g.leader ? el('a', { href: pageOf(g.leader) }, g.leader) : 'none known';
  const conf = el('dd', {}, peers(g.conf.peers));
  if (g.conf.joint) conf.append(el('span', { class: 'joint' }, ` joint: old ${peers(g.conf.old_peers)}`));
  s.append(el('dl', {},
    el('dt', {}, 'term'), el('dd', {}, g.term),
    el('dt', {}, 'leader'), el('dd', { class: 'leader' }, leader),
    el('dt', {}, 'voters'), conf,
    el('dt', {}, 'learners'), el('dd', {}, peers(g.conf.learners)),
    el('dt', {}, 'log'), el('dd', {}, `first ${g.first_index} · last ${g.last_index} · committed ${g.commit_index} · applied ${g.applied_index} · snapshot ${g.snapshot_index}`)));
  if (g.role === 'leader') {
    const rows = g.peers.map((p) => {
      const contact = p.last_contact_ms === null ? 'never' : `${(p.last_contact_ms / 1000).toFixed(2)} s ago`;
      const late = p.last_contact_ms === null || p.last_contact_ms > 2000;
      return el('tr', { 'data-peer': p.id, class: late ? 'late' : '' }, el('td', {}, p.id),
                el('td', {}, p.match_index), el('td', { class: 'lag' }, p.lag), el('td', {}, contact),
                el('td', {}, p.state), el('td', {}, spark(p.lag_history.length ? p.lag_history : [p.lag])));
    });
    s.append(el('table', { class: 'peers' },
      el('tr', {}, ...['peer', 'match', 'lag (entries)', 'last contact', 'state', 'lag history'].map((t) => el('th', {}, t))),
      ...rows));
  } else {
    s.append(el('p', { class: 'muted' }, 'Each peer\'s progress is shown on the leader\'s page.'));
  }
  const events = el('ol', { class: 'events' });
  for (const e of [...g.events].reverse()) {
    const fields = Object.entries(e.fields).map(([k, v]) => `${k}=${v}`).join(' ');
    events.append(el('li', { class: e.level },
      `${new Date(e.time_ms).toISOString().slice(11, 23)} ${e.level.padEnd(5)} ${e.message} ${fields}`));
  }
  s.append(el('h3', { class: 'muted' }, 'recent events'), events);
  return s;
}

async function refresh() {
  const state = document.getElementById('state');
  try {
    const r = await fetch('/status.json', { cache: 'no-store' });
    const data = await r.json();
    document.getElementById('address').textContent = data.address;
    document.title = `raftstore ${data.address}`;
    const groups = document.getElementById('groups');
    groups.replaceChildren(...data.groups.map(renderGroup));
    if (!data.groups.length) groups.append(el('p', { class: 'muted' }, 'No group runs on this port.'));
    state.textContent = `updated ${new Date(data.time_ms).toISOString().slice(11, 19)} UTC`;
    state.className = '';
  } catch (err) {
    state.textContent = 'this replica does not answer';
    state.className = 'down';
  }
  setTimeout(refresh, 1000);
}
refresh();
</script>
</body>
</html>
)html";
  return page;
}

}  // namespace raftstore::runtime
