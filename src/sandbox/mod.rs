//! `proof-bff --sandbox`: the real service in front of the embedded stand-in for Proof, with a dev
//! session key, a login route and a demo page, so a newcomer gets a working checkout without any
//! credentials.
//!
//! Only the upstream differs from production: the checkout goes through the same validation, rate
//! limits, upstream client, retries and error mapping.

mod routes;

use std::net::TcpListener;

use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};

pub use routes::{demo_client, demo_css, demo_js, demo_page, login};

use crate::config::{ConfigError, ListenAddress, PresetValue, SessionSourceName, Settings};
use crate::session::{DevSession, JwtAlgorithm};
use proof_stand_in::StandInConfig;

/// The Origin the sandbox's BFF presents to the stand-in, registered there.
pub const SANDBOX_PROOF_ORIGIN: &str = "https://sandbox.partner.example";
/// How long a sandbox login lasts.
pub const SESSION_TTL_S: u64 = 8 * 3600;

/// Sandbox defaults, applied under the config file and the environment. They are key names, like
/// the file's, because the preset is one more source of them beneath the file.
pub fn preset() -> Vec<(String, PresetValue)> {
    let s = |k: &str, v: &str| (k.to_owned(), PresetValue::Str(v.to_owned()));
    vec![
        s("log.format", "pretty"),
        s("proof.origin", SANDBOX_PROOF_ORIGIN),
        // Short enough that the slow test value shows the timeout within seconds.
        s("proof.request_timeout_ms", "5000"),
        s("proof.deadline_ms", "8000"),
        (
            "checkout.types".to_owned(),
            PresetValue::List(vec!["buy".into(), "sell".into()]),
        ),
    ]
}

/// What `--sandbox` needs to start the stand-in: its configuration and its bound (not yet
/// serving) socket, and the dev session signer; and the service's own bound socket, whose port the
/// demo page's origins name.
pub struct SandboxPlan {
    pub stand_in: StandInConfig,
    pub stand_in_listener: TcpListener,
    pub session: DevSession,
    pub listener: TcpListener,
}

/// Points the settings at a stand-in on a fresh loopback port, and fills in what a newcomer has
/// not set: a token, a dev session key, and browser origins covering the demo page.
pub fn plan(mut settings: Settings) -> Result<(Settings, SandboxPlan), ConfigError> {
    // Bound first, so the page's origins name the port it really has (`server.listen` may ask
    // for port 0).
    let listen = settings.server.listen_address()?;
    let listener = TcpListener::bind(listen.bind_target())
        .map_err(|e| ConfigError(format!("sandbox: cannot bind server.listen {listen}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| ConfigError(format!("sandbox: {e}")))?
        .port();
    let stand_in_listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ConfigError(format!("sandbox: cannot bind a loopback port: {e}")))?;
    let stand_in_port = stand_in_listener
        .local_addr()
        .map_err(|e| ConfigError(format!("sandbox: {e}")))?
        .port();

    let proof = &mut settings.proof;
    proof.base_url = format!("http://127.0.0.1:{stand_in_port}");
    if proof.client_token.expose_secret().is_empty() && proof.client_token_file.trim().is_empty() {
        proof.client_token = SecretString::from(format!("sandbox_{}", random_hex(16)));
    }
    // Read as the service reads it, so the stand-in is given what the service will send it.
    let client_token = proof
        .client_token()?
        .unwrap_or_else(|| SecretString::from(""));

    let page_origins = page_origins(port);
    if settings.browser.allowed_origins.is_empty() {
        settings.browser.allowed_origins = page_origins.clone();
    }
    if settings.checkout.redirect_url_origins.is_empty() {
        settings.checkout.redirect_url_origins = page_origins;
    }

    // The login route signs HS256 tokens with the standard claims, so the sandbox verifies those.
    let jwt = &mut settings.session.jwt;
    settings.session.source = SessionSourceName::Jwt;
    jwt.algorithm = JwtAlgorithm::HS256;
    jwt.user_id_claim = "sub".into();
    jwt.email_claim = "email".into();
    jwt.issuer.clear();
    jwt.audience.clear();
    if jwt.secret.expose_secret().is_empty() && jwt.secret_file.trim().is_empty() {
        jwt.secret = SecretString::from(random_hex(32));
    }
    let session_secret = jwt.secret()?.unwrap_or_else(|| SecretString::from(""));
    let session = DevSession::new(session_secret, jwt.cookie.clone(), SESSION_TTL_S);

    let registered_origin = settings.proof.origin.trim().to_owned();
    let mut stand_in = StandInConfig::sandbox(client_token, vec![registered_origin]);
    // With a webhook receiver configured, the stand-in calls it as Proof would.
    let webhook_path = settings.status.webhook_path.trim();
    if !webhook_path.is_empty() {
        stand_in.webhook_url = Some(format!("http://127.0.0.1:{port}{webhook_path}"));
    }
    Ok((
        settings,
        SandboxPlan {
            stand_in,
            stand_in_listener,
            session,
            listener,
        },
    ))
}

/// The origins the demo page is served from: the bound port on 127.0.0.1 and localhost.
fn page_origins(port: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ]
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// What `--sandbox` prints at start: where the page is and one curl line that works.
pub fn banner(page_origin: &str, stand_in_url: &str, session: &DevSession) -> String {
    let token = session
        .sign("sandbox-user", "sandbox-user@example.com")
        .unwrap_or_default();
    format!(
        "\nproof-bff sandbox: the upstream is an embedded stand-in for Proof at {stand_in_url}\n\
         \n  demo page:  {page_origin}/\n\
         \n  try:\n  curl -s {page_origin}/start-checkout -H 'Origin: {page_origin}' -H 'Content-Type: application/json' -H 'Cookie: {cookie}={token}' -d '{{\"network\":\"TRC20\",\"currency\":\"USDT\",\"amount\":\"100\"}}'\n\
         \n  test values (amount): 1.02 transient 502, 2.02 always 502, 1.05 transient 500, 5.04 slow (timeout), 4.01 token refused; currency BTC not allowed; USDC on TRC20 has no wallet\n",
        cookie = session.cookie,
    )
}

/// The demo page's origin for a listen address: 127.0.0.1 when bound to every interface.
pub fn page_origin(listen: &ListenAddress, port: u16) -> String {
    match listen.local_url_host().as_str() {
        "localhost" => format!("http://localhost:{port}"),
        _ => format!("http://127.0.0.1:{port}"),
    }
}
