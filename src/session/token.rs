//! Where a session token travels: the session cookie, or `Authorization: Bearer`. Read without
//! allocating, so that requests without a session cost nothing.

use actix_web::http::header::{self, HeaderMap, HeaderValue};

/// The session token of a request: the cookie named `cookie` first, then, when `bearer` is set,
/// `Authorization: Bearer`. Every token-based source reads it this way.
pub(super) fn session_token<'a>(
    headers: &'a HeaderMap,
    cookie: &str,
    bearer: bool,
) -> Option<&'a str> {
    token_from_cookie_header(
        headers.get_all(header::COOKIE).map(HeaderValue::as_bytes),
        cookie,
    )
    .or_else(|| {
        if !bearer {
            return None;
        }
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| token_from_authorization(v.as_bytes()))
    })
}

/// Finds the session token in raw `Cookie` header lines without allocating, so that requests
/// without a session cost nothing.
///
/// Pairs are split on `;` and trimmed; the name must match exactly (so `session2` does not match
/// `session`), the first match wins and a value wrapped in double quotes is unwrapped. A line that
/// is not UTF-8 is skipped rather than failing the whole lookup. A matching cookie with an empty
/// value counts as absent, since that is how a logged-out session is usually cleared.
pub fn token_from_cookie_header<'a>(
    cookie_header_lines: impl IntoIterator<Item = &'a [u8]>,
    cookie_name: &str,
) -> Option<&'a str> {
    if cookie_name.is_empty() {
        return None;
    }
    for line in cookie_header_lines {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        for pair in line.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim_ascii() != cookie_name {
                continue;
            }
            let value = value.trim_ascii();
            let value = value
                .strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(value);
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

/// Extracts the token from an `Authorization: Bearer <token>` value without allocating.
///
/// The scheme is case-insensitive (RFC 9110 §11.1); scheme and token are separated by one or more
/// spaces (RFC 6750 `1*SP`); exactly one token must follow, made of visible ASCII only. Anything
/// else yields `None`, i.e. the request is treated as carrying no bearer token.
pub fn token_from_authorization(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim_ascii();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- cookie and bearer extraction ---

    fn cookie<'a>(lines: &[&'a [u8]], name: &str) -> Option<&'a str> {
        token_from_cookie_header(lines.iter().copied(), name)
    }

    #[test]
    fn cookie_found_among_several() {
        let line: &[u8] = b"theme=dark; session=abc.def.ghi; lang=en";
        assert_eq!(cookie(&[line], "session"), Some("abc.def.ghi"));
        assert_eq!(cookie(&[b"session=first"], "session"), Some("first"));
        assert_eq!(
            cookie(&[b"a=1;session=tight;b=2"], "session"),
            Some("tight")
        );
        assert_eq!(
            cookie(&[b"  session = spaced  ; x=1"], "session"),
            Some("spaced")
        );
    }

    #[test]
    fn cookie_across_multiple_lines() {
        let lines: [&[u8]; 3] = [b"a=1; b=2", b"c=3", b"session=tok; d=4"];
        assert_eq!(cookie(&lines, "session"), Some("tok"));
        assert_eq!(cookie(&lines, "c"), Some("3"));
        assert_eq!(cookie(&lines, "missing"), None);
        assert_eq!(cookie(&[], "session"), None);
    }

    #[test]
    fn cookie_name_must_match_exactly_and_first_wins() {
        let lines: [&[u8]; 2] = [
            b"session2=nope; my_session=nope; Session=nope",
            b"session=yes",
        ];
        assert_eq!(cookie(&lines, "session"), Some("yes"));
        let lines: [&[u8]; 2] = [b"session=first; session=second", b"session=third"];
        assert_eq!(cookie(&lines, "session"), Some("first"));
        assert_eq!(cookie(&[b"session2=x"], "session"), None);
        assert_eq!(cookie(&[b"xsession=x"], "session"), None);
        assert_eq!(cookie(&[b"session=x"], "session2"), None);
        assert_eq!(cookie(&[b"session=x"], ""), None);
        // A value may itself contain '='.
        assert_eq!(cookie(&[b"session=a=b=="], "session"), Some("a=b=="));
    }

    #[test]
    fn cookie_quoted_and_empty_values() {
        assert_eq!(
            cookie(&[br#"session="quoted.tok""#], "session"),
            Some("quoted.tok")
        );
        assert_eq!(cookie(&[br#"session=""#], "session"), Some("\""));
        assert_eq!(
            cookie(&[br#"session="unbalanced"#], "session"),
            Some("\"unbalanced")
        );
        assert_eq!(cookie(&[br#"session="""#], "session"), None);
        assert_eq!(cookie(&[b"session=; other=1"], "session"), None);
        assert_eq!(cookie(&[b"session"], "session"), None);
        assert_eq!(cookie(&[b";;; ;"], "session"), None);
    }

    #[test]
    fn cookie_non_utf8_line_is_skipped() {
        let bad: &[u8] = b"session=\xff\xfe; x=1";
        let good: &[u8] = b"session=good";
        assert_eq!(cookie(&[bad, good], "session"), Some("good"));
        assert_eq!(cookie(&[bad], "session"), None);
    }

    #[test]
    fn bearer_token_extraction() {
        assert_eq!(
            token_from_authorization(b"Bearer abc.def.ghi"),
            Some("abc.def.ghi")
        );
        assert_eq!(token_from_authorization(b"bearer abc"), Some("abc"));
        assert_eq!(token_from_authorization(b"BEARER abc"), Some("abc"));
        assert_eq!(token_from_authorization(b"  Bearer abc  "), Some("abc"));
        assert_eq!(token_from_authorization(b"Bearer  abc"), Some("abc"));
        assert_eq!(
            token_from_authorization(b"Bearer a-_.~+/b=="),
            Some("a-_.~+/b==")
        );
    }

    #[test]
    fn bearer_rejects_malformed_values() {
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer  ",
            b"Bearerabc",
            b"Basic abc",
            b"Bearer abc def",
            b"Bearer abc\tdef",
            b"Bearer\tabc",
            b"Token abc",
            b"Bearer \xff\xfe",
            b"Bearer t\xc3\xb6ken",
            b"Bearer a\x00b",
        ] {
            assert_eq!(token_from_authorization(bad), None, "{bad:?}");
        }
    }
}
