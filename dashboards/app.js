// qt45-colony dashboard: the whole colony on any node's page.
//
// Live: one EventSource per node: this node's /v1/events, and each peer's (the peer URLs come
// from /v1/colony; /v1/events and /health are read-only and send Access-Control-Allow-Origin, so
// the browser reads them directly). Merging in the browser keeps the nodes simple (no node relays
// another's stream, nothing to fan out or re-sequence server-side), and the page still works when
// a peer is down: its stream reconnects on its own, the others go on.
// State: /v1/colony is a summary (size bounded by peers); the functions table and its fitness are
// loaded page by page (/v1/functions, /v1/colony/fitness) at start and every FULL_RELOAD_MS, and
// one function at a time when this node's events say it changed.
// Built with DOM calls and textContent only: names and reasons never become HTML.
'use strict';

const REFRESH_MS = 12000;        // the colony summary and the peers' /health
const FULL_RELOAD_MS = 60000;    // the paged functions table, in full
const MIN_REFRESH_GAP_MS = 1500; // event-triggered refreshes are at most this frequent
const FUNCTION_UPDATE_MS = 1200; // the colony view is rebuilt within ~1 s of a change
const RECONNECT_MS = 3000;
const WINDOW_BUCKETS = 90;       // charts: 90 × 10 s = 15 minutes at most
const MIN_BUCKETS = 18;
const MAX_ROWS = 60;
const SOURCES = [
  {key: 'task:cache', label: 'library', color: '#2f7d5b'},
  {key: 'task:search', label: 'search', color: '#5aa469'},
  {key: 'task:peer', label: 'peer', color: '#3a7bd5'},
  {key: 'task:synthesized', label: 'synthesized', color: '#e08a2e'},
  {key: 'task:mutated', label: 'mutated', color: '#a35bd1'},
];
const KINDS = ['task', 'task.failed', 'synthesis.started', 'synthesis.finished',
               'synthesis.failed', 'synthesis.ambiguous', 'synthesis.guess',
               'function.corrected', 'function.aliased', 'variant.stored', 'variant.adopted',
               'variant.quarantined', 'variant.retired', 'variant.failed', 'peer.up', 'peer.down',
               'test.conflict', 'test.resolved'];
const FAILURE_KINDS = new Set(['task.failed', 'synthesis.failed', 'synthesis.ambiguous',
                               'variant.quarantined', 'variant.failed', 'peer.down',
                               'test.conflict']);
const NODE_COLORS = ['#3a7bd5', '#e08a2e', '#2f9e5b', '#a35bd1', '#c8423b', '#1b9aaa',
                     '#8c6d31', '#d45d9e'];
const BASIS = {  // evidence basis of an answer → badge
  'disambiguated': {cls: 'ok', label: 'disambiguated',
                    title: 'unique among candidates on the distinguishing inputs'},
  'fits-examples': {cls: 'warn', label: 'fits examples', title: 'only known to fit its examples'},
  'guess': {cls: 'bad', label: 'guess', title: 'a best guess: never stored or shared'},
};

const S = {
  colony: null, functions: [], functionsMore: false, fitness: {},
  nodes: new Map(),  // stream key (node URL) → per-node stream state
  health: {},        // node URL → {search, ok}
  selected: null, lineage: null, lastRefresh: 0, refreshTimer: null,
  fnTimers: new Map(), taskTimes: [], bucketS: 10,
};

