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
  openBrowser, screenshot, shownPosition, waitAdmitted, userId,
  assertNoHorizontalScroll, assertContrast, tabTo, assertNoProblems, WAIT,
} from './lib/browser.mjs';

const FAST = { QUEUE_ADMIT_INTERVAL_SECS: '1', QUEUE_ADMIT_BATCH: '100', SCHEDULER_CHECK_MILLIS: '100' };

/** Runs `body(ctx)` with a server (operator API on) and a fresh browser; stops both. */
async function withRooms(settings, viewport, body) {
  const adminToken = `admin-${randomUUID()}`;
  const server = await startServer({ ...FAST, ...settings, ADMIN_TOKEN: adminToken });
  let browser;
  try {
    browser = await openBrowser(viewport);
    const api = apiClient(server.api);
    const admin = (method, path, b) => api.admin(adminToken, method, path, b);
    await body({ server, url: server.url, api, admin, page: browser.page, browser });
  } catch (err) {
    if (browser) await screenshot(browser.page, `failed-${Date.now()}.png`).catch(() => {});
    err.message += `\n--- server log ---\n${server.logs().slice(-4000)}`;
    throw err;
  } finally {
    if (browser) await browser.close();
    await server.stop();
  }
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
