// A real OpenID Provider (oidc-provider) on loopback for the end-to-end tests and `make run`.
//
// It issues RFC 9068 JWT access tokens (`typ: at+jwt`) to one confidential client through the
// `client_credentials` grant, publishes OIDC discovery and a JWKS, rotates its signing key without
// a restart, and can make its JWKS and discovery responses fail on demand. A second, plain-HTTP
// admin port lets a test drive all of that and read request counters. README.md beside this file
// lists the environment and the admin API.
//
// Why a front handler: oidc-provider is a Koa app that reads its keys once, at construction. So
// every request passes through `frontHandler` first, which counts it, applies the fault mode for
// JWKS and discovery, and otherwise hands it to the *current* Provider; rotation builds a new
// Provider from the new key set and swaps it in. client_credentials needs no persisted state, so
// nothing is lost in the swap.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';

import Provider from 'oidc-provider';

const CLIENT_ID = 'test-client';
const CLIENT_SECRET = 'test-secret';
// Scopes a token may carry (`scope` in POST /token); none is requested unless asked for.
const SCOPES = ['read', 'write', 'admin'];
const SIGNING_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const MODES = new Set(['normal', 'garbage', 'error', 'slow', 'down']);
// Header through which the admin API's own token request names claims to add (see POST /token).
const EXTRA_CLAIMS_HEADER = 'x-test-idp-extra-claims';

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

function log(message) {
  process.stderr.write(`idp: ${message}\n`);
}

function portFromEnv(name, fallback) {
  const raw = process.env[name] ?? String(fallback);
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`${name}=${raw} is not a port (0 picks a free one)`);
  return port;
}

const config = {
  port: portFromEnv('IDP_PORT', 0),
  adminPort: portFromEnv('IDP_ADMIN_PORT', 0),
  tlsCert: process.env.IDP_TLS_CERT || undefined,
  tlsKey: process.env.IDP_TLS_KEY || undefined,
  // The CA the admin API trusts when it asks the OP for a token; defaults to ca.pem beside the cert.
  tlsCa: process.env.IDP_TLS_CA || undefined,
  issuer: process.env.IDP_ISSUER || undefined,
  alg: process.env.IDP_ALG || 'RS256',
  resource: process.env.IDP_RESOURCE || 'api://orders',
  tokenTtl: Number(process.env.IDP_TOKEN_TTL || 3600),
};
if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) fail('set both IDP_TLS_CERT and IDP_TLS_KEY, or neither');
if (!Number.isInteger(config.tokenTtl) || config.tokenTtl < 1) fail(`IDP_TOKEN_TTL=${process.env.IDP_TOKEN_TTL} is not a positive number of seconds`);

// --- keys -------------------------------------------------------------------------------------

// Which key to generate for a JWS algorithm.
function keySpecFor(alg) {
  if (!SIGNING_ALGS.includes(alg)) return undefined;
  if (/^(RS|PS)/.test(alg)) return ['rsa', { modulusLength: 2048 }];
  switch (alg) {
    case 'ES256': return ['ec', { namedCurve: 'P-256' }];
    case 'ES384': return ['ec', { namedCurve: 'P-384' }];
    case 'ES512': return ['ec', { namedCurve: 'P-521' }];
    case 'EdDSA': return ['ed25519', {}];
    default: return undefined;
  }
}
if (!keySpecFor(config.alg)) fail(`IDP_ALG=${config.alg} is not supported (${SIGNING_ALGS.join(', ')})`);

let keySequence = 0;
// Random per process, so two IdPs (or one restarted) never publish the same kid for different keys.
const kidPrefix = crypto.randomBytes(3).toString('hex');

