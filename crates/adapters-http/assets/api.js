// The ticket service's public API as the page uses it: one `call` that never throws, turns
// every answer into { ok, status, data, problem, retryAfterSecs }, and learns the server's clock
// from the `Date` header so countdowns follow the server, not this device's clock.

/** Milliseconds to add to `Date.now()` to read the server's clock (never ahead of it). */
let serverOffsetMs = 0;

/** The server's time now, as far as this page can tell (errs late by under a second). */
export function serverNow() {
  return Date.now() + serverOffsetMs;
}

/** Learns the server's clock from a timestamp it wrote at or before `receivedAt` (local ms). */
export function observeServerTime(serverMs, receivedAt) {
  if (Number.isFinite(serverMs)) serverOffsetMs = serverMs - receivedAt;
}

/**
 * One request. `token` goes in `Authorization: Bearer`, `idempotencyKey` in `Idempotency-Key`.
 * A network failure answers status 0 with a problem of code NETWORK, so callers handle one shape.
 */
export async function call(method, path, { body, token, idempotencyKey } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    return {
      ok: false,
      status: 0,
      problem: {
        code: 'NETWORK',
        title: 'The ticket service could not be reached',
        detail: 'Your device may be offline, or the service is restarting.',
      },
      retryAfterSecs: null,
    };
  }
  const receivedAt = Date.now();
  const date = res.headers.get('Date');
  if (date) observeServerTime(Date.parse(date), receivedAt);
  const retryAfterSecs = parseRetryAfter(res.headers.get('Retry-After'), receivedAt);
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) {
    return { ok: true, status: res.status, data, replayed: res.headers.get('Idempotent-Replayed') === 'true', receivedAt };
  }
  const problem = data && typeof data === 'object' && (data.title || data.code)
    ? data
    : { code: `HTTP_${res.status}`, title: `The service answered ${res.status} ${res.statusText}`.trim(), detail: '' };
  return { ok: false, status: res.status, problem, retryAfterSecs, receivedAt };
}

/** `Retry-After` as whole seconds (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - now) / 1000)) : null;
}

/** Answers that mean "nothing was done, the same request may be sent again later". */
export function isRetryable(result) {
  if (result.ok) return false;
  if (result.status === 0 || result.status === 429 || result.status === 503) return true;
  return result.status === 409 && result.problem?.code === 'IDEMPOTENCY_KEY_IN_FLIGHT';
}

/**
 * Seconds to wait before try number `attempt` (1-based) of a retryable answer: the server's
 * `Retry-After` when it gave one, otherwise doubling from 1 s up to `capSecs`, with jitter so
 * that many pages that lost the service together do not come back together.
 */
export function backoffSecs(result, attempt, capSecs = 30) {
  if (result.retryAfterSecs !== null && result.retryAfterSecs !== undefined) {
    return Math.max(1, result.retryAfterSecs);
  }
  const base = Math.min(capSecs, 2 ** Math.max(0, attempt - 1));
  return base * (0.8 + Math.random() * 0.4);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends a request again while the answer says nothing was done (network failure, 429, 503, or
 * an earlier try with the same `Idempotency-Key` still running), at most `tries` times.
 * `onWait(secs, result)` is told before each pause so the page can say why it is waiting.
 * Only for requests that are safe to repeat: reads, and writes sent with an `Idempotency-Key`.
 */
export async function callWithRetry(method, path, options = {}, { tries = 5, onWait } = {}) {
  let result = await call(method, path, options);
  for (let attempt = 1; attempt < tries && isRetryable(result); attempt += 1) {
    const secs = backoffSecs(result, attempt);
    onWait?.(Math.ceil(secs), result);
    await sleep(secs * 1000);
    result = await call(method, path, options);
  }
  return result;
}
