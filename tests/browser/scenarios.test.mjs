// The buyer's page in a real headless Chromium against the real `concert` binary, one server
// per scenario (in-memory store, demo catalogue, short timings). Run by ./run.sh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from './lib/server.mjs';
import { apiClient } from './lib/api.mjs';
import {
  withBrowser, screenshot, charge, userId, storedToken, shownPosition, waitAdmitted,
  pickFirstConcertAndDate, availableSeats, seatByNumber, seatInfo, holdSeat,
  assertNoHorizontalScroll, assertContrast, tabTo, assertNoProblems, balanceText,
} from './lib/browser.mjs';

const FAST = { QUEUE_ADMIT_INTERVAL_SECS: '1', QUEUE_ADMIT_BATCH: '100', SCHEDULER_CHECK_MILLIS: '100' };

/** Runs `body(ctx)` with a server started with `settings` and a fresh browser; stops both. */
async function withSetup(settings, viewport, body) {
  const server = await startServer(settings);
  await withBrowser(server, viewport, async (browser) => {
    await browser.page.goto(server.url);
    await body({ server, api: apiClient(server.api), page: browser.page, browser });
  });
}

test('a whole purchase by clicking: charge, join, wait, pick, hold, pay, receipt and balance', { timeout: 180_000 }, async () => {
  // Admission of two every two seconds behind ten other buyers: the page's user waits a few
  // ticks, long enough to watch the position go down.
  await withSetup({ ...FAST, QUEUE_ADMIT_INTERVAL_SECS: '2', QUEUE_ADMIT_BATCH: '2' }, {}, async ({ api, page, browser }) => {
    const me = await userId(page);
    assert.match(me, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a v4 user id is made');
    await page.locator('#balance', { hasText: '0 won' }).waitFor();

    // Too little at first, to go through the "charge more" advice of a 402.
    await charge(page, 1000, 1000);

    const others = [];
    for (let i = 0; i < 10; i += 1) others.push(await api.issue());
    await page.getByRole('button', { name: 'Join the line' }).click();
    await page.locator('#position').waitFor();
    const first = await shownPosition(page);
    assert.ok(first >= 2, `the page shows a place behind the others (${first})`);
    await screenshot(page, 'in-line.png');

    // Watch the number until the turn comes: it only ever goes down, and it does move.
    const seen = [first];
    while (!(await page.getByText('It is your turn.').isVisible())) {
      const p = await shownPosition(page);
      if (p !== null && p !== seen.at(-1)) seen.push(p);
      await sleep(150);
    }
    for (let i = 1; i < seen.length; i += 1) assert.ok(seen[i] < seen[i - 1], `positions only go down: ${seen}`);
    assert.ok(seen.length >= 2, `the position updated live while waiting: ${seen}`);
    assert.equal(await storedToken(page), (await api.issue(me)).token, 'the page holds the user\'s one token');

    await waitAdmitted(page);
    // Buyers ahead in line hold seats 3 and 4 and buy 11 and 12 of the date the page will show.
    for (const o of others.slice(0, 4)) await api.waitActive(o.token);
    const schedule = await api.firstSchedule(others[0].token);
    await api.takeSeats(others, schedule.id, { held: [3, 4], sold: [11, 12] });

    await pickFirstConcertAndDate(page);
    for (const [n, word] of [[3, 'held by someone'], [4, 'held by someone'], [11, 'sold'], [12, 'sold']]) {
      const taken = page.getByRole('radio', { name: new RegExp(`^Seat ${n}, [\\d,]+ won, ${word}$`) });
      assert.equal(await taken.isDisabled(), true, `seat ${n} is shown ${word} and cannot be picked`);
    }
    assert.match(await page.getByRole('group', { name: /^Seats on / }).locator('legend').textContent(), /: 46 of 50 free$/);
    const seat = availableSeats(page).nth(4);
    const info = await seatInfo(seat);
    await seat.check();
    await page.getByRole('button', { name: `Hold seat ${info.number} (${info.price.toLocaleString('en-US')} won)` }).waitFor();
    await screenshot(page, 'seat-map.png');

    await holdSeat(page, seat);
    const countdown = await page.getByRole('timer').textContent();
    assert.match(countdown, /^\d+:\d\d$/, 'a countdown is shown');
    assert.notEqual(countdown, '0:00');
    await page.getByText(`Seat ${info.number} · ${info.price.toLocaleString('en-US')} won`).waitFor();
    await screenshot(page, 'hold.png');

    // A reload keeps the hold: the same seat, the countdown going on, Pay still there.
    const holdId = await page.evaluate(() => JSON.parse(localStorage.getItem('concert.hold')).id);
    await page.reload();
    await page.getByText(`Seat ${info.number} · ${info.price.toLocaleString('en-US')} won`).waitFor();
    await page.getByRole('button', { name: /^Pay / }).waitFor();
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('concert.hold')).id), holdId);
    assert.match(await page.getByRole('timer').textContent(), /^\d+:\d\d$/);

    // Pay with 1,000 won: refused, with the shortfall offered as the next step.
    await page.getByRole('button', { name: /^Pay / }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /Charge your balance, then pay again/);
    const shortfall = info.price - 1000;
    await alert.getByRole('button', { name: `Add the missing ${shortfall.toLocaleString('en-US')} won` }).click();
    const amount = page.getByLabel('Add to your balance (won)');
    assert.equal(await amount.inputValue(), String(shortfall), 'the charge form holds the shortfall');
    assert.equal(await amount.evaluate((n) => n === document.activeElement), true, 'and has the focus');
    await charge(page, shortfall + 20000, info.price + 20000);
    await page.getByRole('button', { name: 'Back to your hold' }).click();

    await page.getByRole('button', { name: /^Pay / }).click();
    await page.getByRole('heading', { name: 'Paid: your seat is yours' }).waitFor();
    const receipt = await page.locator('#receipt').textContent();
    assert.match(receipt, new RegExp(`Seat${info.number}Paid${info.price.toLocaleString('en-US')} won`));
    assert.match(receipt, /Balance left20,000 won/);
    assert.equal(await balanceText(page), '20,000 won');
    assert.deepEqual(await api.balance(me), { userId: me, balance: 20000 }, 'the server agrees on the balance');
    assert.match(await page.locator('#queue-status').textContent(), /used for your purchase/);
    await screenshot(page, 'paid.png');
    assertNoProblems(browser);
  });
});

