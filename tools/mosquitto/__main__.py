"""`python -m tools.mosquitto write|passwd`: Mosquitto's files for a box with `mqtt_url` set (docs/mqtt5.md).

    python -m tools.mosquitto write --dir /etc/mosquitto/storebox [--config storebox.toml] [--port 1883]
    python -m tools.mosquitto passwd --dir /etc/mosquitto/storebox      # after device add / rotate / disable

`passwd` writes the password file and the ACL again, each keeping the owner, group and mode of the file it
replaces. Then (re)load Mosquitto: `mosquitto -c DIR/storebox.conf`, or `systemctl reload mosquitto` after
`passwd`.
Exit 0 when written, 2 with one line on stderr when not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.config import ConfigError, load_settings
from edge.ledger.errors import DomainError
from tools.mosquitto.files import ListenerTls, MosquittoSetupError, write_files, write_logins


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mosquitto", description="Mosquitto for StoreBox")
    parser.add_argument(
        "command", choices=("write", "passwd"), help="write: all files; passwd: the password file and the ACL"
    )
    parser.add_argument("--dir", type=Path, required=True, help="where the files go (e.g. /etc/mosquitto/storebox)")
    parser.add_argument("--config", type=Path, default=None, help="the box's TOML config (also STOREBOX_CONFIG)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the box's data dir (overrides the config)")
    parser.add_argument("--port", type=int, default=None, help="listener port (default: the port of mqtt_url)")
    parser.add_argument("--bind", default="0.0.0.0", help="listener address (default 0.0.0.0: the shop LAN)")
    parser.add_argument("--run-as", default="mosquitto", help="system user Mosquitto drops to when started as root")
    parser.add_argument("--log-dest", default="syslog", help="Mosquitto log_dest (syslog, stderr, file PATH)")
    parser.add_argument("--certfile", type=Path, default=None, help="PEM certificate chain: the listener is mqtts")
    parser.add_argument("--keyfile", type=Path, default=None, help="PEM private key of --certfile")
    args = parser.parse_args(argv)
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    tls = ListenerTls(args.certfile.resolve(), args.keyfile.resolve()) if args.certfile is not None else None
    try:
        overrides = {"data_dir": args.data_dir} if args.data_dir is not None else {}
        settings = load_settings(args.config, **overrides)
        if args.command == "write":
            files, missing = write_files(
                settings,
                args.dir,
                port=args.port,
                bind=args.bind,
                run_as=args.run_as,
                log_dest=args.log_dest,
                tls=tls,
            )
            print(f"wrote {files.conf}, {files.acl}, {files.passwd}")
        else:
            files, missing = write_logins(settings, args.dir)
            print(f"wrote {files.passwd}, {files.acl}")
    except (ConfigError, MosquittoSetupError) as err:
        print(f"tools.mosquitto: {err}", file=sys.stderr)
        return 2
    except DomainError as err:
        print(f"tools.mosquitto: {err.message} / {err.message_en}", file=sys.stderr)
        return 2
    if missing:
        print(
            "no broker password yet (registered before; rotate their passwords): " + ", ".join(missing),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
