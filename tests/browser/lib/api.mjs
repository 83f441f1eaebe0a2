// The test's own hands on the API: other buyers who take seats and places in line, and the
// server-side truth the page's display is checked against.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export function apiClient(base) {
  async function req(method, path, { body, token, headers = {} } = {}) {
    const h = { ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (token) h.Authorization = `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, body: json, headers: res.headers };
  }

  async function ok(method, path, options, expected = [200, 201]) {
    const r = await req(method, path, options);
    if (!expected.includes(r.status)) {
      throw new Error(`${method} ${path} answered ${r.status}: ${JSON.stringify(r.body)}`);
    }
    return r.body;
  }

  return {
    req,
    /** A new buyer's place in line. */
    issue: (userId = randomUUID()) => ok('POST', '/queue/tokens', { body: { userId } }),
    token: (token) => ok('GET', '/queue/token', { token }),
    balance: (userId) => ok('GET', `/users/${userId}/balance`),
    seats: (token, scheduleId) => ok('GET', `/schedules/${scheduleId}/seats`, { token }),
    hold: (token, scheduleId, seatId) => ok('POST', '/reservations', { token, body: { scheduleId, seatId } }, [201]),
    charge: (userId, amount) => ok('POST', `/users/${userId}/balance/charge`, { body: { amount } }),
    pay: (token, reservationId) => ok('POST', '/payments', { token, body: { reservationId } }, [201]),
    /** The first concert's first open schedule, as the page lists them. */
    async firstSchedule(token) {
      const [concert] = await ok('GET', '/concerts', { token });
      const [schedule] = await ok('GET', `/concerts/${concert.id}/schedules`, { token });
      return schedule;
    },
    /**
     * Other buyers (ACTIVE tokens) hold the seats numbered `held` and buy those numbered `sold`
     * in `scheduleId`, one buyer per seat.
     */
    async takeSeats(tokens, scheduleId, { held = [], sold = [] }) {
      const seats = await ok('GET', `/schedules/${scheduleId}/seats`, { token: tokens[0].token });
      const byNumber = new Map(seats.map((s) => [s.number, s]));
      let next = 0;
      for (const n of held) {
        await ok('POST', '/reservations', { token: tokens[next++].token, body: { scheduleId, seatId: byNumber.get(n).id } }, [201]);
      }
      for (const n of sold) {
        const buyer = tokens[next++];
        const seat = byNumber.get(n);
        const r = await ok('POST', '/reservations', { token: buyer.token, body: { scheduleId, seatId: seat.id } }, [201]);
        await ok('POST', `/users/${buyer.userId}/balance/charge`, { body: { amount: seat.price } });
        await ok('POST', '/payments', { token: buyer.token, body: { reservationId: r.id } }, [201]);
      }
    },
    admin: (adminToken, method, path, body) => ok(method, path, { token: adminToken, body }),
    /** Polls until the token is ACTIVE (the scheduler admits it), for at most `timeoutMs`. */
    async waitActive(token, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const t = await ok('GET', '/queue/token', { token });
        if (t.status === 'ACTIVE') return t;
        if (Date.now() > deadline) throw new Error(`token still ${t.status} after ${timeoutMs} ms`);
        await sleep(200);
      }
    },
  };
}
