//! Reading a secret given as a file (`proof.client_token_file`, the session's key file, a Redis
//! URL file), the same way at start-up and on every reload, so that a file caught in a bad state is
//! never taken and never holds the process up:
//!
//! - Only a regular file is read. Opening a FIFO waits for a writer that may never come (and a
//!   device may never end): its type is checked before `open`, the open itself does not wait
//!   (`O_NONBLOCK`, in case the path was swapped between the check and the open), and the file
//!   actually opened is checked again.
//! - At most a bound's worth is read (one byte more, to tell "exactly the bound" from "more"): a
//!   secret is small, and a file far larger than one is a mistake, never something to send to Proof
//!   or keep in memory.
//! - It is taken only when two reads a moment apart agree, its contents and its identity (device,
//!   inode, size, modification time). A file written in place is caught half-written by one read;
//!   the next read, [`SETTLE_GAP`] later, finds more bytes or a newer modification time. A file
//!   replaced by rename (Kubernetes swaps a secret volume's symlink, secret managers rename a staged
//!   file) is complete by construction: it differs once, the next read agrees, and it is taken one
//!   gap later. A changed inode alone is not taken as proof of completeness: `rm` and a fresh write
//!   also change it.
//! - The reads run on a thread of their own, awaited with a timeout ([`READ_TIMEOUT`]): a hung
//!   mount blocks that thread, never the runtime that serves signals, so SIGTERM is always served.
//!   While a read stays stuck no other read of the same file starts (a reload is skipped): a mount
//!   that never answers costs one thread, not one per reload.
//!
//! Errors name the fault, never the contents.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Between two reads of the same file. Long enough that a writer still at work has written more
/// (or touched the modification time) by the second; short enough that a reload stays quick.
pub const SETTLE_GAP: Duration = Duration::from_millis(200);
/// Reads before a file that never reads the same twice is given up on (for this reload).
const MAX_READS: usize = 5;
/// The most a read (all of its [`MAX_READS`] and the gaps between them) is waited for. Far above
/// what a local file or a healthy mount takes; past it the mount is taken to be hung.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a secret file was not taken. Never carries the file's contents.
#[derive(Debug)]
pub enum SecretFileError {
    /// A FIFO, a socket, a device or a directory.
    NotAFile,
    TooLarge {
        max_bytes: u64,
    },
    Unreadable(std::io::Error),
    NotUtf8,
    /// Two reads never agreed: the file is still being written.
    KeptChanging,
    /// No answer within [`READ_TIMEOUT`].
    TimedOut,
    /// An earlier read of the file has still not returned: none other is started.
    StillReading,
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAFile => f.write_str(
                "is not a regular file (a FIFO, socket, device or directory is never read)",
            ),
            Self::TooLarge { max_bytes } => write!(f, "is larger than {max_bytes} bytes"),
            Self::Unreadable(error) => write!(f, "cannot be read: {error}"),
            Self::NotUtf8 => f.write_str("is not UTF-8 text"),
            Self::KeptChanging => write!(
                f,
                "changed between each of {MAX_READS} reads {} ms apart: still being written?",
                SETTLE_GAP.as_millis()
            ),
            Self::TimedOut => write!(
                f,
                "could not be read within {} s (a hung mount?)",
                READ_TIMEOUT.as_secs()
            ),
            Self::StillReading => f.write_str(
                "is still being read by an earlier reload that has not returned (a hung mount?): not read again until it does",
            ),
        }
    }
}

impl std::error::Error for SecretFileError {}

/// A secret file, read with the rules above; `Clone` shares the read in flight.
#[derive(Debug, Clone)]
pub struct SecretFile {
    path: PathBuf,
    max_bytes: u64,
    /// Set while a reading thread runs, cleared by the thread itself when its read returns (even
    /// long after the caller gave up waiting).
    in_flight: Arc<AtomicBool>,
}

impl SecretFile {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents once settled, for a reload: awaited without ever blocking the runtime.
    pub async fn read(&self) -> Result<String, SecretFileError> {
        let (path, max_bytes) = (self.path.clone(), self.max_bytes);
        self.read_on_thread(READ_TIMEOUT, move || read_settled(&path, max_bytes))
            .await
    }

    /// The contents once settled, for start-up (no runtime yet): the same reads, and the same
    /// timeout, so a FIFO or a hung mount is a configuration error rather than a hang.
    pub fn read_blocking(&self) -> Result<String, SecretFileError> {
        let (path, max_bytes) = (self.path.clone(), self.max_bytes);
        let (sender, receiver) = std::sync::mpsc::channel();
        self.spawn(
            move || read_settled(&path, max_bytes),
            move |outcome| {
                let _ = sender.send(outcome);
            },
        )?;
        receiver
            .recv_timeout(READ_TIMEOUT)
            .unwrap_or_else(|error| match error {
                std::sync::mpsc::RecvTimeoutError::Timeout => Err(SecretFileError::TimedOut),
                std::sync::mpsc::RecvTimeoutError::Disconnected => Err(thread_failed()),
            })
    }

