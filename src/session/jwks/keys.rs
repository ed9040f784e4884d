//! The identity provider's key set, parsed once per fetch into keys ready to verify with.
//!
//! Each key is checked here, so that nothing on the request path can fail on key material (a
//! short Ed25519 key would make jsonwebtoken panic, an oversized RSA modulus would fail every
//! token) and so that a key is only ever used for the algorithms it may serve. Keys this service
//! cannot or must not use (encryption keys, symmetric keys, unknown curves, weak RSA) are left out
//! rather than failing the whole set: providers publish such keys beside their signing keys.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;

/// RFC 7518 §3.3: RSA keys of 2048 bits or more.
const MIN_RSA_BITS: usize = 2048;
/// The largest modulus the RSA implementation verifies with.
const MAX_RSA_BITS: usize = 4096;
/// The public exponent range the RSA implementation accepts.
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

/// The usable keys of one fetched set, by `kid`.
pub(super) struct KeySet {
    by_kid: HashMap<String, Vec<UsableKey>>,
}

struct UsableKey {
    key: DecodingKey,
    /// The configured algorithms this key may verify: its type's, narrowed by its own `alg`.
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .finish()
    }
}

impl KeySet {
    /// The keys of a JWK Set document usable with `allowed`; an error when the document is not a
    /// key set or holds no usable key (a set that verifies nothing is an outage, not an update).
    pub(super) fn parse(body: &[u8], allowed: &[Algorithm]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let document: Document = serde_json::from_slice(body)
            .map_err(|_| "the answer is not a JWK Set (a JSON object with \"keys\")".to_owned())?;
        let published = document.keys.len();
        let mut by_kid: HashMap<String, Vec<UsableKey>> = HashMap::new();
        let mut skipped: Vec<&'static str> = Vec::new();
        for value in document.keys {
            match usable_key(value, allowed) {
                Ok((kid, key)) => by_kid.entry(kid).or_default().push(key),
                Err(reason) => {
                    tracing::debug!(reason, "session.jwks: a published key is left out");
                    if !skipped.contains(&reason) {
                        skipped.push(reason);
                    }
                }
            }
        }
        if by_kid.is_empty() {
            let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            let why = if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", skipped.join("; "))
            };
            return Err(format!(
                "none of its {published} keys can verify {}{why}",
                names.join(", ")
            ));
        }
        Ok(Self { by_kid })
    }

    pub(super) fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key named `kid` that may verify `algorithm`.
    pub(super) fn key(&self, kid: &str, algorithm: Algorithm) -> Option<&DecodingKey> {
        self.by_kid
            .get(kid)?
            .iter()
            .find(|usable| usable.algorithms.contains(&algorithm))
            .map(|usable| &usable.key)
    }

    /// The key ids, sorted: for logs, which never show key material.
    pub(super) fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// One published key, checked: `(kid, key)`, or why it is left out.
fn usable_key(value: Value, allowed: &[Algorithm]) -> Result<(String, UsableKey), &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "not a key type or curve in use")?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .filter(|kid| !kid.is_empty())
        .ok_or("no kid: tokens could not name it")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("an encryption key (\"use\" is not \"sig\")"),
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("\"key_ops\" does not include \"verify\"");
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("an EC key on a curve other than P-256 or P-384"),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err("an OKP key on a curve other than Ed25519"),
        },
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric key"),
    };
    let own = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(
            signature_algorithm(alg)
                .ok_or("its \"alg\" is not an asymmetric signature algorithm")?,
        ),
    };
    let algorithms: Vec<Algorithm> = family
        .iter()
        .copied()
        .filter(|algorithm| allowed.contains(algorithm) && own.is_none_or(|own| own == *algorithm))
        .collect();
    if algorithms.is_empty() {
        return Err("not for any of the configured algorithms");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "its key material is not base64url")?;
    check_material(&key, algorithms[0])?;
    Ok((kid, UsableKey { key, algorithms }))
}

/// Whether verifying with `key` can work at all, so that a token naming it is judged by its
/// signature and never fails on (or crashes over) the key itself.
fn check_material(key: &DecodingKey, algorithm: Algorithm) -> Result<(), &'static str> {
    match (key.kind(), algorithm) {
        (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
            let bits = bit_length(n);
            if bits < MIN_RSA_BITS {
                return Err("an RSA key under 2048 bits");
            }
            if bits > MAX_RSA_BITS {
                return Err("an RSA key over 4096 bits");
            }
            let e = significant(e);
            let exponent = (e.len() <= 8)
                .then(|| {
                    e.iter()
                        .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
                })
                .filter(|e| *e >= 3 && *e <= MAX_RSA_EXPONENT && e % 2 == 1);
            if exponent.is_none() {
                return Err("an RSA key with an unusable exponent");
            }
            Ok(())
        }
        (DecodingKeyKind::SecretOrDer(bytes), Algorithm::EdDSA) if bytes.len() != 32 => {
            Err("an Ed25519 key that is not 32 bytes")
        }
        (DecodingKeyKind::SecretOrDer(_), _) => {
            // The EC point (or Ed25519 key) is parsed before any signature is looked at, so a
            // dummy signature shows a broken key as an error and a sound one as "no match".
            jsonwebtoken::crypto::verify("AA", b"", key, algorithm)
                .map(|_| ())
                .map_err(|_| "its public key is not a valid point")
        }
    }
}

fn significant(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    &bytes[zeros..]
}

fn bit_length(bytes: &[u8]) -> usize {
    match significant(bytes) {
        [] => 0,
        [first, rest @ ..] => rest.len() * 8 + (8 - first.leading_zeros() as usize),
    }
}

fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        // HMAC keys are refused by type already; the rest are encryption algorithms.
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
