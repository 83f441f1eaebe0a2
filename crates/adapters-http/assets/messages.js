// Turns a problem+json answer into words a buyer can act on: the server's own title and detail
// as sentences, then what to do next, and (by name) the action the page offers for it.

/** What to do next, by the contract's `code`. `action` names a button the page knows how to offer. */
const NEXT = {
  INVALID_REQUEST: { next: 'Check what you entered and try again.' },
  INVALID_AMOUNT: { next: 'Enter a whole number of won from 1 to 1,000,000,000.' },
  TOKEN_MISSING: { next: 'Join the line to get a turn.', action: 'rejoin' },
  TOKEN_INVALID: { next: 'The service does not know your place in line any more. Join the line again.', action: 'rejoin' },
  TOKEN_EXPIRED: { next: 'Your turn has ended. Join the line again to get a new one.', action: 'rejoin' },
  TOKEN_NOT_ACTIVE: { next: 'You are still waiting in line: the seats open for you when your turn comes.' },
  INSUFFICIENT_BALANCE: { next: 'Charge your balance, then pay again: your hold is kept until it runs out.', action: 'charge' },
  NOT_FOUND: { next: 'It may have just closed for booking. Pick again from the lists.', action: 'reload-shop' },
  SEAT_UNAVAILABLE: { next: 'Pick another seat.', action: 'pick-another' },
  HOLD_EXPIRED: { next: 'The seat was released. Pick a seat again.', action: 'pick-another' },
  ALREADY_PAID: { next: 'Nothing more to pay for this seat.' },
  BALANCE_LIMIT: { next: 'Charge a smaller amount.' },
  HOLD_LIMIT: { next: 'Pay for a seat you already hold, or wait for one of your holds to run out, then try again.' },
  IDEMPOTENCY_KEY_IN_FLIGHT: { next: 'Your earlier request is still being processed. Wait a moment before trying again.' },
  IDEMPOTENCY_KEY_REUSED: { next: 'Reload the page and try again.' },
  PAYLOAD_TOO_LARGE: { next: 'Send less and try again.' },
  RATE_LIMITED: { next: 'Too many requests came from your network. Wait a little; the page tries again by itself.' },
  UNAVAILABLE: { next: 'The service is briefly unavailable. Wait a little; the page tries again by itself.' },
  NETWORK: { next: 'Check your connection; the page tries again by itself where it is safe to.' },
};

/** `text` with a capital first letter and a full stop at the end. */
export function sentence(text) {
  const t = String(text ?? '').trim();
  if (!t) return '';
  const capital = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

/**
 * `{ title, text, next, action }` for a problem. `title` and `text` come from the server
 * (`title`, `detail`); `next` and `action` from the code, with a generic fallback by status.
 */
export function describe(problem, status) {
  const code = problem?.code ?? '';
  const known = NEXT[code];
  const fallback = status >= 500
    ? { next: 'Something went wrong on our side. Try again in a moment.' }
    : { next: 'Try again, or reload the page.' };
  const { next, action } = known ?? fallback;
  const title = sentence(problem?.title || 'Something went wrong');
  const detail = sentence(problem?.detail);
  // Some details only restate the title; say it once.
  const text = detail && detail.toLowerCase() !== title.toLowerCase() ? detail : '';
  return { title, text, next, action: action ?? null, code };
}
