// The page's modules that need no DOM (the API client and the error wording), run in Node with
// a stand-in `fetch`: retries keep their Idempotency-Key, honour Retry-After, and stop at once on
// an answer that is final.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  call, callWithRetry, parseRetryAfter, isRetryable, backoffSecs, serverNow,
} from '../../crates/adapters-http/assets/api.js';
import {
  describe, sentence, moment, countdown, notOpenWords, endedWords,
} from '../../crates/adapters-http/assets/messages.js';

const realFetch = globalThis.fetch;
afterEach(() => {
  globalThis.fetch = realFetch;
});

/** A fetch that answers from `answers` in turn and records every request. */
function fakeFetch(answers) {
  const seen = [];
  globalThis.fetch = async (path, init) => {
    seen.push({ path, ...init, headers: { ...init.headers } });
    const next = answers.shift();
    if (next instanceof Error) throw next;
    return new Response(next.body === undefined ? null : JSON.stringify(next.body), {
      status: next.status,
      headers: next.headers ?? {},
    });
  };
  return seen;
}

const problem = (status, code, extra = {}) => ({
  status,
  headers: { 'Content-Type': 'application/problem+json', ...extra },
  body: { type: 'about:blank', title: `title of ${code}`, status, detail: `detail of ${code}`, code },
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('7'), 7);
  assert.equal(parseRetryAfter(' 0 '), 0);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter('soon'), null);
  const now = Date.parse('2030-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Tue, 01 Jan 2030 00:00:30 GMT', now), 30);
});

test('only "nothing was done" answers are retried', () => {
  assert.equal(isRetryable({ ok: false, status: 0 }), true);
  assert.equal(isRetryable({ ok: false, status: 429 }), true);
  assert.equal(isRetryable({ ok: false, status: 503 }), true);
  assert.equal(isRetryable({ ok: false, status: 409, problem: { code: 'IDEMPOTENCY_KEY_IN_FLIGHT' } }), true);
  assert.equal(isRetryable({ ok: false, status: 409, problem: { code: 'SEAT_UNAVAILABLE' } }), false);
  assert.equal(isRetryable({ ok: false, status: 402 }), false);
  assert.equal(isRetryable({ ok: true, status: 200 }), false);
});

test('the back-off follows Retry-After when given, and grows to a cap otherwise', () => {
  assert.equal(backoffSecs({ retryAfterSecs: 12 }, 1), 12);
  assert.equal(backoffSecs({ retryAfterSecs: 0 }, 1), 1, 'never a busy loop');
  for (let i = 0; i < 50; i += 1) {
    const first = backoffSecs({ retryAfterSecs: null }, 1);
    const late = backoffSecs({ retryAfterSecs: null }, 20, 30);
    assert.ok(first >= 0.8 && first <= 1.2, `first pause ${first}`);
    assert.ok(late >= 24 && late <= 36, `capped pause ${late}`);
  }
});

test('a problem+json answer comes back as a problem; a network failure as code NETWORK', async () => {
  fakeFetch([problem(409, 'SEAT_UNAVAILABLE'), new TypeError('Failed to fetch')]);
  const r = await call('POST', '/reservations', { token: 't', body: { scheduleId: 's', seatId: 'x' } });
  assert.equal(r.ok, false);
  assert.equal(r.status, 409);
  assert.equal(r.problem.code, 'SEAT_UNAVAILABLE');
  const down = await call('GET', '/queue/token', { token: 't' });
  assert.equal(down.status, 0);
  assert.equal(down.problem.code, 'NETWORK');
});

test('a retried payment sends the same Idempotency-Key and bearer every time, waiting as told', async () => {
  const seen = fakeFetch([
    problem(503, 'UNAVAILABLE', { 'Retry-After': '1' }),
    problem(409, 'IDEMPOTENCY_KEY_IN_FLIGHT', { 'Retry-After': '1' }),
    { status: 201, headers: { 'Idempotent-Replayed': 'true' }, body: { id: 'p', balance: 5 } },
  ]);
  const waits = [];
  const r = await callWithRetry('POST', '/payments', {
    token: 'tok', body: { reservationId: 'r' }, idempotencyKey: 'key-1',
  }, { onWait: (secs) => waits.push(secs) });
  assert.equal(r.ok, true);
  assert.equal(r.replayed, true);
  assert.deepEqual(waits, [1, 1]);
  assert.equal(seen.length, 3);
  for (const req of seen) {
    assert.equal(req.headers['Idempotency-Key'], 'key-1');
    assert.equal(req.headers.Authorization, 'Bearer tok');
    assert.equal(req.body, JSON.stringify({ reservationId: 'r' }));
  }
});

