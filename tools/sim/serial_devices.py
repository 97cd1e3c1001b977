"""Serial devices simulated on pseudo-terminal pairs: a barcode scanner, an MT-SICS scale, and continuous
output scales (the Chinese "ST,GS,+001.234kg" format and the TOLEDO continuous format).

Each simulator drives the master side of a pty pair (`os.openpty()`) in a thread of its own; the serial
adapter opens the slave side by its path (`/dev/pts/N`) exactly like a real port. The simulators write
their frames from their own code, not from the firmware profiles, so that a test of a profile against its
simulator checks the profile rather than itself. Garbage and flood modes write what broken devices send.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable, Sequence
from decimal import Decimal

from prometheus_client import CollectorRegistry

from edge.demo.demo_json import DeviceLogin
from edge.devices.profiles import read_profiles
from edge.devices.serial_adapter import SerialAdapter, SerialDevice, SerialMetrics, stop_adapters

STX, CR = b"\x02", b"\r"


class PtyPair:
    """A pseudo-terminal pair: the simulator owns `master`, the adapter opens `slave_name`.

    The slave is set raw at once (no CR -> LF translation, no echo) and kept open here, so that writes
    before the adapter opens it are harmless; closing the pair is what unplugging a device looks like.
    """

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self._slave)
        self._closed = False

    def write(self, data: bytes, timeout: float = 0.0) -> int:
        """Write `data`, waiting up to `timeout` seconds while the pty is full; the rest is dropped (like
        a UART with nobody listening). Returns the bytes written."""
        deadline = time.monotonic() + timeout
        written = 0
        view = memoryview(data)
        while written < len(data) and not self._closed:
            try:
                written += os.write(self.master, view[written:])
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                select.select([], [self.master], [], min(left, 0.05))
            except OSError:
                break
        return written

    def read(self, timeout: float) -> bytes:
        """What the adapter wrote, waiting up to `timeout` seconds for the first byte; b"" if nothing."""
        if self._closed:
            return b""
        try:
            ready, _, _ = select.select([self.master], [], [], timeout)
            return os.read(self.master, 4096) if ready else b""
        except (BlockingIOError, OSError, ValueError):
            return b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SerialSimulator:
    """A device on a pty: `tick()` every `period` seconds, `on_input()` for the bytes the adapter writes."""

    def __init__(self, pair: PtyPair, *, period: float = 0.1) -> None:
        self.pair = pair
        self.period = period
        self.received = bytearray()  # everything the adapter wrote (tests look at the commands)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"sim-{type(self).__name__}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def replug(self, pair: PtyPair) -> None:
        """Carry on on a new pty pair (after the old one was closed: a replugged device)."""
        with self.lock:
            self.pair = pair

    def send(self, data: bytes) -> int:
        return self.pair.write(data, timeout=1.0)

    def garbage(self, size: int, rng: random.Random | None = None) -> bytes:
        """Write `size` random bytes (a wrong baud rate, a noisy line); returns them."""
        data = (rng or random.Random()).randbytes(size)
        self.pair.write(data, timeout=5.0)
        return data

    def flood(self, data: bytes, total: int) -> int:
        """Write `data` over and over up to `total` bytes (a stuck device); returns the bytes written."""
        chunk = data * max(1, 4096 // max(1, len(data)))
        written = 0
        while written < total:
            n = self.pair.write(chunk[: total - written], timeout=5.0)
            if n == 0:
                break
            written += n
        return written

    def tick(self) -> None:
        """Called every `period` seconds (continuous output, auto scans)."""

    def on_input(self, data: bytes) -> None:
        """Called with the bytes the adapter wrote."""

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            data = self.pair.read(max(0.0, min(0.05, next_tick - time.monotonic())))
            if data:
                with self.lock:
                    self.received += data
                self.on_input(data)
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.period


class ScannerSim(SerialSimulator):
    """A barcode scanner with a CR LF (or CR) suffix; `auto` codes are scanned at random intervals."""

    def __init__(
        self,
        pair: PtyPair,
        *,
        suffix: bytes = b"\r\n",
        auto: Sequence[str] = (),
        interval: tuple[float, float] = (10.0, 30.0),
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(pair, period=0.2)
        self.suffix = suffix
        self._auto = list(auto)
        self._interval = interval
        self._rng = rng or random.Random()
        self._next = time.monotonic() + self._rng.uniform(*interval)
        self.scans = 0

    def scan(self, code: str) -> None:
        self.send(code.encode("utf-8") + self.suffix)
        self.scans += 1

    def tick(self) -> None:
        if self._auto and time.monotonic() >= self._next:
            self.scan(self._rng.choice(self._auto))
            self._next = time.monotonic() + self._rng.uniform(*self._interval)


class _Load:
    """What lies on a scale: gross weight in centigrams, frames or polls left before it settles, taring."""

    def __init__(self, capacity_g: int) -> None:
        self.capacity = capacity_g * 100
        self.gross = 0
        self.tare = 0
        self.zero = 0
        self.unsettled = 0

    def place(self, grams: Decimal | int | str, settle: int) -> None:
        self.gross = int(Decimal(str(grams)) * 100)
        self.unsettled = settle

    @property
    def net(self) -> int:
        return self.gross - self.zero - self.tare

    @property
    def overload(self) -> bool:
        return self.gross - self.zero > self.capacity

    def settle_step(self) -> bool:
        """True while moving; each call is one reading."""
        if self.unsettled > 0:
            self.unsettled -= 1
            return True
        return False


class MtSicsScaleSim(SerialSimulator):
    """A METTLER TOLEDO balance answering MT-SICS commands (S, SI, T, Z, @, D) in grams with two decimals.

    `place()` puts a load on it that reads dynamic (`S D`) for `settle` readings before it is stable;
    more than `capacity_g` reads `S +`; `fail_next("ES")` answers the next command with that error.
    """

    def __init__(self, pair: PtyPair, *, capacity_g: int = 6000, serial_number: str = "B912345678") -> None:
        super().__init__(pair, period=1.0)
        self.load = _Load(capacity_g)
        self.serial_number = serial_number
        self.display = ""
        self._line = bytearray()
        self._fail: list[str] = []

    def place(self, grams: Decimal | int | str, settle: int = 3) -> None:
        with self.lock:
            self.load.place(grams, settle)

    def fail_next(self, error: str) -> None:
        with self.lock:
            self._fail.append(error)

    def on_input(self, data: bytes) -> None:
        self._line += data
        while (end := self._line.find(b"\r\n")) >= 0:
            command = bytes(self._line[:end]).decode("ascii", errors="replace")
            del self._line[: end + 2]
            with self.lock:
                answer = self._fail.pop(0) if self._fail else self._answer(command)
            self.send(answer.encode("ascii") + b"\r\n")
        if len(self._line) > 256:
            self._line.clear()
            self.send(b"ET\r\n")  # too long for the balance's buffer

    def _weight(self, centigrams: int) -> str:
        return f"{Decimal(centigrams) / 100:.2f}".rjust(10) + " g"

    def _answer(self, command: str) -> str:
        load = self.load
        name, _, argument = command.partition(" ")
        if name in ("S", "SI"):
            if load.overload:
                return "S +"
            moving = load.settle_step()
            if moving:
                return "S I" if name == "S" else f"S D {self._weight(load.net)}"
            return f"S S {self._weight(load.net)}"
        if name == "T":
            if load.unsettled:
                return "T I"
            load.tare = load.gross - load.zero
            return f"T S {self._weight(load.tare)}"
        if name == "Z":
            if load.unsettled:
                return "Z I"
            load.zero, load.tare = load.gross, 0
            return "Z A"
        if name == "@":
            load.tare = 0
            return f'I4 A "{self.serial_number}"'
        if name == "D" and argument.startswith('"') and argument.endswith('"'):
            self.display = argument[1:-1]
            return "D A"
        return "ES"


class ContinuousScaleSim(SerialSimulator):
    """A scale that sends its weight about ten times a second, in kilograms with three decimals.

    `fmt="st-gs"`: the Chinese indicator format `ST,GS,+001.234kg` CR LF, taking `MT` (tare) and `MZ` (zero).
    `fmt="toledo"`: the TOLEDO continuous format (STX, status words, weight, tare, CR, checksum), taking
    the single characters T (tare), Z (zero) and C (clear tare).
    """

    def __init__(
        self,
        pair: PtyPair,
        *,
        fmt: str = "st-gs",
        period: float = 0.1,
        capacity_g: int = 30000,
        auto: tuple[float, float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if fmt not in ("st-gs", "toledo"):
            raise ValueError(f"unknown format {fmt!r}")
        super().__init__(pair, period=period)
        self.fmt = fmt
        self.load = _Load(capacity_g)
        self.frames = 0
        self._auto = auto
        self._rng = rng or random.Random()
        self._next_change = time.monotonic() + (self._rng.uniform(*auto) if auto else 0.0)
        self._line = bytearray()

    def place(self, grams: Decimal | int | str, settle: int = 5) -> None:
        with self.lock:
            self.load.place(grams, settle)

    def tick(self) -> None:
        if self._auto is not None and time.monotonic() >= self._next_change:
            # A demo shopper: something between 100 g and 3 kg on the scale, or the scale emptied.
            grams = 0 if self.load.gross else self._rng.randrange(100, 3000)
            self.place(grams, settle=self._rng.randint(3, 8))
            self._next_change = time.monotonic() + self._rng.uniform(*self._auto)
        with self.lock:
            frame = self.st_gs_frame() if self.fmt == "st-gs" else self.toledo_frame()
        self.pair.write(frame)  # nobody listening: dropped, like a UART
        self.frames += 1

    def st_gs_frame(self) -> bytes:
        load = self.load
        moving = load.settle_step()
        mode = "NT" if load.tare else "GS"
        if load.overload:
            return f"OL,{mode},+       kg\r\n".encode("ascii")
        net = load.net
        sign = "-" if net < 0 else "+"
        kg = Decimal(abs(net) // 100) / 1000
        return f"{'US' if moving else 'ST'},{mode},{sign}{kg:07.3f}kg\r\n".encode("ascii")

    def toledo_frame(self) -> bytes:
        load = self.load
        moving = load.settle_step()
        net = load.net // 100  # grams = the displayed digits at three decimals of a kilogram
        swa = 0x20 | 0x08 | 5  # bit 5 set, increment x1, decimal point XXX.XXX
        swb = 0x20 | 0x10  # bit 5 set, kg
        swb |= 0x08 if moving else 0
        swb |= 0x04 if load.overload else 0
        swb |= 0x02 if net < 0 else 0
        swb |= 0x01 if load.tare else 0
        body = bytes([swa, swb, 0x20]) + f"{abs(net):6d}{load.tare // 100:6d}".encode("ascii")
        framed = STX + body + CR
        return framed + bytes([-sum(b & 0x7F for b in framed) & 0x7F])

    def on_input(self, data: bytes) -> None:
        if self.fmt == "toledo":
            for char in data.decode("ascii", errors="replace"):
                self._toledo_command(char)
            return
        self._line += data
        while (end := self._line.find(b"\r\n")) >= 0:
            command = bytes(self._line[:end])
            del self._line[: end + 2]
            with self.lock:
                if command == b"MT" and not self.load.unsettled:
                    self.load.tare = self.load.gross - self.load.zero
                elif command == b"MZ" and not self.load.unsettled:
                    self.load.zero, self.load.tare = self.load.gross, 0
        if len(self._line) > 64:
            self._line.clear()

    def _toledo_command(self, char: str) -> None:
        with self.lock:
            if char == "T":
                self.load.tare = self.load.gross - self.load.zero
            elif char == "Z":
                self.load.zero, self.load.tare = self.load.gross, 0
            elif char == "C":
                self.load.tare = 0


class DemoSerialDevices:
    """The demo's serial devices: a retail scale (continuous output) and a goods-in scanner (扫码即入库, one
    piece per scan), each on a pty pair behind its serial adapter with the device's own credentials."""

    SCALE_PROFILE = "cn-retail-scale-continuous"
    SCANNER_PROFILE = "serial-barcode-scanner"

    def __init__(
        self,
        store_id: str,
        mqtt_host: str,
        mqtt_port: int,
        *,
        scale: DeviceLogin | None,
        scanner: DeviceLogin | None,
        codes: Sequence[str],
        rng: random.Random,
        scale_interval: tuple[float, float],
        scanner_interval: tuple[float, float],
    ) -> None:
        catalog = read_profiles()
        metrics = SerialMetrics(CollectorRegistry())
        self.pairs: list[PtyPair] = []
        self.simulators: list[SerialSimulator] = []
        self.adapters: list[SerialAdapter] = []

        def add(login: DeviceLogin, profile: str, sim: SerialSimulator, mode: str | None) -> None:
            device = SerialDevice(login.id, profile, sim.pair.slave_name, login.password, mode)
            adapter = SerialAdapter(
                device,
                catalog.get(profile),
                store_id=store_id,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                metrics=metrics,
            )
            self.pairs.append(sim.pair)
            self.simulators.append(sim)
            self.adapters.append(adapter)

        if scale is not None:
            scale_sim = ContinuousScaleSim(PtyPair(), fmt="st-gs", auto=scale_interval, rng=random.Random(rng.random()))
            add(scale, self.SCALE_PROFILE, scale_sim, None)
        if scanner is not None and codes:
            scanner_sim = ScannerSim(PtyPair(), auto=codes, interval=scanner_interval, rng=random.Random(rng.random()))
            add(scanner, self.SCANNER_PROFILE, scanner_sim, "receive")

    def start(self) -> None:
        for sim in self.simulators:
            sim.start()
        for adapter in self.adapters:
            adapter.start()

    def stop(self) -> None:
        stop_adapters(self.adapters)
        for sim in self.simulators:
            sim.stop()
        for pair in self.pairs:
            pair.close()

    def describe(self) -> str:
        return ", ".join(f"{a.name} ({a.profile.id} on {a.device.port})" for a in self.adapters)

    def report(self) -> str:
        return ", ".join(
            f"{a.name}: 事件 events {s.events} 确认 acked {s.acked} 失败 failed {s.failed}"
            for a, s in ((a, a.stats()) for a in self.adapters)
        )


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (for tests and the demo's start-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
