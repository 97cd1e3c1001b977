"""The address of an external MQTT broker (`mqtt_url`): `mqtt://user:password@host:1883` or `mqtts://...`.

Pure parsing, so that the configuration can refuse a bad URL with one line before anything connects.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
ALLOWED = "mqtt://user:password@host:1883 or mqtts://user:password@host:8883 (password percent-encoded)"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the box connects as a client, and as whom."""

    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None

    def redacted(self) -> str:
        """The URL with the password replaced by `***`, for logs and `storebox config`."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        login = ""
        if self.username is not None:
            login = quote(self.username, safe="") + (":***" if self.password is not None else "") + "@"
        return f"{scheme}://{login}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse `url`; raise ValueError naming what is wrong and what is allowed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid broker URL ({exc}); use {ALLOWED}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme must be mqtt or mqtts, not {parts.scheme or 'none'!r}; use {ALLOWED}")
    if not parts.hostname:
        raise ValueError(f"the broker host is missing; use {ALLOWED}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"no path, query or fragment allowed; use {ALLOWED}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError(f"a password needs a user name; use {ALLOWED}")
    if port == 0:
        raise ValueError("the port must be 1..65535")
    return BrokerUrl(
        tls=scheme == "mqtts",
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=username or None,
        password=password,
    )
