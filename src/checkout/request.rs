//! Parsing and validation of the browser's `POST /start-checkout` body.
//!
//! The browser is untrusted: it may only choose *what* to buy (network,
//! currency, amount, optional type and redirect URL). Everything that says
//! *who* is buying — partner user id, e-mail, client IP, wallet address — is
//! filled in on the server, so any attempt to send those fields is refused
//! rather than silently ignored. That makes a tampered or outdated client fail
//! loudly instead of believing its values were used.
//!
//! Every refusal is a [`ValidationError`] naming the offending field, with a
//! message that names the field but never repeats the value the browser sent:
//! error messages end up in responses and logs, and reflecting arbitrary user
//! strings there invites log injection and cross-site scripting.
//!
//! Decisions worth knowing:
//! * `null` is refused for every field ("must be a string"): an explicit null
//!   is more likely a client bug than a deliberate "absent".
//! * Structural problems are reported before value problems. The body must
//!   first be one well-formed JSON object; then the first unknown, duplicate
//!   or non-string field (in document order) is reported; then missing
//!   required fields; then field values, in the order network, currency,
//!   amount, type, redirect_url.
//! * `amount` is kept as the exact string the user sent (`"007"` and `"1.50"`
//!   are forwarded as-is) but compared against `max_amount` by value, exactly,
//!   without floating point.
//! * `redirect_url` is forwarded in its normalised form (as serialised by the
//!   WHATWG URL parser in the `url` crate), not as sent: the origin check is
//!   done on the parsed URL, and forwarding that same serialisation means the
//!   upstream cannot parse the string differently from us (for example into
//!   another host).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use url::Url;

use super::amount::{Amount, check_amount};
use super::policy::{CheckoutPolicy, CheckoutType, MAX_NAME_LEN, is_valid_name};
use crate::admission::ValidationError;
use crate::browser::origin::authority_has_userinfo;
use crate::idempotency::Fingerprint;
use crate::proof::WidgetSessionRequest;

/// Longest accepted `redirect_url`, a common practical limit for URLs.
const MAX_REDIRECT_URL_LEN: usize = 2048;
/// Longest unknown field name repeated back in an error message.
const MAX_REPORTED_FIELD_LEN: usize = 64;

/// A checked request: every field as the user sent it, validated.
///
/// The exception is `redirect_url`, which holds the normalised serialisation
/// of the parsed URL (see the module docs for why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub network: String,
    pub currency: String,
    pub amount: Amount,
    pub checkout_type: Option<CheckoutType>,
    pub redirect_url: Option<String>,
}

impl CheckoutRequest {
    /// Proof's session body for this checkout and the server-side identity; `client_ip` and
    /// `address` start absent and are set by the caller when known.
    pub fn widget_session<'a>(
        &'a self,
        partner_user_id: &'a str,
        user_email: &'a str,
    ) -> WidgetSessionRequest<'a> {
        WidgetSessionRequest {
            partner_user_id,
            user_email,
            network: &self.network,
            currency: &self.currency,
            amount: self.amount.as_str(),
            checkout_type: self.checkout_type.map(|t| t.as_str()),
            redirect_url: self.redirect_url.as_deref(),
            client_ip: None,
            address: None,
        }
    }

    /// What makes two requests the same checkout, for double-submit protection: every field as
    /// checked (so the same checkout in other JSON spelling is the same), the absent ones too.
    pub fn fingerprint(&self) -> Fingerprint {
        let optional = |value: Option<&str>| -> [u8; 1] { [u8::from(value.is_some())] };
        let checkout_type = self.checkout_type.map(|t| t.as_str());
        let redirect_url = self.redirect_url.as_deref();
        Fingerprint::of(&[
            self.network.as_bytes(),
            self.currency.as_bytes(),
            self.amount.as_str().as_bytes(),
            &optional(checkout_type),
            checkout_type.unwrap_or_default().as_bytes(),
            &optional(redirect_url),
            redirect_url.unwrap_or_default().as_bytes(),
        ])
    }
}

/// The fields the browser may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Network,
    Currency,
    Amount,
    Type,
    RedirectUrl,
}

impl Field {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "network" => Some(Self::Network),
            "currency" => Some(Self::Currency),
            "amount" => Some(Self::Amount),
            "type" => Some(Self::Type),
            "redirect_url" => Some(Self::RedirectUrl),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Currency => "currency",
            Self::Amount => "amount",
            Self::Type => "type",
            Self::RedirectUrl => "redirect_url",
        }
    }

    fn not_a_string(self) -> ValidationError {
        let message = match self {
            Self::Network => r#"network must be a string like "ethereum""#,
            Self::Currency => r#"currency must be a string like "usdc""#,
            Self::Amount => {
                r#"amount must be a string like "100" or "99.50" (JSON numbers are refused so the value is never rounded)"#
            }
            Self::Type => r#"type must be a string, "buy" or "sell""#,
            Self::RedirectUrl => {
                "redirect_url must be a string holding an absolute http or https URL"
            }
        };
        ValidationError::new(self.name(), message)
    }
}

