"""Authenticated encryption for secrets at rest (refresh tokens, AWS credentials, login state).

`TokenCipher` wraps cryptography's MultiFernet (AES-128-CBC + HMAC-SHA256): the first key encrypts, every
key decrypts, so `QBOT_TOKEN_KEYS` rotates by putting a new key first without anyone relinking. Each sealed
blob also carries a *context* (the Redis key it is stored under) inside the authenticated plaintext, and
`open` refuses a blob whose context differs: a ciphertext copied to another user's key does not decrypt as
theirs. Nothing in this module logs or puts a secret into an exception message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CipherError(Exception):
    """A blob could not be opened: tampered, sealed for another context, or under no configured key."""


class TokenCipher:
    """Seal and open JSON payloads bound to a context. Keys are Fernet keys (`qbot keygen`)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):  # a lone string would be iterated character by character
            keys = (keys,)
        if not keys:
            raise ValueError("TokenCipher needs at least one key (QBOT_TOKEN_KEYS)")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def ephemeral(cls) -> TokenCipher:
        """A cipher under a fresh random key, for the sandbox and tests: its blobs die with the process."""
        return cls([Fernet.generate_key().decode("ascii")])  # pragma: no mutate - "ASCII" is the same codec

    def seal(self, context: str, payload: dict[str, Any]) -> bytes:
        """Encrypt and authenticate `payload` (JSON-serialisable) with `context`, under the first key."""
        # Equivalent mutants: other `separators`/`ensure_ascii` only make the blob larger and "UTF-8" is "utf-8":
        # the payload opens the same.
        plaintext = json.dumps({"c": context, "p": payload}, separators=(",", ":"), ensure_ascii=False)
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def open(self, context: str, blob: bytes | str) -> dict[str, Any]:
        """Decrypt a blob sealed for exactly `context` under any configured key; `CipherError` otherwise."""
        try:
            plaintext = self._fernet.decrypt(blob)
        except (InvalidToken, TypeError, ValueError):
            raise CipherError("blob is tampered or sealed under an unknown key") from None
        try:
            envelope = json.loads(plaintext)
        except ValueError:
            raise CipherError("blob does not hold a sealed payload") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("p"), dict):
            raise CipherError("blob does not hold a sealed payload")
        sealed_for = envelope.get("c")
        # equivalent mutants: encode("UTF-8") on either side is the same codec
        if not isinstance(sealed_for, str) or not hmac.compare_digest(
            sealed_for.encode("utf-8"), context.encode("utf-8")
        ):
            raise CipherError("blob was sealed for another context")
        payload: dict[str, Any] = envelope["p"]
        return payload
