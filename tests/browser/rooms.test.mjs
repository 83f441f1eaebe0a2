// The buyer's page with rooms (one waiting line per on-sale), in Chromium against the real
// binary: the list of on-sales with its countdowns, a line not open yet, a closed one, a
// pre-queue and its draw, a place given up by a buyer who left, and a concert of another room.
// Rooms are made through the operator API (ADMIN_TOKEN); the scheduler checks every 100 ms.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from './lib/server.mjs';
import { apiClient } from './lib/api.mjs';
import {
  withBrowser, screenshot, shownPosition, waitAdmitted, userId,
  assertNoHorizontalScroll, assertContrast, tabTo, assertNoProblems, WAIT,
} from './lib/browser.mjs';

const FAST = { QUEUE_ADMIT_INTERVAL_SECS: '1', QUEUE_ADMIT_BATCH: '100', SCHEDULER_CHECK_MILLIS: '100' };

/** Runs `body(ctx)` with a server (operator API on) and a fresh browser; stops both. */
async function withRooms(settings, viewport, body) {
  const adminToken = `admin-${randomUUID()}`;
  const server = await startServer({ ...FAST, ...settings, ADMIN_TOKEN: adminToken });
  await withBrowser(server, viewport, async (browser) => {
    const api = apiClient(server.api);
    const admin = (method, path, b) => api.admin(adminToken, method, path, b);
    await body({ server, url: server.url, api, admin, page: browser.page, browser });
  });
}

const inSecs = (secs) => new Date(Date.now() + secs * 1000).toISOString();

/** The radio of a room in the list of on-sales, by the room's name. */
const roomRadio = (page, name) => page.getByRole('group', { name: 'Choose a line' })
  .getByRole('radio', { name: new RegExp(`^${name} `) });

/** The token the page keeps for a room (main's under the key it always had). */
const storedRoomToken = (page, roomId) => page.evaluate(
  (key) => JSON.parse(localStorage.getItem(key) ?? 'null')?.token ?? null,
  roomId === 'main' ? 'concert.token' : `concert.token.${roomId}`,
);

