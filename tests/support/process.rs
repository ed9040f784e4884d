//! The compiled `proof-bff` as a child process: nothing inherited from the test's environment,
//! its output captured, killed on drop whatever happened in the test.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::eventually::{EVENTUALLY, within};
use super::output::{BoundAddresses, CapturedOutput, SOCKETS_BOUND};

/// The binary with an empty environment apart from `PATH`: nothing inherited (`PROOF_BFF*`,
/// `RUST_LOG`) can change what a test sees.
pub fn bff() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_proof-bff"));
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.stdin(Stdio::null());
    command
}

/// A running child whose standard output and error are captured.
pub struct Process {
    child: Child,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn spawn(command: Command) -> Self {
        Self::spawn_reading_stdout_after(command, None)
    }

    /// As [`spawn`](Self::spawn), its standard output left unread until `start` receives, but for
    /// the lines up to the one that says which ports it bound.
    pub fn spawn_reading_stdout_after(
        mut command: Command,
        start: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn proof-bff");
        let (stdout, out_reader) =
            CapturedOutput::read_once(child.stdout.take().unwrap(), start, Some(SOCKETS_BOUND));
        let (stderr, err_reader) = CapturedOutput::read_from(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Where the process listens, as it logged at start: its listen address set to port 0, only
    /// it knows which port it took, and no other process can have taken that port in between.
    pub fn bound_addresses(&mut self) -> BoundAddresses {
        self.bound_addresses_or_exit().unwrap_or_else(|status| {
            panic!(
                "proof-bff exited during start-up with {status:?}\nstdout: {}\nstderr: {}",
                self.stdout.text(),
                self.stderr.text()
            )
        })
    }

    /// As [`bound_addresses`](Self::bound_addresses), or how the process exited before it bound
    /// them.
    pub fn bound_addresses_or_exit(&mut self) -> Result<BoundAddresses, ExitStatus> {
        let outcome = within(EVENTUALLY, || {
            if let Some(status) = self.exited() {
                return Some(Err(status));
            }
            let logged = self
                .stdout
                .lines()
                .iter()
                .any(|l| l.contains(SOCKETS_BOUND));
            logged.then(|| Ok(self.stdout.bound_addresses(Duration::ZERO)))
        });
        outcome.unwrap_or_else(|| {
            panic!(
                "no `{SOCKETS_BOUND}` line within {EVENTUALLY:?}\nstdout: {}\nstderr: {}",
                self.stdout.text(),
                self.stderr.text()
            )
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed: {status:?}");
    }

    /// Waits for the process to exit on its own, then for the rest of its output; `None` when it
    /// is still running after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if started.elapsed() > timeout {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}
