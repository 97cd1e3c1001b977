"""Mosquitto's files for a box that runs against it (docs/mqtt5.md): config, ACL and password file.

Everything comes from the box's own settings and database: the store id and the box's user and password from
`mqtt_url`, the packet limit from `mqtt_max_payload_bytes`, device logins from the registry's broker hashes
(edge/bus/broker_credentials.py). Writing is atomic (a temp file renamed over the old one), so Mosquitto
never reads half a file when it reloads (SIGHUP).
"""

from __future__ import annotations

import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from edge.bus.broker import packet_limit
from edge.bus.broker_credentials import devices_without_broker_credential, password_file
from edge.bus.broker_url import BrokerUrl, parse_broker_url
from edge.config import Settings
from edge.db import connect

HERE = Path(__file__).parent
CONF = "storebox.conf"
ACL = "storebox.acl"
PASSWD = "storebox.passwd"
PERSISTENCE = "data"
FIXED_HEADER = 5  # Mosquitto's max_packet_size counts the whole packet, the box's limit the remaining length


class MosquittoSetupError(Exception):
    """The files cannot be written as asked; `str(err)` is one line for the operator."""


@dataclass(frozen=True, slots=True)
class MosquittoFiles:
    """Where the files of one Mosquitto for the box are."""

    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / CONF

    @property
    def acl(self) -> Path:
        return self.directory / ACL

    @property
    def passwd(self) -> Path:
        return self.directory / PASSWD

    @property
    def persistence(self) -> Path:
        return self.directory / PERSISTENCE


def box_login(settings: Settings) -> BrokerUrl:
    """The box's broker URL, which must name its user and password."""
    if settings.mqtt_url is None:
        raise MosquittoSetupError("set mqtt_url (STOREBOX_MQTT_URL) first: the box's user and password are in it")
    url = parse_broker_url(settings.mqtt_url)
    if url.username is None or url.password is None:
        raise MosquittoSetupError("mqtt_url must name the box's user and password: mqtt://user:password@host:port")
    return url


@dataclass(frozen=True, slots=True)
class ListenerTls:
    """The broker's certificate chain and key (PEM) for an mqtts:// listener."""

    certfile: Path
    keyfile: Path

    def lines(self) -> str:
        return f"certfile {self.certfile}\nkeyfile {self.keyfile}\ntls_version tlsv1.2"


def render_config(
    files: MosquittoFiles,
    *,
    port: int,
    bind: str,
    run_as: str,
    max_payload_bytes: int,
    log_dest: str = "stderr",
    tls: ListenerTls | None = None,
) -> str:
    """Mosquitto's configuration from tools/mosquitto/storebox.conf.template."""
    template = Template((HERE / "storebox.conf.template").read_text(encoding="utf-8"))
    return template.substitute(
        password_file=files.passwd,
        acl_file=files.acl,
        port=port,
        bind=bind,
        tls=tls.lines() if tls is not None else "# plain TCP: add certfile/keyfile (--certfile/--keyfile) for mqtts",
        run_as=run_as,
        persistence_dir=files.persistence,
        max_packet_size=packet_limit(max_payload_bytes) + FIXED_HEADER,
        log_dest=log_dest,
    )


def render_acl(store: str, box_user: str) -> str:
    """The ACL from tools/mosquitto/storebox.acl.template: each device in its own tree, the box in the store's."""
    template = Template((HERE / "storebox.acl.template").read_text(encoding="utf-8"))
    return template.substitute(store=store, box_user=box_user)


def write_password_file(settings: Settings, path: Path, *, owner: str | None = None) -> list[str]:
    """Write the password file from the registry; return the enabled devices that have no broker hash yet."""
    url = box_login(settings)
    assert url.username is not None and url.password is not None
    if not settings.db_path.exists():
        raise MosquittoSetupError(f"no database at {settings.db_path}; start the box or run storebox migrate first")
    conn = connect(settings.db_path, readonly=True)
    try:
        text = password_file(conn, url.username, url.password)
        missing = devices_without_broker_credential(conn)
    finally:
        conn.close()
    _write(path, text, mode=0o600, owner=owner)
    return missing


def write_files(
    settings: Settings,
    directory: Path,
    *,
    port: int | None = None,
    bind: str = "0.0.0.0",
    run_as: str = "mosquitto",
    log_dest: str = "stderr",
    tls: ListenerTls | None = None,
) -> tuple[MosquittoFiles, list[str]]:
    """Write config, ACL and password file into `directory`; return them and the devices without a broker hash."""
    url = box_login(settings)
    assert url.username is not None
    files = MosquittoFiles(directory.resolve())
    files.directory.mkdir(parents=True, exist_ok=True)
    files.persistence.mkdir(exist_ok=True)
    owner = run_as if _is_root() else None
    if owner is not None:
        _chown(files.persistence, owner)
    missing = write_password_file(settings, files.passwd, owner=owner)
    _write(files.acl, render_acl(settings.store_id, url.username), mode=0o644)
    config = render_config(
        files,
        port=url.port if port is None else port,
        bind=bind,
        run_as=run_as,
        max_payload_bytes=settings.mqtt_max_payload_bytes,
        log_dest=log_dest,
        tls=tls,
    )
    _write(files.conf, config, mode=0o644)
    return files, missing


def _is_root() -> bool:
    return os.geteuid() == 0


def _chown(path: Path, user: str) -> None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise MosquittoSetupError(f"no system user {user!r} to run Mosquitto as (--run-as)") from exc
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _write(path: Path, text: str, *, mode: int, owner: str | None = None) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        if owner is not None:
            _chown(Path(tmp), owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
