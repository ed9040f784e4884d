//! A thread of its own, with a runtime of its own: for the work that no HTTP worker may run.
//!
//! actix-web's workers are single-threaded runtimes, each busy with its own requests, and they
//! share state that must be `Send + Sync`. Two kinds of work do not fit there:
//!
//! - an awc client is `!Send`: it lives on the runtime that made it. Rather than a client per
//!   worker (a connection pool each, and no single flight across them), one thread owns the only
//!   client and the workers hand it their calls;
//! - a connection that every worker uses (the shared Redis link's) must not be driven by any one
//!   worker's runtime: it would stall while that worker is busy, and die with it when it stops,
//!   failing the other workers' calls.
//!
//! A [`SideThread`] is such a thread: named (so it shows in `top -H`, a debugger or a panic
//! message), running a current-thread tokio runtime with a `LocalSet` (what awc and
//! `actix_rt::spawn` need: actix's own runtime). It runs its `main` future, made on the thread so
//! it may hold `!Send` state, and any task handed to it through its [`Handle`]. Dropping the
//! [`SideThread`] stops it: `main` and the tasks are dropped, on their own thread.

use std::future::Future;
use std::io;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A named thread running a runtime of its own; it stops when this is dropped.
///
/// Dropping it does not wait for the thread to end: it may be dropped on a worker (or inside
/// another runtime), which must not block on what is winding down there, and nothing needs the
/// thread gone by then. A task that was under way is simply never finished.
#[derive(Debug)]
pub struct SideThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl SideThread {
    /// Starts thread `name` and its runtime, and runs `main()` there until it returns or this is
    /// dropped; the thread ends with it. Returns once the runtime runs; fails when the system refuses the thread or the
    /// runtime, so a start-up fails loudly rather than serving without the thread.
    pub fn start<M, F>(name: &str, main: M) -> io::Result<Self>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let thread = std::thread::Builder::new().name(name.to_owned());
        Self::start_on(thread, name, actix_rt::Runtime::new, main)
    }

    /// Where to hand `Send` work to the thread ([`Handle::spawn`]), or to make something whose
    /// tasks must run there ([`Handle::enter`]). Tasks spawned after the thread stopped are
    /// cancelled at once.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// [`start`](Self::start), with the thread's settings and how its runtime is built given.
    fn start_on<M, F>(
        thread: std::thread::Builder,
        name: &str,
        runtime: fn() -> io::Result<actix_rt::Runtime>,
        main: M,
    ) -> io::Result<Self>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        // The runtime is built on the thread (its `LocalSet` cannot move there), which reports
        // whether it could be.
        let (started, starting) = std::sync::mpsc::sync_channel::<io::Result<Handle>>(1);
        thread.spawn(move || {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            let _ = started.send(Ok(runtime.tokio_runtime().handle().clone()));
            // Returns when `main` does or the handle is dropped; the runtime and its tasks are
            // dropped here, on their own thread.
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = main() => {}
                }
            });
        })?;
        let handle = starting.recv().unwrap_or_else(|_| {
            Err(io::Error::other(format!(
                "the {name} thread ended while starting"
            )))
        })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    /// Says when it is dropped.
    struct Dropped(mpsc::Sender<&'static str>, &'static str);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(self.1);
        }
    }

    #[tokio::test]
    async fn main_and_the_tasks_handed_over_run_on_the_named_thread_with_a_local_set() {
        let (ran, running) = mpsc::channel();
        let thread = SideThread::start("side-test", move || async move {
            // What awc needs: `actix_rt::spawn` works only inside a `LocalSet`.
            let local = actix_rt::spawn(async { thread_name() }).await;
            let _ = ran.send(local.ok().flatten());
            // The thread ends when `main` does.
            std::future::pending::<()>().await;
        })
        .unwrap();
        assert_eq!(
            running.recv_timeout(WAIT).unwrap().as_deref(),
            Some("side-test")
        );

        let handed = thread.handle().spawn(async { thread_name() });
        assert_eq!(handed.await.unwrap().as_deref(), Some("side-test"));
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_thread_and_its_runtime() {
        let (dropped, drops) = mpsc::channel();
        let in_main = Dropped(dropped.clone(), "main");
        let thread = SideThread::start("side-stop", move || async move {
            let _held = in_main;
            std::future::pending::<()>().await;
        })
        .unwrap();
        let in_task = Dropped(dropped, "task");
        let handle = thread.handle().clone();
        let _task = handle.spawn(async move {
            let _held = in_task;
            std::future::pending::<()>().await;
        });

        drop(thread);
        let mut seen = [
            drops.recv_timeout(WAIT).unwrap(),
            drops.recv_timeout(WAIT).unwrap(),
        ];
        seen.sort_unstable();
        assert_eq!(seen, ["main", "task"]);
        // The runtime is gone: a task handed over now never runs.
        let mut late = handle.spawn(async {});
        for _ in 0..50 {
            match late.await {
                Err(error) if error.is_cancelled() => return,
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    late = handle.spawn(async {});
                }
            }
        }
        panic!("the thread's runtime still runs");
    }

    #[test]
    fn a_runtime_that_cannot_be_built_is_reported() {
        let refused = SideThread::start_on(
            std::thread::Builder::new().name("side-refused".to_owned()),
            "side-refused",
            || Err(io::Error::other("no runtime today")),
            || async {},
        )
        .unwrap_err();
        assert_eq!(refused.to_string(), "no runtime today");
    }

    #[test]
    fn a_thread_the_system_refuses_is_reported() {
        // A stack larger than the address space: the system refuses the thread.
        let refused = SideThread::start_on(
            std::thread::Builder::new()
                .name("side-too-big".to_owned())
                .stack_size(1 << 62),
            "side-too-big",
            actix_rt::Runtime::new,
            || async {},
        );
        assert!(refused.is_err());
    }

    #[test]
    fn a_thread_that_ends_while_starting_is_reported() {
        let ended = SideThread::start_on(
            std::thread::Builder::new().name("side-ended".to_owned()),
            "side-ended",
            || panic!("the runtime's builder gave up"),
            || async {},
        )
        .unwrap_err();
        assert_eq!(
            ended.to_string(),
            "the side-ended thread ended while starting"
        );
    }
}
