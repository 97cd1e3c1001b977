"""systemd's notify protocol for real: a unix datagram socket stands in for systemd (NOTIFY_SOCKET, WATCHDOG_USEC)
and a real `storebox serve` subprocess must say READY=1 once it serves HTTP, then keep the watchdog fed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.service_notify import ServiceNotifier
from tools.box_process import BoxProcess


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    # AF_UNIX paths are limited to 108 bytes: keep it short.
    path = Path(f"/tmp/sbnotify-{os.getpid()}-{time.monotonic_ns()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def _receive_until(sock: socket.socket, wanted: str, deadline_s: float, seen: list[str]) -> None:
    """Receive into `seen` until a new message has the line `wanted`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            continue
        seen.append(message)
        if wanted in message.split("\n"):
            return
    raise AssertionError(f"no {wanted} within {deadline_s}s; got {seen}")


@pytest.mark.slow
def test_storebox_serve_sends_ready_then_watchdog_then_stopping(tmp_path: Path, notify_socket: socket.socket) -> None:
    box = BoxProcess(
        tmp_path / "box",
        demo=False,
        extra_env={"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "400000"},
    )
    box.start()
    try:
        seen: list[str] = []
        if not any("READY=1" in m.split("\n") for m in seen):
            _receive_until(notify_socket, "READY=1", 60, seen)
        # READY only once the HTTP server answers: health was already reachable when start() returned.
        ready = next(m for m in seen if "READY=1" in m.split("\n"))
        assert "STATUS=serving" in ready
        assert any(m.startswith("STATUS=starting") for m in seen[: seen.index(ready)])
        # WATCHDOG_USEC=0.4 s: a ping every 0.2 s while the writer and the broker are alive.
        deadline = time.monotonic() + 30
        while sum(m == "WATCHDOG=1" for m in seen[seen.index(ready) :]) < 3:
            _receive_until(notify_socket, "WATCHDOG=1", max(deadline - time.monotonic(), 0.1), seen)
        assert box.terminate() == 0
        _receive_until(notify_socket, "STOPPING=1", 30, seen)
    finally:
        box.stop()


@pytest.mark.slow
def test_a_second_box_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = BoxProcess(tmp_path / "box", demo=False)
    first.start()
    try:
        second = BoxProcess(tmp_path / "box", demo=False)
        second.data_dir.mkdir(parents=True, exist_ok=True)
        result = second.cli("serve", check=False)
        assert result.returncode == 1
        assert "in use" in result.stderr
    finally:
        first.stop()


def test_watchdog_stops_pinging_while_unhealthy(notify_socket: socket.socket) -> None:
    notifier = ServiceNotifier({"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "20000"})
    health = {"ok": True}
    received: list[str] = []

    async def run() -> None:
        task = asyncio.create_task(notifier.watchdog(lambda: health["ok"]))
        loop = asyncio.get_running_loop()

        async def next_message() -> str:
            return (await loop.run_in_executor(None, notify_socket.recv, 4096)).decode()

        received.append(await next_message())
        health["ok"] = False
        # The status line announcing the failure, then silence: no WATCHDOG=1 while unhealthy.
        while True:
            message = await next_message()
            received.append(message)
            if message.startswith("STATUS=unhealthy"):
                break
        notify_socket.settimeout(0.2)
        quiet = []
        for _ in range(3):
            with contextlib.suppress(TimeoutError):
                quiet.append(await next_message())
        assert "WATCHDOG=1" not in quiet
        health["ok"] = True
        notify_socket.settimeout(5)
        while (message := await next_message()) != "WATCHDOG=1":
            received.append(message)
        task.cancel()

    asyncio.run(run())
    assert received[0] == "WATCHDOG=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = ServiceNotifier({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.status("y")
    notifier.stopping()
    asyncio.run(asyncio.wait_for(notifier.watchdog(lambda: True), 1))  # returns at once


def test_a_watchdog_meant_for_another_process_is_not_fed(notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    assert ServiceNotifier(env).watchdog_seconds == 0
    env["WATCHDOG_PID"] = str(os.getpid())
    assert ServiceNotifier(env).watchdog_seconds == 0.001


def test_abstract_socket_address(tmp_path: Path) -> None:
    name = f"sbnotify-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        ServiceNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()
