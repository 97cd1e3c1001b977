"""The frame layer, pure: deframing by each framing kind, checksums, grammar matching, the mapping of
frames to event data (weights in grams), commands. Property tests feed it random bytes and random chunking."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.frames import (
    BadValue,
    Bits,
    Checksum,
    ChecksumAlgorithm,
    ChecksumCovers,
    ChecksumEncoding,
    ChecksumPosition,
    CommandSpec,
    Const,
    Deframer,
    DeviceError,
    Emit,
    Frame,
    FrameType,
    Framing,
    FramingKind,
    Garbage,
    GarbageReason,
    Grammar,
    Group,
    Reading,
    Reply,
    Setting,
    Weight,
    When,
    evaluate,
    parse_frame,
)
from edge.devices.profiles import read_profiles

UNITS = {"g": Decimal(1), "kg": Decimal(1000), "lb": Decimal("453.59237")}
CRLF = Framing(FramingKind.TERMINATOR, max_length=32, terminator=b"\r\n")
SCANNER = Framing(FramingKind.TERMINATOR, max_length=32, terminator=b"\r", strip=b"\n")
FIXED = Framing(FramingKind.FIXED_LENGTH, max_length=9, length=9, sync=b"=")
TOLEDO_CHECKSUM = Checksum(ChecksumAlgorithm.TWOS_COMPLEMENT_SUM7)
STX_CR = Framing(FramingKind.START_END, max_length=32, start=b"\x02", end=b"\r", checksum=TOLEDO_CHECKSUM)
XOR_HEX = Checksum(ChecksumAlgorithm.XOR, ChecksumEncoding.HEX, ChecksumCovers.BODY, ChecksumPosition.BEFORE_END)
STX_ETX = Framing(FramingKind.START_END, max_length=32, start=b"\x02", end=b"\x03", checksum=XOR_HEX)
CATALOG = read_profiles()


def frames(items: list[Frame | Garbage]) -> list[bytes]:
    return [item.body for item in items if isinstance(item, Frame)]


def reasons(items: list[Frame | Garbage]) -> list[GarbageReason]:
    return [item.reason for item in items if isinstance(item, Garbage)]


# --- deframing ----------------------------------------------------------------------------------------


def test_a_terminator_split_across_reads_still_ends_the_frame() -> None:
    deframer = Deframer(CRLF)
    assert deframer.feed(b"S S   1.00 g\r") == []
    assert frames(deframer.feed(b"\nS D   2.00 g\r\n\r\n")) == [b"S S   1.00 g", b"S D   2.00 g"]
    assert deframer.buffered == 0


def test_a_scanner_takes_cr_and_cr_lf_suffixes() -> None:
    deframer = Deframer(SCANNER)
    assert frames(deframer.feed(b"6901234567892\r\n6901234567809\r123\r")) == [
        b"6901234567892",
        b"6901234567809",
        b"123",
    ]


def test_a_frame_too_long_is_reported_once_and_the_next_frame_is_read() -> None:
    deframer = Deframer(CRLF)
    out = deframer.feed(b"x" * 100)
    out += deframer.feed(b"y" * 100)
    assert reasons(out) == [GarbageReason.TOO_LONG]
    assert deframer.buffered <= 1
    out = deframer.feed(b"tail of it\r\nS S   3.00 g\r\n")
    assert frames(out) == [b"S S   3.00 g"] and reasons(out) == []


def test_fixed_length_frames_resync_on_the_sync_byte() -> None:
    deframer = Deframer(FIXED)
    out = deframer.feed(b"junk=12345678=123=87654321")
    assert frames(out) == [b"12345678", b"87654321"]
    assert reasons(out) == [GarbageReason.NOISE, GarbageReason.TRUNCATED]


def test_fixed_length_without_sync_cuts_every_length_bytes() -> None:
    deframer = Deframer(Framing(FramingKind.FIXED_LENGTH, max_length=4, length=4))
    assert frames(deframer.feed(b"abcdefghij")) == [b"abcd", b"efgh"]
    assert deframer.buffered == 2


def test_start_end_frames_skip_noise_refuse_truncated_and_bad_checksums() -> None:
    good = STX_CR.frame(b"-0   1234     0")
    bad = good[:-1] + bytes([(good[-1] + 1) & 0x7F])
    out = Deframer(STX_CR).feed(b"noise" + good + good[:6] + good + bad)
    assert frames(out) == [b"-0   1234     0", b"-0   1234     0"]
    assert reasons(out) == [GarbageReason.NOISE, GarbageReason.TRUNCATED, GarbageReason.BAD_CHECKSUM]


def test_start_end_waits_for_a_checksum_after_the_end_bytes() -> None:
    good = STX_CR.frame(b"-0   1234     0")
    deframer = Deframer(STX_CR)
    assert deframer.feed(good[:-1]) == []
    assert frames(deframer.feed(good[-1:])) == [b"-0   1234     0"]


def test_the_toledo_checksum_is_the_twos_complement_of_the_7_bit_sum() -> None:
    # IND445 manual 5.2.2: "2-complement of the binary sum of the 7 lower bits of all characters sent
    # beforehand incl. STX and CR". Worked by hand: STX, '-', '0', ' ', digits "  1234     0", CR.
    sent = b"\x02-0   1234     0\r"
    total = sum(sent)  # all below 0x80
    assert total == 0x02 + 0x2D + 0x30 + 0x20 + 0x20 * 2 + 0x31 + 0x32 + 0x33 + 0x34 + 0x20 * 5 + 0x30 + 0x0D
    assert TOLEDO_CHECKSUM.compute(sent) == bytes([(128 - total % 128) % 128])


def test_the_xk3190_xor_checksum_of_the_manual_example() -> None:
    # 耀华 XK3190-A9 continuous format 0: "+002000", 2 decimals -> XOR of bytes 2..9 is 0x1B, sent as "1B".
    frame = b"\x02+00200021B\x03"
    assert frames(Deframer(STX_ETX).feed(frame)) == [b"+0020002"]
    assert XOR_HEX.compute(b"+0020002") == b"1B"
    assert reasons(Deframer(STX_ETX).feed(b"\x02+00200021C\x03")) == [GarbageReason.BAD_CHECKSUM]
    assert frames(Deframer(STX_ETX).feed(b"\x02+00200021b\x03")) == [b"+0020002"]  # hex in either case


CHECKSUMS = st.builds(
    Checksum,
    st.sampled_from(ChecksumAlgorithm),
    st.sampled_from(ChecksumEncoding),
    st.sampled_from(ChecksumCovers),
    st.sampled_from(ChecksumPosition),
)


@st.composite
def framed_streams(draw: st.DrawFn) -> tuple[Framing, list[bytes], bytes]:
    """A framing, the bodies sent, and the bytes on the wire."""
    kind = draw(st.sampled_from(FramingKind))
    if kind is FramingKind.TERMINATOR:
        framing = Framing(kind, max_length=40, terminator=draw(st.sampled_from([b"\r", b"\r\n", b"\n"])))
        body = st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
    elif kind is FramingKind.FIXED_LENGTH:
        framing = Framing(kind, max_length=8, length=8, sync=b"=")
        body = st.binary(min_size=7, max_size=7).filter(lambda b: b"=" not in b)
    else:
        framing = Framing(kind, max_length=40, start=b"\x02", end=b"\x03", checksum=draw(st.none() | CHECKSUMS))
        body = st.binary(min_size=1, max_size=30).filter(lambda b: b"\x02" not in b and b"\x03" not in b)
    bodies = draw(st.lists(body, max_size=8))
    checksum = framing.checksum
    if checksum is not None and checksum.position is ChecksumPosition.BEFORE_END:
        # A checksum byte inside the frame that happens to be the start or end byte cuts the frame: devices
        # with such framings send the checksum in hex, or after the end bytes.
        def fits(b: bytes) -> bool:
            sent = checksum.compute(b if checksum.covers is ChecksumCovers.BODY else framing.start + b)
            return framing.start not in sent and framing.end not in sent

        bodies = [b for b in bodies if fits(b)]
    return framing, bodies, b"".join(framing.frame(b) for b in bodies)


@settings(max_examples=150)
@given(stream=framed_streams(), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_frames_come_back_whole_however_the_reads_are_cut(
    stream: tuple[Framing, list[bytes], bytes], cuts: list[int]
) -> None:
    framing, bodies, wire = stream
    deframer = Deframer(framing)
    out: list[Frame | Garbage] = []
    last = 0
    for cut in sorted(c for c in cuts if c <= len(wire)):
        out += deframer.feed(wire[last:cut])
        last = cut
    out += deframer.feed(wire[last:])
    assert frames(out) == bodies
    assert reasons(out) == []


@settings(max_examples=300)
@given(
    framing=st.sampled_from([CRLF, SCANNER, FIXED, STX_CR, STX_ETX]),
    chunks=st.lists(st.binary(max_size=300), max_size=12),
)
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(framing: Framing, chunks: list[bytes]) -> None:
    deframer = Deframer(framing)
    for chunk in chunks:
        for item in deframer.feed(chunk):
            assert isinstance(item, Frame | Garbage)
            if isinstance(item, Frame):
                assert len(item.body) <= framing.max_length
        assert deframer.buffered <= framing.max_length + 2


# Pieces of real frames, so that random streams also hit the grammars and the value mappings.
FRAGMENTS = [
    b"\r\n",
    b"\r",
    b"\n",
    b"\x02",
    b"S S ",
    b"S D ",
    b"S +",
    b"  12.50",
    b"-3.2",
    b" g",
    b" kg",
    b"ES",
    b"ST,GS,+",
    b"US,NT,-",
    b"OL,GS,",
    b"001.234",
    b"kg",
    b"-0 ",
    b"  1234     0",
    b"\x1d",
    b"6901234567892",
]


@settings(max_examples=300)
@given(
    data=st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(FRAGMENTS)), max_size=60).map(b"".join),
    profile=st.sampled_from(sorted(CATALOG.profiles)),
)
def test_every_shipped_profile_turns_random_bytes_into_values_never_exceptions(data: bytes, profile: str) -> None:
    p = CATALOG.get(profile)
    if p.framing is None or p.grammar is None:
        return
    deframer = Deframer(p.framing)
    for item in deframer.feed(data):
        if isinstance(item, Frame):
            assert isinstance(
                parse_frame(p.grammar, item.body, {"mode": "sale"}), Reading | Reply | DeviceError | Garbage
            )
    assert deframer.buffered <= p.framing.max_length + 2


# --- grammar and mapping ------------------------------------------------------------------------------


WEIGHT = FrameType(
    "stable",
    re.compile(r"S S +(?P<value>\S+) +(?P<unit>\S+)"),
    Emit("weight", (("grams", Weight("value", Group("unit"))), ("stable", Const(True))), ("grams",)),
)
GRAMMAR = Grammar(
    (
        WEIGHT,
        FrameType("zeroed", re.compile("Z A")),
        FrameType("syntax", re.compile("ES"), error="syntax_error"),
    ),
    UNITS,
)


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"S S     100.00 g", {"grams": 100, "stable": True}),
        (b"S S      0.0005 kg", {"grams": 1, "stable": True}),  # 0.5 g rounds half up, once
        (b"S S      0.0004 kg", {"grams": 0, "stable": True}),
        (b"S S     -0.0005 kg", {"grams": -1, "stable": True}),  # half away from zero
        (b"S S      2.2046 lb", {"grams": 1000, "stable": True}),
        (b"S S     1.5 KG", {"grams": 1500, "stable": True}),  # units ignore case when not exact
    ],
)
def test_weights_become_integer_grams(body: bytes, expected: dict[str, object]) -> None:
    assert parse_frame(GRAMMAR, body) == Reading("stable", "weight", expected, ("grams",))


@pytest.mark.parametrize(
    "body,reason",
    [
        (b"S S     1.2.3 g", GarbageReason.BAD_VALUE),
        (b"S S     12 stone", GarbageReason.BAD_VALUE),
        (b"S S     9999999999 kg", GarbageReason.BAD_VALUE),  # beyond 10^9 g
        (b"S X     1 g", GarbageReason.NO_MATCH),
        (b"S S \xff g", GarbageReason.NOT_TEXT),
    ],
)
def test_frames_that_do_not_convert_are_garbage_with_a_reason(body: bytes, reason: GarbageReason) -> None:
    result = parse_frame(GRAMMAR, body)
    assert isinstance(result, Garbage) and result.reason is reason


def test_replies_and_device_errors_are_no_events() -> None:
    assert parse_frame(GRAMMAR, b"Z A") == Reply("zeroed")
    assert parse_frame(GRAMMAR, b"ES") == DeviceError("syntax", "syntax_error")


def test_status_bits_implied_decimals_and_sign_flags_read_a_toledo_frame() -> None:
    groups = {"swa": "-", "swb": chr(0x20 | 0x10 | 0x02), "digits": "  1234"}  # XXX.XXX, kg, negative
    weight = Weight(
        "digits",
        Bits("swb", 4, 4, {"0": "lb", "1": "kg"}),
        Bits("swa", 0, 2, {"5": 3, "2": 0}),
        Bits("swb", 1, 1),
    )
    assert evaluate(weight, groups, UNITS, {}) == -1234
    assert evaluate(Bits("swb", 3, 3), groups, UNITS, {}) == 0
    with pytest.raises(BadValue):
        evaluate(Bits("digits", 0, 1), groups, UNITS, {})  # not one status character


def test_when_picks_the_frame_type_by_a_status_bit() -> None:
    pattern = re.compile(r"(?P<swb>.)(?P<w>\d+)")
    moving = FrameType("moving", pattern, Emit("weight", (("stable", Const(False)),)), when=When(Bits("swb", 3, 3), 1))
    still = FrameType("stable", pattern, Emit("weight", (("stable", Const(True)),)))
    grammar = Grammar((moving, still), UNITS)
    assert parse_frame(grammar, b"\x2812").frame_type == "moving"  # type: ignore[union-attr]
    assert parse_frame(grammar, b"\x2012").frame_type == "stable"  # type: ignore[union-attr]


def test_settings_groups_and_maps() -> None:
    groups = {"code": " 690 ", "status": "S", "n": "+007"}
    assert evaluate(Setting("mode", "sale"), groups, UNITS, {}) == "sale"
    assert evaluate(Setting("mode", "sale"), groups, UNITS, {"mode": "count"}) == "count"
    assert evaluate(Group("code"), groups, UNITS, {}) == "690"
    assert evaluate(Group("code"), {"code": "\x1d01"}, UNITS, {}) == "\x1d01"  # a GS separator is kept
    assert evaluate(Group("status", {"S": True, "D": False}), groups, UNITS, {}) is True
    assert evaluate(Group("n", integer=True), groups, UNITS, {}) == 7
    with pytest.raises(BadValue, match="not one of"):
        evaluate(Group("status", {"D": False}), groups, UNITS, {})
    with pytest.raises(BadValue, match="did not match"):
        evaluate(Group("absent"), groups, UNITS, {})


def test_a_reading_repeats_only_within_its_frame_type_and_fields() -> None:
    stable = Reading("stable", "weight", {"grams": 5, "stable": True}, ("grams",))
    moving = Reading("moving", "weight", {"grams": 7, "stable": False}, ())
    assert stable.repeats(Reading("stable", "weight", {"grams": 5, "stable": True}, ("grams",)))
    assert not stable.repeats(Reading("stable", "weight", {"grams": 6, "stable": True}, ("grams",)))
    assert not stable.repeats(moving) and not stable.repeats(None)
    assert moving.repeats(Reading("moving", "weight", {"grams": 9, "stable": False}, ()))
    scan = Reading("code", "scan", {"code": "1"}, None)
    assert not scan.repeats(scan)  # no on_change: every scan counts


# --- commands -----------------------------------------------------------------------------------------


def test_commands_render_their_bytes_with_checked_parameters() -> None:
    display = CommandSpec("display", 'D "{text}"\r\n', {"text": re.compile(r"[ !#-~]{0,20}")})
    assert display.render({"text": "HELLO"}) == b'D "HELLO"\r\n'
    for values in ({"text": 'say "hi"'}, {"text": 5}, {}, {"text": "x", "colour": "red"}, {"text": "价格"}):
        with pytest.raises(ValueError):
            display.render(values)
    assert CommandSpec("tare", "T\r\n").render({}) == b"T\r\n"
