// Sign-in with the site's identity provider, when the server has identity on (it then names the
// issuer and the page's client in <meta> elements of this page). Authorization code flow with
// PKCE (S256) as a public client: no secret in the page. The ID token is kept in sessionStorage
// (this tab only) and sent as `Authorization: Bearer` on the routes that name a user; the server
// verifies it, the page only reads who is signed in from it.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';

export const config = {
  issuer: meta('concert-auth-issuer').replace(/\/+$/, ''),
  clientId: meta('concert-auth-client-id'),
  claim: meta('concert-auth-user-claim') || 'sub',
};

/** Whether this instance trusts only signed identities. */
export const enabled = Boolean(config.issuer);

const SESSION = 'concert.identity';
const PENDING = 'concert.signin';
const redirectUri = () => `${location.origin}/`;

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const random = (n = 32) => b64url(crypto.getRandomValues(new Uint8Array(n)));

function claimsOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return null;
  }
}

let discovered = null;
async function discovery() {
  if (!discovered) {
    const res = await fetch(`${config.issuer}/.well-known/openid-configuration`, { cache: 'no-store' });
    if (!res.ok) throw new Error(`the sign-in service answered ${res.status}`);
    discovered = await res.json();
  }
  return discovered;
}

const read = (store, key) => {
  try {
    return JSON.parse(store.getItem(key));
  } catch {
    return null;
  }
};

/** The signed-in user { idToken, userId, name } while their token is valid, else null. */
export function current() {
  const s = read(sessionStorage, SESSION);
  if (!s || typeof s.idToken !== 'string') return null;
  const claims = claimsOf(s.idToken);
  if (!claims || !(claims.exp * 1000 > Date.now() + 30_000)) return null;
  const userId = String(claims[config.claim] ?? '').toLowerCase();
  return { idToken: s.idToken, userId, name: claims.name || claims.email || claims.preferred_username || userId };
}

/** Goes to the provider's sign-in page. */
export async function signIn() {
  const d = await discovery();
  const verifier = random(32);
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const pending = { state: random(16), nonce: random(16), verifier };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(d.authorization_endpoint);
  Object.entries({
    client_id: config.clientId, response_type: 'code', redirect_uri: redirectUri(), scope: 'openid profile email',
    code_challenge: challenge, code_challenge_method: 'S256', state: pending.state, nonce: pending.nonce,
  }).forEach(([k, v]) => url.searchParams.set(k, v));
  location.assign(url.href);
}

/**
 * Finishes a sign-in the provider sent back here (`?code=&state=`): exchanges the code at the
 * token endpoint. Resolves to the user, or null when this load is not a return from sign-in;
 * throws with a reason a person can read when the sign-in failed.
 */
export async function completeSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  history.replaceState(null, '', '/');
  const pending = read(sessionStorage, PENDING);
  sessionStorage.removeItem(PENDING);
  if (params.has('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!pending || params.get('state') !== pending.state) throw new Error('this sign-in was not started here; try again');
  const d = await discovery();
  const res = await fetch(d.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri(),
      client_id: config.clientId, code_verifier: pending.verifier,
    }),
  });
  const tokens = await res.json().catch(() => ({}));
  if (!res.ok || typeof tokens.id_token !== 'string') throw new Error('the sign-in service refused the sign-in');
  const claims = claimsOf(tokens.id_token);
  // The server checks the signature; the page makes sure this token answers its own request.
  if (!claims || claims.nonce !== pending.nonce || claims.iss !== config.issuer) {
    throw new Error('the sign-in service answered with another sign-in');
  }
  sessionStorage.setItem(SESSION, JSON.stringify({ idToken: tokens.id_token }));
  return current();
}

/** Forgets the sign-in here, then at the provider when it offers that. */
export async function signOut() {
  const s = current();
  sessionStorage.removeItem(SESSION);
  let end = null;
  try {
    end = (await discovery()).end_session_endpoint;
  } catch {
    end = null;
  }
  if (!end) {
    location.assign('/');
    return;
  }
  const url = new URL(end);
  url.searchParams.set('client_id', config.clientId);
  url.searchParams.set('post_logout_redirect_uri', redirectUri());
  if (s) url.searchParams.set('id_token_hint', s.idToken);
  location.assign(url.href);
}
