//! `session.source = "jwks"` over HTTP: the real application in front of a wiremock identity
//! provider on loopback that serves its key set (and, for discovery, its OpenID configuration).
//!
//! Tokens are signed with fixed test keys, `tests/fixtures/jwks/*_private.pem` (PKCS#8, made
//! once with `openssl genpkey`); `*.jwk.json` are their public halves as the provider publishes
//! them (made with `python3 benches/jwks_token.py jwk KEY.pem KID`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proof_bff::config::{SessionSourceName, Settings};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::tls_front::{CA_FILE, TlsFront};

const ISSUER: &str = "https://idp.example/";
const AUDIENCE: &str = "proof-bff-tests";
const KEY_SET_PATH: &str = "/.well-known/jwks.json";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// A signing key of the test identity provider.
struct TestKey {
    kid: &'static str,
    algorithm: Algorithm,
    private_pem: &'static str,
    jwk: &'static str,
}

const RSA: TestKey = TestKey {
    kid: "rsa-2024",
    algorithm: Algorithm::RS256,
    private_pem: include_str!("../fixtures/jwks/rsa_private.pem"),
    jwk: include_str!("../fixtures/jwks/rsa.jwk.json"),
};
/// The key the provider rotates to.
const RSA_NEXT: TestKey = TestKey {
    kid: "rsa-2025",
    algorithm: Algorithm::RS256,
    private_pem: include_str!("../fixtures/jwks/rsa_next_private.pem"),
    jwk: include_str!("../fixtures/jwks/rsa_next.jwk.json"),
};
const EC: TestKey = TestKey {
    kid: "ec-1",
    algorithm: Algorithm::ES256,
    private_pem: include_str!("../fixtures/jwks/ec_private.pem"),
    jwk: include_str!("../fixtures/jwks/ec.jwk.json"),
};
const ED25519: TestKey = TestKey {
    kid: "ed-1",
    algorithm: Algorithm::EdDSA,
    private_pem: include_str!("../fixtures/jwks/ed25519_private.pem"),
    jwk: include_str!("../fixtures/jwks/ed25519.jwk.json"),
};
const RSA_PUBLIC_PEM: &str = include_str!("../fixtures/jwks/rsa_public.pem");

impl TestKey {
    fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pem.as_bytes();
        match self.algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .unwrap()
    }

    /// A token signed by this key, naming it.
    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.algorithm, Some(self.kid), claims)
    }

    fn sign_as(&self, algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }
}

/// The claims the provider issues for `user`.
fn claims_for(user: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user,
        "email": USER_EMAIL,
        "iat": unix_now(),
        "exp": unix_now() + 600,
    })
}

fn claims() -> Value {
    claims_for(USER_ID)
}

/// The base64url of `bytes`, for tokens made by hand.
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// The identity provider and the application in front of it
// ---------------------------------------------------------------------------------------------

struct Idp {
    server: MockServer,
}

