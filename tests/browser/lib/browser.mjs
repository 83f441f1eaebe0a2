// Debian's chromium, driven by playwright-core (which downloads no browser of its own), and the
// steps and checks the scenarios share. Steps go through roles and accessible names, as a
// screen reader would, so a control without a proper name fails the tests.

import { chromium } from 'playwright-core';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? 'screenshots';

/** Long enough for an admission tick and a slow shared machine, short enough to fail fast. */
export const WAIT = 45_000;

/**
 * A fresh browser profile (its own user data dir, so nothing leaks between scenarios) and one
 * page. `problems` collects script errors and console errors, CSP refusals among them, except
 * the "Failed to load resource" lines Chromium logs for every 4xx the page handles on purpose.
 */
export async function openBrowser({ width = 1024, height = 900 } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'concert-browser-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width, height },
    locale: 'en-GB',
    timezoneId: 'UTC',
    // No transitions: colours are measured and photographed as they end up, not half-way.
    reducedMotion: 'reduce',
  });
  context.setDefaultTimeout(WAIT);
  const page = context.pages()[0] ?? await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  return {
    page,
    problems,
    async close() {
      await context.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `body(browser)` with a fresh browser of `viewport` against `server`, which it stops
 * afterwards with the browser. On a failure it keeps a screenshot and adds the end of the
 * server's log to the error.
 */
export async function withBrowser(server, viewport, body) {
  let browser;
  try {
    browser = await openBrowser(viewport);
    await body(browser);
  } catch (err) {
    if (browser) await screenshot(browser.page, `failed-${Date.now()}.png`).catch(() => {});
    err.message += `\n--- server log ---\n${server.logs().slice(-4000)}`;
    throw err;
  } finally {
    if (browser) await browser.close();
    await server.stop();
  }
}

export async function screenshot(page, name) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  // Let fonts settle so the file shows what a person sees.
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: join(SCREENSHOT_DIR, name), fullPage: true });
}

// ---- steps ----

export const balanceText = (page) => page.locator('#balance').textContent();

/** Adds `amount` won through the charge form and waits for the new balance. */
export async function charge(page, amount, expectBalance) {
  await page.getByLabel('Add to your balance (won)').fill(String(amount));
  await page.getByRole('button', { name: 'Charge', exact: true }).click();
  await page.locator('#balance', { hasText: `${expectBalance.toLocaleString('en-US')} won` }).waitFor();
}

export async function userId(page) {
  return page.getByLabel('Your user id').inputValue();
}

/** The token the page keeps for a reload. */
export async function storedToken(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('concert.token') ?? 'null')?.token ?? null);
}

/** The position the page shows, or null while it shows none. */
export async function shownPosition(page) {
  const text = await page.locator('#position').textContent({ timeout: 200 }).catch(() => null);
  return text === null ? null : Number(text);
}

export async function waitAdmitted(page) {
  await page.getByText('It is your turn.').waitFor({ timeout: WAIT });
  await page.getByRole('group', { name: 'Concert' }).getByRole('radio').first().waitFor();
}

/** Picks the first concert and its first date; resolves when the seat map is shown. */
export async function pickFirstConcertAndDate(page) {
  await page.getByRole('group', { name: 'Concert' }).getByRole('radio').first().check();
  const date = page.getByRole('group', { name: 'Date' }).getByRole('radio').first();
  await date.check();
  await page.getByRole('group', { name: /^Seats on / }).waitFor();
}

/** The seat radios whose accessible name says they are available. */
export const availableSeats = (page) => page.getByRole('radio', { name: /^Seat \d+, .* available$/ });

export const seatByNumber = (page, n) => page.getByRole('radio', { name: new RegExp(`^Seat ${n}, `) });

/** Number, id and price of a seat radio, read from its value and accessible name. */
export async function seatInfo(seat) {
  const name = await seat.getAttribute('aria-label');
  const [, number, price] = name.match(/^Seat (\d+), ([\d,]+) won/);
  return { number: Number(number), id: await seat.inputValue(), price: Number(price.replaceAll(',', '')), name };
}

