use serde_json::{Value, json};

use super::*;

const RSA: &str = include_str!("../../../../tests/fixtures/jwks/rsa.jwk.json");
const EC: &str = include_str!("../../../../tests/fixtures/jwks/ec.jwk.json");
const ED25519: &str = include_str!("../../../../tests/fixtures/jwks/ed25519.jwk.json");
const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn jwk(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn with(mut key: Value, field: &str, value: Value) -> Value {
    key[field] = value;
    key
}

fn without(mut key: Value, field: &str) -> Value {
    key.as_object_mut().unwrap().remove(field);
    key
}

fn set(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

fn parse(keys: &[Value], allowed: &[Algorithm]) -> Result<KeySet, String> {
    KeySet::parse(&set(keys), allowed)
}

#[test]
fn rsa_ec_and_ed25519_keys_serve_their_own_algorithms() {
    let keys = parse(&[jwk(RSA), jwk(EC), jwk(ED25519)], &ALL).unwrap();
    assert_eq!(keys.kids(), ["ec-1", "ed-1", "rsa-2024"]);
    assert!(keys.key("rsa-2024", Algorithm::RS256).is_some());
    assert!(keys.key("ec-1", Algorithm::ES256).is_some());
    assert!(keys.key("ed-1", Algorithm::EdDSA).is_some());
    // Each key's own "alg" narrows it to that algorithm alone.
    assert!(keys.key("rsa-2024", Algorithm::PS256).is_none());
    assert!(keys.key("rsa-2024", Algorithm::ES256).is_none());
    assert!(keys.key("ec-1", Algorithm::RS256).is_none());
    assert!(keys.key("nope", Algorithm::RS256).is_none());
    assert!(keys.has_kid("ec-1") && !keys.has_kid("nope"));
}

#[test]
fn without_its_own_alg_a_key_serves_its_types_configured_algorithms() {
    let rsa = without(jwk(RSA), "alg");
    let keys = parse(std::slice::from_ref(&rsa), &ALL).unwrap();
    for algorithm in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS384] {
        assert!(keys.key("rsa-2024", algorithm).is_some(), "{algorithm:?}");
    }
    let keys = parse(&[rsa], &[Algorithm::PS256]).unwrap();
    assert!(keys.key("rsa-2024", Algorithm::PS256).is_some());
    assert!(keys.key("rsa-2024", Algorithm::RS256).is_none());
}

#[test]
fn keys_outside_the_configured_algorithms_are_left_out() {
    let keys = parse(&[jwk(RSA), jwk(EC)], &[Algorithm::RS256]).unwrap();
    assert_eq!(keys.kids(), ["rsa-2024"]);
    let problem = parse(&[jwk(EC)], &[Algorithm::RS256]).unwrap_err();
    assert!(
        problem.contains("none of its 1 keys can verify RS256"),
        "{problem}"
    );
    assert!(
        problem.contains("not for any of the configured algorithms"),
        "{problem}"
    );
}

#[test]
fn keys_this_service_must_not_use_are_left_out_and_the_rest_kept() {
    let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"});
    let p521 = json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"});
    let ed448 = json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": "AA"});
    let unknown = json!({"kty": "XYZ", "kid": "xyz"});
    let left_out = [
        with(jwk(RSA), "use", json!("enc")),
        with(
            with(jwk(RSA), "alg", json!("RSA-OAEP")),
            "kid",
            json!("oaep"),
        ),
        with(jwk(RSA), "key_ops", json!(["encrypt"])),
        with(jwk(RSA), "alg", json!("HS256")),
        without(jwk(EC), "kid"),
        with(jwk(EC), "kid", json!("")),
        oct,
        p521,
        ed448,
        unknown,
        json!("not an object"),
    ];
    for key in &left_out {
        assert!(parse(std::slice::from_ref(key), &ALL).is_err(), "{key}");
    }
    let mut published = left_out.to_vec();
    published.push(jwk(ED25519));
    let keys = parse(&published, &ALL).unwrap();
    assert_eq!(keys.kids(), ["ed-1"]);
    assert!(parse(&[with(jwk(RSA), "key_ops", json!(["verify"]))], &ALL).is_ok());
}

#[test]
fn broken_or_weak_key_material_is_left_out_never_used() {
    let rsa = jwk(RSA);
    let n = rsa["n"].as_str().unwrap();
    // 1008 bits: the first 126 bytes of the modulus.
    let short_n = &n[..168];
    let long_n = format!("{n}{n}{n}");
    for (key, why) in [
        (with(rsa.clone(), "n", json!(short_n)), "under 2048 bits"),
        (with(rsa.clone(), "n", json!(long_n)), "over 4096 bits"),
        (with(rsa.clone(), "e", json!("AQ")), "unusable exponent"),
        (with(rsa.clone(), "e", json!("AAAB")), "unusable exponent"),
        (with(rsa.clone(), "e", json!("AQAA")), "unusable exponent"),
        (with(rsa.clone(), "n", json!("!!!")), "not base64url"),
        (with(jwk(EC), "x", json!("AAAA")), "not a valid point"),
        (
            with(jwk(EC), "y", jwk(EC)["x"].clone()),
            "not a valid point",
        ),
        // jsonwebtoken would panic on a short Ed25519 key.
        (with(jwk(ED25519), "x", json!("AAAA")), "not 32 bytes"),
        (
            with(
                jwk(ED25519),
                "x",
                json!(format!("{}AAAA", jwk(ED25519)["x"].as_str().unwrap())),
            ),
            "not 32 bytes",
        ),
    ] {
        let problem = parse(std::slice::from_ref(&key), &ALL).unwrap_err();
        assert!(problem.contains(why), "{key}: {problem}");
    }
}

#[test]
fn a_document_that_is_not_a_key_set_is_an_error() {
    for body in [
        &b"<html>maintenance</html>"[..],
        b"",
        b"{}",
        b"{\"keys\": {}}",
        b"[]",
        b"{\"keys\": []}",
    ] {
        assert!(KeySet::parse(body, &ALL).is_err(), "{body:?}");
    }
}

#[test]
fn two_keys_may_share_a_kid_when_their_types_differ() {
    let ec = with(jwk(EC), "kid", json!("shared"));
    let rsa = with(jwk(RSA), "kid", json!("shared"));
    let keys = parse(&[ec, rsa], &ALL).unwrap();
    assert!(keys.key("shared", Algorithm::ES256).is_some());
    assert!(keys.key("shared", Algorithm::RS256).is_some());
}

#[test]
fn debug_shows_kids_only() {
    let keys = parse(&[jwk(RSA)], &ALL).unwrap();
    let debug = format!("{keys:?}");
    assert!(debug.contains("rsa-2024"), "{debug}");
    assert!(
        !debug.contains(&jwk(RSA)["n"].as_str().unwrap()[..20]),
        "{debug}"
    );
}
