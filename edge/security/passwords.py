"""Password hashing with argon2id.

Parameters follow the OWASP minimum for argon2id (19 MiB, 2 passes, 1 lane): about 50 ms per hash
on the box, and little memory, so a burst of logins or device connects cannot exhaust a small box.
A hash records its own parameters, so raising them later still verifies old hashes; `needs_rehash`
tells when to store a fresh one.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from edge.security.errors import WeakPassword

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
TIME_COST = 2
MEMORY_COST_KIB = 19456
PARALLELISM = 1

# Verified against when a user or device does not exist, so a wrong name takes as long as a
# wrong password. Its password was random and is not kept anywhere.
_DUMMY_HASH = "$argon2id$v=19$m=19456,t=2,p=1$J7oqCFJYIspcpaP7xqELIw$HbyhYv0SpkXUxRPmLP1zDLnsjkS7Np5l2+GD4mcCAqo"


def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)


def check_password_policy(password: str) -> None:
    """Refuse a password that is too short or absurdly long (raises WeakPassword)."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WeakPassword(MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH)


def hash_password(password: str) -> str:
    """An argon2id hash of `password`, which must satisfy the password policy."""
    check_password_policy(password)
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches `password_hash`; a missing or corrupt hash never matches.

    Takes about as long when `password_hash` is None, so callers can pass None for an unknown user.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher().verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than the current ones."""
    try:
        return _hasher().check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
