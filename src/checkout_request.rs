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
use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use url::Url;

use crate::origin::{authority_has_userinfo, normalise_origin};

/// Longest accepted `network` or `currency` name: real identifiers are far
/// shorter, and a bound keeps the values cheap to log and forward.
const MAX_NAME_LEN: usize = 32;
/// Digits allowed on each side of the decimal point of an amount: enough for
/// any realistic purchase (and for 18-decimal tokens), small enough that the
/// value fits exactly in any upstream decimal type.
const MAX_AMOUNT_DIGITS: usize = 18;
/// Longest accepted `redirect_url`, a common practical limit for URLs.
const MAX_REDIRECT_URL_LEN: usize = 2048;
/// Longest unknown field name repeated back in an error message.
const MAX_REPORTED_FIELD_LEN: usize = 64;

const AMOUNT_FORMAT: &str = r#"must be a positive decimal string like "100" or "99.50""#;
const AMOUNT_DIGITS: &str =
    "must have at most 18 digits before and 18 digits after the decimal point";
const AMOUNT_ZERO: &str = "must be greater than zero";

/// Whether the user wants to buy or sell crypto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutType {
    Buy,
    Sell,
}

impl CheckoutType {
    /// Parses the wire form. Case-sensitive, like the upstream API, so that
    /// what is validated here is exactly what is forwarded.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Self::Buy),
            "sell" => Some(Self::Sell),
            _ => None,
        }
    }

    /// The wire form, as sent to the upstream.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

impl fmt::Display for CheckoutType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positive decimal amount kept as the exact string the user sent.
///
/// The string is forwarded verbatim, so nothing is lost to rounding or
/// reformatting; comparisons are done on the decimal value (see
/// [`Amount::exceeds`]). Equality (`==`) compares the strings, so `"1.0"` and
/// `"1"` are different `Amount`s with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount(String);

impl Amount {
    /// Accepts ASCII digits with at most one dot: at least one and at most 18
    /// digits before the dot and, when there is a dot, at least one and at
    /// most 18 after it; no sign, exponent or whitespace; value above zero.
    /// Leading zeros (`"007"`) and trailing zeros (`"1.50"`) are accepted and
    /// count towards the 18 digits.
    ///
    /// The error is a message without the field name (e.g. `must be a
    /// positive decimal string ...`) so callers can prefix the name of the
    /// field or setting the value came from.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_amount(s).map_err(str::to_owned)?;
        Ok(Self(s.to_owned()))
    }

    /// The amount exactly as the user sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this amount is greater than `max`, compared exactly as
    /// decimals: floating point would let values just above the limit
    /// through (or refuse values at it).
    pub fn exceeds(&self, max: &Amount) -> bool {
        self.cmp_value(max) == Ordering::Greater
    }

    /// Integer part without leading zeros and fraction without trailing
    /// zeros: two amounts are equal in value exactly when these are equal.
    fn normalised(&self) -> (&str, &str) {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        (int.trim_start_matches('0'), frac.trim_end_matches('0'))
    }

    /// Compares by value. With normalised parts, a longer integer part is a
    /// larger number, equal lengths compare digit by digit, and fractions
    /// compare digit by digit (a shorter fraction that is a prefix of a
    /// longer one is smaller, as the longer one ends in a non-zero digit).
    fn cmp_value(&self, other: &Amount) -> Ordering {
        let (a_int, a_frac) = self.normalised();
        let (b_int, b_frac) = other.normalised();
        a_int
            .len()
            .cmp(&b_int.len())
            .then_with(|| a_int.cmp(b_int))
            .then_with(|| a_frac.cmp(b_frac))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The amount grammar, shared by requests and configuration. Returns a
/// static message so the request path allocates nothing for it.
fn check_amount(s: &str) -> Result<(), &'static str> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (s, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    // A second dot lands in `frac` and fails the digit check.
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(AMOUNT_FORMAT);
    }
    if int.len() > MAX_AMOUNT_DIGITS || frac.map_or(0, str::len) > MAX_AMOUNT_DIGITS {
        return Err(AMOUNT_DIGITS);
    }
    if !s.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        return Err(AMOUNT_ZERO);
    }
    Ok(())
}

/// Network and currency names: short identifiers of letters, digits, `-` and
/// `_`, which is all the upstream uses and safe to log and forward.
fn is_valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Configured limits from the `[checkout]` settings, validated once at
/// start-up so that a bad setting stops the service instead of refusing (or
/// allowing) requests later.
///
/// Build it with [`CheckoutPolicy::from_config`]: the fields are public for
/// reading, and `redirect_url_origins` must hold normalised ASCII origins for
/// matching to work.
#[derive(Debug, Clone)]
pub struct CheckoutPolicy {
    /// Allowed networks; empty means any well-formed name.
    pub networks: Vec<String>,
    /// Allowed currencies; empty means any well-formed name.
    pub currencies: Vec<String>,
    /// Allowed checkout types; never empty.
    pub types: Vec<CheckoutType>,
    /// Allowed redirect origins, as `url::Origin::ascii_serialization`
    /// (e.g. `https://app.example.com`); empty means no `redirect_url` is
    /// accepted at all.
    pub redirect_url_origins: Vec<String>,
    /// Largest accepted amount, compared by value.
    pub max_amount: Option<Amount>,
}

