"""The frame layer of serial devices: bytes in, frames and event data out. Pure: no I/O, no clock.

A firmware profile (edge/devices/profiles.py) drives three steps:

1. `Deframer` cuts the byte stream into frames by the profile's framing: a terminator (CR, CR LF), a fixed
   length (optionally after sync bytes), or start and end bytes with an optional checksum.
2. `parse_frame` matches a frame's text against the frame types of the `Grammar` (regexes with named
   groups; the first whose pattern matches the whole frame wins).
3. the matched frame type's `Emit` maps the groups to the data of an event (`evt/weight`, `evt/scan`, ...),
   with weights converted to integer grams by the profile's units.

Whatever does not fit is a `Garbage` value with a stable reason, never an exception: serial lines carry
noise, half frames after a replug, and floods from a stuck device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from functools import reduce
from typing import Any

JsonScalar = str | int | float | bool | None
MAX_GRAMS = 10**9  # the ledger's largest quantity; anything above is a misread, not a weight
SAMPLE_BYTES = 32  # how much of a garbage frame is kept for the log line
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


class FramingKind(StrEnum):
    TERMINATOR = "terminator"  # each frame ends with the terminator bytes (CR, CR LF)
    FIXED_LENGTH = "fixed_length"  # each frame has the same length, optionally starting with sync bytes
    START_END = "start_end"  # STX ... ETX, optionally with a checksum before or after the end bytes


class GarbageReason(StrEnum):
    """Why bytes from a device became no event (stable: a metric label and a log field)."""

    TOO_LONG = "too_long"  # no frame end within max_length bytes (a flood, or the wrong terminator)
    NOISE = "noise"  # bytes outside any frame: before a start or sync byte
    TRUNCATED = "truncated"  # a frame cut short by the start of the next one
    BAD_CHECKSUM = "bad_checksum"
    NOT_TEXT = "not_text"  # not text in the profile's encoding
    NO_MATCH = "no_match"  # fits no frame type of the grammar
    BAD_VALUE = "bad_value"  # a group that does not convert: number, unit, mapped value
    INVALID_EVENT = "invalid_event"  # event data the box would refuse (checked by the adapter)


class ChecksumAlgorithm(StrEnum):
    XOR = "xor"  # XOR of the covered bytes (耀华 XK3190 and many Chinese indicators)
    SUM8 = "sum8"  # sum of the covered bytes modulo 256
    TWOS_COMPLEMENT_SUM7 = "twos_complement_sum7"  # Toledo continuous: -(sum of the low 7 bits) & 0x7F


class ChecksumEncoding(StrEnum):
    BYTE = "byte"  # one raw byte
    HEX = "hex"  # two ASCII hex digits, high nibble first


class ChecksumCovers(StrEnum):
    FRAME = "frame"  # every byte before the checksum, from the start bytes on
    BODY = "body"  # only the bytes between the start bytes and the checksum or end bytes


class ChecksumPosition(StrEnum):
    BEFORE_END = "before_end"
    AFTER_END = "after_end"


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: ChecksumAlgorithm
    encoding: ChecksumEncoding = ChecksumEncoding.BYTE
    covers: ChecksumCovers = ChecksumCovers.FRAME
    position: ChecksumPosition = ChecksumPosition.AFTER_END

    @property
    def width(self) -> int:
        return 1 if self.encoding is ChecksumEncoding.BYTE else 2

    def compute(self, data: bytes) -> bytes:
        if self.algorithm is ChecksumAlgorithm.XOR:
            value = reduce(lambda a, b: a ^ b, data, 0)
        elif self.algorithm is ChecksumAlgorithm.SUM8:
            value = sum(data) & 0xFF
        else:
            value = -sum(b & 0x7F for b in data) & 0x7F
        return bytes([value]) if self.encoding is ChecksumEncoding.BYTE else f"{value:02X}".encode("ascii")

    def matches(self, data: bytes, sent: bytes) -> bool:
        expected = self.compute(data)
        return sent.upper() == expected if self.encoding is ChecksumEncoding.HEX else sent == expected


@dataclass(frozen=True, slots=True)
class Framing:
    """How frames are delimited; which fields apply depends on `kind` (the schema enforces it)."""

    kind: FramingKind
    max_length: int = 256
    terminator: bytes = b""
    strip: bytes = b""  # bytes stripped from both ends of a terminated frame (the LF of CR LF after CR)
    length: int = 0
    sync: bytes = b""
    start: bytes = b""
    end: bytes = b""
    checksum: Checksum | None = None

    def frame(self, body: bytes) -> bytes:
        """The bytes a device sends for `body` (simulators and tests build frames with it)."""
        if self.kind is FramingKind.TERMINATOR:
            return body + self.terminator
        if self.kind is FramingKind.FIXED_LENGTH:
            return self.sync + body
        checksum = self.checksum
        if checksum is None:
            return self.start + body + self.end
        if checksum.position is ChecksumPosition.BEFORE_END:
            covered = body if checksum.covers is ChecksumCovers.BODY else self.start + body
            return self.start + body + checksum.compute(covered) + self.end
        covered = body if checksum.covers is ChecksumCovers.BODY else self.start + body + self.end
        return self.start + body + self.end + checksum.compute(covered)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame's body: without terminator, sync, start, end and checksum bytes."""

    body: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    reason: GarbageReason
    sample: bytes = b""  # the first bytes, for the log line
    detail: str = ""

    @classmethod
    def of(cls, reason: GarbageReason, data: bytes | bytearray, detail: str = "") -> Garbage:
        return cls(reason, bytes(data[:SAMPLE_BYTES]), detail)


