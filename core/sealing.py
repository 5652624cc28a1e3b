"""Secrets the server must keep readable (webhook signing secrets: it signs with them), sealed
at rest with Fernet (the `cryptography` package: AES-128-CBC and HMAC-SHA256, authenticated).

`SESSIONS_API_SECRET_KEYS` lists Fernet keys, comma-separated: the first seals, every one
opens (`MultiFernet`), so keys rotate by putting a new one first, running
`sessions-api secrets rotate` (which re-seals everything under it) and then dropping the old.
A sealed value reads `fernet:<token>`; one stored before the setting was made reads as it is,
and is sealed by the next rotation. Without the setting, secrets are stored as they are (and
`serve` warns at start). API keys need none of this: only their hash is stored.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SEALED_PREFIX = "fernet:"


class UnreadableSecret(ValueError):
    """A sealed secret none of the configured keys opens (a key was dropped too early)."""


class SecretBox:
    """Seals and opens secrets with the configured keys (or stores them as they are, without)."""

    def __init__(self, keys: str) -> None:
        fernets = [Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()]
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def seals(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            return secret
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED_PREFIX):
            return stored
        if self._fernet is None:
            raise UnreadableSecret("a sealed secret, and SESSIONS_API_SECRET_KEYS is not set")
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise UnreadableSecret("a sealed secret that none of SESSIONS_API_SECRET_KEYS opens") from None

    def reseal(self, stored: str) -> str:
        """`stored` sealed under the first key (a plain one sealed for the first time)."""
        return self.seal(self.open(stored))


def valid_keys(keys: str) -> str:
    """`keys` if each is a Fernet key (URL-safe base64 of 32 bytes); ValueError otherwise."""
    SecretBox(keys)
    return keys