test('a seat someone else took in the meantime: 409, said in words, map refreshed, another seat held', { timeout: 120_000 }, async () => {
  await withSetup(FAST, {}, async ({ api, page, browser }) => {
    await page.getByRole('button', { name: 'Join the line' }).click();
    await waitAdmitted(page);
    await pickFirstConcertAndDate(page);
    const seat = availableSeats(page).first();
    const info = await seatInfo(seat);
    await seat.check();

    // Another buyer takes that very seat through the API while the page still shows it free.
    const other = await api.issue();
    await api.waitActive(other.token);
    const scheduleId = await page.getByRole('group', { name: 'Date' }).getByRole('radio', { checked: true }).inputValue();
    await api.hold(other.token, scheduleId, info.id);

    await page.getByRole('button', { name: new RegExp(`^Hold seat ${info.number} `) }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const said = await alert.textContent();
    assert.match(said, new RegExp(`Seat ${info.number} is no longer free`));
    assert.match(said, /Pick another seat\./);
    assert.doesNotMatch(said, /SEAT_UNAVAILABLE|409/, 'words, not codes');
    // The map now shows it held, by name and as a disabled choice.
    const taken = seatByNumber(page, info.number);
    await page.getByRole('radio', { name: `Seat ${info.number}, ${info.price.toLocaleString('en-US')} won, held by someone` }).waitFor();
    assert.equal(await taken.isDisabled(), true);
    await screenshot(page, 'seat-taken.png');

    await assertContrast(page, 'seat taken');
    await alert.getByRole('button', { name: 'Pick another seat' }).click();
    const next = availableSeats(page).first();
    const nextInfo = await seatInfo(next);
    assert.notEqual(nextInfo.number, info.number);
    await holdSeat(page, next);
    await page.getByText(`Seat ${nextInfo.number} ·`).waitFor();
    assertNoProblems(browser);
  });
});

test('a hold that runs out: the countdown reaches 0:00, the page says so and offers to pick again', { timeout: 120_000 }, async () => {
  await withSetup({ ...FAST, SEAT_HOLD_SECS: '4' }, {}, async ({ page, browser }) => {
    await page.getByRole('button', { name: 'Join the line' }).click();
    await waitAdmitted(page);
    await pickFirstConcertAndDate(page);
    const seat = availableSeats(page).first();
    const info = await seatInfo(seat);
    await holdSeat(page, seat);
    const start = await page.getByRole('timer').textContent();
    assert.match(start, /^0:0[1-4]$/, `the countdown starts at the hold's length (${start})`);

    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: 20_000 });
    assert.match(await alert.textContent(), new RegExp(`Your hold on seat ${info.number} ran out`));
    assert.equal(await page.getByRole('timer').textContent(), '0:00');
    assert.equal(await page.getByRole('button', { name: /^Pay / }).count(), 0, 'nothing left to pay');
    assert.equal(await page.evaluate(() => localStorage.getItem('concert.hold')), null, 'the hold is forgotten');
    await assertContrast(page, 'hold ran out');
    await screenshot(page, 'hold-ran-out.png');

    await alert.getByRole('button', { name: 'Pick a seat again' }).click();
    // The server frees a lapsed hold at once: the same seat is available again.
    await page.getByRole('radio', { name: `Seat ${info.number}, ${info.price.toLocaleString('en-US')} won, available` }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Pick a seat' }).evaluate((n) => n === document.activeElement), true);
    assertNoProblems(browser);
  });
});