// ---------------------------------------------------------------- small DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = id => document.getElementById(id);
const short = fp => (fp || '').replace(/^sha256:/, '').slice(0, 10);
const clock = t => new Date(t * 1000).toTimeString().slice(0, 8);
const ago = s => s === null || s === undefined ? 'never' :
  s < 1 ? 'now' : s < 90 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`;
const bare = url => (url || '').replace(/^https?:\/\//, '');
const fmt = n => n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(n);
const badge = (text, cls, title) => h('span', {class: `badge ${cls}`, title}, text);

function setKpi(id, value, title) {
  const el = $(id);
  const b = el.querySelector('.value');
  const text = String(value);
  if (b.textContent !== text) {
    b.textContent = text;
    el.classList.remove('flash');
    void el.offsetWidth;  // restart the animation
    el.classList.add('flash');
  }
  if (title) el.title = title;
}

function nodeNames() {
  const names = {};
  const c = S.colony;
  if (!c) return names;
  names[c.node] = c.name;
  for (const p of c.peers || []) if (p.node) names[p.node] = p.name || p.url;
  return names;
}
const nodeColorCache = {};
function colorOf(nodeId) {
  if (!nodeId) return '#b8c0cc';
  if (!(nodeId in nodeColorCache)) {
    // this node first, then peers in the order the colony lists them
    const order = S.colony ? [S.colony.node, ...(S.colony.peers || []).map(p => p.node)] : [];
    const i = order.indexOf(nodeId);
    nodeColorCache[nodeId] = NODE_COLORS[(i >= 0 ? i : Object.keys(nodeColorCache).length) %
                                         NODE_COLORS.length];
  }
  return nodeColorCache[nodeId];
}
function nodeChip(nodeId) {
  const name = nodeNames()[nodeId] || short(nodeId) || '?';
  return h('span', {class: 'nodechip', 'data-node': nodeId, style: `border-color:${colorOf(nodeId)}`,
                    title: nodeId}, name);
}

// ---------------------------------------------------------------- live events, one stream per node
function streamUrl(base, n) {
  const q = n.seq > 0 && n.startedAt !== null ? `after=${n.seq}` : 'backlog=300';
  return `${base}/v1/events?${q}`;
}

function openStream(key, base, self) {
  let n = S.nodes.get(key);
  if (!n) {
    n = {key, base, self, id: null, es: null, timer: null, seq: 0, snapSeq: 0, startedAt: null,
         totals: {}, buckets: new Map(), live: false, wanted: true};
    S.nodes.set(key, n);
  }
  n.wanted = true;
  if (n.es || n.timer) return;
  const es = new EventSource(streamUrl(base, n));
  n.es = es;
  es.onopen = () => { n.live = true; renderConn(); };
  // reconnect by hand with ?after=<seq>: a cross-origin EventSource cannot rely on the
  // Last-Event-ID header (it is not CORS-safelisted), and a peer that is down must not spin
  es.onerror = () => {
    n.live = false;
    es.close();
    n.es = null;
    renderConn();
    if (n.wanted) n.timer = setTimeout(() => { n.timer = null; openStream(key, base, self); }, RECONNECT_MS);
  };
  es.addEventListener('snapshot', e => onSnapshot(n, JSON.parse(e.data)));
  es.addEventListener('lagged', () => { refresh(true); scheduleFullReload(); });
  for (const k of KINDS) es.addEventListener(k, e => onEvent(n, JSON.parse(e.data)));
}

function closeStream(key) {
  const n = S.nodes.get(key);
  if (!n) return;
  n.wanted = false;
  if (n.es) n.es.close();
  if (n.timer) clearTimeout(n.timer);
  S.nodes.delete(key);
}

function renderConn() {
  const all = [...S.nodes.values()];
  const live = all.filter(n => n.live).length;
  const self = all.find(n => n.self);
  const el = $('conn');
  if (!self || !self.live) {
    el.className = 'conn off';
    el.textContent = self && self.es ? 'reconnecting…' : 'disconnected';
  } else {
    el.className = 'conn live';
    el.textContent = 'live';
  }
  el.title = `live event streams: ${live} of ${all.length} nodes (GET /v1/events on each)`;
  $('streams').textContent = all.length > 1 ? `${live} / ${all.length} streams` : '';
}

function onSnapshot(n, snap) {
  if (n.startedAt !== null && snap.started_at !== n.startedAt) n.seq = 0;  // it restarted
  n.startedAt = snap.started_at;
  n.id = snap.node;
  n.snapSeq = snap.seq;
  n.totals = Object.assign({}, snap.totals);
  S.bucketS = snap.bucket_s || 10;
  n.buckets = new Map();
  for (const b of snap.timeline || []) {
    const {t, ...counts} = b;
    n.buckets.set(t, counts);
  }
  renderCounters();
  renderCharts();
}

function onEvent(n, ev) {
  ev.node = n.id;
  if (ev.seq > n.snapSeq) {  // replayed events are already in the snapshot's totals
    n.snapSeq = ev.seq;
    const keys = [ev.kind];
    if (ev.kind === 'task') keys.push(`task:${ev.source}`);
    const t = ev.at - (ev.at % S.bucketS);
    const b = n.buckets.get(t) || {};
    for (const k of keys) {
      n.totals[k] = (n.totals[k] || 0) + 1;
      b[k] = (b[k] || 0) + 1;
    }
    n.buckets.set(t, b);
    renderCounters();
    renderChartsSoon();
  }
  if (ev.seq <= n.seq) return;  // already listed (a reconnect replays from `after`)
  n.seq = ev.seq;
  if (ev.kind === 'task') {
    S.taskTimes.push(ev.at);
    addTaskRow(ev);
  } else if (FAILURE_KINDS.has(ev.kind)) {
    addFeed('failures', ev);
  } else {
    addFeed('activity', ev);
  }
  if (!n.self) return;
  // what this node serves changed: its summary soon, and that one function's row
  if (ev.kind.startsWith('variant.') || ev.kind.startsWith('peer.') || ev.kind.startsWith('test.') ||
      ev.kind.startsWith('function.') || ev.kind === 'synthesis.finished') {
    if (ev.function && !S.selected) S.selected = ev.function;
    refreshSoon();
    if (ev.function) updateFunctionSoon(ev.function);
    if (ev.alias) updateFunctionSoon(ev.alias);
  }
}

// ---------------------------------------------------------------- lists
function trim(el) {
  while (el.children.length > MAX_ROWS) el.removeChild(el.lastChild);
  for (const e of el.querySelectorAll('.empty')) e.remove();
}

function evidenceCell(ev, source) {
  const parts = [source, ' '];
  const basis = ev.guess ? 'guess' : ev.evidence_basis;
  const b = BASIS[basis];
  if (b) parts.push(badge(b.label, b.cls, b.title));
  else if (basis) parts.push(badge(basis, 'tier'));
  if (ev.corrected) parts.push(' ', badge('corrected', 'mutated', 'its tests grew: the function was re-synthesized'));
  return h('td', {class: 'evidence', 'data-basis': basis || ''}, parts);
}

function addTaskRow(ev) {
  const body = $('recent-tasks').tBodies[0];
  const src = ev.source || '?';
  const row = h('tr', {class: 'new', 'data-seq': ev.seq, 'data-source': src, 'data-node': ev.node || '',
                       'data-guess': ev.guess ? 'true' : 'false'},
    h('td', {class: 'mono'}, clock(ev.at)),
    h('td', {}, nodeChip(ev.node)),
    h('td', {title: ev.fingerprint || ''}, ev.function || '?',
      h('div', {class: 'muted small'}, ev.tier || '')),
    evidenceCell(ev, h('span', {class: `badge ${src}`}, src === 'cache' ? 'library' : src)),
    h('td', {class: 'num'}, typeof ev.elapsed_ms === 'number' ? ev.elapsed_ms.toFixed(1) : ''));
  body.insertBefore(row, body.firstChild);
  trim(body);
}

function describe(ev) {
  const fn = ev.function || ev.name || '';
  const who = ev.origin ? (nodeNames()[ev.origin] || short(ev.origin)) : '';
  switch (ev.kind) {
    case 'task.failed':
      return [badge('task failed', 'bad'), ` ${fn} ${ev.signature || ''}: `, ev.detail || ''];
    case 'synthesis.failed':
      return [badge('synthesis failed', 'bad'), ` ${fn} (${ev.synthesizer}): `, ev.detail || ''];
    case 'synthesis.ambiguous':
      return [badge('ambiguous', 'warn'), ` ${fn} ${ev.tier || ''}: the examples fit several programs`];
    case 'synthesis.guess':
      return [badge('guess', 'bad'), ` ${fn} ${ev.tier || ''}: answered with a best guess, not stored`];
    case 'function.corrected':
      return [badge('corrected', 'mutated'), ` ${fn}: +${ev.tests_added ?? '?'} tests from a task`];
    case 'function.aliased':
      return [badge('alias', 'tier'), ` ${ev.alias} → ${fn}`];
    case 'variant.quarantined':
      return [badge('quarantined', 'bad'), ` ${fn} ${ev.tier} ${short(ev.fingerprint)} from ${who}: `,
              ev.reason || ''];
    case 'variant.failed':
      return [badge('variant failed', 'bad'), ` ${fn} ${ev.tier || ''} ${short(ev.fingerprint)}: `,
              ev.reason || ev.detail || ''];
    case 'test.conflict':
      return [badge('test conflict', 'bad'), ` ${fn}: `, ev.reason || ''];
    case 'test.resolved':
      return [badge('conflict resolved', 'ok'), ` ${fn}: ${ev.status || ''}`];
    case 'peer.down':
      return [badge('peer down', 'bad'), ` ${ev.name || ev.url}`, ev.error ? `: ${ev.error}` : ''];
    case 'peer.up':
      return [badge('peer up', 'ok'), ` ${ev.name || ev.url}`];
    case 'synthesis.started':
      return [badge('synthesis', 'synthesized'), ` ${fn} ${ev.tier} by ${ev.synthesizer}…`];
    case 'synthesis.finished':
      return [badge('synthesized', 'synthesized'),
              ` ${fn} ${ev.tier} → ${short(ev.fingerprint)} in ${Math.round(ev.elapsed_ms)} ms` +
              (ev.llm_calls ? ` (${ev.llm_calls} LLM calls)` : '')];
    case 'variant.stored':
      return [badge(ev.parents && ev.parents.length ? 'mutant stored' : 'stored', 'mutated'),
              ` ${fn} ${ev.tier} ${short(ev.fingerprint)} (${ev.generator})`];
    case 'variant.adopted':
      return [badge('adopted', 'peer'), ` ${fn} ${ev.tier} ${short(ev.fingerprint)} from ${who}`];
    case 'variant.retired':
      return [badge('retired', 'warn'), ` ${fn} ${ev.tier} ${short(ev.fingerprint)}`];
    default:
      return [ev.kind];
  }
}

const feeds = {failures: [], activity: []};  // the events behind each list, newest first

function feedItem(ev, isNew) {
  return h('li', {class: isNew ? 'new' : '', 'data-kind': ev.kind, 'data-seq': ev.seq,
                  'data-node': ev.node || ''},
           h('span', {class: 'when mono'}, clock(ev.at)), nodeChip(ev.node), ' ', ...describe(ev));
}

function addFeed(id, ev) {
  const list = $(id);
  // merged streams arrive in any order: keep each list newest first by time
  let i = feeds[id].findIndex(x => x.at < ev.at);
  if (i < 0) i = feeds[id].length;
  feeds[id].splice(i, 0, ev);
  if (feeds[id].length > MAX_ROWS) feeds[id].length = MAX_ROWS;
  if (i >= MAX_ROWS) return;
  list.insertBefore(feedItem(ev, true), list.children[i] || null);
  trim(list);
}

// node names come with /v1/colony: redraw the feeds once they are known (at most 60 items)
function relabelFeeds() {
  for (const [id, evs] of Object.entries(feeds)) {
    if (evs.length) $(id).replaceChildren(...evs.map(ev => feedItem(ev, false)));
  }
  for (const chip of document.querySelectorAll('#recent-tasks .nodechip')) {
    const id = chip.getAttribute('data-node');
    chip.textContent = nodeNames()[id] || short(id) || '?';
    chip.style.borderColor = colorOf(id);
  }
}

// ---------------------------------------------------------------- counters and charts
function colonyTotals() {
  const t = {};
  for (const n of S.nodes.values()) for (const [k, v] of Object.entries(n.totals)) t[k] = (t[k] || 0) + v;
  return t;
}

function renderCounters() {
  const t = colonyTotals();
  const tasks = SOURCES.reduce((s, x) => s + (t[x.key] || 0), 0);
  const synthesized = t['task:synthesized'] || 0;
  setKpi('kpi-tasks', fmt(tasks));
  setKpi('kpi-synthesized', fmt(synthesized));
  setKpi('kpi-reuse', tasks ? `${Math.round(100 * (tasks - synthesized) / tasks)} %` : '–',
         'tasks served from the library, search, a peer or a mutant');
  setKpi('kpi-synth-calls', `${fmt(t['synthesis.started'] || 0)} (${fmt(t['synthesis.failed'] || 0)})`);
}

function renderRate() {
  const now = Date.now() / 1000;
  S.taskTimes = S.taskTimes.filter(x => now - x <= 10);
  const rate = S.taskTimes.length / 10;
  setKpi('kpi-rate', rate >= 10 ? rate.toFixed(0) : rate.toFixed(1));
}

function colonyBuckets() {
  const out = new Map();
  for (const n of S.nodes.values()) {
    for (const [t, counts] of n.buckets) {
      const b = out.get(t) || {};
      for (const [k, v] of Object.entries(counts)) b[k] = (b[k] || 0) + v;
      out.set(t, b);
    }
  }
  return out;
}

function windowBuckets(all) {
  const bs = S.bucketS;
  const now = Date.now() / 1000;
  const last = now - (now % bs);
  // a young colony gets wider bars: its lifetime (3 min at least), up to the 15-minute window
  const starts = [...S.nodes.values()].map(n => n.startedAt).filter(x => x !== null);
  const life = starts.length ? Math.ceil((now - Math.min(...starts)) / bs) + 1 : WINDOW_BUCKETS;
  const n = Math.max(MIN_BUCKETS, Math.min(WINDOW_BUCKETS, life));
  const out = [];
  for (let i = n - 1; i >= 0; i--) {
    const t = last - i * bs;
    out.push({t, values: all.get(t) || {}});
  }
  return out;
}

let chartsPending = false;
function renderChartsSoon() {
  if (chartsPending) return;
  chartsPending = true;
  requestAnimationFrame(() => { chartsPending = false; renderCharts(); });
}

function renderCharts() {
  const all = colonyBuckets();
  const buckets = windowBuckets(all);
  Charts.stackedBars($('chart-tasks'), buckets, SOURCES, {empty: 'no tasks in the last 15 min'});
  // the falling curve: synthesis calls per task answered, cumulative since the nodes started
  let calls = 0, tasks = 0;
  for (const [t, v] of all) {
    if (t >= buckets[0].t) continue;
    calls += v['synthesis.started'] || 0;
    tasks += SOURCES.reduce((s, x) => s + (v[x.key] || 0), 0);
  }
  const ratio = buckets.map(b => {
    calls += b.values['synthesis.started'] || 0;
    tasks += SOURCES.reduce((s, x) => s + (b.values[x.key] || 0), 0);
    return tasks ? calls / tasks : null;
  });
  const synthSeries = [
    {key: 'synthesis.finished', label: 'found', color: '#e08a2e'},
    {key: 'synthesis.failed', label: 'failed', color: '#c8423b'},
  ];
  // started-but-unfinished calls (still running, or a duplicate found) count as found here
  const sb = buckets.map(b => {
    const v = b.values;
    const started = v['synthesis.started'] || 0, failed = v['synthesis.failed'] || 0;
    return {t: b.t, values: {'synthesis.finished': Math.max(0, started - failed),
                             'synthesis.failed': Math.min(failed, started || failed)}};
  });
  Charts.stackedBars($('chart-synth'), sb, synthSeries, {
    empty: 'no synthesis in the last 15 min',
    line: {values: ratio, color: '#1f2a36', label: 'calls per task',
           max: Charts.niceMax(Math.max(1, ...ratio.filter(x => x !== null)))}});
}

function legends() {
  const item = (color, label) => h('span', {}, h('i', {style: `background:${color}`}), label);
  $('legend-tasks').replaceChildren(...SOURCES.map(s => item(s.color, s.label)));
  $('legend-synth').replaceChildren(item('#e08a2e', 'calls'), item('#c8423b', 'failed'),
                                    item('#1f2a36', 'calls per task (cumulative)'));
}

// ---------------------------------------------------------------- the colony summary
function refreshSoon() {
  if (S.refreshTimer) return;
  const wait = Math.max(0, S.lastRefresh + MIN_REFRESH_GAP_MS - Date.now());
  S.refreshTimer = setTimeout(() => { S.refreshTimer = null; refresh(true); }, wait);
}

async function getJson(url) {
  const r = await fetch(url, {headers: {Accept: 'application/json'}});
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function refresh(force) {
  if (!force && document.hidden) return;  // a background tab does not poll
  S.lastRefresh = Date.now();
  try {
    S.colony = await getJson('/v1/colony');
  } catch (err) {
    $('node-info').textContent = `cannot read the node: ${err.message}`;
    return;
  }
  syncStreams();
  renderNodes();
  relabelFeeds();
  renderQuarantine();
  renderConflicts();
  pollHealth();
}

// one stream per peer the colony lists (those that left are closed)
function syncStreams() {
  const c = S.colony;
  const keep = new Set(['self']);
  openStream('self', '', true);
  for (const p of c.peers || []) {
    // a peer that never answered gets no stream (nor a console full of failed connections);
    // one that went down keeps its stream, which reconnects on its own
    if (!p.url || (p.state !== 'up' && !S.nodes.has(p.url))) continue;
    keep.add(p.url);
    openStream(p.url, p.url.replace(/\/+$/, ''), false);
  }
  for (const key of [...S.nodes.keys()]) if (!keep.has(key)) closeStream(key);
  renderConn();
}

async function pollHealth() {
  const c = S.colony;
  S.health[c.url] = {search: c.search, ok: true};
  await Promise.all((c.peers || []).filter(p => p.url && p.state === 'up').map(async p => {
    try {
      const doc = await getJson(`${p.url.replace(/\/+$/, '')}/health`);
      S.health[p.url] = {search: doc.search || null, ok: !!doc.ok};
    } catch (err) {
      S.health[p.url] = {search: null, ok: false};
    }
  }));
  renderNodes();
}

function searchBadge(mode) {
  if (mode === 'semantic') return badge('semantic', 'ok', 'search understands paraphrases');
  if (mode === 'keyword-only') {
    return badge('keyword-only', 'warn', 'the embedding model is not loaded (yet): ' +
                 'a paraphrase finds nothing until it is');
  }
  return h('span', {class: 'muted'}, '?');
}

function renderNodes() {
  const c = S.colony;
  if (!c) return;
  document.title = `qt45-colony · ${c.name}`;
  $('node-name').textContent = c.name;
  const gpu = c.gpu && c.gpu.adapter ? ` · gpu ${c.gpu.adapter}` : '';
  $('node-info').textContent = `${c.node.slice(0, 12)} · ${c.url} · up ${Math.round(c.uptime_s)} s · ` +
    `search ${c.search || '?'} · synthesizers: ${(c.synthesizers || []).join(', ') || 'none'}${gpu}`;
  const mode = c.colony ? c.colony.mode : 'alone';
  $('colony-mode').textContent = mode === 'colony' ? `colony ${c.colony.colony_id}` :
    'this node runs alone (no colony key)';
  const peers = c.peers || [];
  const up = peers.filter(p => p.state === 'up').length;
  setKpi('kpi-peers', `${up} / ${peers.length}`);
  const body = $('peers').tBodies[0];
  const who = (name, id, url, link) => h('td', {class: 'who'}, h('b', {}, name || '?'),
    h('span', {class: 'muted mono'}, ` ${(id || '').slice(0, 8)}`),
    h('div', {class: 'mono url', title: url},
      link ? h('a', {href: `${url}/`, title: 'open its dashboard'}, bare(url)) : bare(url)));
  const rows = [h('tr', {'data-node': c.node, class: 'self', 'data-search': c.search || ''},
    h('td', {}, h('span', {class: 'dot self', title: 'this node'})),
    who(c.name, c.node, c.url, false),
    h('td', {}, searchBadge(c.search)),
    h('td', {}, 'this node'),
    h('td', {class: 'muted'}, c.sync ? `${c.sync.entries} entries` : ''))];
  for (const p of peers) {
    const health = S.health[p.url] || {};
    rows.push(h('tr', {'data-node': p.node || p.url, 'data-state': p.state,
                       'data-search': health.search || ''},
      h('td', {}, h('span', {class: `dot ${p.state}`, title: p.state})),
      who(p.name, p.node, p.url, true),
      h('td', {}, searchBadge(health.search)),
      h('td', {title: p.last_error || ''}, p.state === 'up' ? ago(p.last_ok_s_ago) :
        h('span', {class: 'badge bad'}, `${p.state}${p.failures ? ` ×${p.failures}` : ''}`)),
      h('td', {class: 'muted'}, `${p.rounds} rounds`, h('div', {}, `↓${p.pulled} ↑${p.pushed}`))));
  }
  body.replaceChildren(...rows);
  const s = c.sync || {};
  const queued = c.mutation_queue_count ?? (c.mutation_queue || []).length;
  $('sync-info').textContent = c.sync ?
    `sync: ${s.origins} origins · ${fmt(s.bytes_sent || 0)} B sent · ${fmt(s.bytes_received || 0)} B received` +
    (queued ? ` · ${queued} mutations queued` : '') : '';
  // issue 13: the colony's regime (explore/exploit), its inputs and the background work it chose
  const r = c.regime;
  if (r) {
    const work = (r.background || []).slice(0, 3).join('; ');
    $('sync-info').textContent += ` · regime: ${r.mode} (${r.needed_synthesis} synthesized + ` +
      `${r.failed} failed of ${r.recent_tasks} recent tasks, need ${r.need_ratio})` +
      (work ? ` · background: ${work}` : '');
  }
}

function renderQuarantine() {
  const c = S.colony || {};
  const q = c.quarantined || [];
  const total = c.quarantined_count ?? q.length;
  setKpi('kpi-quarantined', total);
  const names = nodeNames();
  const items = q.map(v => h('li', {'data-fp': v.fingerprint, 'data-origin': v.origin || ''},
      h('b', {}, v.function), ` ${v.tier} `, h('span', {class: 'mono'}, short(v.fingerprint)),
      ' from ', nodeChip(v.origin), ': ', v.reason || ''));
  if (total > q.length) {
    items.push(h('li', {class: 'muted'}, h('a', {href: '/v1/colony/quarantined', target: '_blank'},
      `${total - q.length} more (GET /v1/colony/quarantined)`)));
  }
  $('quarantined').replaceChildren(...(items.length ? items : [h('li', {class: 'empty'}, 'none')]));
  void names;
}

function renderConflicts() {
  const c = S.colony || {};
  const list = c.conflicts || [];
  const total = c.conflicts_count ?? list.length;
  const distrusted = c.distrusted || {};
  const names = nodeNames();
  const items = list.map(t => h('li', {'data-test': t.id, 'data-function': t.function,
                                       'data-node': t.node || ''},
    badge(t.status || 'held', 'bad'), ' ', h('b', {}, t.function),
    h('span', {class: 'mono'}, ` (${JSON.stringify(t.args)}) = ${JSON.stringify(t.expected)}`),
    ' from ', t.node ? nodeChip(t.node) : '', t.origin ? ` (${t.origin})` : '',
    distrusted[t.node] ? [' ', badge('distrusted', 'bad', `${distrusted[t.node]} conflicting tests`)] : '',
    h('div', {class: 'muted small'}, t.reason || '',
      ' · resolve: POST /v1/functions/', t.function, '/conflicts/', short(t.id), '…')));
  if (total > list.length) {
    items.push(h('li', {class: 'muted'}, h('a', {href: '/v1/colony/conflicts', target: '_blank'},
      `${total - list.length} more (GET /v1/colony/conflicts)`)));
  }
  $('conflicts').replaceChildren(...(items.length ? items : [h('li', {class: 'empty'}, 'none')]));
  void names;
}

// ---------------------------------------------------------------- functions, loaded by pages
// GET /v1/functions and GET /v1/colony/fitness are paged: the table holds MAX_FUNCTIONS rows.
const FUNCTIONS_PAGE = 200;
const MAX_FUNCTIONS = 1000;

async function pages(path, key, into) {
  let cursor = null, count = 0;
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await getJson(`${path}?limit=${FUNCTIONS_PAGE}${q}`);
    const items = page[key] || (Array.isArray(page[key]) ? [] : {});
    count += into(items);
    cursor = page.next_cursor || null;
  } while (cursor && count < MAX_FUNCTIONS);
  return cursor !== null;
}

let fullReloadTimer = null;
function scheduleFullReload() {
  if (fullReloadTimer) return;
  fullReloadTimer = setTimeout(() => { fullReloadTimer = null; loadFunctions(); }, MIN_REFRESH_GAP_MS);
}

async function loadFunctions() {
  try {
    const rows = [], fitness = {};
    const [more] = await Promise.all([
      pages('/v1/functions', 'functions', items => { rows.push(...items); return items.length; }),
      pages('/v1/colony/fitness', 'fitness', items => {
        Object.assign(fitness, items); return Object.keys(items).length;
      }).catch(() => false),  // a node without the colony service has no fitness
    ]);
    S.functions = rows;
    S.functionsMore = more;
    S.fitness = fitness;
    renderFunctions();
    if (!S.selected && S.functions.length) S.selected = S.functions[0].name;
    if (S.selected) await loadLineage(S.selected);
  } catch (err) {
    $('functions-info').textContent = `cannot list the functions: ${err.message}`;
  }
}

// one function changed (an event said so): re-read only its row, fitness and lineage
function updateFunctionSoon(name) {
  if (S.fnTimers.has(name)) return;
  S.fnTimers.set(name, setTimeout(() => { S.fnTimers.delete(name); updateFunction(name); },
                                  FUNCTION_UPDATE_MS));
}

async function updateFunction(name) {
  const enc = encodeURIComponent(name);
  let doc = null;
  try {
    doc = await getJson(`/v1/functions/${enc}`);
  } catch (err) {
    if (!String(err.message).includes('404')) return;
  }
  try {
    const fit = await getJson(`/v1/colony/fitness?function=${enc}`);
    Object.assign(S.fitness, fit.fitness || {});
  } catch (err) { /* no colony service */ }
  const i = S.functions.findIndex(f => f.name === name);
  if (doc === null) {
    if (i >= 0) S.functions.splice(i, 1);
    delete S.fitness[name];
  } else {
    const row = {name: doc.name, description: doc.description, signature: doc.signature,
                 verified_variants: (doc.variants || []).filter(v => v.verified).length};
    if (i >= 0) S.functions[i] = Object.assign({}, S.functions[i], row);
    else if (S.functions.length < MAX_FUNCTIONS) {
      S.functions.push(row);
      S.functions.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    }
  }
  renderFunctions();
  if (!S.selected && doc) S.selected = name;
  if (S.selected === name) {
    if (doc) showLineage(doc); else await loadLineage(name);
  }
}

function renderFunctions() {
  const fitness = S.fitness || {};
  const summary = S.colony && S.colony.fitness_summary;
  setKpi('kpi-functions', summary && summary.functions > S.functions.length ? fmt(summary.functions) :
    S.functionsMore ? `${S.functions.length}+` : S.functions.length);
  $('functions-info').textContent = S.functionsMore ? `first ${S.functions.length} shown` : '';
  const body = $('functions').tBodies[0];
  if (!S.functions.length) {
    body.replaceChildren(h('tr', {}, h('td', {colspan: 5, class: 'empty'},
      'no functions yet: submit a task (POST /v1/tasks)')));
    return;
  }
  body.replaceChildren(...S.functions.map(f => {
    const tiers = fitness[f.name] || {};
    const champs = [], challengers = [];
    for (const [tier, t] of Object.entries(tiers)) {
      const vs = t.variants || {};
      const champ = t.champion && vs[t.champion];
      champs.push(h('span', {class: 'chip'}, h('span', {class: 'badge tier'}, tier), ' ',
        t.champion ? h('span', {class: 'mono', title: t.champion}, `★${short(t.champion).slice(0, 8)}`) :
          h('span', {class: 'muted'}, 'no champion'),
        champ && typeof champ.fitness === 'number' ? ` ${champ.fitness.toFixed(2)}` : ''));
      for (const [fp, v] of Object.entries(vs)) {
        if (fp === t.champion) continue;
        challengers.push(h('span', {class: 'chip', title: `${fp}\n${v.status}`},
          h('span', {class: `badge ${v.status === 'active' ? 'tier' : v.status === 'quarantined' ? 'bad' : 'warn'}`},
            `${short(fp).slice(0, 6)}${typeof v.fitness === 'number' ? ' ' + v.fitness.toFixed(2) : ''}`)));
      }
    }
    return h('tr', {'data-function': f.name, class: f.name === S.selected ? 'selected' : '',
                    onclick: () => { S.selected = f.name; renderFunctions(); loadLineage(f.name); }},
      h('td', {title: f.description}, h('b', {}, f.name)),
      h('td', {class: 'mono'}, f.signature),
      h('td', {}, champs.length ? champs : h('span', {class: 'muted'}, `${f.verified_variants} verified`)),
      h('td', {}, challengers.length ? challengers : h('span', {class: 'muted'}, '–')),
      h('td', {class: 'num'}, f.verified_variants));
  }));
}

function showLineage(doc) {
  S.lineage = doc;
  const held = (doc.conflicts || []).filter(c => c.status === 'held').length;
  $('lineage-name').textContent = `${doc.name} ${doc.signature} · ${doc.variants.length} variants · ` +
    `${doc.tests.length} tests` + (held ? ` · ${held} conflicting tests held` : '');
  Lineage.drawLineage($('lineage'), doc, nodeNames(), colorOf);
  const origins = [...new Set(doc.variants.map(v => v.origin_node).filter(Boolean))];
  const names = nodeNames();
  $('legend-nodes').replaceChildren(
    ...origins.map(o => h('span', {}, h('i', {style: `background:${colorOf(o)}`}), names[o] || short(o))),
    h('span', {}, '★ champion · dashed: quarantined · grey: retired'));
}

async function loadLineage(name) {
  try {
    showLineage(await getJson(`/v1/functions/${encodeURIComponent(name)}`));
  } catch (err) {
    if (String(err.message).includes('404')) { S.selected = null; }
    $('lineage-name').textContent = `cannot load ${name}: ${err.message}`;
  }
}

// ---------------------------------------------------------------- start
function start() {
  legends();
  for (const id of ['failures', 'activity']) $(id).appendChild(h('li', {class: 'empty'}, 'nothing yet'));
  $('recent-tasks').tBodies[0].appendChild(h('tr', {}, h('td', {colspan: 5, class: 'empty'}, 'no tasks yet')));
  renderCharts();
  openStream('self', '', true);
  renderConn();
  refresh(true);
  loadFunctions();
  setInterval(refresh, REFRESH_MS);
  setInterval(() => { if (!document.hidden) loadFunctions(); }, FULL_RELOAD_MS);
  setInterval(() => { renderRate(); }, 1000);
  setInterval(renderCharts, 10000);  // slide the time window
  window.addEventListener('resize', renderChartsSoon);
}

start();
