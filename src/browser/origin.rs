//! Browser origins: the partner's allow-list, the decision about a request's `Origin`, and the
//! form every configured origin (the partner's pages, the `Origin` we present to Proof, redirect
//! targets) is normalised to.

use actix_web::http::header::{self, HeaderMap, HeaderValue};

/// Turns a configured origin into the exact form a browser sends in `Origin`
/// (`scheme://host[:port]`, lower-case host, default port left out), so a plain byte comparison
/// on the request path is enough.
pub fn normalise_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("is required: an origin such as \"https://app.example.com\"".into());
    }
    if value == "*" || value == "null" {
        return Err(format!("{value:?} is not allowed: list exact origins"));
    }
    let url = url::Url::parse(value)
        .map_err(|_| format!("{value:?} is not an absolute http or https origin"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{value:?} must use http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() || authority_has_userinfo(value) {
        return Err(format!(
            "{value:?} must not contain a user name or password"
        ));
    }
    // A trailing "/" does not change the origin; any other path, a query or a fragment suggests
    // path-level matching, which an origin check does not do.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{value:?} must be an origin (scheme://host[:port]) without a path"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Whether the authority of an http(s) URL string contains `@`, even an empty userinfo
/// (`https://@host`) that the URL parser drops. As in the WHATWG rule, any number of slashes may
/// follow the scheme.
pub fn authority_has_userinfo(raw: &str) -> bool {
    let after_scheme = raw.split_once(':').map_or(raw, |(_, rest)| rest);
    let authority_start = after_scheme.trim_start_matches(['/', '\\']);
    let authority_end = authority_start
        .find(['/', '\\', '?', '#'])
        .unwrap_or(authority_start.len());
    authority_start[..authority_end].contains('@')
}

/// The exact origins whose pages may call the service with the user's cookie.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            let origin = normalise_origin(entry.as_ref())?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self(origins))
    }

    /// Exact match against the request's `Origin` bytes.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0.iter().any(|allowed| allowed.as_bytes() == origin)
    }

    /// The one decision about a request's `Origin` header that CORS and the CSRF check share.
    pub fn judge<'a>(&self, headers: &'a HeaderMap) -> CallerOrigin<'a> {
        let mut origins = headers.get_all(header::ORIGIN);
        match (origins.next(), origins.next()) {
            (Some(origin), None) if self.allows(origin.as_bytes()) => CallerOrigin::Allowed(origin),
            (None, _) => CallerOrigin::Missing,
            _ => CallerOrigin::Foreign,
        }
    }
}

/// What a request's `Origin` says about its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerOrigin<'a> {
    /// Exactly one `Origin`, one of the partner's.
    Allowed(&'a HeaderValue),
    /// No `Origin` at all: a server-to-server caller, or a same-origin `GET`.
    Missing,
    /// Another origin, `null`, or more than one `Origin` header.
    Foreign,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_to_what_browsers_send() {
        assert_eq!(
            normalise_origin("HTTPS://App.Example.com:443").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalise_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(
            normalise_origin("http://[::1]:8080").unwrap(),
            "http://[::1]:8080"
        );
        assert_eq!(
            normalise_origin("https://app.example.com/").unwrap(),
            "https://app.example.com"
        );
    }

    #[test]
    fn wildcards_paths_and_other_schemes_are_refused() {
        for bad in [
            "*",
            "null",
            "",
            "https://app.example.com/path",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "https://@app.example.com",
            "ftp://app.example.com",
            "app.example.com",
        ] {
            assert!(normalise_origin(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn allows_is_an_exact_match() {
        let allowed = AllowedOrigins::parse(&["https://app.example.com"]).unwrap();
        assert!(allowed.allows(b"https://app.example.com"));
        assert!(!allowed.allows(b"https://app.example.com.evil.test"));
        assert!(!allowed.allows(b"http://app.example.com"));
        assert!(!allowed.allows(b"https://app.example.com:8443"));
        assert!(!allowed.allows(b"null"));
    }
}
