//! What of the browser's request reaches the partner's app: the cookies named in
//! `session.forward.cookies` and, when `forward_authorization` is set, the `Authorization` header.
//! Nothing else. Also their keyed hash, under which the app's answer is remembered.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::session::SessionError;

/// Which credentials of the browser's request are forwarded.
#[derive(Debug, Clone)]
pub(super) struct CredentialRules {
    /// Cookie names, each a valid RFC 6265 token (checked by the configuration).
    pub cookies: Vec<String>,
    pub authorization: bool,
}

/// The credentials one request forwards, as the header values they travel in. Both are marked
/// sensitive, so no `Debug` of a header map ever shows them.
pub(super) struct Credentials {
    /// A fresh `Cookie` line made of the named cookies only.
    pub cookie: Option<HeaderValue>,
    pub authorization: Option<HeaderValue>,
}

impl CredentialRules {
    /// Whether the request carries any of the forwarded credentials, found without copying them.
    pub fn presented(&self, headers: &HeaderMap) -> bool {
        named_pairs(
            headers.get_all(header::COOKIE).map(HeaderValue::as_bytes),
            &self.cookies,
        )
        .next()
        .is_some()
            || (self.authorization && headers.contains_key(header::AUTHORIZATION))
    }

    /// The request's forwarded credentials. `Missing` when it carries none of them (the app is
    /// then not asked at all); `Invalid` when it sends `Authorization` twice, which no client that
    /// means one identity does, or a forwarded cookie whose value holds a comma.
    pub fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, SessionError> {
        let cookie = named_cookies(
            headers.get_all(header::COOKIE).map(HeaderValue::as_bytes),
            &self.cookies,
        )?;
        let cookie = match cookie {
            Some(line) => Some(sensitive(&line)?),
            None => None,
        };
        let authorization = if self.authorization {
            let mut values = headers.get_all(header::AUTHORIZATION);
            match (values.next(), values.next()) {
                (Some(_), Some(_)) => return Err(SessionError::Invalid),
                (Some(value), None) if !value.as_bytes().trim_ascii().is_empty() => {
                    Some(sensitive(value.as_bytes())?)
                }
                _ => None,
            }
        } else {
            None
        };
        if cookie.is_none() && authorization.is_none() {
            return Err(SessionError::Missing);
        }
        Ok(Credentials {
            cookie,
            authorization,
        })
    }
}

fn sensitive(bytes: &[u8]) -> Result<HeaderValue, SessionError> {
    // The bytes come from a header the HTTP parser accepted, so they are a valid value again;
    // refusing rather than panicking keeps that an assumption, not a crash.
    let mut value = HeaderValue::from_bytes(bytes).map_err(|_| SessionError::Invalid)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The `Cookie` line the app gets: every pair of the browser's `Cookie` lines whose name is one of
/// `names`, in the browser's order, as `name=value` joined by `; `. Values are passed on as sent
/// (quotes included), since the app parses them as it parses its own cookies; a cookie sent twice
/// (say for two paths) is passed on twice, so the app chooses as it always does. A pair with an
/// empty value counts as absent: that is how a signed-out session is usually cleared. `None` when
/// no named cookie is present.
///
/// A named cookie whose value holds a comma makes the whole line `Invalid`: no cookie value may
/// hold one (RFC 6265), and an app whose parser also splits on commas (as older ones did, after
/// RFC 2965) would read the rest as cookies of their own, which the browser could then choose
/// although they are not among `names`.
pub(super) fn named_cookies<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    names: &[String],
) -> Result<Option<Vec<u8>>, SessionError> {
    let mut out = Vec::new();
    for (name, value) in named_pairs(lines, names) {
        if value.contains(&b',') {
            return Err(SessionError::Invalid);
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(name);
        out.push(b'=');
        out.extend_from_slice(value);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The `(name, value)` pairs of the `Cookie` lines whose name is one of `names` and whose value is
/// not empty, trimmed, in the browser's order.
fn named_pairs<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    names: &[String],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    lines
        .into_iter()
        .flat_map(|line| line.split(|&b| b == b';'))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (!value.is_empty() && names.iter().any(|wanted| wanted.as_bytes() == name))
                .then_some((name, value))
        })
}

/// The key the app's answer is remembered under: HMAC-SHA256 of the forwarded credentials under a
/// secret made for this process. The cache holds this, never a cookie, and it means nothing
/// outside the process.
pub(super) type CredentialsKey = [u8; 32];

pub(super) struct CredentialHasher {
    mac: Hmac<Sha256>,
}

