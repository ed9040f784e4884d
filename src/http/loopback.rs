//! Hosts whose traffic never leaves the machine: the only upstreams the service calls over plain
//! `http://` (a local stand-in or proxy for Proof, a local identity provider, the partner's app on
//! the same machine), since what travels there (the client token, the key set that decides who may
//! sign in, session cookies) must not cross a network in clear text.

/// 127.0.0.0/8, `::1` and the name `localhost`.
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // The URL parser has already lower-cased the name.
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}
