// The audience explorer: the model card, live command rate and latencies,
// and three explorers (a user's segments, a segment's reach and best users,
// a look-alike audience), all from the JSON API of the server that serves
// this page. Charts are plain SVG drawn here; nothing is loaded from
// elsewhere. The location hash (#user=...&segment=...&seeds=a,b) restores a
// view, so one can be linked.
'use strict';

const $ = (id) => document.getElementById(id);
const NS = 'http://www.w3.org/2000/svg';
let token = sessionStorage.getItem('starling-token') || '';
let modelUsers = 0;

// ---- the API ----------------------------------------------------------------

async function api(path, opts = {}) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method: opts.method || 'GET', headers, cache: 'no-store' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) $('token-form').hidden = false;
  if (!r.ok) {
    const err = new Error((data && data.error) || `HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

const enc = encodeURIComponent;

// ---- formatting ----------------------------------------------------------------

const int = (n) => Number(n).toLocaleString('en-US');
const score = (x) => (x === null || x === undefined ? '–' : Number(x).toFixed(3));
function usec(us) {
  if (us === undefined || us === null) return '–';
  if (us < 1000) return `${us.toFixed(us < 10 ? 2 : 1)} µs`;
  return `${(us / 1000).toFixed(us < 10000 ? 2 : 1)} ms`;
}
function when(unix) {
  if (!unix) return '–';
  return new Date(unix * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}
function short(s, n) { return s.length > n ? s.slice(0, n - 1) + '…' : s; }

// ---- DOM and SVG helpers ----------------------------------------------------------

function el(tag, attrs = {}, parent = null, ns = NS) {
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
const hel = (tag, attrs = {}, parent = null) => el(tag, attrs, parent, null);
function txt(parent, tag, s, attrs = {}) {
  const e = parent.namespaceURI === NS ? el(tag, attrs, parent) : hel(tag, attrs, parent);
  e.textContent = s;
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function note(id, parts, error = false) {
  const n = $(id);
  clear(n);
  n.className = error ? 'note error' : 'note';
  for (const p of parts) {
    if (typeof p === 'string') n.appendChild(document.createTextNode(p));
    else txt(n, 'b', p.b);
  }
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}
function tickLabel(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
  return String(Number(v.toPrecision(3)));
}

// Horizontal bars, one per item {label, value}; click calls onClick(label).
function barChart(svg, items, onClick) {
  clear(svg);
  const W = 960, rowH = 27, left = 290, right = 80, top = 6;
  const H = top * 2 + Math.max(items.length, 1) * rowH;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const defs = el('defs', {}, svg);
  const g = el('linearGradient', { id: 'barfill', x1: '0', x2: '1', y1: '0', y2: '0' }, defs);
  el('stop', { offset: '0', 'stop-color': '#1f7a8c' }, g);
  el('stop', { offset: '1', 'stop-color': '#7fd1c7' }, g);
  const values = items.map((d) => d.value);
  const lo = Math.min(0, ...values), hi = Math.max(1e-9, ...values);
  const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - right);
  items.forEach((d, i) => {
    const y = top + i * rowH;
    const label = txt(svg, 'text', short(d.label, 40), { x: left - 10, y: y + rowH / 2 + 4, 'text-anchor': 'end', class: 'label' });
    txt(label, 'title', d.label);
    const x0 = x(Math.min(0, d.value)), x1 = x(Math.max(0, d.value));
    const bar = el('rect', { x: x0, y: y + 4, width: Math.max(1, x1 - x0), height: rowH - 8, rx: 3, class: 'bar' }, svg);
    bar.dataset.label = d.label;
    txt(bar, 'title', `${d.label}: ${d.value}`);
    if (onClick) bar.addEventListener('click', () => onClick(d.label));
    txt(svg, 'text', score(d.value), { x: x1 + 8, y: y + rowH / 2 + 4, class: 'value' });
  });
  svg.dataset.bars = String(items.length);
}

// A line through points {x, y} with axes; opts: xLabel, yLabel, yMin.
function lineChart(svg, pts, opts) {
  clear(svg);
  const W = 640, H = 300, m = { l: 62, r: 18, t: 14, b: 44 };
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  if (!pts.length) { svg.dataset.points = '0'; return; }
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const y0 = opts.yMin !== undefined ? Math.min(opts.yMin, ...ys) : Math.min(...ys), y1 = Math.max(...ys) * 1.04 || 1;
  const X = (v) => m.l + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * (W - m.l - m.r);
  const Y = (v) => H - m.b - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) * (H - m.t - m.b);
  const grid = el('g', { class: 'grid' }, svg), axis = el('g', { class: 'axis' }, svg);
  for (const t of niceTicks(y0, y1, 5)) {
    el('line', { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }, grid);
    txt(axis, 'text', tickLabel(t), { x: m.l - 8, y: Y(t) + 4, 'text-anchor': 'end' });
  }
  for (const t of niceTicks(x0, x1, 6)) {
    el('line', { x1: X(t), x2: X(t), y1: H - m.b, y2: H - m.b + 5 }, axis);
    txt(axis, 'text', tickLabel(t), { x: X(t), y: H - m.b + 18, 'text-anchor': 'middle' });
  }
  el('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }, axis);
  txt(axis, 'text', opts.xLabel, { x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle' });
  txt(axis, 'text', opts.yLabel, { x: 14, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` });
  const d = pts.map((p, i) => `${i ? 'L' : 'M'}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join('');
  el('path', { d: `${d}L${X(pts[pts.length - 1].x).toFixed(1)},${Y(y0)}L${X(pts[0].x).toFixed(1)},${Y(y0)}Z`, class: 'area' }, svg);
  el('path', { d, class: 'curve' }, svg);
  if (pts.length <= 40) {
    for (const p of pts) {
      const c = el('circle', { cx: X(p.x), cy: Y(p.y), r: 3.2, class: 'dot' }, svg);
      txt(c, 'title', opts.title ? opts.title(p) : `${p.x}: ${p.y}`);
    }
  }
  svg.dataset.points = String(pts.length);
}

function sparkline(svg, values) {
  clear(svg);
  const W = 560, H = 90;
  if (values.length < 2) return;
  const hi = Math.max(1, ...values) * 1.1, n = 60;
  const X = (i) => W - (values.length - 1 - i) * (W / (n - 1));
  const Y = (v) => H - 4 - (v / hi) * (H - 8);
  const d = values.map((v, i) => `${i ? 'L' : 'M'}${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join('');
  el('path', { d: `${d}L${X(values.length - 1)},${H}L${X(0)},${H}Z`, class: 'area' }, svg);
  el('path', { d, class: 'curve' }, svg);
}

function usersTable(table, users, caption) {
  clear(table);
  const head = hel('thead', {}, table), tr = hel('tr', {}, head);
  txt(tr, 'th', '#', { class: 'num' });
  txt(tr, 'th', caption);
  txt(tr, 'th', 'score', { class: 'num' });
  const body = hel('tbody', {}, table);
  users.forEach((u, i) => {
    const row = hel('tr', {}, body);
    txt(row, 'td', String(i + 1), { class: 'num muted' });
    const a = txt(hel('td', {}, row), 'a', u.user, { title: 'show this user\'s segments' });
    a.addEventListener('click', () => { $('user-id').value = u.user; showUser(); });
    txt(row, 'td', score(u.score), { class: 'num' });
  });
}

// ---- the model card ------------------------------------------------------------------

function kvBlock(parent, title, rows) {
  txt(parent, 'h3', title);
  const dl = hel('dl', { class: 'kv' }, parent);
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === '') continue;
    txt(dl, 'dt', k);
    txt(dl, 'dd', String(v));
  }
}

