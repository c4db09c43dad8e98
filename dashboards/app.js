// qt45-colony dashboard: one EventSource on /v1/events for everything live, plus a full
// re-read of /v1/colony and /v1/functions every REFRESH_MS (and, debounced, after events that
// change them). Built with DOM calls and textContent only: names and reasons never become HTML.
'use strict';

const REFRESH_MS = 12000;       // the occasional full refresh
const MIN_REFRESH_GAP_MS = 1500; // event-triggered refreshes are at most this frequent
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
               'synthesis.failed', 'variant.stored', 'variant.adopted', 'variant.quarantined',
               'variant.retired', 'peer.up', 'peer.down'];
const NODE_COLORS = ['#3a7bd5', '#e08a2e', '#2f9e5b', '#a35bd1', '#c8423b', '#1b9aaa',
                     '#8c6d31', '#d45d9e'];

const S = {
  colony: null, functions: [], snap: null, snapSeq: 0, listedSeq: 0, startedAt: null,
  totals: {}, buckets: new Map(), bucketS: 10, taskTimes: [],
  selected: null, lineage: null, lastRefresh: 0, refreshTimer: null, es: null,
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
const fmt = n => n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(n);

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
  names[c.node] = `${c.name} (this node)`;
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

// ---------------------------------------------------------------- live events
function connect() {
  const es = new EventSource('/v1/events?backlog=300');
  S.es = es;
  es.onopen = () => setConn('live', 'live');
  es.onerror = () => setConn('off', es.readyState === 2 ? 'disconnected' : 'reconnecting…');
  es.addEventListener('snapshot', e => onSnapshot(JSON.parse(e.data)));
  es.addEventListener('lagged', () => { refresh(true); });
  for (const k of KINDS) es.addEventListener(k, e => onEvent(JSON.parse(e.data)));
}

function setConn(cls, text) {
  const el = $('conn');
  el.className = `conn ${cls}`;
  el.textContent = text;
}

function onSnapshot(snap) {
  if (S.startedAt !== null && snap.started_at !== S.startedAt) {
    // the node restarted: its numbering starts again
    S.listedSeq = 0;
    feeds.failures = [];
    feeds.activity = [];
    for (const id of ['recent-tasks', 'failures', 'activity']) clearList(id);
  }
  S.startedAt = snap.started_at;
  S.snap = snap;
  S.snapSeq = snap.seq;
  S.totals = Object.assign({}, snap.totals);
  S.bucketS = snap.bucket_s || 10;
  S.buckets = new Map();
  for (const b of snap.timeline || []) {
    const {t, ...counts} = b;
    S.buckets.set(t, counts);
  }
  renderCounters();
  renderCharts();
}

function onEvent(ev) {
  if (ev.seq > S.snapSeq) {  // replayed events are already in the snapshot's totals
    S.snapSeq = ev.seq;
    const keys = [ev.kind];
    if (ev.kind === 'task') keys.push(`task:${ev.source}`);
    const t = ev.at - (ev.at % S.bucketS);
    const b = S.buckets.get(t) || {};
    for (const k of keys) {
      S.totals[k] = (S.totals[k] || 0) + 1;
      b[k] = (b[k] || 0) + 1;
    }
    S.buckets.set(t, b);
    renderCounters();
    renderChartsSoon();
  }
  if (ev.seq <= S.listedSeq) return;
  S.listedSeq = ev.seq;
  if (ev.kind === 'task') {
    S.taskTimes.push(ev.at);
    addTaskRow(ev);
  } else if (ev.kind === 'task.failed' || ev.kind === 'synthesis.failed' ||
             ev.kind === 'variant.quarantined' || ev.kind === 'peer.down') {
    addFeed('failures', ev);
  } else {
    addFeed('activity', ev);
  }
  if (ev.kind.startsWith('variant.') || ev.kind.startsWith('peer.') ||
      ev.kind === 'synthesis.finished') {
    if (ev.function && !S.selected) S.selected = ev.function;
    refreshSoon();
  }
}

// ---------------------------------------------------------------- lists
function clearList(id) {
  const el = id === 'recent-tasks' ? $(id).tBodies[0] : $(id);
  el.replaceChildren();
}

function trim(el) {
  while (el.children.length > MAX_ROWS) el.removeChild(el.lastChild);
  for (const e of el.querySelectorAll('.empty')) e.remove();
}

function addTaskRow(ev) {
  const body = $('recent-tasks').tBodies[0];
  const src = ev.source || '?';
  const row = h('tr', {class: 'new', 'data-seq': ev.seq, 'data-source': src},
    h('td', {class: 'mono'}, clock(ev.at)),
    h('td', {title: ev.fingerprint || ''}, ev.function || '?'),
    h('td', {}, h('span', {class: `badge ${src}`}, src === 'cache' ? 'library' : src)),
    h('td', {}, h('span', {class: 'badge tier'}, ev.tier || '')),
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
    case 'variant.quarantined':
      return [badge('quarantined', 'bad'), ` ${fn} ${ev.tier} ${short(ev.fingerprint)} from ${who}: `,
              ev.reason || ''];
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
const badge = (text, cls) => h('span', {class: `badge ${cls}`}, text);

const feeds = {failures: [], activity: []};  // the events behind each list, newest first

function feedItem(ev, isNew) {
  return h('li', {class: isNew ? 'new' : '', 'data-kind': ev.kind, 'data-seq': ev.seq},
           h('span', {class: 'when mono'}, clock(ev.at)), ...describe(ev));
}

function addFeed(id, ev) {
  const list = $(id);
  feeds[id].unshift(ev);
  feeds[id].length = Math.min(feeds[id].length, MAX_ROWS);
  list.insertBefore(feedItem(ev, true), list.firstChild);
  trim(list);
}

// node names come with /v1/colony: redraw the feeds once they are known (at most 60 items)
function relabelFeeds() {
  for (const [id, evs] of Object.entries(feeds)) {
    if (evs.length) $(id).replaceChildren(...evs.map(ev => feedItem(ev, false)));
  }
}

// ---------------------------------------------------------------- counters and charts
function renderCounters() {
  const t = S.totals;
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

function windowBuckets() {
  const bs = S.bucketS;
  const now = Date.now() / 1000;
  const last = now - (now % bs);
  // a young node gets wider bars: its lifetime (3 min at least), up to the 15-minute window
  const life = S.startedAt ? Math.ceil((now - S.startedAt) / bs) + 1 : WINDOW_BUCKETS;
  const n = Math.max(MIN_BUCKETS, Math.min(WINDOW_BUCKETS, life));
  const out = [];
  for (let i = n - 1; i >= 0; i--) {
    const t = last - i * bs;
    out.push({t, values: S.buckets.get(t) || {}});
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
  const buckets = windowBuckets();
  Charts.stackedBars($('chart-tasks'), buckets, SOURCES, {empty: 'no tasks in the last 15 min'});
  // the falling curve: synthesis calls per task answered, cumulative since the node started
  let calls = 0, tasks = 0;
  const before = [...S.buckets.entries()].filter(([t]) => t < buckets[0].t);
  for (const [, v] of before) {
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

// ---------------------------------------------------------------- full state
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

// GET /v1/functions is paged (limit, next_cursor): the table holds at most MAX_FUNCTIONS rows.
const FUNCTIONS_PAGE = 200;
const MAX_FUNCTIONS = 1000;

async function getFunctions() {
  let rows = [];
  let cursor = null;
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = await getJson(`/v1/functions?limit=${FUNCTIONS_PAGE}${q}`);
    rows = rows.concat(page.functions || []);
    cursor = page.next_cursor || null;
  } while (cursor && rows.length < MAX_FUNCTIONS);
  return {functions: rows, more: cursor !== null};
}

async function refresh(force) {
  if (!force && document.hidden) return;  // a background tab does not poll
  S.lastRefresh = Date.now();
  try {
    const [colony, fns] = await Promise.all([getJson('/v1/colony'), getFunctions()]);
    S.colony = colony;
    S.functions = fns.functions;
    S.functionsMore = fns.more;
    renderNodes();
    relabelFeeds();
    renderFunctions();
    renderQuarantine();
    if (!S.selected && S.functions.length) S.selected = S.functions[0].name;
    if (S.selected) await loadLineage(S.selected);
  } catch (err) {
    $('node-info').textContent = `cannot read the node: ${err.message}`;
  }
}

function renderNodes() {
  const c = S.colony;
  document.title = `qt45-colony · ${c.name}`;
  $('node-name').textContent = c.name;
  const gpu = c.gpu && c.gpu.adapter ? ` · gpu ${c.gpu.adapter}` : '';
  $('node-info').textContent = `${c.node.slice(0, 12)} · ${c.url} · up ${Math.round(c.uptime_s)} s · ` +
    `synthesizers: ${(c.synthesizers || []).join(', ') || 'none'}${gpu}`;
  const mode = c.colony ? c.colony.mode : 'alone';
  $('colony-mode').textContent = mode === 'colony' ? `colony ${c.colony.colony_id}` :
    'this node runs alone (no colony key)';
  const peers = c.peers || [];
  const up = peers.filter(p => p.state === 'up').length;
  setKpi('kpi-peers', `${up} / ${peers.length}`);
  const body = $('peers').tBodies[0];
  const rows = [h('tr', {'data-node': c.node, class: 'self'},
    h('td', {}, h('span', {class: 'dot self', title: 'this node'})),
    h('td', {}, h('b', {}, c.name), h('div', {class: 'muted mono'}, c.node.slice(0, 12))),
    h('td', {class: 'mono'}, c.url),
    h('td', {}, 'this node'),
    h('td', {class: 'muted'}, c.sync ? `${c.sync.entries} entries` : ''))];
  for (const p of peers) {
    rows.push(h('tr', {'data-node': p.node || p.url, 'data-state': p.state},
      h('td', {}, h('span', {class: `dot ${p.state}`, title: p.state})),
      h('td', {}, h('b', {}, p.name || '?'), h('div', {class: 'muted mono'}, (p.node || '').slice(0, 12))),
      h('td', {class: 'mono'}, h('a', {href: `${p.url}/`, title: 'open its dashboard'}, p.url)),
      h('td', {title: p.last_error || ''}, p.state === 'up' ? ago(p.last_ok_s_ago) :
        h('span', {class: 'badge bad'}, `${p.state}${p.failures ? ` ×${p.failures}` : ''}`)),
      h('td', {class: 'muted'}, `${p.rounds} rounds · ↓${p.pulled} ↑${p.pushed}`)));
  }
  body.replaceChildren(...rows);
  const s = c.sync || {};
  $('sync-info').textContent = c.sync ?
    `sync: ${s.origins} origins · ${fmt(s.bytes_sent || 0)} B sent · ${fmt(s.bytes_received || 0)} B received` +
    (c.mutation_queue && c.mutation_queue.length ? ` · ${c.mutation_queue.length} mutations queued` : '') : '';
}

function renderFunctions() {
  const fitness = (S.colony && S.colony.fitness) || {};
  setKpi('kpi-functions', S.functionsMore ? `${S.functions.length}+` : S.functions.length);
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

function renderQuarantine() {
  const q = (S.colony && S.colony.quarantined) || [];
  setKpi('kpi-quarantined', q.length);
  const names = nodeNames();
  $('quarantined').replaceChildren(...(q.length ? q.map(v => h('li', {'data-fp': v.fingerprint},
      h('b', {}, v.function), ` ${v.tier} `, h('span', {class: 'mono'}, short(v.fingerprint)),
      ` from ${names[v.origin] || short(v.origin)}: `, v.reason || '')) :
    [h('li', {class: 'empty'}, 'none')]));
}

async function loadLineage(name) {
  try {
    const doc = await getJson(`/v1/functions/${encodeURIComponent(name)}`);
    S.lineage = doc;
    $('lineage-name').textContent = `${doc.name} ${doc.signature} · ${doc.variants.length} variants · ` +
      `${doc.tests.length} tests`;
    Lineage.drawLineage($('lineage'), doc, nodeNames(), colorOf);
    const origins = [...new Set(doc.variants.map(v => v.origin_node).filter(Boolean))];
    const names = nodeNames();
    $('legend-nodes').replaceChildren(
      ...origins.map(o => h('span', {}, h('i', {style: `background:${colorOf(o)}`}), names[o] || short(o))),
      h('span', {}, '★ champion · dashed: quarantined · grey: retired'));
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
  connect();
  refresh(true);
  setInterval(refresh, REFRESH_MS);
  setInterval(() => { renderRate(); }, 1000);
  setInterval(renderCharts, 10000);  // slide the time window
  window.addEventListener('resize', renderChartsSoon);
}

start();
