//! The browser client's own tests (`clients/js/test`, node's built-in test runner against recorded
//! fakes of `fetch` and `EventSource`), run by `cargo test` so a change to the client cannot pass
//! unnoticed. They import the committed `clients/js/dist`, which is what the sandbox serves, so
//! they need `node` and nothing installed with npm.
//!
//! Without `node` the test says so and passes, unless `CI` or `PROOF_BFF_REQUIRE_NODE` is set, as
//! in CI, where a missing `node` is a failure.

use std::path::Path;
use std::process::Command;

const CLIENT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js");

fn node_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("PROOF_BFF_REQUIRE_NODE").is_some()
}

#[test]
fn the_browser_clients_tests_pass() {
    let found = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            !node_required(),
            "node is not installed: the browser client's tests need Node.js 20 or later"
        );
        eprintln!(
            "SKIPPED: node is not installed (the browser client's tests need Node.js 20 or later)"
        );
        return;
    }
    let tests = Path::new(CLIENT_DIR).join("test");
    let mut files: Vec<String> = std::fs::read_dir(&tests)
        .expect("clients/js/test")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".test.mjs")
                .then_some(format!("test/{name}"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no tests in {}", tests.display());
    let output = Command::new("node")
        .arg("--test")
        .arg("--test-timeout=60000")
        .args(&files)
        .current_dir(CLIENT_DIR)
        .output()
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("node --test {}:\n{stdout}\n{stderr}", files.join(" "));
    assert!(
        output.status.success(),
        "the browser client's tests failed ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    // Every file ran: node counts the tests it found.
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{stdout}"
    );
}
