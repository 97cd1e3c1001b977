"""systemd's notify protocol for the box and the aggregator (Type=notify units in systemd/): READY=1 once the
service answers, WATCHDOG=1 while it is healthy, STATUS= lines, STOPPING=1 on the way out.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op. The watchdog pings at half the interval systemd gives
in WATCHDOG_USEC and stops pinging when the health check fails, so systemd restarts a service that hangs or
whose writer or database died, instead of one that merely crashed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping

import sdnotify  # type: ignore[import-untyped]

log = logging.getLogger("storebox.notify")


class ServiceNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.socket = env.get("NOTIFY_SOCKET", "")
        self.enabled = bool(self.socket)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None

    def _send(self, text: str) -> None:
        if self._notifier is None:
            return
        if self.socket != os.environ.get("NOTIFY_SOCKET", ""):
            os.environ["NOTIFY_SOCKET"] = self.socket  # sdnotify reads the socket from the environment
            self._notifier = sdnotify.SystemdNotifier()
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
        warned = False
        while True:
            ok = await asyncio.to_thread(healthy)
            if ok:
                self._send("WATCHDOG=1")
                warned = False
            elif not warned:
                log.error("health check failed: watchdog not fed, systemd will restart us / 健康检查失败，等待重启")
                self.status("unhealthy / 不健康")
                warned = True
            await asyncio.sleep(interval)
