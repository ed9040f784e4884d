//! The URLs the service calls upstream, checked one way wherever they come from (Proof's base URL,
//! the partner app's session endpoint, an identity provider's key set, the trace collector): a
//! parsed `http(s)://` URL with a host, never with a user name or password in it, and over plain
//! `http://` only to a host whose traffic never leaves the machine when a secret travels there (the
//! client token, the key set that decides who may sign in, session cookies).
//!
//! Errors never quote the URL: it may carry a secret, and the parser's messages name the fault
//! without the input.

use url::Url;

/// 127.0.0.0/8, `::1` and the name `localhost`.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // The URL parser has already lower-cased the name.
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// What one kind of upstream URL may be, and how each refusal reads for it.
#[derive(Debug, Clone, Copy)]
pub struct UrlRules {
    /// Said of a URL that is not `http(s)://` with a host.
    pub not_http: &'static str,
    /// Said of a URL with a user name or password.
    pub credentials: &'static str,
    /// Whether a query may be part of it (a fragment never may).
    pub query_allowed: bool,
    /// Said of a plain `http://` URL to another host; `None`: plain `http://` is allowed anywhere.
    pub https_unless_loopback: Option<&'static str>,
}

/// Said of a plain `http://` URL to a host off this machine, when nothing more needs saying.
pub const HTTPS_UNLESS_LOOPBACK: &str =
    "must be https:// (http:// only for a loopback host: 127.0.0.0/8, ::1 or localhost)";

/// `text` as a URL the service may call under `rules`, or what is wrong with it.
pub fn outbound_url(text: &str, rules: &UrlRules) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(rules.not_http.into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(rules.credentials.into());
    }
    match (
        rules.query_allowed,
        url.query().is_some(),
        url.fragment().is_some(),
    ) {
        (false, true, _) | (false, _, true) => {
            return Err("must not carry a query or fragment".into());
        }
        (true, _, true) => return Err("must not carry a fragment".into()),
        _ => {}
    }
    if let Some(problem) = rules.https_unless_loopback
        && url.scheme() == "http"
        && !is_loopback_host(&url)
    {
        return Err(problem.into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlRules = UrlRules {
        not_http: "must be an https:// URL",
        credentials: "must not carry a user name or password",
        query_allowed: false,
        https_unless_loopback: Some(HTTPS_UNLESS_LOOPBACK),
    };

    #[test]
    fn each_rule_refuses_what_it_names_and_never_quotes_the_url() {
        let lenient = UrlRules {
            query_allowed: true,
            https_unless_loopback: None,
            ..STRICT
        };
        let cases: [(&str, &UrlRules, Option<&str>); 12] = [
            ("https://proof.example/v1", &STRICT, None),
            ("http://127.0.0.1:8080", &STRICT, None),
            ("http://[::1]:8080", &STRICT, None),
            ("http://localhost", &STRICT, None),
            ("http://proof.example", &STRICT, Some(HTTPS_UNLESS_LOOPBACK)),
            ("http://proof.example", &lenient, None),
            (
                "ftp://proof.example",
                &STRICT,
                Some("must be an https:// URL"),
            ),
            (
                "https://u:secret@proof.example",
                &STRICT,
                Some("must not carry a user name"),
            ),
            (
                "https://proof.example/?a=1",
                &STRICT,
                Some("must not carry a query or fragment"),
            ),
            ("https://proof.example/?a=1", &lenient, None),
            (
                "https://proof.example/#x",
                &lenient,
                Some("must not carry a fragment"),
            ),
            ("not a url secret", &STRICT, Some("is not a valid URL")),
        ];
        for (text, rules, refusal) in cases {
            match (outbound_url(text, rules), refusal) {
                (Ok(_), None) => {}
                (Err(problem), Some(expected)) => {
                    assert!(problem.starts_with(expected), "{text}: {problem}");
                    assert!(!problem.contains("secret"), "{text}: {problem}");
                }
                (outcome, _) => panic!("{text}: {outcome:?}, expected {refusal:?}"),
            }
        }
    }
}
