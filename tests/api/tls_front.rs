//! TLS in front of a plain-HTTP stand-in (a wiremock identity provider or app): what a partner's
//! internal service with a certificate from the partner's own CA looks like to the service.
//!
//! The certificates are fixed test files, `tests/fixtures/tls/`: `ca.pem`, a private CA (its key
//! was discarded once it had signed), and `server.pem` / `server_key.pem`, the server's
//! certificate for `127.0.0.1` and `localhost` that it signed. Made with `openssl req -x509`
//! (P-256, valid for 100 years) and `openssl x509 -req`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::helpers::within_async;

pub const CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("../fixtures/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../fixtures/tls/server_key.pem");

/// Accepts TLS on a loopback port and relays each connection's bytes to `backend` in plain HTTP.
pub struct TlsFront {
    address: SocketAddr,
    handshakes_failed: Arc<AtomicUsize>,
    handshakes_done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(backend: SocketAddr) -> Self {
        let certificates = vec![CertificateDer::from_pem_slice(SERVER_CERT).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let handshakes_failed = Arc::new(AtomicUsize::new(0));
        let handshakes_done = Arc::new(AtomicUsize::new(0));
        let (failed, done) = (handshakes_failed.clone(), handshakes_done.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, failed, done) = (acceptor.clone(), failed.clone(), done.clone());
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut server) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            address,
            handshakes_failed,
            handshakes_done,
            task,
        }
    }

    /// `https://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    /// Connections whose client refused the handshake (or sent no TLS).
    pub fn handshakes_failed(&self) -> usize {
        self.handshakes_failed.load(Ordering::SeqCst)
    }

    pub fn handshakes_done(&self) -> usize {
        self.handshakes_done.load(Ordering::SeqCst)
    }

    /// Waits until a client has refused the certificate (generously: the service's first call
    /// may come late on a busy machine), and checks that none accepted it.
    pub async fn wait_until_only_refused(&self) {
        let refused = async || self.handshakes_failed() > 0;
        let _ = within_async(std::time::Duration::from_secs(60), refused).await;
        assert!(
            self.handshakes_failed() > 0,
            "no client refused the certificate within 60 s"
        );
        assert_eq!(
            self.handshakes_done(),
            0,
            "the certificate from the untrusted CA was accepted"
        );
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
