// A real OpenID Connect provider for the tests and the demo: oidc-provider
// (OpenID Certified), configured from one JSON file:
//
//   { "port": 0, "issuer": "http://127.0.0.1:PORT", "audience": "urn:safeguard",
//     "key_file": "path of its private signing keys (made if missing)",
//     "clients": [{ "client_id", "client_secret", "redirect_uris"? }],
//     "users": [{ "id", "name", "email", "password", "groups": [] }] }
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
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: c.redirect_uris ? ['authorization_code', 'client_credentials'] : ['client_credentials'],
    response_types: c.redirect_uris ? ['code'] : [],
    redirect_uris: c.redirect_uris ?? [],
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })),
  jwks: { keys: keys.keys },
  enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['name'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'email', 'groups', 'safeguard'],
  features: {
    devInteractions: { enabled: true },
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

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
