// Lineage graph of one function: its variants (across tiers and origin nodes) and their parents,
// drawn as an SVG. Columns are generations (a variant sits one column right of its deepest
// parent), rows are grouped by tier; the border colour names the origin node.
'use strict';

const TIER_ORDER = ['scalar', 'simd', 'gpu'];

function lineageLayout(variants) {
  const byFp = new Map(variants.map(v => [v.fingerprint, v]));
  // parents we do not hold (deleted, never synced) still appear, as ghosts
  for (const v of variants) {
    for (const p of v.parents || []) {
      if (!byFp.has(p)) byFp.set(p, {fingerprint: p, tier: v.tier, parents: [], ghost: true});
    }
  }
  const depth = new Map();
  const depthOf = (fp, seen) => {
    if (depth.has(fp)) return depth.get(fp);
    if (seen.has(fp)) return 0;  // a cycle cannot happen with content hashes; stay safe anyway
    seen.add(fp);
    const v = byFp.get(fp);
    const ps = (v && v.parents) || [];
    const d = ps.length ? 1 + Math.max(...ps.map(p => depthOf(p, seen))) : 0;
    depth.set(fp, d);
    return d;
  };
  const nodes = [...byFp.values()];
  nodes.forEach(v => depthOf(v.fingerprint, new Set()));
  nodes.sort((a, b) => (TIER_ORDER.indexOf(a.tier) - TIER_ORDER.indexOf(b.tier)) ||
                       (depth.get(a.fingerprint) - depth.get(b.fingerprint)) ||
                       ((a.created_at || 0) - (b.created_at || 0)));
  // one row per variant within its tier lane, column by generation
  const pos = new Map();
  const rowsPerCol = new Map();
  let lane = -1, laneTier = null, laneBase = 0, laneRows = 0;
  const lanes = [];
  for (const v of nodes) {
    if (v.tier !== laneTier) {
      laneBase += laneRows;
      laneRows = 0;
      lane += 1;
      laneTier = v.tier;
      rowsPerCol.clear();
      lanes.push({tier: v.tier, start: laneBase});
    }
    const col = depth.get(v.fingerprint);
    const row = rowsPerCol.get(col) || 0;
    rowsPerCol.set(col, row + 1);
    laneRows = Math.max(laneRows, row + 1);
    pos.set(v.fingerprint, {col, row: laneBase + row});
    lanes[lanes.length - 1].rows = laneRows;
  }
  return {nodes, pos, lanes, rows: laneBase + laneRows,
          cols: Math.max(1, ...[...pos.values()].map(p => p.col + 1))};
}

// doc: GET /v1/functions/{name}; names: node id -> display name; colorOf(node id) -> css colour
function drawLineage(svg, doc, names, colorOf) {
  const {svgEl} = window.Charts;
  svg.replaceChildren();
  const variants = doc.variants || [];
  if (!variants.length) {
    svg.setAttribute('viewBox', '0 0 300 40');
    svg.appendChild(svgEl('text', {x: 8, y: 24, class: 'empty'}, 'no variants'));
    return;
  }
  const L = lineageLayout(variants);
  const BW = 150, BH = 46, GX = 48, GY = 12, PADL = 52, PADT = 8;
  const W = PADL + L.cols * (BW + GX), H = PADT * 2 + L.rows * (BH + GY);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.style.height = `${Math.min(420, Math.max(90, H))}px`;
  const defs = svgEl('defs');
  const marker = svgEl('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
                                  markerWidth: 7, markerHeight: 7, orient: 'auto'});
  marker.appendChild(svgEl('path', {d: 'M0,0 L10,5 L0,10 z', fill: '#8a94a3'}));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const xy = fp => {
    const p = L.pos.get(fp);
    return {x: PADL + p.col * (BW + GX), y: PADT + p.row * (BH + GY)};
  };
  // tier lanes
  for (const lane of L.lanes) {
    const y0 = PADT + lane.start * (BH + GY) - GY / 2;
    svg.appendChild(svgEl('rect', {x: 0, y: y0, width: W, height: lane.rows * (BH + GY),
                                   class: `lane lane-${lane.tier}`}));
    svg.appendChild(svgEl('text', {x: 6, y: y0 + 16, class: 'lane-label'}, lane.tier));
  }
  // edges parent -> child
  for (const v of L.nodes) {
    for (const p of v.parents || []) {
      const a = xy(p), b = xy(v.fingerprint);
      const x1 = a.x + BW, y1 = a.y + BH / 2, x2 = b.x - 2, y2 = b.y + BH / 2;
      const mx = (x1 + x2) / 2;
      svg.appendChild(svgEl('path', {d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                                     class: 'edge', 'marker-end': 'url(#arrow)'}));
    }
  }
  const champions = new Set(Object.values(doc.champions || {}));
  for (const v of L.nodes) {
    const {x, y} = xy(v.fingerprint);
    const status = v.ghost ? 'ghost' : (v.status || (v.verified ? 'active' : 'unverified'));
    const g = svgEl('g', {class: `variant status-${status}`, 'data-fp': v.fingerprint});
    const origin = v.origin_node || '';
    g.appendChild(svgEl('rect', {x, y, width: BW, height: BH, rx: 6,
                                 stroke: v.ghost ? '#b8c0cc' : colorOf(origin)}));
    const champ = champions.has(v.fingerprint) || v.champion;
    g.appendChild(svgEl('text', {x: x + 8, y: y + 16, class: 'fp'},
                        (champ ? '★ ' : '') + v.fingerprint.slice(7, 17)));
    const who = v.ghost ? 'not held here' :
      `${v.generator || '?'} · ${names[origin] || origin.slice(0, 8) || '?'}`;
    g.appendChild(svgEl('text', {x: x + 8, y: y + 30, class: 'sub'}, who));
    const fit = v.fitness && typeof v.fitness.fitness === 'number' ?
      `fitness ${v.fitness.fitness.toFixed(3)}` : '';
    const calls = v.metrics ? `${v.metrics.calls} calls` : '';
    g.appendChild(svgEl('text', {x: x + 8, y: y + 42, class: 'sub'},
                        [status !== 'active' ? status : '', fit, calls].filter(Boolean).join(' · ')));
    g.appendChild(svgEl('title', {}, [
      v.fingerprint, `tier ${v.tier}`, `status ${status}${v.status_reason ? ': ' + v.status_reason : ''}`,
      `origin ${names[origin] || origin}`, champ ? 'champion' : '',
      v.parents && v.parents.length ? `parents ${v.parents.map(p => p.slice(7, 17)).join(', ')}` : '',
    ].filter(Boolean).join('\n')));
    svg.appendChild(g);
  }
}

window.Lineage = {drawLineage, lineageLayout};