function generateKey(alg) {
  const [type, options] = keySpecFor(alg);
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  keySequence += 1;
  const kid = `idp-${kidPrefix}-${keySequence}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function publicJwk(jwk) {
  const {
    d, p, q, dp, dq, qi, ...pub
  } = jwk;
  return pub;
}

// The signing key is always keys[0]: oidc-provider signs with the first key that fits the alg.
const state = {
  alg: config.alg,
  keys: [generateKey(config.alg)],
  modes: {
    jwks: { mode: 'normal', delayMs: 0 },
    discovery: { mode: 'normal', delayMs: 0 },
    introspection: { mode: 'normal', delayMs: 0 },
  },
  stats: {
    jwks_requests: 0, discovery_requests: 0, token_requests: 0, introspection_requests: 0,
  },
  provider: undefined,
  handler: undefined,
  // One-shot extra claims for tokens requested through the admin API, by request id.
  pendingClaims: new Map(),
};

// --- the OpenID Provider ----------------------------------------------------------------------

// client_credentials tokens are never looked up again, so a plain Map is all the storage needed
// (and it keeps oidc-provider from warning about its development-only adapter).
class MemoryAdapter {
  static stores = new Map();

  constructor(name) {
    if (!MemoryAdapter.stores.has(name)) MemoryAdapter.stores.set(name, new Map());
    this.store = MemoryAdapter.stores.get(name);
  }

  async upsert(id, payload) { this.store.set(id, payload); }

  async find(id) { return this.store.get(id); }

  async findByUserCode() { return undefined; }

  async findByUid() { return undefined; }

  async consume(id) { const payload = this.store.get(id); if (payload) payload.consumed = Date.now() / 1000; }

  async destroy(id) { this.store.delete(id); }

  async revokeByGrantId() {}
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: MemoryAdapter,
    jwks: { keys: state.keys },
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPES.join(' '),
      // The default (RS256) must be a signing alg of the key set, which an EC-only set is not.
      id_token_signed_response_alg: state.alg,
    }],
    // oidc-provider's default list lacks RS384/RS512/ES384/ES512; a key set of only those would
    // leave the client no allowed `id_token_signed_response_alg` and fail every request.
    enabledJWA: { idTokenSigningAlgValues: SIGNING_ALGS },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: SCOPES,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 7662 and RFC 7009, for opaque access tokens (oidc-provider introspects and revokes
      // only those): the filter's introspection and the tests' revocations.
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No `resource` parameter: the token is for IDP_RESOURCE all the same.
        defaultResource: (ctx, client, oneOf) => oneOf ?? config.resource,
        useGrantedResource: () => true,
        // Any resource indicator is accepted and becomes `aud`, so tests can get tokens for the
        // wrong audience from the same IdP. `accessTokenFormat: 'jwt'` is what makes the token a
        // JWT (RFC 9068); resources named `urn:opaque:…` get opaque tokens instead, which the
        // introspection endpoint describes.
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          audience: resourceIndicator,
          scope: SCOPES.join(' '),
          accessTokenFormat: resourceIndicator.startsWith('urn:opaque:') ? 'opaque' : 'jwt',
          accessTokenTTL: config.tokenTtl,
          jwt: { sign: { alg: state.alg } },
        }),
      },
    },
    formats: {
      customizers: {
        jwt(ctx, token, jwt) {
          const id = ctx?.get(EXTRA_CLAIMS_HEADER);
          const claims = id ? state.pendingClaims.get(id) : undefined;
          if (claims) Object.assign(jwt.payload, claims);
        },
      },
    },
  });
  provider.on('server_error', (ctx, error) => log(`server_error on ${ctx.method} ${ctx.path}: ${error.stack}`));
  return provider;
}

function installProvider(issuer) {
  state.provider = buildProvider(issuer);
  state.handler = state.provider.callback();
}

// --- the front handler: counters, fault modes, issuer path prefix -----------------------------

let issuerPathPrefix = '';

function faulty(req, res, target) {
  const { mode, delayMs } = state.modes[target];
  switch (mode) {
    case 'garbage':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('<html>this is not JSON</html>');
      return true;
    case 'error':
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":"server_error","error_description":"fault injected by the test IdP"}');
      return true;
    case 'down':
      req.socket.destroy();
      return true;
    case 'slow':
      setTimeout(() => passToProvider(req, res), delayMs);
      return true;
    default:
      return false;
  }
}

function passToProvider(req, res) {
  if (req.socket.destroyed) return;
  state.handler(req, res);
}

function frontHandler(req, res) {
  const url = new URL(req.url, 'http://front');
  let { pathname } = url;
  if (issuerPathPrefix) {
    if (pathname !== issuerPathPrefix && !pathname.startsWith(`${issuerPathPrefix}/`)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not_found"}');
      return;
    }
    pathname = pathname.slice(issuerPathPrefix.length) || '/';
    // oidc-provider derives its mount path (for the URLs in discovery) from originalUrl vs url.
    req.originalUrl = req.url;
    req.url = pathname + url.search;
  }

  let target;
  if (pathname === '/jwks') {
    state.stats.jwks_requests += 1;
    target = 'jwks';
  } else if (pathname === '/.well-known/openid-configuration') {
    state.stats.discovery_requests += 1;
    target = 'discovery';
  } else if (pathname === '/token') {
    state.stats.token_requests += 1;
  } else if (pathname === '/token/introspection') {
    state.stats.introspection_requests += 1;
    target = 'introspection';
  }
  if (target && faulty(req, res, target)) return;
  passToProvider(req, res);
}

// --- the admin API ----------------------------------------------------------------------------

let opBaseUrl; // where the admin API reaches the OP: loopback and the real port, whatever the issuer
let opCa;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

class BadRequest extends Error {}

function parseJson(body) {
  if (!body.trim()) return {};
  try {
    const value = JSON.parse(body);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequest('body must be a JSON object');
    return value;
  } catch (error) {
    if (error instanceof BadRequest) throw error;
    throw new BadRequest(`body is not JSON: ${error.message}`);
  }
}

// A form POST to the OP's endpoint at `path` with the client's credentials, over its own
// transport, as a client would make it: the parsed JSON answer, or `undefined` for no body.
function postToOp(path, form, extraHeaders = {}) {
  const body = form.toString();
  const headers = {
    authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    'content-type': 'application/x-www-form-urlencoded',
    'content-length': Buffer.byteLength(body),
    ...extraHeaders,
  };
  const target = new URL(`${issuerPathPrefix}${path}`, opBaseUrl);
  const transport = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(target, {
      method: 'POST', headers, ca: opCa, agent: false, timeout: 10000,
    }, (res) => {
      readBody(res).then((text) => {
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, text, json });
      }, reject);
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

// A real revocation (RFC 7009) of an opaque access token.
async function revokeToken({ token }) {
  if (typeof token !== 'string' || !token) throw new BadRequest('token must be a non-empty string');
  const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const { status, text } = await postToOp('/token/revocation', form);
  if (status !== 200) throw new Error(`revocation endpoint answered ${status}: ${text}`);
  return { revoked: true };
}

// A real introspection (RFC 7662), as the filter makes it: the OP's answer.
async function introspectToken({ token }) {
  if (typeof token !== 'string' || !token) throw new BadRequest('token must be a non-empty string');
  const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const { status, text, json } = await postToOp('/token/introspection', form);
  if (status !== 200 || !json) throw new Error(`introspection endpoint answered ${status}: ${text}`);
  return json;
}

// A real client_credentials request to the OP over its own transport, as a client would make it.
async function requestToken({ resource, scope, claims }) {
  const form = new URLSearchParams({ grant_type: 'client_credentials', resource: resource ?? config.resource });
  if (scope !== undefined) form.set('scope', scope);
  const extraHeaders = {};
  let claimsId;
  if (claims !== undefined) {
    claimsId = crypto.randomUUID();
    state.pendingClaims.set(claimsId, claims);
    extraHeaders[EXTRA_CLAIMS_HEADER] = claimsId;
  }
  try {
    const { status, text, json } = await postToOp('/token', form, extraHeaders);
    if (status !== 200 || !json?.access_token) throw new Error(`token endpoint answered ${status}: ${text}`);
    return json;
  } finally {
    if (claimsId) state.pendingClaims.delete(claimsId);
  }
}

function rotate({ retire_previous: retirePrevious = false, alg }) {
  if (typeof retirePrevious !== 'boolean') throw new BadRequest('retire_previous must be a boolean');
  if (alg !== undefined && !keySpecFor(alg)) throw new BadRequest(`alg ${alg} is not supported`);
  const nextAlg = alg ?? state.alg;
  const key = generateKey(nextAlg);
  state.alg = nextAlg;
  state.keys = retirePrevious ? [key] : [key, ...state.keys];
  installProvider(state.provider.issuer);
  log(`rotated: signing kid ${key.kid} (${nextAlg}); published kids ${state.keys.map((k) => k.kid).join(', ')}`);
  return { kid: key.kid };
}

function setMode({ target, mode, delay_ms: delayMs = 1000 }) {
  const targets = {
    jwks: ['jwks'], discovery: ['discovery'], introspection: ['introspection'], all: ['jwks', 'discovery'],
  }[target];
  if (!targets) throw new BadRequest('target must be "jwks", "discovery", "introspection" or "all"');
  if (!MODES.has(mode)) throw new BadRequest(`mode must be one of ${[...MODES].join(', ')}`);
  if (!Number.isInteger(delayMs) || delayMs < 0) throw new BadRequest('delay_ms must be a non-negative integer');
  for (const name of targets) state.modes[name] = { mode, delayMs };
  return modesView();
}

function modesView() {
  const view = {};
  for (const [name, { mode, delayMs }] of Object.entries(state.modes)) view[name] = { mode, delay_ms: delayMs };
  return view;
}

const adminRoutes = {
  'GET /stats': () => ({ ...state.stats }),
  'POST /reset-stats': () => {
    state.stats = {
      jwks_requests: 0, discovery_requests: 0, token_requests: 0, introspection_requests: 0,
    };
    return { ...state.stats };
  },
  'POST /revoke': revokeToken,
  'POST /introspect': introspectToken,
  'POST /rotate': rotate,
  'GET /mode': modesView,
  'POST /mode': setMode,
  'POST /token': async (body) => {
    if (body.resource !== undefined && typeof body.resource !== 'string') throw new BadRequest('resource must be a string');
    if (body.scope !== undefined && typeof body.scope !== 'string') throw new BadRequest('scope must be a string');
    if (body.claims !== undefined && (body.claims === null || typeof body.claims !== 'object' || Array.isArray(body.claims))) {
      throw new BadRequest('claims must be a JSON object');
    }
    const response = await requestToken(body);
    return { access_token: response.access_token, expires_in: response.expires_in, scope: response.scope };
  },
  'GET /jwks': () => ({ keys: state.keys.map(publicJwk) }),
};

async function adminHandler(req, res) {
  const send = (status, value) => {
    const text = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const route = adminRoutes[`${req.method} ${new URL(req.url, 'http://admin').pathname}`];
  try {
    const body = parseJson(await readBody(req));
    if (!route) {
      send(404, { error: `no admin route ${req.method} ${req.url}`, routes: Object.keys(adminRoutes) });
      return;
    }
    send(200, await route(body));
  } catch (error) {
    if (error instanceof BadRequest) {
      send(400, { error: error.message });
    } else {
      log(`admin ${req.method} ${req.url} failed: ${error.stack}`);
      send(500, { error: error.message });
    }
  }
}

// --- start and stop ---------------------------------------------------------------------------

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

const tls = Boolean(config.tlsCert);
const opServer = tls
  ? https.createServer({ cert: fs.readFileSync(config.tlsCert), key: fs.readFileSync(config.tlsKey) }, frontHandler)
  : http.createServer(frontHandler);
// Envoy keeps upstream connections open for long; Node's 5 s default would close them under it
// and race with the next fetch (a spurious reset). Tests end the process, which ends them anyway.
opServer.keepAliveTimeout = 300_000;
opServer.headersTimeout = 301_000;
const adminServer = http.createServer(adminHandler);

if (tls) {
  const caPath = config.tlsCa ?? path.join(path.dirname(config.tlsCert), 'ca.pem');
  if (fs.existsSync(caPath)) {
    opCa = fs.readFileSync(caPath);
  } else {
    log(`no CA at ${caPath} (set IDP_TLS_CA): the admin API's POST /token will not trust the OP`);
  }
}

try {
  const port = await listen(opServer, config.port);
  const adminPort = await listen(adminServer, config.adminPort);
  const scheme = tls ? 'https' : 'http';
  opBaseUrl = `${scheme}://127.0.0.1:${port}`;
  const issuer = config.issuer ?? opBaseUrl;
  issuerPathPrefix = new URL(issuer).pathname.replace(/\/+$/, '');
  installProvider(issuer);
  process.stdout.write(`READY issuer=${issuer} port=${port} admin=${adminPort}\n`);
} catch (error) {
  fail(`cannot start: ${error.stack}`);
}

function shutdown(signal) {
  log(`${signal}: shutting down`);
  opServer.close();
  adminServer.close();
  opServer.closeAllConnections();
  adminServer.closeAllConnections();
  // Anything still pending (a `slow` timer) must not keep the process alive.
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