export async function holdSeat(page, seat) {
  await seat.check();
  const { number } = await seatInfo(seat);
  await page.getByRole('button', { name: new RegExp(`^Hold seat ${number} `) }).click();
  await page.getByRole('heading', { name: 'Your hold' }).waitFor();
}

// ---- checks ----

/** Nothing wider than the viewport: no horizontal scrolling. */
export async function assertNoHorizontalScroll(page, where) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `${where}: page is ${scroll}px wide in a ${client}px viewport`);
}

/**
 * Text contrast of every visible piece of text against the colour behind it: at least 4.5:1,
 * or 3:1 for large text (24 px, or 18.66 px bold), as WCAG 2 AA asks. Text on a gradient (the
 * striped held seats) is checked against each of the gradient's colours.
 */
export async function assertContrast(page, where) {
  const failures = await page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return null;
      const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
      return { r, g, b, a };
    };
    const lum = ({ r, g, b }) => {
      const f = (v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const ratio = (x, y) => {
      const [hi, lo] = [lum(x), lum(y)].sort((p, q) => q - p);
      return (hi + 0.05) / (lo + 0.05);
    };
    const backgrounds = (node) => {
      for (let n = node; n; n = n.parentElement) {
        const s = getComputedStyle(n);
        if (s.backgroundImage && s.backgroundImage !== 'none') {
          const colours = [...s.backgroundImage.matchAll(/rgba?\([^)]+\)/g)].map((m) => parse(m[0]));
          if (colours.length) return colours;
        }
        const bg = parse(s.backgroundColor);
        if (bg && bg.a > 0.99) return [bg];
      }
      return [{ r: 255, g: 255, b: 255, a: 1 }];
    };
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      const node = t.parentElement;
      if (!t.textContent.trim() || seen.has(node) || !node.checkVisibility?.()) continue;
      seen.add(node);
      const s = getComputedStyle(node);
      if (s.opacity === '0' || node.closest('[aria-hidden="true"]:not(label)')) continue;
      const fg = parse(s.color);
      const size = parseFloat(s.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
      const need = large ? 3 : 4.5;
      for (const bg of backgrounds(node)) {
        const r = ratio(fg, bg);
        if (r < need) out.push(`"${t.textContent.trim().slice(0, 40)}" ${r.toFixed(2)}:1 < ${need}:1`);
      }
    }
    return out;
  });
  assert.deepEqual(failures, [], `${where}: text below WCAG AA contrast`);
}

/**
 * Presses Tab until `target` (a locator) has the focus, at most `max` times, checking every
 * element that takes the focus on the way: inside the viewport's width and showing a focus
 * ring (an outline on it or on the label drawn for it). Returns the focused names, in order.
 */
export async function tabTo(page, target, { max = 80, width } = {}) {
  const names = [];
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    const info = await page.evaluate(() => {
      const a = document.activeElement;
      if (!a || a === document.body) return null;
      a.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      const drawn = a.matches('input[type="radio"]') ? a.nextElementSibling ?? a : a;
      const style = getComputedStyle(drawn);
      const box = drawn.getBoundingClientRect();
      return {
        name: a.getAttribute('aria-label') || a.labels?.[0]?.textContent?.trim() || a.textContent.trim() || a.id,
        ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
        left: box.left,
        right: box.right,
      };
    });
    if (!info) continue;
    names.push(info.name);
    assert.ok(info.ring, `no visible focus ring on "${info.name}"`);
    if (width) assert.ok(info.left >= 0 && info.right <= width, `"${info.name}" is outside the ${width}px viewport`);
    if (await target.evaluate((n) => n === document.activeElement).catch(() => false)) return names;
  }
  throw new Error(`focus never reached the target after ${max} Tabs; went through: ${names.join(' | ')}`);
}

/** The page logged no script error and no CSP refusal. */
export function assertNoProblems(browser) {
  assert.deepEqual(browser.problems, [], 'the page logged errors');
}