class Deframer:
    """Cuts a byte stream into frames by a `Framing`. Holds at most about `max_length` bytes between calls.

    Not thread-safe: one reader feeds it.
    """

    def __init__(self, framing: Framing) -> None:
        self._framing = framing
        self._buf = bytearray()
        self._discarding = False  # inside an over-long frame: drop everything up to its end

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (the port was closed: what follows starts afresh)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        self._buf += data
        out: list[Frame | Garbage] = []
        kind = self._framing.kind
        if kind is FramingKind.TERMINATOR:
            self._terminated(out)
        elif kind is FramingKind.FIXED_LENGTH:
            self._fixed(out)
        else:
            self._start_end(out)
        return out

    def _terminated(self, out: list[Frame | Garbage]) -> None:
        f, buf = self._framing, self._buf
        while True:
            at = buf.find(f.terminator)
            if at < 0:
                if len(buf) > f.max_length:
                    if not self._discarding:
                        out.append(Garbage.of(GarbageReason.TOO_LONG, buf, f"no terminator in {len(buf)} bytes"))
                    self._discarding = True
                    # A terminator may straddle two reads: keep its first bytes.
                    del buf[: len(buf) - (len(f.terminator) - 1)]
                return
            body = bytes(buf[:at])
            del buf[: at + len(f.terminator)]
            if self._discarding:
                self._discarding = False  # the end of the over-long frame, already reported
                continue
            if f.strip:
                body = body.strip(f.strip)
            if not body:
                continue  # an empty line, or the LF of a CR LF
            if len(body) > f.max_length:
                out.append(Garbage.of(GarbageReason.TOO_LONG, body, f"{len(body)} bytes"))
                continue
            out.append(Frame(body))

    def _fixed(self, out: list[Frame | Garbage]) -> None:
        f, buf = self._framing, self._buf
        while True:
            if f.sync and not self._skip_to(f.sync, out):
                return
            if len(buf) < f.length:
                return
            frame = bytes(buf[: f.length])
            if f.sync and (again := frame.find(f.sync, len(f.sync))) > 0:
                out.append(Garbage.of(GarbageReason.TRUNCATED, frame[:again]))
                del buf[:again]
                continue
            del buf[: f.length]
            out.append(Frame(frame[len(f.sync) :]))

    def _start_end(self, out: list[Frame | Garbage]) -> None:
        f, buf = self._framing, self._buf
        checksum = f.checksum
        after = checksum.width if checksum is not None and checksum.position is ChecksumPosition.AFTER_END else 0
        while True:
            if not self._skip_to(f.start, out):
                return
            end = buf.find(f.end, len(f.start))
            restart = buf.find(f.start, len(f.start))
            if restart >= 0 and (end < 0 or restart < end):
                out.append(Garbage.of(GarbageReason.TRUNCATED, buf[:restart]))
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > f.max_length:
                    out.append(Garbage.of(GarbageReason.TOO_LONG, buf, f"no end bytes in {len(buf)} bytes"))
                    buf.clear()
                return
            total = end + len(f.end) + after
            if len(buf) < total:
                return
            raw = bytes(buf[:total])
            del buf[:total]
            if total > f.max_length:
                out.append(Garbage.of(GarbageReason.TOO_LONG, raw, f"{total} bytes"))
                continue
            out.append(self._checked(raw, end))

    def _skip_to(self, marker: bytes, out: list[Frame | Garbage]) -> bool:
        """Drop the bytes before `marker` as noise; False when there is no marker yet (its first bytes are
        kept: a marker may straddle two reads)."""
        buf = self._buf
        at = buf.find(marker)
        if at < 0:
            keep = len(marker) - 1
            if len(buf) > keep:
                out.append(Garbage.of(GarbageReason.NOISE, buf[: len(buf) - keep]))
                del buf[: len(buf) - keep]
            return False
        if at > 0:
            out.append(Garbage.of(GarbageReason.NOISE, buf[:at]))
            del buf[:at]
        return True

    def _checked(self, raw: bytes, end: int) -> Frame | Garbage:
        f = self._framing
        inner = raw[len(f.start) : end]
        checksum = f.checksum
        if checksum is None:
            return Frame(inner)
        if checksum.position is ChecksumPosition.BEFORE_END:
            if len(inner) < checksum.width:
                return Garbage.of(GarbageReason.TRUNCATED, raw, "no room for the checksum")
            body, sent = inner[: -checksum.width], inner[-checksum.width :]
            covered = body if checksum.covers is ChecksumCovers.BODY else raw[: end - checksum.width]
        else:
            body, sent = inner, raw[end + len(f.end) :]
            covered = body if checksum.covers is ChecksumCovers.BODY else raw[: end + len(f.end)]
        if not checksum.matches(covered, sent):
            return Garbage.of(GarbageReason.BAD_CHECKSUM, raw, f"got {sent!r}, expected {checksum.compute(covered)!r}")
        return Frame(body)


