//! The stand-in's cryptography: session signatures, init tokens, derived addresses and the
//! constant-time token check. Everything is keyed by `StandInConfig::signing_key`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha512};

type HmacSha256 = Hmac<Sha256>;
type HmacSha512 = Hmac<Sha512>;

/// The fields a session signature covers. Every field is mixed in as the caller sent it (or as the
/// stand-in resolved it: the address), so a verifier recomputes it from the session response and the
/// request that produced it.
#[derive(Debug, Clone, Copy)]
pub struct SignedFields<'a> {
    pub merchant_transaction_id: &'a str,
    pub partner_user_id: &'a str,
    pub network: &'a str,
    pub currency: &'a str,
    pub amount: &'a str,
    /// `buy` or `sell`, as resolved for the session.
    pub checkout_type: &'a str,
    /// The request's `client_ip` exactly as sent, or `""` when it had none.
    pub client_ip: &'a str,
    /// The session's resolved destination address.
    pub address: &'a str,
}

impl SignedFields<'_> {
    /// The string that is signed: the eight fields joined with a single `'\n'` (no trailing newline),
    /// in this order: `merchant_transaction_id`, `partner_user_id`, `network`, `currency`, `amount`,
    /// `checkout_type`, `client_ip` (or `""`), `address`. The stand-in refuses control characters in
    /// every one of these fields, so the joined string is unambiguous.
    pub fn canonical_string(&self) -> String {
        [
            self.merchant_transaction_id,
            self.partner_user_id,
            self.network,
            self.currency,
            self.amount,
            self.checkout_type,
            self.client_ip,
            self.address,
        ]
        .join("\n")
    }
}

/// The signature a session carries: `"v2:"` followed by the 128 lower-case hex digits of
/// HMAC-SHA512(`signing_key`, canonical string), where the canonical string is the UTF-8 of
///
/// ```text
/// merchant_transaction_id \n partner_user_id \n network \n currency \n amount \n type \n client_ip \n address
/// ```
///
/// (single `'\n'` separators, no trailing newline, `client_ip` empty when the request had none;
/// see [`SignedFields::canonical_string`]).
pub fn session_signature(signing_key: &[u8], fields: &SignedFields<'_>) -> String {
    let mut mac = hmac_sha512(signing_key);
    mac.update(fields.canonical_string().as_bytes());
    format!("v2:{}", lower_hex(&mac.finalize().into_bytes()))
}

#[derive(Serialize)]
struct InitTokenHeader {
    alg: &'static str,
    typ: &'static str,
}

#[derive(Serialize)]
struct InitTokenClaims<'a> {
    mtid: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// How long an init token is valid, in seconds.
pub(super) const INIT_TOKEN_LIFETIME_S: u64 = 3600;

