//! What the app's answer means: a 200 with JSON names the user (read by the configured JSON
//! pointers), 401 and 403 say these credentials have no session, and anything else says the app
//! cannot be relied on right now, which is not the user's fault (503 `session_backend`).
//!
//! A 200 that does not have the user where the configuration says (not JSON, a field missing,
//! `null` or of the wrong type) is a misconfigured endpoint or pointer, not a signed-out user:
//! it fails every checkout alike, so it is a 503 and a warning, never a 401 that would send users
//! to a sign-in that cannot help. A user id or email that is there but breaks the session rules
//! (a control or invisible character, not an address) concerns that user only: it is refused as
//! the jwt source refuses such claims, 401 `invalid_session`.

use std::fmt;

use serde_json::Value;

use crate::session::user::is_valid_user_id;
use crate::session::{SessionError, SessionUser, UserEmail};

/// A session answer is a few hundred bytes; the bound keeps a wrong endpoint (a page, a file) from
/// costing memory.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where the user id and email are in the app's JSON answer: RFC 6901 pointers, checked by
/// [`is_json_pointer`] at start-up.
#[derive(Debug, Clone)]
pub(super) struct UserFields {
    pub user_id: String,
    pub email: String,
}

/// One of the two fields, named by its setting in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    UserId,
    Email,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UserId => "session.forward.user_id_field",
            Self::Email => "session.forward.email_field",
        })
    }
}

/// Why a call to the app named no user. Holds nothing of the credentials nor of the answer's
/// values, so it can be logged as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Failure {
    #[error("the app answered {status}: no session for these credentials")]
    NoSession { status: u16 },
    #[error(
        "the app's {field} is refused by the session rules (empty, over 256 characters, a control or invisible character, or not an address)"
    )]
    NotAcceptable { field: Field },
    #[error(
        "the app answered {status}: only 200, 401 and 403 are understood, and redirects are not followed"
    )]
    Status { status: u16 },
    #[error("the app's 200 is not JSON")]
    NotJson,
    #[error("the app's 200 has {found} at {field}")]
    MissingField { field: Field, found: &'static str },
    #[error("the app's answer is over {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the app did not answer within session.forward.timeout_ms")]
    Timeout,
    #[error(
        "not sent: session.forward.max_connections calls to the app were in flight until session.forward.timeout_ms was over"
    )]
    Busy,
    #[error("the app could not be reached")]
    Unreachable,
    #[error("the connection to the app broke before its answer was complete")]
    Broken,
}

impl Failure {
    /// 401 for what concerns these credentials or this user; 503 for a backend that cannot be
    /// relied on.
    pub fn session_error(self) -> SessionError {
        match self {
            Self::NoSession { .. } | Self::NotAcceptable { .. } => SessionError::Invalid,
            _ => SessionError::Backend,
        }
    }
}