    async fn read_on_thread(
        &self,
        timeout: Duration,
        read: impl FnOnce() -> Result<String, SecretFileError> + Send + 'static,
    ) -> Result<String, SecretFileError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.spawn(read, move |outcome| {
            let _ = sender.send(outcome);
        })?;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(thread_failed()),
            Err(_) => Err(SecretFileError::TimedOut),
        }
    }

    /// Runs `read` on a thread of its own and hands its outcome to `deliver`, unless a read of
    /// this file is still running.
    ///
    /// A plain thread rather than the runtime's blocking pool: dropping a runtime waits for its
    /// blocking tasks, so a read stuck on a hung mount would keep the process from exiting after
    /// SIGTERM. A detached thread ends with the process.
    fn spawn(
        &self,
        read: impl FnOnce() -> Result<String, SecretFileError> + Send + 'static,
        deliver: impl FnOnce(Result<String, SecretFileError>) + Send + 'static,
    ) -> Result<(), SecretFileError> {
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return Err(SecretFileError::StillReading);
        }
        let in_flight = self.in_flight.clone();
        std::thread::Builder::new()
            .name("secret-file".into())
            .spawn(move || {
                let outcome = read();
                // Cleared before delivering: a caller that got the outcome may read again at once.
                in_flight.store(false, Ordering::Release);
                deliver(outcome);
            })
            .map(drop)
            .map_err(|error| {
                self.in_flight.store(false, Ordering::Release);
                SecretFileError::Unreadable(error)
            })
    }
}

fn thread_failed() -> SecretFileError {
    SecretFileError::Unreadable(std::io::Error::other("the reading thread failed"))
}

/// The contents without the line end that editors and secret managers usually leave, for the
/// secrets that are one line (a token, an HS256 key, a URL).
pub fn without_line_end(contents: &str) -> &str {
    contents.trim_end_matches(['\n', '\r'])
}

/// One read: the bytes and what identified the file they came from.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    contents: Vec<u8>,
    identity: Identity,
}

#[derive(Debug, PartialEq, Eq)]
struct Identity {
    #[cfg(unix)]
    device: u64,
    #[cfg(unix)]
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Identity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            #[cfg(unix)]
            device: metadata.dev(),
            #[cfg(unix)]
            inode: metadata.ino(),
            len: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }
}

/// Blocking: reads until two reads [`SETTLE_GAP`] apart agree.
fn read_settled(path: &Path, max_bytes: u64) -> Result<String, SecretFileError> {
    let contents = settle(
        || read_once(path, max_bytes),
        || std::thread::sleep(SETTLE_GAP),
    )?;
    String::from_utf8(contents).map_err(|_| SecretFileError::NotUtf8)
}

/// The rule itself, apart from the file system and the clock so that it can be tested alone.
fn settle(
    mut read: impl FnMut() -> Result<Snapshot, SecretFileError>,
    mut pause: impl FnMut(),
) -> Result<Vec<u8>, SecretFileError> {
    let mut previous = read()?;
    for _ in 1..MAX_READS {
        pause();
        let current = read()?;
        if current == previous {
            return Ok(current.contents);
        }
        previous = current;
    }
    Err(SecretFileError::KeptChanging)
}

fn read_once(path: &Path, max_bytes: u64) -> Result<Snapshot, SecretFileError> {
    // Follows symlinks, as Kubernetes' secret volumes need.
    let metadata = std::fs::metadata(path).map_err(SecretFileError::Unreadable)?;
    check_metadata(&metadata, max_bytes)?;
    let mut file = open_without_waiting(path).map_err(SecretFileError::Unreadable)?;
    // The file actually opened: the path may have been replaced since the check above.
    let metadata = file.metadata().map_err(SecretFileError::Unreadable)?;
    check_metadata(&metadata, max_bytes)?;
    let mut contents = Vec::new();
    (&mut file)
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut contents)
        .map_err(SecretFileError::Unreadable)?;
    // It grew after the size check: still bounded by what was read.
    if contents.len() as u64 > max_bytes {
        return Err(SecretFileError::TooLarge { max_bytes });
    }
    Ok(Snapshot {
        contents,
        identity: Identity::of(&metadata),
    })
}

fn check_metadata(metadata: &std::fs::Metadata, max_bytes: u64) -> Result<(), SecretFileError> {
    if !metadata.is_file() {
        return Err(SecretFileError::NotAFile);
    }
    if metadata.len() > max_bytes {
        return Err(SecretFileError::TooLarge { max_bytes });
    }
    Ok(())
}

