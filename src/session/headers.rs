//! Identity resolved by an auth proxy in front (`session.source = "headers"`): oauth2-proxy,
//! Pomerium or nginx's `auth_request` put the signed-in user in two request headers.
//!
//! Anyone can send those headers, so they are read only when the socket peer is one of
//! `client_ip.trusted_proxies`, the proxies that overwrite them on every request. From any other
//! peer they are the client's own words: ignored, and the request has no session. Values pass the
//! same rules as a session token's claims; a header sent twice is refused, since a proxy that
//! overwrites it sends it once and two values can only mean that one came from the client.

mod config;

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName};

use super::user::is_valid_user_id;
use super::{SessionError, SessionUser, UserEmail};
use crate::client_ip::TrustedProxies;

pub use config::HeaderSessionSettings;

#[derive(Debug, Clone)]
pub struct HeaderSession {
    user_id_header: HeaderName,
    email_header: HeaderName,
    trusted: TrustedProxies,
}

impl HeaderSession {
    /// `trusted` must not be empty (the configuration refuses it): with no proxy to believe, no
    /// request could ever be served.
    pub fn new(
        user_id_header: HeaderName,
        email_header: HeaderName,
        trusted: TrustedProxies,
    ) -> Self {
        Self {
            user_id_header,
            email_header,
            trusted,
        }
    }

    /// Whether the request names a user in either header, whoever sent it (headers from a peer
    /// that is not trusted are refused, and warned about, by [`authenticate`](Self::authenticate)).
    pub fn presents_identity(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(&self.user_id_header) || headers.contains_key(&self.email_header)
    }

    /// `peer`: the socket peer, the one address no client can choose.
    pub fn authenticate(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Result<SessionUser, SessionError> {
        let Some(peer) = peer.filter(|peer| self.trusted.contains(*peer)) else {
            if headers.contains_key(&self.user_id_header)
                || headers.contains_key(&self.email_header)
            {
                tracing::warn!(
                    peer = %peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string()),
                    "identity headers from a peer outside client_ip.trusted_proxies ignored"
                );
            }
            return Err(SessionError::Missing);
        };
        let user = match (
            single_value(headers, &self.user_id_header)?,
            single_value(headers, &self.email_header)?,
        ) {
            (None, None) => return Err(SessionError::Missing),
            (Some(user_id), Some(email)) if is_valid_user_id(user_id) => UserEmail::parse(email)
                .map(|email| SessionUser {
                    user_id: user_id.to_owned(),
                    email,
                }),
            _ => None,
        };
        user.ok_or_else(|| {
            tracing::debug!(%peer, "identity headers from the auth proxy refused");
            SessionError::Invalid
        })
    }
}

/// The header's one value as UTF-8; `Invalid` when it is sent twice or is not UTF-8.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, SessionError> {
    let mut values = headers.get_all(name);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => std::str::from_utf8(value.as_bytes())
            .map(Some)
            .map_err(|_| SessionError::Invalid),
        (Some(_), Some(_)) => Err(SessionError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use actix_web::http::header::HeaderValue;

    use super::*;

    const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

    fn source() -> HeaderSession {
        HeaderSession::new(
            HeaderName::from_static("x-auth-request-user"),
            HeaderName::from_static("x-auth-request-email"),
            TrustedProxies::parse(&["10.0.0.0/8"]).unwrap(),
        )
    }

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn user_headers(user: &'static [u8], email: &'static [u8]) -> HeaderMap {
        headers(&[
            ("x-auth-request-user", user),
            ("x-auth-request-email", email),
        ])
    }

    #[test]
    fn a_trusted_proxy_names_the_user() {
        let user = source()
            .authenticate(Some(PROXY), &user_headers(b"alice", b"alice@example.org"))
            .unwrap();
        assert_eq!(user.user_id, "alice");
        assert_eq!(user.email.expose(), "alice@example.org");
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped());
        assert!(
            source()
                .authenticate(Some(mapped), &user_headers(b"alice", b"alice@example.org"))
                .is_ok()
        );
    }

    #[test]
    fn any_other_peer_has_no_session_whatever_it_sends() {
        for peer in [Some(CLIENT), None] {
            assert_eq!(
                source().authenticate(peer, &user_headers(b"alice", b"alice@example.org")),
                Err(SessionError::Missing)
            );
        }
    }

    #[test]
    fn no_headers_is_no_session_and_half_of_them_is_invalid() {
        let source = source();
        assert_eq!(
            source.authenticate(Some(PROXY), &HeaderMap::new()),
            Err(SessionError::Missing)
        );
        for half in [
            headers(&[("x-auth-request-user", b"alice")]),
            headers(&[("x-auth-request-email", b"alice@example.org")]),
        ] {
            assert_eq!(
                source.authenticate(Some(PROXY), &half),
                Err(SessionError::Invalid)
            );
        }
    }

    #[test]
    fn values_follow_the_session_rules_and_come_once() {
        let source = source();
        let twice = headers(&[
            ("x-auth-request-user", b"alice"),
            ("x-auth-request-user", b"mallory"),
            ("x-auth-request-email", b"alice@example.org"),
        ]);
        assert_eq!(
            source.authenticate(Some(PROXY), &twice),
            Err(SessionError::Invalid)
        );
        for (user, email) in [
            (&b""[..], &b"alice@example.org"[..]),
            (b"ali\xe2\x80\xaece", b"alice@example.org"),
            (b"al\xffice", b"alice@example.org"),
            (b"alice", b"not-an-address"),
            (b"alice", b""),
        ] {
            let map = headers(&[
                ("x-auth-request-user", user),
                ("x-auth-request-email", email),
            ]);
            assert_eq!(
                source.authenticate(Some(PROXY), &map),
                Err(SessionError::Invalid),
                "{user:?} {email:?}"
            );
        }
    }
}
