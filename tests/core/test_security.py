"""Pure security helpers."""

import time
import uuid
from datetime import timedelta

import pytest

from vektor.core.security import (
    TokenError,
    create_access_token,
    decode_access_token,
    hash_password,
    hash_token,
    new_refresh_token,
    verify_password,
)

KEY = "k" * 48


def _token(user: uuid.UUID | None = None, session: uuid.UUID | None = None) -> str:
    return create_access_token(
        secret_key=KEY,
        user_id=user or uuid.uuid4(),
        session_id=session or uuid.uuid4(),
        lifetime=timedelta(minutes=1),
        issuer="vektor",
        audience="vektor-api",
    )


def test_hash_and_verify():
    hashed = hash_password("correct horse", rounds=4)
    assert hashed.startswith("$2b$04$")
    assert verify_password("correct horse", hashed)
    assert not verify_password("correct horsE", hashed)


def test_over_72_bytes_is_refused_not_truncated():
    with pytest.raises(ValueError, match="72"):
        hash_password("€" * 25, rounds=4)
    hashed = hash_password("€" * 24, rounds=4)
    assert not verify_password("€" * 24 + "x", hashed)


def test_verify_against_garbage_hash_is_false():
    assert not verify_password("anything", "not-a-bcrypt-hash")


def test_access_token_round_trip():
    user, session = uuid.uuid4(), uuid.uuid4()
    token = _token(user, session)
    claims = decode_access_token(token, secret_key=KEY, issuer="vektor", audience="vektor-api")
    assert claims.user_id == user
    assert claims.session_id == session


def test_access_token_wrong_key():
    token = _token()
    with pytest.raises(TokenError):
        decode_access_token(token, secret_key="x" * 48, issuer="vektor", audience="vektor-api")


def test_a_remembered_token_still_expires_and_keys_still_matter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = _token()
    first = decode_access_token(token, secret_key=KEY, issuer="vektor", audience="vektor-api")
    again = decode_access_token(token, secret_key=KEY, issuer="vektor", audience="vektor-api")
    assert again == first
    # verified once with KEY: no other key, issuer or audience is answered from memory
    for other in [
        {"secret_key": "x" * 48, "issuer": "vektor", "audience": "vektor-api"},
        {"secret_key": KEY, "issuer": "other", "audience": "vektor-api"},
        {"secret_key": KEY, "issuer": "vektor", "audience": "other"},
    ]:
        with pytest.raises(TokenError):
            decode_access_token(token, **other)
    # past its expiry (and the 5 s leeway) the remembered token is refused, and stays so
    later = time.time() + 66
    monkeypatch.setattr("vektor.core.security.time.time", lambda: later)
    for _ in range(2):
        with pytest.raises(TokenError, match="expired"):
            decode_access_token(token, secret_key=KEY, issuer="vektor", audience="vektor-api")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "ey.ey.ey", "\x00" * 10])
def test_garbage_tokens(garbage):
    with pytest.raises(TokenError):
        decode_access_token(garbage, secret_key=KEY, issuer="vektor", audience="vektor-api")


def test_refresh_tokens_are_random_and_hashed():
    a, b = new_refresh_token(), new_refresh_token()
    assert a != b
    assert len(a) > 40
    assert hash_token(a) != a
    assert len(hash_token(a)) == 64
