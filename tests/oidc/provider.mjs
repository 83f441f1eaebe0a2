// A real OpenID Connect provider for the identity tests: panva's oidc-provider (a certified
// implementation) on a loopback port, with one public client (authorization code + PKCE) and
// test users whose `sub` are UUIDs. Nothing here is a stub of the protocol; only the parts a
// deployment would configure (clients, accounts, keys, consent for a first-party app) are set.
//
//   node provider.mjs --keys FILE [--port 0] [--client concert-page] [--users uuid,uuid]
//
// --keys     a JSON file {"keys": [private JWK, ...]} (see keys.mjs); the first RS256 key signs,
//            every key is published in the JWKS. Restart with a changed file to rotate keys.
// --port     0 picks a free port.
// --users    the accounts; a user signs in by typing their UUID as the login (any password).
//
// Prints one JSON line {"issuer": "http://127.0.0.1:PORT"} once it listens. Stops on SIGTERM,
// SIGINT, or when its standard input closes (so a test that dies leaves no provider behind).

import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

const opts = args(process.argv.slice(2));
if (!opts.keys) throw new Error('--keys FILE is required');
const port = Number(opts.port ?? 0);
const clientId = opts.client ?? 'concert-page';
const users = new Set((opts.users ?? '').split(',').map((u) => u.trim().toLowerCase()).filter(Boolean));
const jwks = JSON.parse(readFileSync(opts.keys, 'utf8'));

// Loopback only: the tests' pages run on ports chosen at run time.
const LOOPBACK = /^http:\/\/(127\.0\.0\.1|localhost):\d+(\/.*)?$/;

async function start() {
  // Listen first to learn the port: the issuer URL names it.
  const { createServer } = await import('node:http');
  const server = createServer();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    jwks,
    clients: [{
      client_id: clientId,
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // Replaced by the loopback check below; listed because the metadata needs one.
      redirect_uris: ['http://127.0.0.1/'],
      post_logout_redirect_uris: ['http://127.0.0.1/'],
    }],
    pkce: { required: () => true },
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    async findAccount(ctx, id) {
      const sub = String(id).trim().toLowerCase();
      if (!users.has(sub)) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, name: `Buyer ${sub.slice(0, 8)}`, email: `${sub.slice(0, 8)}@example.test` };
        },
      };
    },
    // A first-party page: sign-in needs no consent screen (what a site configures for its own
    // application); the grant covers what the page asked for.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email');
      await grant.save();
      return grant;
    },
    clientBasedCORS(ctx, origin) {
      return LOOPBACK.test(origin);
    },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: { IdToken: 3600, AccessToken: 3600, Session: 3600, Interaction: 600, Grant: 3600 },
    cookies: { keys: ['concert-test-cookie-key'] },
  });
  provider.Client.prototype.redirectUriAllowed = (uri) => LOOPBACK.test(uri);
  provider.Client.prototype.postLogoutRedirectUriAllowed = (uri) => LOOPBACK.test(uri);
  // Errors are answered to the client; print them for the test's log only.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);

  const stop = () => {
    server.close(() => process.exit(0));
    // Keep-alive connections would hold close() open.
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

start().catch((err) => {
  console.error(err);
  process.exit(1);
});