#[cfg(unix)]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // No effect on a regular file; a FIFO swapped in after the type check opens at once instead
    // of waiting for a writer, and is then refused by the check on the opened file.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(contents: &str, len: u64) -> Snapshot {
        Snapshot {
            contents: contents.as_bytes().to_vec(),
            identity: Identity {
                #[cfg(unix)]
                device: 1,
                #[cfg(unix)]
                inode: 7,
                len,
                modified: None,
            },
        }
    }

    /// `settle` over a scripted sequence of reads; also how many pauses it took.
    fn settle_over(reads: Vec<Snapshot>) -> (Result<Vec<u8>, SecretFileError>, usize) {
        let mut reads = reads.into_iter();
        let mut pauses = 0;
        let outcome = settle(
            || Ok(reads.next().expect("no more reads scripted")),
            || pauses += 1,
        );
        (outcome, pauses)
    }

    #[test]
    fn a_file_is_taken_once_two_reads_agree() {
        let (outcome, pauses) = settle_over(vec![snapshot("tok", 3), snapshot("tok", 3)]);
        assert_eq!(outcome.unwrap(), b"tok");
        assert_eq!(pauses, 1);

        // Half-written, then complete: the prefix is never taken.
        let (outcome, pauses) = settle_over(vec![
            snapshot("tok_NEW_f", 9),
            snapshot("tok_NEW_full", 12),
            snapshot("tok_NEW_full", 12),
        ]);
        assert_eq!(outcome.unwrap(), b"tok_NEW_full");
        assert_eq!(pauses, 2);

        // The same bytes, but the file changed in between (rewritten, or replaced): read again.
        let mut replaced = snapshot("tok", 3);
        replaced.identity.modified = Some(SystemTime::UNIX_EPOCH);
        let (outcome, pauses) = settle_over(vec![snapshot("tok", 3), replaced, {
            let mut again = snapshot("tok", 3);
            again.identity.modified = Some(SystemTime::UNIX_EPOCH);
            again
        }]);
        assert_eq!(outcome.unwrap(), b"tok");
        assert_eq!(pauses, 2);
    }

    #[test]
    fn a_file_that_never_reads_the_same_twice_is_refused() {
        let reads = (0..MAX_READS).map(|n| snapshot(&"x".repeat(n + 1), n as u64 + 1));
        let (outcome, pauses) = settle_over(reads.collect());
        assert!(matches!(outcome, Err(SecretFileError::KeptChanging)));
        assert_eq!(pauses, MAX_READS - 1);
    }

    #[test]
    fn a_failed_read_ends_the_attempt() {
        let mut calls = 0;
        let outcome = settle(
            || {
                calls += 1;
                if calls == 1 {
                    Ok(snapshot("tok", 3))
                } else {
                    Err(SecretFileError::NotAFile)
                }
            },
            || {},
        );
        assert!(matches!(outcome, Err(SecretFileError::NotAFile)));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "proof-bff-secret-file-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_size_bound_is_inclusive_and_the_error_never_quotes_the_file() {
        let dir = temp_dir("size");
        let path = dir.join("secret");
        std::fs::write(&path, "s".repeat(16)).unwrap();
        assert_eq!(read_settled(&path, 16).unwrap(), "s".repeat(16));
        let error = read_settled(&path, 15).unwrap_err();
        assert!(matches!(error, SecretFileError::TooLarge { max_bytes: 15 }));
        assert!(!error.to_string().contains("sss"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_directory_is_refused_without_waiting() {
        let dir = temp_dir("fifo");
        let fifo = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // No writer ever opens it: a blocking open would never return.
        assert!(matches!(
            SecretFile::new(fifo.clone(), 64).read_blocking(),
            Err(SecretFileError::NotAFile)
        ));
        // Past the type check (as if the path were swapped after it), the open does not wait
        // either, and the check on the opened file refuses it.
        let opened = open_without_waiting(&fifo).unwrap();
        assert!(matches!(
            check_metadata(&opened.metadata().unwrap(), 64),
            Err(SecretFileError::NotAFile)
        ));
        assert!(matches!(
            read_settled(&dir, 64),
            Err(SecretFileError::NotAFile)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_stuck_read_times_out_and_no_second_read_starts_until_it_returns() {
        let file = SecretFile::new(PathBuf::from("/nonexistent/secret"), 64);
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let outcome = file
            .read_on_thread(Duration::from_millis(10), move || {
                let _ = stuck.recv();
                Ok("late".to_owned())
            })
            .await;
        assert!(matches!(outcome, Err(SecretFileError::TimedOut)));
        // Still stuck: the next reload does not add a thread.
        assert!(matches!(
            file.read().await,
            Err(SecretFileError::StillReading)
        ));
        assert!(matches!(
            file.clone().read_blocking(),
            Err(SecretFileError::StillReading)
        ));

        release.send(()).unwrap();
        // Once the stuck read returns, reads start again (this one finds no file).
        let mut outcome = file.read().await;
        for _ in 0..600 {
            if !matches!(outcome, Err(SecretFileError::StillReading)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            outcome = file.read().await;
        }
        assert!(
            matches!(outcome, Err(SecretFileError::Unreadable(_))),
            "{outcome:?}"
        );
    }
}
