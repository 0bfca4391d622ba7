"""Generation and hashing of API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "ir_"
# 32 random bytes: 256 bits, 43 URL-safe base64 characters.
KEY_RANDOM_BYTES = 32
VISIBLE_PREFIX_LENGTH = 8


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def hashes_match(stored: str, computed: str) -> bool:
    return hmac.compare_digest(stored.encode(), computed.encode())
