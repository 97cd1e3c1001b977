"""Mosquitto's files for a box that runs against it (docs/mqtt5.md): config, ACL and password file.

Everything comes from the box's own settings and database: the store id and the box's user and password from
`mqtt_url`, the packet limit from `mqtt_max_payload_bytes`, device logins from the registry's broker hashes
(edge/bus/broker_credentials.py), and from the registry's device kinds who reads the store's stock and alerts.
Writing is atomic (a temp file renamed over the old one), so Mosquitto never reads half a file when it reloads
(SIGHUP); `write_logins` gives the new file the owner, group and mode of the one it replaces, so that
Mosquitto, which runs as its own user, can still read it.
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from edge.bus.broker import packet_limit
from edge.bus.broker_credentials import devices_without_broker_credential, password_file
from edge.bus.broker_url import BrokerUrl, parse_broker_url
from edge.config import Settings
from edge.db import connect
from edge.security.devices import list_devices, reads_store_topics

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


def render_acl(store: str, box_user: str, readers: Iterable[str] = ()) -> str:
    """The ACL from tools/mosquitto/storebox.acl.template: each device in its own tree, the box in the store's,
    and each of `readers` (the store's own devices, not a supplier's) also reading stock and alerts."""
    template = Template((HERE / "storebox.acl.template").read_text(encoding="utf-8"))
    blocks = "".join(
        f"\nuser {device}\ntopic read storebox/{store}/stock/#\ntopic read storebox/{store}/alert/#\n"
        for device in readers
    )
    return template.substitute(store=store, box_user=box_user) + blocks


@dataclass(frozen=True, slots=True)
class Logins:
    """What the password file and the ACL take from the registry."""

    password_file: str
    readers: list[str]  # enabled devices that read the store's stock and alerts
    missing: list[str]  # enabled devices without a broker hash yet


def read_logins(settings: Settings) -> Logins:
    """Read the registry for the password file and the ACL."""
    url = box_login(settings)
    assert url.username is not None and url.password is not None
    if not settings.db_path.exists():
        raise MosquittoSetupError(f"no database at {settings.db_path}; start the box or run storebox migrate first")
    conn = connect(settings.db_path, readonly=True)
    try:
        text = password_file(conn, url.username, url.password)
        readers = [row["id"] for row in list_devices(conn) if row["enabled"] and reads_store_topics(row["kind"])]
        return Logins(text, readers, devices_without_broker_credential(conn))
    finally:
        conn.close()


def write_password_file(settings: Settings, path: Path, *, owner: str | None = None) -> list[str]:
    """Write the password file from the registry (mode 0600, owned by `owner` if given, else by the owner of the
    file it replaces, else by us); return the enabled devices that have no broker hash yet."""
    logins = read_logins(settings)
    _write(path, logins.password_file, mode=0o600, owner=owner, keep_existing=owner is None)
    return logins.missing


def write_logins(settings: Settings, directory: Path) -> tuple[MosquittoFiles, list[str]]:
    """Write the password file and the ACL again after devices were added, rotated, disabled or enabled, each with
    the owner, group and mode of the file it replaces; return them and the devices without a broker hash."""
    url = box_login(settings)
    assert url.username is not None
    files = MosquittoFiles(directory.resolve())
    logins = read_logins(settings)
    if not files.directory.is_dir():
        raise MosquittoSetupError(f"no directory {files.directory}; run `python -m tools.mosquitto write` first")
    _write(files.passwd, logins.password_file, mode=0o600, keep_existing=True)
    _write(files.acl, render_acl(settings.store_id, url.username, logins.readers), mode=0o644, keep_existing=True)
    return files, logins.missing


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
    logins = read_logins(settings)
    _write(files.passwd, logins.password_file, mode=0o600, owner=owner)
    _write(files.acl, render_acl(settings.store_id, url.username, logins.readers), mode=0o644)
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
    return files, logins.missing


def _is_root() -> bool:
    return os.geteuid() == 0


def _chown(path: Path, user: str) -> None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise MosquittoSetupError(f"no system user {user!r} to run Mosquitto as (--run-as)") from exc
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _write(path: Path, text: str, *, mode: int, owner: str | None = None, keep_existing: bool = False) -> None:
    """Write `path` atomically with `mode` and `owner`; with `keep_existing`, an existing file's owner, group and
    mode win (a password file Mosquitto reads as its own user must stay readable to it after a reload)."""
    existing = path.stat() if keep_existing and path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
            _give_back(Path(tmp), path, existing.st_uid, existing.st_gid)
        else:
            os.chmod(tmp, mode)
            if owner is not None:
                _chown(Path(tmp), owner)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _give_back(tmp: Path, path: Path, uid: int, gid: int) -> None:
    created = tmp.stat()
    if (created.st_uid, created.st_gid) == (uid, gid):
        return
    try:
        os.chown(tmp, uid, gid)
    except PermissionError as exc:
        raise MosquittoSetupError(
            f"cannot give {path} back its owner {uid}:{gid}; run this as root (or as that user)"
        ) from exc
