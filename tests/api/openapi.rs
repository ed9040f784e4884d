//! `openapi.yaml` and the service describe the same routes: every route the service registers
//! (the one list both its servers register from) is documented, with the same mode, and every
//! documented method and path is served, which a request to each shows, since none gets the
//! unknown-route 404 or the 405 of a method the path does not take.

use std::collections::BTreeSet;

use proof_bff::session::DevSession;
use proof_bff::startup::{ROUTES, Served, WEBHOOK_PATH};
use reqwest::Method;
use secrecy::SecretString;
use wiremock::MockServer;

use crate::helpers::*;

const WEBHOOK: &str = "/proof-webhook-0123456789abcdef0123456789abcdef";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml at the repository root");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML")
}

/// Every documented operation: its method (upper case), path and object.
fn operations(document: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let paths = document["paths"].as_object().expect("a paths object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                operations.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    operations
}

fn registered() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|route| (route.method.as_str().to_owned(), route.path.to_owned()))
        .collect()
}

#[test]
fn every_registered_route_is_documented_and_every_documented_one_registered() {
    let documented: BTreeSet<(String, String)> = operations(&document())
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let registered = registered();
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.yaml but not registered: {unserved:?}"
    );
}

#[test]
fn the_document_marks_the_routes_that_exist_only_in_some_modes_as_the_service_serves_them() {
    for (method, path, operation) in operations(&document()) {
        let route = ROUTES
            .iter()
            .find(|route| route.method.as_str() == method && route.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not registered"));
        let tags: Vec<&str> = operation["tags"]
            .as_array()
            .map(|tags| tags.iter().filter_map(|tag| tag.as_str()).collect())
            .unwrap_or_default();
        let sandbox_only = operation["x-sandbox-only"] == true;
        assert_eq!(
            sandbox_only,
            route.served == Served::Sandbox,
            "{method} {path}: x-sandbox-only"
        );
        assert_eq!(
            tags.contains(&"sandbox"),
            route.served == Served::Sandbox,
            "{method} {path}: the sandbox tag"
        );
        assert_eq!(
            operation["x-configured-path"] == "status.webhook_path",
            route.served == Served::Webhook,
            "{method} {path}: x-configured-path"
        );
        // Only the metrics port's route names a server of its own.
        assert_eq!(
            operation.get("servers").is_some(),
            route.served == Served::MetricsPort,
            "{method} {path}: servers"
        );
    }
}

/// Whether an answer is the fallback of a route that does not exist: the unknown-route 404, or
/// the 405 of a method the path does not take.
async fn is_fallback(response: reqwest::Response) -> (bool, u16) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let fallback = (status == 404 && body["message"] == "no such route")
        || (status == 405 && body["code"] == "method_not_allowed");
    (fallback, status)
}

/// The service as it runs with every route on: sandbox mode, a webhook path, the metrics port.
async fn app_with_every_route() -> TestApp {
    let proof = MockServer::start().await;
    let mut settings = base_settings(&proof);
    settings.status.webhook_path = WEBHOOK.into();
    settings.metrics.listen = "127.0.0.1:0".into();
    let mut config = settings.validate().expect("valid settings");
    config.sandbox = Some(DevSession::new(
        SecretString::from(JWT_SECRET),
        "session".into(),
        600,
    ));
    spawn_with_config(config, proof).await
}

/// Each documented path with its parameters filled in, on the port that serves it.
fn concrete_url(app: &TestApp, path: &str, served: Served) -> String {
    let path = if path == WEBHOOK_PATH {
        WEBHOOK.to_owned()
    } else {
        path.replace("{merchant_transaction_id}", "tx-1")
    };
    assert!(!path.contains('{'), "a parameter left in {path}");
    match served {
        Served::MetricsPort => format!(
            "http://127.0.0.1:{}{path}",
            app.metrics_port.expect("the metrics port")
        ),
        _ => app.url(&path),
    }
}

#[tokio::test]
async fn every_documented_method_and_path_is_served() {
    let app = app_with_every_route().await;
    let operations = operations(&document());
    assert!(operations.len() >= 10, "{} operations", operations.len());
    for (method, path, _) in operations {
        let route = ROUTES
            .iter()
            .find(|route| route.method.as_str() == method && route.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not registered"));
        let url = concrete_url(&app, &path, route.served);
        // No session and no Origin: each route answers for itself (a refusal, a probe, a page),
        // and nothing reaches Proof.
        let response = app
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
            .send()
            .await
            .unwrap();
        let (fallback, status) = is_fallback(response).await;
        assert!(
            !fallback,
            "{method} {path} ({url}) got the fallback {status}"
        );
    }
}

/// The check above can fail: an undocumented path, another method on a documented one, and the
/// sandbox's and the metrics port's routes where they are not served all get the fallback.
#[tokio::test]
async fn what_is_not_served_gets_the_fallback() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/no-such-route"),
        (Method::PUT, "/start-checkout"),
        (Method::POST, "/kyc-status"),
        (Method::GET, "/"),
        (Method::POST, "/sandbox/login"),
        (Method::GET, "/metrics"),
        (Method::POST, WEBHOOK),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let (fallback, status) = is_fallback(response).await;
        assert!(fallback, "{method} {path} got {status}, not the fallback");
    }
}
