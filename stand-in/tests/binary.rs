//! The `proof-stand-in` binary as compose and the soak run start it: it listens where it is told,
//! accepts the token from its file and the registered origin only, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

struct Running {
    child: Child,
    base_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(token_file: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proof-stand-in"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--origin",
            "https://partner.example",
        ])
        .arg("--client-token-file")
        .arg(token_file)
        .env_remove("PROOF_STAND_IN_CLIENT_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("proof-stand-in starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let base_url = line
        .trim()
        .strip_prefix("proof-stand-in listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Running { child, base_url }
}

fn session_body() -> serde_json::Value {
    json!({
        "partner_user_id": "user-123",
        "user_email": "user@example.com",
        "network": "TRC20",
        "currency": "USDT",
        "amount": "100",
        "type": "buy",
        "client_ip": "203.0.113.42"
    })
}

#[tokio::test]
async fn the_binary_serves_sessions_for_its_token_and_origin_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("proof-stand-in-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("client_token");
    std::fs::write(&token_file, "stand-in-test-token\n").unwrap();
    let mut running = start(&token_file);
    let client = reqwest::Client::new();
    let post = |token: &str, origin: &str| {
        client
            .post(format!("{}/widget/session", running.base_url))
            .bearer_auth(token)
            .header("Origin", origin)
            .json(&session_body())
            .send()
    };

    let answer = post("stand-in-test-token", "https://partner.example")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let session: serde_json::Value = answer.json().await.unwrap();
    assert!(session["signature"].is_string(), "{session}");

    let wrong_token = post("another-token", "https://partner.example")
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    let wrong_origin = post("stand-in-test-token", "https://elsewhere.example")
        .await
        .unwrap();
    assert_eq!(wrong_origin.status(), 403);

    let pid = running.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut exited = None;
    for _ in 0..600 {
        if let Some(status) = running.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.expect("the stand-in exits within a minute of SIGTERM");
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_token_it_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_proof-stand-in"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--origin",
            "https://partner.example",
        ])
        .env_remove("PROOF_STAND_IN_CLIENT_TOKEN")
        .env_remove("PROOF_STAND_IN_CLIENT_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no client token"), "{stderr}");
}
