//! What a service writes, captured in memory: the in-process service's log subscriber writes into
//! a [`CapturedOutput`], and a child process's pipes are read into one by a thread.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The message of the line a service writes once its sockets are bound.
pub const SOCKETS_BOUND: &str = "sockets bound";

/// Where a service listens, as it logged at start.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddresses {
    pub listen: SocketAddr,
    /// The metrics port, when it has one.
    pub metrics: Option<SocketAddr>,
}

/// Bytes written so far, shared by the writer and the test that reads them.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// Everything `pipe` yields until its end, read into memory by a thread.
    pub fn read_from(pipe: impl Read + Send + 'static) -> (Self, JoinHandle<()>) {
        Self::read_once(pipe, None, None)
    }

    /// As [`read_from`](Self::read_from), but nothing is read from `pipe` until `start` receives
    /// (or its sender is dropped): the writer meets a full pipe, as with a stalled log shipper.
    ///
    /// With `pause_after`, what is written up to a line containing it is read first: the lines a
    /// service writes at start (the ports it bound) still reach the test.
    pub fn read_once(
        pipe: impl Read + Send + 'static,
        start: Option<std::sync::mpsc::Receiver<()>>,
        pause_after: Option<&'static str>,
    ) -> (Self, JoinHandle<()>) {
        let captured = Self::default();
        let sink = captured.clone();
        let reader = thread::spawn(move || {
            let mut start = start;
            let mut pipe = pipe;
            let mut chunk = [0u8; 8192];
            loop {
                let paused_now = start.is_some()
                    && pause_after.is_none_or(|marker| sink.text().contains(marker));
                if paused_now && let Some(start) = start.take() {
                    let _ = start.recv();
                }
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.bytes().extend_from_slice(&chunk[..n]),
                }
            }
        });
        (captured, reader)
    }

    /// The bytes, even if a panicking test poisoned the lock.
    fn bytes(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// The complete lines so far; a line still being written is left out.
    pub fn lines(&self) -> Vec<String> {
        self.text()
            .split_inclusive('\n')
            .filter_map(|line| line.strip_suffix('\n'))
            .map(|line| line.trim_end_matches('\r').to_owned())
            .collect()
    }

    /// The complete lines written from byte `start` on, and the byte the next call starts from:
    /// polls a long capture without copying all of it each time, or holding its lock that long.
    pub fn lines_from(&self, start: usize) -> (Vec<String>, usize) {
        let bytes = self.bytes();
        let tail = bytes.get(start..).unwrap_or_default();
        let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
            return (Vec::new(), start);
        };
        let lines = String::from_utf8_lossy(&tail[..last_newline])
            .lines()
            .map(|line| line.trim_end_matches('\r').to_owned())
            .collect();
        (lines, start + last_newline + 1)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// The JSON events of the complete lines that contain `needle`: only those are parsed, so a
    /// test looking for its own request's lines in a long capture (every test's, at trace level)
    /// does not parse every line of it each time.
    ///
    /// The lock is held only to find and copy those lines: every service writing its log waits on
    /// it, and a worker kept waiting would stall the requests the test is timing.
    pub fn json_events_containing(&self, needle: &str) -> Vec<serde_json::Value> {
        let matching: Vec<String> = {
            let bytes = self.bytes();
            // Borrowed, not copied, when the capture is valid UTF-8 (as a log is).
            let text = String::from_utf8_lossy(&bytes);
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            complete
                .split('\n')
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect()
        };
        matching
            .iter()
            .filter_map(|line| serde_json::from_str(line.trim_end_matches('\r')).ok())
            .collect()
    }

    /// The JSON log events written so far, one a line; lines that are not JSON are left out.
    pub fn json_events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for a complete line that satisfies `wanted`, and returns it.
    pub fn wait_for_line(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> String {
        super::eventually::within(timeout, || {
            self.lines().into_iter().find(|line| wanted(line))
        })
        .unwrap_or_else(|| {
            panic!(
                "the line never came within {timeout:?}; output so far:\n{}",
                self.text()
            )
        })
    }

    /// The addresses a service logged as bound at start (`sockets bound`, in the JSON or the
    /// pretty format): how a test learns the ports of a service told to bind port 0.
    pub fn bound_addresses(&self, timeout: Duration) -> BoundAddresses {
        let line = self.wait_for_line(|line| line.contains(SOCKETS_BOUND), timeout);
        let field = |name: &str| -> Option<SocketAddr> {
            let value = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(event) => event["fields"][name].as_str()?.to_owned(),
                // The pretty format writes `name=value` after the message.
                Err(_) => line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix(&format!("{name}=")))?
                    .to_owned(),
            };
            Some(value.parse().unwrap_or_else(|_| panic!("{name} in {line}")))
        };
        BoundAddresses {
            listen: field("listen").unwrap_or_else(|| panic!("no listen address in {line}")),
            metrics: field("metrics"),
        }
    }
}

impl Write for CapturedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
