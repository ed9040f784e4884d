//! Where the key set is fetched from, and which URLs the fetcher may call at all.

use std::fmt;

use url::Url;

use crate::config_checks::{HTTPS_UNLESS_LOOPBACK, UrlRules, outbound_url};

/// The key set's address: configured, or found through OpenID Connect discovery.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySetLocation {
    /// `session.jwks.jwks_url`.
    Direct(Url),
    /// `jwks_uri` from the discovery document at `url`, whose `issuer` must be `issuer`.
    Discovery { issuer: String, url: Url },
}

impl KeySetLocation {
    /// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery §4: a trailing `/`
    /// of the issuer is dropped first, as Auth0's issuers end in one).
    pub fn discovery(issuer: &str) -> Result<Self, String> {
        let base = fetch_url(issuer)?;
        if base.query().is_some() {
            return Err("must not carry a query: it is the base of the discovery URL".into());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            base.as_str().trim_end_matches('/')
        );
        let url = fetch_url(&url)?;
        Ok(Self::Discovery {
            issuer: issuer.to_owned(),
            url,
        })
    }
}

impl fmt::Debug for KeySetLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(url) => write!(f, "Direct({})", Shown(url)),
            Self::Discovery { url, .. } => write!(f, "Discovery({})", Shown(url)),
        }
    }
}

/// A URL the fetcher may call: `https://`, or `http://` to a loopback host (a local stand-in or
/// proxy), with no user name, password or fragment. The key set decides who may sign in, so it
/// is never read over a network in clear text.
pub fn fetch_url(text: &str) -> Result<Url, String> {
    outbound_url(
        text,
        &UrlRules {
            not_http: "must be an https:// URL",
            credentials: "must not carry a user name or password",
            query_allowed: true,
            https_unless_loopback: Some(HTTPS_UNLESS_LOOPBACK),
        },
    )
}

/// A URL as logs show it: scheme, host, port and path, without a query that might carry a key.
pub(super) struct Shown<'a>(pub &'a Url);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        write!(f, "{}://", url.scheme())?;
        if let Some(host) = url.host() {
            write!(f, "{host}")?;
        }
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_on_loopback() {
        for ok in [
            "https://tenant.eu.auth0.com/.well-known/jwks.json",
            "https://idp.example:8443/realms/shop/protocol/openid-connect/certs?v=2",
            "http://127.0.0.1:8080/jwks.json",
            "http://127.9.9.9/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost:8080/realms/dev/protocol/openid-connect/certs",
            "http://LOCALHOST/jwks",
        ] {
            assert!(fetch_url(ok).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("http://idp.example/jwks", "https://"),
            ("http://localhost.idp.example/jwks", "https://"),
            ("http://10.0.0.1/jwks", "https://"),
            ("ftp://idp.example/jwks", "https://"),
            ("https://user:S3CRET@idp.example/jwks", "user name"),
            ("https://idp.example/jwks#keys", "fragment"),
            ("idp.example/jwks", "not a valid URL"),
            ("", "not a valid URL"),
        ] {
            let problem = fetch_url(bad).unwrap_err();
            assert!(problem.contains(needle), "{bad}: {problem}");
            assert!(!problem.contains("S3CRET"), "{bad}: {problem}");
        }
    }

    #[test]
    fn discovery_is_under_the_issuer_with_or_without_its_trailing_slash() {
        for (issuer, expected) in [
            (
                "https://tenant.eu.auth0.com/",
                "https://tenant.eu.auth0.com/.well-known/openid-configuration",
            ),
            (
                "https://sso.example/realms/shop",
                "https://sso.example/realms/shop/.well-known/openid-configuration",
            ),
            (
                "http://127.0.0.1:4000",
                "http://127.0.0.1:4000/.well-known/openid-configuration",
            ),
        ] {
            let KeySetLocation::Discovery { issuer: kept, url } =
                KeySetLocation::discovery(issuer).unwrap()
            else {
                panic!("{issuer}: not discovery");
            };
            assert_eq!(kept, issuer);
            assert_eq!(url.as_str(), expected);
        }
        assert!(KeySetLocation::discovery("https://idp.example/?tenant=1").is_err());
        assert!(KeySetLocation::discovery("http://idp.example").is_err());
    }

    #[test]
    fn logs_show_no_query() {
        let url = Url::parse("https://idp.example:8443/keys?api_key=S3CRET").unwrap();
        assert_eq!(Shown(&url).to_string(), "https://idp.example:8443/keys");
        let location = KeySetLocation::Direct(url);
        assert!(!format!("{location:?}").contains("S3CRET"));
    }
}
