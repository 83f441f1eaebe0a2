// The operator's console (/admin/console) in Chromium against the real binary: the token kept
// in this tab only, the rooms and their figures checked against the operator API, the charts
// from this instance's history, every steering control behind its confirmation dialog (pause,
// resume, N, a refused change in the API's words, create a room, close it), the sales bars and
// the operator log paged with `before`. The server samples the rooms every 10 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { apiClient } from './lib/api.mjs';
import { withBrowser, screenshot, assertNoProblems, assertNoHorizontalScroll, assertContrast } from './lib/browser.mjs';

const SETTINGS = { QUEUE_ADMIT_INTERVAL_SECS: '2', QUEUE_ADMIT_BATCH: '2', SCHEDULER_CHECK_MILLIS: '100' };

/** The figures of a room's row as the console shows them. */
async function rowFigures(page, roomId) {
  const row = page.locator(`#rooms tr[data-room="${roomId}"]`);
  const figures = {};
  for (const key of ['waiting', 'active', 'admittedThrough', 'abandoned']) {
    figures[key] = Number((await row.locator(`[data-field="${key}"]`).textContent()).replace(/,/g, ''));
  }
  return figures;
}

/** Confirms the page's dialog, checking it names `what`. */
async function confirm(page, what) {
  const dialog = page.getByRole('dialog', { name: 'Confirm the change' });
  await dialog.waitFor();
  assert.match(await dialog.textContent(), what);
  await dialog.getByRole('button', { name: 'Confirm' }).click();
}

