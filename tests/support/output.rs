//! What a service writes, captured in memory: the in-process service's log subscriber writes into
//! a [`CapturedOutput`], and a child process's pipes are read into one by a thread.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes written so far, shared by the writer and the test that reads them.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// Everything `pipe` yields until its end, read into memory by a thread.
    pub fn read_from(pipe: impl Read + Send + 'static) -> (Self, JoinHandle<()>) {
        Self::read_once(pipe, None)
    }

    /// As [`read_from`](Self::read_from), but nothing is read from `pipe` until `start` receives
    /// (or its sender is dropped): the writer meets a full pipe, as with a stalled log shipper.
    pub fn read_once(
        pipe: impl Read + Send + 'static,
        start: Option<std::sync::mpsc::Receiver<()>>,
    ) -> (Self, JoinHandle<()>) {
        let captured = Self::default();
        let sink = captured.clone();
        let reader = thread::spawn(move || {
            if let Some(start) = start {
                let _ = start.recv();
            }
            let mut pipe = pipe;
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.bytes().extend_from_slice(&chunk[..n]);
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

    /// The JSON log events written so far, one a line; lines that are not JSON are left out.
    pub fn json_events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for a complete line that satisfies `wanted`, and returns it.
    pub fn wait_for_line(&self, wanted: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| wanted(line)) {
                return line;
            }
            assert!(
                started.elapsed() < timeout,
                "the line never came within {timeout:?}; output so far:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
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
