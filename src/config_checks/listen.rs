//! `server.listen`, parsed once: where the service binds, and how a client on the same host (the
//! `healthcheck` command, the sandbox's demo page) reaches it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// `host:port`: an IP address (IPv6 in brackets) or a host name resolved when the socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// Without brackets, as `TcpListener::bind((host, port))` takes it.
    host: String,
    port: u16,
}

impl ListenAddress {
    pub fn parse(listen: &str) -> Result<Self, String> {
        let invalid =
            || format!("{listen:?} is not host:port (e.g. \"127.0.0.1:8080\" or \"[::]:8080\")");
        if let Ok(address) = listen.parse::<SocketAddr>() {
            return Ok(Self {
                host: address.ip().to_string(),
                port: address.port(),
            });
        }
        let (host, port) = listen.rsplit_once(':').ok_or_else(invalid)?;
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        let is_host_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !is_host_name {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// What the listening socket is bound to.
    pub fn bind_target(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `host` part of a URL that reaches the service from the same machine: a wildcard
    /// address (`0.0.0.0`, `::`) through loopback, an IPv6 address in brackets.
    pub fn local_url_host(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            Ok(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        }
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_host_names_are_parsed_once() {
        let v4 = ListenAddress::parse("0.0.0.0:8080").unwrap();
        assert_eq!(v4.bind_target(), ("0.0.0.0", 8080));
        assert_eq!(v4.local_url_host(), "127.0.0.1");
        let v6 = ListenAddress::parse("[::]:9000").unwrap();
        assert_eq!(v6.bind_target(), ("::", 9000));
        assert_eq!(v6.local_url_host(), "[::1]");
        assert_eq!(v6.to_string(), "[::]:9000");
        let loopback6 = ListenAddress::parse("[::1]:1").unwrap();
        assert_eq!(loopback6.local_url_host(), "[::1]");
        let name = ListenAddress::parse("localhost:8080").unwrap();
        assert_eq!(name.bind_target(), ("localhost", 8080));
        assert_eq!(name.local_url_host(), "localhost");
        assert_eq!(name.to_string(), "localhost:8080");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "8080",
            ":8080",
            "host:",
            "host:99999",
            "a b:1",
            "[::1]",
            "http://x:1",
        ] {
            assert!(ListenAddress::parse(bad).is_err(), "{bad:?}");
        }
    }
}
