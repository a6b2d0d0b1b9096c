//! Agency systems and people authenticated by their own identity
//! providers: real OpenID Connect providers (oidc-provider from npm, one a
//! council's, one a police force's) issue the access tokens; the gateway
//! and the query role verify them against the providers' published keys.
//! Every token that must fail is shown failing with 401 and nothing stored
//! or read, and a provider's new key is taken without a restart.

use serde_json::{Value, json};
use tests::gateway::{TestGateway, tokens};
use tests::oidc::{AUDIENCE, IdentityProvider};
use tests::{NatsServer, TestDatabase};

const HARINGEY: &str = "E09000014";

/// `principals.toml` entries naming `provider` as an issuer with these
/// client and group mappings.
fn issuer_toml(name: &str, provider: &IdentityProvider, clients: &[(&str, &str)], groups: &[(&str, &str)]) -> String {
    let mut text =
        format!("\n[[issuer]]\nname = \"{name}\"\nurl = \"{}\"\naudience = \"{AUDIENCE}\"\n", provider.issuer());
    for (client, principal) in clients {
        text.push_str(&format!("[[issuer.client]]\nclient_id = \"{client}\"\nprincipal = \"{principal}\"\n"));
    }
    for (group, principal) in groups {
        text.push_str(&format!("[[issuer.group]]\ngroup = \"{group}\"\nprincipal = \"{principal}\"\n"));
    }
    text
}

/// A council's provider and a police force's, each mapping its own clients
/// and groups; both name a group "safeguarding-leads".
struct Setup {
    nats: NatsServer,
    gateway: TestGateway,
    council: IdentityProvider,
    police: IdentityProvider,
}

async fn setup() -> Setup {
    let nats = NatsServer::start().await;
    let mut gateway = TestGateway::start(&nats.url()).await;
    let council = IdentityProvider::start(
        &["haringey-case-system"],
        vec![json!({"id": "u-ada", "name": "Ada Okafor", "email": "ada@haringey.example", "groups": ["safeguarding-leads"]})],
    )
    .await;
    let police = IdentityProvider::start(
        &["met-custody-system"],
        vec![
            json!({"id": "u-pc", "name": "PC Sam Reid", "email": "sam@met.example", "groups": ["safeguarding-leads"]}),
        ],
    )
    .await;
    // A principal people reach only through their council's provider: no token of its own.
    let mut principals = std::fs::read_to_string(gateway.path("principals.toml")).expect("principals");
    principals.push_str(&format!(
        "[[principal]]\nname = \"haringey-practitioners\"\ndisplay_name = \"Haringey social workers\"\n\
         agency = \"council_childrens_services\"\nroles = [\"practitioner\"]\ncouncils = [\"{HARINGEY}\"]\n"
    ));
    principals.push_str(&issuer_toml(
        "haringey-idp",
        &council,
        &[("haringey-case-system", "haringey-csc")],
        &[("safeguarding-leads", "haringey-practitioners")],
    ));
    principals.push_str(&issuer_toml("met-idp", &police, &[("met-custody-system", "met-police")], &[]));
    std::fs::write(gateway.path("principals.toml"), principals).expect("write principals");
    gateway.restart().await;
    Setup { nats, gateway, council, police }
}

