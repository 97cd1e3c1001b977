"""Device passwords as an external broker checks them, and the broker's password file (docs/mqtt5.md).

The box checks a device's password against an argon2 hash (`devices.password_hash`); Mosquitto cannot read
argon2, and the box keeps no password in clear. So whenever a password is set in clear (`storebox device
add`, a rotation) the box also stores Mosquitto's own hash of it: PBKDF2-HMAC-SHA512, 12-byte salt, written as
`$7$<iterations>$<base64 salt>$<base64 hash>` (the format `mosquitto_passwd` writes, mosquitto 2.0
`password_file`). The password file is then written from the registry: enabled devices that have such a
hash, plus the box's own user. A device disabled on the box drops out at the next write of the file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
from datetime import datetime

from edge.ledger.errors import DomainError
from edge.security.errors import UnknownDevice

# mosquitto_passwd writes 101 iterations; 20 000 costs the broker about 15 ms per login on these machines,
# which a reconnect storm of a few hundred devices can afford, and makes a leaked file far slower to attack.
PBKDF2_ITERATIONS = 20_000
SALT_BYTES = 12
_SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"


class BrokerCredentialError(DomainError):
    """The password file cannot be written as asked."""

    code = "broker_credential_error"
    status = 422


class BrokerUserClash(BrokerCredentialError):
    code = "broker_user_clash"
    status = 409

    def __init__(self, username: str) -> None:
        super().__init__(
            f"代理用户名 {username} 与已登记的设备重名",
            f"the box's broker user {username!r} is also a registered device id; choose another (e.g. storebox_box)",
            username=username,
        )


class InvalidBrokerUser(BrokerCredentialError):
    def __init__(self, username: str) -> None:
        super().__init__(
            "代理用户名不能为空, 也不能含冒号或换行",
            "the box's broker user must be non-empty, without ':' or line breaks",
            username=username,
        )


def mosquitto_hash(password: str, *, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto's `$7$` PBKDF2-SHA512 hash of `password` with `salt` (pure)."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_mosquitto_hash(password: str) -> str:
    """`mosquitto_hash` with a fresh random salt."""
    return mosquitto_hash(password, salt=os.urandom(SALT_BYTES))


def verify_mosquitto_hash(stored: str, password: str) -> bool:
    """True when `password` matches a `$7$` hash; False for any other or malformed hash."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, int(parts[2]), 64)
    return hmac.compare_digest(digest, expected)


def set_broker_credential(
    conn: sqlite3.Connection, device_id: str, password: str, *, now: datetime | None = None
) -> None:
    """Store the broker hash of a device's new password; call it in the transaction that sets the password."""
    if conn.execute("SELECT 1 FROM devices WHERE id = ?", (device_id,)).fetchone() is None:
        raise UnknownDevice(device_id)
    conn.execute(
        "INSERT INTO broker_credentials (device_id, hash, updated_at)"
        f" VALUES (?, ?, COALESCE(?, {_SQL_NOW}))"
        " ON CONFLICT (device_id) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
        (device_id, new_mosquitto_hash(password), now.isoformat(timespec="seconds") if now else None),
    )


def devices_without_broker_credential(conn: sqlite3.Connection) -> list[str]:
    """Enabled devices that cannot log in at an external broker yet (registered before; rotate them)."""
    rows = conn.execute(
        "SELECT d.id FROM devices d LEFT JOIN broker_credentials b ON b.device_id = d.id"
        " WHERE d.enabled = 1 AND b.device_id IS NULL ORDER BY d.id"
    ).fetchall()
    return [str(row[0]) for row in rows]


def password_file(conn: sqlite3.Connection, box_user: str, box_password: str) -> str:
    """Mosquitto's password file: the box's own user first, then every enabled device with a broker hash."""
    if not box_user or any(c in box_user for c in ":\r\n"):
        raise InvalidBrokerUser(box_user)
    if conn.execute("SELECT 1 FROM devices WHERE id = ?", (box_user,)).fetchone() is not None:
        raise BrokerUserClash(box_user)
    rows = conn.execute(
        "SELECT b.device_id, b.hash FROM broker_credentials b JOIN devices d ON d.id = b.device_id"
        " WHERE d.enabled = 1 ORDER BY b.device_id"
    ).fetchall()
    lines = [f"{box_user}:{new_mosquitto_hash(box_password)}"]
    lines += [f"{row[0]}:{row[1]}" for row in rows]
    return "\n".join(lines) + "\n"
