"""Firmware profiles (设备固件档案): one YAML file per device model, validated against a JSON Schema.

A profile says how a device model talks: its transport (serial port settings, or MQTT), its framing, the
grammar of its frames, the commands the box may send, its units, and how frames become bus events.
Adding a device model that fits the framing kinds is a new YAML file, not new code (docs/firmware-profiles.md).

Loading collects every problem of every file as a value (`ProfileProblem`: file, line, reason) instead of
stopping at the first: the line comes from the YAML node that the schema error's path points at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from yaml.nodes import Node

from edge.devices.frames import (
    Bits,
    Checksum,
    ChecksumAlgorithm,
    ChecksumCovers,
    ChecksumEncoding,
    ChecksumPosition,
    CommandSpec,
    Const,
    Emit,
    FrameType,
    Framing,
    FramingKind,
    Grammar,
    Group,
    JsonScalar,
    Setting,
    ValueSource,
    Weight,
    When,
)
from edge.devices.yaml_source import compose, key_problems, line_at
from edge.ledger.errors import DomainError

SCHEMA_PATH = Path(__file__).with_name("profile_schema.json")
MAX_PROFILE_BYTES = 256 * 1024
MAX_PROBLEMS_PER_FILE = 20
_PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
_SERIAL_ONLY = ("framing", "frames", "units", "poll")
_MQTT_ONLY = ("publishes",)


def shipped_profiles_dir() -> Path:
    """`firmware_profiles/` at the top of the source tree (DESIGN.md layout)."""
    return Path(__file__).resolve().parents[2] / "firmware_profiles"


class TransportKind(StrEnum):
    SERIAL = "serial"
    MQTT = "mqtt"


@dataclass(frozen=True, slots=True)
class ProfileProblem:
    """One reason a profile file is refused, at a line of it (1-based)."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class ProfileError(DomainError):
    """One or more profile files are invalid; `detail["problems"]` lists them as `file:line: reason`."""

    code = "invalid_profile"
    status = 422

    def __init__(self, problems: Sequence[ProfileProblem]) -> None:
        lines = [str(p) for p in problems]
        first = lines[0] if lines else "?"
        more = f" (+{len(lines) - 1})" if len(lines) > 1 else ""
        super().__init__(f"固件档案无效: {first}{more}", f"invalid firmware profile: {first}{more}", problems=lines)
        self.problems = tuple(problems)