fn event(t: events::EventType, id: &str, child: &str) -> Value {
    let mut e = events::examples::event(t, id, "2025-01-14T09:30:00Z");
    e["subject"] = json!(child);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_systems_client_credentials_token_publishes_within_its_scope_and_no_further() {
    let s = setup().await;
    let child = uuid::Uuid::new_v4().to_string();
    let council_token = s.council.client_token("haringey-case-system").await;
    let r = s.gateway.post(&council_token, &event(events::EventType::ChildRegistered, "reg-1", &child)).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let police_token = s.police.client_token("met-custody-system").await;
    let r = s.gateway.post(&police_token, &event(events::EventType::ConcernRaised, "concern-1", &child)).await;
    assert_eq!(r.status, 201, "the police may raise a concern: {}", r.text);
    let before = tests::gateway::stream_count(&s.nats.url()).await;
    let r = s.gateway.post(&police_token, &event(events::EventType::ReferralReceived, "referral-1", &child)).await;
    assert_eq!(r.status, 403, "the police may not record a referral: {}", r.text);
    assert_eq!(tests::gateway::stream_count(&s.nats.url()).await, before, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_must_fail_are_refused_with_401_and_nothing_is_stored() {
    let mut s = setup().await;
    let child = uuid::Uuid::new_v4().to_string();
    let body = event(events::EventType::ChildRegistered, "reg-x", &child);
    let key = s.council.key();
    let now = chrono::Utc::now().timestamp();
    let issuer = s.council.issuer();
    let claims = |changes: Value| {
        let mut c = json!({
            "iss": issuer, "aud": AUDIENCE, "sub": "haringey-case-system",
            "client_id": "haringey-case-system", "iat": now, "exp": now + 300,
        });
        for (k, v) in changes.as_object().expect("changes") {
            c[k] = v.clone();
        }
        c
    };
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let unsigned =
        format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims(json!({})).to_string().as_bytes()));
    // The classic confusion: an HMAC keyed with the provider's public key.
    let hmac_with_public_key = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(key.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(key.public.to_string().as_bytes()).expect("an HMAC key"),
    )
    .expect("sign");
    // Each with what the refusal must say.
    let wrong = [
        ("expired", key.sign(&claims(json!({"iat": now - 900, "exp": now - 600}))), "expired"),
        ("not valid yet", key.sign(&claims(json!({"nbf": now + 600}))), "not valid yet"),
        ("from an unknown issuer", key.sign(&claims(json!({"iss": "http://127.0.0.1:9/unknown"}))), "issuer"),
        ("for another audience", key.sign(&claims(json!({"aud": "urn:another-service"}))), "audience"),
        ("with alg none", unsigned, "not a signed JWT"),
        ("HS256 keyed with the public key", hmac_with_public_key, "algorithm"),
        (
            "of a client mapped to nothing",
            key.sign(&claims(json!({"sub": "stranger", "client_id": "stranger"}))),
            "map to no principal",
        ),
        ("signed by the police's key as the council", s.police.key().sign(&claims(json!({}))), "key"),
        ("not a JWT", "not.a-token".to_owned(), "principals.toml"),
    ];
    let before = tests::gateway::stream_count(&s.nats.url()).await;
    for (what, token, says) in &wrong {
        let r = s.gateway.post(token, &body).await;
        assert_eq!(r.status, 401, "a token {what} is refused: {}", r.text);
        let detail = r.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "a token {what} is refused saying so: {detail}");
    }
    assert_eq!(tests::gateway::stream_count(&s.nats.url()).await, before, "nothing was stored");

    // The provider rotates its key: the old key's tokens fail, the new key's
    // pass, with no restart of the gateway.
    let good = key.sign(&claims(json!({})));
    assert_eq!(s.gateway.post(&good, &body).await.status, 201, "the key in use works");
    let old = s.council.rotate().await;
    let fresh = s.council.client_token("haringey-case-system").await;
    let next = event(events::EventType::ContactRecorded, "contact-1", &child);
    // The keys are fetched again once REFRESH_AT_MOST_EVERY has passed since the last fetch.
    let deadline = std::time::Instant::now() + platform::oidc::REFRESH_AT_MOST_EVERY * 5;
    let r = loop {
        let r = s.gateway.post(&fresh, &next).await;
        if r.status != 401 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(r.status, 201, "the provider's new key is taken: {}", r.text);
    let stale = old.sign(&claims(json!({"jti": "after-rotation"})));
    let r = s.gateway.post(&stale, &event(events::EventType::ContactRecorded, "contact-2", &child)).await;
    assert_eq!(r.status, 401, "a key the provider removed is refused: {}", r.text);
}

/// A provider that cannot be reached says nothing against a token whose
/// key is not cached yet: the answer is 503 (try again), not 401, and
/// nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_provider_cannot_be_reached_is_answered_503_and_nothing_is_stored() {
    let s = setup().await;
    let token = s.council.key().sign(&s.council.person_claims("u-ada", "haringey-case-system"));
    let Setup { nats, gateway, council, police: _police } = s;
    drop(council);
    let child = uuid::Uuid::new_v4().to_string();
    let before = tests::gateway::stream_count(&nats.url()).await;
    let r = gateway.post(&token, &event(events::EventType::ChildRegistered, "reg-u", &child)).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.json["detail"].as_str().unwrap_or_default().contains("could not be reached"), "{}", r.text);
    assert_eq!(tests::gateway::stream_count(&nats.url()).await, before, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_token_reads_as_that_person_and_a_group_of_the_same_name_elsewhere_gives_nothing() {
    let s = setup().await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let child = uuid::Uuid::new_v4().to_string();
    let r = s.gateway.post(tokens::HARINGEY, &event(events::EventType::ChildRegistered, "reg-p", &child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.last_stream_sequence();
    let projector = tests::projector::LiveProjector::start(&s.gateway, &s.nats.url(), &pool).await;
    projector.wait_for(last).await;
    let query = tests::query::TestQuery::start(&s.nats.url(), db.url(), &s.gateway).await;

    // Ada signs in at Haringey's provider through the case system; her
    // access token carries her groups. The read is hers, by name and by
    // the provider's subject, whatever X-Acting-User claims.
    let ada = s.council.key().sign(&s.council.person_claims("u-ada", "haringey-case-system"));
    let chronology = format!("/v1/children/{child}/chronology");
    let r = query.get_with(Some(&ada), &chronology, &[("x-acting-user", "Somebody Else")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    projector.wait_for_audit().await;
    let log = query.get(tokens::AUDITOR, &format!("/v1/children/{child}/access-log")).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entries = log.json["entries"].as_array().expect("entries");
    let hers = entries.iter().find(|e| e["principal"] == "haringey-practitioners").expect("Ada's read is logged");
    assert_eq!(hers["acting_user"], "Ada Okafor (haringey-idp:u-ada)");

    // A police officer whose force also has a "safeguarding-leads" group
    // gets nothing of the council's: the police provider maps no group.
    let officer = s.police.key().sign(&s.police.person_claims("u-pc", "met-custody-system"));
    let r = query.get(&officer, &chronology).await;
    assert_eq!(r.status, 403, "the officer acts as the force's system, which may not read chronologies: {}", r.text);
    let unmapped = s.police.key().sign(&json!({
        "iss": s.police.issuer(), "aud": AUDIENCE, "sub": "u-pc", "client_id": "some-other-app",
        "exp": chrono::Utc::now().timestamp() + 300, "groups": ["safeguarding-leads"],
    }));
    let r = query.get(&unmapped, &chronology).await;
    assert_eq!(r.status, 401, "a group of the same name at the police maps to nothing: {}", r.text);
}

/// The pages' sign-in through a provider, from outside a browser: the
/// start sends the browser to the provider with a PKCE code request and
/// keeps the sign-in's secrets in its own cookie; an answer that is not
/// this browser's sign-in (no cookie, another state), a provider's refusal,
/// and a code the provider never issued all open nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_answer_that_is_not_this_browsers_opens_no_session() {
    let s = setup().await;
    let db = TestDatabase::create().await;
    // The police provider is one people sign in to the pages through (the last [[issuer]] of the file).
    let mut principals = std::fs::read_to_string(s.gateway.path("principals.toml")).expect("principals");
    principals.push_str(&format!("[issuer.sign_in]\nclient_id = \"{}\"\n", tests::oidc::PAGES_CLIENT));
    std::fs::write(s.gateway.path("principals.toml"), principals).expect("write principals");
    let query = tests::query::TestQuery::start(&s.nats.url(), db.url(), &s.gateway).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let unknown = http.get(query.url("/ui/sign-in/with/nobody")).send().await.expect("start");
    assert_eq!(unknown.status(), 404);
    let start = http.get(query.url("/ui/sign-in/with/met-idp")).send().await.expect("start");
    assert_eq!(start.status(), 303);
    let location = start.headers()["location"].to_str().expect("location").to_owned();
    let to = reqwest::Url::parse(&location).expect("an address");
    assert!(location.starts_with(&format!("{}/auth?", s.police.issuer())), "{location}");
    let param = |name: &str| to.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("client_id").as_deref(), Some(tests::oidc::PAGES_CLIENT));
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("redirect_uri"), Some(query.url("/ui/sign-in/callback")));
    assert!(param("nonce").is_some_and(|n| n.len() >= 32) && param("code_challenge").is_some());
    let state = param("state").expect("a state");
    let cookie = start.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(cookie.starts_with("__Host-sg_login=") && cookie.contains("SameSite=Lax") && cookie.contains("HttpOnly"));
    let login = cookie.split(';').next().expect("the cookie's value").to_owned();

    let callback = |query_string: String, with_cookie: bool| {
        let mut request = http.get(query.url(&format!("/ui/sign-in/callback?{query_string}")));
        if with_cookie {
            request = request.header("cookie", login.clone());
        }
        async move { request.send().await.expect("callback") }
    };
    let opened = |r: &reqwest::Response| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.starts_with("__Host-sg_session=v1")))
    };
    let no_cookie = callback(format!("code=made-up&state={state}"), false).await;
    assert_eq!(no_cookie.status(), 400);
    assert!(!opened(&no_cookie));
    let other_state = callback("code=made-up&state=another".into(), true).await;
    assert_eq!(other_state.status(), 400);
    assert!(!opened(&other_state));
    let denied = callback(format!("error=access_denied&state={state}"), true).await;
    assert_eq!(denied.status(), 401);
    assert!(!opened(&denied));
    assert!(denied.text().await.expect("page").contains("did not sign you in (access_denied)"));
    let made_up = callback(format!("code=made-up&state={state}"), true).await;
    assert_eq!(made_up.status(), 401);
    assert!(!opened(&made_up));
    assert!(made_up.text().await.expect("page").contains("invalid_grant"));
}
