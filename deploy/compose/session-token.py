#!/usr/bin/env python3
"""Prints a session token for the compose file's replicas: an HS256 JWT signed with the demo key in
secrets/session_key, for the user id and email given, valid for an hour.

    python3 session-token.py alice alice@example.com
"""

import base64
import hashlib
import hmac
import json
import pathlib
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} USER_ID EMAIL")
    user_id, email = sys.argv[1:]
    key_file = pathlib.Path(__file__).resolve().parent / "secrets" / "session_key"
    key = key_file.read_bytes().rstrip(b"\r\n")
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": user_id, "email": email, "exp": int(time.time()) + 3600}
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64url(hmac.new(key, signing_input, hashlib.sha256).digest())
    print(f"{header}.{payload}.{signature}")


if __name__ == "__main__":
    main()
