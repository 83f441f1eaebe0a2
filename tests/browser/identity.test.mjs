// The buyer's page with identity on, against a real OpenID provider (panva's oidc-provider from
// tests/oidc, `npm ci` there): sign in through the provider's own login form (authorization
// code + PKCE), see who is signed in, charge, join the line, buy a seat, sign out; a second user
// in another browser profile sees neither the first one's balance nor their reservation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import {
  openBrowser, screenshot, charge, waitAdmitted, pickFirstConcertAndDate, availableSeats, holdSeat, WAIT,
} from './lib/browser.mjs';

const OIDC = join(dirname(fileURLToPath(import.meta.url)), '..', 'oidc');
const CLIENT = 'concert-page';

/** Starts oidc-provider with `users`; resolves to { issuer, stop }. */
async function startProvider(users) {
  const dir = await mkdtemp(join(tmpdir(), 'concert-oidc-'));
  const keys = join(dir, 'keys.json');
  execFileSync('node', ['keys.mjs', 'new', keys], { cwd: OIDC });
  const child = spawn('node', ['provider.mjs', '--keys', keys, '--port', '0', '--client', CLIENT, '--users', users.join(',')], {
    cwd: OIDC, stdio: ['pipe', 'pipe', 'ignore'],
  });
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`oidc-provider exited (${code})`)));
  });
  const { issuer } = JSON.parse(line);
  return {
    issuer,
    async stop() {
      child.stdin.end();
      child.kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Signs `user` in through the provider's login form; resolves once the page says who it is. */
async function signIn(page, user) {
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('input[name="login"]').waitFor({ timeout: WAIT });
  await page.locator('input[name="login"]').fill(user);
  await page.locator('input[name="password"]').fill('any password');
  await page.locator('button[type="submit"]').click();
  await page.getByText(`Signed in as ${user}`).waitFor({ timeout: WAIT });
}

test('sign in with the provider, buy a seat, sign out; another user sees nothing of it', { timeout: 180_000 }, async () => {
  const [alice, bob] = [randomUUID(), randomUUID()];
  const provider = await startProvider([alice, bob]);
  const server = await startServer({
    QUEUE_ADMIT_INTERVAL_SECS: '1', QUEUE_ADMIT_BATCH: '100', SCHEDULER_CHECK_MILLIS: '100',
    AUTH_ISSUER: provider.issuer, AUTH_AUDIENCE: CLIENT, AUTH_PAGE_CLIENT_ID: CLIENT,
  });
  const browsers = [];
  try {
    const a = await openBrowser();
    browsers.push(a);
    const page = a.page;
    await page.goto(server.url);
    // Signed out: no id to paste, nothing to do but sign in.
    assert.equal(await page.getByLabel('Your user id').isVisible(), false, 'no "paste another id" with identity on');
    assert.equal(await page.getByRole('button', { name: 'Join the line' }).isDisabled(), true);
    await signIn(page, alice);
    await screenshot(page, 'signed-in.png');
    await page.locator('#balance', { hasText: '0 won' }).waitFor();
    await charge(page, 1000000, 1000000);

    await page.getByRole('button', { name: 'Join the line' }).click();
    await waitAdmitted(page);
    await pickFirstConcertAndDate(page);
    await holdSeat(page, availableSeats(page).first());
    const reservation = await page.evaluate(() => JSON.parse(localStorage.getItem('concert.hold')).id);
    await page.getByRole('button', { name: 'Pay' }).click();
    await page.getByRole('heading', { name: 'Paid: your seat is yours' }).waitFor({ timeout: WAIT });
    const left = Number((await page.locator('#balance').textContent()).replace(/[^\d]/g, ''));
    assert.ok(left < 1000000, `the balance went down (${left})`);

    // Bob, in a browser profile of his own.
    const b = await openBrowser();
    browsers.push(b);
    await b.page.goto(server.url);
    await signIn(b.page, bob);
    await b.page.locator('#balance', { hasText: '0 won' }).waitFor();
    assert.equal(await b.page.getByRole('heading', { name: 'Your hold' }).isVisible(), false);
    // With his own identity, the API refuses him Alice's balance ...
    const status = await b.page.evaluate(async (other) => {
      const { idToken } = JSON.parse(sessionStorage.getItem('concert.identity'));
      const res = await fetch(`/users/${other}/balance`, { headers: { Authorization: `Bearer ${idToken}` } });
      return { status: res.status, code: (await res.json()).code };
    }, alice);
    assert.deepEqual(status, { status: 403, code: 'FORBIDDEN' });
    // ... and, with a turn of his own, her reservation reads as unknown.
    await b.page.getByRole('button', { name: 'Join the line' }).click();
    await waitAdmitted(b.page);
    const seen = await b.page.evaluate(async (id) => {
      const { token } = JSON.parse(localStorage.getItem('concert.token'));
      return (await fetch(`/reservations/${id}`, { headers: { Authorization: `Bearer ${token}` } })).status;
    }, reservation);
    assert.equal(seen, 404);

    // Alice signs out, at the provider too.
    await page.getByRole('button', { name: 'Sign out' }).click();
    const confirm = page.getByRole('button', { name: /yes, sign me out/i });
    await confirm.waitFor({ timeout: WAIT });
    await confirm.click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor({ timeout: WAIT });
    assert.equal(await page.locator('#balance').textContent(), 'sign in to see it');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('concert.identity')), null);
    for (const br of browsers) assert.deepEqual(br.problems, [], 'the page logged errors');
  } catch (err) {
    for (const [i, br] of browsers.entries()) await screenshot(br.page, `identity-failed-${i}.png`).catch(() => {});
    err.message += `\n--- server log ---\n${server.logs().slice(-4000)}`;
    throw err;
  } finally {
    for (const br of browsers) await br.close();
    await server.stop();
    await provider.stop();
  }
});
