"""TokenCipher: authenticated, context-bound, rotatable encryption (no Redis needed)."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from bot.cipher import CipherError, TokenCipher

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def test_round_trip_keeps_payload() -> None:
    cipher = TokenCipher([KEY_A])
    payload = {"token": "rt-secret-1", "n": 3, "groups": ["a", "b"], "email": "zoë@example.com"}
    blob = cipher.seal("qbot:vault:slack:T1:U1", payload)
    assert isinstance(blob, bytes)
    assert b"rt-secret-1" not in blob and b"qbot:vault" not in blob
    assert cipher.open("qbot:vault:slack:T1:U1", blob) == payload
    assert cipher.open("qbot:vault:slack:T1:U1", blob.decode()) == payload  # str from decode_responses


def test_blob_does_not_open_under_another_context() -> None:
    cipher = TokenCipher([KEY_A])
    blob = cipher.seal("qbot:vault:slack:T1:alice", {"token": "alice's"})
    with pytest.raises(CipherError):
        cipher.open("qbot:vault:slack:T1:mallory", blob)
    with pytest.raises(CipherError):
        cipher.open("qbot:vault:slack:T1:alic", blob)  # no prefix games either


@pytest.mark.parametrize("position", [0, 10, 40, -5, -1])
def test_any_tampering_is_refused(position: int) -> None:
    cipher = TokenCipher([KEY_A])
    raw = bytearray(base64.urlsafe_b64decode(cipher.seal("ctx", {"token": "t"})))
    raw[position] ^= 0x01
    with pytest.raises(CipherError):
        cipher.open("ctx", base64.urlsafe_b64encode(bytes(raw)))


@pytest.mark.parametrize("blob", [b"", b"garbage", b"gAAAAA", "not base64 !!", b"\xff\x00"])
def test_garbage_is_refused(blob: bytes | str) -> None:
    with pytest.raises(CipherError):
        TokenCipher([KEY_A]).open("ctx", blob)


def test_unknown_key_is_refused() -> None:
    blob = TokenCipher([KEY_A]).seal("ctx", {"token": "t"})
    with pytest.raises(CipherError):
        TokenCipher([KEY_B]).open("ctx", blob)


def test_rotation_first_key_encrypts_all_decrypt() -> None:
    old = TokenCipher([KEY_A])
    rotated = TokenCipher([KEY_B, KEY_A])
    assert rotated.open("ctx", old.seal("ctx", {"v": 1})) == {"v": 1}
    new_blob = rotated.seal("ctx", {"v": 2})
    assert TokenCipher([KEY_B]).open("ctx", new_blob) == {"v": 2}
    with pytest.raises(CipherError):
        old.open("ctx", new_blob)


def test_sealed_non_object_is_refused() -> None:
    # a blob under a valid key whose plaintext is not our envelope (e.g. written by something else)
    blob = Fernet(KEY_A.encode()).encrypt(b'["c", "p"]')
    with pytest.raises(CipherError):
        TokenCipher([KEY_A]).open("c", blob)


def test_errors_carry_no_secret() -> None:
    cipher = TokenCipher([KEY_A])
    blob = cipher.seal("ctx-a", {"token": "very-secret"})
    with pytest.raises(CipherError) as caught:
        cipher.open("ctx-b", blob)
    assert "very-secret" not in str(caught.value) and KEY_A not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_ephemeral_keys_are_random() -> None:
    one, two = TokenCipher.ephemeral(), TokenCipher.ephemeral()
    assert one.open("c", one.seal("c", {"x": 1})) == {"x": 1}
    with pytest.raises(CipherError):
        two.open("c", one.seal("c", {"x": 1}))


def test_keys_are_required_and_checked() -> None:
    with pytest.raises(ValueError):
        TokenCipher([])
    with pytest.raises(ValueError):
        TokenCipher(["not-a-fernet-key"])
    assert TokenCipher(KEY_A).open("c", TokenCipher([KEY_A]).seal("c", {})) == {}  # a lone str is one key


@pytest.mark.parametrize(
    "plaintext",
    [
        b"not json at all",
        b'{"c": "c", "p": "a string, not a payload"}',
        b'{"c": "c"}',
        b'{"p": {"token": "t"}}',
        b'{"c": 5, "p": {"token": "t"}}',
        b'{"c": null, "p": {"token": "t"}}',
    ],
)
def test_a_blob_under_our_key_but_not_our_envelope_is_refused(plaintext: bytes) -> None:
    """Only `seal`'s own envelope opens: a payload that is an object, bound to a context given as text."""
    blob = Fernet(KEY_A.encode()).encrypt(plaintext)
    with pytest.raises(CipherError):
        TokenCipher([KEY_A]).open("c", blob)
