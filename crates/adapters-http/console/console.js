// The operator's console: rooms and their last 30 minutes, steering with confirmation, sales
// per schedule, and the operator log. Talks to this origin's /admin/* only, with the operator
// token the operator typed in, kept in sessionStorage (this tab only; never in a URL, never in
// localStorage).

const TOKEN_KEY = 'concert.console.token';
const REFRESH_MS = 3000;
const AUDIT_PAGE = 10;
const WINDOW_SECS = 30 * 60;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

/** An operator API call: the JSON body, or an Error whose message is the API's words. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const err = new Error(json?.detail ? `${json.title}: ${json.detail}` : `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return json;
}

// ---- small helpers --------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const fmt = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-GB'));
const won = (n) => `₩${fmt(n)}`;

function inWords(secs) {
  if (secs <= 0) return 'now';
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = Math.floor(secs % 60);
  if (h > 0) return `in ${h} h ${String(m).padStart(2, '0')} min`;
  return `in ${m}:${String(s).padStart(2, '0')}`;
}

const time = (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 19) : '—');

/** When the next batch is let in: the last admission plus M, never before the opening. */
function nextAdmission(room, now) {
  if (room.paused) return 'paused';
  if (room.state === 'CLOSED' && room.waiting === 0) return '—';
  let at = room.lastAdmissionAt ? Date.parse(room.lastAdmissionAt) + room.admitIntervalSecs * 1000 : now;
  if (room.opensAt) at = Math.max(at, Date.parse(room.opensAt));
  if (room.nextAdmissionAt) at = Math.max(at, Date.parse(room.nextAdmissionAt));
  return inWords(Math.ceil((at - now) / 1000));
}

// ---- confirmation -----------------------------------------------------------------------------