class UnknownProfile(DomainError):
    code = "unknown_profile"
    status = 404

    def __init__(self, profile_id: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "-"
        super().__init__(
            f"未知固件档案 {profile_id!r} (可用: {names})",
            f"unknown firmware profile {profile_id!r} (known: {names})",
            profile=profile_id,
        )


@dataclass(frozen=True, slots=True)
class Manual:
    """The manual a profile follows, and its section (cite it in the profile)."""

    document: str
    section: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Port settings for pyserial: parity as pyserial's letter (N, E, O, M, S), timeouts in seconds."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    xonxoff: bool = False
    rtscts: bool = False
    read_timeout: float = 0.1
    write_timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class Poll:
    """A command the adapter sends on its own every `every` seconds (a scale that only answers)."""

    command: str
    every: float


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """An event kind an MQTT device publishes, with an example of its data."""

    kind: str
    example: dict[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    """One device model. Serial profiles have `serial`, `framing` and `grammar`; MQTT ones `publishes`."""

    id: str
    vendor: str
    model: str
    device_kind: str
    manual: Manual
    transport: TransportKind
    path: Path
    description: str = ""
    serial: SerialSettings | None = None
    framing: Framing | None = None
    grammar: Grammar | None = None
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    poll: Poll | None = None
    publishes: tuple[PublishedEvent, ...] = ()

    @property
    def emits(self) -> tuple[str, ...]:
        """The event kinds this device model sends."""
        if self.grammar is None:
            return tuple(dict.fromkeys(p.kind for p in self.publishes))
        return tuple(dict.fromkeys(t.emit.kind for t in self.grammar.frame_types if t.emit is not None))


@dataclass(frozen=True, slots=True)
class ProfileCatalog:
    """Every profile of a folder that loaded, and the problems of those that did not."""

    folder: Path
    profiles: Mapping[str, Profile]
    problems: tuple[ProfileProblem, ...] = ()

    def get(self, profile_id: str) -> Profile:
        try:
            return self.profiles[profile_id]
        except KeyError:
            raise UnknownProfile(profile_id, self.profiles) from None


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def read_profiles(folder: Path | str | None = None) -> ProfileCatalog:
    """Load every `*.yaml` of `folder` (default: the shipped profiles); problems are collected, not raised."""
    folder = Path(folder) if folder is not None else shipped_profiles_dir()
    if not folder.is_dir():
        return ProfileCatalog(folder, {}, (ProfileProblem(str(folder), 0, "not a folder / 文件夹不存在"),))
    profiles: dict[str, Profile] = {}
    problems: list[ProfileProblem] = []
    for path in sorted(folder.glob("*.yaml")):
        profile, found = load_profile(path)
        problems.extend(found)
        if profile is not None:
            profiles[profile.id] = profile
    return ProfileCatalog(folder, profiles, tuple(problems))


def load_profiles(folder: Path | str | None = None) -> ProfileCatalog:
    """Like `read_profiles`, but any problem refuses the whole folder with ProfileError."""
    catalog = read_profiles(folder)
    if catalog.problems:
        raise ProfileError(catalog.problems)
    return catalog


def load_profile(path: Path) -> tuple[Profile | None, list[ProfileProblem]]:
    """One profile file: the profile, or None and every problem found (file, line, reason)."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [ProfileProblem(name, 0, f"cannot be read: {exc.strerror}")]
    if len(raw) > MAX_PROFILE_BYTES:
        return None, [ProfileProblem(name, 0, f"larger than {MAX_PROFILE_BYTES} bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [ProfileProblem(name, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    return parse_profile(text, name, expected_id=path.stem, path=path)


def parse_profile(
    text: str, name: str = "<profile>", *, expected_id: str | None = None, path: Path | None = None
) -> tuple[Profile | None, list[ProfileProblem]]:
    """Parse and check the text of one profile."""
    try:
        node, data = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return None, [ProfileProblem(name, line, f"not valid YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [ProfileProblem(name, 1, f"not valid YAML: {exc}")]
    except RecursionError:
        return None, [ProfileProblem(name, 1, "nested too deeply")]
    if node is None:
        return None, [ProfileProblem(name, 1, "empty file")]
    problems = [ProfileProblem(name, line, reason) for line, reason in key_problems(node, text_keys=False)]
    if problems:
        return None, problems
    for error in sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.append(_schema_problem(name, node, error))
        if len(problems) >= MAX_PROBLEMS_PER_FILE:
            break
    if problems:
        return None, problems
    builder = _Builder(name, node)
    profile = builder.profile(data, path or Path(name))
    if expected_id is not None and data["id"] != expected_id:
        builder.problem(("id",), f"id {data['id']!r} must equal the file name {expected_id!r}")
    if builder.problems:
        return None, sorted(builder.problems, key=lambda p: p.line)
    return profile, []


def _where(path: Iterable[Any]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(top)"


def _schema_problem(name: str, node: Node, error: ValidationError) -> ProfileProblem:
    best = best_match([error])
    path = list(best.absolute_path)
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        known = best.schema.get("properties", {}) if isinstance(best.schema, dict) else {}
        extra = [key for key in best.instance if key not in known]
        if extra:  # point at the unexpected key's own line rather than at its parent's
            return ProfileProblem(name, line_at(node, [*path, extra[0]]), f"{_where(path)}: {best.message}")
    message = best.message if len(best.message) <= 240 else best.message[:237] + "..."
    return ProfileProblem(name, line_at(node, path), f"{_where(path)}: {message}")


def _to_bytes(text: str) -> bytes:
    return text.encode("latin-1")


class _Builder:
    """Turns schema-valid data into a Profile, checking what a schema cannot (regexes, group names, units)."""

    def __init__(self, name: str, node: Node) -> None:
        self.name = name
        self.node = node
        self.problems: list[ProfileProblem] = []

    def problem(self, path: Sequence[Any], reason: str) -> None:
        self.problems.append(ProfileProblem(self.name, line_at(self.node, path), f"{_where(path)}: {reason}"))

    def profile(self, data: dict[str, Any], path: Path) -> Profile:
        manual = data["manual"]
        transport = TransportKind(data["transport"]["type"])
        common: dict[str, Any] = {
            "id": data["id"],
            "vendor": data["vendor"],
            "model": data["model"],
            "device_kind": data["device_kind"],
            "manual": Manual(manual["document"], manual["section"], manual.get("url")),
            "transport": transport,
            "path": path,
            "description": data.get("description", "").strip(),
        }
        encoding = data.get("framing", {}).get("encoding", "ascii")
        commands = self.commands(data.get("commands", {}), encoding, transport)
        for key in _SERIAL_ONLY if transport is TransportKind.MQTT else _MQTT_ONLY:
            if key in data:
                self.problem((key,), f"not for a {transport.value} device")
        if transport is TransportKind.MQTT:
            publishes = tuple(
                PublishedEvent(p["kind"], dict(p["example"]), p.get("description", "")) for p in data["publishes"]
            )
            return Profile(**common, commands=commands, publishes=publishes)
        units = self.units(data.get("units", {}))
        grammar = Grammar(self.frame_types(data["frames"], units), units, encoding)
        poll = None
        if "poll" in data:
            poll = Poll(data["poll"]["command"], data["poll"]["every_ms"] / 1000)
            if poll.command not in commands:
                self.problem(("poll", "command"), f"no command {poll.command!r} in commands")
        return Profile(
            **common,
            serial=self.serial(data["transport"]),
            framing=self.framing(data["framing"]),
            grammar=grammar,
            commands=commands,
            poll=poll,
        )

    def serial(self, t: dict[str, Any]) -> SerialSettings:
        return SerialSettings(
            baudrate=t["baudrate"],
            bytesize=t.get("bytesize", 8),
            parity=_PARITY[t.get("parity", "none")],
            stopbits=t.get("stopbits", 1),
            xonxoff=t.get("xonxoff", False),
            rtscts=t.get("rtscts", False),
            read_timeout=t.get("read_timeout_ms", 100) / 1000,
            write_timeout=t.get("write_timeout_ms", 1000) / 1000,
        )

    def bytes_of(self, path: Sequence[Any], text: str) -> bytes:
        try:
            return _to_bytes(text)
        except UnicodeEncodeError:
            self.problem(path, 'bytes must be characters \\x00..\\xff (write them as "\\x02")')
            return b"?"

    def framing(self, f: dict[str, Any]) -> Framing:
        kind = FramingKind(f["type"])
        max_length = f.get("max_length", 256)
        if kind is FramingKind.TERMINATOR:
            return Framing(
                kind,
                max_length=max_length,
                terminator=self.bytes_of(("framing", "terminator"), f["terminator"]),
                strip=self.bytes_of(("framing", "strip"), f["strip"]) if "strip" in f else b"",
            )
        if kind is FramingKind.FIXED_LENGTH:
            sync = self.bytes_of(("framing", "sync"), f["sync"]) if "sync" in f else b""
            if len(sync) >= f["length"]:
                self.problem(("framing", "length"), "length must be longer than the sync bytes")
            return Framing(kind, max_length=f["length"], length=f["length"], sync=sync)
        checksum = None
        if "checksum" in f:
            c = f["checksum"]
            checksum = Checksum(
                ChecksumAlgorithm(c["algorithm"]),
                ChecksumEncoding(c.get("encoding", "byte")),
                ChecksumCovers(c.get("covers", "frame")),
                ChecksumPosition(c.get("position", "after_end")),
            )
        return Framing(
            kind,
            max_length=max_length,
            start=self.bytes_of(("framing", "start"), f["start"]),
            end=self.bytes_of(("framing", "end"), f["end"]),
            checksum=checksum,
        )

    def units(self, raw: dict[str, Any]) -> dict[str, Decimal]:
        units: dict[str, Decimal] = {}
        for name, value in raw.items():
            try:
                units[str(name)] = Decimal(str(value))
            except InvalidOperation:
                self.problem(("units", name), f"{value!r} is not a number of grams")
        return units

    def frame_types(self, frames: list[dict[str, Any]], units: Mapping[str, Decimal]) -> tuple[FrameType, ...]:
        result: list[FrameType] = []
        names: set[str] = set()
        for i, f in enumerate(frames):
            where = ("frames", i)
            if f["name"] in names:
                self.problem((*where, "name"), f"frame type {f['name']!r} appears twice")
            names.add(f["name"])
            try:
                pattern = re.compile(f["pattern"])
            except re.error as exc:
                self.problem((*where, "pattern"), f"not a valid regex: {exc}")
                continue
            emit = None
            if "emit" in f:
                emit = self.emit((*where, "emit"), f["emit"], pattern, units)
            when = None
            if "when" in f:
                value = self.value((*where, "when", "value"), f["when"]["value"], pattern, units)
                when = When(value, f["when"]["equals"])
            result.append(FrameType(f["name"], pattern, emit, f.get("error"), when))
        return tuple(result)

    def emit(
        self, where: tuple[Any, ...], e: dict[str, Any], pattern: re.Pattern[str], units: Mapping[str, Decimal]
    ) -> Emit:
        data = tuple(
            (name, self.value((*where, "data", name), source, pattern, units)) for name, source in e["data"].items()
        )
        on_change = tuple(e["on_change"]) if "on_change" in e else None
        for i, name in enumerate(on_change or ()):
            if name not in e["data"]:
                self.problem((*where, "on_change", i), f"{name!r} is not a field of data")
        return Emit(e["kind"], data, on_change)

    def group_name(self, where: tuple[Any, ...], name: str, pattern: re.Pattern[str]) -> str:
        if name not in pattern.groupindex:
            known = ", ".join(pattern.groupindex) or "none"
            self.problem(where, f"the pattern has no group {name!r} (named groups: {known})")
        return name

    def value(
        self, where: tuple[Any, ...], v: Any, pattern: re.Pattern[str], units: Mapping[str, Decimal]
    ) -> ValueSource:
        if isinstance(v, str):  # a literal unit
            if v not in units and v.casefold() not in {u.casefold() for u in units}:
                self.problem(where, f"unit {v!r} is not in units")
            return Const(v)
        if "const" in v:
            return Const(v["const"])
        if "setting" in v:
            return Setting(v["setting"], v.get("default"))
        if "weight" in v:
            if not units:
                self.problem(where, "a weight needs units (unit text -> grams)")
            return Weight(
                self.group_name((*where, "weight"), v["weight"], pattern),
                self.value((*where, "unit"), v["unit"], pattern, units),
                self.value((*where, "decimals"), v["decimals"], pattern, units) if "decimals" in v else None,
                self.value((*where, "negative"), v["negative"], pattern, units) if "negative" in v else None,
            )
        group = self.group_name((*where, "group"), v["group"], pattern)
        mapping = _mapping(v.get("map"))
        if "bits" in v:
            bits = v["bits"]
            low, high = (bits, bits) if isinstance(bits, int) else (bits[0], bits[1])
            if low > high:
                self.problem((*where, "bits"), "write bits as [low, high]")
            return Bits(group, low, high, mapping)
        return Group(group, mapping, v.get("type") == "integer")

    def commands(self, raw: dict[str, Any], encoding: str, transport: TransportKind) -> dict[str, CommandSpec]:
        commands: dict[str, CommandSpec] = {}
        for name, c in raw.items():
            where = ("commands", name)
            params: dict[str, re.Pattern[str]] = {}
            for param, spec in c.get("params", {}).items():
                try:
                    params[param] = re.compile(spec["pattern"])
                except re.error as exc:
                    self.problem((*where, "params", param, "pattern"), f"not a valid regex: {exc}")
            send = c.get("send", "")
            if transport is TransportKind.SERIAL:
                if "send" not in c:
                    self.problem(where, "a serial command needs send (the bytes to write)")
                placeholders = set(re.findall(r"(?<!\{)\{([a-z_][a-z0-9_]*)\}", send))
                for missing in sorted(placeholders - set(params)):
                    self.problem((*where, "send"), f"placeholder {{{missing}}} has no params entry")
                try:
                    send.format_map({p: "" for p in params}).encode(encoding)
                except (ValueError, KeyError, IndexError, UnicodeEncodeError) as exc:
                    self.problem((*where, "send"), f"cannot be sent as {encoding}: {exc}")
            commands[name] = CommandSpec(name, send, params, c.get("emit_next", False), c.get("description", ""))
        return commands


def _mapping(raw: Mapping[Any, Any] | None) -> dict[str, JsonScalar] | None:
    if raw is None:
        return None
    # YAML reads `0:` and `true:` as numbers and booleans; frames give text, so keys compare as text.
    return {(str(k).lower() if isinstance(k, bool) else str(k)): v for k, v in raw.items()}
