"""This server process's stable node id: one short random name kept in the data
directory, so that a restart keeps its MQTT persistent session while two
deployments of one site on one broker (two data directories) never share one."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

__all__ = ["node_id"]

_VALID = re.compile(r"^[a-z0-9]{6,32}$")


def node_id(data_dir: Path) -> str:
    """The id stored in ``data_dir/node-id``, created on first use."""
    path = data_dir / "node-id"
    try:
        kept = path.read_text(encoding="utf-8").strip()
        if _VALID.match(kept):
            return kept
    except OSError:
        pass
    made = secrets.token_hex(6)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(made + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only data dir: unique for this process, a new session next time
    return made
