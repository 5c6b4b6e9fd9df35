"""Secrets at rest: MultiFernet over BIAPP_FERNET_KEYS, newest key first."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import SecretUnreadableError


class SecretBox:
    def __init__(self, keys: tuple[str, ...]):
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, what: str = "stored secret") -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadableError(
                f"The {what} cannot be decrypted with any key in BIAPP_FERNET_KEYS; "
                "re-enter it or restore the key it was written with."
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt with the newest key; raises SecretUnreadableError if no key opens it."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadableError("a stored secret cannot be decrypted with any configured key") from None
