//! Each route spends its own budget: checkouts spend `per_user` and `per_ip`, status reads
//! (`GET /checkout/{id}`, `/events`, `/kyc-status`) spend `per_user_status` and a per-address
//! budget of their own, and a request that carries no session at all spends nothing. Over real
//! HTTP, with the limits in memory and in a real `redis-server`.

use proof_bff::config::{OnBackendError, Settings};
use reqwest::RequestBuilder;
use serde_json::Value;
use wiremock::Mock;
use wiremock::matchers::{method, path, path_regex};

use crate::helpers::*;
use crate::redis_support::RedisServer;

/// The client address every request of a test comes from, as the trusted proxy in front names it.
const OFFICE: &str = "203.0.113.20";

/// Where the limits live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Redis,
}

/// The app with the limits in `backend` (None: the Redis tests are skipped on this machine), ready,
/// behind a trusted proxy on loopback, with Proof answering checkouts, transactions (owned by the
/// user the id names: `tx-<user>`) and KYC status.
async fn app_on(
    backend: Backend,
    customise: impl FnOnce(&mut Settings),
) -> Option<(TestApp, Option<RedisServer>)> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisServer::start()?),
    };
    let app = spawn_app_with(|s| {
        if let Some(redis) = &redis {
            crate::redis_backend::use_redis(s, redis, OnBackendError::Deny);
        }
        s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
        customise(s);
    })
    .await;
    app.wait_until_ready().await;
    widget_session_ok().mount(&app.proof).await;
    for user in ["alice", "bob"] {
        Mock::given(method("GET"))
            .and(path(format!("/widget/transactions/tx-{user}")))
            .respond_with(proof_json(
                200,
                &format!(
                    r#"{{"merchant_transaction_id":"tx-{user}","partner_user_id":"{user}","status":"completed"}}"#
                ),
            ))
            .mount(&app.proof)
            .await;
    }
    Mock::given(method("GET"))
        .and(path_regex("^/widget/users/[^/]+/kyc-status$"))
        .respond_with(proof_json(200, r#"{"status":"pending"}"#))
        .mount(&app.proof)
        .await;
    Some((app, redis))
}

fn token_of(user: &str) -> String {
    session_token_for(user, &format!("{user}@example.org"))
}

impl TestApp {
    /// A status read from [`OFFICE`] as a same-origin page's `fetch` sends it (no `Origin`), with
    /// `token` as the session cookie (none: no cookie at all, as an `<img>` on another site sends).
    fn status_read(&self, route: &str, token: Option<&str>) -> RequestBuilder {
        let request = self
            .client
            .get(self.url(route))
            .header("X-Forwarded-For", OFFICE);
        match token {
            Some(token) => request.header("Cookie", format!("session={token}")),
            None => request,
        }
    }

    /// Checkouts of distinct users from [`OFFICE`] until one is refused (at most `most`): how many
    /// were served, and the refusal. More than the burst may be served on a machine so slow that
    /// the address earns a request back meanwhile; never fewer.
    async fn office_checkouts_until_refused(&self, most: usize) -> (usize, (u16, String)) {
        for served in 0..most {
            let answer = self.office_checkout(&format!("user-{served}")).await;
            if answer != served_answer() {
                return (served, answer);
            }
        }
        panic!("{most} checkouts from one address, none refused");
    }

    /// A checkout by `user` from [`OFFICE`].
    async fn office_checkout(&self, user: &str) -> (u16, String) {
        let response = self
            .checkout_as(&token_of(user))
            .header("X-Forwarded-For", OFFICE)
            .send_with_valid_body()
            .await;
        status_and_code(response).await
    }
}

/// The status and, for an error, our envelope's code.
async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn refused_by(code: &str) -> (u16, String) {
    (429, code.to_owned())
}

fn served_answer() -> (u16, String) {
    (200, String::new())
}

async fn cookieless_status_reads_then_a_checkout(backend: Backend) {
    let Some((app, _redis)) = app_on(backend, |s| {
        s.rate_limit.per_ip_burst = 20;
        s.rate_limit.per_ip_per_minute = 1;
    })
    .await
    else {
        return;
    };

    let mut reads = Vec::new();
    for _ in 0..30 {
        let response = app.status_read("/kyc-status", None).send().await.unwrap();
        reads.push(status_and_code(response).await);
    }
    assert_eq!(
        app.office_checkout("alice").await,
        served_answer(),
        "{backend:?}"
    );
    let signed_out = (401, "no_session".to_owned());
    assert!(
        reads.iter().all(|read| *read == signed_out),
        "{backend:?}: {reads:?}"
    );
    // The address's whole checkout budget was left: its burst of 20, then its limit.
    let (served, refusal) = app.office_checkouts_until_refused(40).await;
    assert!(
        served >= 19,
        "{backend:?}: {served} checkouts served, then {refusal:?}"
    );
    assert_eq!(refusal, refused_by("per_ip"), "{backend:?}");
}

#[tokio::test]
async fn thirty_cookieless_status_reads_leave_the_addresss_checkouts_alone() {
    cookieless_status_reads_then_a_checkout(Backend::Memory).await;
}

#[tokio::test]
async fn with_redis_thirty_cookieless_status_reads_leave_the_addresss_checkouts_alone() {
    cookieless_status_reads_then_a_checkout(Backend::Redis).await;
}

async fn two_users_polling_behind_one_address(backend: Backend) {
    let Some((app, _redis)) = app_on(backend, |s| {
        s.rate_limit.per_ip_burst = 3;
        s.rate_limit.per_ip_per_minute = 1;
    })
    .await
    else {
        return;
    };

    let mut reads = Vec::new();
    for user in ["alice", "bob"] {
        let token = token_of(user);
        for _ in 0..10 {
            for route in [format!("/checkout/tx-{user}"), "/kyc-status".to_owned()] {
                let response = app.status_read(&route, Some(&token)).send().await.unwrap();
                reads.push((user, route, response.status().as_u16()));
            }
        }
        let stream = app
            .status_read(&format!("/checkout/tx-{user}/events"), Some(&token))
            .send()
            .await
            .unwrap();
        let status = stream.status().as_u16();
        let events = stream.text().await.unwrap();
        assert!(
            status != 200 || events.contains("id: completed"),
            "{backend:?}: {events}"
        );
        reads.push((user, "events".to_owned(), status));
    }
    // A third user behind the same address is served, and so are others after them, to the
    // address's whole checkout budget: a burst of three, then its limit.
    assert_eq!(
        app.office_checkout("carol").await,
        served_answer(),
        "{backend:?}"
    );
    let (served, refusal) = app.office_checkouts_until_refused(10).await;
    assert!(
        served >= 2,
        "{backend:?}: {served} more checkouts served, then {refusal:?}"
    );
    assert_eq!(refusal, refused_by("per_ip"), "{backend:?}");
    // And every status read was served.
    let refused: Vec<_> = reads.iter().filter(|(.., status)| *status != 200).collect();
    assert!(refused.is_empty(), "{backend:?}: {refused:?}");
}

#[tokio::test]
async fn status_reads_of_two_users_behind_one_address_never_refuse_a_third_users_checkout() {
    two_users_polling_behind_one_address(Backend::Memory).await;
}

#[tokio::test]
async fn with_redis_two_users_status_reads_never_refuse_a_third_users_checkout() {
    two_users_polling_behind_one_address(Backend::Redis).await;
}

async fn each_budget_is_cut_on_its_own(backend: Backend) {
    // Two users' worth of checkouts per address (a minute's quota each), so the status reads'
    // per-address budget is two users' status budgets: 2 a minute, a burst of 2.
    let Some((app, _redis)) = app_on(backend, |s| {
        s.rate_limit.per_user_per_minute = 1;
        s.rate_limit.per_ip_burst = 2;
        s.rate_limit.per_ip_per_minute = 2;
        s.rate_limit.status_per_user_per_minute = 1;
    })
    .await
    else {
        return;
    };
    let read = |token: &str| {
        let request = app.status_read("/kyc-status", Some(token));
        async move { status_and_code(request.send().await.unwrap()).await }
    };

    // The address's checkouts, to their limit.
    let (served, refusal) = app.office_checkouts_until_refused(10).await;
    assert!(
        served >= 2,
        "{backend:?}: {served} checkouts served, then {refusal:?}"
    );
    assert_eq!(refusal, refused_by("per_ip"), "{backend:?}");
    // Status reads from that address are still served: a budget of their own.
    assert_eq!(
        read(&token_of("alice")).await,
        served_answer(),
        "{backend:?}"
    );
    // A flood of forged tokens spends the status reads' address budget, then is cut, with the
    // checkout's code.
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl";
    assert_eq!(
        read(forged).await,
        (401, "invalid_session".to_owned()),
        "{backend:?}"
    );
    let mut answers = Vec::new();
    while answers.len() < 10 && answers.last() != Some(&refused_by("per_ip")) {
        answers.push(read(forged).await);
    }
    assert_eq!(
        answers.last(),
        Some(&refused_by("per_ip")),
        "{backend:?}: {answers:?}"
    );
    // Which leaves the address's other users' status reads refused too: nothing tells them apart
    // from the forger before the signature is checked.
    assert_eq!(
        read(&token_of("bob")).await,
        refused_by("per_ip"),
        "{backend:?}"
    );
}

#[tokio::test]
async fn checkouts_and_status_reads_are_cut_by_separate_address_budgets() {
    each_budget_is_cut_on_its_own(Backend::Memory).await;
}

#[tokio::test]
async fn with_redis_checkouts_and_status_reads_are_cut_by_separate_address_budgets() {
    each_budget_is_cut_on_its_own(Backend::Redis).await;
}

#[tokio::test]
async fn requests_without_any_session_spend_no_budget() {
    let Some((app, _redis)) = app_on(Backend::Memory, |s| {
        s.rate_limit.per_ip_burst = 2;
        s.rate_limit.per_ip_per_minute = 1;
        s.rate_limit.per_user_per_minute = 1;
        s.rate_limit.status_per_user_per_minute = 6;
    })
    .await
    else {
        return;
    };

    for _ in 0..5 {
        let signed_out = app
            .anonymous_checkout()
            .header("X-Forwarded-For", OFFICE)
            .send_with_valid_body()
            .await;
        assert_eq!(
            status_and_code(signed_out).await,
            (401, "no_session".to_owned())
        );
        for route in [
            "/kyc-status",
            "/checkout/tx-alice",
            "/checkout/tx-alice/events",
        ] {
            let signed_out = app.status_read(route, None).send().await.unwrap();
            assert_eq!(
                status_and_code(signed_out).await,
                (401, "no_session".to_owned()),
                "{route}"
            );
        }
    }
    // Both of the address's budgets are whole: its checkouts' burst of two, and a status read.
    let (served, refusal) = app.office_checkouts_until_refused(10).await;
    assert!(served >= 2, "{served} checkouts served, then {refusal:?}");
    assert_eq!(refusal, refused_by("per_ip"));
    let read = app
        .status_read("/kyc-status", Some(&token_of("alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_code(read).await, served_answer());
}