/// Fields the server fills in itself; naming them in the refusal tells a
/// client developer why their field was refused.
const SERVER_SIDE_FIELDS: [&str; 4] = ["partner_user_id", "user_email", "client_ip", "address"];

/// A JSON object key: one of the known fields, or an unknown name already
/// made safe to repeat in a message.
enum Key {
    Known(Field),
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match Field::from_key(v) {
                    Some(field) => Key::Known(field),
                    None => Key::Unknown(sanitise_field_name(v)),
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Makes an unknown field name safe to repeat: at most 64 characters, with
/// control characters and invisible direction/zero-width marks removed so
/// the name cannot forge log lines or disguise itself.
fn sanitise_field_name(name: &str) -> String {
    name.chars()
        .filter(|&c| {
            !c.is_control()
                && !matches!(c,
                    '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
        })
        .take(MAX_REPORTED_FIELD_LEN)
        .collect()
}

fn unknown_field_error(name: String) -> ValidationError {
    let message = if SERVER_SIDE_FIELDS.contains(&name.as_str()) {
        format!("unknown field {name:?}: identity, client_ip and address are set by the server")
    } else {
        format!(
            "unknown field {name:?}: the accepted fields are network, currency, amount, type and redirect_url"
        )
    };
    ValidationError::new(name, message)
}

/// A JSON value read for a known field: the string (borrowed from the body
/// when it has no escapes) or a note that it was something else. Reading
/// every kind of value, rather than asking for a string, keeps the parser
/// positioned correctly so the error can name the field.
enum FieldValue<'de> {
    Str(Cow<'de, str>),
    NotString,
}

impl<'de> de::Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = FieldValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(FieldValue::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FieldValue::NotString)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(FieldValue::NotString)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(FieldValue::NotString)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The known fields as found in the body, before their values are checked.
#[derive(Default)]
struct RawFields<'de> {
    network: Option<Cow<'de, str>>,
    currency: Option<Cow<'de, str>>,
    amount: Option<Cow<'de, str>>,
    checkout_type: Option<Cow<'de, str>>,
    redirect_url: Option<Cow<'de, str>>,
}

impl<'de> RawFields<'de> {
    fn slot(&mut self, field: Field) -> &mut Option<Cow<'de, str>> {
        match field {
            Field::Network => &mut self.network,
            Field::Currency => &mut self.currency,
            Field::Amount => &mut self.amount,
            Field::Type => &mut self.checkout_type,
            Field::RedirectUrl => &mut self.redirect_url,
        }
    }
}

/// Walks the top-level object key by key, so unknown keys, duplicates and
/// non-string values are reported by name (derived deserialisers either lose
/// the field name in type errors or, via a map, silently keep the last of
/// duplicate keys).
///
/// A refusal is returned as `Ok(Err(..))` after reading the rest of the
/// object: the JSON parser checks that the object is closed once the visitor
/// returns, so stopping early would turn every refusal into a syntax error.
struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Result<RawFields<'de>, ValidationError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let refusal = match key {
                Key::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    Some(unknown_field_error(name))
                }
                Key::Known(field) if raw.slot(field).is_some() => {
                    map.next_value::<IgnoredAny>()?;
                    let name = field.name();
                    Some(ValidationError::new(
                        name,
                        format!("duplicate field {name:?}: each field may appear only once"),
                    ))
                }
                Key::Known(field) => match map.next_value::<FieldValue<'de>>()? {
                    FieldValue::Str(s) => {
                        *raw.slot(field) = Some(s);
                        None
                    }
                    FieldValue::NotString => Some(field.not_a_string()),
                },
            };
            if let Some(err) = refusal {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Err(err));
            }
        }
        Ok(Ok(raw))
    }
}

/// Turns a JSON syntax or shape error into a `body` refusal. serde_json's own
/// messages can quote parts of the input, so they are not passed on; the
/// position is, as it helps without echoing anything.
fn body_json_error(err: &serde_json::Error) -> ValidationError {
    match err.classify() {
        serde_json::error::Category::Eof => {
            ValidationError::body("body is incomplete JSON: it ends before the object is closed")
        }
        serde_json::error::Category::Syntax => ValidationError::body(format!(
            "body is not valid JSON (error at line {}, column {})",
            err.line(),
            err.column()
        )),
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            ValidationError::body("body must be a JSON object")
        }
    }
}