test('a reload while in line keeps the place: same token, same or better position; paused is shown', { timeout: 120_000 }, async () => {
  const adminToken = `admin-${randomUUID()}`;
  // An hour between admissions: whoever is not admitted at once stays in line for the test.
  await withSetup({ ...FAST, QUEUE_ADMIT_INTERVAL_SECS: '3600', QUEUE_ADMIT_BATCH: '1', ADMIN_TOKEN: adminToken }, {}, async ({ api, page, browser }) => {
    for (let i = 0; i < 3; i += 1) await api.issue();
    await page.getByRole('button', { name: 'Join the line' }).click();
    await page.locator('#position').waitFor();
    const before = await shownPosition(page);
    const token = await storedToken(page);
    assert.ok(before >= 2, `in line behind the others (${before})`);
    assert.ok(token, 'the token is kept in localStorage');

    await page.reload();
    await page.locator('#position').waitFor();
    const after = await shownPosition(page);
    assert.equal(await storedToken(page), token, 'the same token after the reload');
    assert.ok(after <= before, `same or better position after the reload (${before} then ${after})`);
    const server = await api.token(token);
    assert.equal(server.status, 'WAITING');
    assert.equal(server.position, after, 'the page shows the server\'s position');
    assert.equal(await page.getByRole('button', { name: /Join the line/ }).count(), 0, 'no second place offered');

    // The service answers 503 to a poll: the page keeps the place, waits as told, polls again.
    let refused = 0;
    await page.route('**/queue/token', async (route) => {
      refused += 1;
      await route.fulfill({
        status: 503,
        headers: { 'Content-Type': 'application/problem+json', 'Retry-After': '1' },
        body: JSON.stringify({ type: 'about:blank', title: 'Service unavailable', status: 503, detail: 'The store is unreachable.', code: 'UNAVAILABLE' }),
      });
    });
    await page.reload();
    await page.getByText('You keep your place. Checking again in 1 second.').waitFor();
    assert.equal(await storedToken(page), token, 'a 503 does not drop the place');
    await page.unroute('**/queue/token');
    await page.locator('#position').waitFor();
    assert.ok(refused >= 1);
    assert.equal(await page.getByText('Checking again').count(), 0, 'the notice goes once the service answers');

    // An operator pauses admission: the page says so, and the place is still kept.
    await api.admin(adminToken, 'PATCH', '/admin/queue', { paused: true });
    await page.reload();
    await page.getByText('Admission is paused for a moment').waitFor();
    assert.equal(await storedToken(page), token);
    assert.ok((await shownPosition(page)) <= after);
    await assertContrast(page, 'paused');
    await screenshot(page, 'in-line-paused.png');
    assertNoProblems(browser);
  });
});

test('360 px wide with the keyboard alone: no horizontal scroll, every control reachable, a purchase', { timeout: 180_000 }, async () => {
  const width = 360;
  await withSetup(FAST, { width, height: 740 }, async ({ api, page, browser }) => {
    await assertNoHorizontalScroll(page, 'start');
    await assertContrast(page, 'start');
    const me = await userId(page);

    // Charge by keyboard: Tab to the amount, type, Enter.
    const amount = page.getByLabel('Add to your balance (won)');
    const order = await tabTo(page, amount, { width });
    assert.deepEqual(order.slice(0, 2), ['Your user id', 'Use this id'], `focus order follows the page: ${order}`);
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.type('300000');
    await page.keyboard.press('Enter');
    await page.locator('#balance', { hasText: '300,000 won' }).waitFor();

    await tabTo(page, page.getByRole('button', { name: 'Join the line' }), { width });
    await page.keyboard.press('Enter');
    await waitAdmitted(page);
    await assertNoHorizontalScroll(page, 'admitted');

    // A concert, a date: Tab into each radio group, Space picks.
    const concert = page.getByRole('group', { name: 'Concert' }).getByRole('radio').first();
    await tabTo(page, concert, { width });
    await page.keyboard.press('Space');
    const date = page.getByRole('group', { name: 'Date' }).getByRole('radio').first();
    await date.waitFor();
    await tabTo(page, date, { width });
    await page.keyboard.press('Space');
    await page.getByRole('group', { name: /^Seats on / }).waitFor();

    // Into the seat map; the arrow keys move between free seats.
    const firstFree = availableSeats(page).first();
    await tabTo(page, firstFree, { width });
    await page.keyboard.press('ArrowRight');
    const chosen = page.getByRole('radio', { checked: true, name: /^Seat / });
    const info = await seatInfo(chosen);
    await assertNoHorizontalScroll(page, 'seat map');
    await assertContrast(page, 'seat map');
    await screenshot(page, 'mobile-seat-map.png');

    await tabTo(page, page.getByRole('button', { name: new RegExp(`^Hold seat ${info.number} `) }), { width });
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Your hold' }).waitFor();
    await assertNoHorizontalScroll(page, 'hold');
    await assertContrast(page, 'hold');
    // Focus went to the hold, so Pay is the next stop.
    await tabTo(page, page.getByRole('button', { name: /^Pay / }), { width, max: 3 });
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Paid: your seat is yours' }).waitFor();
    await assertNoHorizontalScroll(page, 'paid');
    await assertContrast(page, 'paid');
    const left = 300000 - info.price;
    assert.equal(await balanceText(page), `${left.toLocaleString('en-US')} won`);
    assert.equal((await api.balance(me)).balance, left);
    await screenshot(page, 'mobile-paid.png');
    assertNoProblems(browser);
  });
});
