"""Encryption of provider API keys at rest (Fernet, rotatable)."""

from __future__ import annotations

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = structlog.get_logger(__name__)


class SecretBox:
    """Encrypt with the first configured key; decrypt with any of them.

    Rotation: put a new key first in PROVIDER_SECRET_KEYS, keep the old ones
    after it, run `python -m providers_service rotate-secrets`, then drop the
    old keys.
    """

    def __init__(self, keys_setting: str) -> None:
        keys = [key.strip() for key in keys_setting.split(",") if key.strip()]
        if not keys:
            log.warning(
                "provider_secret_keys_missing",
                message="PROVIDER_SECRET_KEYS is empty; using a temporary key, so "
                "stored provider keys become unreadable after a restart",
            )
            keys = [Fernet.generate_key().decode()]
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as error:
            raise ValueError(
                "provider secret cannot be decrypted with PROVIDER_SECRET_KEYS"
            ) from error

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt a token with the first key; raise ValueError if unreadable."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as error:
            raise ValueError(
                "provider secret cannot be decrypted with PROVIDER_SECRET_KEYS"
            ) from error


def mask_secret(secret: str) -> str:
    """Return a hint that identifies a secret without revealing it: `…abcd`."""
    if len(secret) < 12:
        return "…"
    return "…" + secret[-4:]