test('the console: token, rooms against the API, charts, steering with confirmation, sales, the log', { timeout: 240_000 }, async () => {
  const adminToken = `admin-${randomUUID()}`;
  const server = await startServer({ ...SETTINGS, ADMIN_TOKEN: adminToken });
  await withBrowser(server, { width: 1280, height: 900 }, async (browser) => {
    const { page } = browser;
    const api = apiClient(server.api);
    const admin = (method, path, body) => api.admin(adminToken, method, path, body);

    // Buyers in main's line, two of whom buy or hold a seat, so sales and the line have figures.
    const buyers = [];
    for (let i = 0; i < 6; i += 1) {
      const userId = randomUUID();
      buyers.push({ userId, ...(await api.issue(userId)) });
    }
    await api.waitActive(buyers[0].token);
    await api.waitActive(buyers[1].token);
    const schedule = await api.firstSchedule(buyers[0].token);
    await api.takeSeats(buyers, schedule.id, { held: [2], sold: [1] });

    // The token: a wrong one is refused in words; the right one is kept in this tab only.
    await page.goto(`${server.url}/admin/console`);
    const tokenField = page.getByLabel('Operator token (kept in this tab only)');
    await tokenField.fill('not-the-operator-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('The operator token was refused').waitFor();
    await tokenField.fill(adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#rooms tr[data-room="main"]').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('concert.console.token')), adminToken);
    assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
    assert.ok(!page.url().includes(adminToken), 'never in the URL');

    // Pause main (asked first; a cancel changes nothing), then its row matches the API.
    const roomSelect = page.getByLabel('Room', { exact: true });
    await roomSelect.selectOption('main');
    await page.getByRole('button', { name: 'Pause admission' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    await page.getByText('Cancelled: nothing was changed.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/main')).paused, false, 'a cancel sends nothing');
    await page.getByRole('button', { name: 'Pause admission' }).click();
    await confirm(page, /Pause admission in room “Main” \(main\)/);
    await page.getByText('Changed main: paused false → true.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/main')).paused, true);
    await page.locator('#rooms tr[data-room="main"] [data-field="next"]', { hasText: 'paused' }).waitFor();
    const truth = await admin('GET', '/admin/rooms/main');
    await page.waitForFunction((w) => document.querySelector('#rooms tr[data-room="main"] [data-field="waiting"]').textContent === String(w), truth.waiting);
    const shown = await rowFigures(page, 'main');
    assert.deepEqual(shown, {
      waiting: truth.waiting, active: truth.active, admittedThrough: truth.admittedThrough, abandoned: truth.abandoned,
    }, 'the row tells what the API tells');

    // Resume.
    await page.getByRole('button', { name: 'Resume admission' }).click();
    await confirm(page, /Resume admission/);
    await page.getByText('Changed main: paused true → false.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/main')).paused, false);

    // N: 2 → 7, shown before → after from the API's answer.
    await page.getByLabel('N: admitted per batch').fill('7');
    await page.getByRole('button', { name: 'Apply settings' }).click();
    await confirm(page, /Change N 2 → 7/);
    await page.getByText('Changed main: N 2 → 7.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/main')).admitBatch, 7);

    // M, the cap and the TTL in one change: each before → after.
    await page.getByLabel('M: seconds between batches').fill('3');
    await page.getByLabel('Cap on active (empty: none)').fill('50');
    await page.getByLabel('TTL of an active token, seconds').fill('900');
    await page.getByRole('button', { name: 'Apply settings' }).click();
    await confirm(page, /Change M \(s\) 2 → 3, cap none → 50, TTL \(s\) \d+ → 900/);
    await page.getByText(/^Changed main: M \(s\) 2 → 3, cap none → 50, TTL \(s\) \d+ → 900\.$/).waitFor();
    const changed = await admin('GET', '/admin/rooms/main');
    assert.deepEqual([changed.admitIntervalSecs, changed.maxActive, changed.activeTtlSecs], [3, 50, 900]);
    // Lifting the cap again: an empty field is "none".
    await page.getByLabel('Cap on active (empty: none)').fill('');
    await page.getByRole('button', { name: 'Apply settings' }).click();
    await confirm(page, /cap 50 → none/);
    await page.getByText('Changed main: cap 50 → none.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/main')).maxActive, null);

    // A refused change: a TTL under 10 s; the page says the API's own words, nothing changes.
    const refused = await api.req('PATCH', '/admin/rooms/main', { token: adminToken, body: { activeTtlSecs: 5 } });
    assert.equal(refused.status, 400);
    await page.getByLabel('TTL of an active token, seconds').fill('5');
    await page.getByRole('button', { name: 'Apply settings' }).click();
    await confirm(page, /TTL \(s\) \d+ → 5/);
    const outcome = page.getByRole('status');
    await page.getByText(/^Refused: /).waitFor();
    assert.equal(await outcome.textContent(), `Refused: ${refused.body.title}: ${refused.body.detail}`);
    assert.notEqual((await admin('GET', '/admin/rooms/main')).activeTtlSecs, 5);

    // Create a room selling the first concert, picked from the list.
    const [concert] = await admin('GET', '/admin/concerts');
    await page.getByLabel('Id (a-z, 0-9, -)').fill('tour');
    await page.getByLabel('Name', { exact: true }).fill('The tour');
    await page.getByLabel('N', { exact: true }).fill('3');
    await page.getByRole('group', { name: 'Concerts it sells' }).getByLabel(concert.title, { exact: true }).check();
    await page.getByRole('button', { name: 'Create the room' }).click();
    await confirm(page, new RegExp(`Create room “The tour” \\(tour\\) selling ${concert.title}`));
    await page.getByText(/^Created tour: OPEN, N 3/).waitFor();
    const tour = await admin('GET', '/admin/rooms/tour');
    assert.deepEqual([tour.admitBatch, tour.concertIds], [3, [concert.id]]);
    await page.locator('#rooms tr[data-room="tour"]').waitFor();

    // A creation the API refuses (the id is taken) says why.
    await page.getByLabel('Id (a-z, 0-9, -)').fill('tour');
    await page.getByLabel('Name', { exact: true }).fill('Again');
    await page.getByRole('button', { name: 'Create the room' }).click();
    await confirm(page, /Create room “Again”/);
    await page.getByText(/^Refused: .*/).waitFor();
    assert.match(await outcome.textContent(), /^Refused: .+: .+/);

    // Close the tour.
    await roomSelect.selectOption('tour');
    await page.getByRole('button', { name: 'Close to new joiners' }).click();
    await confirm(page, /Close to new joiners in room “The tour” \(tour\)/);
    await page.getByText('Changed tour: closed false → true.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/tour')).closed, true);
    await page.locator('#rooms tr[data-room="tour"] td', { hasText: /^CLOSED$/ }).waitFor();

    // Reopen it; a room opening later counts down to its opening.
    await page.getByRole('button', { name: 'Reopen' }).click();
    await confirm(page, /Reopen to new joiners in room “The tour”/);
    await page.getByText('Changed tour: closed true → false.').waitFor();
    assert.equal((await admin('GET', '/admin/rooms/tour')).closed, false);
    await admin('POST', '/admin/rooms', { id: 'later', name: 'Later', concertIds: [], opensAt: new Date(Date.now() + 3600_000).toISOString() });
    const opens = page.locator('#rooms tr[data-room="later"] td').nth(1);
    await opens.waitFor();
    assert.match(await opens.textContent(), /^in (1 h 00 min|59:\d\d)$/);
    assert.equal(await page.locator('#rooms tr[data-room="later"] td').first().textContent(), 'SCHEDULED');

    // Sales: each schedule's figures as the API tells them, bars drawn.
    const sales = await admin('GET', `/admin/concerts/${concert.id}/sales`);
    const sold = sales.find((s) => s.scheduleId === schedule.id);
    assert.deepEqual([sold.sold, sold.held], [1, 1]);
    const row = page.locator(`#sales [data-schedule="${schedule.id}"]`);
    await row.waitFor();
    assert.equal(
      await row.locator('.figures').textContent(),
      `${sold.sold} sold · ${sold.held} held · ${sold.available} available · ₩${sold.revenue.toLocaleString('en-GB')}`,
    );
    assert.equal(await row.locator('rect').count(), 3);
    assert.ok(Number(await row.locator('rect.sold').getAttribute('width')) > 0);

    // The operator log: newest first, paged with `before`.
    for (let n = 10; n < 16; n += 1) await admin('PATCH', '/admin/rooms/tour', { admitBatch: n });
    const first = await admin('GET', '/admin/audit?limit=10');
    await page.waitForFunction((seq) => document.querySelector('#audit tbody tr')?.dataset.seq === String(seq), first.entries[0].seq);
    const seqs = async () => (await page.locator('#audit tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq))));
    assert.deepEqual(await seqs(), first.entries.map((e) => e.seq));
    const top = page.locator('#audit tbody tr').first();
    assert.equal(await top.locator('td').nth(2).textContent(), first.entries[0].actor);
    assert.equal(await top.locator('td').nth(3).textContent(), 'room.update');
    assert.equal(await top.locator('td').nth(5).textContent(), 'batch 14 → 15', 'what the change changed');
    assert.equal(await top.locator('td').nth(7).textContent(), first.entries[0].after);
    await page.getByRole('button', { name: 'Older' }).click();
    const second = await admin('GET', `/admin/audit?limit=10&before=${first.nextBefore}`);
    await page.waitForFunction((seq) => document.querySelector('#audit tbody tr')?.dataset.seq === String(seq), second.entries[0].seq);
    assert.deepEqual(await seqs(), second.entries.map((e) => e.seq));
    assert.ok(await page.locator('#audit tbody tr', { hasText: 'queue.update' }).count() + await page.locator('#audit tbody tr', { hasText: 'room.create' }).count() > 0);
    await page.getByRole('button', { name: 'Newest' }).click();
    await page.waitForFunction((seq) => document.querySelector('#audit tbody tr')?.dataset.seq === String(seq), first.entries[0].seq);

    // The charts: this instance's samples (one every 10 s), named by instance; a reload keeps them.
    const history = await admin('GET', '/admin/rooms/main/history');
    await page.getByText(history.instance).waitFor();
    await page.waitForFunction(() => Number(document.querySelector('#charts figure[data-room="main"]')?.dataset.samples) >= 2, null, { timeout: 30_000 });
    assert.equal(await page.locator('#charts figure[data-room="main"] polyline').count(), 4);
    await page.reload();
    await page.locator('#rooms tr[data-room="main"]').waitFor();
    await page.waitForFunction(() => Number(document.querySelector('#charts figure[data-room="main"]')?.dataset.samples) >= 2);
    const label = await page.locator('#charts figure[data-room="main"] svg').first().getAttribute('aria-label');
    assert.match(label, /last 30 minutes; now: waiting \d+, active \d+/);

    await assertNoHorizontalScroll(page, 'the console');
    await assertContrast(page, 'the console');
    await screenshot(page, 'console-overview.png');
    await page.getByRole('button', { name: 'Pause admission' }).click();
    await page.getByRole('dialog').waitFor();
    await screenshot(page, 'console-confirm.png');
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();

    // Forgetting the token asks for it again.
    await page.getByRole('button', { name: 'Forget the token' }).click();
    await tokenField.waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('concert.console.token')), null);
    assertNoProblems(browser);
  });
});
