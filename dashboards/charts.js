// Small hand-written SVG charts for the dashboard (no library, nothing loaded from outside).
// Each function redraws one <svg> completely; the data are a few hundred numbers at most.
'use strict';

const SVGNS = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// A "nice" axis maximum (1, 2, 5 × 10^k) at or above v.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function clockLabel(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 5);
}

// Stacked bars over time.
//   buckets: [{t, values: {series: number}}] oldest first, evenly spaced
//   series:  [{key, label, color}]
//   opts:    {line: {values: [number|null], label, color, max}} an optional line on its own
//            0..max scale (right axis), {unit} for the left axis title
function stackedBars(svg, buckets, series, opts) {
  opts = opts || {};
  const W = svg.clientWidth || 420, H = svg.clientHeight || 170;
  const m = {l: 34, r: opts.line ? 34 : 8, t: 8, b: 20};
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const totals = buckets.map(b => series.reduce((s, x) => s + (b.values[x.key] || 0), 0));
  const ymax = niceMax(Math.max(1, ...totals));
  const n = Math.max(1, buckets.length);
  const bw = iw / n;
  const y = v => m.t + ih - (v / ymax) * ih;
  // grid and left axis
  for (const f of [0, 0.5, 1]) {
    const v = ymax * f;
    svg.appendChild(svgEl('line', {x1: m.l, x2: m.l + iw, y1: y(v), y2: y(v), class: 'grid'}));
    svg.appendChild(svgEl('text', {x: m.l - 4, y: y(v) + 3, class: 'axis', 'text-anchor': 'end'},
                          Number.isInteger(v) ? v : v.toFixed(1)));
  }
  buckets.forEach((b, i) => {
    let acc = 0;
    for (const s of series) {
      const v = b.values[s.key] || 0;
      if (!v) continue;
      const r = svgEl('rect', {x: m.l + i * bw + 0.5, width: Math.max(1, bw - 1),
                               y: y(acc + v), height: Math.max(0.5, y(acc) - y(acc + v)),
                               fill: s.color});
      r.appendChild(svgEl('title', {}, `${clockLabel(b.t)} ${s.label}: ${v}`));
      svg.appendChild(r);
      acc += v;
    }
  });
  // time labels: first, middle, last; the outer two are anchored at the plot's edges so a
  // label never runs past the SVG (a centred last label was cut off at 1366 px)
  const labels = [[0, 'start', m.l], [Math.floor(n / 2), 'middle', null], [n - 1, 'end', m.l + iw]];
  for (const [i, anchor, x] of labels) {
    if (!buckets[i]) continue;
    svg.appendChild(svgEl('text', {x: x === null ? m.l + i * bw + bw / 2 : x, y: H - 5,
                                   class: 'axis time', 'text-anchor': anchor},
                          clockLabel(buckets[i].t)));
  }
  if (opts.line) {
    const L = opts.line, lmax = L.max || 1;
    const ly = v => m.t + ih - (v / lmax) * ih;
    let d = '';
    L.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${d ? 'L' : 'M'}${(m.l + i * bw + bw / 2).toFixed(1)},${ly(v).toFixed(1)}`;
    });
    if (d) svg.appendChild(svgEl('path', {d, fill: 'none', stroke: L.color, 'stroke-width': 2}));
    L.values.forEach((v, i) => {  // dots: a lone point is visible too
      if (v === null || v === undefined) return;
      const c = svgEl('circle', {cx: m.l + i * bw + bw / 2, cy: ly(v), r: 2.5, fill: L.color});
      c.appendChild(svgEl('title', {}, `${clockLabel(buckets[i].t)} ${L.label || ''}: ${v.toFixed(2)}`));
      svg.appendChild(c);
    });
    for (const f of [0, 1]) {
      svg.appendChild(svgEl('text', {x: m.l + iw + 4, y: ly(lmax * f) + 3, class: 'axis'},
                            (lmax * f).toFixed(lmax < 2 ? 1 : 0)));
    }
  }
  const hasLine = opts.line && opts.line.values.some(v => v !== null && v !== undefined);
  if (totals.every(v => v === 0) && !hasLine) {
    svg.appendChild(svgEl('text', {x: m.l + iw / 2, y: m.t + ih / 2, class: 'empty',
                                   'text-anchor': 'middle'}, opts.empty || 'nothing yet'));
  }
}

window.Charts = {stackedBars, svgEl, niceMax};
