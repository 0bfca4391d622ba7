"""argon2id password hashing, off the event loop."""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from auth_service.settings import Settings


def normalise_password(password: str) -> str:
    """Apply Unicode NFKC, so that visually equal spellings of a password match.

    A password typed on another keyboard or OS may arrive composed or
    decomposed. NIST SP 800-63B (section 5.1.1.2) recommends NFKC or NFKD.
    ASCII passwords are unchanged.
    """
    return unicodedata.normalize("NFKC", password)


class Passwords:
    """argon2id hashing with the parameters from the settings."""

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Verified against when the email is unknown, so that an unknown email
        # and a wrong password take about the same time.
        self._dummy_hash = self._hasher.hash("dummy password for timing")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, normalise_password(password))

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check `password` against `stored_hash`.

        None means an unknown account, which still costs one verification
        and returns False.
        """
        return await asyncio.to_thread(
            self._verify, stored_hash, normalise_password(password)
        )

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            matched = self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError, the usual wrong password, is a VerificationError.
            return False
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """Tell whether the hash was made with other parameters than the current."""
        return self._hasher.check_needs_rehash(stored_hash)
