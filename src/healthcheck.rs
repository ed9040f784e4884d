//! `proof-bff healthcheck`: probes `/healthz` over plain HTTP so a container `HEALTHCHECK` needs no
//! shell, curl or wget in the image.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

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