/// A JWT-shaped init token: base64url (no padding) of `{"alg":"HS256","typ":"JWT"}`, a dot,
/// base64url of `{"mtid","sub","iat","exp"}` (`exp` = `iat` + 3600), a dot, and base64url of
/// HMAC-SHA256(`signing_key`, the first two parts joined by the dot).
pub(super) fn init_token(
    signing_key: &[u8],
    merchant_transaction_id: &str,
    partner_user_id: &str,
    issued_at: u64,
) -> String {
    let header = serde_json::to_vec(&InitTokenHeader {
        alg: "HS256",
        typ: "JWT",
    })
    .unwrap_or_default();
    let claims = serde_json::to_vec(&InitTokenClaims {
        mtid: merchant_transaction_id,
        sub: partner_user_id,
        iat: issued_at,
        exp: issued_at.saturating_add(INIT_TOKEN_LIFETIME_S),
    })
    .unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = hmac_sha256(signing_key);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A stable destination address for a user on a network, from
/// HMAC-SHA512(`signing_key`, `partner_user_id + "|" + network`): on `TRC20` `"T"` followed by 33
/// base58-alphabet characters (byte mod 58 of the first 33 bytes; shaped like a Tron address, not a
/// valid one); on every other network `"0x"` followed by the first 20 bytes in lower-case hex.
pub(super) fn derived_address(signing_key: &[u8], partner_user_id: &str, network: &str) -> String {
    let mut mac = hmac_sha512(signing_key);
    mac.update(partner_user_id.as_bytes());
    mac.update(b"|");
    mac.update(network.as_bytes());
    let digest = mac.finalize().into_bytes();
    if network == "TRC20" {
        let mut address = String::with_capacity(34);
        address.push('T');
        for byte in digest.iter().take(33) {
            address.push(char::from(BASE58_ALPHABET[usize::from(*byte) % 58]));
        }
        address
    } else {
        let mut address = String::with_capacity(42);
        address.push_str("0x");
        address.push_str(&lower_hex(&digest[..20]));
        address
    }
}

/// Compares a presented token with the expected one in constant time: both are reduced to an
/// HMAC-SHA256 tag under the signing key, and the tags are compared by `verify_slice`, so neither
/// the content nor the length of the expected token leaks through timing.
pub(super) fn token_matches(signing_key: &[u8], presented: &str, expected: &str) -> bool {
    let mut expected_mac = hmac_sha256(signing_key);
    expected_mac.update(expected.as_bytes());
    let expected_tag = expected_mac.finalize().into_bytes();
    let mut presented_mac = hmac_sha256(signing_key);
    presented_mac.update(presented.as_bytes());
    presented_mac.verify_slice(&expected_tag).is_ok()
}

/// The SHA-256 of some bytes in lower-case hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&Sha256::digest(bytes))
}

pub(super) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

// HMAC takes keys of any length (longer ones are hashed, RFC 2104), so `new_from_slice` cannot fail;
// the fallback only keeps the code free of panics.
fn hmac_sha512(key: &[u8]) -> HmacSha512 {
    <HmacSha512 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha512 as KeyInit>::new(&Default::default()))
}

fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> SignedFields<'static> {
        SignedFields {
            merchant_transaction_id: "550e8400-e29b-41d4-a716-446655440000",
            partner_user_id: "user-123",
            network: "TRC20",
            currency: "USDT",
            amount: "100",
            checkout_type: "buy",
            client_ip: "203.0.113.42",
            address: "Tabc",
        }
    }

    #[test]
    fn the_canonical_string_joins_the_fields_with_newlines_in_the_documented_order() {
        assert_eq!(
            fields().canonical_string(),
            "550e8400-e29b-41d4-a716-446655440000\nuser-123\nTRC20\nUSDT\n100\nbuy\n203.0.113.42\nTabc"
        );
    }

    #[test]
    fn the_signature_is_v2_and_128_lower_hex_digits_of_hmac_sha512() {
        let signature = session_signature(b"key", &fields());
        let mut mac = <HmacSha512 as Mac>::new_from_slice(b"key").unwrap();
        mac.update(fields().canonical_string().as_bytes());
        assert_eq!(
            signature,
            format!("v2:{}", lower_hex(&mac.finalize().into_bytes()))
        );
        assert_eq!(signature.len(), 131);
    }

    #[test]
    fn derived_addresses_are_stable_and_shaped_per_network() {
        let tron = derived_address(b"key", "user-1", "TRC20");
        assert_eq!(tron, derived_address(b"key", "user-1", "TRC20"));
        assert_eq!(tron.len(), 34);
        assert!(tron.starts_with('T'));
        assert!(tron[1..].bytes().all(|b| BASE58_ALPHABET.contains(&b)));
        let evm = derived_address(b"key", "user-1", "ERC20");
        assert_eq!(evm.len(), 42);
        assert!(evm.starts_with("0x"));
        assert_ne!(evm, derived_address(b"key", "user-2", "ERC20"));
        assert_ne!(evm, derived_address(b"key", "user-1", "BEP20"));
    }

    #[test]
    fn token_comparison_accepts_only_the_exact_token() {
        assert!(token_matches(b"k", "secret-token", "secret-token"));
        assert!(!token_matches(b"k", "secret-token ", "secret-token"));
        assert!(!token_matches(b"k", "", "secret-token"));
    }
}