test('the on-sales: states and countdowns; a line not open yet refuses politely, a closed one says so', { timeout: 120_000 }, async () => {
  await withRooms({}, {}, async ({ url, api, admin, page, browser }) => {
    await admin('POST', '/admin/rooms', {
      id: 'spring', name: 'Spring Tour', concertIds: [], opensAt: inSecs(3 * 3600), prequeueOpensAt: inSecs(3600),
    });
    await admin('POST', '/admin/rooms', { id: 'summer', name: 'Summer Festival', concertIds: [], opensAt: inSecs(600), prequeueOpensAt: inSecs(-60) });
    await admin('POST', '/admin/rooms', { id: 'winter', name: 'Winter Gala', concertIds: [] });
    await admin('PATCH', '/admin/rooms/winter', { closed: true });
    for (let i = 0; i < 3; i += 1) await api.req('POST', '/queue/tokens', { body: { userId: randomUUID(), roomId: 'summer' } });
    await page.goto(url);

    // Main is first and chosen: the page works as before for whoever just clicks "Join the line".
    const list = page.getByRole('group', { name: 'Choose a line' });
    await roomRadio(page, 'Winter Gala').waitFor();
    assert.deepEqual(
      await list.locator('.room-name').allTextContents(),
      ['Main', 'Summer Festival', 'Spring Tour', 'Winter Gala'],
      'main first, then by opening',
    );
    assert.equal(await roomRadio(page, 'Main').isChecked(), true, 'main is chosen by default');
    const text = await list.textContent();
    assert.match(text, /Summer Festival Pre-queue/);
    assert.match(text, /3 in the pre-queue/);
    assert.match(text, /Spring Tour Not open yet/);
    assert.match(text, /Winter Gala Closed/);
    // The countdowns run.
    const clock = list.locator('.clock').first();
    const first = await clock.textContent();
    assert.match(first, /^\d+:\d\d$/);
    await page.waitForFunction((before) => document.querySelector('#room-list .clock').textContent !== before, first);
    await assertContrast(page, 'rooms');
    await screenshot(page, 'rooms.png');

    // A line not open yet: when joining opens, and a polite refusal with the time.
    await roomRadio(page, 'Spring Tour').check();
    const note = page.locator('#room-note');
    await note.getByText(/^Joining opens on /).waitFor();
    assert.match(await page.locator('#queue-room').textContent(), /Spring Tour/);
    assert.match(await page.locator('#draw-left').textContent(), /Joining opens in (1:00:00|59:\d\d)$/);
    await page.getByRole('button', { name: 'Join the line' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const said = await alert.textContent();
    assert.match(said, /This line is not open yet\./);
    assert.match(said, /Joining opens on \w{3} \d+ \w{3}, \d\d:\d\d/, 'the time, in words');
    assert.match(said, /joining early gives no advantage/);
    assert.doesNotMatch(said, /ROOM_NOT_OPEN|409/, 'words, not codes');
    assert.equal(await storedRoomToken(page, 'spring'), null, 'no place taken');
    await assertContrast(page, 'scheduled');
    await screenshot(page, 'room-scheduled.png');

    // A closed line: said, and no button to join it.
    await roomRadio(page, 'Winter Gala').check();
    await page.getByText('This line is closed: it takes no new joiners.').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Join the line' }).count(), 0);
    await assertContrast(page, 'closed');
    await screenshot(page, 'room-closed.png');

    // The choice survives a reload.
    await page.reload();
    await page.getByText('This line is closed: it takes no new joiners.').waitFor();
    assert.equal(await roomRadio(page, 'Winter Gala').isChecked(), true);
    assertNoProblems(browser);
  });
});

test('a pre-queue: joining early gives no place and says why; the draw at the opening gives one', { timeout: 120_000 }, async () => {
  await withRooms({}, {}, async ({ url, api, admin, page, browser }) => {
    // Paused, so that the draw gives places but nobody is admitted: the drawn place stays shown.
    await admin('POST', '/admin/rooms', { id: 'summer', name: 'Summer Festival', concertIds: [], opensAt: inSecs(12), prequeueOpensAt: inSecs(-60) });
    await admin('PATCH', '/admin/rooms/summer', { paused: true });
    for (let i = 0; i < 4; i += 1) await api.req('POST', '/queue/tokens', { body: { userId: randomUUID(), roomId: 'summer' } });
    await page.goto(url);
    await roomRadio(page, 'Summer Festival').check();
    await page.locator('#room-note').getByText(/^The pre-queue is open\. .* joining early gives no advantage\.$/).waitFor();
    await page.getByRole('button', { name: 'Join the line' }).click();

    const status = page.locator('#queue-status');
    await status.getByText('You are in the pre-queue.').waitFor();
    assert.match(await status.textContent(), /Your place in line is drawn at random at the opening, .*Joining early gives no advantage/);
    assert.equal(await shownPosition(page), null, 'no position before the draw');
    assert.match(await page.locator('#draw-left').textContent(), /^Your place is drawn in \d:\d\d$/);
    const token = await storedRoomToken(page, 'summer');
    assert.match(token, /^summer\.[0-9a-f]{64}$/, 'the place is kept for the room');
    assert.equal(await storedRoomToken(page, 'main'), null, 'and not taken in the general line');
    const server = await api.token(token);
    assert.equal(server.position, null);
    await assertContrast(page, 'pre-queue');
    await screenshot(page, 'prequeue.png');

    // A reload keeps the room and the entry.
    await page.reload();
    await status.getByText('You are in the pre-queue.').waitFor();
    assert.equal(await storedRoomToken(page, 'summer'), token);
    assert.equal(await roomRadio(page, 'Summer Festival').isChecked(), true);

    // The opening: the order is drawn, the page shows the place drawn and the wait.
    await page.locator('#position').waitFor({ timeout: WAIT });
    const drawn = await shownPosition(page);
    assert.ok(drawn >= 1 && drawn <= 5, `a drawn place among the five entrants (${drawn})`);
    await status.getByText('The order has been drawn.').waitFor();
    assert.equal((await api.token(token)).position, drawn, 'the page shows the server\'s position');
    assert.equal(await page.locator('#draw-left').isVisible(), false, 'no countdown left');
    // The list follows: the room is open now (paused by its operator), no countdown left in it.
    await page.getByRole('group', { name: 'Choose a line' }).getByText(/^Summer Festival\s+Paused$/).waitFor();
    assert.equal(await page.locator('#room-list .clock').count(), 0);
    await screenshot(page, 'drawn.png');

    // The general line is another line: no place there until one joins it.
    await roomRadio(page, 'Main').check();
    await page.getByRole('button', { name: 'Join the line' }).waitFor();
    assert.equal(await shownPosition(page), null);
    await roomRadio(page, 'Summer Festival').check();
    await page.locator('#position').waitFor();
    assertNoProblems(browser);
  });
});

test('a buyer who left: the place given up when its turn came is said, and joining again goes to the end', { timeout: 150_000 }, async () => {
  await withRooms({}, {}, async ({ url, api, admin, page, browser }) => {
    // Paused while the buyer is away; 30 s is the shortest absence a room can be set to forget.
    await admin('POST', '/admin/rooms', { id: 'gala', name: 'Gala Night', concertIds: [], abandonAfterSecs: 30, admitBatch: 1, admitIntervalSecs: 1 });
    await admin('PATCH', '/admin/rooms/gala', { paused: true });
    await page.goto(url);
    await roomRadio(page, 'Gala Night').check();
    await page.getByRole('button', { name: 'Join the line' }).click();
    await page.locator('#position').waitFor();
    const token = await storedRoomToken(page, 'gala');

    // The buyer leaves (no more polls) for longer than the room keeps an absent buyer's place.
    await page.goto('about:blank');
    await sleep(37_000);
    await admin('PATCH', '/admin/rooms/gala', { paused: false });
    const deadline = Date.now() + 15_000;
    while ((await admin('GET', '/admin/rooms/gala')).abandoned < 1) {
      assert.ok(Date.now() < deadline, 'the absent buyer\'s place is skipped');
      await sleep(200);
    }

    // Back on the page: it says what happened and offers a new place at the end of the line.
    await page.goto(url);
    const status = page.locator('#queue-status');
    await status.getByText(/^You left the line, so your place was given up when your turn came\./).waitFor();
    const again = page.getByRole('button', { name: 'Join again at the end of the line' });
    await again.waitFor();
    assert.equal(await storedRoomToken(page, 'gala'), token);
    await assertContrast(page, 'abandoned');
    await screenshot(page, 'abandoned.png');

    await again.click();
    await page.waitForFunction((old) => {
      const kept = JSON.parse(localStorage.getItem('concert.token.gala') ?? 'null');
      return kept && kept.token !== old;
    }, token);
    await page.locator('#position').or(page.getByText('It is your turn.')).waitFor();
    assertNoProblems(browser);
  });
});

test('a concert of another room: the page names the room to join and joins it', { timeout: 120_000 }, async () => {
  await withRooms({}, {}, async ({ url, api, admin, page, browser }) => {
    await page.goto(url);
    await page.getByRole('button', { name: 'Join the line' }).click();
    await waitAdmitted(page);
    const concert = page.getByRole('group', { name: 'Concert' }).getByRole('radio').first();
    const concertId = await concert.inputValue();

    // Meanwhile an operator gives that concert an on-sale of its own.
    await admin('POST', '/admin/rooms', { id: 'encore', name: 'Encore Night', concertIds: [concertId] });
    const other = await api.issue();
    await api.waitActive(other.token);
    for (;;) {
      const r = await api.req('GET', `/concerts/${concertId}/schedules`, { token: other.token });
      if (r.status === 403) break;
      await sleep(100);
    }

    await concert.check();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const said = await alert.textContent();
    assert.match(said, /This concert is sold in another line\./);
    assert.match(said, /It is sold in the line “Encore Night”: join that line to buy it\./);
    assert.doesNotMatch(said, /ROOM_MISMATCH|403|encore\b/, 'by its name, in words');
    await assertContrast(page, 'other room');
    await screenshot(page, 'other-room.png');

    const mainToken = await storedRoomToken(page, 'main');
    await alert.getByRole('button', { name: 'Join “Encore Night”' }).click();
    await waitAdmitted(page);
    assert.equal(await roomRadio(page, 'Encore Night').isChecked(), true);
    assert.match(await page.locator('#queue-room').textContent(), /Encore Night/);
    assert.deepEqual(
      await page.getByRole('group', { name: 'Concert' }).getByRole('radio').evaluateAll((els) => els.map((e) => e.value)),
      [concertId],
      'the room sells that concert',
    );
    assert.match(await storedRoomToken(page, 'encore'), /^encore\./);
    assert.equal(await storedRoomToken(page, 'main'), mainToken, 'the place in the general line is kept');
    assert.equal((await api.token(await storedRoomToken(page, 'encore'))).userId, await userId(page));
    assertNoProblems(browser);
  });
});

test('the on-sales at 360 px with the keyboard alone: no horizontal scroll, a room chosen and joined', { timeout: 120_000 }, async () => {
  const width = 360;
  await withRooms({}, { width, height: 740 }, async ({ url, admin, page, browser }) => {
    await admin('POST', '/admin/rooms', { id: 'summer', name: 'Summer Festival', concertIds: [], opensAt: inSecs(600), prequeueOpensAt: inSecs(-60) });
    await admin('POST', '/admin/rooms', { id: 'winter', name: 'Winter Gala', concertIds: [] });
    await admin('PATCH', '/admin/rooms/winter', { closed: true });
    await page.goto(url);
    await roomRadio(page, 'Winter Gala').waitFor();
    await assertNoHorizontalScroll(page, 'rooms');
    await assertContrast(page, 'rooms at 360 px');

    // Tab into the list (it stops on the chosen room), arrows move the choice.
    await tabTo(page, roomRadio(page, 'Main'), { width });
    await page.keyboard.press('ArrowDown');
    assert.equal(await roomRadio(page, 'Summer Festival').isChecked(), true);
    await page.locator('#queue-room', { hasText: 'Summer Festival' }).waitFor();
    await screenshot(page, 'mobile-rooms.png');
    await tabTo(page, page.getByRole('button', { name: 'Join the line' }), { width });
    await page.keyboard.press('Enter');
    await page.locator('#queue-status').getByText('You are in the pre-queue.').waitFor();
    await assertNoHorizontalScroll(page, 'pre-queue');
    await assertContrast(page, 'pre-queue at 360 px');
    assertNoProblems(browser);
  });
});

test('a line that opens for joining while the page is open: the countdown ends and the page follows, no reload', { timeout: 90_000 }, async () => {
  await withRooms({}, {}, async ({ url, admin, page, browser }) => {
    await admin('POST', '/admin/rooms', { id: 'autumn', name: 'Autumn Nights', concertIds: [], opensAt: inSecs(600), prequeueOpensAt: inSecs(6) });
    await page.goto(url);
    await roomRadio(page, 'Autumn Nights').check();
    const list = page.getByRole('group', { name: 'Choose a line' });
    await list.getByText(/^Autumn Nights\s+Not open yet$/).waitFor();
    assert.match(await page.locator('#draw-left').textContent(), /^Joining opens in 0:0\d$/);
    // The pre-queue opens: the list says so, the note under the line turns to the draw.
    await list.getByText(/^Autumn Nights\s+Pre-queue$/).waitFor({ timeout: 20_000 });
    await page.locator('#room-note').getByText(/^The pre-queue is open\./).waitFor();
    assert.match(await page.locator('#draw-left').textContent(), /^The draw is in (10:00|9:\d\d)$/);
    await page.getByRole('button', { name: 'Join the line' }).click();
    await page.locator('#queue-status').getByText('You are in the pre-queue.').waitFor();
    assertNoProblems(browser);
  });
});