# --- grammar and event mapping ------------------------------------------------------------------


class BadValue(ValueError):
    """A group does not convert to what the mapping asks for (internal to the frame layer)."""


@dataclass(frozen=True, slots=True)
class Const:
    """A fixed value: `{const: true}`."""

    value: JsonScalar


@dataclass(frozen=True, slots=True)
class Group:
    """The text of a named group (spaces and tabs stripped), optionally mapped (`map`) or read as an integer."""

    name: str
    mapping: Mapping[str, JsonScalar] | None = None
    integer: bool = False


@dataclass(frozen=True, slots=True)
class Bits:
    """Bits `low..high` of the one character a group matched (status bytes: Toledo SWA/SWB), optionally mapped."""

    group: str
    low: int
    high: int
    mapping: Mapping[str, JsonScalar] | None = None


@dataclass(frozen=True, slots=True)
class Setting:
    """A setting of the configured device (e.g. a scanner's `mode`), or `default`."""

    name: str
    default: JsonScalar = None


@dataclass(frozen=True, slots=True)
class Weight:
    """A weight in integer grams from a number group, a unit (a value: literal or from the frame), optional
    implied decimals (digits without a decimal point, as in Toledo frames) and an optional sign flag."""

    group: str
    unit: ValueSource
    decimals: ValueSource | None = None
    negative: ValueSource | None = None


ValueSource = Const | Group | Bits | Setting | Weight