impl CredentialHasher {
    pub fn new() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            mac: Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC takes a key of any length"),
        }
    }

    /// Each credential is tagged and length-prefixed, so no two sets of credentials hash alike by
    /// moving bytes from one header to the other.
    pub fn key(&self, credentials: &Credentials) -> CredentialsKey {
        let mut mac = self.mac.clone();
        for value in [&credentials.cookie, &credentials.authorization] {
            match value {
                Some(value) => {
                    let bytes = value.as_bytes();
                    mac.update(&[1]);
                    mac.update(&(bytes.len() as u64).to_be_bytes());
                    mac.update(bytes);
                }
                None => mac.update(&[0]),
            }
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn cookies(lines: &[&'static [u8]], wanted: &[&str]) -> Option<String> {
        named_cookies(lines.iter().copied(), &names(wanted))
            .unwrap()
            .map(|line| String::from_utf8(line).unwrap())
    }

    #[test]
    fn only_the_named_cookies_are_kept_in_the_browsers_order() {
        let line: &[u8] = b"theme=dark; _app_session=abc%3D%3D--x; tracking=1; remember=r1";
        assert_eq!(
            cookies(&[line], &["remember", "_app_session"]),
            Some("_app_session=abc%3D%3D--x; remember=r1".into())
        );
        assert_eq!(
            cookies(&[b"a=1", b"sid=s; b=2", b"c=3"], &["sid"]),
            Some("sid=s".into())
        );
        assert_eq!(cookies(&[b"theme=dark"], &["sid"]), None);
        assert_eq!(cookies(&[], &["sid"]), None);
    }

    #[test]
    fn names_match_exactly_and_values_pass_as_sent() {
        assert_eq!(
            cookies(&[b"sid2=x; xsid=y; SID=z; sid=\"q=1\""], &["sid"]),
            Some("sid=\"q=1\"".into())
        );
        assert_eq!(
            cookies(&[b"  sid =  spaced  ;other=1"], &["sid"]),
            Some("sid=spaced".into())
        );
        // Sent twice (two paths): both go on, the app picks as it always does.
        assert_eq!(
            cookies(&[b"sid=a; sid=b"], &["sid"]),
            Some("sid=a; sid=b".into())
        );
    }

    #[test]
    fn empty_and_malformed_pairs_are_absent() {
        assert_eq!(cookies(&[b"sid=; sid"], &["sid"]), None);
        assert_eq!(cookies(&[b";;; ;"], &["sid"]), None);
        assert_eq!(
            cookies(&[b"sid=; other=1; sid=ok"], &["sid"]),
            Some("sid=ok".into())
        );
    }

    #[test]
    fn non_utf8_values_pass_byte_for_byte() {
        let line: &[u8] = b"sid=\xe9t\xe9; x=1";
        assert_eq!(
            named_cookies([line], &names(&["sid"])),
            Ok(Some(b"sid=\xe9t\xe9".to_vec()))
        );
    }

    #[test]
    fn a_named_cookie_with_a_comma_in_its_value_is_invalid_and_another_is_ignored() {
        for line in [
            &b"sid=a,b"[..],
            b"sid=a, other=b",
            b"sid=\"a,b\"",
            b"x=1; sid=,",
            b"sid=ok; sid=a,b",
        ] {
            assert_eq!(
                named_cookies([line], &names(&["sid"])),
                Err(SessionError::Invalid),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            cookies(&[b"theme=dark,light; sid=s"], &["sid"]),
            Some("sid=s".into())
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn rules(authorization: bool) -> CredentialRules {
        CredentialRules {
            cookies: names(&["sid"]),
            authorization,
        }
    }

    #[test]
    fn no_forwarded_credential_is_missing() {
        let only_others = headers(&[("cookie", "theme=dark"), ("authorization", "Bearer t")]);
        assert!(matches!(
            rules(false).credentials(&only_others),
            Err(SessionError::Missing)
        ));
        assert!(matches!(
            rules(true).credentials(&headers(&[("authorization", "  ")])),
            Err(SessionError::Missing)
        ));
    }

    #[test]
    fn presented_is_whether_any_forwarded_credential_is_there() {
        let only_others = headers(&[("cookie", "theme=dark"), ("authorization", "Bearer t")]);
        assert!(!rules(false).presented(&only_others));
        assert!(rules(true).presented(&only_others));
        assert!(!rules(false).presented(&headers(&[("cookie", "sid=; theme=dark")])));
        assert!(rules(false).presented(&headers(&[("cookie", "theme=dark; sid=s")])));
        assert!(!rules(true).presented(&headers(&[])));
    }

    #[test]
    fn authorization_is_forwarded_only_when_configured_and_sent_once() {
        let request = headers(&[("cookie", "sid=s"), ("authorization", "Bearer t")]);
        let without = rules(false).credentials(&request).unwrap();
        assert!(without.authorization.is_none());
        let with = rules(true).credentials(&request).unwrap();
        let authorization = with.authorization.unwrap();
        assert_eq!(authorization, "Bearer t");
        assert!(authorization.is_sensitive());
        assert!(with.cookie.unwrap().is_sensitive());
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(matches!(
            rules(true).credentials(&twice),
            Err(SessionError::Invalid)
        ));
    }

    #[test]
    fn keys_tell_credentials_apart_and_hold_none_of_them() {
        let hasher = CredentialHasher::new();
        let key = |cookie: Option<&'static str>, authorization: Option<&'static str>| {
            hasher.key(&Credentials {
                cookie: cookie.map(HeaderValue::from_static),
                authorization: authorization.map(HeaderValue::from_static),
            })
        };
        assert_eq!(key(Some("sid=a"), None), key(Some("sid=a"), None));
        assert_ne!(key(Some("sid=a"), None), key(Some("sid=b"), None));
        assert_ne!(key(Some("sid=a"), None), key(None, Some("sid=a")));
        assert_ne!(key(Some("sid=a"), Some("b")), key(Some("sid=ab"), None));
        // Another process, another secret: the same cookie, another key.
        let other = CredentialHasher::new().key(&Credentials {
            cookie: Some(HeaderValue::from_static("sid=a")),
            authorization: None,
        });
        assert_ne!(key(Some("sid=a"), None), other);
    }
}
