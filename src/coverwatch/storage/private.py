"""Files at rest readable by the server's user only: the data directory 0700, the SQLite file 0600.

SQLite gives its ``-wal`` and ``-shm`` files the main file's mode, so creating the
database file 0600 before SQLite opens it keeps all three private. Existing files
and directories are left as the operator set them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_data_dir", "private_dir"]


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