impl CheckoutPolicy {
    /// Builds from raw config values. The error names the setting, e.g.
    /// `checkout.types: "rent" is not one of buy, sell`. Configured values
    /// may be repeated in errors: they come from the operator, not the user.
    ///
    /// Origins are normalised (lower-cased host, default port dropped, IDNA
    /// applied) so that they compare equal to the origin of a parsed
    /// `redirect_url`. Repeated entries are dropped.
    pub fn from_config(
        networks: &[String],
        currencies: &[String],
        types: &[String],
        redirect_url_origins: &[String],
        max_amount: &str,
    ) -> Result<Self, String> {
        let networks = config_names("checkout.networks", "network", networks)?;
        let currencies = config_names("checkout.currencies", "currency", currencies)?;

        if types.is_empty() {
            return Err("checkout.types: must list at least one of buy, sell".to_owned());
        }
        let mut parsed_types = Vec::with_capacity(types.len());
        for t in types {
            let ty = CheckoutType::parse(t)
                .ok_or_else(|| format!("checkout.types: {t:?} is not one of buy, sell"))?;
            if !parsed_types.contains(&ty) {
                parsed_types.push(ty);
            }
        }

        let mut origins: Vec<String> = Vec::with_capacity(redirect_url_origins.len());
        for raw in redirect_url_origins {
            let origin = config_origin(raw)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }

        let max_amount = if max_amount.is_empty() {
            None
        } else {
            Some(
                Amount::parse(max_amount)
                    .map_err(|msg| format!("checkout.max_amount: {max_amount:?} {msg}"))?,
            )
        };

        Ok(Self {
            networks,
            currencies,
            types: parsed_types,
            redirect_url_origins: origins,
            max_amount,
        })
    }
}

fn config_names(key: &str, what: &str, values: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !is_valid_name(v) {
            return Err(format!("{key}: {v:?} is not a valid {what} name"));
        }
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}

fn config_origin(raw: &str) -> Result<String, String> {
    normalise_origin(raw).map_err(|problem| format!("checkout.redirect_url_origins: {problem}"))
}

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

/// Why a request was refused: the field (`"body"` for the body as a whole)
/// and a message that names the field and never repeats the value sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    fn body(message: impl Into<String>) -> Self {
        Self::new("body", message)
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

/// The body of the upstream `POST /widget/session`, defined once so that
/// field names, order and omission of absent fields are fixed in one place.
///
/// `Debug` is written by hand so that personal data — the e-mail, the
/// client's IP address and the wallet address — never reaches logs; it shows
/// only whether the optional ones are present.
#[derive(serde::Serialize)]
pub struct WidgetSessionRequest<'a> {
    pub partner_user_id: &'a str,
    pub user_email: &'a str,
    pub network: &'a str,
    pub currency: &'a str,
    pub amount: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub checkout_type: Option<CheckoutType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<&'a str>,
    /// Serialised as its usual text form (`"203.0.113.7"`, `"2001:db8::1"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<&'a str>,
}

