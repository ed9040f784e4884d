//! `proof-bff healthcheck`: probes `/healthz` over plain HTTP so a container `HEALTHCHECK` needs no
//! shell, curl or wget in the image.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::ListenAddress;

const TIMEOUT: Duration = Duration::from_secs(3);

/// The `/healthz` URL of a service listening on `listen`, as seen from the same host: a wildcard
/// address (`0.0.0.0`, `[::]`) is reached through loopback.
pub fn healthz_url(listen: &ListenAddress) -> String {
    format!(
        "http://{}:{}/healthz",
        listen.local_url_host(),
        listen.port()
    )
}

/// Returns Ok when `url` (an `http://host:port/path` URL) answers 200.
pub fn probe(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut status_line = [0u8; 12];
    stream
        .read_exact(&mut status_line)
        .map_err(|e| format!("no answer: {e}"))?;
    if status_line.starts_with(b"HTTP/1.") && &status_line[8..12] == b" 200" {
        Ok(())
    } else {
        Err(format!(
            "unhealthy: {}",
            String::from_utf8_lossy(&status_line).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_probe_reaches_the_listen_address_through_loopback_when_it_is_a_wildcard() {
        let url = |listen| healthz_url(&ListenAddress::parse(listen).unwrap());
        assert_eq!(url("0.0.0.0:9000"), "http://127.0.0.1:9000/healthz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/healthz");
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(url("[::1]:8081"), "http://[::1]:8081/healthz");
        assert_eq!(url("localhost:8082"), "http://localhost:8082/healthz");
    }
}
