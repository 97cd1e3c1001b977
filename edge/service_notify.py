"""systemd's notify protocol for the box and the aggregator (Type=notify units in systemd/): READY=1 once the
service answers, WATCHDOG=1 while it is healthy, STATUS= lines, STOPPING=1 on the way out.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op. The watchdog pings at half the interval systemd gives
in WATCHDOG_USEC and stops pinging when the health check fails, so systemd restarts a service that hangs or
whose writer or database died, instead of only one that crashed. Sending never raises: a notification that cannot
be delivered must not take the service down (sdnotify swallows socket errors).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

import sdnotify  # type: ignore[import-untyped]

log = logging.getLogger("storebox.notify")


class _SocketNotifier(sdnotify.SystemdNotifier):  # type: ignore[misc]
    """sdnotify's notifier on an address we pass, not one it reads from os.environ (tests pass their own env)."""

    def __init__(self, address: str) -> None:
        self.debug = False
        try:
            self.socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A leading "@" names a socket in the abstract namespace (sd_notify(3)).
            self.socket.connect("\0" + address[1:] if address.startswith("@") else address)
        except OSError as err:
            log.warning("NOTIFY_SOCKET %s unusable: %s / systemd 通知套接字不可用", address, err)
            self.socket = None

    def notify(self, state: str) -> None:
        # sdnotify encodes Latin-1 and drops what does not fit (our Chinese STATUS lines); systemd reads UTF-8.
        if self.socket is not None:
            try:
                self.socket.sendall(state.encode("utf-8"))
            except OSError as err:
                log.debug("notify %r not sent: %s", state, err)


class ServiceNotifier:
    """READY/STATUS/WATCHDOG/STOPPING to systemd; every method a no-op without NOTIFY_SOCKET."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.enabled = bool(address)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
        ours = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours else 0.0
        self._notifier = _SocketNotifier(address) if self.enabled else None

    def _send(self, text: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(text)

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping WATCHDOG=1 every half interval while `healthy()`; return at once when no watchdog is set."""
        if not self.enabled or self.watchdog_seconds <= 0:
            return
        interval = self.watchdog_seconds / 2
        failing = False
        while True:
            try:
                # In a thread: a check that queries a database must not block the loop, and one that hangs
                # stops the pings, which is what the watchdog is for.
                ok = await asyncio.to_thread(healthy)
            except Exception:  # a health check that raises is a failed one
                log.exception("health check raised")
                ok = False
            if ok:
                self._send("WATCHDOG=1")
                if failing:
                    log.info("health check passes again / 健康检查恢复")
                    self.status("serving")
                failing = False
            elif not failing:
                log.error("health check failed: watchdog not fed, systemd will restart us / 健康检查失败，等待重启")
                self.status("unhealthy / 不健康")
                failing = True
            await asyncio.sleep(interval)