test('a final refusal is not retried', async () => {
  const seen = fakeFetch([problem(402, 'INSUFFICIENT_BALANCE')]);
  const r = await callWithRetry('POST', '/payments', { body: { reservationId: 'r' }, idempotencyKey: 'k' });
  assert.equal(r.status, 402);
  assert.equal(seen.length, 1);
});

test('the server clock is learnt from the Date header', async () => {
  const ahead = new Date(Date.now() + 3_600_000).toUTCString();
  fakeFetch([{ status: 200, headers: { Date: ahead }, body: {} }]);
  await call('GET', '/health/live');
  const offset = serverNow() - Date.now();
  assert.ok(offset > 3_598_000 && offset < 3_601_000, `offset ${offset}`);
});

test('every problem reads as sentences with a next step, never as a bare code', () => {
  const codes = [
    'INVALID_REQUEST', 'INVALID_AMOUNT', 'TOKEN_MISSING', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'INSUFFICIENT_BALANCE',
    'TOKEN_NOT_ACTIVE', 'NOT_FOUND', 'SEAT_UNAVAILABLE', 'HOLD_EXPIRED', 'ALREADY_PAID', 'BALANCE_LIMIT',
    'HOLD_LIMIT', 'IDEMPOTENCY_KEY_IN_FLIGHT', 'PAYLOAD_TOO_LARGE', 'IDEMPOTENCY_KEY_REUSED', 'RATE_LIMITED',
    'UNAVAILABLE', 'SOMETHING_NEW',
  ];
  for (const code of codes) {
    const d = describe({ title: 'seat unavailable', detail: 'the seat is held or sold', code }, 409);
    assert.equal(d.title, 'Seat unavailable.');
    assert.equal(d.text, 'The seat is held or sold.');
    assert.match(d.next, /^[A-Z].*\.$/, `${code}: ${d.next}`);
    assert.doesNotMatch(`${d.title} ${d.text} ${d.next}`, /[A-Z]+_[A-Z]+/, `${code} leaks a code`);
  }
  assert.equal(describe({ code: 'SEAT_UNAVAILABLE', title: 't' }, 409).action, 'pick-another');
  assert.equal(describe({ code: 'INSUFFICIENT_BALANCE', title: 't' }, 402).action, 'charge');
  assert.equal(describe({ code: 'TOKEN_EXPIRED', title: 't' }, 401).action, 'rejoin');
  assert.match(describe({ code: 'HOLD_LIMIT', title: 't' }, 409).next, /wait/);
  assert.equal(describe({ title: 'Same', detail: 'same' }, 400).text, '', 'a detail that repeats the title is said once');
  assert.equal(sentence('already ends.'), 'Already ends.');
});

