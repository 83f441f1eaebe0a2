// Signs a test user in at the provider the way a browser would, without one: the authorization
// code flow with PKCE (S256) through the provider's own login form, then the code exchanged at
// its token endpoint. Used by the Rust tests to get real tokens from the real provider.
//
//   node login.mjs ISSUER CLIENT_ID REDIRECT_URI USER_UUID
//
// Prints {"id_token": ..., "access_token": ...} on one line.

import { createHash, randomBytes } from 'node:crypto';

const [issuer, clientId, redirectUri, user] = process.argv.slice(2);
if (!user) throw new Error('usage: node login.mjs ISSUER CLIENT_ID REDIRECT_URI USER_UUID');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const state = b64url(randomBytes(16));
const nonce = b64url(randomBytes(16));

const jar = new Map();
function remember(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const eq = pair.indexOf('=');
    jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
  }
}
const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

async function go(url, init = {}) {
  const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers ?? {}), cookie: cookie() } });
  remember(res);
  return res;
}

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const auth = new URL(discovery.authorization_endpoint);
Object.entries({
  client_id: clientId, response_type: 'code', redirect_uri: redirectUri, scope: 'openid profile email',
  code_challenge: challenge, code_challenge_method: 'S256', state, nonce,
}).forEach(([k, v]) => auth.searchParams.set(k, v));

let url = auth.href;
let code = null;
for (let step = 0; step < 12 && !code; step += 1) {
  const res = await go(url);
  if (res.status >= 300 && res.status < 400) {
    const next = new URL(res.headers.get('location'), url);
    if (next.href.startsWith(redirectUri)) {
      if (next.searchParams.get('state') !== state) throw new Error('state mismatch');
      code = next.searchParams.get('code');
      if (!code) throw new Error(`no code: ${next.search}`);
    } else {
      url = next.href;
    }
    continue;
  }
  const html = await res.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  if (res.status !== 200 || !action || !/name="login"/.test(html)) {
    throw new Error(`unexpected page at ${url} (${res.status}): ${html.slice(0, 400)}`);
  }
  const form = new URLSearchParams({ prompt: 'login', login: user, password: 'any' });
  const posted = await go(new URL(action, url).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form.toString(),
  });
  if (posted.status < 300 || posted.status >= 400) throw new Error(`login refused (${posted.status}): ${(await posted.text()).slice(0, 400)}`);
  url = new URL(posted.headers.get('location'), url).href;
}
if (!code) throw new Error('the flow did not reach the redirect URI');

const tokenRes = await fetch(discovery.token_endpoint, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: clientId, code_verifier: verifier,
  }).toString(),
});
const tokens = await tokenRes.json();
if (!tokenRes.ok || !tokens.id_token) throw new Error(`token endpoint: ${JSON.stringify(tokens)}`);
process.stdout.write(`${JSON.stringify({ id_token: tokens.id_token, access_token: tokens.access_token })}\n`);