fn key_set(keys: &[&TestKey]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|key| serde_json::from_str(key.jwk).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

fn key_set_answer(keys: &[&TestKey]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_raw(key_set(keys), "application/json")
        .insert_header("cache-control", "public, max-age=3600")
}

impl Idp {
    async fn start() -> Self {
        Self::serving(MockServer::start().await)
    }

    fn serving(server: MockServer) -> Self {
        Self { server }
    }

    fn key_set_url(&self) -> String {
        format!("{}{KEY_SET_PATH}", self.server.uri())
    }

    /// Publishes `keys`, for every fetch after those mounted with [`Self::publishes_first`].
    async fn publishes(&self, keys: &[&TestKey]) {
        Mock::given(method("GET"))
            .and(path(KEY_SET_PATH))
            .respond_with(key_set_answer(keys))
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    /// Publishes `keys` for the first `n` fetches.
    async fn publishes_first(&self, n: u64, keys: &[&TestKey]) {
        Mock::given(method("GET"))
            .and(path(KEY_SET_PATH))
            .respond_with(key_set_answer(keys))
            .up_to_n_times(n)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// How many times the key set was fetched.
    async fn key_set_fetches(&self) -> usize {
        self.fetches_of(KEY_SET_PATH).await
    }

    async fn fetches_of(&self, wanted: &str) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|request| request.url.path() == wanted)
            .count()
    }
}

/// `[session.jwks]` pointing at `key_set_url`, accepting the three test key types.
fn jwks_settings(settings: &mut Settings, key_set_url: &str) {
    settings.session.source = SessionSourceName::Jwks;
    let jwks = &mut settings.session.jwks;
    jwks.issuer = ISSUER.into();
    jwks.jwks_url = key_set_url.into();
    jwks.algorithms = vec!["RS256".into(), "ES256".into(), "EdDSA".into()];
    jwks.audience = AUDIENCE.into();
}

/// The application verifying sessions against `idp`, once it has the key set.
async fn app_for(idp: &Idp, customise: impl FnOnce(&mut Settings)) -> TestApp {
    let url = idp.key_set_url();
    let app = spawn_app_with(|s| {
        jwks_settings(s, &url);
        customise(s);
    })
    .await;
    app.wait_until_ready().await;
    app
}

async fn answer_to(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app.checkout_as(token).send_with_valid_body().await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sent_to_proof(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_from_the_provider_are_accepted() {
    let idp = Idp::start().await;
    idp.publishes(&[&RSA, &EC, &ED25519]).await;
    let app = app_for(&idp, |s| s.session.jwks.bearer = true).await;
    widget_session_ok().expect(4).mount(&app.proof).await;

    for (key, user) in [(&RSA, "rsa-user"), (&EC, "ec-user"), (&ED25519, "ed-user")] {
        let (status, body) = answer_to(&app, &key.sign(&claims_for(user))).await;
        assert_eq!(status, 200, "{}: {body}", key.kid);
    }
    // The same token in Authorization: Bearer, as [session.jwt] reads it.
    let response = app
        .checkout_request(Some(APP_ORIGIN), None)
        .bearer_auth(RSA.sign(&claims_for("bearer-user")))
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);

    let sent: Vec<Value> = app
        .proof_requests()
        .await
        .iter()
        .map(sent_to_proof)
        .collect();
    let users: Vec<&str> = sent
        .iter()
        .map(|body| body["partner_user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["rsa-user", "ec-user", "ed-user", "bearer-user"]);
    assert!(sent.iter().all(|body| body["user_email"] == USER_EMAIL));
    assert_eq!(
        idp.key_set_fetches().await,
        1,
        "the set is fetched once and kept"
    );
}

#[test]
fn the_benchmarks_helper_signs_tokens_that_verify() {
    // The benchmark signs its sessions with benches/jwks_token.py; these were made with it from
    // the fixture keys, so the two stay in agreement.
    const FROM_HELPER: [(&str, &str); 2] = [
        (
            "ES256",
            "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImVjLTEifQ.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.cVb_blWtbMNqNQyMpqadRHZGLqGpk9uc6YYlHOlBteb5_ponQiGfhtgbGXd9uSQ81EZLImCgYfAE6JV9ymU05A",
        ),
        (
            "EdDSA",
            "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImVkLTEifQ.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.nF4lAhCEG006KYItWixupnIIwjhhquH-zTK1AnT_JJVMAN92IfUyPO1O8yowNw3DwboysyirL7NxS72IxXkkCg",
        ),
    ];
    for (name, token) in FROM_HELPER {
        let (key, algorithm) = match name {
            "ES256" => (
                jsonwebtoken::DecodingKey::from_ec_pem(include_bytes!(
                    "../fixtures/jwks/ec_public.pem"
                )),
                Algorithm::ES256,
            ),
            _ => (
                jsonwebtoken::DecodingKey::from_ed_pem(include_bytes!(
                    "../fixtures/jwks/ed25519_public.pem"
                )),
                Algorithm::EdDSA,
            ),
        };
        let mut validation = jsonwebtoken::Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        let decoded = jsonwebtoken::decode::<Value>(token, &key.unwrap(), &validation);
        assert_eq!(decoded.unwrap().claims["sub"], "u", "{name}");
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_then_accepted() {
    let idp = Idp::start().await;
    // The provider starts signing with a new key and publishes it beside the old one.
    idp.publishes_first(1, &[&RSA]).await;
    idp.publishes(&[&RSA, &RSA_NEXT]).await;
    let app = app_for(&idp, |_| {}).await;
    widget_session_ok().expect(3).mount(&app.proof).await;
    assert_eq!(idp.key_set_fetches().await, 1);

    let (status, body) = answer_to(&app, &RSA_NEXT.sign(&claims())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        idp.key_set_fetches().await,
        2,
        "one refetch for the new kid"
    );

    for token in [RSA_NEXT.sign(&claims()), RSA.sign(&claims())] {
        let (status, body) = answer_to(&app, &token).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(idp.key_set_fetches().await, 2, "both keys are now known");
}

#[tokio::test]
async fn the_key_set_is_found_through_openid_connect_discovery() {
    let idp = Idp::start().await;
    let issuer = idp.server.uri();
    Mock::given(method("GET"))
        .and(path(DISCOVERY_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "jwks_uri": idp.key_set_url(),
        })))
        .mount(&idp.server)
        .await;
    idp.publishes(&[&EC]).await;
    let app = app_for(&idp, |s| {
        s.session.jwks.issuer = issuer.clone();
        s.session.jwks.jwks_url = String::new();
    })
    .await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let mut claims = claims();
    claims["iss"] = json!(issuer);
    let (status, body) = answer_to(&app, &EC.sign(&claims)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.fetches_of(DISCOVERY_PATH).await, 1);
    assert_eq!(idp.key_set_fetches().await, 1);
}

// ---------------------------------------------------------------------------------------------
// Refused
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_foreign_and_stale_tokens_are_401_and_proof_is_never_called() {
    let idp = Idp::start().await;
    idp.publishes(&[&RSA, &EC, &ED25519]).await;
    let app = app_for(&idp, |_| {}).await;
    app.proof_must_not_be_called().await;

    let header = |alg: &str| {
        b64url(
            json!({"alg": alg, "typ": "JWT", "kid": RSA.kid})
                .to_string()
                .as_bytes(),
        )
    };
    let payload = b64url(claims().to_string().as_bytes());
    // The classic confusion: HS256 "signed" with the provider's public RSA key as the secret.
    let confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(RSA.kid.into());
        let key = EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes());
        jsonwebtoken::encode(&header, &claims(), &key).unwrap()
    };
    let with = |field: &str, value: Value| {
        let mut claims = claims();
        claims[field] = value;
        claims
    };
    let cases = [
        (
            "HS256 keyed with the public key",
            confused,
            "invalid_session",
        ),
        (
            "alg none",
            format!("{}.{payload}.", header("none")),
            "invalid_session",
        ),
        (
            "alg none with a signature",
            format!("{}.{payload}.{}", header("none"), b64url(b"sig")),
            "invalid_session",
        ),
        (
            "RS384, not in the list",
            RSA.sign_as(Algorithm::RS384, Some(RSA.kid), &claims()),
            "invalid_session",
        ),
        (
            "PS256, not in the list",
            RSA.sign_as(Algorithm::PS256, Some(RSA.kid), &claims()),
            "invalid_session",
        ),
        (
            "another issuer",
            RSA.sign(&with("iss", json!("https://evil.example/"))),
            "invalid_session",
        ),
        (
            "no issuer",
            RSA.sign(&{
                let mut claims = claims();
                claims.as_object_mut().unwrap().remove("iss");
                claims
            }),
            "invalid_session",
        ),
        (
            "another audience",
            RSA.sign(&with("aud", json!("another-app"))),
            "invalid_session",
        ),
        (
            "expired",
            RSA.sign(&with("exp", json!(unix_now() - 3600))),
            "session_expired",
        ),
        (
            "a kid not in the set",
            RSA.sign_as(Algorithm::RS256, Some("rsa-unknown"), &claims()),
            "invalid_session",
        ),
        (
            "no kid",
            RSA.sign_as(Algorithm::RS256, None, &claims()),
            "invalid_session",
        ),
        (
            "an EC kid for an RSA signature",
            RSA.sign_as(Algorithm::RS256, Some(EC.kid), &claims()),
            "invalid_session",
        ),
        (
            "signed by a key that is not the kid's",
            RSA_NEXT.sign_as(Algorithm::RS256, Some(RSA.kid), &claims()),
            "invalid_session",
        ),
        (
            "a sub that hides characters",
            RSA.sign(&with("sub", json!("user\u{202e}24"))),
            "invalid_session",
        ),
        ("garbage", "not.a.token".to_owned(), "invalid_session"),
    ];
    for (case, token, code) in cases {
        let (status, body) = answer_to(&app, &token).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["error"], "unauthorised", "{case}: {body}");
        assert_eq!(body["code"], code, "{case}: {body}");
    }
    app.assert_proof_not_called().await;
    assert_eq!(
        idp.key_set_fetches().await,
        2,
        "the unknown kid asked for one refetch; nothing else did"
    );
}

#[tokio::test]
async fn a_burst_of_unknown_kids_costs_the_provider_one_fetch() {
    let idp = Idp::start().await;
    idp.publishes_first(1, &[&RSA]).await;
    // A slow refetch, so the burst overlaps it.
    Mock::given(method("GET"))
        .and(path(KEY_SET_PATH))
        .respond_with(key_set_answer(&[&RSA]).set_delay(Duration::from_millis(300)))
        .with_priority(10)
        .mount(&idp.server)
        .await;
    // However slowly the burst arrives, it stays within one refresh interval.
    let app = app_for(&idp, |s| s.session.jwks.min_refresh_interval_s = 3600).await;
    app.proof_must_not_be_called().await;
    assert_eq!(idp.key_set_fetches().await, 1);

    // A client of its own: every checkout on a connection of its own, none on the connection
    // the readiness polls left idle.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let checkouts: Vec<_> = (0..100)
        .map(|i| {
            let token = RSA.sign_as(Algorithm::RS256, Some(&format!("forged-{i}")), &claims());
            client
                .post(app.url("/start-checkout"))
                .header("Origin", APP_ORIGIN)
                .header("Cookie", format!("session={token}"))
                .json(&checkout_body())
                .send()
        })
        .collect();
    for response in futures_util::future::join_all(checkouts).await {
        let response = response.expect("the service answers");
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_session");
    }
    assert_eq!(
        idp.key_set_fetches().await,
        2,
        "100 unknown kids, one refetch"
    );
    app.assert_proof_not_called().await;
}

#[tokio::test]
async fn an_unknown_kid_while_the_provider_fails_is_503_and_known_keys_still_work() {
    let idp = Idp::start().await;
    idp.publishes_first(1, &[&RSA]).await;
    Mock::given(method("GET"))
        .and(path(KEY_SET_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("<html>oops</html>"))
        .with_priority(10)
        .mount(&idp.server)
        .await;
    let app = app_for(&idp, |_| {}).await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let (status, body) = answer_to(&app, &RSA_NEXT.sign(&claims())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable");
    assert_eq!(body["code"], "session_backend");

    // The last good set is kept: a token it can check is served, and the instance stays ready.
    let (status, body) = answer_to(&app, &RSA.sign(&claims())).await;
    assert_eq!(status, 200, "{body}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn until_the_key_set_is_in_the_instance_is_not_ready_and_checkouts_are_503() {
    // The provider is down: nothing listens on its port yet.
    let port = free_port();
    let key_set_url = format!("http://127.0.0.1:{port}{KEY_SET_PATH}");
    let app = spawn_app_with(|s| jwks_settings(s, &key_set_url)).await;
    app.proof_must_not_be_called().await;

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["code"], "session_backend", "{body}");
    let (status, body) = answer_to(&app, &RSA.sign(&claims())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert_eq!(body["code"], "session_backend", "{body}");
    app.assert_proof_not_called().await;

    // The provider comes up on that port: the instance recovers by itself.
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
    let idp = Idp::serving(MockServer::builder().listener(listener).start().await);
    idp.publishes(&[&RSA]).await;
    app.wait_until_ready().await;
    app.proof.reset().await;
    widget_session_ok().expect(1).mount(&app.proof).await;
    let (status, body) = answer_to(&app, &RSA.sign(&claims())).await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------------
// A provider whose certificate comes from the partner's own CA
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_provider_with_a_certificate_from_a_private_ca_is_trusted_through_ca_file() {
    let idp = Idp::start().await;
    idp.publishes(&[&RSA]).await;
    let front = TlsFront::start(*idp.server.address()).await;
    let key_set_url = front.url(KEY_SET_PATH);
    let app = spawn_app_with(|s| {
        jwks_settings(s, &key_set_url);
        s.session.jwks.ca_file = CA_FILE.into();
    })
    .await;
    app.wait_until_ready().await;
    widget_session_ok().expect(1).mount(&app.proof).await;

    let (status, body) = answer_to(&app, &RSA.sign(&claims())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.key_set_fetches().await, 1);
    assert!(front.handshakes_done() >= 1);
    assert_eq!(front.handshakes_failed(), 0);
}

#[tokio::test]
async fn without_ca_file_a_certificate_from_a_private_ca_is_refused_and_no_key_is_loaded() {
    let idp = Idp::start().await;
    idp.publishes(&[&RSA]).await;
    let front = TlsFront::start(*idp.server.address()).await;
    let key_set_url = front.url(KEY_SET_PATH);
    let app = spawn_app_with(|s| jwks_settings(s, &key_set_url)).await;
    app.proof_must_not_be_called().await;

    // The first fetch starts with the service.
    front.wait_until_only_refused().await;
    assert_eq!(idp.key_set_fetches().await, 0);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (status, body) = answer_to(&app, &RSA.sign(&claims())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "session_backend", "{body}");
    app.assert_proof_not_called().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_per_user_limit_keys_on_the_user_id_in_the_providers_token() {
    let idp = Idp::start().await;
    idp.publishes(&[&RSA, &EC]).await;
    let app = app_for(&idp, |s| {
        s.rate_limit.per_user_burst = 1;
        s.rate_limit.per_user_per_minute = 1;
    })
    .await;
    widget_session_ok().expect(2).mount(&app.proof).await;

    let (status, body) = answer_to(&app, &RSA.sign(&claims_for("alice"))).await;
    assert_eq!(status, 200, "{body}");
    // The same user, whichever key signed the token: refused.
    let (status, body) = answer_to(&app, &EC.sign(&claims_for("alice"))).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "per_user");
    // Another user from the same address: served.
    let (status, body) = answer_to(&app, &RSA.sign(&claims_for("bob"))).await;
    assert_eq!(status, 200, "{body}");
}

/// Where the limits live in [`over_its_address_limit_a_forged_token_is_cut_before_its_key_is_looked_for`].
#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

/// A forged token whose `kid` the provider never published makes the instance ask the provider
/// for its key set again (the first such token in a refresh interval does): so whether the
/// provider was asked shows whether the token's signature was looked at, without timing anything.
async fn forged_token_over_the_address_limit(backend: Backend) {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => match crate::redis_support::RedisServer::start() {
            Some(redis) => Some(redis),
            None => return,
        },
    };
    let idp = Idp::start().await;
    idp.publishes(&[&RSA, &EC]).await;
    let app = app_for(&idp, |s| {
        if let Some(redis) = &redis {
            crate::redis_backend::use_redis(s, redis, proof_bff::config::OnBackendError::Deny);
        }
        s.rate_limit.per_ip_burst = 2;
        s.rate_limit.per_ip_per_minute = 1;
        s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    widget_session_ok().expect(2).mount(&app.proof).await;
    let from = |address: &'static str, token: &str| {
        app.checkout_as(token)
            .header("X-Forwarded-For", address)
            .send_with_valid_body()
    };
    let code = |body: Value| body["code"].as_str().unwrap_or_default().to_owned();
    let fetches_at_start = idp.key_set_fetches().await;

    // The address's burst of two, spent by real checkouts.
    for user in ["alice", "bob"] {
        let response = from("203.0.113.30", &EC.sign(&claims_for(user))).await;
        assert_eq!(response.status(), 200, "{backend:?}: {user}");
    }
    // ES256, signed by the provider's curve but not its key, under a kid it never published.
    let forged = EC.sign_as(Algorithm::ES256, Some("forged-kid"), &claims_for("mallory"));
    for attempt in 0..3 {
        let response = from("203.0.113.30", &forged).await;
        assert_eq!(response.status(), 429, "{backend:?}: attempt {attempt}");
        assert_eq!(
            code(response.json().await.unwrap()),
            "per_ip",
            "{backend:?}"
        );
    }
    assert_eq!(
        idp.key_set_fetches().await,
        fetches_at_start,
        "{backend:?}: the forged tokens over the limit were cut before their key was looked for"
    );

    // The control: the same token from an address within its limit is looked at, which asks the
    // provider once, and is refused as the forgery it is.
    let response = from("203.0.113.31", &forged).await;
    assert_eq!(response.status(), 401, "{backend:?}");
    assert_eq!(code(response.json().await.unwrap()), "invalid_session");
    assert_eq!(
        idp.key_set_fetches().await,
        fetches_at_start + 1,
        "{backend:?}: a token within the limit is verified, and its unknown kid asks the provider"
    );
    app.proof.verify().await;
}

#[tokio::test]
async fn over_its_address_limit_a_forged_token_is_cut_before_its_key_is_looked_for() {
    forged_token_over_the_address_limit(Backend::Memory).await;
}

#[tokio::test]
async fn with_redis_over_its_address_limit_a_forged_token_is_cut_before_its_key_is_looked_for() {
    forged_token_over_the_address_limit(Backend::Redis).await;
}