fn parse_body(body: &[u8]) -> Result<RawFields<'_>, ValidationError> {
    if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(ValidationError::body(
            "body must be a JSON object, but the request body is empty",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = (&mut de)
        .deserialize_map(BodyVisitor)
        .map_err(|e| body_json_error(&e))?;
    // Anything after the object is refused even when the object itself was:
    // the body is judged as JSON before its fields are.
    de.end().map_err(|_| {
        ValidationError::body("body must be a single JSON object with nothing after it")
    })?;
    fields
}

/// Parses and validates the `POST /start-checkout` body against `policy`.
///
/// See the module docs for the order in which problems are reported.
pub fn parse_checkout_request(
    body: &[u8],
    policy: &CheckoutPolicy,
) -> Result<CheckoutRequest, ValidationError> {
    let raw = parse_body(body)?;

    let network = required(raw.network, Field::Network)?;
    let currency = required(raw.currency, Field::Currency)?;
    let amount = required(raw.amount, Field::Amount)?;

    check_name(&network, Field::Network, &policy.networks)?;
    check_name(&currency, Field::Currency, &policy.currencies)?;

    check_amount(&amount).map_err(|msg| ValidationError::new("amount", format!("amount {msg}")))?;
    let amount = Amount(amount.into_owned());
    if let Some(max) = policy.max_amount.as_ref().filter(|max| amount.exceeds(max)) {
        return Err(ValidationError::new(
            "amount",
            format!("amount must be at most {max}"),
        ));
    }

    let checkout_type = match raw.checkout_type {
        None => None,
        Some(t) => Some(
            CheckoutType::parse(&t)
                .filter(|ty| policy.types.contains(ty))
                .ok_or_else(|| {
                    let allowed: Vec<&str> =
                        policy.types.iter().map(CheckoutType::as_str).collect();
                    ValidationError::new(
                        "type",
                        format!("type must be one of: {}", allowed.join(", ")),
                    )
                })?,
        ),
    };

    let redirect_url = match raw.redirect_url {
        None => None,
        Some(u) => Some(
            check_redirect_url(&u, &policy.redirect_url_origins)
                .map_err(|msg| ValidationError::new("redirect_url", msg))?,
        ),
    };

    Ok(CheckoutRequest {
        network: network.into_owned(),
        currency: currency.into_owned(),
        amount,
        checkout_type,
        redirect_url,
    })
}

fn required(value: Option<Cow<'_, str>>, field: Field) -> Result<Cow<'_, str>, ValidationError> {
    value.ok_or_else(|| {
        let name = field.name();
        ValidationError::new(name, format!("{name} is required"))
    })
}

fn check_name(value: &str, field: Field, allowed: &[String]) -> Result<(), ValidationError> {
    let name = field.name();
    if !is_valid_name(value) {
        return Err(ValidationError::new(
            name,
            format!(
                r#"{name} must be 1 to {MAX_NAME_LEN} characters, each a letter, digit, "-" or "_""#
            ),
        ));
    }
    if !allowed.is_empty() && !allowed.iter().any(|a| a == value) {
        return Err(ValidationError::new(
            name,
            format!("{name} must be one of: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

/// Checks a `redirect_url` and returns its normalised serialisation.
///
/// Only printable ASCII without backslashes is accepted: browsers serialise
/// URLs that way, and refusing the rest removes the inputs on which URL
/// parsers are known to disagree (backslashes, embedded tabs and newlines,
/// leading spaces). Userinfo is refused because `https://app.example.com@evil`
/// style URLs exist to mislead people and other parsers.
fn check_redirect_url(raw: &str, origins: &[String]) -> Result<String, String> {
    const NOT_URL: &str = "redirect_url must be an absolute http or https URL";
    if origins.is_empty() {
        return Err(
            "redirect_url is not accepted: this service has no allowed redirect origins".to_owned(),
        );
    }
    if raw.len() > MAX_REDIRECT_URL_LEN {
        return Err(format!(
            "redirect_url must be at most {MAX_REDIRECT_URL_LEN} characters"
        ));
    }
    if !raw.bytes().all(|b| matches!(b, b'!'..=b'~') && b != b'\\') {
        return Err(format!(
            "{NOT_URL}, without spaces, control characters, backslashes or non-ASCII characters"
        ));
    }
    let url = Url::parse(raw).map_err(|_| NOT_URL.to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NOT_URL.to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() || authority_has_userinfo(raw) {
        return Err("redirect_url must not contain a user name or password".to_owned());
    }
    let origin = url.origin().ascii_serialization();
    if !origins.contains(&origin) {
        return Err(format!(
            "redirect_url must start with one of the allowed origins: {}",
            origins.join(", ")
        ));
    }
    let normalised = String::from(url);
    if normalised.len() > MAX_REDIRECT_URL_LEN {
        return Err(format!(
            "redirect_url must be at most {MAX_REDIRECT_URL_LEN} characters"
        ));
    }
    Ok(normalised)
}
