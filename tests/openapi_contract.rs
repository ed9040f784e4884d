//! `openapi.yaml` checked by tools a partner would use: it is valid OpenAPI 3.1
//! (`openapi-spec-validator`), and Schemathesis, run against the compiled binary in sandbox mode
//! with a valid session and the allowed `Origin`, finds nothing the service answers that the
//! document does not say: every operation, every default check (no server errors; statuses,
//! content types, headers and bodies as documented; schema-valid data accepted and invalid data
//! refused; undocumented methods refused with the right `Allow`; no auth, no access).
//!
//! The tools come from PyPI (`.ci/run` installs the pinned versions). Where they are missing the
//! tests say so and pass, unless `CI` or `PROOF_BFF_REQUIRE_OPENAPI_TOOLS` is set, as in CI.

mod support;

use std::path::Path;
use std::process::Command;

use support::eventually::EVENTUALLY;
use support::output::BoundAddresses;
use support::process::{Process, bff};

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const SCHEMATHESIS_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/openapi/schemathesis.toml"
);
/// One path segment, so that the document's `/{webhook_path}` names it; long enough for the
/// service's rule on webhook paths.
const WEBHOOK_SEGMENT: &str = "proof-webhook-5f0c1e2d3a4b59687a8b9c0d1e2f3a4b";

/// Whether a missing tool fails the test rather than skipping it.
fn tools_required() -> bool {
    std::env::var_os("CI").is_some()
        || std::env::var_os("PROOF_BFF_REQUIRE_OPENAPI_TOOLS").is_some()
}

/// The tool, when it can be run; otherwise says why the test does nothing (or fails, in CI).
fn tool(name: &str) -> Option<Command> {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if found {
        return Some(Command::new(name));
    }
    assert!(
        !tools_required(),
        "{name} is not installed: `python3 -m pip install` the version pinned in .ci/run"
    );
    eprintln!("{name} is not installed: skipped (.ci/run installs it)");
    None
}

/// Runs a tool to its end, printing what it wrote; its exit status must be success.
fn run_to_success(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{what}:\n{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let Some(mut validator) = tool("openapi-spec-validator") else {
        return;
    };
    validator.arg(DOCUMENT);
    run_to_success(validator, "openapi-spec-validator openapi.yaml");
}

/// `proof-bff --sandbox` with every route on: the webhook at its path, the metrics port.
struct Sandbox {
    _process: Process,
    bound: BoundAddresses,
    session_cookie: String,
}

impl Sandbox {
    /// Started on port 0: the demo page's origin (the one allowed `Origin`) names the port it
    /// bound, read from its `sockets bound` line.
    fn start() -> Self {
        let mut command = bff();
        command
            .arg("--sandbox")
            .env("PROOF_BFF__SERVER__LISTEN", "127.0.0.1:0")
            .env("PROOF_BFF__METRICS__LISTEN", "127.0.0.1:0")
            .env(
                "PROOF_BFF__STATUS__WEBHOOK_PATH",
                format!("/{WEBHOOK_SEGMENT}"),
            )
            .env("PROOF_BFF__LOG__FORMAT", "json");
        // The sandbox's limits (a burst of 5 checkouts) would answer nearly every generated
        // checkout with 429 after the first few, and the body's rules, the idempotency key
        // and Proof's answers would go untested. 429 stays documented: it is a real answer,
        // and the rate limit tests hold it.
        for key in [
            "PER_USER_BURST",
            "PER_USER_PER_MINUTE",
            "PER_IP_BURST",
            "PER_IP_PER_MINUTE",
            "STATUS_PER_USER_PER_MINUTE",
        ] {
            command.env(format!("PROOF_BFF__RATE_LIMIT__{key}"), "1000000");
        }
        let mut process = Process::spawn(command);
        let bound = process.bound_addresses();
        assert_ne!(
            bound.listen.port(),
            0,
            "the port bound, not the one asked for"
        );
        let curl = process
            .stdout
            .wait_for_line(|line| line.trim_start().starts_with("curl -s"), EVENTUALLY);
        let session_cookie = curl
            .split('\'')
            .find_map(|part| part.strip_prefix("Cookie: "))
            .unwrap_or_else(|| panic!("no Cookie header in {curl}"))
            .to_owned();
        Self {
            _process: process,
            bound,
            session_cookie,
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.bound.listen.port())
    }
}

/// `schemathesis run` with the settings every run shares; its exit status is 0 only when it
/// found nothing.
fn schemathesis(mut command: Command, base_url: &str) -> Command {
    command
        .arg("--config-file")
        .arg(SCHEMATHESIS_CONFIG)
        .arg("run")
        .arg(DOCUMENT)
        .arg("--url")
        .arg(base_url)
        .arg("--no-color")
        .env("PROOF_BFF_WEBHOOK_SEGMENT", WEBHOOK_SEGMENT)
        .current_dir(std::env::temp_dir());
    command
}

#[test]
fn schemathesis_finds_nothing_the_document_does_not_say() {
    let Some(command) = tool("schemathesis") else {
        return;
    };
    assert!(Path::new(SCHEMATHESIS_CONFIG).exists());
    let sandbox = Sandbox::start();
    let origin = sandbox.origin();
    let mut browser_port = schemathesis(command, &origin);
    browser_port
        .arg("--header")
        .arg(format!("Cookie: {}", sandbox.session_cookie))
        .arg("--header")
        .arg(format!("Origin: {origin}"))
        // Served on the metrics port only: checked by the run below.
        .arg("--exclude-operation-id")
        .arg("metrics");
    run_to_success(browser_port, "schemathesis on the browser-facing port");

    let metrics = sandbox.bound.metrics.expect("the metrics port");
    let Some(command) = tool("schemathesis") else {
        return;
    };
    let mut metrics_port = schemathesis(command, &format!("http://{metrics}"));
    metrics_port
        .arg("--include-operation-id")
        .arg("metrics")
        // The stateful phase follows links between operations, and this one has none.
        .arg("--phases")
        .arg("examples,coverage,fuzzing");
    run_to_success(metrics_port, "schemathesis on the metrics port");
}
