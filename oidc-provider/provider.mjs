// A real OpenID Connect provider (panva's oidc-provider 9) for HOPE's tests, benchmarks and local demo.
// Production uses Keycloak (configs/keycloak/hope-realm.json); this program issues the same kind of access
// tokens: RS256 JWTs with `aud` = the API audience, `preferred_username`, `name` and `realm_access.roles`.
//
//   node provider.mjs --port PORT [--host 127.0.0.1] [--issuer http://127.0.0.1:PORT] --users USERS.json
//                     --redirect-uri URI [--redirect-uri URI ...] [--audience hope] [--token-ttl 3600]
//
// Clients: `hope-web` (public, authorization code + PKCE S256, refresh tokens) and `hope-slicer` (public,
// resource owner password grant only). Users, passwords and roles come from the users file
// ({"users": [{"username", "password", "name", "roles"}]}). State (sessions, codes) is in memory only.
// Prints `ready <issuer>` on stdout once listening; logs one line per token issued on stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const USAGE = 'usage: node provider.mjs --port PORT --users USERS.json --redirect-uri URI [--redirect-uri URI ...] '
  + '[--issuer URL] [--host 127.0.0.1] [--audience hope] [--token-ttl SECONDS]';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { host: '127.0.0.1', audience: 'hope', tokenTtl: 3600, redirectUris: [] };
  const names = {
    '--port': 'port', '--host': 'host', '--issuer': 'issuer', '--users': 'users',
    '--audience': 'audience', '--token-ttl': 'tokenTtl', '--redirect-uri': 'redirectUri',
  };
  for (let i = 0; i < argv.length; i += 1) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    const key = names[flag];
    if (!key) fail(`unknown argument ${argv[i]}`);
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) fail(`${flag} needs a value`);
      value = argv[i];
    }
    if (key === 'redirectUri') options.redirectUris.push(value);
    else options[key] = value;
  }
  options.port = Number(options.port);
  options.tokenTtl = Number(options.tokenTtl);
  if (!Number.isInteger(options.port) || options.port <= 0 || options.port > 65535) fail('--port must be a TCP port');
  if (!Number.isInteger(options.tokenTtl) || options.tokenTtl <= 0) fail('--token-ttl must be a positive integer');
  if (!options.users) fail('--users is required');
  if (!options.redirectUris.length) fail('at least one --redirect-uri is required');
  if (!options.audience) fail('--audience must not be empty');
  options.issuer ||= `http://${options.host}:${options.port}`;
  return options;
}