@dataclass(frozen=True, slots=True)
class Emit:
    """The event a frame type becomes. With `on_change`, a frame that follows a frame of the same type is
    sent only when one of those fields changed (a scale repeats the same weight many times a second); an
    empty `on_change` sends a frame type once each time the device enters it (e.g. "moving")."""

    kind: str
    data: tuple[tuple[str, ValueSource], ...]
    on_change: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class FrameType:
    """One frame of the device's grammar: a regex with named groups that must match the whole frame.

    With `emit` it becomes an event; with `error` it is the device reporting a failure (counted and logged);
    with neither it is a known reply that carries nothing for the box (e.g. `Z A`, zeroing done).
    With `when`, the pattern alone is not enough: several frame types may share one pattern and tell
    stable, moving and overloaded frames apart by a status bit.
    """

    name: str
    pattern: re.Pattern[str]
    emit: Emit | None = None
    error: str | None = None
    when: When | None = None


@dataclass(frozen=True, slots=True)
class When:
    """A frame type applies only when this value of the frame equals `equals` (status bits: motion, overload)."""

    value: ValueSource
    equals: JsonScalar


@dataclass(frozen=True, slots=True)
class Grammar:
    frame_types: tuple[FrameType, ...]
    units: Mapping[str, Decimal] = field(default_factory=dict)  # unit text -> grams per unit
    encoding: str = "ascii"


@dataclass(frozen=True, slots=True)
class Reading:
    """A frame that becomes an event: kind and data, and the fields that decide whether it is news."""

    frame_type: str
    kind: str
    data: dict[str, JsonScalar]
    on_change: tuple[str, ...] | None = None

    def repeats(self, previous: Reading | None) -> bool:
        """True when this reading is no news after `previous` (see `Emit.on_change`)."""
        if self.on_change is None or previous is None or previous.frame_type != self.frame_type:
            return False
        return all(self.data.get(name) == previous.data.get(name) for name in self.on_change)


@dataclass(frozen=True, slots=True)
class Reply:
    """A known frame that is no event (an acknowledgement of a command)."""

    frame_type: str


@dataclass(frozen=True, slots=True)
class DeviceError:
    """The device says something went wrong (MT-SICS `ES` syntax error, `S I` not executed, ...)."""

    frame_type: str
    code: str


Parsed = Reading | Reply | DeviceError | Garbage