/// The user a 200's body names.
///
/// The user id may be a JSON string or integer (a Rails or Django primary key is a number); an
/// integer becomes its decimal string. The email must be a string.
pub(super) fn user_from_answer(body: &[u8], fields: &UserFields) -> Result<SessionUser, Failure> {
    let answer: Value = serde_json::from_slice(body).map_err(|_| Failure::NotJson)?;
    let user_id = match answer.pointer(&fields.user_id) {
        Some(Value::String(id)) if is_valid_user_id(id) => id.clone(),
        Some(Value::String(_)) => {
            return Err(Failure::NotAcceptable {
                field: Field::UserId,
            });
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        other => {
            return Err(Failure::MissingField {
                field: Field::UserId,
                found: describe(other),
            });
        }
    };
    let email = match answer.pointer(&fields.email) {
        Some(Value::String(email)) => UserEmail::parse(email).ok_or(Failure::NotAcceptable {
            field: Field::Email,
        })?,
        other => {
            return Err(Failure::MissingField {
                field: Field::Email,
                found: describe(other),
            });
        }
    };
    Ok(SessionUser { user_id, email })
}

/// What stands where a field was expected, for the log: its kind, never its value.
fn describe(value: Option<&Value>) -> &'static str {
    match value {
        None => "nothing",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number that is not an integer",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

/// An RFC 6901 JSON pointer to a member: `/` followed by reference tokens separated by `/`, where
/// `~` only appears as the escapes `~0` (`~`) and `~1` (`/`). The empty pointer (the whole answer)
/// is refused: a user id or email is never the whole answer.
pub fn is_json_pointer(pointer: &str) -> bool {
    let Some(tokens) = pointer.strip_prefix('/') else {
        return false;
    };
    let mut chars = tokens.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(user_id: &str, email: &str) -> UserFields {
        UserFields {
            user_id: user_id.into(),
            email: email.into(),
        }
    }

    fn read(body: &str, user_id: &str, email: &str) -> Result<SessionUser, Failure> {
        user_from_answer(body.as_bytes(), &fields(user_id, email))
    }

    #[test]
    fn the_user_is_read_by_pointer_string_or_integer() {
        let user = read(r#"{"id":"u-1","email":"a@example.org"}"#, "/id", "/email").unwrap();
        assert_eq!(user.user_id, "u-1");
        assert_eq!(user.email.expose(), "a@example.org");
        let nested = r#"{"user":{"id":42,"emails":["a@example.org"]},"csrf":"x"}"#;
        let user = read(nested, "/user/id", "/user/emails/0").unwrap();
        assert_eq!(user.user_id, "42");
        let negative = read(r#"{"id":-7,"email":"a@example.org"}"#, "/id", "/email").unwrap();
        assert_eq!(negative.user_id, "-7");
        let escaped = r#"{"a/b":{"m~n":"u-2"},"email":"a@example.org"}"#;
        assert_eq!(
            read(escaped, "/a~1b/m~0n", "/email").unwrap().user_id,
            "u-2"
        );
    }

    #[test]
    fn an_answer_without_the_configured_fields_is_the_backends_fault() {
        for (body, expected) in [
            ("<html>sign in</html>", Failure::NotJson),
            ("", Failure::NotJson),
            (
                r#"{"email":"a@example.org"}"#,
                Failure::MissingField {
                    field: Field::UserId,
                    found: "nothing",
                },
            ),
            (
                r#"{"id":null,"email":"a@example.org"}"#,
                Failure::MissingField {
                    field: Field::UserId,
                    found: "null",
                },
            ),
            (
                r#"{"id":1.5,"email":"a@example.org"}"#,
                Failure::MissingField {
                    field: Field::UserId,
                    found: "a number that is not an integer",
                },
            ),
            (
                r#"{"id":"u","email":["a@example.org"]}"#,
                Failure::MissingField {
                    field: Field::Email,
                    found: "an array",
                },
            ),
            (
                r#"["u","a@example.org"]"#,
                Failure::MissingField {
                    field: Field::UserId,
                    found: "nothing",
                },
            ),
        ] {
            let failure = read(body, "/id", "/email").unwrap_err();
            assert_eq!(failure, expected, "{body}");
            assert_eq!(failure.session_error(), SessionError::Backend);
        }
    }

    #[test]
    fn values_the_session_rules_refuse_are_invalid_sessions() {
        for (body, field) in [
            (r#"{"id":"","email":"a@example.org"}"#, Field::UserId),
            (
                r#"{"id":"u\u202e1","email":"a@example.org"}"#,
                Field::UserId,
            ),
            (r#"{"id":"u\n1","email":"a@example.org"}"#, Field::UserId),
            (r#"{"id":"u","email":"not-an-address"}"#, Field::Email),
            (r#"{"id":"u","email":"a b@example.org"}"#, Field::Email),
        ] {
            let failure = read(body, "/id", "/email").unwrap_err();
            assert_eq!(failure, Failure::NotAcceptable { field }, "{body}");
            assert_eq!(failure.session_error(), SessionError::Invalid);
        }
        let long = format!(r#"{{"id":"{}","email":"a@example.org"}}"#, "x".repeat(257));
        assert_eq!(
            read(&long, "/id", "/email").unwrap_err(),
            Failure::NotAcceptable {
                field: Field::UserId
            }
        );
    }

    #[test]
    fn failures_never_show_a_value() {
        let body = r#"{"id":"u\u0000secret-id","email":"secret@example.org"}"#;
        let failure = read(body, "/id", "/email").unwrap_err();
        let text = failure.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("session.forward.user_id_field"), "{text}");
    }

    #[test]
    fn json_pointers_follow_rfc_6901() {
        for good in [
            "/id",
            "/user/id",
            "/a~0b",
            "/a~1b",
            "/",
            "/0",
            "/user/emails/0",
            "//",
        ] {
            assert!(is_json_pointer(good), "{good:?}");
        }
        for bad in ["", "id", "user/id", "/a~", "/a~2", "/~x", "#/id"] {
            assert!(!is_json_pointer(bad), "{bad:?}");
        }
    }
}