async function loadModel() {
  const body = $('model-body');
  try {
    const m = await api('/v1/model');
    modelUsers = m.users;
    clear(body);
    const a = hel('div', {}, body), b = hel('div', {}, body);
    kvBlock(a, 'Data', [
      ['users', int(m.users)], ['segments', int(m.segments)],
      ['interactions', `${int(m.nnz)} pairs from ${int(m.events)} events`],
      ['inputs', m.meta.inputs], ['kind weights', m.meta.kind_weights],
      ['fingerprint', m.fingerprint], ['trained', when(m.created)],
    ]);
    kvBlock(a, 'Serving', [
      ['file', m.path], ['generation', m.generation], ['loaded', when(m.loaded_at)],
      ['calibrated', m.calibrated ? `yes: p = σ(${score(m.calib_a)} s + ${score(m.calib_b)})` : 'no'],
      ['prior', `${m.prior_weight} × ${m.prior_shape === 'linear' ? 'pop / max pop' : 'log(1 + pop) / log(1 + max pop)'}`],
    ]);
    kvBlock(b, 'Hyper-parameters', [
      ['factors', m.user_factors === 'int8' ? `${m.factors} (user factors int8, a scale per row)` : m.factors],
      ['iterations', m.iterations_asked && m.iterations_asked !== m.iterations ? `${m.iterations} of ${m.iterations_asked}` : m.iterations],
      ['solver', m.solver === 'cg' ? `conjugate gradient, ${m.cg_steps} steps` : m.solver],
      ['confidence', m.confidence === 'log' ? `1 + ${m.alpha} log(1 + r / ${m.eps})` : `${m.confidence}, alpha ${m.alpha}`],
      ['regularization', `${m.regularization}, lambda ${m.lambda}`],
      ['unobserved weight', m.unobserved_weight === undefined ? 1 : m.unobserved_weight],
      ['time decay', m.half_life ? `half-life ${m.half_life} s` : 'none'],
      ['seed', m.seed], ['final loss', Number(m.final_loss).toPrecision(6)],
    ]);
    const ev = Object.entries(m.evaluation || {});
    if (ev.length) {
      const plain = new Set(['split', 'split_seed', 'test_users', 'prior_weight', 'seconds']);
      kvBlock(b, 'Evaluation', ev.map(([k, v]) => [k.replace(/_/g, ' '),
        typeof v === 'number' && !plain.has(k) ? v.toFixed(4) : (typeof v === 'number' ? int(v) : v)]));
    } else {
      txt(b, 'h3', 'Evaluation');
      txt(b, 'p', 'No evaluation figures in this model (starling train fits and stores them unless run with --validation 0; so do starling eval -o and tune -o).', { class: 'muted' });
    }
    $('user-id').placeholder = 'user id';
  } catch (e) {
    clear(body);
    txt(body, 'p', `The model could not be read: ${e.message}`, { class: 'note error' });
  }
}

