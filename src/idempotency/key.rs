//! The `Idempotency-Key` request header: a Structured Field string (RFC 8941, as in
//! draft-ietf-httpapi-idempotency-key-header), `"…"`, of 1 to 255 characters.

use actix_web::http::header::HeaderMap;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

const MAX_KEY_CHARS: usize = 255;

/// A client's idempotency key, unescaped. Only ever hashed, never logged or stored as is.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(Box<str>);

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKey(..)")
    }
}

impl IdempotencyKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Why an `Idempotency-Key` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "Idempotency-Key must be a quoted string of 1 to 255 printable ASCII characters, e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\""
    )]
    Malformed,
    #[error("Idempotency-Key must be sent once")]
    Repeated,
}

/// The request's key: `Ok(None)` without the header.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    parse_sf_string(value.as_bytes())
        .map(|key| Some(IdempotencyKey(key.into_boxed_str())))
        .ok_or(KeyError::Malformed)
}

/// An sf-string with optional surrounding spaces: `"` printable ASCII with `\"` and `\\` as the
/// only escapes `"`; its content must be 1 to 255 characters once unescaped.
fn parse_sf_string(value: &[u8]) -> Option<String> {
    let value = value.trim_ascii();
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut key = String::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&byte) = bytes.next() {
        let byte = match byte {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => escaped,
                _ => return None,
            },
            b'"' => return None,
            0x20..=0x7e => byte,
            _ => return None,
        };
        key.push(char::from(byte));
    }
    (1..=MAX_KEY_CHARS).contains(&key.len()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn parse(value: &[u8]) -> Option<String> {
        parse_sf_string(value)
    }

    #[test]
    fn quoted_strings_are_keys() {
        assert_eq!(parse(b"\"abc-123\"").as_deref(), Some("abc-123"));
        assert_eq!(parse(b" \"a b\" ").as_deref(), Some("a b"));
        assert_eq!(
            parse(br#""say \"hi\" \\""#).as_deref(),
            Some(r#"say "hi" \"#)
        );
        let longest = format!("\"{}\"", "k".repeat(255));
        assert_eq!(parse(longest.as_bytes()).map(|k| k.len()), Some(255));
    }

    #[test]
    fn anything_else_is_malformed() {
        let too_long = format!("\"{}\"", "k".repeat(256));
        for bad in [
            &b"abc"[..],
            b"\"\"",
            b"\"abc",
            b"abc\"",
            b"\"a\"b\"",
            b"\"a\\b\"",
            b"\"a\\\"",
            b"\"tab\there\"",
            b"\"caf\xc3\xa9\"",
            b"\"a\x7f\"",
            too_long.as_bytes(),
            b"",
            b"\"",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_header_is_optional_and_sent_once() {
        let name = HeaderName::from_static(IDEMPOTENCY_KEY);
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers), Ok(None));
        headers.insert(name.clone(), HeaderValue::from_static("\"one\""));
        assert!(idempotency_key(&headers).unwrap().is_some());
        headers.append(name, HeaderValue::from_static("\"two\""));
        assert_eq!(idempotency_key(&headers), Err(KeyError::Repeated));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let key = parse(b"\"secret-ish\"").map(|k| IdempotencyKey(k.into_boxed_str()));
        assert!(!format!("{key:?}").contains("secret-ish"));
    }
}