def parse_frame(grammar: Grammar, body: bytes, settings: Mapping[str, JsonScalar] | None = None) -> Parsed:
    """What one frame means; never raises."""
    try:
        text = body.decode(grammar.encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        return Garbage.of(GarbageReason.NOT_TEXT, body, str(exc)[:120])
    settings = settings or {}
    for frame_type in grammar.frame_types:
        match = frame_type.pattern.fullmatch(text)
        if match is None:
            continue
        groups = match.groupdict()
        try:
            when = frame_type.when
            if when is not None and evaluate(when.value, groups, grammar.units, settings) != when.equals:
                continue
            if frame_type.error is not None:
                return DeviceError(frame_type.name, frame_type.error)
            if frame_type.emit is None:
                return Reply(frame_type.name)
            data = {name: evaluate(source, groups, grammar.units, settings) for name, source in frame_type.emit.data}
        except BadValue as exc:
            return Garbage.of(GarbageReason.BAD_VALUE, body, f"{frame_type.name}: {exc}")
        return Reading(frame_type.name, frame_type.emit.kind, data, frame_type.emit.on_change)
    return Garbage.of(GarbageReason.NO_MATCH, body)


def _group(groups: Mapping[str, str | None], name: str) -> str:
    value = groups.get(name)
    if value is None:
        raise BadValue(f"group {name!r} did not match")
    return value


def _mapped(value: str, mapping: Mapping[str, JsonScalar] | None) -> JsonScalar:
    if mapping is None:
        return value
    if value not in mapping:
        raise BadValue(f"{value[:20]!r} is not one of {', '.join(sorted(mapping))}")
    return mapping[value]


def evaluate(
    source: ValueSource,
    groups: Mapping[str, str | None],
    units: Mapping[str, Decimal],
    settings: Mapping[str, JsonScalar],
) -> JsonScalar:
    """The value of one data field; raises BadValue when the frame does not convert."""
    if isinstance(source, Const):
        return source.value
    if isinstance(source, Setting):
        return settings.get(source.name, source.default)
    if isinstance(source, Group):
        text = _group(groups, source.name).strip(" \t")  # not str.strip(): it would eat a GS (0x1D) too
        if source.integer:
            if not re.fullmatch(r"[+-]?\d{1,12}", text):
                raise BadValue(f"{source.name}={text[:20]!r} is not an integer")
            return _mapped(str(int(text)), source.mapping) if source.mapping is not None else int(text)
        return _mapped(text, source.mapping)
    if isinstance(source, Bits):
        text = _group(groups, source.group)
        if len(text) != 1:
            raise BadValue(f"{source.group} must be one status character, got {len(text)}")
        value = (ord(text) >> source.low) & ((1 << (source.high - source.low + 1)) - 1)
        return _mapped(str(value), source.mapping) if source.mapping is not None else value
    return grams(source, groups, units, settings)


def grams(
    source: Weight,
    groups: Mapping[str, str | None],
    units: Mapping[str, Decimal],
    settings: Mapping[str, JsonScalar],
) -> int:
    """A weight in integer grams, rounded half up (away from zero) once, after the unit conversion."""
    text = _group(groups, source.group).replace(" ", "")
    if not _NUMBER.fullmatch(text):
        raise BadValue(f"weight {text[:20]!r} is not a number")
    unit = evaluate(source.unit, groups, units, settings)
    factor = unit_factor(units, unit)
    try:
        value = Decimal(text)
        if source.decimals is not None and "." not in text:
            decimals = evaluate(source.decimals, groups, units, settings)
            if not isinstance(decimals, int) or isinstance(decimals, bool) or not -6 <= decimals <= 9:
                raise BadValue(f"decimals {decimals!r} is not an integer in -6..9")
            value = value.scaleb(-decimals)
        if source.negative is not None and _truthy(evaluate(source.negative, groups, units, settings)):
            value = -abs(value)
        result = int((value * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:
        raise BadValue(f"weight {text[:20]!r} does not convert") from exc
    if abs(result) > MAX_GRAMS:
        raise BadValue(f"weight {result} g is beyond {MAX_GRAMS} g")
    return result


def _truthy(value: JsonScalar) -> bool:
    return value not in (None, False, 0, "", "0")


def unit_factor(units: Mapping[str, Decimal], unit: Any) -> Decimal:
    """Grams per `unit`: an exact match first, then ignoring case (`KG`, `Kg`)."""
    if not isinstance(unit, str):
        raise BadValue(f"unit {unit!r} is not text")
    if unit in units:
        return units[unit]
    folded = {name.casefold(): factor for name, factor in units.items()}
    if unit.casefold() in folded:
        return folded[unit.casefold()]
    raise BadValue(f"unknown unit {unit[:12]!r} (known: {', '.join(units)})")


# --- commands the box may send --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the box may send (`cmd/<name>` on the bus): its bytes, with `{param}` placeholders whose
    values must match the declared patterns. `emit_next`: the next reading is sent even if it is no news."""

    name: str
    send: str = ""
    params: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    emit_next: bool = False
    description: str = ""

    def render(self, values: Mapping[str, Any], encoding: str = "ascii") -> bytes:
        """The bytes to write for these parameter values; ValueError names what is wrong."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter {unknown[0][:32]!r}")
        text_values: dict[str, str] = {}
        for name, pattern in self.params.items():
            value = values.get(name)
            if not isinstance(value, str) or pattern.fullmatch(value) is None:
                raise ValueError(f"{self.name}: parameter {name} must be text matching {pattern.pattern}")
            text_values[name] = value
        try:
            return self.send.format_map(text_values).encode(encoding)
        except UnicodeEncodeError as exc:
            raise ValueError(f"{self.name}: not {encoding} text") from exc