async function checkReady() {
  const pill = $('status');
  try {
    const r = await fetch('/readyz', { cache: 'no-store' });
    const d = await r.json();
    pill.textContent = d.status === 'ready' ? `ready · model generation ${d.generation}` : 'loading the model…';
    pill.className = d.status === 'ready' ? 'pill ok' : 'pill';
    return d.status === 'ready';
  } catch (e) {
    pill.textContent = 'server unreachable';
    pill.className = 'pill bad';
    return false;
  }
}

// ---- live rate and latencies --------------------------------------------------------------

const rates = [];
let lastTotal = null;

async function pollStats() {
  try {
    const s = await api('/v1/stats');
    let total = 0;
    const rows = [];
    for (const [name, c] of Object.entries(s.commands)) {
      if (name === 'info') continue; // this page's own polling
      total += c.calls || 0;
      if (c.calls) rows.push([name, c]);
    }
    const now = performance.now() / 1000;
    if (lastTotal) {
      rates.push(Math.max(0, (total - lastTotal.total) / (now - lastTotal.t)));
      if (rates.length > 60) rates.shift();
      const last = rates[rates.length - 1];
      $('rate').textContent = last >= 100 ? int(Math.round(last)) : last.toFixed(1);
    }
    lastTotal = { t: now, total };
    $('clients').textContent = int(s.clients.connected_clients);
    sparkline($('rate-chart'), rates);
    rows.sort((a, b) => b[1].calls - a[1].calls);
    const tbody = $('latency').tBodies[0];
    clear(tbody);
    for (const [name, c] of rows.slice(0, 8)) {
      const tr = hel('tr', {}, tbody);
      txt(tr, 'td', name.replace('|', ' ').toUpperCase());
      txt(tr, 'td', int(c.calls), { class: 'num' });
      txt(tr, 'td', usec(c.p50), { class: 'num' });
      txt(tr, 'td', usec(c.p99), { class: 'num' });
      txt(tr, 'td', usec(c['p99.9']), { class: 'num' });
    }
    if (!rows.length) txt(hel('tr', {}, tbody), 'td', 'no command yet', { colspan: '5', class: 'muted' });
  } catch (e) {
    $('rate').textContent = '–';
  }
  setTimeout(pollStats, 2000);
}

// ---- the explorers ---------------------------------------------------------------------------

function saveHash() {
  const h = new URLSearchParams();
  if ($('user-id').value) h.set('user', $('user-id').value);
  if ($('segment-id').value) h.set('segment', $('segment-id').value);
  const seeds = parseSeeds();
  if (seeds.length && seeds.length <= 50) h.set('seeds', seeds.join(','));
  history.replaceState(null, '', '#' + h.toString());
}

async function showUser() {
  const id = $('user-id').value.trim();
  if (!id) return;
  const k = Math.max(1, Math.min(50, Number($('user-k').value) || 10));
  saveHash();
  try {
    const d = await api(`/v1/users/${enc(id)}/segments?k=${k}`);
    note('user-note', [{ b: id }, d.source === 'model'
      ? `: the ${d.segments.length} segments the model scores highest (click a bar to explore the segment)`
      : ': not in the model, so these are the most popular segments (the prior)']);
    barChart($('user-chart'), d.segments.map((s) => ({ label: s.segment, value: s.score })), (seg) => {
      $('segment-id').value = seg;
      showSegment();
    });
  } catch (e) {
    note('user-note', [e.message], true);
    clear($('user-chart'));
  }
}

