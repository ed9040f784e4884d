//! The signals that stop the service: SIGTERM and SIGINT (Ctrl-C elsewhere).

/// SIGTERM and SIGINT, however many times they arrive.
pub(super) enum ShutdownSignals {
    #[cfg(unix)]
    Unix {
        term: tokio::signal::unix::Signal,
        int: tokio::signal::unix::Signal,
    },
    CtrlC,
}

impl ShutdownSignals {
    pub(super) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(term), Ok(int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                return Self::Unix { term, int };
            }
        }
        Self::CtrlC
    }

    pub(super) async fn next(&mut self) {
        match self {
            #[cfg(unix)]
            Self::Unix { term, int } => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            Self::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