/** Asks in the page's own dialog; resolves true on Confirm. */
function confirmChange(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = 'cancel';
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

function say(text, kind) {
  const out = $('outcome');
  out.textContent = text;
  out.className = kind;
}

const LABELS = {
  paused: 'paused', closed: 'closed', admitBatch: 'N', admitIntervalSecs: 'M (s)',
  maxActive: 'cap', activeTtlSecs: 'TTL (s)', name: 'name',
};

/** "N 100 → 5, cap none → 50" from the room before and the API's answer. */
function changes(before, after, keys) {
  const show = (v) => (v === null || v === undefined ? 'none' : String(v));
  return keys.filter((k) => before[k] !== after[k])
    .map((k) => `${LABELS[k] ?? k} ${show(before[k])} → ${show(after[k])}`).join(', ') || 'nothing changed';
}

// ---- rooms ----------------------------------------------------------------------------------

let rooms = [];
const histories = new Map();

async function refreshRooms() {
  rooms = await api('GET', '/admin/rooms');
  const now = Date.now();
  const body = $('rooms').tBodies[0];
  body.replaceChildren(...rooms.map((r) => el('tr', { 'data-room': r.id },
    el('th', { scope: 'row', text: `${r.name} (${r.id})` }),
    el('td', { text: r.state + (r.closed && r.state !== 'CLOSED' ? ' (closed)' : '') }),
    el('td', { text: r.opensAt ? (Date.parse(r.opensAt) > now ? inWords(Math.ceil((Date.parse(r.opensAt) - now) / 1000)) : `opened ${time(r.opensAt)}`) : 'open' }),
    el('td', { class: 'num', 'data-field': 'waiting', text: fmt(r.waiting) }),
    el('td', { class: 'num', 'data-field': 'active', text: fmt(r.active) }),
    el('td', { class: 'num', 'data-field': 'admittedThrough', text: fmt(r.admittedThrough) }),
    el('td', { class: 'num', 'data-field': 'abandoned', text: fmt(r.abandoned) }),
    el('td', { 'data-field': 'next', text: nextAdmission(r, now) }),
    el('td', { text: `${r.admitBatch} / ${r.admitIntervalSecs}s / ${r.maxActive ?? 'none'} / ${r.activeTtlSecs}s` }),
  )));
  syncSteerRooms();
  await Promise.all(rooms.map(async (r) => {
    try {
      const h = await api('GET', `/admin/rooms/${encodeURIComponent(r.id)}/history`);
      histories.set(r.id, h);
      $('instance-name').textContent = h.instance;
    } catch { /* keep the last one */ }
  }));
  drawCharts();
  $('updated').textContent = `Updated ${new Date().toLocaleTimeString('en-GB')}`;
}

/** Per-minute rate of a cumulative field at each sample (over the minute before it). */
function perMinute(samples, key) {
  return samples.map((s, i) => {
    const t = Date.parse(s.at);
    let j = i;
    while (j > 0 && t - Date.parse(samples[j - 1].at) <= 60_000) j -= 1;
    const dt = (t - Date.parse(samples[j].at)) / 1000;
    return dt > 0 ? ((s[key] - samples[j][key]) * 60) / dt : 0;
  });
}

function chart(title, samples, series) {
  const W = 360; const H = 120; const L = 34; const B = 14;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H + B}`, role: 'img' });
  const end = samples.length ? Date.parse(samples[samples.length - 1].at) : Date.now();
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  root.append(svg('line', { class: 'axis', x1: L, y1: H, x2: W, y2: H }));
  root.append(svg('line', { class: 'axis', x1: L, y1: 0, x2: L, y2: H }));
  const top = svg('text', { x: 2, y: 10 }); top.textContent = fmt(Math.round(max)); root.append(top);
  const zero = svg('text', { x: 2, y: H }); zero.textContent = '0'; root.append(zero);
  const left = svg('text', { x: L, y: H + B - 2 }); left.textContent = '−30 min'; root.append(left);
  const right = svg('text', { x: W - 24, y: H + B - 2 }); right.textContent = 'now'; root.append(right);
  for (const s of series) {
    const points = samples.map((p, i) => {
      const x = L + ((W - L) * (WINDOW_SECS - (end - Date.parse(p.at)) / 1000)) / WINDOW_SECS;
      const y = H - (H - 2) * (s.values[i] / max);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    root.append(svg('polyline', { class: `series ${s.key}`, points: points.join(' ') }));
  }
  const latest = series.map((s) => `${s.label} ${fmt(Math.round(s.values[s.values.length - 1] ?? 0))}`).join(', ');
  root.setAttribute('aria-label', `${title}, last 30 minutes; now: ${latest || 'no samples yet'}`);
  const legend = el('p', { class: 'legend' }, ...series.flatMap((s) => [el('span', { class: `key ${s.key}` }),
    `${s.label} ${fmt(Math.round(s.values[s.values.length - 1] ?? 0))}`]));
  return [el('h3', { text: title }), root, legend];
}

function drawCharts() {
  const box = $('charts');
  box.replaceChildren(...rooms.map((r) => {
    const h = histories.get(r.id);
    const samples = (h?.samples ?? []).filter((s) => Date.parse(h.samples[h.samples.length - 1].at) - Date.parse(s.at) <= WINDOW_SECS * 1000);
    return el('figure', { class: 'chart', 'data-room': r.id, 'data-samples': String(samples.length) },
      ...chart(`${r.name}: the line`, samples, [
        { key: 'waiting', label: 'waiting', values: samples.map((s) => s.waiting) },
        { key: 'active', label: 'active', values: samples.map((s) => s.active) },
      ]),
      ...chart(`${r.name}: per minute`, samples, [
        { key: 'admitted', label: 'admitted/min', values: perMinute(samples, 'admittedThrough') },
        { key: 'abandoned', label: 'abandoned/min', values: perMinute(samples, 'abandoned') },
      ]),
      el('figcaption', { class: 'muted', text: `${samples.length} samples, every ${h?.intervalSecs ?? 10} s` }));
  }));
}

// ---- steering -------------------------------------------------------------------------------

function syncSteerRooms() {
  const select = $('steer-room');
  const ids = rooms.map((r) => r.id).join(',');
  if (select.dataset.ids === ids) return;
  const chosen = select.value;
  select.replaceChildren(...rooms.map((r) => el('option', { value: r.id, text: `${r.name} (${r.id})` })));
  if (rooms.some((r) => r.id === chosen)) select.value = chosen;
  select.dataset.ids = ids;
  fillSettings();
}

function chosenRoom() {
  return rooms.find((r) => r.id === $('steer-room').value);
}

function fillSettings() {
  const r = chosenRoom();
  if (!r) return;
  $('set-batch').value = r.admitBatch;
  $('set-interval').value = r.admitIntervalSecs;
  $('set-cap').value = r.maxActive ?? '';
  $('set-ttl').value = r.activeTtlSecs;
}

/** Confirms, sends one PATCH, and says what changed (or why it was refused). */
async function patchRoom(patch, what) {
  const room = chosenRoom();
  if (!room) return;
  if (!await confirmChange(`${what} in room “${room.name}” (${room.id})?`)) {
    say('Cancelled: nothing was changed.', 'muted');
    return;
  }
  try {
    const after = await api('PATCH', `/admin/rooms/${encodeURIComponent(room.id)}`, patch);
    say(`Changed ${room.id}: ${changes(room, after, Object.keys(patch))}.`, 'changed');
  } catch (err) {
    say(`Refused: ${err.message}`, 'refused');
  }
  await refreshAll();
}

const num = (v) => (v.trim() === '' ? null : Number(v));

function wireSteering() {
  $('steer-room').addEventListener('change', fillSettings);
  $('pause').addEventListener('click', () => patchRoom({ paused: true }, 'Pause admission'));
  $('resume').addEventListener('click', () => patchRoom({ paused: false }, 'Resume admission'));
  $('close').addEventListener('click', () => patchRoom({ closed: true }, 'Close to new joiners'));
  $('reopen').addEventListener('click', () => patchRoom({ closed: false }, 'Reopen to new joiners'));
  $('steer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const r = chosenRoom();
    if (!r) return;
    const wanted = {
      admitBatch: num($('set-batch').value), admitIntervalSecs: num($('set-interval').value),
      maxActive: num($('set-cap').value), activeTtlSecs: num($('set-ttl').value),
    };
    const patch = Object.fromEntries(Object.entries(wanted).filter(([k, v]) => v !== r[k] && !(v === null && k !== 'maxActive')));
    if (Object.keys(patch).length === 0) {
      say('Nothing to change: the settings are as shown.', 'muted');
      return;
    }
    const list = Object.entries(patch).map(([k, v]) => `${LABELS[k]} ${r[k] ?? 'none'} → ${v ?? 'none'}`).join(', ');
    patchRoom(patch, `Change ${list}`);
  });
  $('create').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {
      id: $('new-id').value.trim(),
      name: $('new-name').value.trim(),
      concertIds: [...$('new-concerts').querySelectorAll('input:checked')].map((c) => c.value),
    };
    if ($('new-opens').value) body.opensAt = new Date(`${$('new-opens').value}Z`).toISOString();
    if ($('new-batch').value) body.admitBatch = Number($('new-batch').value);
    if ($('new-interval').value) body.admitIntervalSecs = Number($('new-interval').value);
    const names = body.concertIds.map((id) => concerts.find((c) => c.id === id)?.title ?? id);
    if (!await confirmChange(`Create room “${body.name}” (${body.id}) selling ${names.length ? names.join(', ') : 'no concert'}?`)) {
      say('Cancelled: nothing was created.', 'muted');
      return;
    }
    try {
      const room = await api('POST', '/admin/rooms', body);
      say(`Created ${room.id}: ${room.state}, N ${room.admitBatch}, M ${room.admitIntervalSecs} s, ${room.concertIds.length} concert(s).`, 'changed');
      $('create').reset();
    } catch (err) {
      say(`Refused: ${err.message}`, 'refused');
    }
    await refreshAll();
  });
}

// ---- concerts and sales ---------------------------------------------------------------------

let concerts = [];

async function refreshSales() {
  concerts = await api('GET', '/admin/concerts');
  const owner = new Map(rooms.flatMap((r) => r.concertIds.map((c) => [c, r.id])));
  const picker = $('new-concerts');
  const checked = new Set([...picker.querySelectorAll('input:checked')].map((c) => c.value));
  picker.replaceChildren(el('legend', { text: 'Concerts it sells' }), ...concerts.map((c) => {
    const box = el('input', { type: 'checkbox', value: c.id });
    box.checked = checked.has(c.id);
    if (owner.has(c.id)) box.disabled = true;
    return el('label', {}, box, ` ${c.title}${owner.has(c.id) ? ` (in ${owner.get(c.id)})` : ''}`);
  }));
  const blocks = await Promise.all(concerts.map(async (c) => {
    let sales = [];
    try { sales = await api('GET', `/admin/concerts/${c.id}/sales`); } catch { /* shown empty */ }
    return el('div', { class: 'concert', 'data-concert': c.id },
      el('h3', { text: `${c.title}${c.venue ? ` · ${c.venue}` : ''} · ${owner.get(c.id) ?? 'main'}` }),
      ...sales.map((s) => {
        const bar = svg('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img',
          'aria-label': `${s.sold} sold, ${s.held} held, ${s.available} available of ${s.totalSeats}` });
        let x = 0;
        for (const k of ['sold', 'held', 'available']) {
          const w = s.totalSeats ? (100 * s[k]) / s.totalSeats : 0;
          bar.append(svg('rect', { class: k, x, y: 0, width: w, height: 10 }));
          x += w;
        }
        return el('div', { class: 'schedule', 'data-schedule': s.scheduleId },
          el('span', { text: time(s.startsAt) }), bar,
          el('span', { class: 'figures', text: `${s.sold} sold · ${s.held} held · ${s.available} available · ${won(s.revenue)}` }));
      }));
  }));
  $('sales').replaceChildren(...blocks);
}

// ---- the operator log -----------------------------------------------------------------------

let auditBefore = null;
let auditNext = null;

/** `key=value` pairs of a log line's state (`name="The tour" batch=100 ...`). */
function pairs(line) {
  const out = new Map();
  for (const m of (line ?? '').matchAll(/([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) out.set(m[1], m[2]);
  return out;
}

/** What a log line changed, e.g. `batch 14 → 15`; a creation lists nothing. */
function logChange(entry) {
  if (entry.before === null) return 'created';
  const before = pairs(entry.before);
  const after = pairs(entry.after);
  return [...after].filter(([k, v]) => before.get(k) !== v).map(([k, v]) => `${k} ${before.get(k) ?? '—'} → ${v}`).join(', ') || 'no change';
}

async function refreshAudit() {
  const q = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  if (auditBefore !== null) q.set('before', String(auditBefore));
  const page = await api('GET', `/admin/audit?${q}`);
  auditNext = page.nextBefore;
  $('audit-older').disabled = auditNext === null;
  $('audit-newest').disabled = auditBefore === null;
  $('audit').tBodies[0].replaceChildren(...page.entries.map((e) => el('tr', { 'data-seq': String(e.seq) },
    el('td', { class: 'num', text: String(e.seq) }), el('td', { text: time(e.at) }), el('td', { text: e.actor }),
    el('td', { text: e.action }), el('td', { text: e.target }), el('td', { class: 'change', text: logChange(e) }),
    el('td', { class: 'wrap', text: e.before ?? '—' }),
    el('td', { class: 'wrap', text: e.after }))));
}

function wireAudit() {
  $('audit-older').addEventListener('click', async () => {
    if (auditNext === null) return;
    auditBefore = auditNext;
    await refreshAudit();
  });
  $('audit-newest').addEventListener('click', async () => {
    auditBefore = null;
    await refreshAudit();
  });
}

// ---- sign-in and the refresh loop -----------------------------------------------------------

let timer = null;

async function refreshAll() {
  await refreshRooms();
  await Promise.all([refreshSales(), auditBefore === null ? refreshAudit() : Promise.resolve()]);
}

async function start() {
  try {
    await refreshAll();
  } catch (err) {
    if (err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignin('The operator token was refused: check it and try again.');
      return;
    }
    say(`Could not read the rooms: ${err.message}`, 'refused');
  }
  $('signin').hidden = true;
  $('console').hidden = false;
  clearInterval(timer);
  timer = setInterval(() => {
    if ($('confirm').open) return;
    refreshAll().catch((err) => say(`Could not refresh: ${err.message}`, 'refused'));
  }, REFRESH_MS);
}

function showSignin(message) {
  clearInterval(timer);
  $('console').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message ?? '';
  $('token').focus();
}

function main() {
  wireSteering();
  wireAudit();
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    start();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin('The token is forgotten.');
  });
  if (token()) start(); else showSignin();
}

main();