async function showSegment() {
  const id = $('segment-id').value.trim();
  if (!id) return;
  saveHash();
  try {
    // 403: the server's privacy floor (--min-audience) withholds audiences
    // and reaches of fewer users; such points are left out, not errors.
    let withheld = '';
    const floor = (e, value) => {
      if (e.status !== 403) throw e;
      withheld = e.message;
      return value;
    };
    const aud = await api(`/v1/segments/${enc(id)}/audience?n=12`).catch((e) => floor(e, { users: [] }));
    usersTable($('segment-users'), aud.users, 'best users');
    const top = aud.users.length ? aud.users[0].score : 1;
    // One REACH CURVE scan per pass: the count at each of steps + 1
    // thresholds from lo to hi; a count the floor withholds comes back null.
    const reach = (lo, hi, steps) => {
      const mins = Array.from({ length: steps + 1 }, (_, i) => Number((lo + ((hi - lo) * i) / steps).toPrecision(6)));
      return api(`/v1/segments/${enc(id)}/reach?curve=${mins.join(',')}`)
        .then((r) => {
          if (r.curve.some((p) => p.reach === null)) withheld = 'counts under the server\'s privacy floor (--min-audience)';
          return r.curve.filter((p) => p.reach !== null);
        })
        .catch((e) => floor(e, []));
    };
    // A coarse pass from 0 (or below) to the best score finds where reach
    // starts to fall (with a prior blend, every user may score above 0);
    // the curve is drawn from the last threshold before the fall.
    const lo = Math.min(0, top - 1);
    const coarse = await reach(lo, top, 8);
    if (!coarse.length) throw new Error(withheld || 'no threshold to show');
    let from = 0;
    while (from + 1 < coarse.length && coarse[from + 1].reach === coarse[0].reach) from++;
    const reaches = await reach(coarse[from].min, top, 16);
    const pts = reaches.map((r) => ({ x: r.min, y: r.reach }));
    lineChart($('reach-chart'), pts, {
      xLabel: 'score threshold', yLabel: 'users reached', yMin: 0,
      title: (p) => `score ≥ ${score(p.x)}: ${int(p.y)} users`,
    });
    const pct = (n) => (modelUsers ? ` (${((100 * n) / modelUsers).toFixed(1)}% of ${int(modelUsers)})` : '');
    const mid = pts[Math.floor(pts.length / 2)];
    note('segment-note', [{ b: id }, `: ${int(coarse[0].reach)} users score ≥ ${score(coarse[0].min)}${pct(coarse[0].reach)}, `
      + `${int(mid.y)} score ≥ ${score(mid.x)}${pct(mid.y)}; the best scores ${score(top)}`
      + (withheld ? `; smaller audiences are withheld (${withheld})` : '')]);
  } catch (e) {
    note('segment-note', [e.message], true);
    clear($('reach-chart'));
    clear($('segment-users'));
  }
}

function parseSeeds() {
  return [...new Set($('seeds').value.split(/[\s,]+/).filter(Boolean))];
}

async function showLookalike() {
  const seeds = parseSeeds();
  if (!seeds.length) return;
  const n = Math.max(1, Number($('lookalike-n').value) || 100);
  saveHash();
  try {
    const d = await api('/v1/lookalike', { method: 'POST', body: { seeds, n } });
    note('lookalike-note', [{ b: `${int(d.count)} users` }, ` look like the ${int(d.seeds)} seeds (seeds the model does not know are left out; the seeds themselves are never in the audience)`]);
    const step = Math.max(1, Math.ceil(d.users.length / 200));
    const pts = d.users.filter((_, i) => i % step === 0 || i === d.users.length - 1).map((u) => ({ x: d.users.indexOf(u) + 1, y: u.score }));
    lineChart($('lookalike-chart'), pts, { xLabel: 'rank in the audience', yLabel: 'score', title: (p) => `#${p.x}: ${score(p.y)}` });
    usersTable($('lookalike-users'), d.users.slice(0, 12), 'closest users');
  } catch (e) {
    note('lookalike-note', [e.message], true);
    clear($('lookalike-chart'));
    clear($('lookalike-users'));
  }
}

// ---- start --------------------------------------------------------------------------------------

function on(formId, fn) {
  $(formId).addEventListener('submit', (ev) => { ev.preventDefault(); fn(); });
}

async function start() {
  on('user-form', showUser);
  on('segment-form', showSegment);
  on('lookalike-form', showLookalike);
  on('token-form', () => {
    token = $('token').value;
    sessionStorage.setItem('starling-token', token);
    $('token-form').hidden = true;
    loadModel();
  });
  let ready = await checkReady();
  for (let i = 0; !ready && i < 600; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    ready = await checkReady();
  }
  await loadModel();
  pollStats();
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get('user')) { $('user-id').value = h.get('user'); showUser(); }
  if (h.get('segment')) { $('segment-id').value = h.get('segment'); showSegment(); }
  if (h.get('seeds')) { $('seeds').value = h.get('seeds').split(',').join('\n'); showLookalike(); }
}

start();
