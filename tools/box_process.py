"""A real `storebox serve` in a subprocess on free 127.0.0.1 ports, for tests, benchmarks and tools."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux: 32768 unless configured)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, chosen below the kernel's ephemeral range: a box killed and started again
    on the same port cannot find it taken meanwhile by the local port of some outgoing connection (a browser's, a
    client's), which the kernel only picks from the ephemeral range. The one helper of the tests and tools."""
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randint(20000, max(20001, low - 1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def storebox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge.cli", *args]


@dataclass
class BoxProcess:
    """One box: data dir and ports stay the same across restarts."""

    data_dir: Path
    store_id: str = "store-001"
    http_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    demo: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
        env.update(
            {
                "STOREBOX_DATA_DIR": str(self.data_dir),
                "STOREBOX_HTTP_HOST": "127.0.0.1",
                "STOREBOX_HTTP_PORT": str(self.http_port),
                "STOREBOX_MQTT_HOST": "127.0.0.1",
                "STOREBOX_MQTT_PORT": str(self.mqtt_port),
                "STOREBOX_STORE_ID": self.store_id,
                "STOREBOX_LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            storebox_command(*args), env=self.env, capture_output=True, text=True, check=check, timeout=120
        )

    def start(self, *, timeout: float = 60.0) -> float:
        """Start and wait until healthy; return seconds from spawn to healthy."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "serve.log"
        log = self.log_path.open("ab")
        args = ["serve", "--demo"] if self.demo else ["serve"]
        began = time.monotonic()
        self.proc = subprocess.Popen(
            storebox_command(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.wait_healthy(timeout=timeout)
        return time.monotonic() - began

    def wait_healthy(self, *, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"box exited with {self.proc.returncode}: {self.read_log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2) as response:
                    if response.status == 200:
                        return dict(json.loads(response.read()))
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"box not healthy within {timeout}s: {self.read_log()[-3000:]}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def demo_json(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "demo.json").read_text()))

    def kill(self) -> None:
        """kill -9: no chance to finish anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, *, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
