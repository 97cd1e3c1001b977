"""Firmware profiles: the shipped ones load and mean what docs/firmware-profiles.md says; a bad profile is
refused with file, line and reason; `storebox profiles check` and `list`."""

from __future__ import annotations

import functools
import json
import re
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.bus.event_kinds import decode_options, device_event_kinds
from edge.bus.payloads import DecodedEvent, decode_event
from edge.cli import app
from edge.config import Settings
from edge.devices.frames import DeviceError, Reading, Reply, parse_frame
from edge.devices.profiles import (
    Profile,
    ProfileError,
    ProfileProblem,
    TransportKind,
    UnknownProfile,
    load_profiles,
    parse_profile,
    read_profiles,
    shipped_profiles_dir,
)
from edge.devices.serial_adapter import check_serial_devices

DOC = Path(__file__).parents[3] / "docs" / "firmware-profiles.md"
_FENCE = re.compile(r"^ *```(\w+)([^\n]*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
SHIPPED = {
    "serial-barcode-scanner": ("scanner", ("scan",)),
    "mettler-toledo-mt-sics": ("scale", ("weight",)),
    "cn-retail-scale-continuous": ("scale", ("weight",)),
    "mettler-toledo-continuous": ("scale", ("weight",)),
    "mqtt-cold-room-sensor": ("sensor", ("temp",)),
    "mqtt-handheld-pda": ("handheld", ("scan", "sale", "receive", "attachment")),
    "mqtt-pos": ("pos", ("sale",)),
}


CATALOG = read_profiles()


def blocks(language: str) -> list[tuple[str, str]]:
    found = _FENCE.findall(DOC.read_text("utf-8"))
    return [(info.strip(), textwrap.dedent(body)) for lang, info, body in found if lang == language]


def test_every_shipped_profile_loads_and_cites_its_manual_section() -> None:
    catalog = load_profiles()
    assert {pid: (p.device_kind, p.emits) for pid, p in catalog.profiles.items()} == SHIPPED
    for profile in catalog.profiles.values():
        assert profile.path.stem == profile.id
        assert profile.manual.document and profile.manual.section
        assert f"`{profile.id}`" in DOC.read_text("utf-8")  # each shipped profile is documented
        if profile.transport is TransportKind.SERIAL:
            assert profile.serial is not None and profile.framing is not None and profile.grammar is not None
            if profile.poll is not None:
                assert profile.poll.command in profile.commands
    assert set(catalog.get("mettler-toledo-mt-sics").commands) >= {"weigh", "weigh-now", "tare", "zero", "reset"}
    with pytest.raises(UnknownProfile) as err:
        catalog.get("abacus")
    assert err.value.code == "unknown_profile" and "mqtt-pos" in err.value.message_en


def _parsed(profile_id: str, body: str) -> str:
    profile = CATALOG.profiles.get(profile_id) or _doc_profile(profile_id)
    assert profile.grammar is not None
    result = parse_frame(profile.grammar, body.encode(profile.grammar.encoding), {})
    if isinstance(result, Reading):
        return f"{result.kind} {json.dumps(result.data)}"
    if isinstance(result, Reply):
        return "reply"
    if isinstance(result, DeviceError):
        return f"device error {result.code}"
    return f"garbage {result.reason.value}"


@functools.cache
def _doc_profile(profile_id: str) -> Profile:
    (text,) = [body for info, body in blocks("yaml") if info == f"profile {profile_id}"]
    profile, problems = parse_profile(text, "docs/firmware-profiles.md", expected_id=profile_id)
    assert problems == [] and profile is not None
    return profile


def test_every_documented_frame_becomes_what_the_guide_says() -> None:
    examples = [(info.removeprefix("frames "), body) for info, body in blocks("frames")]
    assert {pid for pid, _ in examples} >= {p for p in SHIPPED if not p.startswith("mqtt-")} | {"yaohua-xk3190-a9"}
    checked = 0
    for profile_id, body in examples:
        for line in body.splitlines():
            frame, _, expected = line.partition("  =>  ")
            assert _parsed(profile_id, frame) == expected.strip(), (profile_id, line)
            checked += 1
    assert checked >= 25


def test_the_documented_xk3190_frame_with_its_checksum_deframes() -> None:
    from edge.devices.frames import Deframer, Frame

    profile = _doc_profile("yaohua-xk3190-a9")
    assert profile.framing is not None
    # The XK3190-A9 manual's example: +20.00 kg, XOR of bytes 2..9 = 0x1B, sent as "1B".
    assert Deframer(profile.framing).feed(b"\x02+00200021B\x03") == [Frame(b"+0020002")]


def test_the_documented_serial_devices_setting_is_valid() -> None:
    (toml_text,) = [body for info, body in blocks("toml")]
    entries = tomllib.loads(toml_text)["serial_devices"]
    assert [d["device"] for d in check_serial_devices(entries)] == ["scale-1", "scanner-1"]
    assert {e["profile"] for e in entries} <= set(read_profiles().profiles)


def test_mqtt_profiles_examples_are_accepted_by_the_box(tmp_path: Path) -> None:
    kinds = device_event_kinds()
    options = decode_options(Settings(data_dir=tmp_path))  # the box's decoding settings (attachments need them)
    catalog = read_profiles()
    mqtt_profiles = [p for p in catalog.profiles.values() if p.transport is TransportKind.MQTT]
    assert len(mqtt_profiles) == 3
    for profile in mqtt_profiles:
        for n, published in enumerate(profile.publishes):
            payload = json.dumps(
                {"id": f"{profile.id}-{n}", "ts": "2024-05-01T10:00:00+08:00", "data": published.example}
            )
            decoded = decode_event("dev-1", published.kind, payload.encode(), kinds=kinds, options=options)
            assert isinstance(decoded, DecodedEvent), (profile.id, decoded)


def test_the_handheld_profile_lists_every_event_a_handheld_sends() -> None:
    handheld = read_profiles().profiles["mqtt-handheld-pda"]
    assert set(handheld.emits) == {"scan", "sale", "receive", "attachment"}
    assert set(handheld.emits) <= set(device_event_kinds())


# --- refusals with file, line and reason ----------------------------------------------------------------

GOOD = """\
id: test-scale
vendor: ACME
model: Test scale
device_kind: scale
manual: {document: ACME manual, section: "4.2 Output"}
transport:
  type: serial
  baudrate: 9600
framing:
  type: terminator
  terminator: "\\r\\n"
units: {g: 1}
frames:
  - name: weight
    pattern: 'W(?P<value>[0-9]+)(?P<unit>g)'
    emit:
      kind: weight
      data:
        grams: {weight: value, unit: {group: unit}}
        stable: {const: true}
commands:
  tare: {send: "T\\r\\n"}
poll: {command: tare, every_ms: 500}
"""


def test_the_test_profile_is_good() -> None:
    profile, problems = parse_profile(GOOD, "test-scale.yaml", expected_id="test-scale")
    assert problems == [] and profile is not None and profile.poll is not None


@pytest.mark.parametrize(
    "old,new,line,reason",
    [
        ("  baudrate: 9600", "  baudrate: 9601", 8, "transport.baudrate: 9601 is not one of"),
        ("vendor: ACME\n", "", 1, "'vendor' is a required property"),
        ("  terminator: ", "  terminatr: ", 11, "'terminatr' was unexpected"),
        ("'W(?P<value>[0-9]+)(?P<unit>g)'", "'W(?P<value>[0-9+)'", 15, "frames[0].pattern: not a valid regex"),
        ("{weight: value,", "{weight: valu,", 19, "the pattern has no group 'valu'"),
        ("unit: {group: unit}}", "unit: lb}", 19, "unit 'lb' is not in units"),
        ("        stable: {const: true}", "        stable: {cons: true}", 20, "frames[0].emit.data.stable"),
        ("{command: tare,", "{command: beep,", 23, "poll.command: no command 'beep'"),
        ("model: Test scale\n", "model: Test scale\nvendor: Other\n", 4, "duplicate key 'vendor'"),
        ("  type: serial", "  type: serial\n   nested: [", 8, "not valid YAML"),
        ("id: test-scale", "id: other-scale", 1, "must equal the file name 'test-scale'"),
        ("device_kind: scale", "device_kind: toaster", 4, "device_kind: 'toaster' is not one of"),
        (
            '  terminator: "\\r\\n"',
            '  terminator: "\\r\\n"\n  checksum: {algorithm: xor}',
            12,
            "'checksum' was unexpected",
        ),
        ('  tare: {send: "T\\r\\n"}', '  tare: {send: "D {text}"}', 22, "placeholder {text} has no params entry"),
        ('  terminator: "\\r\\n"', '  terminator: "价"', 11, "framing.terminator: bytes must be"),
    ],
)
def test_a_bad_profile_is_refused_with_file_line_and_reason(old: str, new: str, line: int, reason: str) -> None:
    assert old in GOOD
    profile, problems = parse_profile(GOOD.replace(old, new, 1), "test-scale.yaml", expected_id="test-scale")
    assert profile is None
    assert any(p.line == line and reason in p.reason for p in problems), problems
    assert all(str(p).startswith(f"test-scale.yaml:{p.line}: ") for p in problems)


def test_an_mqtt_profile_takes_no_framing_and_a_serial_one_needs_frames() -> None:
    mqtt = GOOD.replace("  type: serial\n  baudrate: 9600", "  type: mqtt")
    _, problems = parse_profile(mqtt, "x.yaml")
    assert [p.reason for p in problems] == ["(top): 'publishes' is a required property"]
    _, problems = parse_profile(mqtt + "publishes:\n  - {kind: temp, example: {celsius: 1.5}}\n", "x.yaml")
    assert [(p.line, p.reason) for p in problems] == [
        (8, "framing: not for a mqtt device"),
        (11, "units: not for a mqtt device"),
        (12, "frames: not for a mqtt device"),
        (22, "poll: not for a mqtt device"),
    ]
    serial_without_frames = GOOD.split("frames:")[0]
    _, problems = parse_profile(serial_without_frames, "x.yaml")
    assert any("'frames' is a required property" in p.reason for p in problems)


def test_a_folder_with_a_bad_profile_is_refused_whole_by_load_and_in_part_by_read(tmp_path: Path) -> None:
    (tmp_path / "test-scale.yaml").write_text(GOOD, "utf-8")
    (tmp_path / "broken.yaml").write_text(GOOD.replace("id: test-scale", "id: broken").replace("9600", "96"), "utf-8")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    catalog = read_profiles(tmp_path)
    assert list(catalog.profiles) == ["test-scale"]
    assert [(Path(p.file).name, p.line) for p in catalog.problems] == [("binary.yaml", 1), ("broken.yaml", 8)]
    with pytest.raises(ProfileError) as err:
        load_profiles(tmp_path)
    assert err.value.code == "invalid_profile" and "binary.yaml:1" in err.value.message_en
    assert len(err.value.detail["problems"]) == 2


# --- the CLI --------------------------------------------------------------------------------------------


def test_storebox_profiles_check_passes_the_shipped_folder_and_names_file_and_line(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["profiles", "check"])
    assert ok.exit_code == 0, ok.output
    assert "7 profiles ok" in ok.output and str(shipped_profiles_dir()) in ok.output
    (tmp_path / "test-scale.yaml").write_text(GOOD.replace("baudrate: 9600", "baudrate: fast"), "utf-8")
    bad = runner.invoke(app, ["profiles", "check", str(tmp_path)])
    assert bad.exit_code == 2
    assert f"{tmp_path / 'test-scale.yaml'}:8: transport.baudrate: 'fast' is not one of" in bad.output
    missing = runner.invoke(app, ["profiles", "check", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "not a folder" in missing.output


def test_storebox_profiles_list_shows_events_commands_and_manual() -> None:
    result = CliRunner().invoke(app, ["profiles", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)}
    assert rows["mettler-toledo-mt-sics"]["events"] == ["weight"]
    assert "tare" in rows["mettler-toledo-mt-sics"]["commands"]
    assert rows["mqtt-pos"]["transport"] == "mqtt" and rows["mqtt-pos"]["manual"]["section"]
    text = CliRunner().invoke(app, ["profiles", "list"])
    assert "serial-barcode-scanner  [scanner, serial]  evt: scan" in text.output


def test_storebox_profiles_list_and_check_read_the_folder_of_the_setting(tmp_path: Path) -> None:
    (tmp_path / "test-scale.yaml").write_text(GOOD, "utf-8")
    env = {"STOREBOX_CONFIG": "", "STOREBOX_FIRMWARE_PROFILES_DIR": str(tmp_path)}
    listed = CliRunner().invoke(app, ["profiles", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.output)] == ["test-scale"]
    checked = CliRunner().invoke(app, ["profiles", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert f"1 profiles ok in {tmp_path}: test-scale" in checked.output
    (tmp_path / "test-scale.yaml").write_text(GOOD.replace("baudrate: 9600", "baudrate: fast"), "utf-8")
    assert CliRunner().invoke(app, ["profiles", "check"], env=env).exit_code == 2
    shipped = CliRunner().invoke(app, ["profiles", "check", str(shipped_profiles_dir())], env=env)
    assert shipped.exit_code == 0 and "7 profiles ok" in shipped.output  # a folder named wins over the setting


@settings(max_examples=150, deadline=None)
@given(
    cut=st.integers(0, len(GOOD)),
    length=st.integers(0, 40),
    insert=st.text(alphabet=st.sampled_from(list(" \n:-{}[]'\"#&*!|>%@`\\x0az9")), max_size=12),
)
def test_any_mangled_profile_text_gives_a_profile_or_problems_never_an_exception(
    cut: int, length: int, insert: str
) -> None:
    text = GOOD[:cut] + insert + GOOD[cut + length :]
    profile, problems = parse_profile(text, "mangled.yaml")
    assert (profile is None) == bool(problems)
    lines = text.count("\n") + 1
    assert all(0 <= p.line <= lines + 1 and p.reason for p in problems)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_at_all_is_refused_with_a_line(text: str) -> None:
    profile, problems = parse_profile(text, "noise.yaml")
    assert profile is None and problems and all(p.line >= 0 for p in problems)


def test_deeply_nested_yaml_is_refused_not_a_crash() -> None:
    for text in ("- " * 1500 + "x", "a: " + "{b: " * 1500 + "}" * 1500):
        assert parse_profile(text, "deep.yaml") == (None, [ProfileProblem("deep.yaml", 1, "nested too deeply")])
