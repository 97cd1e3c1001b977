"""The unit files in systemd/ load in systemd itself: `systemd-analyze verify` (no warning allowed), the hardening
score of `systemd-analyze security --offline=true` stays below what docs/install-debian.md records, and the
sysusers and tmpfiles files create the users and folders the units name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("storebox.service", "storebox-cloud.service", "storebox-backup.service", "storebox-backup.timer")
INSTALLED_BIN = "/opt/storebox/venv/bin/"
# Measured with systemd 252 (Debian 12): 1.8, 1.4 and 0.7; a change that weakens the hardening fails here.
EXPOSURE_AT_MOST = {"storebox.service": 2.0, "storebox-cloud.service": 1.5, "storebox-backup.service": 1.0}

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd (Debian: systemd)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units with ExecStart pointing at this venv's scripts: verify checks that the binaries exist."""
    folder = tmp_path_factory.mktemp("units")
    venv_bin = Path(sys.executable).parent
    for name in UNITS:
        text = (UNITS_DIR / name).read_text(encoding="utf-8")
        (folder / name).write_text(text.replace(INSTALLED_BIN, f"{venv_bin}/"), encoding="utf-8")
    return folder


def _analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["systemd-analyze", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_unit_verifies_without_a_warning(rendered: Path) -> None:
    result = _analyze("verify", "--man=no", *(f"./{name}" for name in UNITS), cwd=rendered)
    # verify exits 0 on unknown keys and misplaced settings: any line it prints is a failure here.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_catches_a_broken_unit(rendered: Path, tmp_path: Path) -> None:
    text = (rendered / "storebox.service").read_text(encoding="utf-8")
    (tmp_path / "broken.service").write_text(text.replace("ProtectHome=yes", "ProtectHome=perhaps"))
    result = _analyze("verify", "--man=no", "./broken.service", cwd=tmp_path)
    assert "perhaps" in result.stderr  # a warning with exit code 0: why the test above wants no output at all
    (tmp_path / "missing.service").write_text(text.replace(str(Path(sys.executable).parent), "/nonexistent"))
    result = _analyze("verify", "--man=no", "./missing.service", cwd=tmp_path)
    assert result.returncode != 0 and "not executable" in result.stderr


@pytest.mark.parametrize("unit", sorted(EXPOSURE_AT_MOST))
def test_hardening_exposure_stays_low(rendered: Path, unit: str) -> None:
    result = _analyze("security", "--offline=true", "--no-pager", f"./{unit}", cwd=rendered)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert score is not None, result.stdout + result.stderr
    assert float(score.group(1)) <= EXPOSURE_AT_MOST[unit], result.stdout


def test_box_unit_keeps_serial_ports_and_numba_working() -> None:
    text = (UNITS_DIR / "storebox.service").read_text(encoding="utf-8")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "PrivateDevices=yes" not in settings
    assert "SupplementaryGroups=dialout" in settings
    assert any(line.startswith("DeviceAllow=char-ttyUSB") for line in settings)
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in settings)
    assert "Environment=NUMBA_CACHE_DIR=/var/cache/storebox/numba" in settings
    assert "CacheDirectory=storebox" in settings


def test_box_settings_in_the_units_are_known_settings() -> None:
    from edge.config import Settings

    known = {f"STOREBOX_{name.upper()}" for name in Settings.model_fields}
    for name in ("storebox.service", "storebox-backup.service"):
        text = (UNITS_DIR / name).read_text(encoding="utf-8")
        # The box refuses unknown STOREBOX_* variables: every one a unit sets must be a setting.
        for variable in re.findall(r"^Environment=(STOREBOX_[A-Z_]+)=", text, flags=re.MULTILINE):
            assert variable in known, (name, variable)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_sysusers_and_tmpfiles_create_the_users_and_folders(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(UNITS_DIR / "storebox.sysusers.conf")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (tmp_path / "etc/passwd").read_text()
    users = {line.split(":")[0]: line.split(":") for line in passwd.splitlines()}
    assert {"storebox", "storebox-cloud"} <= set(users)
    assert users["storebox"][6] in {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false"}
    group = (tmp_path / "etc/group").read_text()
    assert re.search(r"^dialout:[^:]*:\d+:(.*,)?storebox(,|$)", group, flags=re.MULTILINE), group
    if os.geteuid() != 0:
        pytest.skip("tmpfiles --create chowns: needs root")
    subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(UNITS_DIR / "storebox.tmpfiles.conf")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    backups = tmp_path / "var/backups/storebox"
    assert backups.is_dir() and (backups.stat().st_mode & 0o777) == 0o700
    assert backups.stat().st_uid == int(users["storebox"][2])


def _under_mdwe(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run Python with prctl(PR_SET_MDWE): the kernel's form of MemoryDenyWriteExecute= (Linux 6.3+)."""
    prelude = "import ctypes,sys\nif ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0: sys.exit(77)\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_memory_deny_write_execute_breaks_numba_but_not_the_backup_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
    env.update({"STOREBOX_DATA_DIR": str(tmp_path / "data"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    numba = _under_mdwe("import numba", env)
    if numba.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE")
    # Why storebox.service has no MemoryDenyWriteExecute=:
    assert numba.returncode != 0 and "executable memory" in numba.stderr
    subprocess.run([sys.executable, "-m", "edge.cli", "migrate"], env=env, check=True, capture_output=True)
    # storebox-backup.service sets it: the backup command must keep working without a JIT.
    backup = subprocess.run(
        [sys.executable, "-c", _MDWE_BACKUP, str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert backup.returncode == 0, backup.stderr
    assert len(list((tmp_path / "out").glob("storebox-*.tar.gz"))) == 1


_MDWE_BACKUP = (
    "import ctypes,sys\n"
    "assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0\n"
    "sys.argv = ['storebox', 'backup', 'create', '--dir', sys.argv[1]]\n"
    "from edge.cli import main\n"
    "main()\n"
)
