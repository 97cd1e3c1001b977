from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.security.errors import InvalidToken, SecretFileError, TokenExpired
from edge.security.roles import Role
from edge.security.tokens import decode_token, issue_token, load_or_create_secret

SECRET = b"k" * 64
T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


def test_token_round_trip_gives_subject_role_and_expiry() -> None:
    issued = issue_token(SECRET, "wang", Role.MANAGER, now=T0, ttl=timedelta(hours=8))
    assert issued.expires_in == 8 * 3600
    claims = decode_token(SECRET, issued.access_token, now=T0 + timedelta(hours=7, minutes=59))
    assert (claims.sub, claims.role, claims.issued_at, claims.expires_at) == (
        "wang",
        Role.MANAGER,
        T0,
        T0 + timedelta(hours=8),
    )


def test_token_expires_by_the_injected_clock() -> None:
    token = issue_token(SECRET, "wang", "clerk", now=T0, ttl=timedelta(minutes=5)).access_token
    decode_token(SECRET, token, now=T0 + timedelta(minutes=4, seconds=59))
    with pytest.raises(TokenExpired) as err:
        decode_token(SECRET, token, now=T0 + timedelta(minutes=5))
    assert err.value.status == 401 and err.value.code == "token_expired"
    assert err.value.detail == {"expired_at": "2024-06-01T09:05:00+00:00"}


def test_token_signed_with_another_secret_is_invalid() -> None:
    token = issue_token(b"o" * 64, "wang", "admin", now=T0, ttl=timedelta(hours=1)).access_token
    with pytest.raises(InvalidToken) as err:
        decode_token(SECRET, token, now=T0)
    assert type(err.value) is InvalidToken


def test_unsigned_or_tampered_tokens_are_invalid() -> None:
    claims = {"sub": "wang", "role": "admin", "iat": int(T0.timestamp()), "exp": int(T0.timestamp()) + 60}
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(InvalidToken):
        decode_token(SECRET, unsigned, now=T0)
    header, _payload, signature = issue_token(SECRET, "li", "clerk", now=T0, ttl=timedelta(hours=1)).access_token.split(
        "."
    )
    forged_payload = jwt.encode(claims, SECRET, algorithm="HS256").split(".")[1]
    with pytest.raises(InvalidToken):
        decode_token(SECRET, f"{header}.{forged_payload}.{signature}", now=T0)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "wang", "iat": 0, "exp": 2**31},
        {"sub": "wang", "role": "emperor", "iat": 0, "exp": 2**31},
        {"sub": "", "role": "admin", "iat": 0, "exp": 2**31},
        {"sub": 7, "role": "admin", "iat": 0, "exp": 2**31},
        {"sub": "wang", "role": "admin", "iat": "0", "exp": "2147483648"},
        {"sub": "wang", "role": "admin", "iat": 10, "exp": 5},
        {"sub": "wang", "role": "admin", "iat": 0, "exp": 2.5e9},
    ],
)
def test_signed_tokens_with_bad_claims_are_invalid(claims: dict[str, object]) -> None:
    with pytest.raises(InvalidToken):
        decode_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"), now=T0)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=80),
            min_size=1,
            max_size=5,
        ).map(".".join),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.just("x" * 5000),
    )
)
def test_garbage_tokens_raise_only_invalid_token(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(SECRET, garbage, now=T0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(header: dict[str, object], claims: object) -> str:
    """A token signed with SECRET whatever its claims hold (PyJWT's encoder refuses some)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


HEADERS = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "none", "RS256", "HS512"])},
    optional={"typ": JSON, "kid": JSON, "crit": JSON, "b64": JSON},
)
CLAIMS = st.dictionaries(st.sampled_from(["sub", "role", "iat", "exp", "nbf", "aud", "iss"]), JSON) | JSON


@settings(max_examples=300, deadline=None)
@given(HEADERS, CLAIMS)
def test_signed_garbage_raises_only_invalid_token(header: dict[str, object], claims: object) -> None:
    token = _sign(header, claims)
    with contextlib.suppress(InvalidToken):
        decode_token(SECRET, token, now=T0)


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]


def test_secret_with_loose_mode_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(os.urandom(64))
    path.chmod(0o644)
    load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_short_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"short")
    with pytest.raises(SecretFileError) as err:
        load_or_create_secret(path)
    assert "密钥" in err.value.message and "32" in err.value.message_en