impl<'a> WidgetSessionRequest<'a> {
    /// Combines a checked browser request with the server-side identity;
    /// `client_ip` and `address` start absent and are set by the caller when
    /// known.
    pub fn from_checked(
        partner_user_id: &'a str,
        user_email: &'a str,
        request: &'a CheckoutRequest,
    ) -> Self {
        Self {
            partner_user_id,
            user_email,
            network: &request.network,
            currency: &request.currency,
            amount: request.amount.as_str(),
            checkout_type: request.checkout_type,
            redirect_url: request.redirect_url.as_deref(),
            client_ip: None,
            address: None,
        }
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for WidgetSessionRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WidgetSessionRequest")
            .field("partner_user_id", &self.partner_user_id)
            .field("user_email", &Redacted)
            .field("network", &self.network)
            .field("currency", &self.currency)
            .field("amount", &self.amount)
            .field("checkout_type", &self.checkout_type)
            .field("redirect_url", &self.redirect_url)
            .field("client_ip", &self.client_ip.map(|_| Redacted))
            .field("address", &self.address.map(|_| Redacted))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Any network and currency, both types, one redirect origin, no max.
    fn open_policy() -> CheckoutPolicy {
        CheckoutPolicy::from_config(
            &[],
            &[],
            &strings(&["buy", "sell"]),
            &strings(&["https://app.example.com"]),
            "",
        )
        .unwrap()
    }

    fn strict_policy() -> CheckoutPolicy {
        CheckoutPolicy::from_config(
            &strings(&["ethereum", "polygon"]),
            &strings(&["usdc", "ETH"]),
            &strings(&["buy"]),
            &strings(&["https://app.example.com", "http://localhost:3000"]),
            "100",
        )
        .unwrap()
    }

    fn parse_value(
        v: serde_json::Value,
        policy: &CheckoutPolicy,
    ) -> Result<CheckoutRequest, ValidationError> {
        parse_checkout_request(v.to_string().as_bytes(), policy)
    }

    /// A valid body with `field` set to `value` (or removed when `None`).
    fn body_with(field: &str, value: Option<serde_json::Value>) -> serde_json::Value {
        let mut body = json!({"network": "ethereum", "currency": "usdc", "amount": "10"});
        let obj = body.as_object_mut().unwrap();
        match value {
            Some(v) => {
                obj.insert(field.to_owned(), v);
            }
            None => {
                obj.remove(field);
            }
        }
        body
    }

    fn err_field(r: Result<CheckoutRequest, ValidationError>) -> String {
        let e = r.expect_err("expected a refusal");
        assert!(
            e.message.contains(&e.field),
            "message {:?} should name field {:?}",
            e.message,
            e.field
        );
        e.field
    }

    // ---------- CheckoutType ----------

    #[test]
    fn checkout_type_parse_and_as_str() {
        assert_eq!(CheckoutType::parse("buy"), Some(CheckoutType::Buy));
        assert_eq!(CheckoutType::parse("sell"), Some(CheckoutType::Sell));
        for bad in ["Buy", "SELL", "", " buy", "rent"] {
            assert_eq!(CheckoutType::parse(bad), None, "{bad:?}");
        }
        for t in [CheckoutType::Buy, CheckoutType::Sell] {
            assert_eq!(CheckoutType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
            assert_eq!(
                serde_json::from_str::<CheckoutType>(&format!("\"{}\"", t.as_str())).unwrap(),
                t
            );
        }
    }

    // ---------- network / currency ----------

    #[test]
    fn names_accepted() {
        let p = open_policy();
        let n32 = "a".repeat(32);
        for ok in [
            "ethereum",
            "a",
            "A-b_9",
            "USDC",
            "0",
            "-",
            "_",
            n32.as_str(),
        ] {
            for field in ["network", "currency"] {
                let r = parse_value(body_with(field, Some(json!(ok))), &p).unwrap();
                let got = if field == "network" {
                    r.network
                } else {
                    r.currency
                };
                assert_eq!(got, ok);
            }
        }
    }

    #[test]
    fn names_refused() {
        let p = open_policy();
        let n33 = "a".repeat(33);
        for bad in [
            "",
            " ",
            "a b",
            "eth.",
            "eth/1",
            "é",
            "١٢",
            "eth\n",
            "a\u{0}",
            n33.as_str(),
        ] {
            for field in ["network", "currency"] {
                let e = parse_value(body_with(field, Some(json!(bad))), &p).unwrap_err();
                assert_eq!(e.field, field, "{bad:?}");
                assert!(e.message.starts_with(field), "{e:?}");
            }
        }
    }

    #[test]
    fn names_allow_list_exact_and_case_sensitive() {
        let p = strict_policy();
        assert!(parse_value(body_with("network", Some(json!("polygon"))), &p).is_ok());
        assert!(parse_value(body_with("currency", Some(json!("ETH"))), &p).is_ok());
        for (field, bad) in [
            ("network", "Ethereum"),
            ("network", "solana"),
            ("network", "ethereu"),
            ("currency", "eth"),
            ("currency", "USDC"),
        ] {
            let e = parse_value(body_with(field, Some(json!(bad))), &p).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains("must be one of:"), "{e:?}");
        }
    }

    // ---------- amount ----------

    #[test]
    fn amounts_accepted() {
        let d18 = "9".repeat(18);
        let i18f18 = format!("{d18}.{d18}");
        let tiny = format!("0.{}1", "0".repeat(17));
        for ok in [
            "1",
            "100",
            "99.50",
            "0.1",
            "00.10",
            "007",
            "1.0",
            "0.000001",
            d18.as_str(),
            i18f18.as_str(),
            tiny.as_str(),
        ] {
            let a = Amount::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
            assert_eq!(a.as_str(), ok);
            let r = parse_value(body_with("amount", Some(json!(ok))), &open_policy()).unwrap();
            assert_eq!(r.amount.as_str(), ok, "forwarded verbatim");
        }
    }

    #[test]
    fn amounts_refused() {
        let d19 = "1".repeat(19);
        let f19 = format!("1.{}", "1".repeat(19));
        let zeros19 = format!("{}1", "0".repeat(18));
        let cases: &[(&str, &str)] = &[
            ("0", AMOUNT_ZERO),
            ("0.0", AMOUNT_ZERO),
            ("0.00", AMOUNT_ZERO),
            ("000", AMOUNT_ZERO),
            ("1e5", AMOUNT_FORMAT),
            ("1E5", AMOUNT_FORMAT),
            ("-1", AMOUNT_FORMAT),
            ("+1", AMOUNT_FORMAT),
            (" 1", AMOUNT_FORMAT),
            ("1 ", AMOUNT_FORMAT),
            ("1.", AMOUNT_FORMAT),
            (".1", AMOUNT_FORMAT),
            (".", AMOUNT_FORMAT),
            ("1..2", AMOUNT_FORMAT),
            ("1.2.3", AMOUNT_FORMAT),
            ("١٢", AMOUNT_FORMAT),
            ("１", AMOUNT_FORMAT),
            ("", AMOUNT_FORMAT),
            ("1,5", AMOUNT_FORMAT),
            ("0x10", AMOUNT_FORMAT),
            ("NaN", AMOUNT_FORMAT),
            ("Infinity", AMOUNT_FORMAT),
            (d19.as_str(), AMOUNT_DIGITS),
            (f19.as_str(), AMOUNT_DIGITS),
            (zeros19.as_str(), AMOUNT_DIGITS),
        ];
        for (bad, msg) in cases {
            assert_eq!(Amount::parse(bad).unwrap_err(), *msg, "{bad:?}");
            let e = parse_value(body_with("amount", Some(json!(bad))), &open_policy()).unwrap_err();
            assert_eq!(e.field, "amount");
            assert_eq!(e.message, format!("amount {msg}"));
        }
        assert_eq!(
            Amount::parse("abc").unwrap_err(),
            r#"must be a positive decimal string like "100" or "99.50""#
        );
    }

    #[test]
    fn amount_max_exact_comparisons() {
        let max = Amount::parse("100").unwrap();
        for ok in [
            "100",
            "100.000",
            "0100",
            "99.99",
            "1",
            "000100.0",
            "99.999999999999999999",
        ] {
            assert!(!Amount::parse(ok).unwrap().exceeds(&max), "{ok}");
        }
        for over in [
            "101",
            "100.0000001",
            "100.000000000000000001",
            "1000",
            "0101",
        ] {
            assert!(Amount::parse(over).unwrap().exceeds(&max), "{over}");
        }
        let half = Amount::parse("0.5").unwrap();
        assert!(Amount::parse("0.50000001").unwrap().exceeds(&half));
        assert!(!Amount::parse("0.49999999").unwrap().exceeds(&half));
        assert!(!Amount::parse("0.500").unwrap().exceeds(&half));
        assert!(Amount::parse("0.51").unwrap().exceeds(&half));

        let p = strict_policy();
        for ok in ["100.000", "0100", "99.99"] {
            assert!(
                parse_value(body_with("amount", Some(json!(ok))), &p).is_ok(),
                "{ok}"
            );
        }
        for over in ["101", "100.0000001"] {
            let e = parse_value(body_with("amount", Some(json!(over))), &p).unwrap_err();
            assert_eq!(e.field, "amount");
            assert_eq!(e.message, "amount must be at most 100");
        }
    }

    // ---------- type ----------

    #[test]
    fn type_field() {
        let p = open_policy();
        assert_eq!(
            parse_value(body_with("type", None), &p)
                .unwrap()
                .checkout_type,
            None
        );
        assert_eq!(
            parse_value(body_with("type", Some(json!("buy"))), &p)
                .unwrap()
                .checkout_type,
            Some(CheckoutType::Buy)
        );
        assert_eq!(
            parse_value(body_with("type", Some(json!("sell"))), &p)
                .unwrap()
                .checkout_type,
            Some(CheckoutType::Sell)
        );
        for bad in ["Buy", "rent", "", " buy"] {
            let e = parse_value(body_with("type", Some(json!(bad))), &p).unwrap_err();
            assert_eq!(e.field, "type");
            assert_eq!(e.message, "type must be one of: buy, sell");
        }
        // "sell" is a real type but not configured.
        let e = parse_value(body_with("type", Some(json!("sell"))), &strict_policy()).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("type", "type must be one of: buy")
        );
    }

