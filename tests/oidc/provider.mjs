// A real OpenID Connect provider for the tests and the demo: oidc-provider
// (OpenID Certified), configured from one JSON file:
//
//   { "port": 0, "issuer": "http://127.0.0.1:PORT", "audience": "urn:safeguard",
//     "key_file": "path of its private signing keys (made if missing)",
//     "clients": [{ "client_id", "client_secret", "redirect_uris"?,
//                   "post_logout_redirect_uris"?, "public"? }],
//     "users": [{ "id", "name", "email", "password", "groups": [] }] }
//
// A public client (the pages' own, as a Keycloak public client) has no
// secret and proves its code with PKCE; it is a native application, so its
// loopback redirect addresses match on any port (RFC 8252, 7.3) and a test
// need not know the query role's port before starting the provider.
//
// People sign in on the provider's own login page: a user id and the
// password of `users`, checked here (oidc-provider's development pages
// check no password, so they are not used). The pages are first-party, so
// consent is given at once.
//
// Access tokens for the audience are JWTs signed ES256 (RFC 9068), for a
// client's own credentials or a person's sign-in (authorization code with
// PKCE). The signing keys stay in key_file, so a test can sign tokens the
// provider would not (expired, for another audience) with the very key, and
// rotate them by starting the provider again without the file.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

if (!existsSync(config.key_file)) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const der = privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
  const kid = `key-${Date.now().toString(36)}`;
  writeFileSync(config.key_file, JSON.stringify({ keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }], pkcs8: der }));
}
const keys = JSON.parse(readFileSync(config.key_file, 'utf8'));
const users = new Map((config.users ?? []).map((u) => [u.id, u]));

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => (c.public
    ? {
      client_id: c.client_id,
      application_type: 'native',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: c.redirect_uris ?? [],
      post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: 'ES256',
    }
    : {
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: c.redirect_uris ? ['authorization_code', 'client_credentials'] : ['client_credentials'],
      response_types: c.redirect_uris ? ['code'] : [],
      redirect_uris: c.redirect_uris ?? [],
      post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    })),
  // The ID token names the person and their groups, as Entra ID and
  // Keycloak put them there, not only the userinfo endpoint.
  conformIdTokenClaims: false,
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  jwks: { keys: keys.keys },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['name'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'email', 'groups', 'safeguard'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'safeguard',
        audience: config.audience,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  // A person's access token names them and their groups, as Entra ID and
  // Keycloak can be set to do.
  extraTokenClaims: (_ctx, token) => {
    const user = token.accountId && users.get(token.accountId);
    return user ? { name: user.name, email: user.email, groups: user.groups } : undefined;
  },
  findAccount: (_ctx, id) => {
    const user = users.get(id);
    if (!user) return undefined;
    return {
      accountId: id,
      claims: () => ({ sub: id, name: user.name, email: user.email, groups: user.groups }),
    };
  },
});
provider.proxy = false;

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const loginPage = (uid, problem) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><main><h1>Sign in</h1>
${problem ? `<p role="alert" id="problem">${escape(problem)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label for="login">User</label> <input id="login" name="login" autocomplete="username" required>
<label for="password">Password</label> <input id="password" name="password" type="password" required>
<button type="submit" id="sign-in">Sign in</button>
</form></main></body></html>`;

async function formBody(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 4096) break;
  }
  return new URLSearchParams(text);
}

// The login page, and consent given at once for the first-party pages.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(ctx.path);
  if (!match) return next();
  const { prompt, params, session, grantId } = await provider.interactionDetails(ctx.req, ctx.res);
  if (prompt.name === 'login') {
    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage(match[1]);
      return undefined;
    }
    const form = await formBody(ctx.req);
    const user = users.get(form.get('login') ?? '');
    if (!user || user.password !== form.get('password')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(match[1], 'That user and password do not match.');
      return undefined;
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: user.id } }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return undefined;
  }
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  for (const [indicator, scope] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scope.join(' '));
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(to);
  return undefined;
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
