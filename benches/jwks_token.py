#!/usr/bin/env python3
"""A stand-in identity provider's two halves, with openssl and the standard library only.

    python3 benches/jwks_token.py jwk   KEY.pem KID          # the public JWK of a private key
    python3 benches/jwks_token.py token KEY.pem KID CLAIMS   # a JWT signed with it (CLAIMS: JSON)

KEY.pem is a PKCS#8 private key as `openssl genpkey` writes it: RSA (RS256), P-256 (ES256) or
Ed25519 (EdDSA); the algorithm follows from the key. benches/jwks.sh uses it to serve a key set
and sign the benchmark's session; tests/fixtures/jwks/*.jwk.json were made with it.
"""

import base64
import json
import subprocess
import sys
import tempfile

RSA = "1.2.840.113549.1.1.1"
EC = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"
ED25519 = "1.3.101.112"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der(data: bytes, at: int = 0):
    """One DER element at `at`: (tag, contents, offset after it)."""
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(data[at : at + size], "big"), at + size
    return tag, data[at : at + length], at + length


def children(data: bytes):
    at = 0
    while at < len(data):
        tag, contents, at = der(data, at)
        yield tag, contents


def oid(contents: bytes) -> str:
    parts = [contents[0] // 40, contents[0] % 40]
    value = 0
    for byte in contents[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def unsigned(integer: bytes, size: int = 0) -> bytes:
    integer = integer.lstrip(b"\x00")
    return integer.rjust(size, b"\x00") if size else integer


def openssl(*args: str, data: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def public_jwk(key: str, kid: str) -> dict:
    """The key's public half as a JWK, read from its SubjectPublicKeyInfo."""
    spki = openssl("pkey", "-in", key, "-pubout", "-outform", "DER")
    _, info, _ = der(spki)
    (_, algorithm), (_, bits) = list(children(info))
    identifiers = [oid(c) for t, c in children(algorithm) if t == 0x06]
    point = bits[1:]  # a BIT STRING starts with its count of unused bits
    if identifiers[0] == RSA:
        (_, n), (_, e) = list(children(der(point)[1]))
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": b64url(unsigned(n)), "e": b64url(unsigned(e))}
    if identifiers[0] == EC and identifiers[1] == P256:
        return {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64url(point[1:33]), "y": b64url(point[33:65])}
    if identifiers[0] == ED25519:
        return {"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519",
                "x": b64url(point)}
    sys.exit(f"{key}: not an RSA, P-256 or Ed25519 key")


def token(key: str, kid: str, claims: dict) -> str:
    alg = public_jwk(key, kid)["alg"]
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    ).encode()
    if alg == "EdDSA":
        with tempfile.NamedTemporaryFile() as message:
            message.write(signing_input)
            message.flush()
            signature = openssl("pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", message.name)
    else:
        signature = openssl("dgst", "-sha256", "-sign", key, data=signing_input)
        if alg == "ES256":
            # openssl writes ECDSA-Sig-Value (DER); a JWS carries r and s, 32 bytes each.
            (_, r), (_, s) = list(children(der(signature)[1]))
            signature = unsigned(r, 32) + unsigned(s, 32)
    return signing_input.decode() + "." + b64url(signature)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "jwk":
        print(json.dumps(public_jwk(sys.argv[2], sys.argv[3])))
    elif len(sys.argv) == 5 and sys.argv[1] == "token":
        print(token(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
    else:
        sys.exit(__doc__)
