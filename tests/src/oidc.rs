//! A real OpenID Connect provider for a test: `tests/oidc/provider.mjs`
//! (the npm package oidc-provider, OpenID Certified, pinned by its lock
//! file) on a free port of this machine, with the clients and people a
//! test names. Its signing key is kept in the test's directory, so a test
//! can also sign what the provider never would (an expired token, one for
//! another audience) with the very key the provider publishes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use base64::Engine;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `aud` of the provider's access tokens for Safeguard.
pub const AUDIENCE: &str = "urn:safeguard";

/// The pages' own client at every provider: public (PKCE, no secret), and
/// a native application, so its loopback addresses match on any port.
pub const PAGES_CLIENT: &str = "safeguard-pages";

/// A client of the provider: id and secret.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

/// One of the provider's signing keys.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: String,
    /// PKCS#8 DER of the private key.
    pub pkcs8: Vec<u8>,
    /// The public key as the provider publishes it.
    pub public: Value,
}

impl Key {
    /// A JWT of `claims` signed with this key (ES256), as the provider signs.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8)).expect("sign")
    }
}

/// A running provider, stopped when dropped.
#[derive(Debug)]
pub struct IdentityProvider {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    clients: Vec<Client>,
    people: Vec<Value>,
}

impl IdentityProvider {
    /// A provider with these clients (client credentials), the pages'
    /// client ([`PAGES_CLIENT`]), and people (`{"id", "name", "email",
    /// "password", "groups"}`).
    pub async fn start(clients: &[&str], people: Vec<Value>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let clients = clients
            .iter()
            .map(|id| Client {
                id: (*id).to_owned(),
                secret: format!("secret-of-{id}-{}", uuid::Uuid::new_v4().simple()),
            })
            .collect();
        let mut provider = Self { dir: tempfile::tempdir().expect("a directory"), port, child: None, clients, people };
        provider.launch().await;
        provider
    }

    /// Its issuer identifier (the `iss` of its tokens).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self, id: &str) -> &Client {
        self.clients.iter().find(|c| c.id == id).expect("a client of the provider")
    }

    /// The key it signs with now.
    pub fn key(&self) -> Key {
        let file: Value = serde_json::from_slice(&std::fs::read(self.key_file()).expect("the key file")).expect("JSON");
        let private = &file["keys"][0];
        let mut public = private.clone();
        public.as_object_mut().expect("a JWK").remove("d");
        Key {
            kid: private["kid"].as_str().expect("kid").to_owned(),
            pkcs8: base64::engine::general_purpose::STANDARD
                .decode(file["pkcs8"].as_str().expect("pkcs8"))
                .expect("DER"),
            public,
        }
    }

    /// An access token for `client`'s own credentials, from the provider's token endpoint.
    pub async fn client_token(&self, client: &str) -> String {
        let client = self.client(client);
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer()))
            .basic_auth(&client.id, Some(&client.secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "safeguard")])
            .send()
            .await
            .expect("the token endpoint");
        assert!(response.status().is_success(), "the provider gave no token: {}", response.status());
        let body: Value = response.json().await.expect("a token response");
        body["access_token"].as_str().expect("an access token").to_owned()
    }

    /// Claims as the provider would put in a person's access token now.
    pub fn person_claims(&self, person: &str, client: &str) -> Value {
        let p = self.people.iter().find(|p| p["id"] == person).expect("a person of the provider");
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer(), "aud": AUDIENCE, "sub": person, "client_id": client,
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
            "name": p["name"], "email": p["email"], "groups": p["groups"], "scope": "openid safeguard",
        })
    }

    /// Starts the provider again on the same port with a new signing key,
    /// as an operator rotating keys would; returns the key it had.
    pub async fn rotate(&mut self) -> Key {
        let old = self.key();
        self.stop();
        std::fs::remove_file(self.key_file()).expect("remove the key file");
        self.launch().await;
        old
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    async fn launch(&mut self) {
        let config = json!({
            "port": self.port,
            "issuer": self.issuer(),
            "audience": AUDIENCE,
            "key_file": self.key_file(),
            "clients": self
                .clients
                .iter()
                .map(|c| json!({"client_id": c.id, "client_secret": c.secret}))
                .chain([json!({
                    "client_id": PAGES_CLIENT, "public": true,
                    "redirect_uris": ["http://127.0.0.1/ui/sign-in/callback"],
                    "post_logout_redirect_uris": ["http://127.0.0.1/ui/sign-in"],
                })])
                .collect::<Vec<_>>(),
            "users": self.people,
        });
        let config_path = self.dir.path().join("provider.json");
        std::fs::write(&config_path, config.to_string()).expect("write the provider's configuration");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc/provider.mjs");
        let child = Command::new("node")
            .arg(script)
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (ops/test installs oidc-provider in tests/oidc)");
        self.child = Some(child);
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&discovery).await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the identity provider did not start");
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the identity provider exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        self.stop();
    }
}