test('every rooms code reads as sentences with a next step, never as a bare code', () => {
  const codes = ['ROOM_MISMATCH', 'ROOM_NOT_OPEN', 'ROOM_CLOSED', 'ROOM_EXISTS', 'CONCERT_IN_ROOM', 'ROOM_ALREADY_OPEN',
    'FORBIDDEN', 'METHOD_NOT_ALLOWED', 'REQUEST_TIMEOUT'];
  for (const code of codes) {
    for (const problem of [
      { title: 'some title', detail: 'some detail', code },
      // As the service words them, with the fields it adds.
      { title: 'Room mismatch', detail: 'this concert is sold in the room spring-tour: join it for a token there', code, roomId: 'spring-tour' },
      { title: 'Room not open', detail: 'the room does not take joiners yet', code, opensAt: '2030-05-01T19:00:00Z', prequeueOpensAt: '2030-05-01T18:30:00Z' },
    ]) {
      const d = describe(problem, 409, { roomName: (id) => (id === 'spring-tour' ? 'Spring Tour' : id) });
      for (const part of [d.title, d.text, d.next].filter(Boolean)) assert.match(part, /^[A-Z“].*[.!?]$/, `${code}: ${part}`);
      assert.ok(d.next, `${code} has a next step`);
      assert.doesNotMatch(`${d.title} ${d.text} ${d.next}`, /[A-Z]+_[A-Z]+/, `${code} leaks a code`);
    }
  }
  const mismatch = describe({ title: 'Room mismatch', detail: 'sold in the room spring-tour', code: 'ROOM_MISMATCH', roomId: 'spring-tour' }, 403,
    { roomName: () => 'Spring Tour' });
  assert.equal(mismatch.title, 'This concert is sold in another line.');
  assert.equal(mismatch.text, '', 'the id-worded detail gives way to the name');
  assert.equal(mismatch.next, 'It is sold in the line “Spring Tour”: join that line to buy it.');
  assert.equal(mismatch.action, 'other-room');
  assert.equal(describe({ code: 'ROOM_CLOSED', title: 't' }, 409).title, 'This line is closed.');
  assert.equal(describe({ code: 'ROOM_CLOSED', title: 't' }, 409).action, 'rooms');
});

test('a line not open yet says when joining opens, in words, and that joining early gives nothing', () => {
  const at = '2030-05-01T18:30:00Z';
  const d = describe({ code: 'ROOM_NOT_OPEN', title: 'Room not open', detail: 'the room does not take joiners yet', prequeueOpensAt: at, opensAt: '2030-05-01T19:00:00Z' }, 409);
  assert.equal(d.title, 'This line is not open yet.');
  assert.ok(d.next.startsWith(`Joining opens on ${moment(at)}. Come back then`), d.next);
  assert.match(d.next, /drawn at random, so joining early gives no advantage\.$/);
  assert.match(moment(at), /^Wed 1 May, \d\d:\d\d$/, 'whole minutes without seconds');
  assert.match(moment('2030-05-01T18:30:05Z'), /^Wed 1 May, \d\d:\d\d:05$/);
  assert.equal(moment(null), '');
  assert.match(notOpenWords({ opensAt: at }), /^Joining opens on .*\. Come back then to take your place in line\.$/);
  assert.match(notOpenWords({}), /^This line does not take joiners yet\./, 'no time known: still a sentence');
  assert.match(describe({ code: 'ROOM_NOT_OPEN', title: 'Room not open', detail: 'the room does not take joiners yet' }, 409).text,
    /^The room does not take joiners yet\.$/, 'without a time the service\'s detail stays');
});

test('countdowns read m:ss, then h:mm:ss, then days, and reach 0:00 only at the moment', () => {
  assert.equal(countdown(0), '0:00');
  assert.equal(countdown(-5000), '0:00');
  assert.equal(countdown(1), '0:01');
  assert.equal(countdown(65_000), '1:05');
  assert.equal(countdown(3_600_000), '1:00:00');
  assert.equal(countdown(3_725_000), '1:02:05');
  assert.equal(countdown(3 * 86_400_000 + 7_200_000), '3 days 2 h');
});

test('an ended turn says why: a place given up by a buyer who left, a purchase, or time', () => {
  const abandoned = endedWords({ status: 'EXPIRED', expiredReason: 'ABANDONED' }, { purchased: true });
  assert.match(abandoned.text, /^You left the line, so your place was given up when your turn came\./);
  assert.match(abandoned.text, /end of the line\.$/);
  assert.equal(abandoned.join, 'Join again at the end of the line');
  assert.match(endedWords({ status: 'EXPIRED', expiredReason: 'PAID' }).text, /used for your purchase/);
  assert.match(endedWords({ status: 'EXPIRED', expiredReason: null }, { purchased: true }).text, /used for your purchase/);
  assert.match(endedWords({ status: 'EXPIRED', expiredReason: 'TTL' }, { purchased: true }).text, /^Your turn has ended\./);
  assert.equal(endedWords({ status: 'EXPIRED', expiredReason: 'TTL' }).join, 'Join the line again');
});
