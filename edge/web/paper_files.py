"""Where uploaded supplier papers are kept: `<data_dir>/papers/<sha256>.<jpg|png|pdf>` (file I/O, so in the shell).

Files are content-addressed: the same file uploaded twice is kept once, and a database row names its file by
digest. A file is written to a temporary name, synced and renamed, so a power cut never leaves half a file
under a digest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edge.finance.papers import FileType

PAPERS_DIR = "papers"


def paper_path(data_dir: Path, sha256: str, file_type: str) -> Path:
    return data_dir / PAPERS_DIR / f"{sha256}.{file_type}"


def store_paper_file(data_dir: Path, data: bytes, file_type: FileType) -> str:
    """Keep the file under its sha256; return the digest."""
    digest = hashlib.sha256(data).hexdigest()
    path = paper_path(data_dir, digest, file_type.value)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        with temp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    return digest
