//! Proof's wire types: the body of `POST /widget/session`, defined once so that field names, order
//! and omission of absent fields are fixed in one place.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use actix_web::http::header::HeaderValue;

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
    /// `buy` or `sell`, as the checkout was checked.
    pub checkout_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<&'a str>,
    /// Serialised as its usual text form (`"203.0.113.7"`, `"2001:db8::1"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<&'a str>,
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

/// The fields of Proof's transaction the service acts on: who may read it, and where it stands.
#[derive(serde::Deserialize)]
struct TransactionFields<'a> {
    #[serde(borrow)]
    partner_user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
}

fn transaction_fields(body: &[u8]) -> Option<TransactionFields<'_>> {
    if !starts_like_object(body) {
        return None;
    }
    serde_json::from_slice::<TransactionFields>(body).ok()
}

/// The `partner_user_id` of a `GET /widget/transactions/{id}` answer (a JSON object), if it has
/// one: the user the transaction was created for.
pub fn transaction_owner(body: &[u8]) -> Option<Cow<'_, str>> {
    transaction_fields(body).and_then(|t| t.partner_user_id)
}

/// The `status` of a `GET /widget/transactions/{id}` answer, if it has one.
pub fn transaction_status(body: &[u8]) -> Option<Cow<'_, str>> {
    transaction_fields(body).and_then(|t| t.status)
}

/// The error slug in Proof's envelope, the only part of a 5xx body that decides a retry.
#[derive(serde::Deserialize)]
struct ProofErrorSlug<'a> {
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
}

pub(super) fn error_slug(body: &[u8]) -> Option<Cow<'_, str>> {
    // serde would also read a JSON array as the struct's fields in order: only an object counts.
    if !starts_like_object(body) {
        return None;
    }
    serde_json::from_slice::<ProofErrorSlug>(body)
        .ok()
        .and_then(|b| b.error)
}

fn starts_like_object(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// `application/json` or a structured `application/*+json` type, with any parameters.
pub(super) fn is_json_media_type(value: &HeaderValue) -> bool {
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let Some(subtype) = essence
        .split_at_checked("application/".len())
        .filter(|(kind, _)| kind.eq_ignore_ascii_case(b"application/"))
        .map(|(_, subtype)| subtype)
    else {
        return false;
    };
    subtype.eq_ignore_ascii_case(b"json")
        || subtype.len() > "+json".len()
            && subtype[subtype.len() - "+json".len()..].eq_ignore_ascii_case(b"+json")
}

/// The widget needs an object; checking the whole document parses keeps a truncated or HTML
/// answer from reaching the browser, without rebuilding the bytes.
pub(super) fn is_json_object(body: &[u8]) -> bool {
    starts_like_object(body) && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transactions_owner_is_its_partner_user_id() {
        let owner = |body: &str| transaction_owner(body.as_bytes()).map(Cow::into_owned);
        assert_eq!(
            owner(
                r#"{"merchant_transaction_id":"t","partner_user_id":"user-42","status":"pending"}"#
            ),
            Some("user-42".to_owned())
        );
        assert_eq!(
            owner(r#"{"partner_user_id":"a\u002fb"}"#),
            Some("a/b".to_owned())
        );
        for no_owner in [
            r#"{"status":"pending"}"#,
            r#"{"partner_user_id":7}"#,
            r#"["user-42"]"#,
            "",
            "{",
        ] {
            assert_eq!(owner(no_owner), None, "{no_owner}");
        }
    }

    #[test]
    fn only_json_objects_are_widget_answers() {
        assert!(is_json_object(br#" {"a": 1.50, "b": "\u00e9"} "#));
        assert!(!is_json_object(b"[1,2]"));
        assert!(!is_json_object(b"<html></html>"));
        assert!(!is_json_object(br#"{"a": 1"#));
        assert!(!is_json_object(b""));
    }

    #[test]
    fn json_media_types_are_recognised_with_parameters_and_in_any_case() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/problem+json",
            "application/vnd.proof.error+JSON; v=2",
        ] {
            assert!(
                is_json_media_type(&HeaderValue::from_static(json)),
                "{json}"
            );
        }
        for other in [
            "",
            "text/html",
            "text/json",
            "application/",
            "application/+json",
            "application/jsonp",
            "application/json-seq",
            "application/x-www-form-urlencoded",
            "text/html+json",
            "json",
        ] {
            assert!(
                !is_json_media_type(&HeaderValue::from_static(other)),
                "{other}"
            );
        }
    }
}
