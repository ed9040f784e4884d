//! What the test binaries share: the API tests (`tests/api`), which run the service in this
//! process, and the tests of the compiled binary (`tests/cli.rs`, `tests/sandbox.rs`).
//!
//! [`output`] captures what a service writes, [`raw_http`] writes and reads HTTP/1.1 by hand,
//! [`process`] runs the binary as a child process, [`browser`] drives a headless Chromium.

// Each test binary uses its own part of this.
#![allow(dead_code)]

pub mod browser;
pub mod eventually;
pub mod output;
pub mod process;
pub mod raw_http;

use std::net::TcpListener;

/// A loopback port that was free a moment ago, left unbound: for a peer that refuses every
/// connection. A service the test starts binds port 0 and says which port it took.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
