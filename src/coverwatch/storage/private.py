"""Files at rest readable by the server's user only: the data directory 0700, the SQLite file 0600.

SQLite gives its ``-wal`` and ``-shm`` files the main file's mode, so creating the
database file 0600 before SQLite opens it keeps all three private. Existing files
and directories are left as the operator set them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["private_data_dir", "private_dir", "write_private"]


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents, each 0700 (existing ones are left alone)."""
    path = Path(path)
    if path.exists():
        return
    private_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:  # made by another process meanwhile
        return
    os.chmod(path, 0o700)  # mkdir's mode is cut by the umask


def private_data_dir(data_dir: Path, db_file: str) -> None:
    """Create ``data_dir`` (0700) and an empty ``db_file`` in it (0600) if they are missing."""
    path = Path(data_dir)
    private_dir(path)
    db = path / db_file
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))


def write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write ``data`` to ``path`` (0600) whole or not at all, through a temporary file of
    this process and thread's own. ``replace=False`` keeps a file that exists: the first
    of several sites starting at once creates a key and every other one reads it (two
    used to write one temporary file, and one read a half-written key or lost its own).
    Whether this call wrote ``path``."""
    private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the file exists, and never shows it half-written
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