function loadUsers(path) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read the users file ${path}: ${err.message}`);
  }
  const users = new Map();
  for (const user of doc?.users ?? []) {
    if (typeof user?.username !== 'string' || !user.username || typeof user.password !== 'string') {
      fail(`${path}: every user needs a username and a password`);
    }
    users.set(user.username, {
      username: user.username,
      password: user.password,
      name: typeof user.name === 'string' ? user.name : user.username,
      roles: Array.isArray(user.roles) ? user.roles.map(String) : [],
    });
  }
  if (!users.size) fail(`${path} lists no users ({"users": [{"username", "password", "name", "roles"}]})`);
  return users;
}

const options = parseArgs(process.argv.slice(2));
const users = loadUsers(options.users);
// A resource indicator must be an absolute URI; the token's `aud` is the plain audience ("hope"), as Keycloak's.
const RESOURCE = URL.canParse(options.audience) ? options.audience : `urn:${options.audience}`;
const SCOPE = 'openid profile';
const digest = (text) => crypto.createHash('sha256').update(text, 'utf8').digest();

/** The user whose password is `password`, or undefined (compared in constant time). */
function checkPassword(username, password) {
  const user = typeof username === 'string' ? users.get(username) : undefined;
  const given = digest(typeof password === 'string' ? password : '');
  const expected = digest(user ? user.password : crypto.randomUUID());
  return crypto.timingSafeEqual(given, expected) && user ? user : undefined;
}

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(12).toString('base64url'), alg: 'RS256', use: 'sig' };
}

const resourceServer = {
  scope: SCOPE,
  audience: options.audience,
  accessTokenFormat: 'jwt',
  accessTokenTTL: options.tokenTtl,
  jwt: { sign: { alg: 'RS256' } },
};

const provider = new Provider(options.issuer, {
  clients: [
    {
      client_id: 'hope-web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: options.redirectUris,
    },
    {
      client_id: 'hope-slicer',
      token_endpoint_auth_method: 'none',
      grant_types: ['password'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [signingKey()] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  scopes: ['openid', 'profile', 'offline_access'],
  responseTypes: ['code', 'none'], // no implicit flow
  pkce: { required: () => true },
  // Explicit lifetimes (seconds): a working day of sign-in, 10 minutes to fill the login form.
  ttl: {
    AccessToken: options.tokenTtl,
    IdToken: options.tokenTtl,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 8 * 3600,
    Grant: 8 * 3600,
    RefreshToken: 8 * 3600,
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== RESOURCE) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return resourceServer;
      },
      useGrantedResource: () => true,
    },
  },
  // Refresh tokens for hope-web without asking for offline_access (a browser session refreshes its token).
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users.get(id);
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({ sub: id, preferred_username: user.username, name: user.name }),
    };
  },
  async extraTokenClaims(ctx, token) {
    const user = token.accountId ? users.get(token.accountId) : undefined;
    if (!user) return undefined;
    return {
      preferred_username: user.username,
      name: user.name,
      realm_access: { roles: [...user.roles] },
      azp: token.clientId,
    };
  },
});

// Resource owner password grant (hope-slicer): a JWT access token for the API, built as client_credentials.js
// and authorization_code.js of oidc-provider build theirs (an AccessToken with a resourceServer).
provider.registerGrantType('password', async (ctx) => {
  const { params, client } = ctx.oidc;
  const user = checkPassword(params.username, params.password);
  if (!user) throw new errors.InvalidGrant('wrong username or password');
  const requested = new Set((params.scope || SCOPE).split(' ').filter(Boolean));
  const scope = SCOPE.split(' ').filter((s) => requested.has(s)).join(' ');
  const token = new provider.AccessToken({
    accountId: user.username, client, gty: 'password', scope: scope || undefined,
  });
  token.resourceServer = new provider.ResourceServer(RESOURCE, resourceServer);
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();
  ctx.body = {
    access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope: token.scope,
  };
}, ['username', 'password', 'scope']);

provider.on('grant.success', (ctx) => {
  const token = ctx.oidc.entities.AccessToken;
  process.stderr.write(`token issued: user=${token?.accountId ?? '-'} client=${ctx.oidc.client?.clientId} `
    + `grant=${ctx.oidc.params.grant_type}\n`);
});
provider.on('server_error', (ctx, err) => process.stderr.write(`server error: ${err.stack || err}\n`));

// Login pages, served by this program (no devInteractions) -------------------------------------------------

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, { error, username } = {}) {
  const alert = error ? `<p role="alert" class="error">${escapeHtml(error)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to HOPE</title>
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;font-size:1rem;margin:.25rem 0}input{padding:.4rem}
button{margin-top:1rem;padding:.5rem}.error{color:#a00;font-weight:bold}</style></head>
<body><main>
<h1>Sign in to HOPE</h1>
<p>Application: ${escapeHtml(clientId)}</p>
${alert}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" required autofocus value="${escapeHtml(username || '')}">
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>
</main></body></html>
`;
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, {
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'X-Frame-Options': 'DENY',
    // No form-action: Chromium applies it to the redirects after the form's POST too (to HOPE's callback).
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(body);
}

async function readForm(req, limit = 16 * 1024) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** A grant of everything HOPE's clients ask for: consent is implied (first-party clients), never asked. */
async function autoConsent(details) {
  const { accountId } = details.session;
  const clientId = details.params.client_id;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId });
  const requested = String(details.params.scope || SCOPE);
  grant.addOIDCScope(requested);
  grant.addResourceScope(RESOURCE, SCOPE);
  return grant.save();
}

async function interaction(req, res, path) {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(path);
  if (!match) return send(res, 404, 'not found', 'text/plain; charset=utf-8');
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return send(res, 400, `this sign-in has expired or is unknown (${err.message}): start again from the application`,
      'text/plain; charset=utf-8');
  }
  if (details.uid !== match[1]) return send(res, 400, 'interaction mismatch', 'text/plain; charset=utf-8');
  const clientId = details.params.client_id;

  if (req.method === 'GET' && !match[2]) {
    if (details.prompt.name === 'consent') {
      const grantId = await autoConsent(details);
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    return send(res, 200, loginPage(details.uid, clientId));
  }
  if (req.method === 'POST' && match[2]) {
    let form;
    try {
      form = await readForm(req);
    } catch {
      return send(res, 413, 'form too large', 'text/plain; charset=utf-8');
    }
    const user = checkPassword(form.get('username'), form.get('password'));
    if (!user) {
      return send(res, 401, loginPage(details.uid, clientId, {
        error: 'Wrong username or password', username: form.get('username'),
      }));
    }
    // Login and consent in one step: the grant is created for the account that just signed in.
    const grantId = await autoConsent({ ...details, session: { accountId: user.username } });
    return provider.interactionFinished(req, res, {
      login: { accountId: user.username },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  }
  res.setHeader('Allow', match[2] ? 'POST' : 'GET');
  return send(res, 405, 'method not allowed', 'text/plain; charset=utf-8');
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path.startsWith('/interaction/')) {
    interaction(req, res, path).catch((err) => {
      process.stderr.write(`interaction error: ${err.stack || err}\n`);
      if (!res.headersSent) send(res, 500, 'internal error', 'text/plain; charset=utf-8');
      else res.end();
    });
  } else {
    callback(req, res);
  }
});

server.on('error', (err) => {
  process.stderr.write(`provider.mjs: cannot listen on ${options.host}:${options.port}: ${err.message}\n`);
  process.exit(1);
});
server.listen(options.port, options.host, () => {
  process.stdout.write(`ready ${options.issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
