// Starts and stops the `concert` binary for one scenario: in-memory store (the demo catalogue
// is loaded there), a free loopback port, the settings the scenario asks for.
//
// For working on the page without rebuilding the binary, `PAGE_ASSETS_DIR=<dir>` puts a small
// proxy in front of it that serves `/` and `/assets/*` from that directory (with the same
// Content-Security-Policy the binary sends) and passes every other request through.

import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CONCERT_BIN = process.env.CONCERT_BIN ?? 'target/debug/concert';

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts `concert serve --store memory` with `settings` (environment variables) on top of a
 * minimal environment, so that a developer's own DATABASE_URL or ADMIN_TOKEN never leaks in.
 * Resolves once `/health/live` answers 200. `stop()` ends it (SIGTERM, then SIGKILL).
 */
export async function startServer(settings = {}) {
  let lastError;
  // The port is free when probed but could be taken before the binary binds it: try again.
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await startOnce(settings);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(settings) {
  const port = await freePort();
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    RUST_LOG: process.env.CONCERT_LOG ?? 'warn',
    BIND_ADDR: `127.0.0.1:${port}`,
    ...settings,
  };
  const child = spawn(CONCERT_BIN, ['serve', '--store', 'memory'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = [];
  const keep = (chunk) => {
    logs.push(chunk.toString());
    if (logs.length > 500) logs.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: null, signal: null, err };
      resolve(exited);
    });
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      throw new Error(`${CONCERT_BIN} exited before serving (${JSON.stringify(exited)}):\n${logs.join('')}`);
    }
    try {
      const res = await fetch(`${base}/health/live`);
      if (res.status === 200) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${CONCERT_BIN} did not answer /health/live within 30 s:\n${logs.join('')}`);
    }
    await sleep(100);
  }
  const proxy = process.env.PAGE_ASSETS_DIR ? await startAssetProxy(process.env.PAGE_ASSETS_DIR, port) : null;
  return {
    /** Where the browser goes (the proxy when one runs). */
    url: proxy ? proxy.url : base,
    /** Where the test's own API calls go. */
    api: base,
    logs: () => logs.join(''),
    async stop() {
      if (proxy) await proxy.close();
      if (exited) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const result = await exit;
      clearTimeout(timer);
      return result;
    },
  };
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
// The binary's own policy for the page (adapters-http, routes/ops.rs PAGE_CSP).
const CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

async function startAssetProxy(dir, upstreamPort) {
  const port = await freePort();
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = path === '/' ? 'index.html' : path.startsWith('/assets/') ? path.slice('/assets/'.length) : null;
    if (file !== null && req.method === 'GET') {
      const safe = normalize(file);
      if (safe.startsWith('..') || safe.includes('/')) {
        res.writeHead(404).end();
        return;
      }
      try {
        const body = await readFile(join(dir, safe));
        res.writeHead(200, {
          'Content-Type': TYPES[extname(safe)] ?? 'application/octet-stream',
          'Content-Security-Policy': CSP,
          'Cache-Control': 'no-cache',
        });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
      return;
    }
    const upstream = httpRequest({
      host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers,
    }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}