    // ---------- redirect_url ----------

    #[test]
    fn redirect_url_accepted_and_normalised() {
        let p = strict_policy();
        for (raw, forwarded) in [
            ("https://app.example.com", "https://app.example.com/"),
            (
                "https://app.example.com/done?x=1#y",
                "https://app.example.com/done?x=1#y",
            ),
            ("https://app.example.com:443/x", "https://app.example.com/x"),
            ("https://APP.Example.COM/x", "https://app.example.com/x"),
            ("HTTPS://app.example.com/x", "https://app.example.com/x"),
            ("http://localhost:3000/cb", "http://localhost:3000/cb"),
            (
                "https://app.example.com/a/../b",
                "https://app.example.com/b",
            ),
        ] {
            let r = parse_value(body_with("redirect_url", Some(json!(raw))), &p)
                .unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(r.redirect_url.as_deref(), Some(forwarded));
        }
        assert_eq!(
            parse_value(body_with("redirect_url", None), &p)
                .unwrap()
                .redirect_url,
            None
        );
    }

    #[test]
    fn redirect_url_refused() {
        let p = strict_policy();
        let long = format!("https://app.example.com/{}", "a".repeat(2048));
        for bad in [
            "https://app.example.com:8443/x",
            "http://app.example.com/x",
            "https://evil.example.com/x",
            "https://app.example.com.evil.example/x",
            "https://localhost:3000/cb",
            "http://localhost:3001/cb",
            "https://user@app.example.com/x",
            "https://user:pw@app.example.com/x",
            "https://@app.example.com/x",
            "https://:@app.example.com/x",
            "https://evil.example@app.example.com/x",
            "/relative/path",
            "//app.example.com/x",
            "app.example.com/x",
            "javascript:alert(1)",
            "JavaScript://app.example.com/%0aalert(1)",
            "data:text/html,hi",
            "ftp://app.example.com/x",
            "https:\\\\app.example.com\\x",
            "https://app.example.com\\@evil.example/",
            " https://app.example.com/x",
            "https://app.example.com/x ",
            "https://app.example.com/\tx",
            "https://app.example.com/\nx",
            "https://app.example.com/é",
            "",
            long.as_str(),
        ] {
            let e = parse_value(body_with("redirect_url", Some(json!(bad))), &p).expect_err(bad);
            assert_eq!(e.field, "redirect_url", "{bad}");
            assert!(e.message.starts_with("redirect_url "), "{e:?}");
        }
    }

