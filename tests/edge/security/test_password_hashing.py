from __future__ import annotations

import pytest

from edge.security.errors import WeakPassword
from edge.security.passwords import (
    MAX_PASSWORD_LENGTH,
    MEMORY_COST_KIB,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_hash_round_trip_verifies_the_same_password_only() -> None:
    hashed = hash_password("收银台-密码-2024")
    assert hashed.startswith("$argon2id$")
    assert f"m={MEMORY_COST_KIB}" in hashed
    assert verify_password(hashed, "收银台-密码-2024")
    assert not verify_password(hashed, "收银台-密码-2025")
    assert not needs_rehash(hashed)


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("password-one") != hash_password("password-one")


def test_missing_or_corrupt_hash_never_matches() -> None:
    assert not verify_password(None, "anything-at-all")
    assert not verify_password("not-a-hash", "anything-at-all")
    assert not verify_password("", "")
    assert needs_rehash("not-a-hash")


def test_hash_with_other_parameters_verifies_but_needs_rehash() -> None:
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("legacy-password")
    assert verify_password(old, "legacy-password")
    assert needs_rehash(old)


@pytest.mark.parametrize("password", ["", "short", "x" * (MAX_PASSWORD_LENGTH + 1)])
def test_password_policy_refuses_short_and_huge_passwords(password: str) -> None:
    with pytest.raises(WeakPassword) as err:
        hash_password(password)
    assert err.value.code == "weak_password"
    assert "密码" in err.value.message and "password" in err.value.message_en


def test_huge_password_is_refused_without_hashing() -> None:
    assert not verify_password(hash_password("reasonable-pw"), "x" * (MAX_PASSWORD_LENGTH + 1))
