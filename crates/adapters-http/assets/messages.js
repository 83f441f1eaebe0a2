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
  // Rooms: one waiting line per on-sale.
  ROOM_MISMATCH: { next: 'Join the line this concert is sold in to buy it: it is in the list of on-sales.', action: 'other-room' },
  ROOM_NOT_OPEN: { next: 'This line does not take joiners yet. Come back when it opens: joining early gives no advantage, the order is drawn at the opening.', action: 'rooms' },
  ROOM_CLOSED: { next: 'This line takes no new joiners. Choose another line from the list of on-sales.', action: 'rooms' },
  ROOM_EXISTS: { next: 'Choose another id for the new line, or change the existing one.' },
  CONCERT_IN_ROOM: { next: 'Take the concert out of the other line first, then add it here.' },
  ROOM_ALREADY_OPEN: { next: 'The line has opened: its opening and draw can no longer change.' },
  FORBIDDEN: { next: 'Sign in as the user this belongs to, then try again.' },
  METHOD_NOT_ALLOWED: { next: 'Reload the page and try again.' },
  REQUEST_TIMEOUT: { next: 'Nothing was done. Check your connection and try again.' },
};

const dayTime = new Intl.DateTimeFormat('en-GB', {
  weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit',
});
const dayTimeSecs = new Intl.DateTimeFormat('en-GB', {
  weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/**
 * A moment in words for a sentence: "Sat 6 Dec, 20:00", with the seconds only when the moment
 * has some (an opening a few seconds away reads "Sat 6 Dec, 20:00:05"). Empty for no moment.
 */
export function moment(iso) {
  const t = Date.parse(iso ?? '');
  if (!Number.isFinite(t)) return '';
  return (new Date(t).getSeconds() ? dayTimeSecs : dayTime).format(new Date(t));
}

/**
 * The time left until a moment, for a countdown: "0:42", "12:05", "3:04:05", "2 days 3 h".
 * Rounded up, so that 0:00 shows only once the moment has come.
 */
export function countdown(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  if (h >= 48) {
    const d = Math.floor(h / 24);
    return `${d} days ${h % 24} h`;
  }
  return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/**
 * What the page says of a line that is not open yet, from the moments the service gave
 * (a room's body or a ROOM_NOT_OPEN problem's): when joining opens, and what the pre-queue is.
 */
export function notOpenWords({ opensAt, prequeueOpensAt } = {}) {
  const joining = moment(prequeueOpensAt || opensAt);
  if (!joining) return NEXT.ROOM_NOT_OPEN.next;
  if (prequeueOpensAt && opensAt) {
    return `Joining opens on ${joining}. Come back then: the order of everyone who joins before the opening on ${moment(opensAt)} is drawn at random, so joining early gives no advantage.`;
  }
  return `Joining opens on ${joining}. Come back then to take your place in line.`;
}

/**
 * What an ended turn means, by the token's `expiredReason`: `{ text, join }`, the sentence and
 * the label of the button that joins again.
 */
export function endedWords(token, { purchased = false } = {}) {
  if (token?.expiredReason === 'ABANDONED') {
    return {
      text: 'You left the line, so your place was given up when your turn came. You can join again: your new place is at the end of the line.',
      join: 'Join again at the end of the line',
    };
  }
  if (token?.expiredReason === 'PAID' || (purchased && token?.expiredReason !== 'TTL')) {
    return { text: 'Your turn was used for your purchase. Join the line again to buy another ticket.', join: 'Join the line again' };
  }
  return { text: 'Your turn has ended. Join the line again to get a new one.', join: 'Join the line again' };
}

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
 * `roomName(id)` names a room (ROOM_MISMATCH's `roomId`) the way the list of on-sales does.
 */
export function describe(problem, status, { roomName } = {}) {
  const code = problem?.code ?? '';
  const known = NEXT[code];
  const fallback = status >= 500
    ? { next: 'Something went wrong on our side. Try again in a moment.' }
    : { next: 'Try again, or reload the page.' };
  let { next, action } = known ?? fallback;
  let title = sentence(problem?.title || 'Something went wrong');
  let detail = sentence(problem?.detail);
  if (code === 'ROOM_NOT_OPEN') {
    title = 'This line is not open yet.';
    next = notOpenWords(problem);
    if (moment(problem?.prequeueOpensAt || problem?.opensAt)) detail = '';
  } else if (code === 'ROOM_CLOSED') {
    title = 'This line is closed.';
  } else if (code === 'ROOM_MISMATCH') {
    title = 'This concert is sold in another line.';
    const name = problem?.roomId ? roomName?.(problem.roomId) : '';
    if (name) {
      // The server's detail names the room by its id; say it by name instead.
      detail = '';
      next = `It is sold in the line “${name}”: join that line to buy it.`;
    }
  }
  // Some details only restate the title; say it once.
  const text = detail && detail.toLowerCase() !== title.toLowerCase() ? detail : '';
  return { title, text, next, action: action ?? null, code };
}
