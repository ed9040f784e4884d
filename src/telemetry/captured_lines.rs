//! For the tests of the log lines: a writer that keeps what the subscriber writes.

use std::sync::{Arc, Mutex};

/// Clones share one buffer: give the subscriber a clone per line, read the lines from another.
#[derive(Clone, Default)]
pub(super) struct CapturedLines(Arc<Mutex<Vec<u8>>>);

impl CapturedLines {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for CapturedLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
