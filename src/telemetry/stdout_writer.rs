//! Standard output for log lines, without a worker ever waiting on it: a worker appends its
//! formatted line to a shared, bounded buffer; a thread of its own writes the buffer out in
//! batches. A line that does not fit (stdout stopped: a blocked pipe, a paused log shipper) is
//! dropped and counted, never half-written.
//!
//! Why not a channel per line (as `tracing-appender` does): measured with `benches/compare.sh`,
//! handing each line to the writer thread on its own (a wake-up per line, and the thread spinning
//! for the next one) cost about 10 µs of CPU per request, a fifth of a checkout. Here the writer
//! thread is woken once per batch, and a line costs a short lock and a copy.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines waiting for standard output, at most: a few seconds of lines at full load, so a log
/// shipper's pause is ridden out; bounded, so a stdout that stopped for good costs no more.
const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;

/// How long the writer thread gathers lines after the first one of a batch arrives: under load
/// the lines leave in one system call per batch; an idle service's line waits at most this long.
const GATHER_FOR: Duration = Duration::from_millis(10);

/// How long the end of the process waits for the last lines to be written.
const FINAL_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The writer the subscriber writes through; cheap to clone, shared by every thread.
#[derive(Clone)]
pub struct StdoutWriter {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Rung when the first line of a batch arrives, and on shutdown.
    ring: Condvar,
    dropped: AtomicU64,
    /// The most bytes waiting at once.
    capacity: usize,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

/// Owns the writer thread: dropping it writes out the lines still waiting (for up to a second)
/// and stops the thread.
pub struct StdoutWriterGuard {
    shared: Arc<Shared>,
    done: mpsc::Receiver<()>,
}

impl StdoutWriter {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<(Self, StdoutWriterGuard)> {
        Self::start_with(std::io::stdout(), MAX_BUFFERED_BYTES)
    }

    fn start_with(
        out: impl Write + Send + 'static,
        capacity: usize,
    ) -> std::io::Result<(Self, StdoutWriterGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            ring: Condvar::new(),
            dropped: AtomicU64::new(0),
            capacity,
        });
        let (finished, done) = mpsc::channel();
        let writer_shared = shared.clone();
        thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || {
                write_batches(&writer_shared, out);
                let _ = finished.send(());
            })?;
        Ok((
            Self {
                shared: shared.clone(),
            },
            StdoutWriterGuard { shared, done },
        ))
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only whole lines behind.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer thread: waits for a first line, gathers for a moment, writes the batch in one go.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let closing = {
            let mut pending = shared.lock();
            while pending.lines.is_empty() && !pending.closing {
                pending = shared
                    .ring
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if !pending.closing {
                drop(pending);
                thread::sleep(GATHER_FOR);
                pending = shared.lock();
            }
            std::mem::swap(&mut pending.lines, &mut batch);
            pending.closing
        };
        // A failed write (stdout closed) loses this batch; there is nowhere else to say so.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closing {
            return;
        }
    }
}

/// One line as the subscriber writes it: taken whole or dropped whole.
pub struct LineSink<'a> {
    shared: &'a Shared,
}

impl Write for LineSink<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.lines.len() + line.len() > self.shared.capacity {
            drop(pending);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            let first = pending.lines.is_empty();
            pending.lines.extend_from_slice(line);
            drop(pending);
            if first {
                self.shared.ring.notify_one();
            }
        }
        // Accepted either way: a full buffer must not turn into an error the subscriber reports.
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for StdoutWriter {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink {
            shared: &self.shared,
        }
    }
}

impl Drop for StdoutWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.ring.notify_one();
        let _ = self.done.recv_timeout(FINAL_FLUSH_LIMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stdout that holds every write until the test opens it.
    #[derive(Clone, Default)]
    struct GatedOut {
        written: Arc<Mutex<Vec<u8>>>,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl GatedOut {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for GatedOut {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, ring) = &*self.open;
            let mut open = open.lock().unwrap();
            while !*open {
                open = ring.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn write_line(writer: &StdoutWriter, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn lines_beyond_the_buffer_are_dropped_whole_and_counted_while_stdout_is_stuck() {
        let out = GatedOut::default();
        let (writer, guard) = StdoutWriter::start_with(out.clone(), 100).unwrap();
        // The first line is taken by the writer thread, which then waits on the stuck stdout.
        write_line(&writer, "first line\n");
        let started = std::time::Instant::now();
        while !writer.shared.lock().lines.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(30), "never taken");
            thread::sleep(Duration::from_millis(5));
        }
        // 30 bytes a line: three fit in 100 bytes, the rest are dropped, none cut.
        for i in 0..10 {
            write_line(&writer, &format!("line {i:02} .................. \n"));
        }
        assert_eq!(writer.dropped_lines(), 7);
        out.open();
        drop(guard);
        assert_eq!(
            out.text(),
            "first line\n\
             line 00 .................. \n\
             line 01 .................. \n\
             line 02 .................. \n"
        );
    }

    #[test]
    fn the_guard_writes_out_what_is_waiting() {
        let out = GatedOut::default();
        out.open();
        let (writer, guard) = StdoutWriter::start_with(out.clone(), 1024).unwrap();
        for i in 0..5 {
            write_line(&writer, &format!("{i}\n"));
        }
        drop(guard);
        assert_eq!(out.text(), "0\n1\n2\n3\n4\n");
        assert_eq!(writer.dropped_lines(), 0);
    }
}