    #[test]
    fn redirect_url_length_boundary() {
        let p = strict_policy();
        let prefix = "https://app.example.com/";
        let at_limit = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(at_limit.len(), 2048);
        assert!(parse_value(body_with("redirect_url", Some(json!(at_limit))), &p).is_ok());
        let over = format!("{at_limit}a");
        let e = parse_value(body_with("redirect_url", Some(json!(over))), &p).unwrap_err();
        assert_eq!(e.message, "redirect_url must be at most 2048 characters");
    }

    #[test]
    fn redirect_url_refused_when_no_origins_configured() {
        let p = CheckoutPolicy::from_config(&[], &[], &strings(&["buy"]), &[], "").unwrap();
        let e = parse_value(
            body_with("redirect_url", Some(json!("https://app.example.com/x"))),
            &p,
        )
        .unwrap_err();
        assert_eq!(e.field, "redirect_url");
        assert!(parse_value(body_with("redirect_url", None), &p).is_ok());
    }

    // ---------- unknown, duplicate, wrong-typed and null fields ----------

    #[test]
    fn server_side_fields_refused() {
        for name in ["partner_user_id", "user_email", "client_ip", "address"] {
            let e = parse_value(body_with(name, Some(json!("x"))), &open_policy()).unwrap_err();
            assert_eq!(e.field, name);
            assert_eq!(
                e.message,
                format!(
                    "unknown field \"{name}\": identity, client_ip and address are set by the server"
                )
            );
            // Also refused when not a string.
            let e =
                parse_value(body_with(name, Some(json!({"a": [1]}))), &open_policy()).unwrap_err();
            assert_eq!(e.field, name);
        }
    }

