"""Vendor the page's front-end libraries from the npm registry into edge/web/static/vendor/.

`python -m tools.vendor_assets` runs `npm pack` for each pinned package below, takes the one browser build the page
loads and the package's licence, and writes `vendor.json`: name, version, licence, the registry's integrity hash of
the tarball and the sha256 of every file copied. The files are committed, so the box needs no npm and no network;
tests check the files against vendor.json. To upgrade, change a version here and run the command again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parents[1] / "edge" / "web" / "static" / "vendor"
MANIFEST = VENDOR_DIR / "vendor.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[str, ...]  # paths inside the tarball's `package/`, copied flat into vendor/<dir>/
    dir: str


PACKAGES = (
    Package("htmx.org", "2.0.11", ("dist/htmx.min.js",), "htmx"),
    Package("alpinejs", "3.15.0", ("dist/cdn.min.js",), "alpinejs"),
    Package("uplot", "1.6.32", ("dist/uPlot.iife.min.js", "dist/uPlot.min.css"), "uplot"),
)
LICENCE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "license", "license.md")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(package: Package, work: Path) -> tuple[Path, dict[str, str]]:
    """`npm pack name@version` into `work`; the tarball and npm's description of it."""
    done = subprocess.run(
        ["npm", "pack", f"{package.name}@{package.version}", "--json", "--pack-destination", str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(done.stdout)[0]
    return work / info["filename"], {"integrity": info["integrity"]}


def vendor(package: Package, work: Path) -> dict[str, object]:
    tarball, info = pack(package, work)
    target = VENDOR_DIR / package.dir
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        members = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
        meta = json.loads(tar.extractfile(members["package.json"]).read())  # type: ignore[union-attr]
        licence_file = next((n for n in LICENCE_NAMES if n in members), None)
        wanted = [*package.files, *([licence_file] if licence_file else [])]
        copied: dict[str, str] = {}
        for name in wanted:
            data = tar.extractfile(members[name]).read()  # type: ignore[union-attr]
            out = target / Path(name).name
            out.write_bytes(data)
            copied[f"{package.dir}/{out.name}"] = sha256(out)
    if licence_file is None and not meta.get("license"):
        raise SystemExit(f"{package.name}: neither a licence file nor a licence in package.json")
    return {
        "name": package.name,
        "version": meta["version"],
        "license": meta.get("license"),  # SPDX id from package.json (alpinejs ships no licence file)
        "license_file": f"{package.dir}/{Path(licence_file).name}" if licence_file else None,
        "homepage": meta.get("homepage"),
        "integrity": info["integrity"],
        "files": copied,
    }


def main() -> int:
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        entries = [vendor(package, Path(tmp)) for package in PACKAGES]
    MANIFEST.write_text(json.dumps({"packages": entries}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for entry in entries:
        print(f"{entry['name']}@{entry['version']} ({entry['license']}): {', '.join(entry['files'])}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
