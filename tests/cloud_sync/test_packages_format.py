"""The signed package format: what HQ builds reads back; anything tampered, foreign or malformed is refused."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.packages import format as fmt
from cloud_sync.packages.format import PackageBadSignature, PackageError, PackageInvalid, build_package, read_package

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
PRICES = b"sku,price\nCOLA,3.80\nMILK,12.90\n"


def build(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "kind": "price_list",
        "name": "prices",
        "version": 3,
        "files": {"prices.csv": PRICES},
        "key": KEY,
        "created_at": T0,
        "created_by": "hq-pricing",
    }
    args.update(overrides)
    return build_package(**args)  # type: ignore[arg-type]


def rezip(entries: list[tuple[str, bytes]], *, mode: int = stat.S_IFREG | 0o644) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return out.getvalue()


def entries_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def signed(manifest: bytes, files: list[tuple[str, bytes]], key: Ed25519PrivateKey = KEY) -> bytes:
    sig = key.sign(fmt.SIGNED_PREFIX + manifest).hex().encode()
    return rezip([(fmt.MANIFEST, manifest), (fmt.SIGNATURE, sig), *files])


def manifest_of(**changes: object) -> dict[str, object]:
    doc = json.loads(dict(entries_of(build()))[fmt.MANIFEST])
    doc.update(changes)
    return doc


def test_a_built_package_reads_back_with_its_manifest_and_files() -> None:
    package = read_package(build(stores=["s1", "s2"], notes="秋季调价"), KEY.public_key())
    m = package.manifest
    assert (m.kind, m.name, m.version, m.stores, m.notes) == (
        fmt.PackageKind.PRICE_LIST,
        "prices",
        3,
        ("s1", "s2"),
        "秋季调价",
    )
    assert package.files == {"prices.csv": PRICES}
    assert m.for_store("s1") and not m.for_store("s3")


def test_the_documented_test_vector_verifies() -> None:
    """docs/packages.md: the key from bytes 0..31, the manifest below, its signature."""
    manifest = json.loads(dict(entries_of(build()))[fmt.MANIFEST])
    assert fmt.public_key_hex(KEY) == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert manifest["files"] == [
        {"path": "prices.csv", "sha256": hashlib.sha256(PRICES).hexdigest(), "size": len(PRICES)}
    ]
    raw = fmt.manifest_bytes(fmt.check_manifest(manifest))
    assert manifest["files"][0]["sha256"] == "4a9330f37694b2f78a8351d8f5ba205a7c41e51f13a4038acedbf102466bac34"
    signature = dict(entries_of(build()))[fmt.SIGNATURE].decode().strip()
    assert (
        signature
        == KEY.sign(fmt.SIGNED_PREFIX + raw).hex()
        == (
            "31b827244a69df836981cbbc355a8a1393c28ebbdccf3d044742e2f481890fdb"
            "0f552d7eb999ba4f9e29e5732397a4fbf3acb4f674b1db08c7aca5ae5dd9e30d"
        )
    )


def test_a_changed_manifest_breaks_the_signature() -> None:
    entries = entries_of(build())
    tampered = [(n, d.replace(b'"version": 3', b'"version": 4') if n == fmt.MANIFEST else d) for n, d in entries]
    with pytest.raises(PackageBadSignature):
        read_package(rezip(tampered), KEY.public_key())


def test_a_changed_file_is_refused_by_its_hash() -> None:
    entries = [
        (n, b"sku,price\nCOLA,0.01\nMILK,12.90\n" if n == "files/prices.csv" else d) for n, d in entries_of(build())
    ]
    with pytest.raises(PackageInvalid) as err:
        read_package(rezip(entries), KEY.public_key())
    assert err.value.detail["reason"] == "hash"


def test_a_package_signed_by_another_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(PackageBadSignature) as err:
        read_package(build(key=other), KEY.public_key())
    assert "签名" in err.value.message and "signature" in err.value.message_en


@pytest.mark.parametrize("path", ["../evil.csv", "/etc/passwd", "a/../../b", "a/./b", ".hidden", "a\\b", "a//b", ""])
def test_traversal_and_odd_paths_are_refused(path: str) -> None:
    doc = manifest_of(files=[{"path": path, "sha256": "0" * 64, "size": 1}])
    raw = json.dumps(doc).encode()
    with pytest.raises(PackageInvalid) as err:
        read_package(signed(raw, [("files/" + path, b"x")]), KEY.public_key())
    assert err.value.detail["reason"] in ("path", "manifest", "directory")


def test_a_symlink_entry_is_refused() -> None:
    entries = entries_of(build())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = ((stat.S_IFLNK | 0o777) if name.startswith("files/") else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, content)
    with pytest.raises(PackageInvalid) as err:
        read_package(out.getvalue(), KEY.public_key())
    assert err.value.detail["reason"] == "symlink"


def test_duplicate_and_unlisted_entries_are_refused() -> None:
    entries = entries_of(build())
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate name it writes
        dup = rezip([*entries, ("files/prices.csv", PRICES)])
    with pytest.raises(PackageInvalid) as err:
        read_package(dup, KEY.public_key())
    assert err.value.detail["reason"] == "duplicate"
    with pytest.raises(PackageInvalid) as err:
        read_package(rezip([*entries, ("files/extra.sh", b"rm -rf /")]), KEY.public_key())
    assert err.value.detail["reason"] == "unlisted"


def test_a_size_that_differs_from_the_manifest_is_refused() -> None:
    doc = manifest_of(files=[{"path": "prices.csv", "sha256": hashlib.sha256(PRICES).hexdigest(), "size": 5}])
    with pytest.raises(PackageInvalid) as err:
        read_package(signed(json.dumps(doc).encode(), [("files/prices.csv", PRICES)]), KEY.public_key())
    assert err.value.detail["reason"] in ("size", "too_large")


def test_a_zip_bomb_stops_at_the_limit_while_inflating() -> None:
    bomb = b"\0" * (64 * 2**20)
    doc = manifest_of(files=[{"path": "prices.csv", "sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}])
    with pytest.raises(PackageInvalid) as err:
        read_package(signed(json.dumps(doc).encode(), [("files/prices.csv", bomb)]), KEY.public_key())
    assert err.value.detail["reason"] == "too_large"


def test_an_unknown_kind_is_refused_even_when_signed() -> None:
    doc = manifest_of(kind="shell_script")
    with pytest.raises(PackageInvalid) as err:
        read_package(signed(json.dumps(doc).encode(), [("files/prices.csv", PRICES)]), KEY.public_key())
    assert err.value.detail["reason"] == "kind"
    assert "未知" in err.value.message


def test_public_keys_parse_from_hex_and_base64_and_refuse_the_rest() -> None:
    import base64

    raw = bytes.fromhex(fmt.public_key_hex(KEY))
    assert fmt.public_key_hex(fmt.parse_public_key(raw.hex())) == raw.hex()
    assert fmt.public_key_hex(fmt.parse_public_key(base64.b64encode(raw).decode())) == raw.hex()
    with pytest.raises(PackageError):
        fmt.parse_public_key("abc")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_garbage_is_refused_with_a_package_error(data: bytes) -> None:
    with pytest.raises(PackageError):
        read_package(data, KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_flipped_byte_of_a_package_is_refused_or_reads_the_same(data: st.DataObject) -> None:
    original = build()
    at = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    changed = bytearray(original)
    changed[at] ^= 1 << bit
    try:
        package = read_package(bytes(changed), KEY.public_key())
    except PackageError:
        return
    # a flip in zip metadata that carries no content (a timestamp, deflate padding) may still read: same package
    assert package.files == {"prices.csv": PRICES} and package.manifest.version == 3


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=5),
        max_leaves=20,
    )
)
def test_any_signed_json_manifest_is_checked_without_crashing(doc: object) -> None:
    raw = json.dumps(doc).encode()
    with pytest.raises(PackageError):
        read_package(signed(raw, []), KEY.public_key())