    #[test]
    fn other_unknown_fields_refused_and_sanitised() {
        let e = parse_value(body_with("Amount", Some(json!("1"))), &open_policy()).unwrap_err();
        assert_eq!(e.field, "Amount");
        assert!(
            e.message
                .starts_with("unknown field \"Amount\": the accepted fields are")
        );

        let long = format!("x\u{7}\n\u{202E}{}", "y".repeat(100));
        let e = parse_value(body_with(&long, Some(json!(1))), &open_policy()).unwrap_err();
        assert_eq!(e.field, format!("x{}", "y".repeat(63)));
        assert!(!e.message.chars().any(|c| c.is_control() || c == '\u{202E}'));
        assert!(!e.message.contains(&"y".repeat(64)));

        let e = parse_checkout_request(br#"{"":1}"#, &open_policy()).unwrap_err();
        assert_eq!(e.field, "");
    }

    #[test]
    fn duplicate_keys_refused() {
        for body in [
            r#"{"network":"ethereum","currency":"usdc","amount":"10","amount":"20"}"#,
            r#"{"network":"ethereum","network":"ethereum","currency":"usdc","amount":"10"}"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10","type":"buy","type":"buy"}"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10","amount":5}"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10","\u0061mount":"1"}"#,
        ] {
            let e = parse_checkout_request(body.as_bytes(), &open_policy()).unwrap_err();
            assert!(e.message.starts_with("duplicate field"), "{body}: {e:?}");
            assert!(["amount", "network", "type"].contains(&e.field.as_str()));
        }
    }

    #[test]
    fn wrong_types_and_null_refused() {
        for field in ["network", "currency", "amount", "type", "redirect_url"] {
            for v in [
                json!(null),
                json!(1),
                json!(1.5),
                json!(true),
                json!([]),
                json!(["x"]),
                json!({"x": "y"}),
            ] {
                let e = parse_value(body_with(field, Some(v.clone())), &open_policy()).unwrap_err();
                assert_eq!(e.field, field, "{v}");
                assert!(
                    e.message.starts_with(&format!("{field} must be a string")),
                    "{e:?}"
                );
            }
        }
    }

    #[test]
    fn missing_fields_refused() {
        for field in ["network", "currency", "amount"] {
            let e = parse_value(body_with(field, None), &open_policy()).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.message),
                (field, format!("{field} is required"))
            );
        }
        let e = parse_checkout_request(b"{}", &open_policy()).unwrap_err();
        assert_eq!(e.field, "network");
    }

    #[test]
    fn structural_errors_reported_before_values() {
        // An invalid amount comes before the unknown field in the document,
        // but the unknown field is reported.
        let body =
            br#"{"network":"ethereum","currency":"usdc","amount":"-1","client_ip":"1.2.3.4"}"#;
        assert_eq!(
            err_field(parse_checkout_request(body, &open_policy())),
            "client_ip"
        );
        // First structural problem in document order wins.
        let body = br#"{"address":"a","network":1,"currency":"usdc","amount":"1"}"#;
        assert_eq!(
            err_field(parse_checkout_request(body, &open_policy())),
            "address"
        );
    }

    // ---------- the body as a whole ----------

    #[test]
    fn bad_bodies_refused_as_body() {
        for body in [
            "",
            " ",
            "\n\t",
            "null",
            "[]",
            r#"["network"]"#,
            r#""str""#,
            "1",
            "true",
            "abc",
            "{",
            r#"{"network":"ethereum""#,
            r#"{"network":}"#,
            "{,}",
            r#"{"a" "b"}"#,
            "{'network':'x'}",
            r#"{"network":"ethereum","currency":"usdc","amount":"10"} x"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10"}{}"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10"},"#,
            r#"{"network":"ethereum","currency":"usdc","amount":"10",}"#,
            "\u{feff}{}",
            r#"{"network":"\ud800","currency":"usdc","amount":"10"}"#,
            // Trailing garbage wins over a refused field.
            r#"{"client_ip":"1.2.3.4"} x"#,
        ] {
            let e = parse_checkout_request(body.as_bytes(), &open_policy()).unwrap_err();
            assert_eq!(e.field, "body", "{body:?}: {e:?}");
            assert!(e.message.starts_with("body "), "{e:?}");
        }
        let e = parse_checkout_request(b"\xff\xfe", &open_policy()).unwrap_err();
        assert_eq!(e.field, "body");
        let e = parse_checkout_request(br#"{"network":"a\xffb"}"#, &open_policy()).unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        // Skipped values are walked without recursion, so depth costs no stack.
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
        assert_eq!(e.field, "x");
        let deep = format!(
            r#"{{"network":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
        assert_eq!(e.field, "network");
        // Unbalanced nesting is still a body error.
        let deep = format!(r#"{{"network":{}}}"#, "[".repeat(100_000));
        let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn whitespace_around_object_and_escapes_accepted() {
        let body = b" \n{ \"network\" : \"eth\\u0065reum\", \"currency\":\"usdc\",\"amount\":\"1.5\" }\r\n";
        let r = parse_checkout_request(body, &strict_policy()).unwrap();
        assert_eq!(
            r,
            CheckoutRequest {
                network: "ethereum".into(),
                currency: "usdc".into(),
                amount: Amount::parse("1.5").unwrap(),
                checkout_type: None,
                redirect_url: None,
            }
        );
    }

    #[test]
    fn full_request_accepted() {
        let body = json!({
            "redirect_url": "https://app.example.com/done",
            "type": "buy",
            "amount": "99.50",
            "currency": "usdc",
            "network": "polygon",
        });
        let r = parse_value(body, &strict_policy()).unwrap();
        assert_eq!(r.network, "polygon");
        assert_eq!(r.currency, "usdc");
        assert_eq!(r.amount.as_str(), "99.50");
        assert_eq!(r.checkout_type, Some(CheckoutType::Buy));
        assert_eq!(
            r.redirect_url.as_deref(),
            Some("https://app.example.com/done")
        );
    }

    #[test]
    fn messages_never_echo_values() {
        let secret = "SECRET<script>";
        let p = strict_policy();
        for field in ["network", "currency", "amount", "type", "redirect_url"] {
            let e = parse_value(body_with(field, Some(json!(secret))), &p).unwrap_err();
            assert_eq!(e.field, field);
            assert!(!e.message.contains("SECRET"), "{e:?}");
        }
        let body = format!(r#"{{"network":"{secret}"}} {secret}"#);
        let e = parse_checkout_request(body.as_bytes(), &p).unwrap_err();
        assert!(!e.message.contains("SECRET"), "{e:?}");
        let e = parse_checkout_request(format!("\"{secret}\"").as_bytes(), &p).unwrap_err();
        assert!(!e.message.contains("SECRET"), "{e:?}");
        let e = parse_checkout_request(b"123456789", &p).unwrap_err();
        assert!(!e.message.contains("123456789"), "{e:?}");
    }

    #[test]
    fn validation_error_displays_message() {
        let e = parse_value(body_with("amount", Some(json!("x"))), &open_policy()).unwrap_err();
        assert_eq!(e.to_string(), e.message);
    }

    // ---------- policy ----------

    #[test]
    fn policy_from_config_normalises() {
        let p = CheckoutPolicy::from_config(
            &strings(&["ethereum", "ethereum"]),
            &[],
            &strings(&["sell", "buy", "sell"]),
            &strings(&[
                "https://APP.example.com:443",
                "https://app.example.com/",
                "http://localhost:8080",
                "http://example.org:80",
            ]),
            "1000.50",
        )
        .unwrap();
        assert_eq!(p.networks, strings(&["ethereum"]));
        assert!(p.currencies.is_empty());
        assert_eq!(p.types, vec![CheckoutType::Sell, CheckoutType::Buy]);
        assert_eq!(
            p.redirect_url_origins,
            strings(&[
                "https://app.example.com",
                "http://localhost:8080",
                "http://example.org"
            ])
        );
        assert_eq!(p.max_amount, Some(Amount::parse("1000.50").unwrap()));
    }

    #[test]
    fn policy_config_errors() {
        let buy = strings(&["buy"]);
        let none: Vec<String> = vec![];
        let cases: Vec<(Result<CheckoutPolicy, String>, &str)> = vec![
            (
                CheckoutPolicy::from_config(&strings(&["a b"]), &none, &buy, &none, ""),
                r#"checkout.networks: "a b" is not a valid network name"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &strings(&[""]), &buy, &none, ""),
                r#"checkout.currencies: "" is not a valid currency name"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &strings(&["rent"]), &none, ""),
                r#"checkout.types: "rent" is not one of buy, sell"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &strings(&["Buy"]), &none, ""),
                r#"checkout.types: "Buy" is not one of buy, sell"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &none, &none, ""),
                "checkout.types: must list at least one of buy, sell",
            ),
            (
                CheckoutPolicy::from_config(
                    &none,
                    &none,
                    &buy,
                    &strings(&["https://a.example/path"]),
                    "",
                ),
                r#"checkout.redirect_url_origins: "https://a.example/path" must be an origin (scheme://host[:port]) without a path"#,
            ),
            (
                CheckoutPolicy::from_config(
                    &none,
                    &none,
                    &buy,
                    &strings(&["https://a.example?q"]),
                    "",
                ),
                r#"checkout.redirect_url_origins: "https://a.example?q" must be an origin (scheme://host[:port]) without a path"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["a.example"]), ""),
                r#"checkout.redirect_url_origins: "a.example" is not an absolute http or https origin"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["ftp://a.example"]), ""),
                r#"checkout.redirect_url_origins: "ftp://a.example" must use http or https"#,
            ),
            (
                CheckoutPolicy::from_config(
                    &none,
                    &none,
                    &buy,
                    &strings(&["https://u@a.example"]),
                    "",
                ),
                r#"checkout.redirect_url_origins: "https://u@a.example" must not contain a user name or password"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &buy, &none, "0"),
                r#"checkout.max_amount: "0" must be greater than zero"#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &buy, &none, "1e3"),
                r#"checkout.max_amount: "1e3" must be a positive decimal string like "100" or "99.50""#,
            ),
            (
                CheckoutPolicy::from_config(&none, &none, &buy, &none, " 100"),
                r#"checkout.max_amount: " 100" must be a positive decimal string like "100" or "99.50""#,
            ),
        ];
        for (result, expected) in cases {
            assert_eq!(result.unwrap_err(), expected);
        }
    }

    // ---------- upstream body ----------

    #[test]
    fn widget_session_request_serialisation() {
        let req = parse_value(
            json!({"network": "polygon", "currency": "usdc", "amount": "007.50",
                   "type": "buy", "redirect_url": "https://app.example.com:443/done"}),
            &strict_policy(),
        )
        .unwrap();
        let mut body = WidgetSessionRequest::from_checked("user-1", "a@b.example", &req);
        body.client_ip = Some("203.0.113.7".parse().unwrap());
        body.address = Some("0xabc");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            concat!(
                r#"{"partner_user_id":"user-1","user_email":"a@b.example","network":"polygon","#,
                r#""currency":"usdc","amount":"007.50","type":"buy","#,
                r#""redirect_url":"https://app.example.com/done","client_ip":"203.0.113.7","#,
                r#""address":"0xabc"}"#
            )
        );

        body.client_ip = Some("2001:db8::1".parse().unwrap());
        assert_eq!(
            serde_json::to_value(&body).unwrap()["client_ip"],
            json!("2001:db8::1")
        );

        let minimal = WidgetSessionRequest {
            partner_user_id: "user-1",
            user_email: "a@b.example",
            network: "ethereum",
            currency: "usdc",
            amount: "1",
            checkout_type: None,
            redirect_url: None,
            client_ip: None,
            address: None,
        };
        assert_eq!(
            serde_json::to_value(&minimal).unwrap(),
            json!({"partner_user_id": "user-1", "user_email": "a@b.example",
                   "network": "ethereum", "currency": "usdc", "amount": "1"})
        );
        let sell = WidgetSessionRequest {
            checkout_type: Some(CheckoutType::Sell),
            ..minimal
        };
        assert_eq!(serde_json::to_value(&sell).unwrap()["type"], json!("sell"));
    }

    #[test]
    fn widget_session_request_debug_redacts_personal_data() {
        let body = WidgetSessionRequest {
            partner_user_id: "user-1",
            user_email: "alice@private.example",
            network: "ethereum",
            currency: "usdc",
            amount: "1",
            checkout_type: Some(CheckoutType::Buy),
            redirect_url: None,
            client_ip: Some("198.51.100.23".parse().unwrap()),
            address: Some("0xdeadbeef"),
        };
        for dbg in [format!("{body:?}"), format!("{body:#?}")] {
            assert!(!dbg.contains("alice"), "{dbg}");
            assert!(!dbg.contains("private.example"), "{dbg}");
            assert!(!dbg.contains("198.51.100.23"), "{dbg}");
            assert!(!dbg.contains("deadbeef"), "{dbg}");
            assert!(dbg.contains("<redacted>"), "{dbg}");
            assert!(dbg.contains("user-1") && dbg.contains("ethereum"), "{dbg}");
        }
    }

    // ---------- properties ----------

    /// Independent statement of the amount grammar, for the properties.
    fn matches_amount_grammar(s: &str) -> bool {
        let mut parts = s.split('.');
        let int = parts.next().unwrap_or("");
        let frac = parts.next();
        let digits = |p: &str, max: usize| {
            (1..=max).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit())
        };
        parts.next().is_none()
            && digits(int, 18)
            && frac.is_none_or(|f| digits(f, 18))
            && s.chars().any(|c| ('1'..='9').contains(&c))
    }

    /// The value times 10^18, exact for every valid amount (< 10^36 < 2^128).
    fn scaled(s: &str) -> u128 {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let int: u128 = int.parse().unwrap();
        let frac_scaled: u128 = format!("{frac:0<18}").parse().unwrap();
        int * 10u128.pow(18) + frac_scaled
    }

    fn amount_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,20}(\\.[0-9]{0,20})?",
            "[0-9.+\\-eE ]{0,12}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_checkout_request(&body, &open_policy());
            let _ = parse_checkout_request(&body, &strict_policy());
        }

        #[test]
        fn arbitrary_json_like_text_never_panics(body in "[{}\\[\\]\":,a-z0-9._\\\\ -]{0,80}") {
            let _ = parse_checkout_request(body.as_bytes(), &open_policy());
        }

        #[test]
        fn accepted_amounts_match_grammar(s in amount_like()) {
            let accepted = Amount::parse(&s).is_ok();
            prop_assert_eq!(accepted, matches_amount_grammar(&s), "{:?}", s);
            let body = json!({"network": "ethereum", "currency": "usdc", "amount": s});
            let r = parse_value(body, &open_policy());
            prop_assert_eq!(r.is_ok(), accepted);
            if let Ok(r) = r {
                prop_assert_eq!(r.amount.as_str(), s.as_str());
            }
        }

        #[test]
        fn arbitrary_field_values_never_panic_and_respect_grammar(
            network in any::<String>(),
            currency in any::<String>(),
            amount in amount_like(),
            ty in any::<String>(),
            redirect in any::<String>(),
        ) {
            let body = json!({"network": network, "currency": currency, "amount": amount,
                              "type": ty, "redirect_url": redirect});
            if let Ok(r) = parse_value(body, &open_policy()) {
                prop_assert!(matches_amount_grammar(r.amount.as_str()));
                prop_assert!(is_valid_name(&r.network) && is_valid_name(&r.currency));
                let url = Url::parse(r.redirect_url.as_deref().unwrap()).unwrap();
                prop_assert_eq!(url.origin().ascii_serialization(), "https://app.example.com");
            }
        }

        #[test]
        fn exceeds_matches_exact_arithmetic(
            a in "[0-9]{1,18}(\\.[0-9]{1,18})?",
            b in "[0-9]{1,18}(\\.[0-9]{1,18})?",
        ) {
            prop_assume!(matches_amount_grammar(&a) && matches_amount_grammar(&b));
            let (x, y) = (Amount::parse(&a).unwrap(), Amount::parse(&b).unwrap());
            prop_assert_eq!(x.exceeds(&y), scaled(&a) > scaled(&b));
            prop_assert_eq!(y.exceeds(&x), scaled(&b) > scaled(&a));
        }
    }
}
