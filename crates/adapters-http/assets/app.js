// The buyer's page: account and balance, the waiting line, the seat map, the hold and the
// payment, on the service's public API only. State that must survive a reload (who the buyer
// is, their place in line, their hold, their last purchase) lives in localStorage; everything
// else is asked of the server again.

import { call, callWithRetry, serverNow, observeServerTime, backoffSecs, isRetryable } from './api.js';
import { describe, moment, countdown, notOpenWords, endedWords } from './messages.js';
import * as auth from './auth.js';

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);

/** Builds an element: `el('p', { className: 'x' }, 'text', child)`. Text is never parsed as HTML. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith('aria-') || key.startsWith('data-') || key === 'for' || key === 'role') {
      node.setAttribute(key, value);
    } else {
      node[key] = value;
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A random (v4) UUID; `crypto.randomUUID` exists only in secure contexts, so fall back. */
function newUuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const won = (n) => `${Number(n).toLocaleString('en-US')} won`;

const dateTime = new Intl.DateTimeFormat('en-GB', {
  weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit',
});
const clockTime = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const when = (iso) => dateTime.format(new Date(iso));
const at = (iso) => clockTime.format(new Date(iso));

/** m:ss, rounded up so that 0:00 shows only once the time is really up. */
function mmss(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** Whole seconds in words: "1 second", "5 seconds". */
function seconds(secs) {
  const n = Math.max(1, Math.ceil(secs));
  return `${n} second${n === 1 ? '' : 's'}`;
}

/** A wait in words, coarse enough that the announced text changes only when it matters. */
function waitWords(secs) {
  if (!(secs > 0)) return 'any moment now';
  if (secs < 60) return 'less than a minute';
  const mins = Math.round(secs / 60);
  if (mins < 60) return `about ${mins} minute${mins === 1 ? '' : 's'}`;
  const h = Math.floor(mins / 60);
  const m = mins % 60;
  return `about ${h} hour${h === 1 ? '' : 's'}${m ? ` ${m} minute${m === 1 ? '' : 's'}` : ''}`;
}

// localStorage may be unavailable (private modes, full disk): the page then works without
// surviving reloads rather than not at all.
const KEYS = {
  user: 'concert.userId', token: 'concert.token', hold: 'concert.hold', purchase: 'concert.purchase', room: 'concert.room',
};
const MAIN = 'main';
/** Where a room's place in line is kept: one token per room (`main`'s under the key it always had). */
const tokenKey = (roomId) => (roomId === MAIN ? KEYS.token : `${KEYS.token}.${roomId}`);
const ROOM_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const saved = {
  get(key) {
    try {
      return JSON.parse(localStorage.getItem(key));
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      // Not kept; see above.
    }
  },
};

// ---------------------------------------------------------------------------------------------
// State

const state = {
  userId: '',
  /** The on-sales as `GET /rooms` last listed them; null until the first answer. */
  rooms: null,
  /** The room whose line the page shows and joins; its token is the one below. */
  roomId: MAIN,
  roomsTimer: 0,
  /** When the next room changes state (an opening): the list is asked for again then. */
  roomsDueAt: 0,
  /** The countdown under the line: `{ label, until, done }`, or null. */
  timer: null,
  /** The token that was seen in a pre-queue, to say "drawn" once it has a place. */
  prequeueToken: null,
  balance: null,
  /** The token's value, kept even once EXPIRED: a payment's replay may still need it. */
  tokenValue: null,
  /** The last token body the server sent. */
  token: null,
  pollTimer: 0,
  pollFailures: 0,
  concerts: [],
  concert: null,
  schedules: [],
  schedule: null,
  seats: [],
  seatId: null,
  /** The live hold: the reservation plus what the page showed when it was made. */
  hold: null,
  /** Set when a hold ran out, until the buyer moves on. */
  lapsed: null,
  /** The last payment's receipt. */
  purchase: null,
  announcedMinute: false,
  turnEndPolled: false,
};

const isActive = () => state.token?.status === 'ACTIVE';

// ---------------------------------------------------------------------------------------------
// Messages

/**
 * Shows a message in a section's slot. The slots are live regions from the start (a region
 * added with its text is often not read out); errors are also `role="alert"`, read at once.
 * `actions` are buttons: `{ label, run }`.
 */
function showMessage(slotId, { kind = 'info', title = '', lines = [], actions = [] }) {
  const slot = $(slotId);
  const box = el('div', kind === 'error' ? { className: `msg ${kind}`, role: 'alert' } : { className: `msg ${kind}` });
  if (title) box.append(el('p', { className: 'msg-title' }, title));
  for (const line of lines) if (line) box.append(el('p', {}, line));
  if (actions.length) {
    const row = el('div', { className: 'actions' });
    for (const { label, run } of actions) {
      const button = el('button', { type: 'button', className: 'secondary' }, label);
      button.addEventListener('click', run);
      row.append(button);
    }
    box.append(row);
  }
  slot.replaceChildren(box);
}

const clearMessage = (slotId) => $(slotId).replaceChildren();

/** A failed answer as sentences, with the action its code calls for. */
function showProblem(slotId, result, extra = {}) {
  const d = describe(result.problem, result.status, { roomName });
  const actions = [];
  const offer = extra.action ?? d.action;
  if (offer === 'rejoin') actions.push({ label: 'Join the line again', run: () => join() });
  if (offer === 'other-room' && result.problem?.roomId && ROOM_ID.test(result.problem.roomId)) {
    const id = result.problem.roomId;
    actions.push({ label: `Join “${roomName(id)}”`, run: () => joinRoom(id) });
  }
  if (offer === 'rooms' && state.rooms) actions.push({ label: 'Choose another line', run: () => focusRooms() });
  if (offer === 'pick-another') actions.push({ label: 'Pick another seat', run: () => pickAgain() });
  if (offer === 'reload-shop') actions.push({ label: 'Reload the concerts', run: () => loadConcerts() });
  if (offer === 'charge') {
    const need = extra.shortfall;
    actions.push({
      label: need > 0 ? `Add the missing ${won(need)}` : 'Add to your balance',
      run: () => {
        if (need > 0) $('charge-amount').value = String(need);
        $('charge-amount').focus();
      },
    });
  }
  showMessage(slotId, { kind: 'error', title: d.title, lines: [extra.lead, d.text, d.next], actions });
}

// ---------------------------------------------------------------------------------------------
// Account and balance

/** The signed identity to send where the contract needs one (none with identity off). */
const identity = () => (auth.enabled ? auth.current()?.idToken : undefined);

async function loadBalance() {
  const userId = state.userId;
  if (!userId) return;
  const r = await callWithRetry('GET', `/users/${userId}/balance`, { token: identity() });
  if (userId !== state.userId) return;
  if (r.ok) {
    state.balance = r.data.balance;
    $('balance').textContent = won(state.balance);
  } else {
    $('balance').textContent = 'not known right now';
    showProblem('account-msg', r);
  }
}

function setUser(userId, { fresh }) {
  state.userId = userId;
  $('user-id').value = userId;
  saved.set(KEYS.user, userId);
  if (fresh) {
    // Place in line, hold and receipt belong to the previous id.
    clearTimeout(state.pollTimer);
    Object.assign(state, { tokenValue: null, token: null, hold: null, lapsed: null, purchase: null, seatId: null });
    forgetAllTokens();
    saved.set(KEYS.hold, null);
    saved.set(KEYS.purchase, null);
    ['queue-msg', 'shop-msg', 'hold-msg'].forEach(clearMessage);
  }
  $('balance').textContent = 'loading…';
  render();
  loadBalance();
}

function onUserSubmit(event) {
  event.preventDefault();
  const input = $('user-id');
  const value = input.value.trim().toLowerCase();
  if (!UUID.test(value)) {
    input.setAttribute('aria-invalid', 'true');
    showMessage('account-msg', {
      kind: 'error',
      title: 'That is not a user id.',
      lines: ['A user id looks like 3f2b8c1e-5d4a-4b6c-9e7f-0a1b2c3d4e5f: 32 hexadecimal digits in groups of 8, 4, 4, 4 and 12.'],
    });
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  if (value === state.userId) {
    showMessage('account-msg', { kind: 'info', lines: ['You are already using this id.'] });
    return;
  }
  setUser(value, { fresh: true });
  showMessage('account-msg', { kind: 'success', lines: ['Now using this id. Join the line to get a turn.'] });
}

async function onCharge(event) {
  event.preventDefault();
  const input = $('charge-amount');
  const amount = Number(input.value);
  if (input.value.trim() === '' || !Number.isInteger(amount)) {
    input.setAttribute('aria-invalid', 'true');
    showMessage('account-msg', {
      kind: 'error',
      title: 'Enter an amount in whole won.',
      lines: ['For example 50000. Won has no smaller unit.'],
    });
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  const button = $('charge');
  button.disabled = true;
  button.textContent = 'Charging…';
  // One key per press of the button: the retries below reuse it, so a charge whose answer was
  // lost is replayed by the server instead of being credited twice.
  const key = newUuid();
  const userId = state.userId;
  const r = await callWithRetry(
    'POST', `/users/${userId}/balance/charge`,
    { body: { amount }, idempotencyKey: key, token: identity() },
    {
      onWait: (secs) => showMessage('account-msg', {
        lines: [`Still trying to reach the service; trying again in ${seconds(secs)}. You will not be charged twice.`],
      }),
    },
  );
  button.disabled = false;
  button.textContent = 'Charge';
  if (userId !== state.userId) return;
  if (!r.ok) {
    showProblem('account-msg', r);
    return;
  }
  state.balance = r.data.balance;
  $('balance').textContent = won(state.balance);
  const actions = state.hold ? [{ label: 'Back to your hold', run: () => $('pay').focus() }] : [];
  showMessage('account-msg', {
    kind: 'success',
    lines: [`Added ${won(amount)}. Your balance is now ${won(state.balance)}.`],
    actions,
  });
}

// ---------------------------------------------------------------------------------------------
// The waiting line

function saveToken() {
  const value = state.tokenValue ? { token: state.tokenValue, userId: state.userId, roomId: state.roomId } : null;
  saved.set(tokenKey(state.roomId), value);
}

/** The kept place in a room's line, when it is this user's. */
function savedToken(roomId) {
  const t = saved.get(tokenKey(roomId));
  return t && typeof t === 'object' && t.userId === state.userId && typeof t.token === 'string' ? t.token : null;
}

/** Every room's place in line (another user id takes over this browser). */
function forgetAllTokens() {
  try {
    for (let i = localStorage.length - 1; i >= 0; i -= 1) {
      const key = localStorage.key(i);
      if (key === KEYS.token || key?.startsWith(`${KEYS.token}.`)) localStorage.removeItem(key);
    }
  } catch {
    // Nothing kept; see `saved`.
  }
}

function forgetToken() {
  clearTimeout(state.pollTimer);
  state.tokenValue = null;
  state.token = null;
  saveToken();
}

/** Seconds until the next poll: the server's `pollAfterSecs`, or a pace derived from the wait. */
function nextPollSecs(body) {
  const hinted = Number(body.pollAfterSecs);
  if (Number.isFinite(hinted) && hinted > 0) return hinted;
  return Math.min(15, Math.max(2, (Number(body.estimatedWaitSecs) || 0) / 4));
}

function schedulePoll(secs) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(poll, Math.max(0.5, secs) * 1000);
}

async function poll() {
  const tokenValue = state.tokenValue;
  if (!tokenValue) return;
  clearTimeout(state.pollTimer);
  const r = await call('GET', '/queue/token', { token: tokenValue });
  if (tokenValue !== state.tokenValue) return;
  if (r.ok) {
    if (state.pollFailures) clearMessage('queue-msg');
    state.pollFailures = 0;
    applyToken(r.data);
    return;
  }
  if (r.status === 401) {
    forgetToken();
    render();
    showProblem('queue-msg', r, { action: 'rejoin' });
    return;
  }
  // Busy or unreachable: keep the place, wait as told (or longer each time), try again.
  state.pollFailures += 1;
  const secs = backoffSecs(r, state.pollFailures, 60);
  const d = describe(r.problem, r.status);
  showMessage('queue-msg', {
    title: d.title,
    lines: [`You keep your place. Checking again in ${seconds(secs)}.`],
  });
  if (isRetryable(r) || r.status >= 500) schedulePoll(secs);
}

function applyToken(body) {
  const wasActive = isActive();
  if (body.status === 'WAITING' && body.position === null) state.prequeueToken = body.token;
  state.token = body;
  state.tokenValue = body.token;
  saveToken();
  if (body.status === 'WAITING') {
    schedulePoll(nextPollSecs(body));
  } else {
    clearTimeout(state.pollTimer);
  }
  if (body.status === 'ACTIVE') {
    state.turnEndPolled = false;
    if (!wasActive) onAdmitted();
  }
  render();
}

async function join() {
  const button = $('join');
  button.disabled = true;
  clearMessage('queue-msg');
  const userId = state.userId;
  const roomId = state.roomId;
  // `main` is joined as before rooms existed: without a roomId.
  const body = roomId === MAIN ? { userId } : { userId, roomId };
  // Joining is safe to repeat: the server answers with the place the user already has.
  const r = await callWithRetry('POST', '/queue/tokens', { body, token: identity() }, {
    onWait: (secs, res) => showMessage('queue-msg', {
      title: describe(res.problem, res.status).title,
      lines: [`Trying again in ${seconds(secs)}.`],
    }),
  });
  button.disabled = false;
  if (userId !== state.userId || roomId !== state.roomId) return;
  if (!r.ok) {
    const code = r.problem?.code;
    if (code === 'NOT_FOUND') {
      showProblem('queue-msg', r, { action: 'rooms', lead: 'This line is no longer on sale.' });
    } else {
      showProblem('queue-msg', r);
    }
    // The list was out of date: the line's state (or the line itself) changed meanwhile.
    if (code === 'ROOM_NOT_OPEN' || code === 'ROOM_CLOSED' || code === 'NOT_FOUND') loadRooms();
    return;
  }
  clearMessage('queue-msg');
  clearMessage('shop-msg');
  if (state.purchase) {
    state.purchase = null;
    saved.set(KEYS.purchase, null);
  }
  applyToken(r.data);
  $('queue-h').focus();
  // One more waiting in the list of on-sales.
  loadRooms();
}

function onAdmitted() {
  state.concerts = [];
  loadConcerts();
  if (state.hold) checkHold(state.hold);
}

/** A hold kept from before a reload may have been paid (another tab) or ended meanwhile. */
async function checkHold(h) {
  const r = await call('GET', `/reservations/${h.id}`, { token: state.tokenValue });
  if (state.hold !== h) return;
  if (r.ok && r.data.status === 'PAID') {
    await alreadyPaid(h, r);
  } else if (r.ok && r.data.status === 'EXPIRED') {
    holdRanOut();
  } else if (r.status === 404) {
    dropHold();
    render();
  }
}

function renderQueue() {
  const t = state.token;
  const room = currentRoom();
  const status = $('queue-status');
  const join = $('join');
  const turnLeft = $('turn-left');
  const placeless = !t && !state.tokenValue;
  // Before joining: what the chosen line does now (not open yet, pre-queue, closed).
  const note = placeless && room ? roomNote(room) : '';
  $('room-note').hidden = !note;
  // Only on change: the note is live.
  if ($('room-note').textContent !== note) $('room-note').textContent = note;
  $('queue-room').hidden = !room;
  if (room) $('queue-room').replaceChildren('Line: ', el('strong', {}, room.name));
  // In a pre-queue nobody is admitted yet anyway: a pause matters from the draw on.
  $('paused-note').hidden = !(t?.status === 'WAITING' && t.paused === true && t.position !== null);
  $('queue-intro').hidden = Boolean(t || state.tokenValue || note);
  turnLeft.hidden = t?.status !== 'ACTIVE';
  state.timer = null;
  let content = [];
  if (!t) {
    join.hidden = Boolean(state.tokenValue) || (placeless && room?.state === 'CLOSED');
    join.textContent = 'Join the line';
    if (state.tokenValue) content = [el('p', {}, 'Finding your place in line…')];
    else if (room?.state === 'SCHEDULED') state.timer = { label: 'Joining opens in', until: room.prequeueOpensAt || room.opensAt, done: 'Joining opens now…' };
    else if (room?.state === 'PREQUEUE') state.timer = { label: 'The draw is in', until: room.opensAt, done: 'Drawing the order now…' };
  } else if (t.status === 'WAITING' && t.position === null) {
    // The pre-queue: no place yet, and none to be had by joining early.
    join.hidden = true;
    content = [
      el('p', { className: 'place' }, el('strong', {}, 'You are in the pre-queue.')),
      el('p', {}, t.drawAt
        ? `Your place in line is drawn at random at the opening, ${moment(t.drawAt)}. Joining early gives no advantage: everyone who joins before then has the same chance.`
        : 'Your place in line is being drawn at random. Joining early gives no advantage: everyone who joined before the opening has the same chance.'),
      el('p', {}, 'Keep this page open, or come back to it: you keep your entry.'),
    ];
    if (t.drawAt) state.timer = { label: 'Your place is drawn in', until: t.drawAt, done: 'Drawing the order now…' };
  } else if (t.status === 'WAITING') {
    join.hidden = true;
    content = [
      state.prequeueToken === t.token ? el('p', {}, 'The order has been drawn.') : null,
      el('p', { className: 'place' }, el('span', {}, 'Your place in line '), el('strong', { className: 'big', id: 'position' }, String(t.position))),
      el('p', {}, `Estimated wait: ${waitWords(t.estimatedWaitSecs)}${t.paused === true ? ' once admission resumes' : ''}.`),
    ].filter(Boolean);
  } else if (t.status === 'ACTIVE') {
    join.hidden = true;
    content = [el('p', { className: 'place' }, el('strong', {}, 'It is your turn.'), ' Pick a concert, a date and a seat below.')];
  } else {
    const words = endedWords(t, { purchased: Boolean(state.purchase) });
    join.hidden = room?.state === 'CLOSED';
    join.textContent = words.join;
    content = [el('p', {}, words.text)];
    if (room?.state === 'CLOSED') content.push(el('p', {}, 'This line is closed now: it takes no new joiners.'));
  }
  // Replace only on change: the region is live, and every change is read out.
  const next = content.map((n) => n.outerHTML).join('');
  if (status.dataset.shown !== next) {
    status.replaceChildren(...content);
    status.dataset.shown = next;
  }
  $('draw-left').hidden = !state.timer;
  renderTimer(serverNow());
}

/** The countdown under the line (to joining, to the draw), and what it says once it is over. */
function renderTimer(now) {
  const timer = state.timer;
  if (!timer) return;
  const left = Date.parse(timer.until) - now;
  $('draw-countdown').textContent = countdown(left);
  $('draw-countdown').hidden = left <= 0;
  $('draw-left-label').textContent = left <= 0 ? timer.done : timer.label;
}

/** What a line that one has not joined does now, in a sentence; '' when it simply takes joiners. */
function roomNote(room) {
  if (room.state === 'SCHEDULED') return notOpenWords(room);
  if (room.state === 'PREQUEUE') {
    return `The pre-queue is open. The order of everyone who joins before the opening on ${moment(room.opensAt)} is drawn at random then: joining early gives no advantage.`;
  }
  if (room.state === 'CLOSED') return 'This line is closed: it takes no new joiners. Choose another line above.';
  return '';
}

// ---------------------------------------------------------------------------------------------
// The on-sales: one line per room

const currentRoom = () => state.rooms?.find((r) => r.id === state.roomId) ?? null;

/** A room's name as the list shows it; its id when the list does not know it. */
function roomName(id) {
  return state.rooms?.find((r) => r.id === id)?.name ?? id;
}

const STATE_WORDS = { SCHEDULED: 'Not open yet', PREQUEUE: 'Pre-queue', OPEN: 'Open', PAUSED: 'Paused', CLOSED: 'Closed' };

/** The line under a room's name: what it does now, in words. */
function roomDetail(room) {
  switch (room.state) {
    case 'SCHEDULED':
      return room.prequeueOpensAt
        ? `Joining opens on ${moment(room.prequeueOpensAt)}; the order is drawn at the opening on ${moment(room.opensAt)}.`
        : `Joining opens on ${moment(room.opensAt)}.`;
    case 'PREQUEUE':
      return `Join now: the order is drawn at random at the opening on ${moment(room.opensAt)}, so joining early gives no advantage.`;
    case 'PAUSED':
      return 'The organisers have paused admission here; joining still takes a place that is kept.';
    case 'CLOSED':
      return 'Takes no new joiners.';
    default:
      if (room.id === MAIN) return 'The general line, for every concert without a line of its own.';
      return room.opensAt ? `Open since ${moment(room.opensAt)}.` : 'Open: join to take your place.';
  }
}

/** How many wait, and the wait of someone joining now. */
function roomWaiting(room) {
  if (room.state === 'SCHEDULED') return '';
  const who = room.state === 'PREQUEUE' ? `${room.waiting} in the pre-queue` : `${room.waiting} waiting`;
  const wait = room.estimatedWaitSecs === null || room.state === 'CLOSED' || room.state === 'PREQUEUE'
    ? '' : `; wait for someone joining now: ${waitWords(room.estimatedWaitSecs)}`;
  return `${who}${wait}.`;
}

/** The moment a room's countdown counts to, with what it is: or null. */
function roomClock(room) {
  if (room.state === 'SCHEDULED') return { words: 'Joining opens in', until: room.prequeueOpensAt || room.opensAt };
  if (room.state === 'PREQUEUE') return { words: 'Draw in', until: room.opensAt };
  return null;
}

function renderRooms() {
  const rooms = state.rooms;
  $('rooms').hidden = !rooms;
  if (!rooms) return;
  const focusedId = document.activeElement?.name === 'room' ? document.activeElement.value : null;
  const nodes = rooms.map((room) => {
    const id = `room-${room.id}`;
    const clock = roomClock(room);
    const input = el('input', { type: 'radio', name: 'room', id, value: room.id, checked: room.id === state.roomId });
    input.addEventListener('change', () => selectRoom(room.id));
    const waiting = roomWaiting(room);
    return el('div', { className: 'choice room' },
      input,
      el('label', { for: id },
        el('span', { className: 'choice-main' },
          el('span', { className: 'room-name' }, room.name), ' ',
          el('span', { className: `badge state-${room.state.toLowerCase()}` }, STATE_WORDS[room.state] ?? room.state)),
        el('span', { className: 'choice-hint' }, roomDetail(room)),
        waiting ? el('span', { className: 'choice-hint' }, waiting) : null,
        // The absolute time is in the name already; the ticking figure is for the eye only.
        clock ? el('span', { className: 'room-clock', 'aria-hidden': 'true' },
          `${clock.words} `, el('span', { className: 'clock', 'data-until': clock.until }, countdown(Date.parse(clock.until) - serverNow()))) : null));
  });
  $('room-list').replaceChildren(...nodes);
  if (focusedId) document.getElementById(`room-${focusedId}`)?.focus();
}

async function loadRooms() {
  clearTimeout(state.roomsTimer);
  const r = await callWithRetry('GET', '/rooms', {}, { tries: 3 });
  // Asked again every 20 s while the page is in view, and at each opening (see tick).
  state.roomsTimer = setTimeout(() => {
    if (document.visibilityState === 'visible') loadRooms();
    else state.roomsDueAt = 1;
  }, 20_000);
  if (!r.ok || !Array.isArray(r.data)) {
    if (state.rooms) return;
    // Without the list the page still serves the general line.
    showProblem('rooms-msg', r);
    $('rooms').hidden = false;
    return;
  }
  clearMessage('rooms-msg');
  state.rooms = r.data.filter((x) => x && ROOM_ID.test(x.id));
  const now = serverNow();
  const moments = state.rooms.flatMap((x) => [x.prequeueOpensAt, x.opensAt])
    .map((x) => Date.parse(x ?? '')).filter((t) => t > now);
  // A little after the moment, so the service's clock has passed it too.
  state.roomsDueAt = moments.length ? Math.min(...moments) + 300 : 0;
  // The service may answer the list from a copy up to a moment old: a room still shown before
  // a moment that has passed is asked for again shortly.
  const behind = state.rooms.some((x) => (x.state === 'SCHEDULED' && Date.parse(x.prequeueOpensAt || x.opensAt) <= now)
    || (x.state === 'PREQUEUE' && Date.parse(x.opensAt) <= now));
  if (behind) state.roomsDueAt = now + 1000;
  if (!currentRoom()) {
    selectRoom(MAIN);
    return;
  }
  renderRooms();
  render();
}

/** Shows `roomId`'s line: its kept place (polled afresh), or the way to join it. */
function selectRoom(roomId) {
  if (roomId === state.roomId) {
    renderRooms();
    render();
    return;
  }
  clearTimeout(state.pollTimer);
  state.roomId = roomId;
  saved.set(KEYS.room, roomId);
  Object.assign(state, {
    token: null, tokenValue: savedToken(roomId), pollFailures: 0,
    concerts: [], concert: null, schedules: [], schedule: null, seats: [], seatId: null,
  });
  $('concert-list').replaceChildren();
  $('dates').hidden = true;
  $('seat-map').hidden = true;
  ['queue-msg', 'shop-msg'].forEach(clearMessage);
  renderRooms();
  render();
  if (state.tokenValue) poll();
}

/** Goes to another room's line and joins it (the answer is the kept place if there is one). */
function joinRoom(roomId) {
  selectRoom(roomId);
  join();
}

function focusRooms() {
  (document.querySelector('#room-list input:checked') ?? $('rooms-h')).focus();
}

/** A concert of another room: say which, by its name (the list may not know it yet). */
async function showOtherRoom(slotId, r) {
  const id = r.problem?.roomId;
  if (id && !state.rooms?.some((x) => x.id === id)) await loadRooms();
  showProblem(slotId, r);
}

// ---------------------------------------------------------------------------------------------
// Concerts, dates, seats

/** A read that needs the turn; problems land in the shop's message slot. */
async function shopRead(path) {
  const r = await callWithRetry('GET', path, { token: state.tokenValue });
  if (!r.ok) handleShopProblem(r);
  return r;
}

function handleShopProblem(r, extra) {
  const code = r.problem?.code;
  if (code === 'TOKEN_EXPIRED' || code === 'TOKEN_INVALID' || code === 'TOKEN_MISSING') {
    if (code === 'TOKEN_EXPIRED' && state.token) state.token = { ...state.token, status: 'EXPIRED' };
    else forgetToken();
    render();
    showProblem('queue-msg', r, { action: 'rejoin' });
    return;
  }
  if (code === 'TOKEN_NOT_ACTIVE') {
    poll();
  }
  if (code === 'ROOM_MISMATCH') {
    // The concert is sold in another room (an operator may have just moved it there).
    showOtherRoom('shop-msg', r);
    return;
  }
  showProblem('shop-msg', r, extra);
}

/** A list of radio "cards" inside `container`; `onPick(item)` runs when one is chosen. */
function renderChoices(container, name, items, { label, hint, selectedId, onPick }) {
  const nodes = items.map((item) => {
    const id = `${name}-${item.id}`;
    const input = el('input', { type: 'radio', name, id, value: item.id, checked: item.id === selectedId });
    input.addEventListener('change', () => onPick(item));
    return el('div', { className: 'choice' },
      input,
      el('label', { for: id }, el('span', { className: 'choice-main' }, label(item)), el('span', { className: 'choice-hint' }, hint(item))));
  });
  container.replaceChildren(...nodes);
}

async function loadConcerts() {
  clearMessage('shop-msg');
  const r = await shopRead('/concerts');
  if (!r.ok) return;
  state.concerts = r.data;
  renderChoices($('concert-list'), 'concert', state.concerts, {
    label: (c) => c.title,
    hint: (c) => [c.artist, c.venue].filter(Boolean).join(' · '),
    selectedId: state.concert?.id,
    onPick: pickConcert,
  });
  if (!state.concerts.length) {
    showMessage('shop-msg', { lines: ['No concerts are on sale right now. Come back later.'] });
  }
  if (state.concert && state.concerts.some((c) => c.id === state.concert.id)) pickConcert(state.concert);
  render();
}

async function pickConcert(concert) {
  state.concert = concert;
  state.schedule = null;
  state.seatId = null;
  $('seat-map').hidden = true;
  clearMessage('shop-msg');
  const r = await shopRead(`/concerts/${concert.id}/schedules`);
  if (!r.ok || state.concert !== concert) return;
  state.schedules = r.data;
  $('dates').hidden = false;
  renderChoices($('date-list'), 'date', state.schedules, {
    label: (s) => when(s.startsAt),
    hint: (s) => `${s.availableSeats} of ${s.totalSeats} seats free`,
    selectedId: null,
    onPick: pickDate,
  });
  if (!state.schedules.length) {
    showMessage('shop-msg', { lines: ['No dates of this concert are open for booking. Pick another concert.'] });
  }
}

async function pickDate(schedule) {
  state.schedule = schedule;
  state.seatId = null;
  clearMessage('shop-msg');
  await loadSeats();
}

async function loadSeats() {
  const schedule = state.schedule;
  if (!schedule) return;
  const r = await shopRead(`/schedules/${schedule.id}/seats`);
  if (!r.ok || state.schedule !== schedule) return;
  state.seats = r.data;
  if (!state.seats.some((s) => s.id === state.seatId && s.status === 'AVAILABLE')) state.seatId = null;
  renderSeats();
}

const SEAT_WORDS = { AVAILABLE: 'available', HELD: 'held by someone', SOLD: 'sold' };

function renderSeats() {
  const grid = $('seat-grid');
  const focusedId = document.activeElement?.name === 'seat' ? document.activeElement.value : null;
  const free = state.seats.filter((s) => s.status === 'AVAILABLE').length;
  $('seat-map-legend').textContent = `Seats on ${when(state.schedule.startsAt)}: ${free} of ${state.seats.length} free`;
  const nodes = state.seats.map((seat) => {
    const id = `seat-${seat.id}`;
    const status = seat.status.toLowerCase();
    const name = `Seat ${seat.number}, ${won(seat.price)}, ${SEAT_WORDS[seat.status] ?? status}`;
    const input = el('input', {
      type: 'radio', name: 'seat', id, value: seat.id,
      disabled: seat.status !== 'AVAILABLE',
      checked: seat.id === state.seatId,
      'aria-label': name,
    });
    input.addEventListener('change', () => {
      state.seatId = seat.id;
      renderHoldButton();
    });
    return el('div', { className: `seat ${status}`, title: name },
      input,
      el('label', { for: id, 'aria-hidden': 'true' }, String(seat.number)));
  });
  grid.replaceChildren(...nodes);
  $('seat-map').hidden = false;
  if (focusedId) {
    const again = document.getElementById(`seat-${focusedId}`);
    if (again && !again.disabled) again.focus();
  }
  renderHoldButton();
}

function renderHoldButton() {
  const button = $('hold');
  const seat = state.seats.find((s) => s.id === state.seatId);
  button.disabled = !seat;
  button.textContent = seat ? `Hold seat ${seat.number} (${won(seat.price)})` : 'Pick a seat to hold it';
}

async function holdSeat() {
  const seat = state.seats.find((s) => s.id === state.seatId);
  const schedule = state.schedule;
  if (!seat || !schedule) return;
  const button = $('hold');
  button.disabled = true;
  button.textContent = 'Holding…';
  clearMessage('shop-msg');
  // Not retried by itself: a hold has no idempotency key, and a retry after a lost answer
  // would find the seat taken by this very hold.
  const r = await call('POST', '/reservations', {
    token: state.tokenValue,
    body: { scheduleId: schedule.id, seatId: seat.id },
  });
  if (!r.ok) {
    renderHoldButton();
    const code = r.problem?.code;
    if (code === 'SEAT_UNAVAILABLE') {
      state.seatId = null;
      handleShopProblem(r, { lead: `Seat ${seat.number} is no longer free.` });
      await loadSeats();
      return;
    }
    if (code === 'NOT_FOUND') {
      handleShopProblem(r);
      if (state.concert) pickConcert(state.concert);
      return;
    }
    handleShopProblem(r);
    return;
  }
  const res = r.data;
  // The hold's length as the server counts it, laid on this device's clock from the moment
  // the answer arrived: the countdown then ends no earlier than the server's hold does.
  observeServerTime(Date.parse(res.createdAt), r.receivedAt);
  state.hold = {
    id: res.id,
    userId: state.userId,
    roomId: state.roomId,
    scheduleId: res.scheduleId,
    seatId: res.seatId,
    seatNumber: res.seatNumber,
    price: res.price,
    heldUntil: res.heldUntil,
    createdAt: res.createdAt,
    concertTitle: state.concert?.title ?? '',
    startsAt: schedule.startsAt,
    // One key for every attempt to pay this reservation, kept across reloads.
    payKey: newUuid(),
  };
  state.lapsed = null;
  state.announcedMinute = false;
  saved.set(KEYS.hold, state.hold);
  state.seatId = null;
  clearMessage('hold-msg');
  render();
  $('hold-h').focus();
}

// ---------------------------------------------------------------------------------------------
// Hold and payment

function renderHold() {
  const h = state.hold;
  const lapsed = state.lapsed;
  const panel = $('hold-panel');
  panel.hidden = !h && !lapsed;
  if (panel.hidden) return;
  const shown = h ?? lapsed;
  $('hold-what').textContent = `Seat ${shown.seatNumber} · ${won(shown.price)} · ${shown.concertTitle}, ${when(shown.startsAt)}`;
  $('hold-when').textContent = h ? `Your hold ends at ${at(h.heldUntil)}; pay before then to keep the seat.` : '';
  $('pay').hidden = !h;
  $('abandon').hidden = !h;
  $('pay').textContent = h ? `Pay ${won(h.price)}` : 'Pay';
  panel.classList.toggle('lapsed', !h);
  if (!h) panel.classList.remove('urgent');
  $('countdown-label').textContent = h ? 'Time left to pay:' : 'Hold ended:';
  tick();
}

async function pay() {
  const h = state.hold;
  if (!h) return;
  // Paid with the turn of the room the seat was held in.
  if (h.roomId && h.roomId !== state.roomId) selectRoom(h.roomId);
  if (!state.tokenValue) {
    showMessage('hold-msg', {
      kind: 'error',
      title: 'Paying needs a turn.',
      lines: [`Join the line again; your hold on seat ${h.seatNumber} lasts until ${at(h.heldUntil)}.`],
      actions: [{ label: 'Join the line again', run: () => join() }],
    });
    return;
  }
  const button = $('pay');
  button.disabled = true;
  button.textContent = 'Paying…';
  clearMessage('hold-msg');
  const r = await callWithRetry('POST', '/payments', {
    token: state.tokenValue,
    body: { reservationId: h.id },
    idempotencyKey: h.payKey,
  }, {
    onWait: (secs) => showMessage('hold-msg', {
      lines: [`Still trying to reach the service; trying again in ${seconds(secs)}. You will not pay twice.`],
    }),
  });
  button.disabled = false;
  if (state.hold !== h) return;
  button.textContent = `Pay ${won(h.price)}`;
  if (r.ok) {
    paid(h, r.data);
    return;
  }
  const code = r.problem?.code;
  if (code === 'INSUFFICIENT_BALANCE') {
    await loadBalance();
    const shortfall = state.balance === null ? 0 : h.price - state.balance;
    showProblem('hold-msg', r, {
      shortfall,
      lead: state.balance === null ? '' : `The seat costs ${won(h.price)} and your balance is ${won(state.balance)}.`,
    });
  } else if (code === 'HOLD_EXPIRED') {
    holdRanOut();
  } else if (code === 'ALREADY_PAID') {
    await alreadyPaid(h, r);
  } else if (code === 'TOKEN_EXPIRED' || code === 'TOKEN_INVALID') {
    if (code === 'TOKEN_EXPIRED' && state.token) state.token = { ...state.token, status: 'EXPIRED' };
    else forgetToken();
    render();
    showProblem('hold-msg', r, {
      action: 'rejoin',
      lead: `Your hold on seat ${h.seatNumber} still lasts until ${at(h.heldUntil)}: when your turn comes again, pay here.`,
    });
  } else if (code === 'NOT_FOUND') {
    dropHold();
    showProblem('hold-msg', r, { action: 'pick-another' });
  } else if (code === 'ROOM_MISMATCH') {
    await showOtherRoom('hold-msg', r);
  } else {
    showProblem('hold-msg', r);
  }
}

function paid(h, payment) {
  state.purchase = {
    userId: state.userId,
    paymentId: payment.id,
    reservationId: payment.reservationId,
    seatNumber: h.seatNumber,
    concertTitle: h.concertTitle,
    startsAt: h.startsAt,
    amount: payment.amount,
    balance: payment.balance,
    paidAt: payment.paidAt,
  };
  saved.set(KEYS.purchase, state.purchase);
  dropHold();
  clearMessage('account-msg');
  clearMessage('hold-msg');
  state.balance = payment.balance;
  $('balance').textContent = won(payment.balance);
  // The payment used the turn up.
  if (state.token) state.token = { ...state.token, status: 'EXPIRED' };
  render();
  $('done-h').focus();
}

async function alreadyPaid(h, r) {
  // Paid before (perhaps from another tab): show the receipt the server can still give.
  const res = await call('GET', `/reservations/${h.id}`, { token: state.tokenValue });
  await loadBalance();
  if (res.ok && res.data.status === 'PAID') {
    paid(h, { id: '', reservationId: h.id, amount: res.data.price, balance: state.balance, paidAt: res.data.paidAt });
    return;
  }
  dropHold();
  render();
  showProblem('shop-msg', r);
}

function dropHold() {
  state.hold = null;
  saved.set(KEYS.hold, null);
}

function holdRanOut() {
  const h = state.hold;
  if (!h) return;
  state.lapsed = h;
  dropHold();
  render();
  showMessage('hold-msg', {
    kind: 'error',
    title: `Your hold on seat ${h.seatNumber} ran out.`,
    lines: ['The seat is free for anyone again and nothing was charged. Pick a seat again.'],
    actions: [{ label: 'Pick a seat again', run: () => pickAgain() }],
  });
  $('hold-announce').textContent = `Your hold on seat ${h.seatNumber} ran out.`;
}

function abandonHold() {
  const h = state.hold;
  if (!h) return;
  dropHold();
  pickAgain();
  showMessage('shop-msg', {
    lines: [`Seat ${h.seatNumber} stays held until ${at(h.heldUntil)} and then goes back on sale.`],
  });
}

/** Back to the seat map, fresh from the server. */
function pickAgain() {
  state.lapsed = null;
  clearMessage('hold-msg');
  clearMessage('shop-msg');
  render();
  if (!isActive()) {
    showMessage('queue-msg', {
      kind: 'error',
      title: 'Picking a seat needs a turn.',
      lines: ['Join the line again.'],
      actions: [{ label: 'Join the line again', run: () => join() }],
    });
    $('queue-h').focus();
    return;
  }
  if (state.schedule) loadSeats();
  else if (!state.concerts.length) loadConcerts();
  $('shop-h').focus();
}

// ---------------------------------------------------------------------------------------------
// Receipt

function renderDone() {
  const p = state.purchase;
  $('done').hidden = !p;
  if (!p) return;
  const rows = [
    ['Concert', p.concertTitle],
    ['Date', when(p.startsAt)],
    ['Seat', String(p.seatNumber)],
    ['Paid', won(p.amount)],
    ['Balance left', won(p.balance)],
    ['Paid at', when(p.paidAt)],
  ];
  if (p.paymentId) rows.push(['Payment', p.paymentId]);
  $('receipt').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

// ---------------------------------------------------------------------------------------------
// Rendering and the clock

function render() {
  renderQueue();
  // The map is for choosing; while a hold (or its lapse notice) is up, the hold panel is.
  $('shop').hidden = !isActive() || Boolean(state.hold) || Boolean(state.lapsed);
  renderHold();
  renderDone();
}

/**
 * Time left, never more than the whole span from `from` to `until`: the server clock is read
 * from whole-second `Date` headers and errs late, which must not show 10:01 of a 10:00 turn.
 */
function within(left, until, from) {
  const span = Date.parse(until) - Date.parse(from);
  return Number.isFinite(span) ? Math.min(left, span) : left;
}

/** Twice a second: the hold's countdown, the turn's time left, and their ends. */
function tick() {
  const now = serverNow();
  const h = state.hold;
  if (h) {
    const left = within(Date.parse(h.heldUntil) - now, h.heldUntil, h.createdAt);
    $('countdown').textContent = mmss(left);
    $('hold-panel').classList.toggle('urgent', left <= 60_000);
    if (left <= 60_000 && left > 0 && !state.announcedMinute) {
      state.announcedMinute = true;
      $('hold-announce').textContent = 'Less than a minute left to pay.';
    }
    if (left <= 0) holdRanOut();
  } else if (state.lapsed) {
    $('countdown').textContent = '0:00';
  }
  const t = state.token;
  if (t?.status === 'ACTIVE' && t.expiresAt) {
    const left = within(Date.parse(t.expiresAt) - now, t.expiresAt, t.activatedAt);
    $('turn-left').textContent = `Your turn lasts until ${at(t.expiresAt)} (${mmss(left)} left).`;
    if (left <= 0 && !state.turnEndPolled) {
      // Ask the server rather than assume: it says EXPIRED, and the page follows.
      state.turnEndPolled = true;
      poll();
    }
  }
  // The openings ahead: in the list of on-sales and under the line.
  for (const node of document.querySelectorAll('#room-list [data-until]')) {
    const left = Date.parse(node.dataset.until) - now;
    node.textContent = left > 0 ? countdown(left) : 'a moment';
  }
  renderTimer(now);
  if (state.roomsDueAt && now >= state.roomsDueAt) {
    state.roomsDueAt = 0;
    loadRooms();
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function restore() {
  if (auth.enabled) {
    // The user is whoever signed in; nobody to be until then.
    state.userId = auth.current()?.userId ?? '';
  } else {
    const userId = saved.get(KEYS.user);
    state.userId = typeof userId === 'string' && UUID.test(userId) ? userId : newUuid();
    saved.set(KEYS.user, state.userId);
    $('user-id').value = state.userId;
  }
  const mine = (x) => x && typeof x === 'object' && x.userId === state.userId;
  const roomId = saved.get(KEYS.room);
  state.roomId = typeof roomId === 'string' && ROOM_ID.test(roomId) ? roomId : MAIN;
  state.tokenValue = savedToken(state.roomId);
  const hold = saved.get(KEYS.hold);
  if (mine(hold) && hold.id && hold.heldUntil) state.hold = hold;
  const purchase = saved.get(KEYS.purchase);
  if (mine(purchase)) state.purchase = purchase;
}

/** With identity on: the sign-in block instead of the id form, and nothing to do signed out. */
function renderIdentity() {
  const who = auth.current();
  $('user-form').hidden = true;
  $('identity').hidden = false;
  $('signed-in').hidden = !who;
  $('signed-out').hidden = Boolean(who);
  $('sign-in').hidden = Boolean(who);
  $('sign-out').hidden = !who;
  $('signed-in-name').textContent = who ? who.name : '';
  $('charge').disabled = !who;
  $('join').disabled = !who;
  if (!who) $('balance').textContent = 'sign in to see it';
  if (!auth.config.clientId) {
    $('sign-in').disabled = true;
    showMessage('account-msg', { kind: 'error', lines: ['Sign-in is not set up on this service (AUTH_PAGE_CLIENT_ID).'] });
  }
}

async function startIdentity() {
  $('sign-in').addEventListener('click', () => auth.signIn().catch((e) => showMessage('account-msg', {
    kind: 'error', title: 'Sign-in is not available right now.', lines: [String(e.message || e)],
  })));
  $('sign-out').addEventListener('click', () => auth.signOut());
  try {
    await auth.completeSignIn();
  } catch (e) {
    showMessage('account-msg', { kind: 'error', title: 'You are not signed in.', lines: [String(e.message || e)] });
  }
  renderIdentity();
}

async function start() {
  if (auth.enabled) await startIdentity();
  $('user-form').addEventListener('submit', onUserSubmit);
  $('charge-form').addEventListener('submit', onCharge);
  $('join').addEventListener('click', () => join());
  $('hold').addEventListener('click', () => holdSeat());
  $('refresh-seats').addEventListener('click', () => loadSeats());
  $('pay').addEventListener('click', () => pay());
  $('abandon').addEventListener('click', () => abandonHold());
  $('again').addEventListener('click', () => join());
  // Background tabs run timers late: look again as soon as the buyer is back.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.token?.status === 'WAITING') poll();
  });
  restore();
  render();
  loadBalance();
  loadRooms();
  if (state.tokenValue) poll();
  setInterval(tick, 500);
}

start();
